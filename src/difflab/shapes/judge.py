"""The judge: reads an image of the shapes world back into objects, and says whether it meets a prompt.

No network and no training: colour segmentation against the world's palette, connected components, and each
component's geometry. Per component:
- colour: the palette colour most of its pixels are nearest to (the background is the image's commonest one);
- shape: from the fill of its bounding box (square 1.0, circle 0.79, triangle 0.5), its solidity (area over
  convex-hull area: a star's is low) and where its mass sits (a triangle pointing up is heavy at the bottom,
  a heart at the top);
- size: the bounding box's longer side against the midpoint of the small and large ranges;
- position: the 3x3 cell that holds the centre of its bounding box (the world's definition).
A prompt is met when every thing it asks for is there in the right number (exactly, for counting prompts; at
least one otherwise) with the asked colour, shape, size and position, and the relation holds between some pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from .world import BACKGROUNDS, LARGE_MIN, SIZE, SMALL_MAX, Prompt, Thing, cell_of

PALETTE_NAMES = list(BACKGROUNDS)
PALETTE = np.array([BACKGROUNDS[n] for n in PALETTE_NAMES], dtype=np.float32)   # (9, 3)
MIN_AREA = 24          # pixels: anything smaller is an edge fringe or noise, not an object
MAX_DISTANCE = 90.0    # RGB distance beyond which a pixel belongs to no palette colour
SIZE_SPLIT = (SMALL_MAX + LARGE_MIN) / 2
RELATION_MARGIN = 4.0  # pixels between centroids for left/right/above/below


@dataclass
class Found:
    shape: str
    colour: str
    size: str
    position: str
    cx: float
    cy: float
    area: int
    mask: np.ndarray


def _shape(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    area = len(xs)
    fill = area / (h * w)
    try:
        points = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
        solidity = area / ConvexHull(points).volume
    except QhullError:
        solidity = 1.0
    dy = (ys.mean() - (ys.min() + ys.max()) / 2) / h      # > 0: heavy at the bottom
    # thresholds halfway between the classes as measured on 800 clean renders of each split (tests check them):
    # square fill >= 0.98, star solidity <= 0.71, triangle dy >= 0.13, heart dy <= -0.05, circle |dy| <= 0.03
    if fill > 0.9:
        return "square"
    if solidity < 0.76:
        return "star"
    if dy > 0.08:
        return "triangle"
    if dy < -0.04:
        return "heart"
    return "circle"


def read(image) -> tuple[str, list[Found]]:
    """(background colour, objects) of an image of the shapes world (PIL image or HxWx3 uint8 array)."""
    pixels = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.float32)
    if pixels.shape[:2] != (SIZE, SIZE):
        from PIL import Image
        pixels = np.asarray(Image.fromarray(pixels.astype(np.uint8)).resize((SIZE, SIZE), Image.BILINEAR),
                            dtype=np.float32)
    distance = np.linalg.norm(pixels[:, :, None, :] - PALETTE[None, None], axis=-1)   # (H, W, 9)
    nearest = distance.argmin(-1)
    close = distance.min(-1) < MAX_DISTANCE
    background = int(np.bincount(nearest[close].ravel(), minlength=len(PALETTE)).argmax())
    found = []
    for index, name in enumerate(PALETTE_NAMES):
        if index == background or name == "gray":
            continue
        colour = (nearest == index) & close
        # antialiased edges blend two colours into a 1-pixel fringe that may sit nearer a third palette colour:
        # keep only what survives an opening, grown back within the colour (morphological reconstruction)
        colour = ndimage.binary_propagation(ndimage.binary_opening(colour, np.ones((3, 3), bool)), mask=colour)
        labels, n = ndimage.label(colour)
        for k in range(1, n + 1):
            mask = labels == k
            area = int(mask.sum())
            if area < MIN_AREA:
                continue
            ys, xs = np.nonzero(mask)
            side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
            cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2   # the box centre, as drawn
            found.append(Found(_shape(mask), name, "large" if side > SIZE_SPLIT else "small", cell_of(cx, cy), cx, cy,
                               area, mask))
    return PALETTE_NAMES[background], found


def matches(thing: Thing, obj: Found) -> bool:
    return ((thing.shape is None or thing.shape == obj.shape) and (thing.colour is None or thing.colour == obj.colour)
            and (thing.size is None or thing.size == obj.size)
            and (thing.position is None or thing.position == obj.position))


def related(a: Found, b: Found, relation: str) -> bool:
    if relation == "left of":
        return a.cx + RELATION_MARGIN < b.cx
    if relation == "right of":
        return a.cx > b.cx + RELATION_MARGIN
    if relation == "above":
        return a.cy + RELATION_MARGIN < b.cy
    return a.cy > b.cy + RELATION_MARGIN


ATTRIBUTES = ("colour", "shape", "size", "position", "number")


def attribute_hits(prompt: Prompt, objects: list[Found]) -> dict[str, list[bool]]:
    """Which of the prompt's requirements the image holds, one attribute at a time, where `judge` only says that the
    image fails: per thing and per attribute it names, whether some object has the thing's colour (where it names
    one) and that attribute: a shape, size or position drawn on the wrong object does not count. `number`: the
    image holds exactly as many objects as the prompt asks for (no strays)."""
    hits = {a: [] for a in ATTRIBUTES}
    for thing in prompt.things:
        coloured = [o for o in objects if thing.colour is None or o.colour == thing.colour]
        if thing.colour:
            hits["colour"].append(bool(coloured))
        for key in ("shape", "size", "position"):
            if getattr(thing, key):
                hits[key].append(any(getattr(o, key) == getattr(thing, key) for o in coloured))
    hits["number"].append(len(objects) == sum(t.count for t in prompt.things))
    return hits


def judge(image, prompt: Prompt) -> dict:
    """Whether `image` meets `prompt`: {"correct": bool, "reasons": [...], "background", "objects", "attributes"
    (`attribute_hits`)}."""
    background, objects = read(image)
    reasons = []
    groups = []
    for thing in prompt.things:
        kind = [o for o in objects if (thing.shape is None or o.shape == thing.shape)
                and (thing.colour is None or o.colour == thing.colour)]
        full = [o for o in kind if matches(thing, o)]
        groups.append(full)
        if prompt.category == "counting":
            if len(kind) != thing.count:
                reasons.append(f"count: {len(kind)} of {thing.count}")
        elif not full:
            reasons.append(f"missing: {thing}")
    if prompt.relation and len(groups) == 2 and all(groups):
        if not any(related(a, b, prompt.relation) for a in groups[0] for b in groups[1]):
            reasons.append(f"relation: not {prompt.relation}")
    if prompt.background and background != prompt.background:
        reasons.append(f"background: {background}")
    return {"correct": not reasons, "reasons": reasons, "background": background,
            "objects": [(o.colour, o.shape, o.size, o.position) for o in objects],
            "attributes": attribute_hits(prompt, objects)}


def attribute_accuracy(images, scenes) -> dict:
    """How often the judge reads each drawn object's attributes right: for every object of every scene, the
    found object that overlaps its mask most must have its colour, shape, size and position; `count` asks that
    the image holds exactly as many objects as were drawn. Fractions in [0, 1], and `n` objects."""
    tally = {"colour": 0, "shape": 0, "size": 0, "position": 0, "count": 0, "background": 0}
    n = 0
    for image, scene in zip(images, scenes):
        background, found = read(image)
        tally["count"] += len(found) == len(scene.objects)
        tally["background"] += background == scene.background
        for obj, mask in zip(scene.objects, scene.masks):
            n += 1
            best = max(found, key=lambda f: (f.mask & mask).sum(), default=None)
            if best is None or not (best.mask & mask).any():
                continue
            tally["colour"] += best.colour == obj.colour
            tally["shape"] += best.shape == obj.shape
            tally["size"] += best.size == obj.size
            tally["position"] += best.position == obj.position
    images_n = len(scenes)
    return {**{k: tally[k] / max(n, 1) for k in ("colour", "shape", "size", "position")},
            "count": tally["count"] / max(images_n, 1), "background": tally["background"] / max(images_n, 1),
            "n": n}
