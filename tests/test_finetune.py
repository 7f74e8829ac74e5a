"""Fine-tuning on the one training loop (tiny model, a few steps): DreamBooth-LoRA with prior preservation, its
diffusers and kohya files, LoRA weights at generation time, textual inversion, full fine-tuning, exact resume, and
bad input (one line, exit 2, nothing written)."""

import json

import numpy as np
from PIL import Image
import pytest
import torch
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import difflab
from difflab import metadata
from difflab.cli import main
from difflab.shapes import judge, world
from difflab.train.config import load_config
from difflab.train.loop import train
from difflab.checkpoints import training_record

QUICK = ["base=tiny", "batch_size=2", "lr=1e-3", "warmup=1", "ema_decay=0", "mixed_precision=fp32",
         "log_every=1", "snr_gamma=null", "sample.seeds=[0]", "sample.num_inference_steps=3",
         "data.caption_dropout=0"]
DREAMBOOTH = ["name=heart-lora", "method=dreambooth", "data.name=folder", "data.instance_prompt=a sks shape",
              "dreambooth.class_prompt=[a shape, two red circles]", "dreambooth.class_images=2",
              "dreambooth.class_steps=3",
              "validation.held_out=1", "lora.alpha=8", "lora.targets=[to_q, to_k, to_v, to_out.0, conv1, proj_in]", "steps=4", "sample_every=2", "checkpoint_every=2",
              "sample.prompts=[a sks shape, a red sks shape]"]


def _pixels(model, prompt="a sks shape", **kw):
    out = difflab.generate(model, prompt=prompt, seed=3, num_inference_steps=3, **kw)[0]
    return np.asarray(out.image).astype(int), out


@pytest.fixture(scope="module")
def hearts(tmp_path_factory, difflab_cache):
    return world.write_folder(tmp_path_factory.mktemp("hearts"), "a heart", 5)[0].parent


@pytest.fixture(scope="module")
def lora_run(hearts, tmp_path_factory):
    cfg = load_config(None, QUICK + DREAMBOOTH + [f"data.folder={hearts}"])
    return train(cfg, out=tmp_path_factory.mktemp("runs"), progress=False)


def test_shapes_folder_writes_captioned_renders_the_judge_recognises(hearts):
    images = sorted(hearts.glob("*.png"))
    assert len(images) == 5 and len(list(hearts.glob("*.txt"))) == 5
    for path in images:
        caption = path.with_suffix(".txt").read_text().strip()
        assert caption.endswith(" heart")
        verdict = judge.judge(Image.open(path), world.parse(caption))
        assert verdict["correct"], (path, caption, verdict)


def test_dreambooth_lora_writes_both_formats_with_its_record(lora_run, hearts):
    lora = lora_run / "lora"
    record = training_record(lora)
    assert record["method"] == "dreambooth" and record["base"]["name"] == "tiny" and len(record["base"]["hash"]) == 64
    assert record["config"]["data"]["folder"] == str(hearts) and len(record["data_sha256"]) == 64
    diffusers_keys = load_file(lora / "pytorch_lora_weights.safetensors").keys()
    assert diffusers_keys and all(k.startswith("unet.") and ".lora." in k or "lora_A" in k or "lora_B" in k
                                  for k in diffusers_keys)
    kohya = load_file(lora / "heart-lora.kohya.safetensors") if (lora / "heart-lora.kohya.safetensors").exists() \
        else load_file(next(lora.glob("*.kohya.safetensors")))
    assert all(k.startswith("lora_unet_") for k in kohya)
    alphas = [v.item() for k, v in kohya.items() if k.endswith(".alpha")]
    assert alphas and set(alphas) == {8.0}   # the config's alpha, not the converter's default (the rank)
    assert len(kohya) == len(diffusers_keys) * 3 // 2   # down, up and alpha per adapted layer
    with safe_open(str(next(lora.glob("*.kohya.safetensors"))), "pt") as f:
        assert json.loads(f.metadata()["difflab"])["method"] == "dreambooth"


