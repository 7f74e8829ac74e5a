"""`shapes` and `shapes-quick` as model names: the shapes model from the difflab cache, trained on first use.

Like a first download: when the model is missing, one line says what is happening and about how long it takes, and
`difflab train-sd` runs both stages of the recipe (configs/shapes/) in a child process with its progress bars. A
lock makes a second process wait for the first one's model instead of training its own; the finished folder is
moved into place in one rename, so no half-trained or half-written model is ever loaded, and a killed first-use
training leaves nothing that `load("shapes")` would take for a model. The model folder keeps how it was made in
`training/vae/` and `training/unet/` (each stage's config.yaml, metrics.jsonl and sample grids). The recipe runs
in a child process (not imported) because training loads its base models through difflab's own loader.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import InputError
from ..runs import cache_root, publish_mode

RECIPES = {"shapes": ("vae.yaml", "unet.yaml", "15 to 70 minutes on a 2-core CPU, by its kind; 3 on a GPU"),
           "shapes-quick": ("quick_vae.yaml", "quick_unet.yaml", "2 to 7 minutes on a 2-core CPU")}


def cache_folder(name: str) -> Path:
    """Where model `name` lives in the cache: named by a hash of its recipe (both stages' configs, as parsed, and
    the world's version), so that a changed recipe is trained again and an unchanged one never is."""
    import hashlib
    import json

    from ..config import load_yaml
    from ..notebooks import home
    from . import world

    if name not in RECIPES:
        raise InputError(f"model: {name!r} is not a shapes model; choose one of {', '.join(RECIPES)}")
    configs = [load_yaml(home() / "configs" / "shapes" / f) for f in RECIPES[name][:2]]
    recipe = json.dumps({"world": world.VERSION, "configs": configs}, sort_keys=True)
    return cache_root() / "models" / f"{name}-{hashlib.sha256(recipe.encode()).hexdigest()[:10]}"


def recipe(vae_config, unet_config, overrides=()) -> str:
    """The shapes model name whose recipe is these two stage configs (compared as parsed, so comments and layout
    do not matter): how notebook 06 shows the cached model's training instead of training it a second time."""
    from ..config import load_yaml
    from ..notebooks import home

    if overrides:
        raise InputError(f"reuse_cached: overrides {list(overrides)} change the recipe, so no cached model was "
                         f"trained from it; reuse the recipe as shipped, or train it here")
    wanted = [load_yaml(vae_config), load_yaml(unet_config)]
    for name, (vae, unet, _) in RECIPES.items():
        if [load_yaml(home() / "configs" / "shapes" / f) for f in (vae, unet)] == wanted:
            return name
    raise InputError(f"reuse_cached: {str(vae_config)!r} and {str(unet_config)!r} are not the recipe of a shapes "
                     f"model ({', '.join(RECIPES)}); train them here instead")


def model_path(name: str, progress: bool = True) -> Path:
    """The folder of shapes model `name`, trained once on first use."""
    folder = cache_folder(name)
    if _complete(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # a second process waits here for the first one's model
        if not _complete(folder):
            for stale in folder.parent.glob(f".{name}-training-*"):  # a killed training's work: nobody owns it now
                shutil.rmtree(stale, ignore_errors=True)
            _train(name, folder, progress)
    return folder


def _complete(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    if not (folder / "model_index.json").is_file() or not list((folder / "unet").glob("*.safetensors")):
        raise InputError(f"model: the cached shapes model {str(folder)!r} is incomplete or corrupt; delete that "
                         f"folder and it is trained again")
    return True


def _train(name: str, folder: Path, progress: bool) -> None:
    from ..notebooks import home

    vae, unet, how_long = RECIPES[name]
    configs = home() / "configs" / "shapes"
    work = Path(tempfile.mkdtemp(prefix=f".{name}-training-", dir=folder.parent))
    print(f"difflab: {name} is not in the cache yet; training it once from {configs} into {folder} "
          f"({how_long})", file=sys.stderr, flush=True)
    quiet = [] if progress else ["--no-progress"]
    try:
        first = _stage([str(configs / vae), "--out", str(work / "runs"), *quiet])
        second = _stage([str(configs / unet), "--set", f"base={first / 'model'}", "--out", str(work / "runs"), *quiet])
        staged = work / "model"
        shutil.copytree(second / "model", staged)
        for stage, run in (("vae", first), ("unet", second)):   # how it was made: configs, metrics, sample grids
            shutil.copytree(run, staged / "training" / stage, ignore=shutil.ignore_patterns("model", "checkpoints"))
        publish_mode(staged, folder=True)
        staged.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _die_with_parent() -> None:
    """In the child: be killed when the process that asked for the model dies (Linux), so that a killed first
    use leaves no training running on in the background."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stage(args: list[str]) -> Path:
    """One `difflab train-sd` stage in a child process; returns its run folder (the last line it prints)."""
    done = subprocess.run([sys.executable, "-m", "difflab", "train-sd", *args], stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_die_with_parent)
    if done.returncode:
        raise InputError(f"model: training the shapes model failed (difflab train-sd {' '.join(args)} exited "
                         f"{done.returncode}; its error is above)")
    return Path(done.stdout.strip().splitlines()[-1])
