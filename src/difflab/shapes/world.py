"""The shapes world: 64x64 images of flat coloured shapes with captions that say what is in them, and the masks.

Fixed so that any judge can check it (see `judge.py`):
- colours are exactly `COLOURS` (RGB); the background is one of them or gray, never an object's colour;
- shapes: circle, square (axis-aligned), triangle (pointing up); `heart` and `star` are drawn too but never appear
  in the default training set (the fine-tuning lessons teach them);
- sizes: a small object's box side is in [SMALL_MIN, SMALL_MAX] pixels, a large one's in [LARGE_MIN, LARGE_MAX], so
  a large object has at least twice the area of a small one of the same shape;
- position: the cell of the 3x3 grid that holds the object's centre;
- captions cover GenEval's categories (Ghosh et al. 2023): single object, colour, position, counting, two objects,
  colour binding, relative position; size and background are mentioned now and then;
- deterministic: item i of a split is always the same scene, image, caption and masks. Colour-shape-position
  combinations in `HELD_OUT` never occur in the training split (compositional generalisation is scored apart).

A scene is plain data (`Scene`: background and objects), rendered with 4x supersampling for antialiased edges.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

VERSION = 1       # bump when a rule or the rendering changes: cached datasets are rebuilt
SIZE = 64
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 90, 220), "yellow": (235, 200, 40),
           "purple": (140, 60, 190), "orange": (240, 130, 30), "white": (240, 240, 240), "black": (25, 25, 25)}
BACKGROUNDS = {**COLOURS, "gray": (128, 128, 128)}
SHAPES = ("circle", "square", "triangle")
NEW_SHAPES = ("heart", "star")          # drawn by the generator, never in the default training set
ALL_SHAPES = SHAPES + NEW_SHAPES
SIZES = ("small", "large")
SMALL_MIN, SMALL_MAX, LARGE_MIN, LARGE_MAX = 12, 14, 22, 24
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
RELATIONS = ("left of", "right of", "above", "below")
NUMBERS = {1: "one", 2: "two", 3: "three"}
CATEGORIES = ("single_object", "colors", "position", "counting", "two_objects", "color_attr", "relative_position")
# (colour, shape, position) combinations never drawn in the training split: scored apart as "held out"
HELD_OUT = frozenset({("purple", "triangle", "top left"), ("orange", "circle", "bottom right"),
                      ("green", "square", "center"), ("white", "triangle", "right"), ("blue", "circle", "top"),
                      ("yellow", "square", "bottom left"), ("red", "triangle", "bottom"), ("black", "circle", "left")})
GAP = 3          # pixels kept free between two objects, so that they never touch
MARGIN = 2       # an object's centre stays this far inside its cell


@dataclass(frozen=True)
class Thing:
    """What a caption asks for (unset fields are free), or, with every field set, one drawn object."""
    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    position: str | None = None
    count: int = 1


@dataclass
class Object:
    shape: str
    colour: str
    size: str
    side: int                 # bounding-box side in pixels
    cx: float                 # centre
    cy: float

    @property
    def position(self) -> str:
        return cell_of(self.cx, self.cy)

    @property
    def box(self) -> tuple[float, float, float, float]:
        h = self.side / 2
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)


@dataclass
class Prompt:
    """A caption and what it requires: the things (and how many of each), an optional relation between the first
    two things, and an optional background. `category` is GenEval's name for its kind."""
    text: str
    category: str
    things: list[Thing]
    relation: str | None = None
    background: str | None = None


@dataclass
class Scene:
    background: str
    objects: list[Object]
    prompt: Prompt
    masks: list[np.ndarray] = field(default_factory=list, repr=False)   # one bool (H, W) per object


