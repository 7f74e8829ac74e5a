"""Training checkpoints, for every trainer: weights as safetensors (the resolved config in their metadata),
optimizer state loaded with weights_only, written atomically (a folder renamed into place), the last N kept.

    <run>/checkpoints/step-0001000/  model.safetensors  ema.safetensors  optimizer.pt  state.json  config.yaml

`model` and `ema` are torch modules, or {name: tensor} dicts (the Stable Diffusion trainer passes only what it
trains: a LoRA's checkpoint holds the adapters, not the frozen model).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import InputError
from .runs import publish_mode

RECORD_KEY = "difflab"   # fine-tuning outputs (LoRA, embedding, tuned parts): their training record

def _state(weights) -> dict:
    items = weights.items() if isinstance(weights, dict) else weights.state_dict().items()
    return {k: v.detach().contiguous().cpu() for k, v in items}


def save(run_dir, step: int, model, ema, optimizer, lr_scheduler, config: dict, keep: int) -> Path:
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
    meta = {"config": json.dumps(config), "step": str(step)}
    save_file(_state(model), tmp / "model.safetensors", metadata=meta)
    save_file(_state(ema), tmp / "ema.safetensors", metadata=meta)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "lr_scheduler": lr_scheduler.state_dict()}))
    (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    for f in tmp.iterdir():
        publish_mode(f)
    publish_mode(tmp, folder=True)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(folder.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(run_dir) -> Path | None:
    found = sorted((Path(run_dir) / "checkpoints").glob("step-*"))
    return found[-1] if found else None


def read(path) -> tuple[dict, dict, int]:
    """(tensors, training config, step) of a weights file; a corrupt or truncated file is a clear error."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise InputError(f"checkpoint: {str(path)!r} is corrupt or truncated ({e})") from None
    if "config" not in meta:
        raise InputError(f"checkpoint: {str(path)!r} has no difflab training config in its metadata")
    return tensors, json.loads(meta["config"]), int(meta.get("step", 0))


def load_into(module, tensors: dict, source: str = "checkpoint") -> None:
    """Load tensors into a module or a {name: tensor} dict, naming the first tensor whose shape or presence does
    not match."""
    expected = module if isinstance(module, dict) else module.state_dict()
    for key, value in expected.items():
        if key not in tensors:
            raise InputError(f"{source}: tensor {key!r} is missing (the checkpoint does not fit this config)")
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise InputError(f"{source}: tensor {key!r} has shape {tuple(tensors[key].shape)} but the config "
                             f"expects {tuple(value.shape)}")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise InputError(f"{source}: tensor {extra[0]!r} is not in the model (the checkpoint does not fit this config)")
    if isinstance(module, dict):
        with torch.no_grad():
            for key, value in module.items():
                value.copy_(tensors[key])
    else:
        module.load_state_dict(tensors)


def load_training_state(folder: Path, model, ema, optimizer, lr_scheduler) -> int:
    """Restore a checkpoint folder into a run under way; returns its step."""
    for name, module in (("model", model), ("ema", ema)):
        tensors, _, _ = read(folder / f"{name}.safetensors")
        load_into(module, tensors, f"checkpoint {folder.name}/{name}")
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
    state = json.loads((folder / "state.json").read_text())
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    return state["step"]


def training_record(path) -> dict | None:
    """difflab's record in a safetensors file (a LoRA, an embedding, a fine-tuned part), or None."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("pytorch_lora_weights.safetensors")) or sorted(path.glob("*.safetensors"))
        if not found:
            return None
        path = found[0]
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        return None
    return json.loads(meta[RECORD_KEY]) if RECORD_KEY in meta else None
