"""The notebooks in batch: papermill runs each one with parameters from a file and --set, into a run folder.

`difflab notebooks run [NAME ...] [--params FILE] [--set key=value] [--out DIR]` writes
`<out>/<timestamp>-notebooks/` holding one executed copy per notebook, each notebook's own artifacts folder
(its `out` parameter), and summary.json; a failing notebook is reported with its cell and error and the others
still run. Inside a notebook, `output_folder` and `record` are the two calls that tie it to this runner.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import config as configs
from . import runs, tracking
from .errors import InputError

ARTIFACTS = "artifacts.json"
# a parameter file: parameters for every notebook, parameters for one notebook ("02": {...}, by its number),
# and the sweeps the tour runs
PARAMS_KEYS = ("parameters", "notebooks", "sweeps")


def home() -> Path:
    """The folder holding difflab's notebooks/ and configs/: $DIFFLAB_HOME, else the checkout this package runs
    from (an editable install), else the current folder. A non-editable install (`pip install .`) carries the
    library only: run it from a checkout, or point DIFFLAB_HOME at one."""
    places = [Path(os.environ["DIFFLAB_HOME"]).expanduser()] if os.environ.get("DIFFLAB_HOME") else []
    places += [Path(__file__).resolve().parents[2], Path.cwd()]
    for place in places:
        if (place / "notebooks").is_dir() and (place / "configs").is_dir():
            return place
    raise InputError(f"notebooks: no difflab notebooks/ and configs/ in {', '.join(map(str, dict.fromkeys(places)))}; "
                     f"run from a difflab checkout or set DIFFLAB_HOME to one")


# --- inside a notebook

def repo_path(path) -> Path:
    """A path as given if it exists from here, else relative to difflab's home (a notebook may run with
    notebooks/ as its working folder)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or p.exists() else home() / p


def output_folder(out, name: str) -> Path:
    """Where a notebook writes: `out` when the runner gives one, else a new results/<timestamp>-<name>/."""
    if out:
        path = Path(out)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return runs.new_run_dir(name, repo_path(runs.DEFAULT_ROOT))


def record(folder, artifacts: dict, numbers: dict | None = None) -> dict:
    """The notebook's last cell: {caption: path} of what it made, plus numbers worth keeping, written to
    <folder>/artifacts.json for the runner and the tour page. Every path must exist."""
    folder = Path(folder)
    items = []
    for caption, path in artifacts.items():
        path = Path(path)
        if not path.exists():
            raise InputError(f"artifacts: {caption!r} names {str(path)!r}, which does not exist")
        kind = "sweep" if path.is_dir() else path.suffix.lstrip(".").lower()
        items.append({"caption": caption, "path": str(path.resolve()), "kind": kind})
    data = {"folder": str(folder.resolve()), "artifacts": items, "numbers": numbers or {}}
    runs.write_json(folder / ARTIFACTS, data)
    for item in items:
        print(f"{item['kind']:>6}  {item['caption']}: {item['path']}")
    for name, value in (numbers or {}).items():
        print(f"number  {name} = {value}")
    return data


# --- choosing notebooks and parameters

