"""Everything difflab writes to disk: run folders, atomic writes, manifests, run records and the cache root.

Nothing half-written is ever left on disk. A run folder is `<root>/<YYYYmmdd-HHMMSS>-<slug>/`; the folder alone is
enough to understand the run.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

DEFAULT_ROOT = Path("results")
MANIFEST = "manifest.jsonl"


def cache_root() -> Path:
    """Where difflab keeps what it builds: $DIFFLAB_CACHE, else $XDG_CACHE_HOME/difflab, else ~/.cache/difflab."""
    if os.environ.get("DIFFLAB_CACHE"):
        return Path(os.environ["DIFFLAB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "difflab"


def slugify(text: str, max_len: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or "run"


def new_run_dir(name: str, root=DEFAULT_ROOT) -> Path:
    """Create and return a fresh `<root>/<timestamp>-<slug>` folder (a suffix keeps it unique)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{slugify(name)}"
    for n in range(1, 1000):
        path = root / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"out: could not create a new run folder under {root}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_mode(path, folder: bool = False) -> None:
    """Give a temporary file or folder (created private by tempfile) the mode a normal one would have."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def atomic_write(path, data: bytes | str) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        publish_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path, obj) -> Path:
    return atomic_write(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def save_image(image, path, pnginfo=None) -> Path:
    """Save a PIL image as PNG atomically, with optional text chunks."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=pnginfo)
    return atomic_write(path, buf.getvalue())


# --- the manifest: one JSON line per image, appended; a torn last line (a kill mid-write) is ignored

def read_manifest(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a kill
    return entries


def append_manifest(run_dir: Path, entry: dict) -> None:
    """One write() of one whole line on an O_APPEND file: lines from several processes never interleave."""
    fd = os.open(Path(run_dir) / MANIFEST, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry, ensure_ascii=False) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def compact_manifest(run_dir: Path) -> dict[str, dict]:
    """Keep the first finished line of each image whose file exists; drop failures (they will be retried)
    and torn lines. Rewritten atomically; returns the finished entries by key."""
    done = {}
    for entry in read_manifest(run_dir):
        if entry.get("status") == "ok" and entry["key"] not in done and (Path(run_dir) / entry["file"]).is_file():
            done[entry["key"]] = entry
    text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in done.values())
    atomic_write(Path(run_dir) / MANIFEST, text)
    return done


def write_run_record(run_dir, *, kind: str, status: str, command: list, task: str, model: dict, params: dict,
                     prompts: list, images: list) -> Path:
    """run.json of a generation run (the CLI's and the web UI's): what made the images, and whether it finished."""
    return write_json(Path(run_dir) / "run.json", {
        "kind": kind, "status": status, "command": command, "task": task, "model": model, "params": params,
        "prompts": prompts, "images": images})


@contextmanager
def status(run_dir, kind: str, tracker=None):
    """run.json says whether a run is running (with its pid), complete, interrupted or failed (with the error);
    the tracker, if any, is finished with the same status. `run_dir` None (a secondary process) records nothing."""
    path = Path(run_dir) / "run.json" if run_dir else None
    record = {"kind": kind, "status": "running", "pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if path:
        write_json(path, record)
    state, error = "complete", None
    try:
        yield record
    except KeyboardInterrupt:
        state = "interrupted"
        raise
    except BaseException as e:
        state, error = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise
    finally:
        if path:
            write_json(path, {**record, "status": state, "error": error,
                              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
        if tracker is not None:
            tracker.finish(state)
