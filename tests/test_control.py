"""Control with the tiny models: ControlNet (agreement with diffusers, metadata, --from, bad input), canny, masks from
words (DiffEdit)."""

import json

import numpy as np
import pytest
import torch
from helpers import pixels
from PIL import Image, ImageChops, ImageDraw

import difflab
from difflab import InputError, control, metadata, pipelines
from difflab.cli import main

FAST = dict(num_inference_steps=3, seed=7)


@pytest.fixture(scope="module")
def cn(difflab_cache):
    return difflab.load("tiny", controlnet="tiny-controlnet", progress=False)


@pytest.fixture(scope="module")
def outline():
    """A white circle outline on black, 64 x 64: the kind of image a ControlNet follows."""
    image = Image.new("RGB", (64, 64))
    ImageDraw.Draw(image).ellipse((12, 12, 52, 52), outline=(255, 255, 255), width=2)
    return image


def diffusers_controlnet_pipe(task):
    import diffusers
    from difflab.pipelines import CONTROLNET_PIPELINE_CLASSES
    from difflab.tiny import tiny_path
    net = diffusers.ControlNetModel.from_pretrained(tiny_path("tiny-controlnet"))
    pipe = getattr(diffusers, CONTROLNET_PIPELINE_CLASSES[task]).from_pretrained(
        tiny_path("tiny"), controlnet=net, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_canny_marks_the_edges_of_a_square_and_nothing_else():
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:48, 16:48] = 200
    edges = control.canny_edges(image)
    rows, cols = np.nonzero(edges)
    assert edges.sum() > 4 * 28   # the four sides
    assert rows.min() >= 14 and rows.max() <= 49 and cols.min() >= 14 and cols.max() <= 49
    assert not edges[20:44, 20:44].any()   # flat inside: no edge
    pre = control.preprocess(Image.fromarray(image), "canny")
    assert pre.mode == "RGB" and set(np.unique(np.asarray(pre))) == {0, 255}


@pytest.mark.parametrize("task", ["text2img", "img2img", "inpaint"])
def test_controlnet_agrees_with_diffusers_exactly(cn, outline, photo, task):
    extra = {} if task == "text2img" else {"image": photo, "strength": 0.8}
    if task == "inpaint":
        extra["boxes"] = [(8, 8, 56, 56)]
    ours = difflab.generate(cn, task=task, prompt="a red circle", control_image=outline,
                            controlnet_conditioning_scale=0.7, control_guidance_end=0.8, **extra, **FAST)[0]
    pipe = diffusers_controlnet_pipe(task)
    call = dict(controlnet_conditioning_scale=0.7, control_guidance_end=0.8, num_inference_steps=3,
                generator=torch.Generator("cpu").manual_seed(7))
    if task == "text2img":
        ref = pipe("a red circle", image=outline, **call).images[0]
    elif task == "img2img":
        ref = pipe("a red circle", image=photo, control_image=outline, strength=0.8, **call).images[0]
    else:
        from difflab.masks import make_mask
        ref = pipe("a red circle", image=photo, mask_image=make_mask((64, 64), [(8, 8, 56, 56)]), control_image=outline,
                   strength=0.8, height=64, width=64, **call).images[0]
    assert (pixels(ours.image) == pixels(ref)).all()


def test_the_control_image_and_its_scale_change_the_image(cn, outline):
    on = difflab.generate(cn, prompt="a circle", control_image=outline, **FAST)[0]
    off = difflab.generate(cn, prompt="a circle", control_image=outline, controlnet_conditioning_scale=0.0, **FAST)[0]
    moved = ImageChops.offset(outline, 12, 0)
    other = difflab.generate(cn, prompt="a circle", control_image=moved, **FAST)[0]
    assert np.abs(pixels(on.image) - pixels(off.image)).mean() > 1
    assert np.abs(pixels(on.image) - pixels(other.image)).mean() > 0.05   # random tiny weights: a small effect


