"""Inpainting masks: from a mask image, boxes or ellipses; dilation, feathering, overlay and paste-back.

White (255) marks the pixels to repaint, black (0) those to keep, as diffusers expects.
Boxes and ellipses are (x0, y0, x1, y1) with x1, y1 exclusive: in pixels when every value is an int, or as
fractions of the image size in [0, 1] when any value is a float (on the command line: written with a '.').
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFilter

from .errors import InputError

Box = tuple[float, float, float, float]


def parse_box(text: str, field: str = "box") -> Box:
    """'10,20,110,80' (pixels) or '0.25,0.25,0.75,0.75' (fractions) -> a 4-tuple of ints or floats."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 4:
            raise ValueError
        values = tuple(float(p) if "." in p or "e" in p.lower() else int(p) for p in parts)
    except ValueError:
        raise InputError(f"{field}: {text!r} is not allowed; use x0,y0,x1,y1 in pixels (10,10,50,40) "
                         f"or as fractions of the size (0.2,0.2,0.8,0.6)") from None
    return values  # type: ignore[return-value]


def box_to_pixels(box: Box, size: tuple[int, int], field: str = "box") -> tuple[int, int, int, int]:
    """Pixel coordinates of a box on an image of `size` (width, height); refuse empty or outside boxes."""
    width, height = size
    if len(box) != 4:
        raise InputError(f"{field}: {box!r} is not allowed; use 4 numbers x0, y0, x1, y1")
    if any(isinstance(v, float) for v in box):
        if not all(0.0 <= v <= 1.0 for v in box):
            raise InputError(f"{field}: {tuple(box)} lies outside the {width}x{height} image; fractions "
                             f"(values written with a '.') must be in [0, 1], pixels are integers")
        x0, y0, x1, y1 = (round(box[0] * width), round(box[1] * height),
                          round(box[2] * width), round(box[3] * height))
    else:
        x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise InputError(f"{field}: {tuple(box)} is empty or lies outside the {width}x{height} image; "
                         f"use 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}")
    return x0, y0, x1, y1


def make_mask(size: tuple[int, int], boxes=(), ellipses=(), mask_image: Image.Image | None = None,
              dilate: int = 0) -> Image.Image:
    """A binary 'L' mask of `size`: the union of a mask image (thresholded at 128), boxes and ellipses,
    grown by `dilate` pixels."""
    if mask_image is not None:
        if mask_image.size != tuple(size):
            raise InputError(f"mask_image: size {mask_image.size[0]}x{mask_image.size[1]} does not match the "
                             f"image size {size[0]}x{size[1]}; resize it explicitly (--resize-mask)")
        mask = mask_image.convert("L").point(lambda v: 255 if v >= 128 else 0)
    else:
        mask = Image.new("L", tuple(size), 0)
    draw = ImageDraw.Draw(mask)
    for box in boxes:
        x0, y0, x1, y1 = box_to_pixels(box, size, "box")
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=255)
    for box in ellipses:
        x0, y0, x1, y1 = box_to_pixels(box, size, "ellipse")
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=255)
    if dilate:
        mask = mask.filter(ImageFilter.MaxFilter(2 * int(dilate) + 1))
    if not mask.getbbox():
        raise InputError("mask_image: the mask is empty (all black); give a mask image, --box or --ellipse "
                         "that covers something")
    return mask


def feather(mask: Image.Image, radius: float) -> Image.Image:
    """Soften the mask edge with a Gaussian blur of `radius` pixels (AUTOMATIC1111's 'mask blur')."""
    return mask.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else mask


def paste_back(generated: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """Keep the input where the mask is 0 (bit-exact), the generated image where it is 255, blend between."""
    return Image.composite(generated.convert("RGB"), original.convert("RGB"), mask.convert("L"))


def overlay(image: Image.Image, mask: Image.Image, color=(255, 0, 0), alpha: float = 0.45) -> Image.Image:
    """A preview of what will be repainted: the image with the masked area tinted."""
    tint = Image.new("RGB", image.size, color)
    strength = mask.convert("L").point(lambda v: int(v * alpha))
    return Image.composite(tint, image.convert("RGB"), strength)
