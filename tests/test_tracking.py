"""Experiment records: Comet (offline) and TensorBoard mirrors, failures that lose nothing, and `difflab runs`."""

import importlib
import json
import sys
import warnings
import zipfile

import pytest

import difflab
from difflab import tracking
from difflab.cli import main
from difflab.ddpm.config import load_config
from difflab.ddpm.train import train

SECRET = "secret-api-key-0123456789"


def tiny_sweep(name, tracker="local", **extra):
    return {"name": name, "model": "tiny", "tracker": tracker, "max_batch": 1,
            "params": {"prompt": "a fox", "num_inference_steps": 2, "seed": 1},
            "x": {"param": "guidance_scale", "values": [1.0, 7.5]}, **extra}


def tiny_training(tmp_path, tracker, steps=6):
    return load_config("configs/ddpm/digits.yaml", [f"steps={steps}", "batch_size=8", "log_every=2", "sample_every=3",
                                                   "checkpoint_every=3", "sample.per_class=1", "sample.steps=2",
                                                   "model.channels=8", "model.num_groups=4", f"tracker={tracker}"])


def comet_messages(run_dir):
    (archive,) = (run_dir / "comet").glob("*.zip")
    with zipfile.ZipFile(archive) as z:
        return [json.loads(line) for line in z.read("messages.json").decode().splitlines()], z.namelist()


@pytest.fixture
def comet_offline(monkeypatch):
    pytest.importorskip("comet_ml")
    monkeypatch.setenv("COMET_OFFLINE", "1")
    monkeypatch.setenv("COMET_API_KEY", SECRET)


def test_sweep_with_comet_offline_archives_parameters_and_every_image(comet_offline, tmp_path, tiny_everywhere):
    run = difflab.run_sweep(tiny_sweep("comet", "comet"), out=tmp_path, progress=False)
    messages, names = comet_messages(run.dir)
    params = {m["payload"]["param"]["paramName"]: m["payload"]["param"]["paramValue"]
              for m in messages if m["type"] == "parameter_msg"}
    assert params["params.prompt"] == "a fox" and params["model"] == "tiny" and params["x.param"] == "guidance_scale"
    images = [m["payload"] for m in messages if m["type"] == "file_upload"]
    by_name = {i["additional_params"]["figName"]: i for i in images}
    assert set(by_name) == {"x0-y0-z0-s1", "x1-y0-z0-s1", "grid-0"}
    assert by_name["x1-y0-z0-s1"]["metadata"]["guidance_scale"] == 7.5  # each image carries its parameters
    assert by_name["x1-y0-z0-s1"]["metadata"]["seed"] == 1
    assert all(i["file_path"] in names for i in images)                   # the pixels are in the archive
    metrics = {m["payload"]["metric"]["metricName"]: m["payload"]["metric"]["metricValue"]
               for m in messages if m["type"] == "metric_msg"}
    assert metrics["images"] == 2 and metrics["failed"] == 0
    # the API key is read from the environment, never written anywhere in the run
    assert not [p for p in run.dir.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    with zipfile.ZipFile(next((run.dir / "comet").glob("*.zip"))) as z:
        assert not any(SECRET.encode() in z.read(n) for n in z.namelist())


def test_training_with_comet_offline_archives_losses_and_samples(comet_offline, tmp_path):
    run_dir = train(tiny_training(tmp_path, "comet"), out=tmp_path, progress=False)
    messages, _ = comet_messages(run_dir)
    losses = [m["payload"]["metric"] for m in messages
              if m["type"] == "metric_msg" and m["payload"]["metric"]["metricName"] == "loss"]
    logged = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(m["step"], m["metricValue"]) for m in losses] == [(r["step"], r["loss"]) for r in logged]
    assert sum(m["type"] == "file_upload" for m in messages) == 2  # sample grids at steps 3 and 6
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"


def test_tensorboard_event_files_hold_the_training_scalars_and_grids(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = train(tiny_training(tmp_path, "tensorboard"), out=tmp_path, progress=False)
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    logged = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "images_per_s", "grad_norm"} <= set(events.Tags()["scalars"])
    loss = events.Scalars("loss")
    assert [e.step for e in loss] == [r["step"] for r in logged] == [2, 4, 6]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in logged], rel=1e-6)
    assert [e.step for e in events.Images("samples")] == [3, 6]


def test_a_missing_tracker_warns_once_and_the_run_keeps_its_local_records(tmp_path, monkeypatch, tiny_everywhere):
    monkeypatch.setitem(sys.modules, "comet_ml", None)  # not installed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = difflab.run_sweep(tiny_sweep("no-comet", "comet"), out=tmp_path, progress=False)
    mine = [str(w.message) for w in caught if "tracker" in str(w.message)]
    assert mine == ["tracker comet: not available (pip install 'difflab[comet]'); recording locally only"]
    assert run.complete and len(run.images) == 2 and (run.dir / "grid.png").exists()


