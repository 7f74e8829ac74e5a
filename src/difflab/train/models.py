"""The parts of a Stable Diffusion model for training: built from an architecture config (the shapes model) or
taken from a model difflab loads, and written back as a genuine diffusers folder (`save_pipeline`).

The scheduler is Stable Diffusion 1.5's own configuration (scaled-linear betas 0.00085..0.012, 1000 steps), so
every scheduler difflab names works on the result, and plain `StableDiffusionPipeline.from_pretrained` loads it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..runs import publish_mode
from .config import ArchitectureConfig, TrainConfig

SD15_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
SD15_SCHEDULER = dict(**SD15_BETAS, steps_offset=1, set_alpha_to_one=False, skip_prk_steps=True)  # its PNDM


@dataclass
class Parts:
    vae: torch.nn.Module
    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    base: dict | None = None   # the model they came from: name, id, hash (None: built here)
    controlnet: torch.nn.Module | None = None   # method controlnet: the trainable copy of the UNet's encoder


def _groups(channels: list[int]) -> int:
    """GroupNorm groups of at least 4 channels each (Stable Diffusion's VAE has 4, its UNet 10). One channel per
    group is instance normalisation: it subtracts each image's mean per channel, the very information that says
    what colour a flat background is, and such a VAE reconstructs objects but not backgrounds."""
    return max(1, min(32, min(channels) // 4))


def vae_factor(vae) -> int:
    """How many pixels one latent is across: 2 per down block after the first."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def build(arch: ArchitectureConfig, seed: int) -> Parts:
    """Fresh parts with seeded random weights: AutoencoderKL, UNet2DConditionModel, CLIPTextModel and the shapes
    tokenizer (every caption word one token)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..shapes.vocab import MAX_LENGTH, load_tokenizer, write_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = load_tokenizer(write_tokenizer(tmp))
    levels = len(arch.vae.block_out_channels)
    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=arch.vae.latent_channels,
                        block_out_channels=tuple(arch.vae.block_out_channels), layers_per_block=arch.vae.layers_per_block,
                        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
                        sample_size=arch.image_size, norm_num_groups=_groups(arch.vae.block_out_channels))
    u = arch.unet
    torch.manual_seed(seed + 1)
    unet = UNet2DConditionModel(
        sample_size=arch.image_size // 2 ** (levels - 1), in_channels=arch.vae.latent_channels,
        out_channels=arch.vae.latent_channels, layers_per_block=u.layers_per_block,
        block_out_channels=tuple(u.block_out_channels),
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in u.cross_attention_levels),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(u.cross_attention_levels)),
        cross_attention_dim=arch.text.hidden_size, attention_head_dim=u.attention_head_dim,
        norm_num_groups=_groups(u.block_out_channels))
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=arch.text.hidden_size, intermediate_size=arch.text.intermediate_size,
        num_hidden_layers=arch.text.num_hidden_layers, num_attention_heads=arch.text.num_attention_heads,
        max_position_embeddings=MAX_LENGTH, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    return Parts(vae, unet, text_encoder, tokenizer)


def load_parts(cfg: TrainConfig) -> Parts:
    """The parts to train: the base model's (any model difflab loads), with those named in `fresh` built new
    from `architecture`; with no base, every part is new."""
    if cfg.base is None:
        return build(cfg.architecture, cfg.seed)
    new = build(cfg.architecture, cfg.seed) if cfg.fresh else None
    from ..pipelines import load

    model = load(cfg.base, progress=False, device="cpu", dtype="float32")
    pipe = model.pipe
    if "unet" in cfg.fresh:   # a new UNet works on the base VAE's latents
        new.unet.register_to_config(sample_size=cfg.architecture.image_size // vae_factor(pipe.vae))
    tokenizer = new.tokenizer if "text_encoder" in cfg.fresh else pipe.tokenizer
    return Parts(pipe.vae, new.unet if "unet" in cfg.fresh else pipe.unet,
                 new.text_encoder if "text_encoder" in cfg.fresh else pipe.text_encoder, tokenizer,
                 {"name": model.source.name, "id": model.source.id, "hash": model.weights_hash})


def save_pipeline(parts: Parts, folder, inpaint: bool = False) -> Path:
    """A diffusers Stable Diffusion folder (an inpainting one with `inpaint`: its model_index names
    StableDiffusionInpaintPipeline), written atomically (a temporary folder renamed into place)."""
    import diffusers

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    cls = diffusers.StableDiffusionInpaintPipeline if inpaint else diffusers.StableDiffusionPipeline
    pipe = cls(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
               scheduler=diffusers.PNDMScheduler(**SD15_SCHEDULER), safety_checker=None, feature_extractor=None,
               requires_safety_checker=False)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    pipe.save_pretrained(tmp)
    publish_mode(tmp, folder=True)
    if folder.exists():
        import shutil
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder
