"""Training data for the Stable Diffusion trainer, as uint8 images and captions:
- the shapes world's training split, rendered once and cached (with object masks) in the difflab cache, so a run,
  its resume and the next run share it;
- a folder of images, captioned by a NAME.txt beside each image (kohya's convention), by a metadata.jsonl of
  {"file_name", "text"} lines (diffusers' image-folder convention), or by one instance prompt for all (DreamBooth);
  each image is resized so that its shorter side is the model's size and cut square (centre, or at random per step);
- DreamBooth's class images, made by the base model itself with difflab's seeded generation and cached.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..runs import atomic_write, cache_root
from .config import DataConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class Dataset:
    images: torch.Tensor      # (N, 3, H, W) uint8: square, at the model's size (centre cuts)
    captions: list[str]
    masks: torch.Tensor | None = None     # (N, 1, H, W) bool: where the objects are (the shapes world)
    resized: list[torch.Tensor] | None = None   # folder data with random crops: each image, shorter side = H
    digest: str = ""          # sha256 of the images and captions, recorded in what is trained on them
    controls: torch.Tensor | None = None   # (N, 3, H, W) uint8: ControlNet's control images, aligned with `images`
    regions: list[list[tuple[str, torch.Tensor]]] | None = None   # the shapes world: per item, ("a COLOUR SHAPE",
    # (H, W) bool) for each colour and shape in it, the mask covering every object of that kind (inpainting)

    def __len__(self) -> int:
        return len(self.captions)

    def split(self, held_out: int) -> tuple["Dataset", "Dataset"]:
        """(training items, the last `held_out` items) for a validation loss."""
        n = len(self) - held_out

        def part(sl):
            return Dataset(self.images[sl], self.captions[sl], None if self.masks is None else self.masks[sl],
                           None if self.resized is None else self.resized[sl], self.digest,
                           None if self.controls is None else self.controls[sl],
                           None if self.regions is None else self.regions[sl])
        return part(slice(0, n)), part(slice(n, None))

    def batch(self, idx: torch.Tensor, crop: str, flip: bool, g: torch.Generator) -> torch.Tensor:
        """The images of a batch, cut and flipped as the data config asks (random draws from `g`)."""
        if crop == "random" and self.resized is not None:
            size = self.images.shape[-1]
            cuts = []
            for i in idx.tolist():
                im = self.resized[i]
                y = int(torch.randint(0, im.shape[1] - size + 1, (1,), generator=g))
                x = int(torch.randint(0, im.shape[2] - size + 1, (1,), generator=g))
                cuts.append(im[:, y:y + size, x:x + size])
            images = torch.stack(cuts)
        else:
            images = self.images[idx]
        if flip:
            mirror = torch.rand(len(idx), generator=g) < 0.5
            images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
        return images


def shapes(cfg: DataConfig, progress: bool = True, controls: bool = False, regions: bool = False) -> Dataset:
    """Items 0..size-1 of the shapes world's training split; with `controls`, each with the outlines of its objects
    as its control image (`world.outline`); with `regions`, each with its objects' masks by colour and shape."""
    import io

    from ..shapes import world

    path = cache_root() / "data" / f"shapes-{world.VERSION}-train-{cfg.size}.npz"
    if not path.exists():
        from tqdm.auto import tqdm

        images, masks, captions = [], [], []
        for i in tqdm(range(cfg.size), desc="rendering the shapes world", unit="img", disable=not progress):
            image, scene = world.item(i, "train")
            images.append(np.asarray(image))
            masks.append(np.any(scene.masks, axis=0))
            captions.append(scene.prompt.text)
        buf = io.BytesIO()
        np.savez_compressed(buf, images=np.stack(images), masks=np.stack(masks),
                            captions=np.array(json.dumps(captions)))
        atomic_write(path, buf.getvalue())
    with np.load(path) as data:
        outlines = torch.from_numpy(np.stack([world.outline(m) for m in data["masks"]])).permute(0, 3, 1, 2) \
            if controls else None
        return Dataset(torch.from_numpy(data["images"]).permute(0, 3, 1, 2).contiguous(),
                       json.loads(str(data["captions"])), torch.from_numpy(data["masks"])[:, None],
                       digest=f"shapes-{world.VERSION}-train-{cfg.size}", controls=outlines,
                       regions=shapes_regions(cfg.size, progress) if regions else None)


