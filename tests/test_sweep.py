"""Sweeps: strict specs, the batch plan, what a run writes, failures, kill-and-resume, and two processes."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import pixels
from PIL import Image

from difflab import InputError, read_metadata
from difflab import sweep as sw
from difflab.cli import main

ROOT = Path(__file__).resolve().parents[1]
DIFFLAB = [sys.executable, "-m", "difflab"]


def spec(**over):
    base = {"name": "t", "task": "text2img", "model": "tiny",
            "params": {"prompt": "a fox", "num_inference_steps": 3, "seed": 1},
            "x": {"param": "guidance_scale", "values": [1.0, 5.0, 9.0]},
            "y": {"param": "seed", "values": [1, 2, 3]}}
    return {**base, **over}


@pytest.mark.parametrize("over,message", [
    (dict(colour="red"), "colour: unknown key"),
    (dict(x={"param": "guidance_scale", "values": []}), "x.values: empty"),
    (dict(x={"param": "strength", "values": [0.5]}), "x.param: strength is not a parameter of text2img"),
    (dict(x={"param": "cfg", "values": [1]}), "x.param: 'cfg' is not a sweepable parameter"),
    (dict(x={"param": "guidance_scale", "values": ["high"]}), r"x.values\[0\]: 'high' is not allowed for guidance_scale"),
    (dict(x={"param": "scheduler", "values": ["ddim", "warp"]}), r"x.values\[1\]: 'warp' is not a scheduler"),
    (dict(x={"param": "seed", "values": [4]}), "y.param: seed is already swept"),
    (dict(x={"param": "prompt_sr", "values": ["owl", "cat"]}), "x.values\\[0\\]: 'owl' .* is not in the prompt"),
    (dict(x={"param": "num_inference_steps", "values": {"start": 1, "stop": 5}}), "x.values: .* use a list"),
    (dict(x={"param": "guidance_scale", "values": [-1.0]}), r"cell \{'x': 'CFG scale: -1.0'.*guidance_scale: -1.0"),
    (dict(max_batch=0), "max_batch: 0 is not allowed"),
    (dict(images_per_cell="2"), "images_per_cell: '2' is not allowed"),
    (dict(params={"prompt": "x", "stepz": 3}), "stepz: not a generation parameter"),
])
def test_bad_specs_are_refused_naming_the_key(over, message):
    with pytest.raises(InputError, match=message):
        sw.resolve(spec(**over))


def test_ranges_random_seeds_and_prompt_sr_resolve_concretely():
    r = sw.resolve(spec(params={"prompt": "a fox in a fox den", "negative_prompt": "fox fur", "seed": -1,
                                "num_inference_steps": 3},
                        x={"param": "num_inference_steps", "values": {"start": 1, "stop": 15, "step": 2}},
                        y={"param": "guidance_scale", "values": {"start": 1, "stop": 2, "num": 3}},
                        z={"param": "prompt_sr", "values": ["fox", "owl"]}))
    assert r["x"]["values"] == [1, 3, 5, 7, 9, 11, 13, 15]
    assert r["y"]["values"] == [1.0, 1.5, 2.0]
    assert isinstance(r["params"]["seed"], int) and r["params"]["seed"] >= 0
    cells = sw.plan(r)
    owl = [c for c in cells if c.index[2] == 1][0].params
    assert owl.prompt == "a owl in a owl den" and owl.negative_prompt == "owl fur"
    assert len(cells) == 8 * 3 * 2 and cells[1].labels == {"x": "Steps: 3", "y": "CFG scale: 1.0", "z": "fox"}
    seeds = sw.resolve(spec(y={"param": "seed", "values": [-1, 5]}))["y"]["values"]
    assert seeds[1] == 5 and seeds[0] >= 0


def test_batches_group_cells_differing_only_in_seed():
    cells = sw.plan(sw.resolve(spec()))
    plan = sw.batches(cells, max_batch=8)
    assert [[(c.index, s) for c, s in b] for b in plan] == [
        [((0, 0, 0), 1), ((0, 1, 0), 2), ((0, 2, 0), 3)],
        [((1, 0, 0), 1), ((1, 1, 0), 2), ((1, 2, 0), 3)],
        [((2, 0, 0), 1), ((2, 1, 0), 2), ((2, 2, 0), 3)]]
    assert [len(b) for b in sw.batches(cells, max_batch=2)] == [2, 1, 2, 1, 2, 1]
    four = sw.plan(sw.resolve(spec(images_per_cell=4, y=None)))
    assert four[0].seeds == [1, 2, 3, 4] and [len(b) for b in sw.batches(four, 8)] == [4, 4, 4]


def test_dry_run_lists_cells_images_and_a_time_estimate(sd, tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec(images_per_cell=2)))
    assert main(["sweep", str(tmp_path / "s.yaml"), "--dry-run", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "x: guidance_scale = [1.0, 5.0, 9.0]" in out and "cell (2, 2, 0): CFG scale: 9.0, Seed: 3  seeds [3, 4]" in out
    assert "9 cells, 18 images in 3 pipeline calls of up to 8; about " in out and "s per image-step" in out
    assert not (tmp_path / "r").exists()  # a dry run writes nothing


def test_run_writes_everything_and_reuses_embeddings(sd, tmp_path, monkeypatch, tiny_everywhere):
    gen = importlib.import_module("difflab.generate")
    calls, encodes = [], []
    real_generate = gen.generate
    monkeypatch.setattr(gen, "generate", lambda *a, **k: (calls.append(k.get("seeds")), real_generate(*a, **k))[1])
    text_encoder_forward = sd.pipe.text_encoder.forward
    monkeypatch.setattr(sd.pipe.text_encoder, "forward", lambda *a, **k: (encodes.append(1), text_encoder_forward(*a, **k))[1])
    run = sw.run_sweep(spec(params={"prompt": "a fox", "num_inference_steps": 3, "seed": 1}), out=tmp_path,
                       progress=False)
    assert calls == [[1, 2, 3]] * 3  # 9 images, 3 batched pipeline calls
    assert len(encodes) == 2  # prompt and negative prompt, once for the whole sweep
    d = run.dir
    assert d.parent == tmp_path and d.name.endswith("-t")
    resolved = yaml.safe_load((d / "sweep.yaml").read_text())
    assert resolved["params"]["seed"] == 1 and resolved["x"]["values"] == [1.0, 5.0, 9.0]
    assert sorted(p.name for p in (d / "images").iterdir()) == sorted(
        f"x{ix}-y{iy}-z0-s{iy + 1}.png" for ix in range(3) for iy in range(3))
    lines = [json.loads(x) for x in (d / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 9 and all(x["status"] == "ok" and x["seconds"] > 0 for x in lines)
    rec = json.loads(Image.open(d / "images" / "x2-y1-z0-s2.png").text["difflab"])
    assert rec["guidance_scale"] == 9.0 and rec["seed"] == 2 and "CFG scale: 9.0" in Image.open(
        d / "images" / "x2-y1-z0-s2.png").text["parameters"]
    grid = Image.open(d / "grid.png")
    assert grid.width * grid.height <= 16_000_000 and grid.width > 3 * 128
    page = (d / "index.html").read_text()
    assert page.count("<img loading='lazy' src='images/") == 9 and "CFG scale: 9.0" in page
    assert "href='grid.png'" in page
    # the run object
    assert run.complete and len(run.table()) == 9 and run.table()[0]["x"] == "CFG scale: 1.0"
    assert run.images[0]["params"]["prompt"] == "a fox" and run._repr_png_()[:4] == b"\x89PNG"
    assert (pixels(run.grid()) == pixels(grid)).all()


def test_grid_respects_the_pixel_budget_and_labels(sd):
    from difflab.grids import labelled_grid
    tile = Image.new("RGB", (512, 512), (0, 128, 255))
    rows = [[[tile, tile], "failed: OutOfMemoryError"], [[tile, tile], [tile, tile]]]
    big = labelled_grid(rows, ["CFG scale: 1", "CFG scale: 7.5"], ["Seed: 1", "Seed: 2"], "a title", 16_000_000)
    small = labelled_grid(rows, ["CFG scale: 1", "CFG scale: 7.5"], ["Seed: 1", "Seed: 2"], "a title", 1_000_000)
    assert big.width * big.height <= 16_000_000 and small.width * small.height <= 1_000_000
    assert small.width < big.width
    assert big.size == (512 + 2 * 2 * 512 + 3 * 8, big.height)  # row labels, 2 cells of 2 images, gaps
    px = np.asarray(big).reshape(-1, 3)
    assert (px == [0, 128, 255]).all(axis=-1).sum() == 6 * 512 * 512  # six tiles, unscaled
    assert (px == [225, 225, 225]).all(axis=-1).sum() > 0.8 * 512 * 512  # one grey placeholder with text


def test_failed_cells_are_recorded_drawn_and_exit_nonzero(tmp_path, monkeypatch, capsys, tiny_everywhere):
    gen = importlib.import_module("difflab.generate")
    real_generate = gen.generate

    def flaky(model, params, **k):
        if params.guidance_scale == 5.0:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_generate(model, params, **k)

    monkeypatch.setattr(gen, "generate", flaky)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec()))
    assert main(["sweep", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "difflab: 3 image(s) failed" in err and "RuntimeError: CUDA out of memory (simulated)" in err
    (run_dir,) = (tmp_path / "r").iterdir()
    run = sw.SweepRun(run_dir)
    assert [r["cell"] for r in run.failed] == [(1, 0, 0), (1, 1, 0), (1, 2, 0)]
    assert not list((run_dir / "images").glob("x1-*"))
    assert "failed" in (run_dir / "index.html").read_text()
    # resuming retries the failed cells (the cause is gone now) and leaves no duplicate manifest lines
    monkeypatch.setattr(gen, "generate", real_generate)
    assert main(["sweep", "--resume", str(run_dir), "--no-progress"]) == 0
    keys = [json.loads(x)["key"] for x in (run_dir / "manifest.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 9 and sw.SweepRun(run_dir).complete


def _run_cli(args, **kw):
    return subprocess.run(DIFFLAB + args, capture_output=True, text=True, timeout=300, **kw)


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    config = tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump(spec(max_batch=2, params={"prompt": "a fox", "num_inference_steps": 25,
                                                                "seed": 1})))
    whole = _run_cli(["sweep", str(config), "--out", str(tmp_path / "whole"), "--no-progress"])
    assert whole.returncode == 0, whole.stderr
    proc = subprocess.Popen(DIFFLAB + ["sweep", str(config), "--out", str(tmp_path / "cut"), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "cut").glob("*/images/*.png"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (cut,) = (tmp_path / "cut").iterdir()
    n_before = len(list((cut / "images").glob("*.png")))
    assert 3 <= n_before < 9 and not (cut / "grid.png").exists()
    with open(cut / "manifest.jsonl", "a") as f:
        f.write('{"key": "x2-y2-z0-s3", "sta')  # a line torn by the kill
    # resumed where the default thread count differs (another machine): the recorded count is used
    resumed = _run_cli(["sweep", "--resume", str(cut), "--no-progress"], env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr
    recorded = yaml.safe_load((cut / "sweep.yaml").read_text())["cpu_threads"]
    assert recorded >= 1 and (recorded == 1 or f"running on {recorded} CPU threads" in resumed.stderr)
    (whole_dir,) = (tmp_path / "whole").iterdir()
    assert sorted(p.name for p in (cut / "images").iterdir()) == sorted(p.name for p in (whole_dir / "images").iterdir())
    keys = [json.loads(x)["key"] for x in (cut / "manifest.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 9
    assert (pixels(Image.open(cut / "grid.png")) == pixels(Image.open(whole_dir / "grid.png"))).all()
    assert not list(cut.rglob(".*.tmp"))


def test_ctrl_c_stops_after_the_batch_and_says_how_to_resume(tmp_path):
    config = tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump(spec(max_batch=1, params={"prompt": "a fox", "num_inference_steps": 20,
                                                                "seed": 1})))
    proc = subprocess.Popen(DIFFLAB + ["sweep", str(config), "--out", str(tmp_path), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("*/images/*.png")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert proc.returncode == 130 and "Traceback" not in err
    assert f"resume with: difflab sweep --resume {run_dir}" in err
    made = list((run_dir / "images").glob("*.png"))
    lines = (run_dir / "manifest.jsonl").read_text().splitlines()
    assert 1 <= len(made) < 9 and len(lines) == len(made)  # the batch under way was finished and recorded


def test_two_processes_give_the_same_pixels_as_one_however_launched(tmp_path):
    config = tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump(spec(max_batch=2, params={"prompt": "a fox", "num_inference_steps": 3,
                                                                "seed": 1, "height": 96, "width": 96})))
    one = _run_cli(["sweep", str(config), "--out", str(tmp_path / "one"), "--no-progress"])
    two = _run_cli(["sweep", str(config), "--out", str(tmp_path / "two"), "--processes", "2", "--no-progress"])
    # plain accelerate gives each CPU worker its share of the cores (1 thread here): the recorded count wins
    launched = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m",
                               "difflab", "sweep", str(config), "--out", str(tmp_path / "acc"), "--no-progress"],
                              capture_output=True, text=True, timeout=600)
    assert one.returncode == 0 and two.returncode == 0 and launched.returncode == 0, two.stderr + launched.stderr
    (a,), (b,), (c,) = (tmp_path / "one").iterdir(), (tmp_path / "two").iterdir(), (tmp_path / "acc").iterdir()
    counts = {yaml.safe_load((d / "sweep.yaml").read_text())["cpu_threads"] for d in (a, b, c)}
    assert len(counts) == 1
    (count,) = counts
    made_by = {d: [json.loads(x) for x in (d / "manifest.jsonl").read_text().splitlines()] for d in (b, c)}
    assert {e["rank"] for e in made_by[b]} == {0, 1}  # --processes 2: two workers shared the batches
    for d in (b, c):
        assert len({e["key"] for e in made_by[d]}) == 9
        for image in (a / "images").iterdir():
            assert (pixels(Image.open(image)) == pixels(Image.open(d / "images" / image.name))).all(), (d, image)
            assert read_metadata(d / "images" / image.name)["difflab"]["cpu_threads"] == count
        assert (pixels(Image.open(a / "grid.png")) == pixels(Image.open(d / "grid.png"))).all()
    assert two.stdout.count("index.html") == 1


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs" / "sweeps").glob("*.yaml")))
def test_shipped_sweeps_run_offline_with_the_tiny_model(name, tmp_path, tiny_everywhere):
    data = yaml.safe_load((ROOT / "configs" / "sweeps" / f"{name}.yaml").read_text())
    overrides = ["model=tiny", f"params.num_inference_steps={2 if data['task'] == 'text2img' else 5}"]
    if data.get("x", {}).get("param") == "num_inference_steps":
        overrides += ["x.values=[2, 3]"]
    if data.get("y", {}).get("param") == "num_inference_steps":
        overrides += ["y.values=[2, 3]"]
    if data.get("image"):
        overrides += ["image=sample:china:64"]
    run = sw.run_sweep(data, overrides=overrides, out=tmp_path, progress=False)
    assert run.complete and (run.dir / "grid.png").is_file() and (run.dir / "index.html").is_file()
    assert len(list((run.dir / "images").glob("*.png"))) == len(run.table())
