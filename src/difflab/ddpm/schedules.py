"""Noise schedules: betas and the quantities derived from them, computed in float64.

Notation (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", DDPM):
    beta_t          variance of the noise added at step t          (t = 0 .. T-1 here, 1 .. T in the paper)
    alpha_t         1 - beta_t
    alphas_cumprod  alpha_bar_t = prod_{s<=t} alpha_s;  q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
Kept in float64 and cast to the data's dtype only when used (as improved-diffusion does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InputError

SCHEDULES = ("linear", "cosine", "sigmoid")


def beta_schedule(name: str, timesteps: int) -> torch.Tensor:
    """Betas of schedule `name` for T = `timesteps` steps: float64, shape (T,)."""
    if not isinstance(timesteps, int) or timesteps < 2:
        raise InputError(f"timesteps: {timesteps!r} is not allowed; use an integer >= 2")
    if name == "linear":
        # Ho et al. 2020: 1e-4 .. 0.02 for T = 1000, scaled so that other T keep the same total noise
        scale = 1000 / timesteps
        return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)
    if name == "cosine":
        # Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2), s = 0.008;
        # beta_t = 1 - alpha_bar(t+1) / alpha_bar(t), clipped at 0.999 to avoid a singularity at t = T
        s = 0.008
        t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        alpha_bar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    if name == "sigmoid":
        # a sigmoid from 1e-4 to 0.02 over [-6, 6] (GeoDiff, Xu et al. 2022; diffusers' "sigmoid")
        scale = 1000 / timesteps
        start, end = scale * 1e-4, scale * 0.02
        return torch.sigmoid(torch.linspace(-6, 6, timesteps, dtype=torch.float64)) * (end - start) + start
    raise InputError(f"schedule: {name!r} is not known; choose one of {', '.join(SCHEDULES)}")


@dataclass
class Schedule:
    """Everything the forward process and the samplers read from the betas, precomputed in float64."""

    betas: torch.Tensor

    def __post_init__(self):
        b = self.betas.to(torch.float64)
        if b.ndim != 1 or len(b) < 2 or not ((b > 0) & (b < 1)).all():
            raise InputError("betas: need a 1-d tensor of at least 2 values in (0, 1)")
        self.betas = b
        self.alphas = 1.0 - b
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        # posterior q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, posterior_variance): DDPM eq. 6-7
        self.posterior_variance = b * (1 - self.alphas_cumprod_prev) / (1 - self.alphas_cumprod)
        self.posterior_mean_coef1 = b * self.alphas_cumprod_prev.sqrt() / (1 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1 - self.alphas_cumprod_prev) * self.alphas.sqrt() / (1 - self.alphas_cumprod)

    @classmethod
    def named(cls, name: str, timesteps: int) -> "Schedule":
        return cls(beta_schedule(name, timesteps))

    @property
    def timesteps(self) -> int:
        return len(self.betas)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) at integer timesteps t."""
        a = self.alphas_cumprod[t.cpu()]
        return (a / (1 - a)).to(t.device)


def extract(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """values[t] shaped to broadcast over x: (B,) -> (B, 1, 1, 1), in x's dtype and device."""
    out = values[t.cpu().long()].to(device=x.device, dtype=x.dtype)
    return out.reshape(-1, *([1] * (x.ndim - 1)))
