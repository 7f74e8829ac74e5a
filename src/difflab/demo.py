"""`make demo`: the lab tour. Every notebook, then the shipped sweeps, then one page that links it all.

Offline (configs/notebooks/offline.yaml) it uses `shapes`, the Stable Diffusion model that difflab trains here
(first, when it is not cached yet), and a DDPM trained here on scikit-learn's digits; `--params
configs/notebooks/gpu.yaml` runs the same tour with a real model on a GPU.
Results: results/<timestamp>-tour/{notebooks/, sweeps/, index.html}.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from . import notebooks, report, runs
from .errors import InputError

OFFLINE = "configs/notebooks/offline.yaml"


def _title(path: Path) -> str:
    """A notebook's first markdown heading."""
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            return "".join(cell["source"]).splitlines()[0].lstrip("# ").strip()
    return path.stem


def _about(config: Path) -> str:
    """A sweep config's first comment line: what it shows."""
    for line in config.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def run_tour(params_file=OFFLINE, out=runs.DEFAULT_ROOT, overrides=()) -> Path:
    """Run the tour; returns its index.html. Failing parts are reported on the page and in the exit status."""
    from .sweep import run_sweep

    if params_file == OFFLINE:  # nothing in it needs the network: fail at once rather than wait for one
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    params = notebooks.load_params(params_file, overrides)  # checked before anything runs
    sweeps_dir = notebooks.home() / "configs" / "sweeps"
    for name in params["sweeps"]:
        if not (sweeps_dir / name).is_file():
            raise InputError(f"sweeps: {name!r} in {params_file} is not a shipped sweep in configs/sweeps/")
    from .shapes.model import RECIPES, model_path

    for name in dict.fromkeys(params["parameters"].get(k) for k in ("model", "inpaint_model")):
        if name in RECIPES:   # trained here, once, with its progress bars on this terminal (not inside a notebook)
            model_path(name)
    tour = runs.new_run_dir("tour", out)
    print(f"The lab tour: {tour}", file=sys.stderr)
    with runs.status(tour, "tour"):
        _, results = notebooks.run(params_file=params_file, overrides=overrides, run_dir=tour / "notebooks")
        sweeps = []
        for name, sets in params["sweeps"].items():
            print(f"--- sweep {name}", file=sys.stderr, flush=True)
            entry = {"name": name, "about": _about(sweeps_dir / name), "folder": "", "grids": [], "error": ""}
            try:
                run = run_sweep(sweeps_dir / name, list(sets or []), out=tour / "sweeps")
                entry.update(folder=str(run.dir), grids=[str(p) for p in run.grid_paths()],
                             error=f"{len(run.failed)} images failed" if run.failed else "")
            except (InputError, RuntimeError, OSError) as e:
                entry["error"] = f"{type(e).__name__}: {e}"
            sweeps.append(entry)
    pages = [{**asdict(r), "title": _title(notebooks.home() / "notebooks" / Path(r.notebook).name)} for r in results]
    intro = (f"Parameters: {params_file}. Every image carries its parameters (`difflab info FILE`); "
             "`difflab generate --from FILE` makes it again.")
    page = runs.atomic_write(tour / "index.html",
                             report.tour_page("difflab: the lab tour", intro, pages, sweeps, str(tour)))
    print("\n" + notebooks.summary_table(results), file=sys.stderr)
    for s in sweeps:
        print(f"sweep {s['name']}: {'ok' if not s['error'] else s['error']}", file=sys.stderr)
    print(f"\nThe tour: {page}", file=sys.stderr)
    if any(r.status != "ok" for r in results) or any(s["error"] for s in sweeps):
        raise SystemExit(1)
    return page
