"""How a stage trains a model, and what it writes: the fine-tuning methods on top of the one training loop.

- `full`: the weights of the parts in `train` (the shapes model's stages; full fine-tuning; DreamBooth with
  `dreambooth.weights: full`). Output: a diffusers folder, `model/`.
- `lora` (and DreamBooth with `dreambooth.weights: lora`): low-rank adapters (peft) on the UNet's attention
  projections, and optionally the text encoder's; the base weights stay frozen. Output: `lora/` holding
  `pytorch_lora_weights.safetensors` (diffusers' format: `pipe.load_lora_weights`, `difflab --lora`) and
  `NAME.kohya.safetensors` (the key format of kohya's sd-scripts, which AUTOMATIC1111 and ComfyUI load).
- `textual_inversion`: one new token whose embedding is the only thing trained. Output: `embedding/` holding
  `learned_embeds.safetensors` (`pipe.load_textual_inversion`, `difflab --textual-inversion`; AUTOMATIC1111
  reads the same single-tensor file).
- `controlnet`: a ControlNet (Zhang et al. 2023) made from the base UNet (`ControlNetModel.from_unet`: a copy of its
  encoder and middle block, zero convolutions out) and trained alone; the whole base model stays frozen. Output:
  `controlnet/`, a ControlNetModel folder (`ControlNetModel.from_pretrained`, `difflab --controlnet`).
- `inpaint`: an inpainting model (Stable Diffusion's inpainting recipe, as in runwayml's): the base UNet copied into
  one reading 9 channels (the noisy latents, the mask, the masked image's latents; the 5 new input channels start at
  zero, so step 0 is the base model exactly) and trained on masked items (objects, boxes, whole images: see
  `InpaintConfig`). Output: `model/`, a StableDiffusionInpaintPipeline folder whose UNet records its base model
  (masks from words are taken with the base's text-to-image UNet: `Model.words_pipeline`).
Every output records where it came from (base model id and hash, method, data hash, the whole config) in its
safetensors metadata under the key `difflab`; `checkpoints.training_record(path)` reads it back.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError
from ..checkpoints import RECORD_KEY as METADATA_KEY
from ..runs import publish_mode
from .config import TrainConfig
from .models import Parts, save_pipeline

TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


@dataclass
class Trainable:
    """What a stage trains: the modules that hold trainable weights (what the loss runs through and accelerate
    wraps), the trainable weights by name ("unet.<parameter name>": what the optimizer, EMA and checkpoints
    hold), and what must follow each optimizer step (textual inversion puts every other embedding back)."""
    modules: torch.nn.ModuleDict
    weights: dict[str, torch.nn.Parameter]
    after_step: object = None


def prepare(parts: Parts, cfg: TrainConfig) -> Trainable:
    """Freeze everything, then make trainable what `cfg.method` trains (adding LoRA layers, a new token, a ControlNet;
    an inpainting UNet in place of the base's, then trained as `full` trains)."""
    if cfg.method == "inpaint":
        parts.unet = inpainting_unet(parts.unet)
    for name in ("vae", "unet", "text_encoder"):
        getattr(parts, name).requires_grad_(False)
    after_step = None
    if cfg.uses_lora:
        from peft import LoraConfig

        names = ["unet"] + (["text_encoder"] if cfg.lora.text_encoder else [])
        torch.manual_seed(cfg.seed)   # the adapters' random start: a function of the config, not of what ran before
        for name in names:
            targets = cfg.lora.targets if name == "unet" else TEXT_LORA_TARGETS
            try:
                getattr(parts, name).add_adapter(LoraConfig(r=cfg.lora.rank, lora_alpha=cfg.lora.alpha,
                                                            init_lora_weights="gaussian", target_modules=targets))
            except ValueError as e:
                raise InputError(f"lora.targets: {targets} do not name modules of the {name} "
                                 f"({str(e).splitlines()[0][:160]})") from None
    elif cfg.method == "textual_inversion":
        names = ["text_encoder"]
        after_step = _add_token(parts, cfg.textual_inversion.token, cfg.textual_inversion.initializer)
    elif cfg.method == "controlnet":
        names = ["controlnet"]
        parts.controlnet = make_controlnet(parts, cfg.seed)
    else:
        names = list(cfg.train)
        for name in names:
            getattr(parts, name).requires_grad_(True)
    if cfg.gradient_checkpointing:
        if "unet" in names:
            parts.unet.enable_gradient_checkpointing()
        if "text_encoder" in names:
            parts.text_encoder.gradient_checkpointing_enable()
    modules = torch.nn.ModuleDict({name: getattr(parts, name) for name in names})
    weights = {f"{name}.{key}": p for name in names for key, p in getattr(parts, name).named_parameters()
               if p.requires_grad}
    return Trainable(modules, weights, after_step)


def make_controlnet(parts: Parts, seed: int):
    """A ControlNet of the base UNet whose control-image encoder downsamples as much as the VAE does (diffusers'
    default (16, 32, 96, 256) is SD's factor 8; the shapes VAE's factor 4 takes the first three)."""
    from diffusers import ControlNetModel

    from .models import vae_factor

    levels = vae_factor(parts.vae).bit_length()   # factor 2**(levels - 1)
    torch.manual_seed(seed)   # the control-image encoder's random start
    net = ControlNetModel.from_unet(parts.unet, conditioning_embedding_out_channels=(16, 32, 96, 256)[:levels])
    return net.requires_grad_(True)


def inpainting_unet(unet):
    """`unet` reading 5 more input channels (the mask and the masked image's latents) whose weights are zero: it
    predicts exactly what `unet` does until training teaches it to look at them. An inpainting UNet is kept as is."""
    from diffusers import UNet2DConditionModel

    latent = unet.config.out_channels
    if unet.config.in_channels == 2 * latent + 1:
        return unet
    new = UNet2DConditionModel.from_config({**unet.config, "in_channels": 2 * latent + 1})
    weights = unet.state_dict()
    w = weights["conv_in.weight"]
    weights["conv_in.weight"] = torch.cat([w, w.new_zeros(w.shape[0], latent + 1, *w.shape[2:])], dim=1)
    new.load_state_dict(weights)
    return new.to(dtype=unet.dtype)


def _add_token(parts: Parts, token: str, initializer: str):
    """A new token, its embedding row started from `initializer`'s (the mean of its tokens' rows where it is several
    tokens); only that row is trained (the others are put back after every step, as diffusers' textual_inversion
    example does)."""
    tokenizer, text_encoder = parts.tokenizer, parts.text_encoder
    if tokenizer.add_tokens(token) == 0:
        raise InputError(f"textual_inversion.token: {token!r} is already a token of the base model; pick a new "
                         f"word, e.g. <{token.strip('<>')}-1>")
    ids = tokenizer.encode(initializer, add_special_tokens=False)
    if not ids:
        raise InputError(f"textual_inversion.initializer: {initializer!r} has no tokens; use a word, e.g. shape")
    if len(tokenizer) > text_encoder.get_input_embeddings().num_embeddings:   # never shrink a larger table
        text_encoder.resize_token_embeddings(len(tokenizer))
    table = text_encoder.get_input_embeddings().weight
    new = tokenizer.convert_tokens_to_ids(token)
    with torch.no_grad():
        table[new] = table[ids].mean(dim=0)
    table.requires_grad_(True)
    original = table.detach().clone()
    keep = torch.ones(len(table), dtype=torch.bool)
    keep[new] = False

    @torch.no_grad()
    def restore_other_rows() -> None:
        table[keep] = original[keep].to(table.dtype)

    return restore_other_rows


def record(cfg: TrainConfig, parts: Parts, data_digest: str, step: int) -> dict:
    """What an output says about itself: enough to know its base, method, data and config."""
    from .. import config as configs

    return {"name": cfg.name, "method": cfg.method, "base": parts.base, "data_sha256": data_digest, "step": step,
            "config": configs.to_dict(cfg)}


def save_outputs(parts: Parts, cfg: TrainConfig, run_dir: Path, info: dict) -> Path:
    """Write the finished stage's output (parts with their final weights) and return its path."""
    if cfg.uses_lora:
        return save_lora(parts, cfg, run_dir / "lora", info)
    if cfg.method == "textual_inversion":
        return save_embedding(parts, cfg.textual_inversion.token, run_dir / "embedding", info)
    if cfg.method == "controlnet":
        return save_controlnet(parts.controlnet, run_dir / "controlnet", info)
    folder = save_pipeline(parts, run_dir / "model", inpaint=cfg.method == "inpaint")
    if cfg.base is not None:   # a fine-tuned folder says what it was tuned from in its trained parts' weights
        for name in cfg.train:
            for path in (folder / name).glob("*.safetensors"):
                _rewrite_with_metadata(path, info)
    return folder


def save_lora(parts: Parts, cfg: TrainConfig, folder: Path, info: dict) -> Path:
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_all_state_dict_to_peft, convert_state_dict_to_kohya
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file

    layers, meta = {}, {}
    for name in ("unet", "text_encoder"):
        module = getattr(parts, name)
        if getattr(module, "peft_config", None):
            layers[f"{name}_lora_layers"] = get_peft_model_state_dict(module)   # peft keys, as diffusers reads them
            meta[f"{name}_lora_adapter_metadata"] = module.peft_config["default"].to_dict()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        StableDiffusionPipeline.save_lora_weights(tmp, **layers, **meta)
        diffusers_file = Path(tmp) / "pytorch_lora_weights.safetensors"
        _rewrite_with_metadata(diffusers_file, info, folder / diffusers_file.name)
        kohya = convert_state_dict_to_kohya(convert_all_state_dict_to_peft(load_file(diffusers_file)))
        # SD 1.x's text encoder keys as kohya and AUTOMATIC1111 name them (the converter writes SDXL's lora_te1_, and
        # transformers 5's CLIPTextModel has no text_model level): lora_te_text_model_encoder_layers_0_...
        kohya = {re.sub(r"^lora_te1_(text_model_)?", "lora_te_text_model_", k): v for k, v in kohya.items()}
        for key in [k for k in kohya if k.endswith(".alpha")]:   # the converter assumes alpha = rank
            kohya[key] = torch.tensor(float(cfg.lora.alpha))
        _save(kohya, folder / f"{cfg.name}.kohya.safetensors", info, {"ss_network_dim": str(cfg.lora.rank),
                                                                       "ss_network_alpha": str(cfg.lora.alpha)})
    return folder


def save_controlnet(net, folder: Path, info: dict) -> Path:
    """`save_pretrained` into a temporary folder, the record added to the weights' metadata, then renamed into place."""
    import shutil

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    net.save_pretrained(tmp)
    for path in tmp.glob("*.safetensors"):
        _rewrite_with_metadata(path, info)
    publish_mode(tmp, folder=True)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def save_embedding(parts: Parts, token: str, folder: Path, info: dict) -> Path:
    table = parts.text_encoder.get_input_embeddings().weight
    vector = table[parts.tokenizer.convert_tokens_to_ids(token)].detach().float().cpu()[None]
    _save({token: vector}, folder / "learned_embeds.safetensors", info)
    return folder


def _save(tensors: dict, path: Path, info: dict, extra: dict | None = None) -> Path:
    """A safetensors file with difflab's record in its metadata, written atomically."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp,
              metadata={"format": "pt", **(extra or {}), METADATA_KEY: json.dumps(info, sort_keys=True)})
    publish_mode(Path(tmp))
    os.replace(tmp, path)
    return path


def _rewrite_with_metadata(path: Path, info: dict, dest: Path | None = None) -> Path:
    """Copy a safetensors file (to `dest`, or in place) adding difflab's record to the metadata it had."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return _save(tensors, dest or path, info, {k: v for k, v in meta.items() if k != METADATA_KEY})
