"""Loading: model sources, the tiny build, LoRA and textual inversion, and real weights (marked slow)."""

import json

import numpy as np
import pytest
import torch
from helpers import pixels
from safetensors.torch import load_file, save_file

import difflab
from difflab import InputError
from difflab.pipelines import resolve_source
from difflab.tiny import build_tiny, tiny_path


def test_tiny_is_built_deterministically_and_loaded_from_its_folder(sd, tmp_path):
    build_tiny("tiny", tmp_path / "again")
    for part in ("unet", "vae", "text_encoder"):
        name = next((tmp_path / "again" / part).glob("*.safetensors")).name
        ours, theirs = load_file(tmp_path / "again" / part / name), load_file(tiny_path("tiny") / part / name)
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert sd.source.kind == "tiny" and (tiny_path("tiny") / "model_index.json").is_file()
    assert type(sd.pipe).__name__ == "StableDiffusionPipeline"  # a genuine diffusers pipeline
    assert sd.pipe.tokenizer.model_max_length == 77 and len(sd.pipe.tokenizer) == 514
    unet = json.loads((tiny_path("tiny-inpaint") / "unet" / "config.json").read_text())
    assert unet["in_channels"] == 9


def test_local_folder_loads_like_tiny(sd, tmp_path):
    sd.pipe.save_pretrained(tmp_path / "my-model")
    model = difflab.load(str(tmp_path / "my-model"), progress=False)
    assert model.source.kind == "folder" and model.describe()["name"] == "my-model"
    a = difflab.generate(model, prompt="x", seed=0, num_inference_steps=3, scheduler="ddim")[0]
    b = difflab.generate(sd, prompt="x", seed=0, num_inference_steps=3, scheduler="ddim")[0]
    assert (pixels(a.image) == pixels(b.image)).all()
    assert a.record["model"]["hash"] == b.record["model"]["hash"]  # same UNet weights, same hash


def _file(path, data=b"x"):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("setup,message", [
    (lambda p: p / "nope", r"model: '.*nope' does not exist; give a hub id"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "has no model_index.json"),
    (lambda p: _file(p / "m.ckpt"), "is a pickle checkpoint"),
    (lambda p: _file(p / "m.txt"), "is not a .safetensors checkpoint"),
])
def test_bad_model_paths(tmp_path, setup, message):
    with pytest.raises(InputError, match=message):
        resolve_source(str(setup(tmp_path)))


def test_hub_id_offline_fails_at_once_with_advice():
    with pytest.raises(InputError) as err:
        difflab.load("someone/not-downloaded-model")
    text = str(err.value)
    assert "not in the local Hugging Face cache" in text and "hf download someone/not-downloaded-model" in text
    assert resolve_source("tiny").kind == "tiny"


def test_single_file_without_configs_offline_says_what_to_pass(tmp_path):
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)}, tmp_path / "m.safetensors")
    with pytest.raises(InputError, match=r"model: could not load .*m.safetensors.*config"):
        difflab.load(str(tmp_path / "m.safetensors"), progress=False)


def make_lora(sd, path):
    """A LoRA for the tiny UNet's attention projections, with non-zero weights so that it changes outputs."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    unet = type(sd.pipe.unet).from_config(sd.pipe.unet.config)
    unet.load_state_dict(sd.pipe.unet.state_dict())
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                init_lora_weights=False))
    torch.manual_seed(0)
    StableDiffusionPipeline.save_lora_weights(path, unet_lora_layers=get_peft_model_state_dict(unet),
                                              safe_serialization=True)
    return path


def test_lora_changes_output_and_scale_zero_restores_base(sd, tmp_path):
    lora_dir = make_lora(sd, tmp_path / "lora")
    model = difflab.load("tiny", lora=str(lora_dir), progress=False)
    base = difflab.generate(sd, prompt="x", seed=0, num_inference_steps=3)[0]
    full = difflab.generate(model, prompt="x", seed=0, num_inference_steps=3, lora_scale=1.0)[0]
    off = difflab.generate(model, prompt="x", seed=0, num_inference_steps=3, lora_scale=0.0)[0]
    assert np.abs(pixels(full.image) - pixels(base.image)).mean() > 1
    assert np.abs(pixels(off.image) - pixels(base.image)).max() <= 1
    assert full.record["model"]["lora"][0]["path"] == str(lora_dir.resolve())
    assert "Lora scale: 1.0" in full.infotext


def test_textual_inversion_adds_a_token(sd, tmp_path):
    torch.manual_seed(0)
    save_file({"<fox-style>": torch.randn(32) * 5}, tmp_path / "fox.safetensors")
    model = difflab.load("tiny", textual_inversion=str(tmp_path / "fox.safetensors"), progress=False)
    assert "<fox-style>" in model.pipe.tokenizer.get_vocab()
    with_token = difflab.generate(model, prompt="a <fox-style> cat", seed=0, num_inference_steps=3)[0]
    without = difflab.generate(model, prompt="a cat", seed=0, num_inference_steps=3)[0]
    assert (pixels(with_token.image) != pixels(without.image)).any()
    assert with_token.record["model"]["textual_inversion"][0]["path"].endswith("fox.safetensors")
    with pytest.raises(InputError, match="textual_inversion: could not load"):
        difflab.load("tiny", textual_inversion=str(tmp_path / "missing.safetensors"), progress=False)


@pytest.mark.slow
def test_real_stable_diffusion_15_from_the_hub(tmp_path):
    model = difflab.load("stable-diffusion-v1-5/stable-diffusion-v1-5")
    out = difflab.generate(model, prompt="a photo of an astronaut riding a horse", seed=0, num_inference_steps=20)[0]
    assert out.image.size == (512, 512) and pixels(out.image).std() > 20
    again = difflab.regenerate(difflab.read_metadata(out.save(tmp_path / "a.png"))["difflab"], model)
    assert (pixels(again.image) == pixels(out.image)).all()
