"""Evaluating samples.

- FID against the training set through torchmetrics (its standard Inception network), where that package and
  its weights are available.
- Offline, for digits: a small classifier trained here on the real digits (its held-out accuracy reported)
  scores generated samples: the classification accuracy score (CAS, Ravuri & Vinyals 2019: how often the
  intended class is recognised) and the Frechet distance in that classifier's feature space (as FID does in
  Inception's), for real vs real and real vs generated.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .checkpoint import load_model
from .data import Dataset, load_dataset, to_model_range, to_uint8
from .generation import sample_images
from .schedules import Schedule


class DigitClassifier(nn.Module):
    def __init__(self, size: int, channels: int = 1, classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(64 * ((size + 3) // 4) ** 2, 128), nn.ReLU())
        self.head = nn.Linear(128, classes)

    def features(self, x):           # (B, C, H, W) in [-1, 1] -> (B, 128)
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


def split(n: int, seed: int = 0, held_out: float = 0.2):
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(n * (1 - held_out))
    return perm[:cut], perm[cut:]


def train_classifier(data: Dataset, seed: int = 0, epochs: int = 25) -> tuple[DigitClassifier, float]:
    """A classifier of the real images (80% to train, 20% held out); returns it and its held-out accuracy."""
    torch.manual_seed(seed)
    train_idx, test_idx = split(len(data.images), seed)
    x, y = to_model_range(data.images), data.labels
    clf = DigitClassifier(data.images.shape[-1], data.images.shape[1], data.num_classes)
    opt = torch.optim.Adam(clf.parameters(), 1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in train_idx[torch.randperm(len(train_idx), generator=g)].split(64):
            # small random shifts make the classifier judge shapes, not exact pixels
            shift = tuple(int(v) for v in torch.randint(-1, 2, (2,), generator=g))
            loss = F.cross_entropy(clf(torch.roll(x[batch], shift, dims=(2, 3))), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    clf.eval()
    return clf, accuracy(clf, x[test_idx], y[test_idx])


@torch.no_grad()
def accuracy(clf, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((clf(images).argmax(-1) == labels).float().mean())


@torch.no_grad()
def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two feature sets (FID's formula)."""
    from scipy import linalg
    a, b = a.double().numpy(), b.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s_a @ s_b, disp=False)
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


@torch.no_grad()
def score_digits(clf: DigitClassifier, data: Dataset, generated: torch.Tensor, intended: torch.Tensor,
                 seed: int = 0) -> dict:
    """CAS and Frechet distances of `generated` ([-1, 1]) made for classes `intended`."""
    train_idx, test_idx = split(len(data.images), seed)
    real = to_model_range(data.images)
    f_train, f_test = clf.features(real[train_idx]), clf.features(real[test_idx])
    f_gen = clf.features(generated)
    return {"cas": accuracy(clf, generated, intended),
            "fd_real_vs_real": frechet_distance(f_train, f_test),
            "fd_real_vs_generated": frechet_distance(f_train, f_gen)}


def fid(real_uint8: torch.Tensor, generated_uint8: torch.Tensor) -> float:
    """FID with torchmetrics' Inception network (needs `torchmetrics[image]` and its weights)."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        metric = FrechetInceptionDistance(feature=2048)
    except Exception as e:  # noqa: BLE001  (missing package, or weights that cannot be downloaded)
        raise InputError(f"eval: FID needs torchmetrics[image] and its Inception weights, which are not available "
                         f"here ({type(e).__name__}: {str(e).splitlines()[0][:120]}); on a machine with a network: "
                         f"pip install 'torchmetrics[image]'. Offline, digits models are scored with a classifier "
                         f"trained here") from None
    def rgb(x):
        return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x
    for start in range(0, len(real_uint8), 256):
        metric.update(rgb(real_uint8[start:start + 256]), real=True)
    for start in range(0, len(generated_uint8), 256):
        metric.update(rgb(generated_uint8[start:start + 256]), real=False)
    return float(metric.compute())


def evaluate_checkpoint(checkpoint_path, *, n: int = 1000, sampler=None, steps=None, eta=None,
                        guidance_scale=None, seed: int = 0, progress: bool = True) -> dict:
    """`difflab eval`: digits models offline (classifier score, Frechet distance in its features), others by
    FID through torchmetrics. Samples cycle through the classes of a class-conditional model."""
    model, cfg, step = load_model(checkpoint_path)
    s = cfg.sample.override(sampler, steps, eta, guidance_scale)
    sampler, steps, eta, guidance_scale = s.sampler, s.steps, s.eta, s.guidance_scale
    data = load_dataset(cfg.data)
    labels = torch.arange(n) % cfg.model.num_classes if cfg.model.num_classes else None
    sched = Schedule.named(cfg.diffusion.schedule, cfg.diffusion.timesteps)
    report = {"checkpoint": str(checkpoint_path), "step": step, "n": n, "sampler": sampler,
              "steps": steps if sampler == "ddim" else cfg.diffusion.timesteps, "eta": eta,
              "guidance_scale": guidance_scale}
    if cfg.data.name == "digits":
        clf, held_out = train_classifier(data, seed)
        generated = sample_images(model, sched, n, sampler=sampler, steps=steps, eta=eta,
                                  guidance_scale=guidance_scale, labels=labels, seed=seed,
                                  objective=cfg.diffusion.objective, progress=progress)
        report.update(classifier_held_out_accuracy=held_out, **score_digits(clf, data, generated, labels, seed))
    else:
        try:  # fail before sampling, not after
            from torchmetrics.image.fid import FrechetInceptionDistance  # noqa: F401
        except ImportError:
            fid(data.images[:0], data.images[:0])  # raises the explanatory InputError
        generated = sample_images(model, sched, n, sampler=sampler, steps=steps, eta=eta,
                                  guidance_scale=guidance_scale, labels=labels, seed=seed,
                                  objective=cfg.diffusion.objective, progress=progress)
        report["fid"] = fid(data.images, to_uint8(generated))
    return report