def test_dreambooth_reads_each_images_caption_when_they_name_the_identifier(hearts, lora_run, tmp_path, capsys):
    called = tmp_path / "called"
    assert main(["shapes-folder", str(called), "--prompt", "a heart", "--n", "5", "--call", "sks shape"]) == 0
    for path in sorted(called.glob("*.png")):   # the same renders, each shape called by the identifier
        assert path.read_bytes() == (hearts / path.name).read_bytes()
        colour = path.with_suffix(".txt").read_text().split()[1]
        assert path.with_suffix(".txt").read_text() == (hearts / path.name).with_suffix(".txt").read_text().replace(
            "heart", "sks shape") == f"a {colour} sks shape\n"
    captioned = QUICK + DREAMBOOTH + ["data.instance_prompt=null", "dreambooth.class_images=0", "steps=1"]
    run = train(load_config(None, captioned + [f"data.folder={called}"]), out=tmp_path / "runs", progress=False)
    digest = training_record(run / "lora")["data_sha256"]   # over the images and the captions trained on
    assert len(digest) == 64 and digest != training_record(lora_run / "lora")["data_sha256"]
    with pytest.raises(difflab.InputError, match=r"000.png' \('a \w+ heart'\) does not hold the identifier 'sks'"):
        train(load_config(None, captioned + [f"data.folder={hearts}"]), out=tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())
    capsys.readouterr()
    assert main(["shapes-folder", str(tmp_path / "none"), "--call", " "]) == 2
    assert "call: ' ' is not allowed" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_validation_loss_and_the_grid_over_steps(lora_run):
    lines = [json.loads(x) for x in (lora_run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    val = [x.get("val_loss") for x in lines]
    assert val[0] is None and val[2] is None and 0 < val[1] < 10 and 0 < val[3] < 10 and val[1] != val[3]
    from PIL import Image
    grid = Image.open(lora_run / "samples" / "over-steps.png")
    step2 = Image.open(lora_run / "samples" / "steps" / "step-0000002" / "00-seed-0.png")
    assert sorted(p.name for p in (lora_run / "samples" / "steps").iterdir()) == ["step-0000002", "step-0000004"]
    assert grid.width > 2 * step2.width and grid.height > 2 * step2.height   # 2 prompts x 2 steps, labelled


def test_class_images_are_the_base_models_own_recorded_and_cached(lora_run, difflab_cache):
    (folder,) = (difflab_cache / "class-images").iterdir()
    images = sorted(folder.glob("*.png"))
    assert len(images) == 2
    for seed, (path, prompt) in enumerate(zip(images, ["a shape", "two red circles"])):   # prompt i mod n, seed i
        rec = metadata.read(path)["difflab"]
        assert rec["prompt"] == prompt and rec["seed"] == seed and rec["model"]["name"] == "tiny"
        assert path.with_suffix(".txt").read_text().strip() == prompt   # the caption it is trained with


def test_kohya_and_diffusers_files_give_the_same_pixels_and_weights_scale_them(lora_run, tmp_path, capsys):
    lora = lora_run / "lora"
    kohya = next(lora.glob("*.kohya.safetensors"))
    base, _ = _pixels(difflab.load("tiny", progress=False))
    with_diffusers, with_kohya = (difflab.load("tiny", lora=str(path), progress=False) for path in (lora, kohya))
    for m in (with_diffusers, with_kohya):   # every adapter of the file is in the model (attention and convolutions)
        loaded = get_peft_model_state_dict(m.pipe.unet, adapter_name="lora0")
        assert len(loaded) == len(load_file(lora / "pytorch_lora_weights.safetensors"))
        assert any("conv1" in k for k in loaded) and any("attn2.to_k" in k for k in loaded)
    a, _ = _pixels(with_diffusers)
    b, _ = _pixels(with_kohya)
    assert np.array_equal(a, b) and not np.array_equal(a, base)
    zero, _ = _pixels(difflab.load("tiny", lora=f"{lora}:0", progress=False))
    assert np.array_equal(zero, base)   # weight 0: the adapters add nothing
    two = difflab.load("tiny", lora=[f"{lora}:0.5", f"{kohya}:0.25"], progress=False)
    c, out = _pixels(two)
    assert not np.array_equal(c, a) and not np.array_equal(c, base)
    used = out.record["model"]["lora"]
    assert [(x["weight"], x["name"], x.get("method")) for x in used] == [(0.5, "heart-lora", "dreambooth"),
                                                                         (0.25, "heart-lora", "dreambooth")]
    assert out.infotext.splitlines()[0] == "a sks shape <lora:heart-lora:0.5> <lora:heart-lora:0.25>"
    assert 'Lora hashes: "heart-lora: ' in out.infotext
    assert metadata.parse_infotext(out.infotext)["loras"] == [("heart-lora", 0.5), ("heart-lora", 0.25)]
    assert np.array_equal(np.asarray(difflab.regenerate(out.record).image).astype(int), c)   # --from
    path = out.save(tmp_path / "x.png")
    assert main(["info", str(path)]) == 0
    assert "<lora:heart-lora:0.5>" in capsys.readouterr().out


def test_a_text_encoder_lora_is_saved_and_loaded_in_both_formats(hearts, tmp_path):
    cfg = load_config(None, QUICK + DREAMBOOTH + [f"data.folder={hearts}", "lora.text_encoder=true",
                                                  "dreambooth.class_images=0", "steps=2"])
    lora = train(cfg, out=tmp_path, progress=False) / "lora"
    saved = load_file(lora / "pytorch_lora_weights.safetensors")
    text = [k for k in saved if k.startswith("text_encoder.")]
    assert text and all("_proj.lora_" in k for k in text)
    kohya = next(lora.glob("*.kohya.safetensors"))
    assert sum(k.startswith("lora_te_text_model_encoder_layers_") for k in load_file(kohya)) == len(text) * 3 // 2
    pixels = []
    for path in (lora, kohya):
        model = difflab.load("tiny", lora=str(path), progress=False)
        assert len(get_peft_model_state_dict(model.pipe.text_encoder, adapter_name="lora0")) == len(text)
        pixels.append(_pixels(model)[0])
    assert np.array_equal(*pixels) and not np.array_equal(pixels[0], _pixels(difflab.load("tiny", progress=False))[0])


def test_a_stopped_lora_run_resumes_exactly(hearts, lora_run, tmp_path):
    cfg = load_config(None, QUICK + DREAMBOOTH + [f"data.folder={hearts}"])
    cut = train(cfg, out=tmp_path, progress=False, stop_after=3)   # killed after step 3: resumes from step 2
    assert not (cut / "lora").exists()
    train(cfg, out=tmp_path, progress=False, resume=cut)
    a = load_file(lora_run / "lora" / "pytorch_lora_weights.safetensors")
    b = load_file(cut / "lora" / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [json.loads(x)["loss"] for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert losses == [json.loads(x)["loss"] for x in (lora_run / "metrics.jsonl").read_text().splitlines()]
    ckpt = load_file(cut / "checkpoints" / "step-0000004" / "model.safetensors")
    assert ckpt and all(".lora_" in k for k in ckpt)   # checkpoints hold the adapters, not the frozen model


def test_textual_inversion_trains_one_new_embedding(hearts, tmp_path):
    cfg = load_config(None, QUICK + ["method=textual_inversion", "data.name=folder", f"data.folder={hearts}",
                                     "data.instance_prompt=a <heart> shape", "textual_inversion.token=<heart>",
                                     "textual_inversion.initializer=shape", "steps=3", "lr=0.05",
                                     "sample_every=3", "sample.prompts=[a <heart> shape]"])
    run = train(cfg, out=tmp_path, progress=False)
    learned = load_file(run / "embedding" / "learned_embeds.safetensors")
    assert list(learned) == ["<heart>"] and learned["<heart>"].shape == (1, 32)
    base = difflab.load("tiny", progress=False)
    table = base.pipe.text_encoder.get_input_embeddings().weight
    start = table[base.pipe.tokenizer.encode("shape", add_special_tokens=False)].mean(dim=0)  # its initializer
    assert not torch.allclose(learned["<heart>"][0], start)   # it moved from its initializer
    ckpt = load_file(run / "checkpoints" / "step-0000003" / "model.safetensors")
    (key,) = ckpt
    changed = (ckpt[key] != table.detach()).any(dim=1)
    assert changed.nonzero().flatten().tolist() == [len(base.pipe.tokenizer)]   # only the new token's row
    with_ti = difflab.load("tiny", textual_inversion=str(run / "embedding"), progress=False)
    a, _ = _pixels(with_ti, "a <heart> shape")
    b, _ = _pixels(base, "a <heart> shape")
    assert not np.array_equal(a, b)


def test_full_fine_tuning_with_jsonl_captions_writes_a_recorded_diffusers_folder(hearts, tmp_path):
    from diffusers import StableDiffusionPipeline

    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for i, path in enumerate(sorted(hearts.glob("*.png"))[:3]):
        (data / f"img{i}.png").write_bytes(path.read_bytes())
        rows.append(json.dumps({"file_name": f"img{i}.png", "text": f"heart number {i}"}))
    (data / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    cfg = load_config(None, QUICK + ["method=full", "train=[unet]", "data.name=folder", f"data.folder={data}",
                                     "data.crop=random", "data.flip=true", "steps=2", "sample_every=2",
                                     "sample.prompts=[heart number 1]"])
    run = train(cfg, out=tmp_path / "runs", progress=False)
    pipe = StableDiffusionPipeline.from_pretrained(run / "model")
    base = difflab.load("tiny", progress=False).pipe
    assert not torch.equal(pipe.unet.conv_in.weight, base.unet.conv_in.weight)
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight,
                       base.text_encoder.get_input_embeddings().weight)   # not trained
    record = training_record(run / "model" / "unet")
    assert record["method"] == "full" and record["base"]["name"] == "tiny"


def _image(path, size=64):
    from PIL import Image
    Image.new("RGB", (size, size), (200, 40, 40)).save(path)
    return path


@pytest.mark.parametrize("make, overrides, message", [
    (lambda d: None, [], "holds no images"),
    (lambda d: (_image(d / "a.png"), (d / "notes.doc").write_text("x")), [], "notes.doc' is not an image"),
    (lambda d: (_image(d / "a.png"), (d / "b.txt").write_text("x")), [], "b.txt' has no image beside it"),
    (lambda d: _image(d / "a.png", 40), [], "a.png' is 40x40, smaller than the model's 64x64"),
    (lambda d: (d / "a.png").write_text("not a png"), [], "a.png' is not a readable image"),
    (lambda d: _image(d / "a.png"), ["data.instance_prompt=null"], "a.png' has no caption"),
])
def test_bad_folders_are_one_line_exit_2_and_nothing_written(tmp_path, capsys, make, overrides, message):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    make(data)
    (tmp_path / "config.yaml").write_text("name: bad\n")
    args = ["finetune", str(tmp_path / "config.yaml"), "--out", str(out), "--no-progress"]
    for o in QUICK + ["method=lora", "data.name=folder", f"data.folder={data}", "data.instance_prompt=a red shape",
                      "steps=1"] + overrides:
        args += ["--set", o]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not list(out.iterdir())


@pytest.mark.parametrize("overrides, message", [
    (["method=dreambooth", "data.instance_prompt=a heart"], "data.instance_prompt: 'a heart' does not hold the "
                                                             "identifier 'sks'"),
    (["method=lora", "lora.rank=0"], "lora.rank: 0"),
    (["method=lora", "data.name=shapes"], "data.name: shapes"),
    (["method=lora", "base=null"], "base: method lora"),
    (["method=dreambooth", "data.instance_prompt=a sks shape", "dreambooth.class_images=4"], "class_prompt"),
    (["method=dreambooth", "data.instance_prompt=a sks shape", "dreambooth.class_images=4",
      "dreambooth.class_prompt=[a shape, '']"], "class_prompt"),
    (["method=textual_inversion", "textual_inversion.token=two words"], "textual_inversion.token"),
])
def test_bad_fine_tuning_configs_name_the_key(overrides, message, tmp_path):
    with pytest.raises(difflab.InputError, match=message):
        load_config(None, QUICK + ["data.name=folder", f"data.folder={tmp_path}"] + overrides)


def test_a_lora_for_another_architecture_is_refused_at_load(lora_run, tmp_path, capsys):
    tensors = load_file(lora_run / "lora" / "pytorch_lora_weights.safetensors")
    wrong = {k: torch.zeros(v.shape[0], v.shape[1] + 3) if "down" in k or "lora_A" in k else v for k, v in tensors.items()}
    save_file(wrong, tmp_path / "wrong.safetensors")
    assert main(["generate", "--model", "tiny", "--prompt", "x", "--steps", "2", "--out", str(tmp_path / "out"),
                 "--lora", str(tmp_path / "wrong.safetensors")]) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if "error" in x.lower()]   # the rest is the loading progress bars
    assert len(lines) == 1 and "do not fit this model's layers" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    save_file({"unet.nowhere.lora_A.weight": torch.zeros(4, 8), "unet.nowhere.lora_B.weight": torch.zeros(8, 4)},
              tmp_path / "none.safetensors")
    with pytest.raises(difflab.InputError, match="adapts no layer|could not load"):
        difflab.load("tiny", lora=str(tmp_path / "none.safetensors"), progress=False)


@pytest.mark.parametrize("args, message", [(["--n", "0"], "n: 0 is not allowed"),
                                           (["--prompt", "a dragon"], "prompt: 'a dragon' is not in the shapes")])
def test_shapes_folder_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    assert main(["shapes-folder", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not (tmp_path / "out").exists()