def cell_of(x: float, y: float) -> str:
    col = min(2, max(0, int(x * 3 // SIZE)))
    row = min(2, max(0, int(y * 3 // SIZE)))
    return POSITIONS[row * 3 + col]


def _cell_range(index: int, half: float) -> tuple[float, float]:
    """Where a centre may go in cell `index` (0..2 along one axis) for an object of half-side `half`."""
    lo, hi = index * SIZE / 3 + MARGIN, (index + 1) * SIZE / 3 - MARGIN
    return max(lo, half + 1), min(hi, SIZE - half - 1)


# --- captions: templates with varied wording and order

def _noun(thing: Thing, count: int = 1) -> str:
    words = [w for w in (thing.size, thing.colour) if w]
    shape = thing.shape or "shape"
    return " ".join(words + [shape + ("s" if count > 1 else "")])


def article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def _where(position: str, rng: random.Random) -> str:
    if position == "center":
        return rng.choice(["in the center", "in the middle"])
    if " " in position:
        return rng.choice([f"at the {position}", f"in the {position} corner"])
    return rng.choice([f"at the {position}", f"on the {position}"] if position in ("left", "right") else
                      [f"at the {position}", f"near the {position}"])


RELATION_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}


def caption(prompt: Prompt, rng: random.Random) -> str:
    """The text of a prompt's requirements, worded by one of several templates."""
    things = prompt.things
    if prompt.category == "counting":
        t = things[0]
        text = f"{NUMBERS[t.count]} {_noun(t, t.count)}"
    elif prompt.category == "relative_position":
        a, b = things
        text = f"{article(_noun(a))} {RELATION_WORDS[prompt.relation]} {article(_noun(b))}"
    elif len(things) == 2:
        a, b = things if rng.random() < 0.5 else things[::-1]
        text = f"{article(_noun(a))} and {article(_noun(b))}"
    else:
        t = things[0]
        text = article(_noun(t))
        if t.position:
            text += " " + _where(t.position, rng)
    if prompt.background:
        text += f" on a {prompt.background} background"
    lead = rng.random()
    if lead < 0.15:
        text = "a picture of " + text
    elif lead < 0.25:
        text = "an image of " + text
    return text


_SHAPE_WORDS = "|".join(ALL_SHAPES)
_NOUN = (rf"(?:an? )?(?:(?P<{{p}}size>{'|'.join(SIZES)}) )?(?:(?P<{{p}}colour>{'|'.join(COLOURS)}) )?"
         rf"(?P<{{p}}shape>{_SHAPE_WORDS}|shape)s?")
_WHERE = (r"(?:(?:at|on|near|in) the (?P<position>" + "|".join(POSITIONS) + r")(?: corner)?"
          r"|in the (?P<middle>center|middle))")


def _thing(m: re.Match, p: str, count: int = 1, position: str | None = None) -> Thing:
    shape = m[p + "shape"]
    return Thing(None if shape == "shape" else shape, m[p + "colour"], m[p + "size"], position, count)


def parse(text: str) -> Prompt:
    """The requirements of a caption in the world's own wording (what `caption` writes, any shapes): the inverse
    of `caption`, so that the judge can check any such text. Raises ValueError for anything else."""
    words = " ".join(text.lower().replace(",", " ").split())
    body = re.sub(r"^(?:a picture of|an image of) ", "", words)
    m = re.fullmatch(r"(?P<body>.+?)(?: on an? (?P<bg>" + "|".join(BACKGROUNDS) + r") background)?", body)
    body, background = m["body"], m["bg"]
    a, b = _NOUN.format(p="a"), _NOUN.format(p="b")
    relations = "|".join(RELATION_WORDS.values())
    if m := re.fullmatch(rf"(?P<n>{'|'.join(NUMBERS.values())}) {a}", body):
        count = {v: k for k, v in NUMBERS.items()}[m["n"]]
        return Prompt(text, "counting", [_thing(m, "a", count)], background=background)
    if m := re.fullmatch(rf"{a} (?P<rel>{relations}) {b}", body):
        relation = {v: k for k, v in RELATION_WORDS.items()}[m["rel"]]
        return Prompt(text, "relative_position", [_thing(m, "a"), _thing(m, "b")], relation, background)
    if m := re.fullmatch(rf"{a} and {b}", body):
        things = [_thing(m, "a"), _thing(m, "b")]
        return Prompt(text, "color_attr" if all(t.colour for t in things) else "two_objects", things,
                      background=background)
    if m := re.fullmatch(rf"{a}(?: {_WHERE})?", body):
        position = "center" if m["middle"] else m["position"]
        thing = _thing(m, "a", position=position)
        category = "position" if position else "colors" if thing.colour else "single_object"
        return Prompt(text, category, [thing], background=background)
    raise ValueError(f"prompt: {text!r} is not in the shapes world's wording (e.g. 'a red circle at the top left', "
                     f"'two blue squares', 'a red circle to the left of a blue square')")


# --- prompts by category, drawn at random (training) or listed (the score suite)

def random_prompt(rng: random.Random, shapes=SHAPES) -> Prompt:
    """A random requirement of one of GenEval's categories, sometimes with a size and a background."""
    return prompt_of(rng.choices(CATEGORIES, weights=(1, 2, 2, 2, 1, 2, 2))[0], rng, shapes)


def prompt_of(category: str, rng: random.Random, shapes=SHAPES, sizes: bool = True,
              backgrounds: bool = True) -> Prompt:
    """A random prompt of `category`; `sizes`/`backgrounds` allow the optional mentions of size and background."""
    colours = list(COLOURS)
    size = (lambda: rng.choice(SIZES) if sizes and rng.random() < 0.25 else None)
    if category == "single_object":
        things = [Thing(rng.choice(shapes), size=size())]
    elif category == "colors":
        things = [Thing(rng.choice(shapes), rng.choice(colours), size())]
    elif category == "position":
        things = [Thing(rng.choice(shapes), rng.choice(colours), size(), rng.choice(POSITIONS))]
    elif category == "counting":
        things = [Thing(rng.choice(shapes), rng.choice(colours) if rng.random() < 0.7 else None, None, None,
                        rng.choice((1, 2, 3)))]
    elif category == "two_objects":
        a, b = rng.sample(shapes, 2)
        things = [Thing(a), Thing(b)]
    elif category in ("color_attr", "relative_position"):  # two things, each with its own colour
        a, b = rng.choice(shapes), rng.choice(shapes)
        ca, cb = rng.sample(colours, 2)
        things = [Thing(a, ca, size()), Thing(b, cb, size())]
    else:
        raise ValueError(f"category: {category!r} is not known; choose one of {', '.join(CATEGORIES)}")
    relation = rng.choice(RELATIONS) if category == "relative_position" else None
    taken = {t.colour for t in things}
    background = (rng.choice([c for c in BACKGROUNDS if c not in taken])
                  if backgrounds and rng.random() < 0.3 else None)
    prompt = Prompt("", category, things, relation, background)
    prompt.text = caption(prompt, rng)
    return prompt


# --- scenes: a prompt's requirements, with everything it leaves free drawn at random

def _side(size: str, rng: random.Random) -> int:
    return rng.randint(SMALL_MIN, SMALL_MAX) if size == "small" else rng.randint(LARGE_MIN, LARGE_MAX)


def _place(side: int, position: str | None, taken: list[Object], rng: random.Random,
           x_range=None, y_range=None) -> tuple[float, float] | None:
    half = side / 2
    for _ in range(200):
        cell = POSITIONS.index(position) if position else rng.randrange(9)
        xs, ys = _cell_range(cell % 3, half), _cell_range(cell // 3, half)
        if x_range:
            xs = (max(xs[0], x_range[0]), min(xs[1], x_range[1]))
        if y_range:
            ys = (max(ys[0], y_range[0]), min(ys[1], y_range[1]))
        if xs[0] > xs[1] or ys[0] > ys[1]:
            continue
        x, y = rng.uniform(*xs), rng.uniform(*ys)
        if all(abs(x - o.cx) > half + o.side / 2 + GAP or abs(y - o.cy) > half + o.side / 2 + GAP for o in taken):
            return x, y
    return None


def scene_for(prompt: Prompt, rng: random.Random, held_out=frozenset()) -> Scene | None:
    """Objects that meet the prompt exactly (nothing else is drawn), or None when this draw could not place them."""
    objects: list[Object] = []
    for i, thing in enumerate(prompt.things):
        for _ in range(thing.count):
            colour = thing.colour or rng.choice(list(COLOURS))
            size = thing.size or rng.choice(SIZES)
            side = _side(size, rng)
            x_range = y_range = None
            if prompt.relation and i == 1:  # the second thing relative to the first, with a clear gap
                a = objects[0]
                gap = a.side / 2 + side / 2 + 6
                if prompt.relation == "left of":   # first is left of second: second to the right
                    x_range = (a.cx + gap, SIZE)
                elif prompt.relation == "right of":
                    x_range = (0, a.cx - gap)
                elif prompt.relation == "above":
                    y_range = (a.cy + gap, SIZE)
                else:
                    y_range = (0, a.cy - gap)
            where = _place(side, thing.position, objects, rng, x_range, y_range)
            if where is None:
                return None
            obj = Object(thing.shape or rng.choice(SHAPES), colour, size, side, *where)
            if (obj.colour, obj.shape, obj.position) in held_out:
                return None
            objects.append(obj)
    backgrounds = [b for b in BACKGROUNDS if b not in {o.colour for o in objects}]
    background = prompt.background or rng.choice(backgrounds)
    if background in {o.colour for o in objects}:
        return None
    return Scene(background, objects, prompt)


def _polygon(shape: str, x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    w, h = x1 - x0, y1 - y0
    if shape == "triangle":
        return [(x0 + w / 2, y0), (x1, y1), (x0, y1)]
    if shape == "star":
        pts = []
        for k in range(10):
            r = (w / 2) if k % 2 == 0 else (w / 2) * 0.45
            a = -np.pi / 2 + k * np.pi / 5
            pts.append((x0 + w / 2 + r * np.cos(a), y0 + h * 0.53 + r * np.sin(a)))
        return pts
    if shape == "heart":  # the classic parametric heart, scaled into the box
        t = np.linspace(0, 2 * np.pi, 60)
        hx = 16 * np.sin(t) ** 3
        hy = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        hx = (hx - hx.min()) / (hx.max() - hx.min())
        hy = (hy - hy.min()) / (hy.max() - hy.min())
        return list(zip(x0 + hx * w, y0 + hy * h))
    raise ValueError(shape)


def render(scene: Scene, supersample: int = 4) -> Image.Image:
    """The scene as a 64x64 RGB image (antialiased by drawing at `supersample` times the size); fills
    `scene.masks` with each object's mask (pixels at least half covered)."""
    big = SIZE * supersample
    image = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    scene.masks = []
    for obj in scene.objects:
        box = [v * supersample for v in obj.box]
        layer = Image.new("L", (big, big), 0)
        pen = ImageDraw.Draw(layer)
        if obj.shape == "circle":
            pen.ellipse(box, fill=255)
        elif obj.shape == "square":
            pen.rectangle(box, fill=255)
        else:
            pen.polygon(_polygon(obj.shape, *box), fill=255)
        draw.bitmap((0, 0), layer, fill=COLOURS[obj.colour])
        scene.masks.append(np.asarray(layer.resize((SIZE, SIZE), Image.BOX)) >= 128)
    return image.resize((SIZE, SIZE), Image.BOX)


# --- the deterministic dataset

SPLITS = ("train", "val", "test")


def _seed(split: str, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"shapes-v{VERSION}|{split}|{index}".encode()).digest()[:8], "little")


def item(index: int, split: str = "train", shapes=SHAPES) -> tuple[Image.Image, Scene]:
    """Item `index` of `split`: always the same image and scene (caption in `scene.prompt.text`, masks in
    `scene.masks`). The training split never holds a HELD_OUT combination."""
    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not known; choose one of {', '.join(SPLITS)}")
    rng = random.Random(_seed(split, index))
    while True:
        prompt = random_prompt(rng, shapes)
        scene = scene_for(prompt, rng, HELD_OUT if split == "train" else frozenset())
        if scene is not None:
            return render(scene), scene


def outline(mask: np.ndarray) -> np.ndarray:
    """The outlines of the objects of a (H, W) bool mask as a white-on-black (H, W, 3) uint8 image: the pixels of the
    mask with a neighbour outside it. Objects never touch (GAP), so each keeps its own closed outline: the control
    image of ControlNet's Fill50K sanity check (outline in, filled shape in the caption's colours out)."""
    from scipy import ndimage

    edge = mask & ~ndimage.binary_erosion(mask, border_value=0)
    return np.repeat(edge[..., None].astype(np.uint8) * 255, 3, axis=2)


def kind_masks(scene: Scene) -> dict[tuple[str, str], np.ndarray]:
    """(colour, shape) -> the (H, W) bool mask of every object of that kind in `scene` ("three red circles" are one
    mask): the region that the words "red circle" name."""
    kinds = {}
    for o, m in zip(scene.objects, scene.masks):
        key = (o.colour, o.shape)
        kinds[key] = kinds[key] | m if key in kinds else m
    return kinds


def make_scene(prompt: Prompt, seed: int) -> tuple[Image.Image, Scene]:
    """A rendered scene that meets `prompt` (any shapes, held-out combinations allowed), drawn from `seed`."""
    rng = random.Random(seed)
    for _ in range(1000):
        scene = scene_for(prompt, rng)
        if scene is not None:
            return render(scene), scene
    raise ValueError(f"prompt: {prompt.text!r} cannot be drawn in a {SIZE}x{SIZE} image")


def write_folder(out, prompt: str, n: int, seed: int = 0, call: str | None = None) -> list:
    """`n` renders of `prompt` (seeds seed..seed+n-1) as a fine-tuning folder in kohya's convention: NNN.png with
    NNN.txt beside it, the caption naming each object's colour and shape, or calling every shape `call` instead
    (DreamBooth's identifier: call="sks shape" captions a red heart "a red sks shape")."""
    from pathlib import Path

    from ..runs import atomic_write, save_image

    if n < 1:
        raise ValueError(f"n: {n} is not allowed; use an integer >= 1")
    if call is not None and not call.strip():
        raise ValueError(f"call: {call!r} is not allowed; give the words that name the shape, e.g. 'sks shape'")
    wanted = parse(prompt)   # before anything is written
    out = Path(out)
    written = []
    for i in range(n):
        image, scene = make_scene(wanted, seed + i)
        caption = " and ".join(f"a {o.colour} {call or o.shape}" for o in scene.objects)
        written.append(save_image(image, out / f"{i:03d}.png"))
        atomic_write(out / f"{i:03d}.txt", caption + "\n")
    return written
