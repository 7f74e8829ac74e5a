"""Control: ControlNets (where they come from, whether they fit a model), their preprocessors, and masks from words.

ControlNet (Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion Models") adds a trainable
copy of the UNet's encoder that reads a control image (edges, a pose, an outline) and adds its features to the
frozen UNet's skip connections through zero-initialised convolutions. difflab loads them as diffusers'
`ControlNetModel` and runs diffusers' ControlNet pipelines (made with `from_pipe`, see pipelines.py).

Masks from words are DiffEdit's (Couairon et al. 2022, "DiffEdit: Diffusion-based semantic image editing with
mask guidance"): noise the image half-way, predict the noise with the words and with a neutral prompt, and keep
where the two predictions differ most: the region those words are about. It needs no other weights.

Resolving where a ControlNet comes from and preprocessing are torch-free (the CLI checks before importing torch).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import InputError
from .tiny import TINY_CONTROLNET

PREPROCESSORS = ("none", "canny")
CANNY_THRESHOLDS = (100, 200)  # lllyasviel's ControlNet canny annotator (cv2.Canny's low, high on 0..255 pixels)
SCALE_RANGE = (0.0, 2.0)       # AUTOMATIC1111's ControlNet weight slider


# --- preprocessors (ControlNet's "annotators")

def canny_edges(rgb: np.ndarray, low: float = CANNY_THRESHOLDS[0], high: float = CANNY_THRESHOLDS[1]) -> np.ndarray:
    """Canny edges (H, W) bool of an (H, W, 3) uint8 image, with cv2.Canny's thresholds (0..255 Sobel magnitudes).

    scikit-image, not OpenCV: 37 MB installed against 153 MB, 16-56 ms for 512-768 px (bench/bench_canny.py). cv2
    measures the gradient as |gx| + |gy| and scikit-image as its length, up to sqrt(2) smaller: the thresholds are
    divided by sqrt(2), and a light blur (sigma 0.5) stands in for cv2's lack of one; then ~94% of cv2's edge
    pixels are found within a pixel, and ~97% of these edges are cv2's (measured on the shipped photos)."""
    from skimage.feature import canny

    gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)   # cv2's RGB2GRAY weights
    return canny(gray, sigma=0.5, low_threshold=low / np.sqrt(2), high_threshold=high / np.sqrt(2))


def preprocess(image: Image.Image, name: str) -> Image.Image:
    """The control image a ControlNet sees: `none` as given (RGB), `canny` white edges on black."""
    check_preprocessor(name)
    rgb = image.convert("RGB")
    if name == "none":
        return rgb
    edges = canny_edges(np.asarray(rgb))
    return Image.fromarray(np.repeat(edges[..., None].astype(np.uint8) * 255, 3, axis=2))


def check_preprocessor(name) -> None:
    if name not in PREPROCESSORS:
        raise InputError(f"control_preprocess: {name!r} is not allowed; choose one of {', '.join(PREPROCESSORS)}")


# --- where a ControlNet comes from

def resolve(spec: str) -> dict:
    """{'id', 'kind' (tiny | folder | file | hub), 'path', 'name'} of a ControlNet, failing at once on what
    cannot be loaded (no network wait)."""
    from .pipelines import PICKLE_SUFFIXES, _download_hint, _hub_offline

    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"controlnet: {spec!r} is not allowed; give a hub id, a folder, a .safetensors file or "
                         f"{TINY_CONTROLNET}")
    if spec == TINY_CONTROLNET:
        return {"id": spec, "kind": "tiny", "path": None, "name": spec}
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"controlnet: folder {spec!r} has no config.json; give a ControlNetModel folder "
                             f"(save_pretrained), e.g. a training run's controlnet/")
        return {"id": spec, "kind": "folder", "path": str(path.resolve()), "name": path.resolve().name}
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            what = "a pickle checkpoint, which can run code when loaded" if path.suffix.lower() in PICKLE_SUFFIXES \
                else "not a .safetensors file"
            raise InputError(f"controlnet: {spec!r} is {what}; difflab loads ControlNets from .safetensors")
        return {"id": spec, "kind": "file", "path": str(path.resolve()), "name": path.stem}
    if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", spec) or spec.startswith((".", "/", "~")):
        raise InputError(f"controlnet: {spec!r} does not exist; give a hub id (org/name), a ControlNet folder, a "
                         f".safetensors file, or {TINY_CONTROLNET}")
    if _hub_offline():
        from huggingface_hub import try_to_load_from_cache
        if not isinstance(try_to_load_from_cache(spec, "config.json"), str):
            raise InputError(f"controlnet: hub id {spec!r} is not in the local Hugging Face cache and the hub is "
                             f"offline (HF_HUB_OFFLINE=1); {_download_hint(spec)}")
    return {"id": spec, "kind": "hub", "path": None, "name": spec}


