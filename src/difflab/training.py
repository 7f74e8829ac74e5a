"""What every difflab trainer shares (the from-scratch DDPM's and the Stable Diffusion one's): the seed of a step,
the EMA update, and the metrics log, which a resumed run cuts back to its checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from . import runs


def step_seed(seed: int, step: int, rank: int) -> int:
    """Everything random at a step derives from (seed, step, rank): a resumed run draws what an uninterrupted one
    would have drawn."""
    return (seed * 1_000_003 + step) * 64 + rank


def tensors(weights) -> list[torch.Tensor]:
    """The parameters of a module, or the values of a {name: tensor} dict, in order."""
    return list(weights.values()) if isinstance(weights, dict) else list(weights.parameters())


@torch.no_grad()
def ema_update(ema, model, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, in float32 whatever the training precision (modules, or dicts
    of tensors with the same keys)."""
    for e, p in zip(tensors(ema), tensors(model)):
        e.lerp_(p.detach().float(), 1 - decay)


class MetricsLog:
    """metrics.jsonl (one JSON line per logged step: loss, lr, grad norm, images/s, processes), mirrored to the
    tracker and shown on the progress bar."""

    def __init__(self, run_dir, tracker, bar, resume_step: int | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.tracker, self.bar = tracker, bar
        self.tick, self.images = time.perf_counter(), 0
        if resume_step is not None:  # forget what was logged after the checkpoint: it will be logged again
            lines = self.path.read_text().splitlines() if self.path.exists() else []
            runs.atomic_write(self.path, "".join(x + "\n" for x in lines if _step(x) is not None
                                                 and _step(x) <= resume_step))

    def count(self, images: int) -> None:
        self.images += images

    def log(self, step: int, loss: float, lr: float, grad_norm: float, processes: int, **extra) -> dict:
        """One line; `extra` adds measurements of this step (the SD trainer's val_loss)."""
        now = time.perf_counter()
        record = {"step": step, "loss": loss, "lr": lr, "grad_norm": float(grad_norm),
                  "images_per_s": round(self.images / (now - self.tick), 2), "processes": processes, **extra}
        self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{record['images_per_s']:.0f}")
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.tracker.log_metrics(record, step)
        self.tick, self.images = now, 0
        return record


def _step(line: str):
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return None
