"""Diffusion written out in plain PyTorch (no diffusers here): schedules, the forward process and losses,
samplers that take the network as an argument, a U-Net, a training loop, data and evaluation."""

from .diffusion import (OBJECTIVES, predict_eps_from_v, predict_eps_from_x0, predict_v, predict_x0_from_eps,
                        predict_x0_from_v, q_posterior, q_sample, training_loss)
from .samplers import ddim_sample, ddim_timesteps, ddpm_sample, ddpm_step
from .schedules import SCHEDULES, Schedule, beta_schedule

__all__ = ["OBJECTIVES", "SCHEDULES", "Schedule", "beta_schedule", "ddim_sample", "ddim_timesteps", "ddpm_sample",
           "ddpm_step", "predict_eps_from_v", "predict_eps_from_x0", "predict_v", "predict_x0_from_eps",
           "predict_x0_from_v", "q_posterior", "q_sample", "training_loss"]
