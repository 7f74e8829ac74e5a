"""Samplers: DDPM ancestral sampling and DDIM. Each takes the network as its first argument:
any callable `model(x_t, t, **cond) -> prediction` of the training objective (eps, x0 or v).

Classifier-free guidance (Ho & Salimans 2022, eq. 6): pred = pred(x, null) + w * (pred(x, c) - pred(x, null)),
computed in one batched forward pass. Randomness comes only from `generator`: one torch.Generator, or a list of
them, one per image (so each image is reproducible whatever the batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import InputError
from .diffusion import OBJECTIVES, predict_eps_from_x0, q_posterior, to_x0_eps
from .schedules import Schedule

SAMPLERS = ("ddim", "ddpm")  # by name, for configs and the CLI

SPACINGS = ("leading", "trailing", "linspace")
VARIANCES = ("small", "large")


@dataclass
class Step:
    """One kept intermediate: the timestep, x_t and the network's prediction of x_0 at that step."""

    t: int
    x_t: torch.Tensor
    pred_x0: torch.Tensor


def randn_like(x: torch.Tensor, generator=None) -> torch.Tensor:
    """Gaussian noise shaped like x, drawn on the CPU from one generator or from one generator per image."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != x.shape[0]:
            raise InputError(f"generator: {len(generator)} generators for a batch of {x.shape[0]}")
        noise = torch.cat([torch.randn((1, *x.shape[1:]), generator=g, dtype=x.dtype) for g in generator])
    else:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu" if generator else x.device)
    return noise.to(x.device)


def _schedule(betas) -> Schedule:
    return betas if isinstance(betas, Schedule) else Schedule(torch.as_tensor(betas, dtype=torch.float64))


def guided(model, x, t, guidance_scale: float = 1.0, cond: dict | None = None, null_cond: dict | None = None):
    """The network's prediction, with classifier-free guidance when guidance_scale != 1 and a null condition."""
    cond = cond or {}
    if guidance_scale == 1.0 or null_cond is None:
        return model(x, t, **cond)
    both = model(torch.cat([x, x]), torch.cat([t, t]),
                 **{k: torch.cat([cond[k], null_cond[k]]) for k in cond})
    conditional, unconditional = both.chunk(2)
    return unconditional + guidance_scale * (conditional - unconditional)


def _check(objective: str, guidance_scale: float) -> None:
    if objective not in OBJECTIVES:
        raise InputError(f"objective: {objective!r} is not known; choose one of {', '.join(OBJECTIVES)}")
    if guidance_scale < 0:
        raise InputError(f"guidance_scale: {guidance_scale!r} is not allowed; use a number >= 0")


def ddpm_step(sched: Schedule, prediction, t: int, x_t, noise, objective: str = "eps", variance: str = "small",
              clip_x0: bool = True):
    """x_{t-1} from x_t (DDPM eq. 6-7 and Algorithm 2). Returns (x_{t-1}, predicted x_0).

    variance: 'small' is the posterior variance beta~_t (fixed small), 'large' is beta_t (fixed large).
    """
    if variance not in VARIANCES:
        raise InputError(f"variance: {variance!r} is not known; choose one of {', '.join(VARIANCES)}")
    tt = torch.full((x_t.shape[0],), t, dtype=torch.long)
    x0, _ = to_x0_eps(sched, x_t, tt, prediction, objective)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
    mean, _ = q_posterior(sched, x0, x_t, tt)                          # DDPM eq. 7
    if t == 0:
        return mean, x0
    var = sched.posterior_variance[t].clamp(min=1e-20) if variance == "small" else sched.betas[t]
    return mean + var.sqrt().to(x_t.dtype) * noise, x0


@torch.no_grad()
def ddpm_sample(model, noise: torch.Tensor, betas, *, objective: str = "eps", variance: str = "small",
                clip_x0: bool = True, generator=None, guidance_scale: float = 1.0, cond: dict | None = None,
                null_cond: dict | None = None, keep_every: int | None = None, progress: bool = False):
    """Ancestral sampling over all T steps from x_T = `noise`. Returns x_0, or (x_0, [Step]) with keep_every."""
    sched = _schedule(betas)
    _check(objective, guidance_scale)
    x, kept = noise, []
    steps = list(range(sched.timesteps - 1, -1, -1))
    for i, t in enumerate(tqdm(steps, desc="DDPM", disable=not progress, leave=False)):
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        prediction = guided(model, x, tt, guidance_scale, cond, null_cond)
        z = randn_like(x, generator) if t > 0 else None
        x, x0 = ddpm_step(sched, prediction, t, x, z, objective, variance, clip_x0)
        if keep_every and (i % keep_every == 0 or t == 0):
            kept.append(Step(t, x.detach().cpu(), x0.detach().cpu()))
    return (x, kept) if keep_every else x