def shapes_regions(size: int, progress: bool = True) -> list[list[tuple[str, torch.Tensor]]]:
    """Per item of the training split, ("a red circle", mask) for each kind of object in it (`world.kind_masks`: all
    objects of that colour and shape under one mask), cached beside the images."""
    import io

    from ..shapes import world

    path = cache_root() / "data" / f"shapes-{world.VERSION}-train-{size}-kinds.npz"
    if not path.exists():
        from tqdm.auto import tqdm

        masks, owners, words = [], [], []
        for i in tqdm(range(size), desc="the shapes world's object masks", unit="img", disable=not progress):
            _, scene = world.item(i, "train")
            for (colour, shape), m in world.kind_masks(scene).items():
                masks.append(m)
                owners.append(i)
                words.append(world.article(f"{colour} {shape}"))
        buf = io.BytesIO()
        np.savez_compressed(buf, masks=np.stack(masks), owners=np.array(owners), words=np.array(json.dumps(words)))
        atomic_write(path, buf.getvalue())
    with np.load(path) as data:
        masks, words = torch.from_numpy(data["masks"]), json.loads(str(data["words"]))
        found = [[] for _ in range(size)]
        for owner, w, m in zip(data["owners"].tolist(), words, masks):
            found[owner].append((w, m))
    return found


def inpaint_masks(data: Dataset, idx: torch.Tensor, cfg, size: int, g: torch.Generator) -> tuple[torch.Tensor, list]:
    """Masks (B, 1, size, size) of 0/1 (1: repaint) and captions for a batch, drawn from `g` as `cfg` (InpaintConfig)
    shares them: one kind of object with its words, a random box or the whole image with the item's caption."""
    masks, captions = torch.zeros(len(idx), 1, size, size), []
    lo = max(1, round(cfg.min_box * size))
    for row, i in enumerate(idx.tolist()):
        r = float(torch.rand((), generator=g))
        if r < cfg.objects and data.regions and data.regions[i]:
            words, m = data.regions[i][int(torch.randint(len(data.regions[i]), (), generator=g))]
            masks[row, 0] = m.float()
            captions.append(words)
            continue
        if r < cfg.objects + cfg.boxes:
            h, w = (int(torch.randint(lo, size + 1, (), generator=g)) for _ in range(2))
            y = int(torch.randint(0, size - h + 1, (), generator=g))
            x = int(torch.randint(0, size - w + 1, (), generator=g))
            masks[row, 0, y:y + h, x:x + w] = 1
        else:
            masks[row, 0] = 1
        captions.append(data.captions[i])
    return masks, captions


def _metadata(folder: Path) -> dict[str, dict]:
    """metadata.jsonl's rows by file_name (diffusers' image-folder convention), each naming a file of the folder."""
    rows = {}
    meta = folder / "metadata.jsonl"
    if not meta.is_file():
        return rows
    for n, line in enumerate(meta.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            row["text"] = row["text"] if "text" in row else row["caption"]
        except (ValueError, KeyError, TypeError):
            raise InputError(f"data.folder: {str(meta)!r} line {n} is not a JSON object with file_name and text (or "
                             f"caption)") from None
        for key in ("file_name", "conditioning_image"):
            if key in row and not (folder / str(row[key])).is_file():
                raise InputError(f"data.folder: {str(meta)!r} line {n} names {row[key]!r} ({key}), which is not "
                                 f"in the folder")
        rows[row["file_name"]] = row
    return rows


def _captions(folder: Path, images: list[Path], instance_prompt: str | None, rows: dict) -> list[str]:
    """One caption per image: the instance prompt, else metadata.jsonl, else NAME.txt; a missing one is an error,
    and so is a caption file without its image (renamed or deleted: its caption would silently go unused)."""
    stems = {p.stem for p in images}
    for txt in sorted(folder.glob("*.txt")):
        if txt.stem not in stems:
            raise InputError(f"data.folder: caption {str(txt)!r} has no image beside it ({txt.stem}.png, .jpg, ...)")
    if instance_prompt is not None:
        return [instance_prompt] * len(images)
    captions = []
    for p in images:
        txt = p.with_suffix(".txt")
        if p.name in rows:
            captions.append(str(rows[p.name]["text"]))
        elif txt.is_file():
            captions.append(txt.read_text().strip())
        else:
            raise InputError(f"data.folder: {str(p)!r} has no caption ({txt.name} or a metadata.jsonl line); or "
                             f"give data.instance_prompt for all images")
    return captions


def _open_rgb(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"data.folder: {str(path)!r} is not a readable image ({e})") from None


def _fit(im, size: int) -> torch.Tensor:
    """(3, h, w) uint8 with the shorter side resized to `size`."""
    from PIL import Image

    scale = size / min(im.size)
    w, h = max(size, round(im.size[0] * scale)), max(size, round(im.size[1] * scale))
    im = im.resize((w, h), Image.Resampling.LANCZOS) if (w, h) != im.size else im
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)


def _centre(x: torch.Tensor, size: int) -> torch.Tensor:
    top, left = (x.shape[1] - size) // 2, (x.shape[2] - size) // 2
    return x[:, top:top + size, left:left + size]


