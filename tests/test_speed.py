"""Fast paths: each is off by default, recorded in the metadata, and close to the reference on the CPU."""

import importlib

import numpy as np
import pytest

import difflab
from helpers import pixels
from difflab.cli import main

REQUEST = dict(prompt="a red fox in the snow", seed=3, num_inference_steps=4, num_images=2)


@pytest.fixture(scope="module")
def reference(difflab_cache):
    sd = difflab.load("tiny", progress=False)
    assert sd.fast == {} and "fast" not in sd.describe()  # nothing on by default
    return [pixels(im.image) for im in difflab.generate(sd, **REQUEST)]


@pytest.mark.parametrize("option", ["channels_last", "fuse_qkv", pytest.param("compile", marks=pytest.mark.slow)])
def test_fast_path_is_close_to_the_reference_and_recorded(reference, option):
    sd = difflab.load("tiny", progress=False, **{option: True})
    out = difflab.generate(sd, **REQUEST)
    # stated tolerance: 2/255 per pixel (float32, CPU); the measured differences are printed for the record
    worst = max(int(np.abs(pixels(o.image) - r).max()) for o, r in zip(out, reference))
    print(f"{option}: max pixel difference {worst}/255")
    assert worst <= 2
    assert out[0].record["model"]["fast"] == {option: True}


def test_an_image_made_with_a_fast_path_is_remade_with_it(tmp_path, capsys):
    assert main(["generate", "--model", "tiny", "--prompt", "a boat", "--steps", "3", "--seed", "4",
                 "--channels-last", "--fuse-qkv", "--out", str(tmp_path / "a")]) == 0
    (first,) = (tmp_path / "a").glob("*/*.png")
    assert difflab.read_metadata(first)["difflab"]["model"]["fast"] == {"channels_last": True, "fuse_qkv": True}
    assert main(["generate", "--from", str(first), "--out", str(tmp_path / "b")]) == 0
    (again,) = (tmp_path / "b").glob("*/*.png")
    from PIL import Image
    assert (pixels(Image.open(first)) == pixels(Image.open(again))).all()


def test_sweep_config_takes_fast_paths(tmp_path, sd, monkeypatch):
    seen = {}
    real = importlib.import_module("difflab.pipelines").load

    def spy(*a, **k):
        seen.update(k)
        return real(*a, **k)

    monkeypatch.setattr(importlib.import_module("difflab.pipelines"), "load", spy)
    run = difflab.run_sweep({"model": "tiny", "channels_last": True, "params": {"prompt": "x", "num_inference_steps": 2,
                                                                               "seed": 1},
                             "x": {"param": "seed", "values": [1, 2]}}, out=tmp_path, progress=False)
    assert seen["channels_last"] is True and seen["compile"] is False and run.complete
    record = difflab.read_metadata(run.images[0]["path"])["difflab"]
    assert record["model"]["fast"] == {"channels_last": True}


@pytest.mark.parametrize("limit, cap", [(1, 64), (12, 64), (37, 64), (64, 64), (500, 64), (5, 4)])
def test_largest_fitting_batch_is_found_with_few_probes(limit, cap):
    from difflab.batching import largest_fitting

    tried = []
    found = largest_fitting(lambda n: tried.append(n) or n <= limit, cap)
    assert found == min(limit, cap) and len(tried) <= 2 * 7 and max(tried) <= cap


def test_auto_batch_is_probed_once_remembered_and_written_to_the_sweep(tmp_path, monkeypatch):
    from difflab import batching, sweep

    monkeypatch.setattr(batching, "_cuda_fits", lambda resolved, device: pytest.fail("no CUDA probe on the CPU"))
    config = {"model": "tiny", "max_batch": "auto", "params": {"prompt": "x", "seed": 1},
              "x": {"param": "seed", "values": [1, 2, 3]}}
    run_dir = sweep.prepare_run(sweep.resolve(config), tmp_path)
    assert sweep.load_resolved(run_dir)["max_batch"] == batching.CPU_BATCH  # concrete, so resume batches alike

    calls = []
    fits = lambda n: calls.append(n) or n <= 6  # noqa: E731  (a device that fits 6 images)
    resolved = sweep.resolve({**config, "device": "cpu"})
    assert batching.probed_batch(resolved, fits) == 6
    assert batching.probed_batch(resolved, fits) == 6 and calls.count(1) == 1   # remembered: probed once
    other = sweep.resolve({**config, "params": {**config["params"], "width": 128, "height": 128}})
    assert batching.probed_batch(other, fits) == 6 and calls.count(1) == 2       # another size: probed again
    with pytest.raises(difflab.InputError, match="max_batch: 'big' is not allowed; use an integer >= 1 or auto"):
        sweep.resolve({**config, "max_batch": "big"})