def available() -> list[Path]:
    return sorted((home() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def select(names=()) -> list[Path]:
    """Notebooks by number ("01"), stem ("01_text_to_image") or file name; all of them when none are named."""
    everything = available()
    if not names:
        return everything
    chosen = []
    for name in names:
        stem = Path(name).stem
        match = [p for p in everything if p.stem == stem or p.stem.split("_", 1)[0] == stem]
        if not match:
            raise InputError(f"notebook: {name!r} is not known; choose from {', '.join(p.stem for p in everything)}")
        chosen += [p for p in match if p not in chosen]
    return chosen


def load_params(params_files=None, overrides=()) -> dict:
    """{"parameters": {...}, "sweeps": {...}, "set": {...}, "files": [...]} from parameter files (one path or a
    list: later files override earlier ones, key by key) and --set key=value."""
    files = [params_files] if isinstance(params_files, (str, Path)) else list(params_files or [])
    merged = {"parameters": {}, "notebooks": {}, "sweeps": {}}
    for name in files:
        data = configs.load_yaml(repo_path(name))
        unknown = sorted(set(data) - set(PARAMS_KEYS))
        if unknown:
            raise InputError(f"params: unknown key {unknown[0]!r} in {name}; allowed: {', '.join(PARAMS_KEYS)}")
        for key in PARAMS_KEYS:
            if not isinstance(data.get(key) or {}, dict):
                raise InputError(f"params: {key} in {name} must be a mapping")
            if key == "notebooks":
                for number, values in (data.get(key) or {}).items():
                    if not isinstance(values, dict):
                        raise InputError(f"params: notebooks.{number} in {name} must be a mapping")
                    merged[key].setdefault(str(number).zfill(2), {}).update(values)
            else:
                merged[key].update(data.get(key) or {})
    return {**merged, "set": configs.apply_overrides({}, list(overrides)), "files": [str(f) for f in files]}


def declared(path: Path) -> dict:
    """The parameters a notebook's `parameters` cell declares (name -> papermill's description)."""
    import papermill

    return papermill.inspect_notebook(str(path))


def shares(paths: list[Path], params: dict) -> dict[Path, dict]:
    """Each notebook's share of the parameters: those its parameters cell declares, from `parameters`, then its
    own `notebooks` section, then --set. A --set that no chosen notebook declares is an error (a typo would
    otherwise do nothing)."""
    names = {p: declared(p) for p in paths}
    known = set().union(*names.values()) if names else set()
    for key in params["set"]:
        if key not in known:
            raise InputError(f"set: {key!r} is not a parameter of the chosen notebooks; "
                             f"they take {', '.join(sorted(known))}")
    own = lambda p: params["notebooks"].get(p.name[:2], {})  # noqa: E731
    return {p: {k: v for k, v in {**params["parameters"], **own(p), **params["set"]}.items() if k in n}
            for p, n in names.items()}


# --- running

@dataclass
class Result:
    name: str
    status: str            # ok | failed
    seconds: float
    notebook: str          # the executed copy
    folder: str            # its artifacts folder
    artifacts: list = field(default_factory=list)
    numbers: dict = field(default_factory=dict)
    error: str = ""        # "cell N: Error: message" when it failed


def execute(path: Path, run_dir: Path, parameters: dict, progress: bool = True) -> Result:
    """One notebook through papermill, in the checkout's root; never raises for the notebook's own errors."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    folder = run_dir / path.stem
    executed = run_dir / path.name
    start = time.perf_counter()
    error = ""
    try:
        papermill.execute_notebook(str(path), str(executed), parameters={**parameters, "out": str(folder)},
                                   cwd=str(home()), progress_bar=progress, kernel_name="python3")
    except PapermillExecutionError as e:
        error = f"cell {e.exec_count}: {e.ename}: {str(e.evalue).splitlines()[0] if e.evalue else ''}"
    except Exception as e:  # the kernel died or would not start: still a result, not a crash of the batch
        error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    seconds = round(time.perf_counter() - start, 1)
    recorded = json.loads((folder / ARTIFACTS).read_text()) if (folder / ARTIFACTS).exists() and not error else {}
    if not error and not recorded:
        error = f"the notebook ran but its last cell did not record its artifacts ({ARTIFACTS})"
    return Result(path.stem, "failed" if error else "ok", seconds, str(executed), str(folder),
                  recorded.get("artifacts", []), recorded.get("numbers", {}), error)


def summary_table(results: list[Result]) -> str:
    rows = [("notebook", "status", "seconds", "artifacts", "error")]
    rows += [(r.name, r.status, f"{r.seconds:.1f}", str(len(r.artifacts)), r.error) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + ("  " + row[4] if row[4] else "")
                     for row in rows)


def run(names=(), params_file=None, overrides=(), out=runs.DEFAULT_ROOT, progress: bool = True,
        run_dir=None, tracker: str = "local") -> tuple[Path, list[Result]]:
    """Execute the chosen notebooks into <out>/<timestamp>-notebooks/ (or `run_dir`); write summary.json.
    `params_file`: one parameter file or a list of them; `tracker` mirrors each notebook's numbers and images to
    Comet or TensorBoard."""
    paths = select(names)
    params = load_params(params_file, overrides)
    chosen = shares(paths, params)
    tracking.check(tracker)
    run_dir = Path(run_dir) if run_dir else runs.new_run_dir("notebooks", out)
    run_dir.mkdir(parents=True, exist_ok=True)
    mirror = tracking.make(tracker, run_dir)
    mirror.log_params({**params["parameters"], **params["set"]})
    results = []
    for step, path in enumerate(paths):
        print(f"--- {path.name}", flush=True)
        results.append(execute(path, run_dir.resolve(), chosen[path], progress))
        print(f"    {results[-1].status} in {results[-1].seconds:.1f} s {results[-1].error}", flush=True)
        r = results[-1]
        mirror.log_metrics({f"{r.name}.seconds": r.seconds, f"{r.name}.ok": int(r.status == "ok"),
                            **{f"{r.name}.{k}": v for k, v in r.numbers.items()}}, step)
        for a in r.artifacts:
            if a["kind"] == "png":
                mirror.log_image(a["path"], f"{r.name}/{Path(a['path']).stem}", {"caption": a["caption"]}, step)
    mirror.finish("failed" if any(r.status != "ok" for r in results) else "complete")
    runs.write_json(run_dir / "summary.json", {"params_file": ", ".join(params["files"]) or None,
                                               "parameters": {**params["parameters"], **params["set"]},
                                               "results": [asdict(r) for r in results]})
    runs.atomic_write(run_dir / "summary.txt", summary_table(results) + "\n")
    return run_dir, results
