"""The DDPM trainer's configuration: dataclasses with defaults that YAML and --set only override (strictly).

The resolved config is written next to every run (config.yaml) and inside every checkpoint's metadata.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .. import config as configs
from .. import tracking
from ..errors import InputError
from .data import DataConfig
from .diffusion import OBJECTIVES
from .samplers import SAMPLERS
from .schedules import SCHEDULES
from .unet import UNetConfig


@dataclass
class DiffusionConfig:
    schedule: str = "linear"
    timesteps: int = 1000
    objective: str = "eps"
    min_snr_gamma: float | None = None


@dataclass
class SampleConfig:
    """Periodic sample grids during training, and the defaults of `difflab sample` and `difflab eval`."""

    sampler: str = "ddim"
    steps: int = 50
    eta: float = 0.0
    guidance_scale: float = 1.0
    per_class: int = 8              # images per class in a grid (class-conditional), or rows of 8 otherwise

    def override(self, sampler=None, steps=None, eta=None, guidance_scale=None) -> "SampleConfig":
        """These defaults, with whatever a command line gave instead."""
        given = {"sampler": sampler, "steps": steps, "eta": eta, "guidance_scale": guidance_scale}
        return dataclasses.replace(self, **{k: v for k, v in given.items() if v is not None})


@dataclass
class TrainConfig:
    name: str = "ddpm"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    steps: int = 10_000
    batch_size: int = 64            # per process
    lr: float = 2e-4
    warmup: int = 500               # linear learning-rate warm-up steps
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    ema_warmup: bool = True         # decay = min(ema_decay, (1 + step) / (10 + step)) early on
    label_dropout: float = 0.1      # probability of the null label, for classifier-free guidance
    mixed_precision: str = "fp32"   # fp32 | bf16 | fp16 (autocast through accelerate)
    channels_last: bool = False
    compile: bool = False           # torch.compile the network
    device: str = "auto"            # auto | cpu
    tracker: str = "local"          # local | comet | tensorboard: where metrics and sample grids are mirrored
    log_every: int = 10
    sample_every: int = 1000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3

    def validate(self) -> "TrainConfig":
        self.model.validate()
        if self.model.image_size != self.data.image_size:
            raise InputError(f"model.image_size: {self.model.image_size} differs from data.image_size "
                             f"{self.data.image_size}")
        if self.diffusion.schedule not in SCHEDULES:
            raise InputError(f"diffusion.schedule: {self.diffusion.schedule!r} is not known; choose one of "
                             f"{', '.join(SCHEDULES)}")
        if self.diffusion.timesteps < 2:
            raise InputError(f"diffusion.timesteps: {self.diffusion.timesteps} is not allowed; use an integer >= 2")
        if self.diffusion.objective not in OBJECTIVES:
            raise InputError(f"diffusion.objective: {self.diffusion.objective!r} is not known; choose one of "
                             f"{', '.join(OBJECTIVES)}")
        if self.sample.sampler not in SAMPLERS:
            raise InputError(f"sample.sampler: {self.sample.sampler!r} is not known; choose one of {', '.join(SAMPLERS)}")
        if not 1 <= self.sample.steps <= self.diffusion.timesteps:
            raise InputError(f"sample.steps: {self.sample.steps} is not allowed; use 1 .. diffusion.timesteps "
                             f"({self.diffusion.timesteps})")
        if not 0 <= self.sample.eta <= 1:
            raise InputError(f"sample.eta: {self.sample.eta} is not allowed; use a number in [0, 1]")
        if self.mixed_precision not in ("fp32", "bf16", "fp16"):
            raise InputError(f"mixed_precision: {self.mixed_precision!r} is not allowed; use fp32, bf16 or fp16")
        tracking.check(self.tracker)
        if self.device not in ("auto", "cpu"):
            raise InputError(f"device: {self.device!r} is not allowed; use auto or cpu (GPUs: accelerate launch)")
        for key in ("steps", "batch_size", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, key) < 1:
                raise InputError(f"{key}: {getattr(self, key)} is not allowed; use an integer >= 1")
        if not 0 <= self.label_dropout < 1:
            raise InputError(f"label_dropout: {self.label_dropout} is not allowed; use a number in [0, 1)")
        return self

def load_config(path=None, overrides=()) -> TrainConfig:
    data = configs.load_yaml(path) if path else {}
    return configs.from_dict(TrainConfig, configs.apply_overrides(data, list(overrides))).validate()
