"""DDPM checkpoints: what a user names (a run, a checkpoint folder, a weights file) resolved to weights, and the
network rebuilt from the config stored in them. Writing and restoring checkpoints is difflab.checkpoints."""

from __future__ import annotations

from pathlib import Path

from .. import checkpoints
from .. import config as configs
from ..checkpoints import latest, load_into
from ..errors import InputError
from .config import TrainConfig
from .unet import UNet


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
    """(tensors, training config, step) of the weights a user names."""
    return checkpoints.read(resolve(path))


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