def ddim_timesteps(timesteps: int, num_steps: int, spacing: str = "leading") -> list[int]:
    """The timesteps DDIM visits, as diffusers' DDIMScheduler.set_timesteps defines each spacing
    (see "Common Diffusion Noise Schedules and Sample Steps are Flawed", Lin et al. 2023, table 2)."""
    if not isinstance(num_steps, int) or not 1 <= num_steps <= timesteps:
        raise InputError(f"num_steps: {num_steps!r} is not allowed; use an integer in [1, {timesteps}] (T)")
    if spacing == "leading":
        ratio = timesteps // num_steps
        return [int(v) for v in (np.arange(0, num_steps) * ratio).round()[::-1]]
    if spacing == "trailing":
        ratio = timesteps / num_steps
        return [int(v) for v in np.round(np.arange(timesteps, 0, -ratio)).astype(np.int64) - 1]
    if spacing == "linspace":
        return [int(v) for v in np.linspace(0, timesteps - 1, num_steps).round()[::-1]]
    raise InputError(f"spacing: {spacing!r} is not known; choose one of {', '.join(SPACINGS)}")


@torch.no_grad()
def ddim_sample(model, noise: torch.Tensor, betas, num_steps: int, eta: float = 0.0, *, spacing: str = "leading",
                objective: str = "eps", clip_x0: bool = False, set_alpha_to_one: bool = True, generator=None,
                guidance_scale: float = 1.0, cond: dict | None = None, null_cond: dict | None = None,
                keep_every: int | None = None, progress: bool = False):
    """DDIM (Song et al. 2021) in `num_steps` steps from x_T = `noise`; eta = 0 is deterministic, eta = 1 is
    DDPM-like. Returns x_0, or (x_0, [Step]) with keep_every.

    Notation (DDIM eq. 12): x_{t-1} = sqrt(a_prev) x0_pred + sqrt(1 - a_prev - sigma_t^2) eps_pred + sigma_t z,
    sigma_t = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev)   (DDIM eq. 16), a = alpha_bar.
    """
    sched = _schedule(betas)
    _check(objective, guidance_scale)
    if not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
        raise InputError(f"eta: {eta!r} is not allowed; use a number in [0, 1]")
    T = sched.timesteps
    ac = sched.alphas_cumprod
    final = torch.tensor(1.0, dtype=torch.float64) if set_alpha_to_one else ac[0]
    x, kept = noise, []
    for i, t in enumerate(tqdm(ddim_timesteps(T, num_steps, spacing), desc="DDIM", disable=not progress,
                               leave=False)):
        # The previous timestep is t - T // num_steps for every spacing, as in diffusers' DDIMScheduler.step
        # (so the two agree to the last digit); with 'linspace' this is not always the next visited timestep.
        prev = t - T // num_steps
        a_t, a_prev = ac[t], (ac[prev] if prev >= 0 else final)
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        prediction = guided(model, x, tt, guidance_scale, cond, null_cond)
        x0, eps = to_x0_eps(sched, x, tt, prediction, objective)
        if clip_x0:  # keep the step consistent with the clipped x_0 (improved-diffusion; diffusers'
            x0 = x0.clamp(-1, 1)  # use_clipped_model_output=True)
            eps = predict_eps_from_x0(sched, x, tt, x0)
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
        direction = (1 - a_prev - sigma**2).sqrt().to(x.dtype) * eps
        x = a_prev.sqrt().to(x.dtype) * x0 + direction
        if eta > 0:
            x = x + sigma.to(x.dtype) * randn_like(x, generator)
        if keep_every and (i % keep_every == 0 or i == num_steps - 1):
            kept.append(Step(t, x.detach().cpu(), x0.detach().cpu()))
    return (x, kept) if keep_every else x
