"""Photos that installed packages ship, so that img2img and inpainting run offline."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from .tiny import cache_root

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
        from .runs import save_image
        save_image(sample_photo(name, size), path)
    return path