def _weights_hash(source: dict) -> str | None:
    from .pipelines import file_sha256

    if source["kind"] == "file":
        return file_sha256(source["path"])
    if source["kind"] == "hub":
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(source["id"], "diffusion_pytorch_model.safetensors")
        return file_sha256(cached) if isinstance(cached, str) else None
    found = sorted(Path(source["path"]).glob("*.safetensors"))
    return file_sha256(found[0]) if found else None


def load_controlnet(spec: str, torch_dtype, unet, vae_scale_factor: int):
    """(ControlNetModel, record) for `spec`, refused with one line when it does not fit `unet`."""
    from diffusers import ControlNetModel

    source = resolve(spec)
    try:
        if source["kind"] == "tiny":
            from .tiny import tiny_path
            source["path"] = str(tiny_path(source["id"]))
        if source["kind"] in ("tiny", "folder"):
            net = ControlNetModel.from_pretrained(source["path"], torch_dtype=torch_dtype, use_safetensors=True)
        elif source["kind"] == "file":
            net = ControlNetModel.from_single_file(source["path"], torch_dtype=torch_dtype)
        else:
            net = ControlNetModel.from_pretrained(source["id"], torch_dtype=torch_dtype, use_safetensors=True)
    except (OSError, ValueError) as e:
        raise InputError(f"controlnet: could not load {spec!r} ({str(e).splitlines()[0][:200]})") from None
    check_fits(net, unet, vae_scale_factor, source["name"])
    return net, {**source, "hash": _weights_hash(source)}


def check_fits(controlnet, unet, vae_scale_factor: int, name: str) -> None:
    """A ControlNet adds its features to the UNet's skip connections: their widths, the text width and the control
    image's downsampling to latents must all be the base model's."""
    c, u = controlnet.config, unet.config
    factor = 2 ** (len(c.conditioning_embedding_out_channels) - 1)
    for field, mine, theirs in (("block_out_channels", list(c.block_out_channels), list(u.block_out_channels)),
                                ("cross_attention_dim", c.cross_attention_dim, u.cross_attention_dim),
                                ("layers_per_block", c.layers_per_block, u.layers_per_block),
                                ("control downsampling", factor, vae_scale_factor)):
        if mine != theirs:
            raise InputError(f"controlnet: {name!r} does not fit this model: its {field} is {mine}, the model's "
                             f"{theirs} (a ControlNet for another architecture?)")


# --- masks from words (DiffEdit)

def mask_from_words(pipe, image: Image.Image, words: str, threshold: float = 3.0, seed: int = 0,
                    num_maps: int = 10, encode_strength: float = 0.5, guidance_scale: float = 7.5) -> Image.Image:
    """A binary 'L' mask (image size) of where `pipe`'s model places `words` in `image` (DiffEdit, section 3.2).

    diffusers' `generate_mask`: `num_maps` noisings at `encode_strength`, the noise predicted for `words` against
    an empty prompt, averaged over maps and channels; a latent is in the mask where that difference exceeds
    threshold/2 times its mean (diffusers' `mask_thresholding_ratio`; DiffEdit thresholds at 0.5 after clamping
    at that ratio). The latent mask is scaled to the image with nearest neighbours.
    """
    import diffusers
    import torch

    if pipe.unet.config.in_channels != 4:
        raise InputError(f"mask_from: DiffEdit needs a text-to-image UNet (4 input channels); this model's has "
                         f"{pipe.unet.config.in_channels} (an inpainting model): draw the mask, or use its base model")
    editor = diffusers.StableDiffusionDiffEditPipeline.from_pipe(pipe, inverse_scheduler=None)
    editor.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    editor.set_progress_bar_config(disable=True)
    latent = editor.generate_mask(image=image.convert("RGB"), source_prompt=words, target_prompt="",
                                  mask_thresholding_ratio=threshold, num_maps_per_mask=num_maps,
                                  mask_encode_strength=encode_strength, guidance_scale=guidance_scale,
                                  generator=torch.Generator("cpu").manual_seed(seed))   # (1, h, w) of 0/1
    mask = Image.fromarray((latent[0] * 255).astype(np.uint8)).resize(image.size, Image.NEAREST)
    if not mask.getbbox():
        raise InputError(f"mask_from: no region found for {words!r}; lower --mask-threshold (now {threshold:g})")
    return mask
