"""`difflab runs`: the local records of every run under a folder, read back as a table, and one run in full.

Run folders are found at any depth; what each one is (sweep, training, generation, notebooks, tour, evaluation)
is read from the files it holds, so this module knows the record formats but runs nothing.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

import yaml

from . import runs, sweep
from .errors import InputError

LEAVES = ("images", "checkpoints", "samples", "tensorboard", "comet")  # a run's own files: no runs inside


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
        resolved = sweep.load_resolved(d)
        entries = {e["key"]: e for e in runs.read_manifest(d)}  # the last word on each image (read only)
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
        if "diffusion" in cfg:  # the from-scratch DDPM
            model = f"ddpm {cfg['data']['name']}"
            parameters = f"{cfg['diffusion']['schedule']} T={cfg['diffusion']['timesteps']}, "
        else:  # a Stable Diffusion stage
            model = f"sd {cfg.get('base') or cfg['data']['name']}"
            parameters = f"train {'+'.join(cfg['train'])}, {cfg['mixed_precision']}, "
        out.update(kind="train", model=model, done=done, total=cfg["steps"], status=state,
                   parameters=parameters + f"batch {cfg['batch_size']}, lr {cfg['lr']}")
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


def is_run(folder: Path) -> bool:
    """A run folder is named `<YYYYmmdd-HHMMSS>-<name>` (runs.new_run_dir)."""
    return folder.is_dir() and bool(_date(folder.name))


def list_runs(root) -> list[dict]:
    """Every run folder under `root`, at any depth (the sweeps a notebook or the tour made inside its own
    folder, runs under an --out parent), oldest first, each nested run right after its parent. A row's
    `depth` counts the runs it sits in; its `name` is its path from that parent run (or from `root`)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dir: {str(root)!r} is not a folder")
    rows: list[dict] = []

    def walk(folder: Path, base: Path, depth: int) -> None:
        for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if d.name in LEAVES:
                continue
            if is_run(d):
                rows.append({**summarize(d), "name": str(d.relative_to(base)), "depth": depth})
                walk(d, d, depth + 1)
            else:
                walk(d, base, depth)

    walk(root, root, 0)
    return rows


def table(rows: list[dict]) -> str:
    header = ("name", "kind", "date", "model", "parameters", "done", "failed", "status")
    if not rows:
        return ""
    cells = [header] + [("  " * r.get("depth", 0) + r["name"], r["kind"], r["date"], r["model"][:40], r["parameters"][:60],
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
