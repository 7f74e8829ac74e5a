"""Input images for img2img and inpaint: opened with precise errors, sized explicitly, never silently fixed.

PIL only, so the CLI can check its input files before importing torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, UnidentifiedImageError

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
    control: list | None = None       # the preprocessed control images, one per ControlNet, at the generation size


def _open(value, field: str) -> tuple[Image.Image, dict]:
    """(image, record) of a path or a PIL image."""
    source = value if isinstance(value, (str, Path)) else None
    pil = open_image(value, field) if source is not None else value
    return pil, image_record(pil, source)


def prepare(params: GenerationParams, image=None, mask_image=None, found_masks=()) -> Inputs:
    """Check and size the inputs of a request. `image`/`mask_image` are PIL images or paths.

    The mask is checked against the input image's own size; both are then resized together, and only when
    `height`/`width` ask for another size. `found_masks` (at the generation size) are the masks that `mask_from` and
    `mask_from_detector` found (difflab.control); they join the others.
    """
    if params.task == "text2img":
        if image is not None or mask_image is not None:
            raise InputError("image: text2img takes no input image; use img2img or inpaint")
        return Inputs(records={})
    if image is None:
        raise InputError(f"image: {params.task} needs an input image")
    pil, record = _open(image, "image")
    records = {"image": record}
    pil = pil.convert("RGB")
    size = (params.width or pil.width, params.height or pil.height)
    if size[0] % 8 or size[1] % 8:
        raise InputError(f"image: size {pil.width}x{pil.height} is not a multiple of 8; pass width and "
                         f"height (multiples of 8) to resize it explicitly")
    mask = soft = None
    if params.task == "inpaint":
        mask_pil = None
        if mask_image is not None:
            mask_pil, records["mask_image"] = _open(mask_image, "mask_image")
            if params.resize_mask and mask_pil.size != pil.size:
                mask_pil = mask_pil.resize(pil.size, Image.NEAREST)
        elif not params.boxes and not params.ellipses and not params.mask_from and not params.mask_from_detector:
            raise InputError("mask_image: inpaint needs a mask image, a box, an ellipse or --mask-from WORDS")
        if mask_pil is not None or params.boxes or params.ellipses:
            mask = masks.make_mask(pil.size, params.boxes, params.ellipses, mask_pil, params.mask_dilate)
            if size != pil.size:
                mask = mask.resize(size, Image.NEAREST)
        for found in found_masks:
            found = masks.make_mask(size, mask_image=found, dilate=params.mask_dilate)
            mask = found if mask is None else ImageChops.lighter(mask, found)
        soft = masks.feather(mask, params.mask_blur) if mask is not None else None
    if size != pil.size:
        pil = pil.resize(size, Image.LANCZOS)
    return Inputs(image=pil, mask=mask, soft_mask=soft, records=records)


def prepare_control(params: GenerationParams, control_image, size: tuple[int, int], count: int) -> tuple[list, list]:
    """(preprocessed control images, their records): one control image per ControlNet, each of the generation
    `size` (width, height) unless `resize_control` asks to resize it, then preprocessed as `control_preprocess` says."""
    from .control import preprocess

    given = [] if control_image is None else \
        [control_image] if isinstance(control_image, (str, Path, Image.Image)) else list(control_image)
    if len(given) != count:
        if count == 0:
            raise InputError("control_image: no ControlNet is loaded; pass --controlnet for each control image")
        raise InputError(f"control_image: {len(given)} control image(s) for {count} ControlNet(s); give one per "
                         f"ControlNet, in the same order")
    images, records = [], []
    for i, (value, module) in enumerate(zip(given, params.per_controlnet("control_preprocess", count))):
        pil, record = _open(value, f"control_image {i}")
        if pil.size != tuple(size):
            if not params.resize_control:
                raise InputError(f"control_image {i}: {pil.width}x{pil.height}, but the image is {size[0]}x{size[1]}; "
                                 f"resize it explicitly (--resize-control)")
            pil = pil.resize(size, Image.LANCZOS)
        images.append(preprocess(pil, module))
        records.append(record)
    return images, records
