"""The forward process, conversions between predictions, and the training objective.

Losses take the network as their first argument: any callable `model(x_t, t, **cond) -> prediction`.
Notation as in schedules.py; eps is the noise, v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0
(Salimans & Ho 2022, "Progressive Distillation", section 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError
from .schedules import Schedule, extract

OBJECTIVES = ("eps", "x0", "v")


def q_sample(sched: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (DDPM eq. 4)."""
    return extract(sched.alphas_cumprod.sqrt(), t, x0) * x0 + extract((1 - sched.alphas_cumprod).sqrt(), t, x0) * noise


def q_posterior(sched: Schedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
    """Mean and variance of q(x_{t-1} | x_t, x_0) (DDPM eq. 6-7)."""
    mean = extract(sched.posterior_mean_coef1, t, x_t) * x0 + extract(sched.posterior_mean_coef2, t, x_t) * x_t
    return mean, extract(sched.posterior_variance, t, x_t)


def predict_x0_from_eps(sched, x_t, t, eps):
    """x_0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)  (DDPM eq. 4 solved for x_0)."""
    return (x_t - extract((1 - sched.alphas_cumprod).sqrt(), t, x_t) * eps) / extract(sched.alphas_cumprod.sqrt(), t, x_t)


def predict_eps_from_x0(sched, x_t, t, x0):
    return (x_t - extract(sched.alphas_cumprod.sqrt(), t, x_t) * x0) / extract((1 - sched.alphas_cumprod).sqrt(), t, x_t)


def predict_v(sched, x0, t, eps):
    """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0."""
    return extract(sched.alphas_cumprod.sqrt(), t, x0) * eps - extract((1 - sched.alphas_cumprod).sqrt(), t, x0) * x0


def predict_x0_from_v(sched, x_t, t, v):
    """x_0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v."""
    return extract(sched.alphas_cumprod.sqrt(), t, x_t) * x_t - extract((1 - sched.alphas_cumprod).sqrt(), t, x_t) * v


def predict_eps_from_v(sched, x_t, t, v):
    """eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v."""
    return extract((1 - sched.alphas_cumprod).sqrt(), t, x_t) * x_t + extract(sched.alphas_cumprod.sqrt(), t, x_t) * v


def to_x0_eps(sched, x_t, t, prediction, objective: str):
    """(x_0, eps) from a network prediction of the given objective."""
    if objective == "eps":
        return predict_x0_from_eps(sched, x_t, t, prediction), prediction
    if objective == "x0":
        return prediction, predict_eps_from_x0(sched, x_t, t, prediction)
    if objective == "v":
        return predict_x0_from_v(sched, x_t, t, prediction), predict_eps_from_v(sched, x_t, t, prediction)
    raise InputError(f"objective: {objective!r} is not known; choose one of {', '.join(OBJECTIVES)}")


def training_loss(model, sched: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                  objective: str = "eps", min_snr_gamma: float | None = None, **cond) -> torch.Tensor:
    """Mean squared error of the network's prediction of `objective` at x_t = q_sample(x_0, t, noise).

    min_snr_gamma: Min-SNR weighting (Hang et al. 2023, eq. 8): each timestep's loss is weighted so that it
    matches min(SNR_t, gamma) on the x_0 scale: /SNR for eps, x1 for x_0, /(SNR + 1) for v.
    """
    if objective not in OBJECTIVES:
        raise InputError(f"objective: {objective!r} is not known; choose one of {', '.join(OBJECTIVES)}")
    x_t = q_sample(sched, x0, t, noise)
    target = {"eps": noise, "x0": x0, "v": None}[objective]
    if target is None:
        target = predict_v(sched, x0, t, noise)
    prediction = model(x_t, t, **cond)
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=tuple(range(1, x0.ndim)))
    if min_snr_gamma is not None:
        snr = sched.snr(t).float()
        clipped = snr.clamp(max=min_snr_gamma)
        weight = {"eps": clipped / snr, "x0": clipped, "v": clipped / (snr + 1)}[objective]
        per_sample = per_sample * weight
    return per_sample.mean()
