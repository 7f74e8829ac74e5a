"""Experiment records: always local (the run folder), mirrored to Comet or TensorBoard on request.

A tracker receives a run's parameters, metrics, images with their parameters, and grids. `local` writes nothing
more than the run folder already holds (resolved config, manifest or metrics JSONL, images, run.json): it is the
record that is always there. `comet` and `tensorboard` mirror it. A mirror that fails (package missing, network
gone) warns once, in one line, and the run goes on with its local records intact.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import warnings
from pathlib import Path

import yaml

from .params import InputError

TRACKERS = ("local", "comet", "tensorboard")


def check(name: str) -> None:
    if name not in TRACKERS:
        raise InputError(f"tracker: {name!r} is not known; choose one of {', '.join(TRACKERS)}")


class Tracker:
    """`local`: the run folder is the record; every call here is a no-op. Mirrors override `_log_*`."""

    name = "local"

    def __init__(self, run_dir=None):
        self.run_dir = Path(run_dir) if run_dir else None
        self.failed = False

    # The public calls never raise: a mirror that fails is switched off with one warning.
    def log_params(self, params: dict) -> None:
        self._guard(self._log_params, params)

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self._guard(self._log_metrics, {k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step)

    def log_image(self, path, name: str | None = None, parameters: dict | None = None, step: int | None = None):
        """An image file, with its parameters as metadata (an image's record, or a grid's description)."""
        self._guard(self._log_image, Path(path), name or Path(path).stem, parameters or {}, step)

    def finish(self, status: str = "complete") -> None:
        self._guard(self._finish, status)

    def _guard(self, fn, *args) -> None:
        if self.failed:
            return
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001  (a mirror must never stop a run)
            self.failed = True
            warnings.warn(f"tracker {self.name}: stopped mirroring ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); local records are complete", stacklevel=3)

    def _log_params(self, params): pass
    def _log_metrics(self, metrics, step): pass
    def _log_image(self, path, name, parameters, step): pass
    def _finish(self, status): pass


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out


class CometTracker(Tracker):
    """Comet: an online experiment with an API key (from COMET_API_KEY or Comet's config file, read by comet_ml
    itself and never written by difflab); else, or with COMET_OFFLINE=1, an offline experiment whose archive is
    written inside the run folder, to upload later with `comet upload`."""

    name = "comet"

    def __init__(self, run_dir, project: str = "difflab"):
        super().__init__(run_dir)
        os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")  # difflab logs what it means to, nothing more
        import comet_ml
        from comet_ml.config import get_api_key, get_config

        quiet = dict(log_code=False, log_graph=False, auto_param_logging=False, auto_metric_logging=False,
                     parse_args=False, auto_output_logging=False, log_env_details=False, log_git_metadata=False,
                     log_git_patch=False, display_summary_level=0)
        self.offline = os.environ.get("COMET_OFFLINE", "").lower() in ("1", "true", "yes") or \
            not get_api_key(None, get_config())
        if self.offline:
            self.folder = self.run_dir / "comet"
            self.folder.mkdir(parents=True, exist_ok=True)
            self.experiment = comet_ml.OfflineExperiment(project_name=project, offline_directory=str(self.folder),
                                                         **quiet)
        else:
            self.experiment = comet_ml.Experiment(project_name=project, **quiet)
        self.experiment.set_name(self.run_dir.name)

    def _log_params(self, params):
        self.experiment.log_parameters(_flat(params))

    def _log_metrics(self, metrics, step):
        self.experiment.log_metrics(metrics, step=step)

    def _log_image(self, path, name, parameters, step):
        self.experiment.log_image(str(path), name=name, step=step, metadata=_flat(parameters))

    def _finish(self, status):
        self.experiment.log_other("status", status)
        self.experiment.end()
        if self.offline:
            archives = sorted(self.folder.glob("*.zip"))
            where = archives[-1] if archives else self.folder
            print(f"difflab: Comet offline archive: {where} (upload it with `comet upload {where}`)")


class TensorBoardTracker(Tracker):
    """TensorBoard event files in <run>/tensorboard: scalars, and images (sample grids) at their step."""

    name = "tensorboard"

    def __init__(self, run_dir):
        super().__init__(run_dir)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def _log_params(self, params):
        self.writer.add_text("config", "```\n" + json.dumps(params, indent=2, default=str) + "\n```")

    def _log_metrics(self, metrics, step):
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def _log_image(self, path, name, parameters, step):
        import numpy as np
        from PIL import Image

        with Image.open(path) as im:
            self.writer.add_image(name, np.asarray(im.convert("RGB")), step, dataformats="HWC")

    def _finish(self, status):
        self.writer.add_text("status", status)
        self.writer.close()


def make(name: str, run_dir) -> Tracker:
    """The tracker `name` for a run folder; a mirror that cannot start warns once and gives the local one."""
    check(name)
    if name == "local":
        return Tracker(run_dir)
    try:
        return CometTracker(run_dir) if name == "comet" else TensorBoardTracker(run_dir)
    except Exception as e:  # noqa: BLE001
        extra = {"comet": "difflab[comet]", "tensorboard": "difflab[tensorboard]"}[name]
        hint = f"pip install '{extra}'" if isinstance(e, ImportError) else f"{type(e).__name__}: {e}"
        warnings.warn(f"tracker {name}: not available ({hint}); recording locally only", stacklevel=2)
        return Tracker(run_dir)


# --- the local record, read back: `difflab runs` and `difflab runs show`

def _pid_alive(record: dict) -> bool:
    if record.get("host") != socket.gethostname() or not record.get("pid"):
        return False
    try:
        os.kill(record["pid"], 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _status(record: dict) -> str:
    """A run.json status, with 'running' checked: a run whose process is gone was interrupted."""
    state = record.get("status", "interrupted")
    return "interrupted" if state == "running" and not _pid_alive(record) else state


def summarize(run_dir) -> dict:
    """What one run folder is: kind, date, model, key parameters, images (or steps) done and failed, status."""
    d = Path(run_dir)
    out = {"name": d.name, "kind": "unknown", "date": _date(d.name), "model": "", "parameters": "",
           "done": 0, "failed": 0, "total": None, "status": "unknown", "seconds": None, "path": str(d)}
    run_json = json.loads((d / "run.json").read_text()) if (d / "run.json").is_file() else {}
    if (d / "sweep.yaml").is_file():
        from . import sweep
        resolved = sweep.load_resolved(d)
        entries = {e["key"]: e for e in sweep.read_manifest(d)}  # the last word on each image (read only)
        total = sum(len(c.seeds) for c in sweep.plan(resolved))
        ok = sum(e["status"] == "ok" for e in entries.values())
        failed = sum(e["status"] != "ok" for e in entries.values())
        axes = ", ".join(f"{a}: {resolved[a]['param']} x{len(resolved[a]['values'])}" for a in ("x", "y", "z")
                         if resolved.get(a))
        out.update(kind="sweep", model=resolved["model"], parameters=f"{resolved['task']}; {axes}", done=ok,
                   failed=failed, total=total, seconds=round(sum(e.get("seconds") or 0 for e in entries.values()), 1),
                   status="complete" if ok == total else ("failed" if ok + failed == total else "interrupted"))
    elif (d / "config.yaml").is_file() and (d / "metrics.jsonl").exists():
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if x.strip()]
        done = lines[-1]["step"] if lines else 0
        state = _status(run_json) if run_json else "interrupted"
        if state == "complete" and done < cfg["steps"]:
            state = "interrupted"
        out.update(kind="train", model=f"ddpm {cfg['data']['name']}", done=done, total=cfg["steps"], status=state,
                   parameters=f"{cfg['diffusion']['schedule']} T={cfg['diffusion']['timesteps']}, "
                              f"batch {cfg['batch_size']}, lr {cfg['lr']}")
    elif run_json.get("kind") == "generate":
        params = run_json.get("params", {})
        out.update(kind="generate", model=run_json.get("model", {}).get("name", ""), done=len(run_json["images"]),
                   status=_status(run_json),
                   parameters=f"{run_json.get('task')}: {(run_json.get('prompts') or [''])[0][:40]!r}, "
                              f"{params.get('num_inference_steps')} steps, CFG {params.get('guidance_scale')}")
    elif (d / "summary.json").is_file() or (d / "notebooks" / "summary.json").is_file():
        tour = (d / "notebooks" / "summary.json").is_file()
        summary = json.loads(((d / "notebooks") if tour else d).joinpath("summary.json").read_text())
        results = summary["results"]
        failed = sum(r["status"] != "ok" for r in results)
        out.update(kind="tour" if tour else "notebooks", model=str(summary["parameters"].get("model", "")),
                   parameters=str(summary.get("params_file") or ""), done=len(results) - failed, failed=failed,
                   total=len(results), seconds=round(sum(r["seconds"] for r in results), 1),
                   status="failed" if failed else (_status(run_json) if run_json else "complete"))
    elif (d / "eval.json").is_file():
        out.update(kind="eval", status="complete")
    elif list(d.glob("*.png")):  # images but no run.json: a generation killed before it could write one
        out.update(kind="generate", done=len(list(d.glob("[0-9]*.png"))), status="interrupted")
    return out


def _date(name: str) -> str:
    m = re.match(r"(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})", name)
    return f"{m[1]}-{m[2]}-{m[3]} {m[4]}:{m[5]}:{m[6]}" if m else ""


def list_runs(root) -> list[dict]:
    """Every run folder directly under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dir: {str(root)!r} is not a folder")
    return [summarize(d) for d in sorted(root.iterdir()) if d.is_dir() and _date(d.name)]


