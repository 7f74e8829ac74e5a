"""Datasets as in-memory uint8 tensors (N, C, H, W) with integer labels; batches drawn by step.

- digits: scikit-learn's 8x8 digits (1797 images, 10 classes), upsampled; ships with scikit-learn (offline).
- cifar10: the standard python-version archive, read without torchvision; downloaded with its checksum when
  there is a network, else taken from `data_dir`.
- folder: any folder of images; class subfolders give labels.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..runs import cache_root

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
DATASETS = ("digits", "cifar10", "folder")


@dataclass
class DataConfig:
    name: str = "digits"
    image_size: int = 32
    data_dir: str | None = None     # cifar10: where the archive is (or goes); folder: the image folder
    flip: bool = False              # random horizontal flips (CIFAR-10 yes; digits no: a flipped 2 is not a 2)
    download: bool = True           # cifar10: fetch it when missing and a network is there


@dataclass
class Dataset:
    images: torch.Tensor            # (N, C, H, W) uint8
    labels: torch.Tensor            # (N,) int64
    num_classes: int | None
    class_names: list[str]


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, h, w) -> uint8 (N, C, size, size), bilinear with antialiasing."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def load_digits(size: int) -> Dataset:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    images = torch.from_numpy((d.images * (255 / 16)).round().astype(np.uint8))[:, None]  # (1797, 1, 8, 8)
    return Dataset(_resize(images, size), torch.from_numpy(d.target).long(), 10, [str(i) for i in range(10)])


class _ArraysOnly(pickle.Unpickler):
    """CIFAR-10's python batches are pickles: allow numpy arrays and plain data, nothing that can run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a CIFAR-10 batch")


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cifar_archive(data_dir: Path, download: bool) -> Path:
    archive = data_dir / "cifar-10-python.tar.gz"
    if archive.is_file():
        return archive
    hint = (f"download {CIFAR10_URL} (md5 {CIFAR10_MD5}) into {data_dir}/, or pass data.data_dir "
            f"(--data-dir) where it is")
    if not download:
        raise InputError(f"data: CIFAR-10 is not at {archive}; {hint}")
    import urllib.request
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_suffix(".part")
    try:
        with urllib.request.urlopen(CIFAR10_URL, timeout=30) as response, open(tmp, "wb") as f:
            while block := response.read(1 << 20):
                f.write(block)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InputError(f"data: CIFAR-10 is not at {archive} and could not be downloaded ({e}); {hint}") from None
    if _md5(tmp) != CIFAR10_MD5:
        tmp.unlink()
        raise InputError(f"data: the downloaded CIFAR-10 archive has the wrong checksum; {hint}")
    tmp.rename(archive)
    return archive


def load_cifar10(size: int, data_dir, download: bool) -> Dataset:

    data_dir = Path(data_dir) if data_dir else cache_root() / "data" / "cifar10"
    images, labels = [], []
    with tarfile.open(_cifar_archive(data_dir, download)) as tar:
        for i in range(1, 6):
            f = tar.extractfile(f"cifar-10-batches-py/data_batch_{i}")
            batch = _ArraysOnly(io.BytesIO(f.read()), encoding="bytes").load()
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels += list(batch[b"labels"])
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    return Dataset(_resize(torch.from_numpy(np.concatenate(images)), size), torch.tensor(labels), 10, names)


def load_folder(size: int, data_dir) -> Dataset:
    from PIL import Image

    root = Path(data_dir or "")
    if not data_dir or not root.is_dir():
        raise InputError(f"data.data_dir: {data_dir!r} is not a folder of images")
    suffixes = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = ([(p, i) for i, c in enumerate(classes) for p in sorted((root / c).rglob("*")) if p.suffix.lower() in suffixes]
             if classes else [(p, 0) for p in sorted(root.iterdir()) if p.suffix.lower() in suffixes])
    if not files:
        raise InputError(f"data.data_dir: no images in {data_dir!r}")
    images = []
    for path, _ in files:
        with Image.open(path) as im:
            im = im.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
            images.append(torch.from_numpy(np.array(im)).permute(2, 0, 1))
    return Dataset(torch.stack(images), torch.tensor([label for _, label in files]),
                   len(classes) or None, classes or ["all"])


def load_dataset(cfg: DataConfig) -> Dataset:
    if cfg.name == "digits":
        return load_digits(cfg.image_size)
    if cfg.name == "cifar10":
        return load_cifar10(cfg.image_size, cfg.data_dir, cfg.download)
    if cfg.name == "folder":
        return load_folder(cfg.image_size, cfg.data_dir)
    raise InputError(f"data.name: {cfg.name!r} is not known; choose one of {', '.join(DATASETS)}")


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_pil(x: torch.Tensor):
    """One image, float (C, H, W) in [-1, 1] -> an RGB PIL image (grey images repeated over the channels)."""
    from PIL import Image

    return Image.fromarray(to_uint8(x).permute(1, 2, 0).squeeze(-1).numpy()).convert("RGB")


def batch_indices(n: int, batch_size: int, step: int, seed: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """The indices of `rank`'s share of the global batch at `step`: epoch-wise permutations, a function of
    (seed, step) alone, so a resumed run draws exactly the batches an uninterrupted run would."""
    global_batch = batch_size * world
    per_epoch = max(1, n // global_batch)
    epoch, position = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    start = position * global_batch + rank * batch_size
    return perm[start:start + batch_size]