def test_two_controlnets_at_once_with_their_own_scales(difflab_cache, outline, photo):
    two = difflab.load("tiny", controlnet=["tiny-controlnet", "tiny-controlnet"], progress=False)
    out = difflab.generate(two, prompt="a circle", control_image=[outline, photo], control_preprocess=["none", "canny"],
                           controlnet_conditioning_scale=[1.0, 0.0], **FAST)[0]
    one = difflab.load("tiny", controlnet="tiny-controlnet", progress=False)
    alone = difflab.generate(one, prompt="a circle", control_image=outline, **FAST)[0]
    # the second ControlNet at scale 0 adds nothing: the pair equals the first alone (up to float summation order)
    assert np.abs(pixels(out.image) - pixels(alone.image)).max() <= 1
    text = out.infotext
    assert 'ControlNet 0: "Module: none, Model: tiny-controlnet [' in text
    assert 'ControlNet 1: "Module: canny' in text and "Weight: 0," in text
    with pytest.raises(InputError, match="control_image: 1 control image.*for 2 ControlNet"):
        difflab.generate(two, prompt="a circle", control_image=outline, **FAST)
    with pytest.raises(InputError, match="controlnet_conditioning_scale: 3 values for 2 ControlNet"):
        difflab.generate(two, prompt="a circle", control_image=[outline, photo],
                         controlnet_conditioning_scale=[1.0, 0.5, 0.2], **FAST)


def test_record_and_infotext_name_the_controlnet_and_its_image(cn, tmp_path, outline):
    path = tmp_path / "outline.png"
    outline.save(path)
    item = difflab.generate(cn, prompt="a circle", control_image=str(path), control_preprocess="canny",
                            control_guidance_start=0.2, **FAST)[0]
    rec = item.record
    assert rec["model"]["controlnet"][0]["name"] == "tiny-controlnet"
    assert len(rec["model"]["controlnet"][0]["hash"]) == 64
    assert rec["inputs"]["control_image"][0]["path"] == str(path.resolve())
    assert rec["control_preprocess"] == "canny" and rec["control_guidance_start"] == 0.2
    fields = metadata.parse_infotext(item.infotext)
    assert fields["ControlNet 0"] == (f"Module: canny, Model: tiny-controlnet [{rec['model']['controlnet'][0]['hash'][:8]}], "
                                      f"Weight: 1, Guidance Start: 0.2, Guidance End: 1, Control Mode: Balanced")


def test_cli_controlnet_run_saves_the_preprocessed_image_and_from_reproduces_it(tmp_path, outline, capsys):
    control_path = tmp_path / "outline.png"
    outline.save(control_path)
    argv = ["generate", "--model", "tiny", "--controlnet", "tiny-controlnet", "--control-image", str(control_path),
            "--control-preprocess", "canny", "--control-scale", "0.8", "--prompt", "a circle", "--steps", "3",
            "--seed", "2", "--out", str(tmp_path / "a")]
    assert main(argv) == 0
    run = next((tmp_path / "a").iterdir())
    first = run / "0000-2.png"
    preview = Image.open(run / "control_0.png")
    assert np.array_equal(np.asarray(preview), np.asarray(control.preprocess(outline, "canny")))
    record = metadata.read(first)["difflab"]
    assert record["controlnet_conditioning_scale"] == 0.8
    assert main(["generate", "--from", str(first), "--out", str(tmp_path / "b")]) == 0
    again = next((tmp_path / "b").iterdir()) / "0000-2.png"
    assert (pixels(Image.open(first)) == pixels(Image.open(again))).all()
    # the control image changed on disk: --from refuses rather than make another image
    ImageChops.offset(outline, 12, 0).save(control_path)
    capsys.readouterr()
    assert main(["generate", "--from", str(first), "--out", str(tmp_path / "c")]) == 2
    assert "control_image" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("extra,message", [
    (["--control-scale", "2.5"], "controlnet_conditioning_scale: 2.5 is not allowed; use a number in [0, 2]"),
    (["--control-start", "0.6", "--control-end", "0.4"], "control_guidance_start: 0.6 is not before"),
    (["--control-preprocess", "depth"], "control_preprocess: 'depth' is not allowed; choose one of none, canny"),
    (["--control-image", "IMG"], "control_image: 2 control image(s) for 1 ControlNet(s)"),
    (["--width", "32", "--height", "32"], "control_image 0: 64x64, but the image is 32x32; resize it explicitly"),
])
def test_bad_control_input_is_one_line_exit_2_and_nothing_written(tmp_path, outline, capsys, extra, message):
    path = tmp_path / "outline.png"
    outline.save(path)
    argv = ["generate", "--model", "tiny", "--controlnet", "tiny-controlnet", "--control-image", str(path),
            "--prompt", "a circle", "--steps", "2", "--out", str(tmp_path / "res")]
    assert main(argv + [str(path) if e == "IMG" else e for e in extra]) == 2
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "res").exists()


def test_resize_control_resizes_only_when_asked(cn, outline):
    out = difflab.generate(cn, prompt="a circle", control_image=outline, width=32, height=32, resize_control=True,
                           **FAST)[0]
    assert out.image.size == (32, 32) and out.inputs.control[0].size == (32, 32)


