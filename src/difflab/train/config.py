"""The Stable Diffusion trainer's configuration: strict dataclasses; YAML and --set only override them.

One config trains one stage of one model. What is trained (`train`: vae, unet, text_encoder), from what (`base`:
a model difflab loads, or None to build `architecture` from scratch) and on what (`data`) is configuration, so
the same loop trains the shapes model's VAE, then its text encoder and UNet (configs/shapes/), and fine-tunes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import config as configs
from .. import tracking
from ..errors import InputError

PARTS = ("vae", "unet", "text_encoder")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class VAEConfig:
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64])   # factor 2**(levels - 1)
    layers_per_block: int = 1
    latent_channels: int = 4


@dataclass
class UNetConfig:
    block_out_channels: list[int] = field(default_factory=lambda: [64, 128, 128])
    layers_per_block: int = 1
    attention_head_dim: int = 8
    cross_attention_levels: list[bool] = field(default_factory=lambda: [True, True, True])


@dataclass
class TextConfig:
    hidden_size: int = 128           # also the UNet's cross-attention width
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4


@dataclass
class ArchitectureConfig:
    image_size: int = 64
    vae: VAEConfig = field(default_factory=VAEConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    text: TextConfig = field(default_factory=TextConfig)


@dataclass
class DataConfig:
    name: str = "shapes"             # the shapes world (difflab.shapes)
    size: int = 20_000               # items of the training split, rendered once and cached
    caption_dropout: float = 0.1     # empty caption with this probability: the unconditional model for CFG
    object_weight: float = 20.0      # VAE stage: loss weight of object pixels (objects are a few % of the image)


@dataclass
class SampleConfig:
    """Sample grids during training: fixed prompts and seeds, one row per prompt, one column per seed."""
    prompts: list[str] = field(default_factory=lambda: ["a red circle", "two blue squares",
                                                        "a yellow triangle at the top left",
                                                        "a green circle to the left of a purple square"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    num_inference_steps: int = 20
    guidance_scale: float = 4.0


@dataclass
class TrainConfig:
    name: str = "shapes"
    seed: int = 0
    base: str | None = None          # a model to start from (folder, hub id, shapes, tiny); None: build `architecture`
    architecture: ArchitectureConfig = field(default_factory=ArchitectureConfig)
    train: list[str] = field(default_factory=lambda: ["unet", "text_encoder"])
    fresh: list[str] = field(default_factory=list)   # parts built new from `architecture` instead of taken from base
    data: DataConfig = field(default_factory=DataConfig)
    steps: int = 5000
    batch_size: int = 64
    lr: float = 5e-4
    warmup: int = 200
    lr_schedule: str = "cosine"      # after warm-up: cosine (decays to 0 at `steps`) | constant
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    kl_weight: float = 1e-6          # VAE stage
    snr_gamma: float | None = 5.0    # UNet stage: Min-SNR loss weighting (None: plain epsilon MSE)
    mixed_precision: str = "auto"    # auto: a short probe on this machine decides (recorded in the run)
    device: str = "auto"             # auto | cpu
    tracker: str = "local"
    log_every: int = 25
    sample_every: int = 1000
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    sample: SampleConfig = field(default_factory=SampleConfig)

    def validate(self) -> "TrainConfig":
        if not self.train or any(p not in PARTS for p in self.train):
            raise InputError(f"train: {self.train!r} is not allowed; choose from {', '.join(PARTS)}")
        if any(p not in PARTS for p in self.fresh) or (self.base is not None and "vae" in self.fresh):
            raise InputError(f"fresh: {self.fresh!r} is not allowed; choose from unet, text_encoder (the VAE "
                             f"comes from the base model)")
        if "vae" in self.train and len(self.train) > 1:
            raise InputError("train: the VAE is trained alone (its own stage), before the text encoder and UNet")
        if "vae" not in self.train and self.base is None:
            raise InputError("base: training the UNet or text encoder needs a base model with a trained VAE "
                             "(the VAE stage's model folder)")
        if self.data.name != "shapes":
            raise InputError(f"data.name: {self.data.name!r} is not known; use shapes")
        size = self.architecture.image_size
        factor = 2 ** (len(self.architecture.vae.block_out_channels) - 1)
        if size % factor:
            raise InputError(f"architecture.image_size: {size} is not divisible by the VAE factor {factor}")
        if self.data.size < 1:
            raise InputError(f"data.size: {self.data.size} is not allowed; the dataset needs at least one item")
        if not 0 <= self.data.caption_dropout < 1:
            raise InputError(f"data.caption_dropout: {self.data.caption_dropout} is not allowed; use [0, 1)")
        if self.lr_schedule not in ("cosine", "constant"):
            raise InputError(f"lr_schedule: {self.lr_schedule!r} is not allowed; use cosine or constant")
        if self.mixed_precision not in PRECISIONS:
            raise InputError(f"mixed_precision: {self.mixed_precision!r} is not allowed; use {', '.join(PRECISIONS)}")
        if self.device not in ("auto", "cpu"):
            raise InputError(f"device: {self.device!r} is not allowed; use auto or cpu (GPUs: accelerate launch)")
        tracking.check(self.tracker)
        for key in ("steps", "batch_size", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, key) < 1:
                raise InputError(f"{key}: {getattr(self, key)} is not allowed; use an integer >= 1")
        if len(self.architecture.unet.cross_attention_levels) != len(self.architecture.unet.block_out_channels):
            raise InputError("architecture.unet.cross_attention_levels: give one flag per block_out_channels entry")
        return self


def load_config(path=None, overrides=()) -> TrainConfig:
    data = configs.load_yaml(path) if path else {}
    return configs.from_dict(TrainConfig, configs.apply_overrides(data, list(overrides))).validate()
