"""Photos that installed packages ship, so that img2img and inpainting run offline."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from .errors import InputError
from .runs import cache_root, save_image

PHOTOS = ("china", "flower")  # scikit-learn's two sample photos (640x427 JPEGs)


def sample_photo(name: str = "china", size: int | None = None) -> Image.Image:
    """A shipped photo as RGB; with `size`, its centre square resized to size x size."""
    from sklearn.datasets import load_sample_image

    if name not in PHOTOS:
        raise ValueError(f"photo: {name!r} is not shipped; choose one of {', '.join(PHOTOS)}")
    image = Image.fromarray(load_sample_image(f"{name}.jpg"))
    if size is not None:
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
    return image


def sample_photo_file(name: str = "china", size: int | None = None) -> Path:
    """The same photo saved as a PNG in difflab's cache (for the CLI and for metadata that names a file)."""
    path = cache_root() / "samples" / f"{name}-{size or 'full'}.png"
    if not path.exists():
        save_image(sample_photo(name, size), path)
    return path


def shapes_image_file(prompt: str, seed: int = 0) -> Path:
    """A shapes-world render of `prompt` (its own wording) from `seed`, as a PNG in difflab's cache."""
    import hashlib

    from .shapes import world

    try:
        image, _ = world.make_scene(world.parse(prompt), seed)
    except ValueError as e:
        raise InputError(f"image: {e}") from None
    key = hashlib.sha256(f"{world.VERSION}|{prompt}|{seed}".encode()).hexdigest()[:16]
    path = cache_root() / "samples" / f"shapes-{key}.png"
    if not path.exists():
        save_image(image, path)
    return path


def input_image(spec: str) -> Image.Image:
    """The RGB image that a path or an `input_path` spec names."""
    return Image.open(input_path(spec)).convert("RGB")


def input_path(spec: str | None) -> str | None:
    """A sweep's input image: a path, `sample:NAME[:SIZE]` for a photo that an installed package ships, or
    `shapes:PROMPT[:SEED]` for a render of the shapes world (e.g. `shapes:a red circle:3`)."""
    if spec is None or not spec.startswith(("sample:", "shapes:")):
        return spec
    if spec.startswith("shapes:"):
        _, prompt, *seed = spec.split(":")
        if seed and not seed[0].isdigit():
            raise InputError(f"image: {spec!r} is not allowed; use shapes:PROMPT[:SEED] with an integer SEED")
        return str(shapes_image_file(prompt, int(seed[0]) if seed else 0))
    _, name, *size = spec.split(":")
    if name not in PHOTOS or (size and not size[0].isdigit()):
        raise InputError(f"image: {spec!r} is not allowed; use sample:NAME[:SIZE] with NAME one of "
                         f"{', '.join(PHOTOS)}")
    return str(sample_photo_file(name, int(size[0]) if size else None))
