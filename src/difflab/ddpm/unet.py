"""The DDPM U-Net (Ho et al. 2020, appendix B; as in improved-diffusion and denoising-diffusion-pytorch).

Sinusoidal time embedding -> MLP; residual blocks (GroupNorm, SiLU, dropout) that add the time (and class)
embedding; self-attention at chosen resolutions; a down path, a middle, and an up path fed by skip connections.
With `num_classes`, a label embedding is added to the time embedding; label `num_classes` is the null label
used for classifier-free guidance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError


@dataclass
class UNetConfig:
    image_size: int = 32
    in_channels: int = 3
    channels: int = 128                          # base width
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)  # width per level; len - 1 downsamplings
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    num_groups: int = 32                         # GroupNorm groups
    num_heads: int = 1
    num_classes: int | None = None               # class-conditional when set

    def validate(self) -> "UNetConfig":
        downs = len(self.channel_mult) - 1
        if self.image_size < 1 or self.image_size % (2**downs):
            raise InputError(f"model.image_size: {self.image_size} is not divisible by {2**downs} "
                             f"({downs} downsamplings for channel_mult {tuple(self.channel_mult)})")
        for mult in (1, *self.channel_mult):
            width = self.channels * mult
            if width % self.num_groups:
                raise InputError(f"model.channels: width {width} (channels {self.channels} x {mult}) is not "
                                 f"divisible by num_groups {self.num_groups}")
            if width % self.num_heads:
                raise InputError(f"model.num_heads: width {width} is not divisible by {self.num_heads} heads")
        if not 0 <= self.dropout < 1:
            raise InputError(f"model.dropout: {self.dropout} is not allowed; use a number in [0, 1)")
        if self.num_classes is not None and self.num_classes < 1:
            raise InputError(f"model.num_classes: {self.num_classes} is not allowed; use an integer >= 1 or null")
        return self


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017, section 3.5): (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def zero(module: nn.Module) -> nn.Module:
    """Zero-initialise the last layer of a residual branch, so each block starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):                              # x: (B, C, H, W), emb: (B, E)
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Self-attention over the H*W positions, with a residual connection."""

    def __init__(self, channels: int, groups: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))   # (B, C, H, W)


class UNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config.validate()
        ch, groups = cfg.channels, cfg.num_groups
        emb_dim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes else None
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        def block(c_in, c_out, resolution):
            layers = [ResBlock(c_in, c_out, emb_dim, cfg.dropout, groups)]
            if resolution in cfg.attention_resolutions:
                layers.append(Attention(c_out, groups, cfg.num_heads))
            return nn.ModuleList(layers)

        # down path: remember every output width, for the skip connections
        self.down, skips, width, res = nn.ModuleList(), [ch], ch, cfg.image_size
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.down.append(block(width, ch * mult, res))
                width = ch * mult
                skips.append(width)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(width, width, 3, stride=2, padding=1)]))
                skips.append(width)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(width, width, emb_dim, cfg.dropout, groups),
                                  Attention(width, groups, cfg.num_heads),
                                  ResBlock(width, width, emb_dim, cfg.dropout, groups)])
        # up path: each block takes the matching skip; the last block of a level upsamples
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = block(width + skips.pop(), ch * mult, res)
                width = ch * mult
                if level > 0 and i == cfg.num_res_blocks:
                    layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    layers.append(nn.Conv2d(width, width, 3, padding=1))
                    res *= 2
                self.up.append(layers)
        self.norm_out = nn.GroupNorm(groups, width)
        self.conv_out = zero(nn.Conv2d(width, cfg.in_channels, 3, padding=1))

    @property
    def null_label(self) -> int | None:
        return self.config.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W) noisy images, t: (B,) integer timesteps, y: (B,) labels (null label = num_classes)."""
        emb = self.time_mlp(timestep_embedding(t, self.config.channels).to(x.dtype))
        if self.label_emb is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.null_label, dtype=torch.long, device=x.device)
            emb = emb + self.label_emb(y)
        h = self.conv_in(x)
        hs = [h]
        for layers in self.down:
            for layer in layers:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for layers in self.up:
            h = torch.cat([h, hs.pop()], dim=1)
            for layer in layers:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))