def table(rows: list[dict]) -> str:
    header = ("name", "kind", "date", "model", "parameters", "done", "failed", "status")
    cells = [header] + [(r["name"], r["kind"], r["date"], r["model"][:40], r["parameters"][:60],
                         f"{r['done']}/{r['total']}" if r["total"] is not None else str(r["done"]), str(r["failed"]),
                         r["status"]) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def show(run_dir) -> str:
    """One run: its summary, parameters, timing and artifacts."""
    d = Path(run_dir)
    if not d.is_dir():
        raise InputError(f"run: {str(run_dir)!r} is not a run folder")
    s = summarize(d)
    files = [p for p in d.rglob("*") if p.is_file()]
    last = max((p.stat().st_mtime for p in files), default=d.stat().st_mtime)
    lines = [f"{s['name']}  ({s['kind']}, {s['status']})", f"  path:       {d}", f"  model:      {s['model']}",
             f"  parameters: {s['parameters']}",
             f"  done:       {s['done']}" + (f"/{s['total']}" if s["total"] is not None else "") + f", failed {s['failed']}",
             f"  started:    {s['date']}", f"  last write: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(last))}"]
    if s["seconds"] is not None:
        lines.append(f"  compute:    {s['seconds']} s")
    config = next((d / n for n in ("sweep.yaml", "config.yaml") if (d / n).is_file()), None)
    if config:
        lines += ["", f"{config.name}:"] + ["  " + x for x in config.read_text().splitlines()]
    elif (d / "run.json").is_file():
        record = json.loads((d / "run.json").read_text())
        lines += ["", "run.json:"] + ["  " + x for x in json.dumps(record, indent=2).splitlines()]
    kinds: dict = {}
    for p in files:
        kinds.setdefault(p.suffix or p.name, []).append(p)
    lines += ["", "artifacts:"]
    for suffix, paths in sorted(kinds.items()):
        shown = ", ".join(str(p.relative_to(d)) for p in sorted(paths)[:4]) + (" ..." if len(paths) > 4 else "")
        lines.append(f"  {len(paths):>4} {suffix:<8} {shown}")
    return "\n".join(lines)