def test_a_tracker_that_fails_mid_run_is_switched_off_with_one_warning(tmp_path, monkeypatch, tiny_everywhere):
    pytest.importorskip("tensorboard")

    def network_gone(self, *a):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(tracking.TensorBoardTracker, "_log_image", network_gone)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = difflab.run_sweep(tiny_sweep("flaky", "tensorboard"), out=tmp_path, progress=False)
    mine = [str(w.message) for w in caught if "tracker" in str(w.message)]
    assert len(mine) == 1 and "ConnectionError: network is unreachable" in mine[0]
    assert run.complete and len(run.images) == 2 and (run.dir / "index.html").exists()


def test_unknown_tracker_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "configs/sweeps/guidance.yaml", "--set", "model=tiny", "--tracker", "wandb",
              "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "invalid choice: 'wandb'" in capsys.readouterr().err
    assert main(["sweep", "configs/sweeps/guidance.yaml", "--set", "model=tiny", "--set", "tracker=wandb",
                 "--out", str(tmp_path)]) == 2
    with pytest.raises(difflab.InputError, match="tracker: 'wandb' is not known; choose one of local, comet"):
        difflab.run_sweep(tiny_sweep("x", "wandb"), out=tmp_path)
    assert not list(tmp_path.iterdir())


def test_runs_lists_complete_interrupted_and_failed_runs(tmp_path, monkeypatch, capsys, tiny_everywhere):
    from difflab import sweep as sw

    gen = importlib.import_module("difflab.generate")
    complete = difflab.run_sweep(tiny_sweep("complete"), out=tmp_path, progress=False).dir
    interrupted = sw.prepare_run(sw.resolve(tiny_sweep("interrupted")), tmp_path)
    real = gen.generate

    def half(model, params, **k):  # the second cell fails
        if params.guidance_scale == 7.5:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(model, params, **k)

    monkeypatch.setattr(gen, "generate", half)
    failed = difflab.run_sweep(tiny_sweep("failed"), out=tmp_path, progress=False).dir
    monkeypatch.setattr(gen, "generate", real)
    cut = train(tiny_training(tmp_path, "local"), out=tmp_path, progress=False, stop_after=4)
    assert main(["generate", "--model", "tiny", "--prompt", "a boat", "--steps", "2", "--out", str(tmp_path)]) == 0
    capsys.readouterr()

    assert main(["runs", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "kind", "date", "model", "parameters", "done", "failed", "status"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert len(rows) == 5
    assert rows[complete.name].split()[-3:] == ["2/2", "0", "complete"]
    assert rows[interrupted.name].split()[-3:] == ["0/2", "0", "interrupted"]
    assert rows[failed.name].split()[-3:] == ["1/2", "1", "failed"]
    assert rows[cut.name].split()[-3:] == ["4/6", "0", "interrupted"] and " train " in rows[cut.name]
    (generated,) = [r for r in rows.values() if " generate " in r]
    assert generated.split()[-3:] == ["1", "0", "complete"] and "'a boat'" in generated

    assert main(["runs", "show", str(failed)]) == 0
    shown = capsys.readouterr().out
    assert "(sweep, failed)" in shown and "sweep.yaml:" in shown and "guidance_scale" in shown
    assert "manifest.jsonl" in shown and "grid.png" in shown
    assert main(["runs", "show", str(tmp_path / "nope")]) == 2
    assert "run: " in capsys.readouterr().err


def test_runs_are_found_at_any_depth_under_their_parent(tmp_path, capsys, tiny_everywhere):
    # a notebooks run holding a notebook's own folder with a sweep inside, and a run under an --out parent
    notebooks_run = tmp_path / "20261101-120000-notebooks"
    (notebooks_run / "01_text_to_image").mkdir(parents=True)
    (notebooks_run / "summary.json").write_text(json.dumps({"parameters": {"model": "tiny"}, "results": [
        {"name": "01_text_to_image", "status": "ok", "seconds": 1.0}]}))
    nested = difflab.run_sweep(tiny_sweep("nested"), out=notebooks_run / "01_text_to_image", progress=False).dir
    deeper = difflab.run_sweep(tiny_sweep("deeper"), out=tmp_path / "mine", progress=False).dir
    (nested / "images" / "20261101-000000-not-a-run").mkdir()  # a run's own files are not searched

    assert main(["runs", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    names = [line.split()[0] for line in lines]
    assert names == [notebooks_run.name, f"01_text_to_image/{nested.name}", f"mine/{deeper.name}"]
    assert lines[1].startswith("  01_text_to_image/")  # shown under its parent, indented
    assert lines[0].split()[1] == "notebooks" and lines[1].split()[-3:] == ["2/2", "0", "complete"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["runs", str(empty)]) == 0
    assert capsys.readouterr().out.strip() == f"no runs under {empty}"