def test_controlnet_of_another_architecture_is_refused(sd, tmp_path):
    from diffusers import ControlNetModel
    torch.manual_seed(0)
    ControlNetModel(block_out_channels=(32, 32), layers_per_block=2, cross_attention_dim=32,
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                    conditioning_embedding_out_channels=(16, 32), attention_head_dim=8).save_pretrained(tmp_path / "cn")
    with pytest.raises(InputError, match=r"controlnet: 'cn' does not fit this model: its block_out_channels is "
                                         r"\[32, 32\], the model's \[32, 64\]"):
        difflab.load("tiny", controlnet=str(tmp_path / "cn"), progress=False)
    with pytest.raises(InputError, match="controlnet: folder .* has no config.json"):
        pipelines.resolve_controlnet(str(tmp_path))
    with pytest.raises(InputError, match="controlnet: hub id 'nobody/no-controlnet' is not in the local"):
        pipelines.resolve_controlnet("nobody/no-controlnet")
    with pytest.raises(InputError, match="control_image: no ControlNet is loaded"):
        difflab.generate(sd, prompt="x", control_image=Image.new("RGB", (64, 64)), **FAST)


# --- masks from words (DiffEdit)

def test_mask_from_words_is_deterministic_sized_and_thresholded(sd, photo):
    loose = control.mask_from_words(sd.pipe, photo, "red circle", threshold=1.0)
    tight = control.mask_from_words(sd.pipe, photo, "red circle", threshold=3.0)
    again = control.mask_from_words(sd.pipe, photo, "red circle", threshold=3.0)
    area = lambda m: (np.asarray(m) > 0).mean()  # noqa: E731
    assert loose.size == photo.size and loose.mode == "L"
    assert np.array_equal(np.asarray(tight), np.asarray(again))
    assert 0 < area(tight) < area(loose) <= 1
    with pytest.raises(InputError, match="mask_from: no region found for 'dragon'; lower --mask-threshold"):
        control.mask_from_words(sd.pipe, photo, "dragon", threshold=1000.0)


