"""Metadata: A1111 infotext and JSON in the PNG, read back, and the image regenerated from its file alone."""

import json

import numpy as np
from helpers import pixels
from PIL import Image

import difflab
from difflab import metadata
from difflab.cli import main


def record(**over):
    base = {"prompt": "a cat, sitting", "negative_prompt": "blurry", "num_inference_steps": 20, "sampler": "DDIM",
            "guidance_scale": 7.5, "seed": 1234, "width": 512, "height": 512,
            "model": {"name": "sd15", "hash": "abcdef0123456789"}, "strength": None}
    return {**base, **over}


def test_infotext_is_automatic1111_format():
    assert metadata.infotext(record()) == (
        "a cat, sitting\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: DDIM, CFG scale: 7.5, Seed: 1234, Size: 512x512, Model hash: abcdef0123, Model: sd15")
    img2img = metadata.infotext(record(negative_prompt="", strength=0.75, width=768))
    assert img2img.splitlines()[0] == "a cat, sitting" and "Negative prompt" not in img2img
    assert img2img.endswith("Size: 768x512, Model hash: abcdef0123, Model: sd15, Denoising strength: 0.75")


def test_infotext_quotes_values_with_commas_and_parses_back():
    text = metadata.infotext(record(model={"name": "my, model: v2", "hash": None}, strength=0.5))
    assert 'Model: "my, model: v2"' in text
    parsed = metadata.parse_infotext(text)
    assert parsed["prompt"] == "a cat, sitting" and parsed["negative_prompt"] == "blurry"
    assert parsed["Model"] == "my, model: v2" and parsed["Steps"] == "20" and parsed["Denoising strength"] == "0.5"


def test_png_round_trip_of_a_generated_image(sd, tmp_path):
    out = difflab.generate(sd, prompt="a red fox ünïcode", seed=11, num_inference_steps=3)[0]
    path = out.save(tmp_path / "fox.png")
    meta = difflab.read_metadata(path)
    assert meta["parameters"] == out.infotext
    assert meta["parameters"].startswith("a red fox ünïcode\nSteps: 3, Sampler: DDIM, CFG scale: 7.5, Seed: 11, "
                                         "Size: 64x64, Model hash: ")
    rec = meta["difflab"]
    assert rec["seed"] == 11 and rec["model"]["name"] == "tiny" and rec["model"]["kind"] == "tiny"
    assert rec["dtype"] == "float32" and rec["device"] == "cpu" and rec["elapsed_s"] > 0
    assert set(rec["versions"]) == {"difflab", "diffusers", "torch", "transformers"}
    assert rec["scheduler_config"]["_class_name"] == "DDIMScheduler"
    assert len(rec["model"]["hash"]) == 64
    assert (pixels(Image.open(path)) == pixels(out.image)).all()  # PNG is lossless
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind


def test_regenerate_from_file_is_bit_identical_for_batch_members(sd, tmp_path):
    batch = difflab.generate(sd, prompt="a lighthouse", seed=20, num_images=3, num_inference_steps=4,
                             scheduler="euler_a")
    path = batch[2].save(tmp_path / "b.png")
    again = difflab.regenerate(difflab.read_metadata(path)["difflab"])
    assert again.record["seed"] == 22
    assert (pixels(again.image) == pixels(Image.open(path))).all()


def test_regenerate_inpaint_from_file_uses_the_recorded_input(sd, photo_file, tmp_path):
    out = difflab.generate(sd, task="inpaint", prompt="a green dragon", image=photo_file,
                           boxes=[(0.25, 0.25, 0.75, 0.75)], mask_blur=1.5, seed=3, num_inference_steps=4)[0]
    assert out.record["inputs"]["image"]["path"] == str(photo_file.resolve())
    path = out.save(tmp_path / "inpaint.png")
    again = difflab.regenerate(difflab.read_metadata(path)["difflab"])
    assert (pixels(again.image) == pixels(Image.open(path))).all()


def test_cli_generate_from_image_regenerates_it(sd, tmp_path, capsys):
    assert main(["generate", "--model", "tiny", "--prompt", "a tower", "--seed", "5", "--steps", "3",
                 "--num-images", "2", "--out", str(tmp_path / "a")]) == 0
    first = sorted((tmp_path / "a").glob("*/0001-6.png"))[0]
    assert main(["generate", "--from", str(first), "--out", str(tmp_path / "b")]) == 0
    second = sorted((tmp_path / "b").glob("*/*.png"))
    assert len(second) == 1 and second[0].name == "0000-6.png"
    assert (pixels(Image.open(first)) == pixels(Image.open(second[0]))).all()
    # a flag given next to --from overrides that parameter only
    assert main(["generate", "--from", str(first), "--steps", "4", "--out", str(tmp_path / "c")]) == 0
    third = sorted((tmp_path / "c").glob("*/*.png"))[0]
    rec = difflab.read_metadata(third)["difflab"]
    assert rec["num_inference_steps"] == 4 and rec["seed"] == 6 and rec["prompt"] == "a tower"


def test_cli_info_prints_infotext_and_json(sd, tmp_path, capsys):
    out = difflab.generate(sd, prompt="a boat", seed=1, num_inference_steps=2)[0]
    path = out.save(tmp_path / "boat.png")
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(out.infotext + "\n\n{")
    assert main(["info", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 1
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    assert main(["info", str(tmp_path / "plain.png")]) == 2
    assert "carries no Stable Diffusion parameters" in capsys.readouterr().err


def test_info_reads_automatic1111_images(tmp_path, capsys):
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512")
    Image.new("RGB", (8, 8)).save(tmp_path / "a1111.png", pnginfo=info)
    assert main(["info", str(tmp_path / "a1111.png")]) == 0
    assert "Sampler: Euler a" in capsys.readouterr().out
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a1111.png")), np.zeros((8, 8, 3), np.uint8))


def test_generate_from_uses_the_recorded_cpu_thread_count(sd, tmp_path, capsys):
    import torch

    own = torch.get_num_threads()
    out = difflab.generate(sd, prompt="a lighthouse at dusk", seed=3, num_inference_steps=6, height=96, width=96)[0]
    assert out.record["cpu_threads"] == own
    path = out.save(tmp_path / "a.png")
    other = 1 if own > 1 else 2  # another machine's default
    torch.set_num_threads(other)
    try:
        capsys.readouterr()
        assert main(["generate", "--from", str(path), "--out", str(tmp_path / "b")]) == 0
        assert f"running on {own} CPU threads, as recorded in {path}" in capsys.readouterr().err
        assert torch.get_num_threads() == other  # put back afterwards
    finally:
        torch.set_num_threads(own)
    (again,) = (tmp_path / "b").glob("*/*.png")
    assert (pixels(Image.open(again)) == pixels(Image.open(path))).all()
