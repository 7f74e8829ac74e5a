"""Tiny random-weight Stable Diffusion pipelines, built offline from configs.

They run the exact diffusers code paths of a real Stable Diffusion 1.x pipeline (CLIP text encoder,
cross-attention UNet, KL autoencoder) in well under a second, so tests, CI and smoke runs need no download.
The sizes follow the `get_dummy_components` of diffusers' own Stable Diffusion tests.

A tiny model is built once, with fixed seeds, and saved to a cache folder; after that it is loaded through
the ordinary `from_pretrained` path, exactly like a downloaded model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from .runs import cache_root, publish_mode

TINY_MODELS = ("tiny", "tiny-inpaint")
TINY_CONTROLNET = "tiny-controlnet"  # a ControlNet of the tiny UNet (difflab.control)
TINY_VERSION = 1  # bump when the recipe changes, so stale caches are rebuilt


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


def write_byte_tokenizer(folder: Path) -> None:
    """A CLIP tokenizer with a byte-level vocabulary and no merges: every byte is a token (514 tokens).

    No tokenizer files ship with any installed package, so the tiny models carry their own.
    """
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def build_tiny(name: str, folder: Path) -> None:
    """Build the tiny pipeline `name` with fixed seeds and save it (safetensors) to `folder`."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline,
                           StableDiffusionPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if name not in TINY_MODELS:
        raise ValueError(f"model: {name!r} is not a tiny model; choose one of {', '.join(TINY_MODELS)}")
    in_channels = 9 if name == "tiny-inpaint" else 4  # 4 noisy latents + 4 masked-image latents + 1 mask
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=in_channels, out_channels=4, layers_per_block=2,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=64,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05,
        num_attention_heads=4, num_hidden_layers=2, pad_token_id=1, vocab_size=1000,
        max_position_embeddings=77,
    ))
    with tempfile.TemporaryDirectory() as tmp:
        write_byte_tokenizer(Path(tmp))
        tokenizer = CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"),
                                  model_max_length=77)
    cls = StableDiffusionInpaintPipeline if name == "tiny-inpaint" else StableDiffusionPipeline
    pipe = cls(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)


def build_tiny_controlnet(folder: Path) -> None:
    """A ControlNet copied from the tiny UNet (`ControlNetModel.from_unet`). Its zero convolutions get small seeded
    random weights instead of zeros, so that the control image changes the output (as in diffusers' tests)."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    with tempfile.TemporaryDirectory() as tmp:
        build_tiny("tiny", Path(tmp))
        unet = UNet2DConditionModel.from_pretrained(Path(tmp) / "unet")
    # one downsampling of the control image, as the tiny VAE's (64 px images, 32 x 32 latents)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    torch.manual_seed(0)
    for block in [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]:
        torch.nn.init.normal_(block.weight, std=0.1)
    net.save_pretrained(folder)


def tiny_path(name: str) -> Path:
    """The folder of tiny model `name`, built on first use (atomically: a half-built folder is never seen)."""
    folder = cache_root() / "models" / f"{name}-v{TINY_VERSION}"
    marker = "config.json" if name == TINY_CONTROLNET else "model_index.json"
    if not (folder / marker).exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
        build_tiny_controlnet(tmp) if name == TINY_CONTROLNET else build_tiny(name, tmp)
        if name != TINY_CONTROLNET and not (tmp / "text_encoder" / "model.safetensors").exists():
            # transformers writes weights on rank 0 only once torch.distributed is up: a worker of a
            # multi-process run waits for rank 0's copy instead of publishing an incomplete one
            shutil.rmtree(tmp, ignore_errors=True)
            deadline = time.monotonic() + 600
            while not (folder / marker).exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            return folder
        publish_mode(tmp, folder=True)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