def test_a_mask_from_words_snaps_to_the_image_regions_it_mostly_covers(sd, photo):
    """refine="segments": a mask as blocky as the latents, plus a stray block, takes the object's own outline;
    one that mostly covers no region stays as found; refine="none" keeps DiffEdit's mask as found: constant over
    each latent's pixels."""
    from difflab.shapes import score, world

    image, scene = world.item(10, "val")          # "a large orange triangle": one object
    truth = scene.masks[0]
    coarse = np.kron(truth.reshape(16, 4, 16, 4).mean(axis=(1, 3)) >= 0.5, np.ones((4, 4), bool))  # 4x4 latent cells
    coarse[-4:, -4:] = True                       # a stray cell on the background
    refined = np.asarray(control.refine_mask(image, Image.fromarray(coarse.astype(np.uint8) * 255))) > 0
    assert score.iou(refined, truth) > 0.9 and score.iou(coarse, truth) < 0.8
    scattered = Image.fromarray((np.indices((64, 64)).sum(0) % 3 == 0).astype(np.uint8) * 255)  # a third of each
    assert np.array_equal(np.asarray(control.refine_mask(image, scattered)), np.asarray(scattered))
    raw = np.asarray(control.mask_from_words(sd.pipe, photo, "red circle", threshold=1.0, refine="none")) > 0
    f = sd.pipe.vae_scale_factor
    blocks = raw.reshape(raw.shape[0] // f, f, raw.shape[1] // f, f)
    assert (blocks == blocks[:, :1, :, :1]).all() and 0 < raw.mean() < 1
    with pytest.raises(InputError, match="mask_refine: 'sam' is not allowed; choose one of segments, strongest, none"):
        difflab.GenerationParams(task="inpaint", prompt="x", mask_from="x", mask_refine="sam").validate()


def test_the_difference_map_is_diffusers_generate_mask_before_it_thresholds(sd, photo):
    """DiffEdit's map, thresholded as diffusers' generate_mask thresholds (same seed, maps, strength, ratio; its
    deprecated pipeline called directly), gives its mask latent for latent; another reference text, another map."""
    import diffusers

    editor = diffusers.StableDiffusionDiffEditPipeline.from_pipe(sd.pipe, inverse_scheduler=None)
    editor.scheduler = diffusers.DDIMScheduler.from_config(sd.pipe.scheduler.config)
    editor.set_progress_bar_config(disable=True)
    theirs = editor.generate_mask(image=photo, source_prompt="red circle", target_prompt="", mask_thresholding_ratio=2.0,
                                  num_maps_per_mask=10, mask_encode_strength=0.5,
                                  generator=torch.Generator("cpu").manual_seed(0))[0]
    ours = np.asarray(control.mask_from_words(sd.pipe, photo, "red circle", threshold=2.0, refine="none")) > 0
    f = sd.pipe.vae_scale_factor
    assert 0 < theirs.mean() < 1 and np.array_equal(ours[::f, ::f], theirs > 0)
    plain = control.difference_map(sd.pipe, photo, "red circle")
    versus = control.difference_map(sd.pipe, photo, "red circle", reference="a blue square")
    assert plain.shape == theirs.shape and not np.allclose(plain, versus)


def test_strongest_regions_take_the_objects_the_words_single_out_whole(sd, photo):
    """refine="strongest": the image's regions whose mean evidence is within STRONGEST of the strongest one's,
    each whole however coarse the map: here a map hot over part of one object takes all of it and leaves a second
    object that it reads at half that; read at nine tenths, both are taken; negative evidence takes nothing."""
    from difflab.shapes import score, world

    image, scene = world.item(5, "val")           # "a red circle and a black circle"
    a, b = scene.masks[:2]
    cells = lambda m: m.reshape(16, 4, 16, 4).mean(axis=(1, 3))  # noqa: E731   the 16x16 latent grid
    for share, want in ((0.5, a), (0.9, a | b)):
        found = (cells(a) > 0.6) * 1.0 + (cells(b) > 0.6) * share
        taken = np.asarray(control.strongest_regions(image, found.astype(np.float32))) > 0
        assert score.iou(taken, want) > 0.85 and (taken & want).sum() > 0.9 * want.sum()
    assert not np.asarray(control.strongest_regions(image, -(cells(a) > 0.6).astype(np.float32))).any()
    mask = control.mask_from_words(sd.pipe, photo, "red circle", refine="strongest")
    assert mask.size == photo.size and 0 < (np.asarray(mask) > 0).mean() < 1
    with pytest.raises(InputError, match="no region found for ''; the words explain no region better than no text"):
        control.mask_from_words(sd.pipe, photo, "", refine="strongest")   # no evidence anywhere: exactly 0


def test_the_evidence_map_is_signed_and_sums_over_references(sd, photo):
    """Where the words' noise prediction denoises better than a reference's: nothing for the words against
    themselves, the opposite of the reference's evidence against the words (the same noise draws), and one
    reference's evidence plus the other's for two (a repeated reference counts once)."""
    ev = lambda words, refs: control.evidence_map(sd.pipe, photo, words, refs)  # noqa: E731
    red, blue, both = ev("red circle", ["a blue square"]), ev("red circle", [""]), ev("red circle", ["a blue square", ""])
    f = sd.pipe.vae_scale_factor
    assert red.shape == (photo.height // f, photo.width // f) and (red > 0).any() and (red < 0).any()
    assert not ev("red circle", ["red circle"]).any()
    tol = 1e-4 * np.abs(red).max()   # float32 sums taken in another order
    assert np.allclose(ev("a blue square", ["red circle"]), -red, atol=tol)
    assert np.allclose(both, red + blue, atol=tol) and np.array_equal(ev("red circle", ["", ""]), blue)


def test_words_mask_fidelity_measures_masks_from_words_or_repaints_through_the_true_ones(sd):
    """The issue's measure on shapes items: with the words, DiffEdit's masks (random tiny weights: far from the
    objects); with true_masks, the truth itself (IoU 1), so `edited` is the model's inpainting alone."""
    from difflab.shapes import score

    words = score.words_mask_fidelity(sd, 2, refine="none", num_inference_steps=3)
    true = score.words_mask_fidelity(sd, 2, true_masks=True, num_inference_steps=3)
    assert (words["masks"], true["masks"]) == ("words", "true") and words["items"] == true["items"] == 2
    assert words["iou_median"] < 0.5 and true["iou_median"] == true["iou_mean"] == 1.0
    assert true["edited"] == 0.0   # random weights repaint no shape


def test_inpaint_with_mask_from_keeps_what_is_outside_the_words_mask(tmp_path, photo_file, capsys):
    argv = ["inpaint", "--model", "tiny", "--image", str(photo_file), "--mask-from", "a red circle", "--keep-unmasked",
            "--prompt", "a blue square", "--steps", "3", "--seed", "1", "--out", str(tmp_path / "res")]
    assert main(argv) == 0
    run = next((tmp_path / "res").iterdir())
    mask = np.asarray(Image.open(run / "mask.png")) > 0
    out = pixels(Image.open(run / "0000-1.png").convert("RGB"))
    source = pixels(Image.open(photo_file).convert("RGB"))
    assert 0 < mask.mean() < 1
    assert (out[~mask] == source[~mask]).all() and (out[mask] != source[mask]).any()
    record = json.loads(Image.open(run / "0000-1.png").info["difflab"])
    assert record["mask_from"] == "a red circle" and "Mask from: a red circle" in Image.open(run / "0000-1.png").info["parameters"]
    assert record["mask_refine"] == "segments" and "Mask refine: segments" in Image.open(run / "0000-1.png").info["parameters"]
    assert record["mask_reference"] is None   # read against the prompt
    found = control.mask_from_words(difflab.load("tiny").pipe, Image.open(photo_file).convert("RGB"), "a red circle",
                                    reference="a blue square")
    assert np.array_equal(mask, np.asarray(found) > 0)
    from difflab.generate import params_from_record
    old = {k: v for k, v in record.items() if k != "mask_reference"}   # a record from before mask_reference
    assert params_from_record(old).mask_reference == "" and \
        params_from_record(record).mask_reference is None
    with pytest.raises(InputError, match="mask_from: masks are for inpaint only, not img2img"):
        difflab.GenerationParams(task="img2img", prompt="x", mask_from="x").validate()


def test_sweep_over_control_weight_and_control_image(tmp_path, outline):
    from difflab import sweep
    paths = []
    for i, shift in enumerate((0, 12)):
        paths.append(tmp_path / f"outline{i}.png")
        ImageChops.offset(outline, shift, 0).save(paths[-1])
    spec = {"name": "cn", "model": "tiny", "controlnet": ["tiny-controlnet"], "control_image": [str(paths[0])],
            "params": {"prompt": "a circle", "num_inference_steps": 2, "seed": 3, "control_preprocess": "canny"},
            "x": {"param": "controlnet_conditioning_scale", "values": [0.0, 1.5]},
            "y": {"param": "control_image", "values": [str(p) for p in paths]}}
    run = sweep.execute(sweep.prepare_run(sweep.resolve(spec), tmp_path / "res"), progress=False)
    cells = {tuple(r["cell"]): r for r in run.images}
    assert len(cells) == 4 and not run.failed
    image = {cell: pixels(Image.open(r["path"])) for cell, r in cells.items()}
    # at weight 0 the control image does not matter; at 1.5 it does
    assert (image[(0, 0, 0)] == image[(0, 1, 0)]).all()
    assert (image[(1, 0, 0)] != image[(1, 1, 0)]).any()
    record = cells[(1, 1, 0)]["params"]
    assert record["inputs"]["control_image"][0]["path"] == str(paths[1].resolve())
    assert record["controlnet_conditioning_scale"] == 1.5
    with pytest.raises(InputError, match="control_image: 0 control image.*for 1 ControlNet"):
        sweep.resolve({**spec, "control_image": []})


# --- training a ControlNet on the one training loop (tiny base, shapes outlines)

CN_TRAIN = ["name=cn", "base=tiny", "method=controlnet", "data.name=shapes", "data.size=24", "validation.held_out=2",
            "steps=4", "batch_size=4", "lr=1e-3", "warmup=1", "mixed_precision=fp32", "sample_every=2",
            "checkpoint_every=2", "log_every=1", "sample.seeds=[0]", "sample.num_inference_steps=2"]


@pytest.fixture(scope="module")
def cn_run(tmp_path_factory, difflab_cache):
    from difflab.train.config import load_config
    from difflab.train.loop import train
    return train(load_config(None, CN_TRAIN), out=tmp_path_factory.mktemp("cn"), progress=False)


def test_a_new_controlnet_is_the_base_model_exactly(sd, difflab_cache, outline):
    """from_unet's zero convolutions: before training, any control image adds exactly nothing."""
    from difflab.train.config import load_config
    from difflab.train.methods import make_controlnet
    from difflab.train.models import load_parts
    parts = load_parts(load_config(None, CN_TRAIN))
    net = make_controlnet(parts, seed=0)
    import diffusers
    pipe = diffusers.StableDiffusionControlNetPipeline.from_pipe(sd.pipe, controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    ours = pipe("a circle", image=outline, num_inference_steps=3, generator=torch.Generator().manual_seed(7)).images[0]
    base = difflab.generate(sd, prompt="a circle", **FAST)[0]
    assert (pixels(ours) == pixels(base.image)).all()


def test_controlnet_training_writes_a_loadable_recorded_controlnet_and_a_grid(cn_run, outline):
    from difflab.checkpoints import training_record
    from difflab.shapes import world
    record = training_record(cn_run / "controlnet" / "diffusion_pytorch_model.safetensors")
    assert record["method"] == "controlnet" and record["base"]["name"] == "tiny" and record["step"] == 4
    trained = difflab.load("tiny", controlnet=str(cn_run / "controlnet"), progress=False)
    out = difflab.generate(trained, prompt="a circle", control_image=outline, **FAST)[0]
    net = out.record["model"]["controlnet"][0]
    assert net["kind"] == "folder" and net["name"] == "cn" and net["method"] == "controlnet"   # the run's own name
    assert 'Model: cn [' in out.infotext
    # the sample grid's rows are held-out captions with their outlines, the control image saved beside the samples
    shown = np.asarray(Image.open(cn_run / "samples" / "steps" / "step-0000004" / "00-control.png"))
    assert set(np.unique(shown)) <= {0, 255} and shown.any()
    metrics = [json.loads(x) for x in (cn_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "val_loss" in m] == [2, 4]
    image, scene = world.item(0)
    edges = world.outline(np.any(scene.masks, axis=0))[..., 0] > 0
    assert edges.sum() > 0 and not (edges & ~np.any(scene.masks, axis=0)).any()   # on the objects' rims only


def test_a_stopped_controlnet_run_resumes_exactly(cn_run, tmp_path):
    from safetensors.torch import load_file
    from difflab.train.config import load_config
    from difflab.train.loop import train
    cfg = load_config(None, CN_TRAIN)
    cut = train(cfg, out=tmp_path, progress=False, stop_after=3)
    assert not (cut / "controlnet").exists()
    train(cfg, out=tmp_path, progress=False, resume=cut)
    a = load_file(cn_run / "controlnet" / "diffusion_pytorch_model.safetensors")
    b = load_file(cut / "controlnet" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_controlnet_folder_data_in_diffusers_layout(tmp_path):
    from difflab.train.config import DataConfig
    from difflab.train.data import folder
    (tmp_path / "conditioning").mkdir()
    lines = []
    for i in range(3):
        Image.new("RGB", (80, 64), (10 * i, 0, 0)).save(tmp_path / f"{i}.png")
        Image.new("RGB", (80, 64), (0, 0, 50 * i)).save(tmp_path / "conditioning" / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "conditioning_image": f"conditioning/{i}.png",
                                 "text": f"item {i}"}))
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    data = folder(DataConfig(name="folder", folder=str(tmp_path)), 32, controls=True)
    assert data.images.shape == data.controls.shape == (3, 3, 32, 32)
    assert data.captions == ["item 0", "item 1", "item 2"] and int(data.controls[2, 2, 0, 0]) == 100
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines[:2]) + "\n" + json.dumps(
        {"file_name": "2.png", "text": "item 2"}) + "\n")
    with pytest.raises(InputError, match="data.folder: '2.png' has no conditioning_image in metadata.jsonl"):
        folder(DataConfig(name="folder", folder=str(tmp_path)), 32, controls=True)


def test_sweep_axes_over_the_mask_threshold_and_refinement_of_words(photo_file):
    from difflab import sweep
    spec = {"name": "words", "task": "inpaint", "model": "tiny", "image": str(photo_file),
            "params": {"prompt": "a blue square", "mask_from": "red circle", "num_inference_steps": 2, "seed": 1},
            "x": {"param": "mask_threshold", "values": [2.0, 4.0]}, "y": {"param": "mask_refine", "values": ["none"]}}
    cells = sweep.plan(sweep.resolve(spec))
    assert [c.params.mask_threshold for c in cells] == [2.0, 4.0] and cells[1].labels == {"x": "Mask threshold: 4.0",
                                                                                          "y": "Mask refine: none"}
    assert {c.params.mask_refine for c in cells} == {"none"}
    with pytest.raises(InputError, match="mask_refine: 'sam' is not allowed"):
        sweep.plan(sweep.resolve({**spec, "y": {"param": "mask_refine", "values": ["sam"]}}))
    with pytest.raises(InputError, match="x.param: mask_threshold is not a parameter of text2img"):
        sweep.resolve({**spec, "task": "text2img", "image": None, "params": {"prompt": "x"}})


def test_a_detector_without_its_package_is_one_line_saying_what_to_install(tmp_path, photo_file, capsys):
    argv = ["inpaint", "--model", "tiny", "--image", str(photo_file), "--mask-from-detector", "yolov8n-seg.pt:person",
            "--prompt", "x", "--steps", "2", "--out", str(tmp_path / "res")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install ultralytics" in err and "yolov8n-seg.pt" in err
    assert not (tmp_path / "res").exists()
    assert main(argv[:6] + ["yolov8n-seg.pt"] + argv[7:]) == 2
    assert "use WEIGHTS:CLASS" in capsys.readouterr().err


# --- training an inpainting model on the one training loop (tiny base, the shapes world's masks)

IP_TRAIN = ["name=ip", "base=tiny", "method=inpaint", "train=[unet]", "data.name=shapes", "data.size=24",
            "validation.held_out=2", "steps=4", "batch_size=4", "lr=1e-3", "warmup=1", "mixed_precision=fp32",
            "sample_every=2", "checkpoint_every=2", "log_every=1", "sample.seeds=[0]", "sample.num_inference_steps=2"]


@pytest.fixture(scope="module")
def ip_run(tmp_path_factory, difflab_cache):
    from difflab.train.config import load_config
    from difflab.train.loop import train
    return train(load_config(None, IP_TRAIN), out=tmp_path_factory.mktemp("ip"), progress=False)


def test_a_new_inpainting_unet_is_the_base_unet_exactly(difflab_cache):
    """The 5 new input channels (mask, masked image's latents) start at zero: whatever they hold, the prediction is
    the base UNet's."""
    import diffusers
    from difflab.tiny import tiny_path
    from difflab.train.methods import inpainting_unet
    base = diffusers.UNet2DConditionModel.from_pretrained(tiny_path("tiny"), subfolder="unet")
    unet = inpainting_unet(base)
    g = torch.Generator().manual_seed(0)
    size = base.config.sample_size
    z, extra = torch.randn(2, 4, size, size, generator=g), torch.randn(2, 5, size, size, generator=g)
    context = torch.randn(2, 8, base.config.cross_attention_dim, generator=g)
    t = torch.tensor([10, 900])
    with torch.no_grad():
        ours, theirs = unet(torch.cat([z, extra], 1), t, context).sample, base(z, t, context).sample
    assert unet.config.in_channels == 9 and ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-5) and not torch.allclose(ours, torch.zeros_like(ours))
    assert inpainting_unet(unet) is unet   # an inpainting UNet is kept


def test_inpainting_masks_are_drawn_as_the_config_shares_them(difflab_cache):
    from difflab.shapes import world
    from difflab.train.config import DataConfig, InpaintConfig
    from difflab.train.data import inpaint_masks, shapes
    data = shapes(DataConfig(size=24), progress=False, regions=True)
    idx = torch.arange(24)

    def draw(cfg, seed=0):
        return inpaint_masks(data, idx, cfg, 64, torch.Generator().manual_seed(seed))

    masks, captions = draw(InpaintConfig(objects=1.0, boxes=0.0))
    for i, (m, caption) in enumerate(zip(masks, captions)):   # one colour-and-shape's objects, named by its words
        _, scene = world.item(i, "train")
        same = [mm for o, mm in zip(scene.objects, scene.masks) if caption == world.article(f"{o.colour} {o.shape}")]
        assert same and (m[0].numpy() > 0).tolist() == np.any(same, axis=0).tolist()
    masks, captions = draw(InpaintConfig(objects=0.0, boxes=1.0, min_box=0.25))
    assert captions == data.captions
    for m in masks[:, 0]:   # a filled rectangle, each side at least a quarter of the image
        rows, cols = np.nonzero(m.numpy())
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert m.sum() == h * w and h >= 16 and w >= 16
    masks, _ = draw(InpaintConfig(objects=0.0, boxes=0.0))
    assert masks.min() == 1   # the whole image: text-to-image
    a, b = draw(InpaintConfig(), seed=3), draw(InpaintConfig(), seed=3)
    assert torch.equal(a[0], b[0]) and a[1] == b[1] and not torch.equal(a[0], draw(InpaintConfig(), seed=4)[0])


def test_inpaint_training_writes_an_inpainting_model_that_reads_words_with_its_base(ip_run, sd, photo):
    from difflab.checkpoints import training_record
    model = ip_run / "model"
    assert json.loads((model / "model_index.json").read_text())["_class_name"] == "StableDiffusionInpaintPipeline"
    record = training_record(model / "unet")
    assert record["method"] == "inpaint" and record["base"]["name"] == "tiny" and record["step"] == 4
    metrics = [json.loads(x) for x in (ip_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "val_loss" in m] == [2, 4]
    # the sample grid's rows: a held-out image, its mask over it, the samples; outside the mask they keep the image
    step = ip_run / "samples" / "steps" / "step-0000004"
    assert sorted(p.name for p in step.glob("00-*")) == ["00-image.png", "00-mask.png", "00-seed-0.png"]
    trained = difflab.load(str(model), task="inpaint", progress=False)
    assert trained.pipe.unet.config.in_channels == 9
    words = trained.words_pipeline()   # masks from words come from the base model's text-to-image UNet
    assert words.unet.config.in_channels == 4
    assert torch.equal(words.unet.conv_in.weight, sd.pipe.unet.conv_in.weight)
    ours = control.mask_from_words(words, photo, "a red circle", refine="none", reference="a blue square")
    assert pixels(ours).tolist() == pixels(control.mask_from_words(sd.pipe, photo, "a red circle", refine="none",
                                                                   reference="a blue square")).tolist()
    out = difflab.generate(trained, task="inpaint", prompt="a blue square", image=photo, mask_from="a red circle",
                           mask_refine="none", keep_unmasked=True, **FAST)[0]
    keep = pixels(ours) == 0
    assert keep.any() and (pixels(out.image)[keep] == pixels(photo)[keep]).all()


def test_masks_from_words_need_a_base_for_an_inpainting_model(sd_inpaint, photo):
    with pytest.raises(InputError, match="mask_from: DiffEdit needs a text-to-image UNet .* no recorded base model"):
        difflab.generate(sd_inpaint, task="inpaint", prompt="a blue square", image=photo, mask_from="a red circle",
                         **FAST)


def test_a_stopped_inpaint_run_resumes_exactly(ip_run, tmp_path):
    from safetensors.torch import load_file
    from difflab.train.config import load_config
    from difflab.train.loop import train
    cfg = load_config(None, IP_TRAIN)
    cut = train(cfg, out=tmp_path, progress=False, stop_after=3)
    assert not (cut / "model").exists()
    train(cfg, out=tmp_path, progress=False, resume=cut)
    a = load_file(ip_run / "model" / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(cut / "model" / "unet" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("overrides, message", [
    (["train=[text_encoder]"], r"train: \['text_encoder'\]; method inpaint trains the unet"),
    (["inpaint.objects=0.9", "inpaint.boxes=0.2"], r"inpaint.objects \+ inpaint.boxes: 0.9 \+ 0.2 is over 1"),
    (["inpaint.boxes=-0.1"], r"inpaint.boxes: -0.1 is not allowed; use a share in \[0, 1\]"),
    (["data.name=folder", "data.folder=x"], r"inpaint.objects: 0.7 needs the shapes world's object masks"),
    (["data.flip=true"], r"data.flip: true would flip the images but not the objects' masks"),
    (["validation.held_out=0"], r"validation.held_out: method inpaint draws its sample grid from held-out"),
])
def test_bad_inpaint_configs_are_refused_with_the_field(overrides, message):
    from difflab.train.config import load_config
    with pytest.raises(InputError, match=message):
        load_config(None, IP_TRAIN + overrides)


def test_from_remakes_an_inpainted_image_from_its_recorded_input(tmp_path, photo, capsys):
    """`generate --from` of an inpainting (its mask from words): the recorded input image is found again by its hash;
    changed on disk, it is refused."""
    source = tmp_path / "in.png"
    photo.save(source)
    assert main(["inpaint", "--model", "tiny", "--image", str(source), "--mask-from", "red circle", "--prompt",
                 "a blue square", "--steps", "3", "--seed", "4", "--out", str(tmp_path / "a")]) == 0
    (first,) = (tmp_path / "a").glob("*/0000-4.png")
    assert main(["generate", "--from", str(first), "--out", str(tmp_path / "b")]) == 0
    (again,) = (tmp_path / "b").glob("*/0000-4.png")
    assert (pixels(Image.open(first)) == pixels(Image.open(again))).all()
    ImageChops.invert(photo).save(source)
    capsys.readouterr()
    assert main(["generate", "--from", str(first), "--out", str(tmp_path / "c")]) == 2
    assert "image: the input" in capsys.readouterr().err and not (tmp_path / "c").exists()
