"""Training data for the Stable Diffusion trainer: the shapes world's training split, rendered once and cached
(images as uint8, object masks, captions) in the difflab cache, so a run, its resume and the next run share it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from ..runs import atomic_write, cache_root
from .config import DataConfig


@dataclass
class Dataset:
    images: torch.Tensor      # (N, 3, H, W) uint8
    masks: torch.Tensor       # (N, 1, H, W) bool: where the objects are
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)


def shapes(cfg: DataConfig, progress: bool = True) -> Dataset:
    """Items 0..size-1 of the shapes world's training split."""
    import io

    from ..shapes import world

    path = cache_root() / "data" / f"shapes-{world.VERSION}-train-{cfg.size}.npz"
    if not path.exists():
        from tqdm.auto import tqdm

        images, masks, captions = [], [], []
        for i in tqdm(range(cfg.size), desc="rendering the shapes world", unit="img", disable=not progress):
            image, scene = world.item(i, "train")
            images.append(np.asarray(image))
            masks.append(np.any(scene.masks, axis=0))
            captions.append(scene.prompt.text)
        buf = io.BytesIO()
        np.savez_compressed(buf, images=np.stack(images), masks=np.stack(masks),
                            captions=np.array(json.dumps(captions)))
        atomic_write(path, buf.getvalue())
    with np.load(path) as data:
        return Dataset(torch.from_numpy(data["images"]).permute(0, 3, 1, 2).contiguous(),
                       torch.from_numpy(data["masks"])[:, None], json.loads(str(data["captions"])))


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range Stable Diffusion's VAE works in."""
    return images.float() / 127.5 - 1