def folder(cfg: DataConfig, size: int, controls: bool = False, identifier: str | None = None) -> Dataset:
    """The images of `cfg.folder` and their captions, at the model's `size` (see the module's docstring); with
    `controls`, each image's control image too: metadata.jsonl's `conditioning_image` (diffusers' ControlNet layout:
    file_name, conditioning_image, text), resized and cut as the image is; with `identifier` (DreamBooth), a
    caption without it is an error."""
    root = Path(cfg.folder).expanduser()
    if not root.is_dir():
        raise InputError(f"data.folder: {str(root)!r} is not a folder")
    rows = _metadata(root)
    conditioning = {(root / str(r["conditioning_image"])).resolve() for r in rows.values() if "conditioning_image" in r}
    holders = {p.parent for p in conditioning}   # a conditioning/ subfolder is part of the layout, not stray data
    files = sorted(p for p in root.iterdir() if not p.name.startswith(".") and p.resolve() not in conditioning
                   and p.resolve() not in holders)
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    other = [p for p in files if p not in images and p.suffix != ".txt" and p.name != "metadata.jsonl"]
    if other:
        raise InputError(f"data.folder: {str(other[0])!r} is not an image (use {', '.join(IMAGE_SUFFIXES)}, with "
                         f"NAME.txt captions or a metadata.jsonl)")
    if not images:
        raise InputError(f"data.folder: {str(root)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    captions = _captions(root, images, cfg.instance_prompt, rows)
    if identifier is not None:   # DreamBooth: every caption names the subject by its identifier
        for path, caption in zip(images, captions):
            if identifier not in caption.split():
                raise InputError(f"data.folder: the caption of {str(path)!r} ({caption!r}) does not hold the "
                                 f"identifier {identifier!r} (dreambooth.identifier); e.g. 'a red {identifier} shape'")
    if controls:
        missing = [p.name for p in images if "conditioning_image" not in rows.get(p.name, {})]
        if missing:
            raise InputError(f"data.folder: {missing[0]!r} has no conditioning_image in metadata.jsonl (a ControlNet "
                             f"trains on lines of file_name, conditioning_image and text)")
    digest = hashlib.sha256()
    centre, resized, control = [], [], []
    for p, caption in zip(images, captions):
        im = _open_rgb(p)
        if min(im.size) < size and not cfg.upscale:
            raise InputError(f"data.folder: {str(p)!r} is {im.size[0]}x{im.size[1]}, smaller than the model's "
                             f"{size}x{size}; use larger images or data.upscale: true")
        digest.update(hashlib.sha256(p.read_bytes()).digest() + caption.encode() + b"\0")
        x = _fit(im, size)
        centre.append(_centre(x, size))
        resized.append(x)
        if controls:
            c = root / str(rows[p.name]["conditioning_image"])
            cond = _open_rgb(c)
            if cond.size != im.size:
                raise InputError(f"data.folder: {str(c)!r} is {cond.size[0]}x{cond.size[1]}, its image "
                                 f"{im.size[0]}x{im.size[1]}; a control image must match its image")
            digest.update(hashlib.sha256(c.read_bytes()).digest())
            control.append(_centre(_fit(cond, size), size))
    return Dataset(torch.stack(centre).contiguous(), captions, None,
                   resized if cfg.crop == "random" else None, digest.hexdigest(),
                   torch.stack(control).contiguous() if controls else None)


def class_images(base: str, prompt: str | list[str], count: int, steps: int, guidance: float, size: int,
                 progress: bool = True) -> Dataset:
    """DreamBooth's prior: `count` images made by the base model, image i from `prompt` (or from prompt i mod n of a
    list) with seed i (DPM++ 2M Karras), captioned in NAME.txt beside it; cached by (base model hash, prompts, count,
    steps, guidance, size); each PNG carries its full generation record."""
    from .. import generate, load

    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    model = load(base, device="cpu", dtype="float32", progress=False)
    # "captioned": folders from before the .txt captions (one prompt each) are not reused
    key = json.dumps(["captioned", model.weights_hash or model.source.id, prompts, count, steps, guidance, size])
    folder_path = cache_root() / "class-images" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if not (folder_path / ".done").is_file():
        from tqdm.auto import tqdm

        what = repr(prompts[0]) if len(prompts) == 1 else f"{len(prompts)} prompts"
        for seed in tqdm(range(count), desc=f"class images: {what}", unit="img", disable=not progress):
            path, text = folder_path / f"{seed:05d}.png", prompts[seed % len(prompts)]
            if not path.is_file():
                generate(model, prompt=text, seed=seed, num_inference_steps=steps, guidance_scale=guidance,
                         scheduler="dpm++_2m_karras", height=size, width=size)[0].save(path)
            atomic_write(path.with_suffix(".txt"), text + "\n")
        atomic_write(folder_path / ".done", key)
    data = folder(DataConfig(name="folder", folder=str(folder_path)), size)
    data.digest = str(folder_path)
    return data


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range Stable Diffusion's VAE works in."""
    return images.float() / 127.5 - 1
