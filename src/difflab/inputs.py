"""Input images for img2img and inpaint: opened with precise errors, sized explicitly, never silently fixed.

PIL only, so the CLI can check its input files before importing torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from . import masks
from .errors import InputError
from .params import GenerationParams


def open_image(path, field: str = "image") -> Image.Image:
    """Open an image file completely (so a truncated file fails here, not halfway through a run)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{field}: {str(path)!r} does not exist or is not a file")
    try:
        with Image.open(p) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputError(f"{field}: {str(path)!r} is not a readable image ({e})") from None


def file_record(path) -> dict:
    """How metadata names an input file: its absolute path and SHA-256."""
    p = Path(path).resolve()
    return {"path": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}


def image_record(image: Image.Image, source=None) -> dict:
    """Name an input: its file when it came from one, else a hash of its pixels."""
    if source is not None:
        return file_record(source)
    return {"path": None, "sha256": hashlib.sha256(image.convert("RGB").tobytes()).hexdigest(),
            "size": list(image.size)}


@dataclass
class Inputs:
    image: Image.Image | None = None  # RGB, at the generation size
    mask: Image.Image | None = None   # binary 'L' mask given to the pipeline, same size
    soft_mask: Image.Image | None = None  # feathered mask used to paste the result back
    records: dict | None = None       # metadata of the inputs


def prepare(params: GenerationParams, image=None, mask_image=None) -> Inputs:
    """Check and size the inputs of a request. `image`/`mask_image` are PIL images or paths.

    The mask is checked against the input image's own size; both are then resized together, and only when
    `height`/`width` ask for another size.
    """
    if params.task == "text2img":
        if image is not None or mask_image is not None:
            raise InputError("image: text2img takes no input image; use img2img or inpaint")
        return Inputs(records={})
    if image is None:
        raise InputError(f"image: {params.task} needs an input image")
    image_src = image if isinstance(image, (str, Path)) else None
    pil = open_image(image, "image") if image_src is not None else image
    records = {"image": image_record(pil, image_src)}
    pil = pil.convert("RGB")
    size = (params.width or pil.width, params.height or pil.height)
    if size[0] % 8 or size[1] % 8:
        raise InputError(f"image: size {pil.width}x{pil.height} is not a multiple of 8; pass width and "
                         f"height (multiples of 8) to resize it explicitly")
    mask = soft = None
    if params.task == "inpaint":
        mask_pil = None
        if mask_image is not None:
            mask_src = mask_image if isinstance(mask_image, (str, Path)) else None
            mask_pil = open_image(mask_image, "mask_image") if mask_src is not None else mask_image
            records["mask_image"] = image_record(mask_pil, mask_src)
            if params.resize_mask and mask_pil.size != pil.size:
                mask_pil = mask_pil.resize(pil.size, Image.NEAREST)
        elif not params.boxes and not params.ellipses:
            raise InputError("mask_image: inpaint needs a mask image, a box or an ellipse")
        mask = masks.make_mask(pil.size, params.boxes, params.ellipses, mask_pil, params.mask_dilate)
        if size != pil.size:
            mask = mask.resize(size, Image.NEAREST)
        soft = masks.feather(mask, params.mask_blur)
    if size != pil.size:
        pil = pil.resize(size, Image.LANCZOS)
    return Inputs(image=pil, mask=mask, soft_mask=soft, records=records)
