"""`shapes-quick` as a model name: trained once on first use, behind a lock, never seen half-made."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import difflab
from difflab.shapes.model import cache_folder

LOAD = "import difflab; m = difflab.load('shapes-quick', progress=False); print(m.source.path)"
ROOT = Path(__file__).resolve().parents[1]


def _load_process(cache, home):
    return subprocess.Popen([sys.executable, "-c", LOAD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "DIFFLAB_CACHE": str(cache), "DIFFLAB_HOME": str(home)})


def _small_home(home: Path) -> Path:
    """A DIFFLAB_HOME whose shapes-quick recipe is the real one cut to a few steps on a few images: the first-use
    machinery (lock, kill, atomic publish, training record) is what is tested, not the model, and the full quick
    recipe takes minutes on a slow CPU."""
    (home / "notebooks").mkdir(parents=True)
    (home / "configs" / "shapes").mkdir(parents=True)
    for name, cut in (("quick_vae.yaml", {"steps": 20, "checkpoint_every": 5, "sample_every": 20}),
                      ("quick_unet.yaml", {"steps": 6, "checkpoint_every": 3, "sample_every": 6})):
        config = yaml.safe_load((ROOT / "configs" / "shapes" / name).read_text())
        config.update(cut, mixed_precision="fp32", data={**config["data"], "size": 64}, batch_size=8)
        (home / "configs" / "shapes" / name).write_text(yaml.safe_dump(config))
    return home


def test_first_use_trains_once_for_two_processes_and_a_killed_training_leaves_nothing(tmp_path, monkeypatch):
    cache, home = tmp_path / "cache", _small_home(tmp_path / "home")
    monkeypatch.setenv("DIFFLAB_HOME", str(home))
    folder = cache / "models" / cache_folder("shapes-quick").name
    killed = _load_process(cache, home)                 # killed while it trains: nothing is left to load
    deadline = time.time() + 300
    while time.time() < deadline and not list((cache / "models").glob(".shapes-quick-training-*/runs/*")):
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not folder.exists()

    first, second = _load_process(cache, home), _load_process(cache, home)   # both ask at once: one trains, one waits
    outputs = [p.communicate(timeout=900) for p in (first, second)]
    assert all(p.returncode == 0 for p in (first, second)), outputs
    assert [out.strip().splitlines()[-1] for out, _ in outputs] == [str(folder)] * 2
    assert sum("training it once" in err for _, err in outputs) == 1
    assert (folder / "model_index.json").is_file() and list((folder / "unet").glob("*.safetensors"))
    for stage in ("vae", "unet"):                            # how it was made travels with it
        config = yaml.safe_load((folder / "training" / stage / "config.yaml").read_text())
        metrics = (folder / "training" / stage / "metrics.jsonl").read_text().splitlines()
        assert json.loads(metrics[-1])["step"] == config["steps"] and stage in config["name"]
    assert not list((cache / "models").glob(".shapes-quick-training-*"))

    os.environ["DIFFLAB_CACHE"], before = str(cache), os.environ["DIFFLAB_CACHE"]
    try:
        model = difflab.load("shapes-quick", progress=False)     # cached: loaded, not trained
        out = difflab.generate(model, prompt="a red circle", num_inference_steps=3, seed=1)[0]
        assert out.image.size == (64, 64) and out.record["model"]["kind"] == "shapes"
    finally:
        os.environ["DIFFLAB_CACHE"] = before


def test_a_corrupt_cached_model_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path))
    folder = cache_folder("shapes-quick")
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    with pytest.raises(difflab.InputError, match="incomplete or corrupt; delete that folder"):
        difflab.load("shapes-quick", progress=False)


def test_a_recipe_is_named_by_its_configs_as_parsed(tmp_path):
    """Notebook 06's reuse_cached: two stage configs name the cached model they make, whatever their comments;
    a changed config or overrides name none (that model was never trained)."""
    from difflab.shapes.model import recipe

    shapes = ROOT / "configs" / "shapes"
    assert recipe(shapes / "quick_vae.yaml", shapes / "quick_unet.yaml") == "shapes-quick"
    assert recipe(shapes / "vae.yaml", shapes / "unet.yaml") == "shapes"
    reformatted = tmp_path / "vae.yaml"
    reformatted.write_text("# my copy\n" + yaml.safe_dump(yaml.safe_load((shapes / "vae.yaml").read_text())))
    assert recipe(reformatted, shapes / "unet.yaml") == "shapes"
    with pytest.raises(difflab.InputError, match="reuse_cached: .* are not the recipe of a shapes model"):
        recipe(shapes / "vae.yaml", shapes / "quick_unet.yaml")
    with pytest.raises(difflab.InputError, match=r"reuse_cached: overrides \['steps=5'\] change the recipe"):
        recipe(shapes / "vae.yaml", shapes / "unet.yaml", ["steps=5"])
