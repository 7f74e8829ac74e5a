"""The from-scratch DDPM: network, data, training loop, checkpoints and resume, sampling and evaluation."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from difflab import InputError
from difflab.cli import main
from difflab.ddpm.data import DataConfig, _ArraysOnly, batch_indices, load_dataset
from difflab.ddpm.config import load_config
from difflab.ddpm.train import train
from difflab.ddpm.unet import UNet, UNetConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.image_size=8", "model.image_size=8", "model.in_channels=1", "model.channels=16",
        "model.channel_mult=[1, 2]", "model.num_res_blocks=1", "model.attention_resolutions=[4]",
        "model.num_groups=8", "model.dropout=0.1", "diffusion.timesteps=50", "sample.steps=5", "sample.per_class=2",
        "steps=20", "batch_size=16", "warmup=5", "lr=1e-3", "ema_decay=0.99", "log_every=1", "sample_every=10",
        "checkpoint_every=5", "keep_checkpoints=10", "device=cpu"]


def tiny_config(tmp_path, extra=()):
    path = tmp_path / "tiny.yaml"
    data = yaml.safe_load((ROOT / "configs" / "ddpm" / "digits.yaml").read_text())
    path.write_text(yaml.safe_dump(data))
    return path, list(TINY) + list(extra)


def test_the_ddpm_cifar10_network_has_35_7m_parameters():
    cfg = load_config(ROOT / "configs" / "ddpm" / "cifar10.yaml")
    model = UNet(cfg.model)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 35.7
    assert model(torch.randn(2, 3, 32, 32), torch.tensor([0, 999])).shape == (2, 3, 32, 32)


def test_class_conditional_network_and_its_null_label():
    model = UNet(UNetConfig(image_size=8, in_channels=1, channels=16, channel_mult=(1, 2), num_groups=8,
                            attention_resolutions=(4,), num_classes=3))
    for p in model.parameters():  # residual branches start at zero (identity blocks); give them weights
        if p.ndim > 1 and not p.any():
            torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 5])
    model.eval()
    a, b = model(x, t, torch.tensor([0, 1])), model(x, t, torch.tensor([2, 2]))
    assert model.null_label == 3 and not torch.allclose(a, b)
    assert torch.allclose(model(x, t), model(x, t, torch.tensor([3, 3])))


@pytest.mark.parametrize("cfg,message", [
    (dict(image_size=30, channel_mult=(1, 2, 2)), "model.image_size: 30 is not divisible by 4"),
    (dict(channels=24, num_groups=32), "model.channels: width 24 .* not divisible by num_groups 32"),
    (dict(num_heads=5), "model.num_heads: width 128 is not divisible by 5 heads"),
])
def test_bad_shapes_are_refused_at_construction(cfg, message):
    with pytest.raises(InputError, match=message):
        UNet(UNetConfig(**cfg))


def test_digits_data_and_step_batches():
    data = load_dataset(DataConfig(name="digits", image_size=16))
    assert data.images.shape == (1797, 1, 16, 16) and data.images.dtype == torch.uint8
    assert data.num_classes == 10 and sorted(set(data.labels.tolist())) == list(range(10))
    epoch = torch.cat([batch_indices(100, 10, s, seed=1) for s in range(10)])
    assert sorted(epoch.tolist()) == list(range(100))  # one epoch visits every image once
    assert torch.equal(batch_indices(100, 10, 13, seed=1), batch_indices(100, 10, 13, seed=1))
    halves = torch.cat([batch_indices(100, 5, 4, 1, rank=r, world=2) for r in (0, 1)])
    assert torch.equal(halves, batch_indices(100, 10, 4, seed=1))  # two ranks share the global batch


def test_cifar10_missing_offline_names_the_path(tmp_path):
    with pytest.raises(InputError, match=f"data: CIFAR-10 is not at {tmp_path}/cifar-10-python.tar.gz; download "
                                         r"https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz \(md5"):
        load_dataset(DataConfig(name="cifar10", data_dir=str(tmp_path), download=False))


def test_cifar_batches_are_read_without_running_code():
    import io
    evil = pickle.dumps({"x": os.system}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        _ArraysOnly(io.BytesIO(evil), encoding="bytes").load()


def test_image_folder_with_class_subfolders(tmp_path):
    for name, color in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.new("RGB", (20, 12), color).save(tmp_path / name / f"{i}.png")
    data = load_dataset(DataConfig(name="folder", image_size=8, data_dir=str(tmp_path)))
    assert data.images.shape == (4, 3, 8, 8) and data.labels.tolist() == [0, 0, 1, 1]
    assert data.class_names == ["cats", "dogs"] and data.images[2, 2].float().mean() > 250


def test_training_writes_metrics_samples_and_safetensors_checkpoints(tmp_path):
    path, overrides = tiny_config(tmp_path)
    run = train(load_config(path, overrides), out=tmp_path / "runs", progress=False)
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 21))
    assert metrics[0]["lr"] == pytest.approx(2e-4) and metrics[-1]["lr"] == pytest.approx(1e-3)  # warm-up
    assert all(m["images_per_s"] > 0 and m["loss"] > 0 for m in metrics)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-0000010.png", "step-0000020.png"]
    last = run / "checkpoints" / "step-0000020"
    assert sorted(p.name for p in last.iterdir()) == ["config.yaml", "ema.safetensors", "model.safetensors",
                                                      "optimizer.pt", "state.json"]
    ema, model = load_file(last / "ema.safetensors"), load_file(last / "model.safetensors")
    assert ema.keys() == model.keys() and any(not torch.equal(ema[k], model[k]) for k in ema)
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["channels"] == 16


def test_bf16_autocast_through_accelerate_is_applied(tmp_path):
    path, overrides = tiny_config(tmp_path, ["steps=3", "sample_every=1000", "checkpoint_every=1000"])
    losses = {}
    for precision in ("fp32", "bf16"):
        run = train(load_config(path, overrides + [f"mixed_precision={precision}"]), out=tmp_path / precision,
                    progress=False)
        losses[precision] = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < v < 10 for v in losses["bf16"])
    assert losses["bf16"] != losses["fp32"]  # same batches and noise: only the autocast differs
    assert losses["bf16"][0] == pytest.approx(losses["fp32"][0], rel=0.05)


def _train_cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "difflab", "train", *args, "--no-progress"], capture_output=True,
                          text=True, timeout=600, **kw)


def test_killed_run_resumes_to_exactly_the_uninterrupted_result(tmp_path):
    path, overrides = tiny_config(tmp_path, ["steps=30", "sample_every=1000"])
    sets = [a for o in overrides for a in ("--set", o)]
    whole = _train_cli([str(path), *sets, "--out", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr
    proc = subprocess.Popen([sys.executable, "-m", "difflab", "train", str(path), *sets, "--out", str(tmp_path / "cut"),
                             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "cut").glob("*/checkpoints/step-0000015")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (cut,) = (tmp_path / "cut").iterdir()
    assert not (cut / "checkpoints" / "step-0000030").exists()
    resumed = _train_cli(["--resume", str(cut)])
    assert resumed.returncode == 0, resumed.stderr
    (full,) = (tmp_path / "whole").iterdir()
    losses = lambda run: [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert len(losses(cut)) == 30 and losses(cut) == losses(full)
    for name in ("model", "ema"):
        a = load_file(full / "checkpoints" / "step-0000030" / f"{name}.safetensors")
        b = load_file(cut / "checkpoints" / "step-0000030" / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_process_cpu_training(tmp_path):
    path, overrides = tiny_config(tmp_path, ["steps=6", "batch_size=8", "checkpoint_every=3", "sample_every=6"])
    sets = [a for o in overrides for a in ("--set", o)]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "difflab", "train", str(path), *sets, "--out", str(tmp_path / "r"), "--no-progress"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = (tmp_path / "r").iterdir()  # one run folder for both processes
    assert (run / "checkpoints" / "step-0000006" / "ema.safetensors").is_file()
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 6 and {m["processes"] for m in metrics} == {2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddpm")
    path, overrides = tiny_config(tmp, ["sample_every=1000"])
    return train(load_config(path, overrides), out=tmp / "runs", progress=False)


def test_sample_cli_writes_grid_images_and_trajectory(trained, tmp_path, capsys):
    assert main(["sample", str(trained), "--sampler", "ddim", "--steps", "10", "--guidance", "2.0", "--class", "3",
                 "--n", "6", "--seed", "5", "--every", "3", "--out", str(tmp_path)]) == 0
    (run,) = tmp_path.iterdir()
    names = sorted(p.name for p in (run / "images").iterdir())
    assert names == [f"{i:04d}-c3-s{5 + i}.png" for i in range(6)]
    assert Image.open(run / "images" / names[0]).size == (8, 8)
    assert (run / "grid.png").is_file() and Image.open(run / "trajectory.png").width > 4 * 128
    again = tmp_path / "again"
    assert main(["sample", str(trained), "--steps", "10", "--guidance", "2.0", "--class", "3", "--n", "2",
                 "--seed", "6", "--out", str(again)]) == 0
    (run2,) = again.iterdir()  # image i depends on its seed only, not on the batch
    assert (torch.tensor(list(Image.open(run2 / "images" / "0000-c3-s6.png").getdata())) ==
            torch.tensor(list(Image.open(run / "images" / "0001-c3-s6.png").getdata()))).all()


def test_eval_cli_scores_digits_offline(trained, tmp_path, capsys):
    assert main(["eval", str(trained), "--n", "40", "--steps", "5", "--out", str(tmp_path)]) == 0
    report = json.loads(next(tmp_path.glob("*/eval.json")).read_text())
    assert report["classifier_held_out_accuracy"] > 0.9  # the judge itself is good
    assert 0 <= report["cas"] <= 1 and report["fd_real_vs_real"] < report["fd_real_vs_generated"]


def _corrupt(trained, tmp_path):
    src = (trained / "checkpoints" / "step-0000020" / "ema.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(src[: len(src) // 2])
    return tmp_path / "cut.safetensors"


def _mismatched(trained, tmp_path):
    from safetensors.torch import save_file
    tensors = load_file(trained / "checkpoints" / "step-0000020" / "ema.safetensors")
    meta = json.loads(__import__("safetensors").safe_open(
        str(trained / "checkpoints" / "step-0000020" / "ema.safetensors"), "pt").metadata()["config"])
    meta["model"]["channels"] = 32
    save_file(tensors, tmp_path / "other.safetensors", metadata={"config": json.dumps(meta), "step": "20"})
    return tmp_path / "other.safetensors"


@pytest.mark.parametrize("argv,message", [
    (lambda r, t: ["sample", str(r), "--steps", "51"], "steps: 51 is more than the model's T = 50"),
    (lambda r, t: ["sample", str(r), "--eta", "1.5"], r"eta: 1.5 is not allowed; use a number in \[0, 1\]"),
    (lambda r, t: ["sample", str(_corrupt(r, t))], "is corrupt or truncated"),
    (lambda r, t: ["sample", str(_mismatched(r, t))], r"tensor 'time_mlp.0.weight' has shape \(64, 16\) but the "
                                                      r"config expects \(128, 32\)"),
    (lambda r, t: ["sample", str(t / "nothing")], "is not a run folder, checkpoint folder or .safetensors file"),
    (lambda r, t: ["train", str(ROOT / "configs/ddpm/digits.yaml"), "--set", "diffusion.schedule=quad"],
     "diffusion.schedule: 'quad' is not known"),
    (lambda r, t: ["train", str(ROOT / "configs/ddpm/digits.yaml"), "--set", "diffusion.objective=score"],
     "diffusion.objective: 'score' is not known"),
    (lambda r, t: ["train", str(ROOT / "configs/ddpm/digits.yaml"), "--set", "diffusion.timesteps=1"],
     "diffusion.timesteps: 1 is not allowed"),
    (lambda r, t: ["train", str(ROOT / "configs/ddpm/digits.yaml"), "--set", "sample.steps=2000"],
     "sample.steps: 2000 is not allowed"),
    (lambda r, t: ["train", str(ROOT / "configs/ddpm/cifar10.yaml"), "--set", "data.download=false",
                   "--data-dir", str(t)], "data: CIFAR-10 is not at"),
    (lambda r, t: ["train", str(ROOT / "configs/ddpm/digits.yaml"), "--set", "model.image_size=30",
                   "--set", "data.image_size=30"], "model.image_size: 30 is not divisible by 4"),
])
def test_ddpm_bad_input_is_one_line_and_exit_2(trained, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main(argv(trained, tmp_path) + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert __import__("re").search(message, err), err
    assert not out.exists() or not any(out.rglob("*.png"))


def test_ddpm_package_does_not_import_diffusers():
    code = "import sys, difflab.ddpm.train, difflab.ddpm.evaluate, difflab.ddpm.generation; print('diffusers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False"
    for source in (ROOT / "src" / "difflab" / "ddpm").glob("*.py"):
        assert "diffusers" not in "\n".join(line for line in source.read_text().splitlines()
                                            if line.lstrip().startswith(("import", "from")))


@pytest.mark.slow
def test_digits_quality_bar(tmp_path):
    """configs/ddpm/digits.yaml, then DDIM 50 steps with guidance: classification accuracy score >= 90%."""
    run = train(load_config(ROOT / "configs" / "ddpm" / "digits.yaml"), out=tmp_path, progress=False)
    from difflab.ddpm.evaluate import evaluate_checkpoint
    assert evaluate_checkpoint(run, n=1000, sampler="ddim", steps=50, guidance_scale=2.0)["cas"] >= 0.9


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    """compile=True (torch.compile of the network) trains to the same losses as eager, within float tolerance."""
    path, overrides = tiny_config(tmp_path, ["steps=4", "sample_every=1000", "checkpoint_every=1000"])
    losses = {}
    for flag in (False, True):
        run = train(load_config(path, overrides + [f"compile={str(flag).lower()}"]), out=tmp_path / str(flag),
                    progress=False)
        losses[flag] = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
