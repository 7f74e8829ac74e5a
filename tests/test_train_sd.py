"""The Stable Diffusion trainer: strict configs, the two stages of the shapes model on a quick config, a genuine
diffusers folder at the end, and an exact resume."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import difflab
from difflab.train.config import load_config
from difflab.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
VAE = ROOT / "configs" / "shapes" / "quick_vae.yaml"
UNET = ROOT / "configs" / "shapes" / "quick_unet.yaml"
SMALL = ["data.size=96", "batch_size=8", "steps=12", "log_every=1", "checkpoint_every=4", "sample_every=12"]


@pytest.mark.parametrize("overrides, message", [
    (["stepz=3"], "stepz"),
    (["train=[vae, unet]"], "train: the VAE is trained alone"),
    (["data.size=0"], "data.size: 0"),
    (["architecture.image_size=66"], "architecture.image_size: 66 is not divisible by the VAE factor 4"),
    (["mixed_precision=fp8"], "mixed_precision: 'fp8'"),
    (["fresh=[vae]", "base=tiny"], "fresh:"),
])
def test_bad_configs_name_the_key(overrides, message):
    with pytest.raises(difflab.InputError, match=message):
        load_config(VAE, overrides)


def _losses(run):
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, difflab_cache):
    return train(load_config(VAE, SMALL + ["steps=24", "sample_every=24"]), out=tmp_path_factory.mktemp("vae"),
                 progress=False)


def test_the_vae_stage_learns_and_writes_a_model_folder(vae_run, capsys):
    from difflab.cli import main

    assert main(["runs", str(vae_run.parent)]) == 0
    (row,) = capsys.readouterr().out.splitlines()[1:]
    assert row.split()[1] == "train" and row.split()[-3:] == ["24/24", "0", "complete"] and "train vae" in row
    losses = _losses(vae_run)
    assert len(losses) == 24 and sum(losses[-4:]) < 0.8 * sum(losses[:4])
    config = json.loads((vae_run / "model" / "vae" / "config.json").read_text())
    assert config["latent_channels"] == 4 and 0.05 < config["scaling_factor"] < 50
    assert (vae_run / "samples" / "step-0000024.png").is_file()
    assert json.loads((vae_run / "run.json").read_text())["status"] == "complete"
    recorded = (vae_run / "config.yaml").read_text()
    assert "mixed_precision: fp32" in recorded or "mixed_precision: bf16" in recorded  # auto, resolved here
    from diffusers import AutoencoderKL

    params = sum(p.numel() for p in AutoencoderKL.from_pretrained(vae_run / "model" / "vae").parameters())
    probes = json.loads((difflab.runs.cache_root() / "precision.json").read_text())
    assert any(key.endswith(f"train vae, {params} parameters, batch 8") for key in probes), probes  # this model


def test_auto_precision_times_the_step_it_is_given_once_and_remembers(tmp_path, monkeypatch):
    import time

    from difflab import precision

    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path))
    calls = []

    def step(bf16):   # a model whose bf16 step is slower here
        calls.append(bf16)
        time.sleep(0.02 if bf16 else 0.005)

    assert precision.training_precision("auto", "cpu", "model A", step) == "fp32"
    assert len(calls) == 4 and calls.count(True) == 2                  # warm-up + 1 decisive round (4x slower)
    assert precision.training_precision("auto", "cpu", "model A", step) == "fp32" and len(calls) == 4  # cached
    assert precision.training_precision("auto", "cpu", "model B", lambda bf16: time.sleep(0.005 if bf16 else 0.02)) \
        == "bf16"                                                        # another model: its own probe
    assert precision.training_precision("bf16", "cpu", "model A", step) == "bf16"  # asked for: no probe


def test_the_unet_stage_makes_a_genuine_diffusers_model(vae_run, tmp_path):
    from diffusers import StableDiffusionPipeline

    run = train(load_config(UNET, SMALL + [f"base={vae_run / 'model'}"]), out=tmp_path, progress=False)
    assert _losses(run)[-1] < _losses(run)[0]
    pipe = StableDiffusionPipeline.from_pretrained(run / "model")  # plain diffusers
    assert pipe.tokenizer.convert_ids_to_tokens(pipe.tokenizer("a red circle").input_ids)[1:4] == \
        ["a</w>", "red</w>", "circle</w>"]
    model = difflab.load(str(run / "model"), progress=False)
    for task, extra in (("text2img", {}), ("img2img", {"image": difflab.samples.sample_photo("china", 64)}),
                        ("inpaint", {"image": difflab.samples.sample_photo("china", 64), "boxes": [(8, 8, 40, 40)]})):
        out = difflab.generate(model, task=task, prompt="a red circle", num_inference_steps=4, seed=1,
                               scheduler="dpm++_2m_karras", **extra)[0]
        assert out.image.size == (64, 64) and out.record["task"] == task


def test_a_stopped_run_resumes_to_exactly_the_uninterrupted_result(vae_run, tmp_path):
    cfg = load_config(UNET, SMALL + [f"base={vae_run / 'model'}"])
    whole = train(cfg, out=tmp_path / "whole", progress=False)
    cut = train(cfg, out=tmp_path / "cut", progress=False, stop_after=6)   # as if killed after step 6
    assert not (cut / "model").exists() and len(_losses(cut)) == 6
    resumed = train(cfg, out=tmp_path / "cut", progress=False, resume=cut)  # continues from step 4's checkpoint
    assert resumed == cut and _losses(cut) == _losses(whole)
    for name in ("model", "ema"):
        a = load_file(whole / "checkpoints" / "step-0000012" / f"{name}.safetensors")
        b = load_file(cut / "checkpoints" / "step-0000012" / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    from difflab.cli import main

    assert main(["train-sd", str(VAE), "--set", "data.size=0", "--out", str(tmp_path)]) == 2
    assert main(["train-sd", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "data.size: 0" in err[0] and "not a training run folder" in err[1]
    assert not list(tmp_path.iterdir())
