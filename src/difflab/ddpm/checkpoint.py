"""Checkpoints: weights as safetensors (config in their metadata), optimizer state loaded weights_only,
written atomically (a folder renamed into place), the last N kept.

    <run>/checkpoints/step-0001000/  model.safetensors  ema.safetensors  optimizer.pt  state.json  config.yaml
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

from .. import config as configs
from ..errors import InputError
from ..runs import publish_mode
from .config import TrainConfig
from .unet import UNet


def _state(module: torch.nn.Module) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


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


def resolve(path) -> Path:
    """A weights file from what a user names: a run folder (its latest checkpoint's EMA weights), a checkpoint
    folder (its EMA weights), or a .safetensors file."""
    p = Path(path)
    if p.is_dir() and (p / "checkpoints").is_dir():
        found = latest(p)
        if found is None:
            raise InputError(f"checkpoint: run folder {str(path)!r} has no checkpoint yet")
        p = found
    if p.is_dir():
        p = p / "ema.safetensors"
    if not p.is_file():
        raise InputError(f"checkpoint: {str(path)!r} is not a run folder, checkpoint folder or .safetensors file")
    return p


def read(path) -> tuple[dict, dict, int]:
    """(tensors, training config, step) of a weights file; a corrupt or truncated file is a clear error."""
    path = resolve(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise InputError(f"checkpoint: {str(path)!r} is corrupt or truncated ({e})") from None
    if "config" not in meta:
        raise InputError(f"checkpoint: {str(path)!r} has no difflab training config in its metadata")
    return tensors, json.loads(meta["config"]), int(meta.get("step", 0))


def load_into(module: torch.nn.Module, tensors: dict, source: str = "checkpoint") -> None:
    """Load tensors, naming the first tensor whose shape or presence does not match the model."""
    expected = module.state_dict()
    for key, value in expected.items():
        if key not in tensors:
            raise InputError(f"{source}: tensor {key!r} is missing (the checkpoint does not fit this config)")
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise InputError(f"{source}: tensor {key!r} has shape {tuple(tensors[key].shape)} but the config "
                             f"expects {tuple(value.shape)}")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise InputError(f"{source}: tensor {extra[0]!r} is not in the model (the checkpoint does not fit this config)")
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


def load_model(path, which: str = "ema"):
    """(network with the checkpoint's weights, its TrainConfig, step) from a run, checkpoint folder or file."""
    weights = resolve(path)
    if which != "ema" and weights.name == "ema.safetensors":
        weights = weights.with_name(f"{which}.safetensors")
    tensors, config, step = read(weights)
    cfg = configs.from_dict(TrainConfig, config).validate()
    model = UNet(cfg.model)
    load_into(model, tensors, f"checkpoint {weights}")
    return model.eval(), cfg, step
