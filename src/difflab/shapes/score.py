"""The prompt-following score: a fixed, versioned suite of prompts per GenEval category, several seeds each, every
image judged; per category the share of correct images, overall their mean (GenEval's table: an image counts only
if every requirement of its prompt holds). `held_out` prompts name colour-shape-position combinations that the
training split never shows (compositional generalisation) and are reported apart, outside the overall score.

Any model that can draw the shapes world can be scored: the `shapes` model, a fine-tuned one, a real Stable
Diffusion model on a GPU (which scores poorly: a finding, not a bug). Generation parameters are difflab's, so a
sweep can score guidance, steps and schedulers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from . import judge, world

SUITE_VERSION = 1
PROMPTS_PER_CATEGORY = 16
SEEDS = (0, 1, 2, 3)


@dataclass
class SuiteItem:
    prompt: world.Prompt
    seeds: tuple[int, ...]


def suite(prompts_per_category: int = PROMPTS_PER_CATEGORY, seeds=SEEDS) -> dict[str, list[SuiteItem]]:
    """The fixed suite: category -> items (prompt, seeds). Version SUITE_VERSION: the same prompts every time."""
    rng = random.Random(f"shapes-suite-v{SUITE_VERSION}")
    out = {c: [SuiteItem(world.prompt_of(c, rng, sizes=False, backgrounds=False), tuple(seeds))
               for _ in range(prompts_per_category)] for c in world.CATEGORIES}
    held = []
    for colour, shape, position in sorted(world.HELD_OUT):
        thing = world.Thing(shape, colour, None, position)
        prompt = world.Prompt("", "position", [thing])
        prompt.text = world.caption(prompt, rng)
        held.append(SuiteItem(prompt, tuple(seeds)))
    out["held_out"] = held
    return out


def score(draw, items: dict[str, list[SuiteItem]] | None = None, progress: bool = True) -> dict:
    """Score `draw(prompt, seeds) -> list of images` (prompt: a world.Prompt, its words in `.text`) on the suite:
    {"categories": {name: share correct}, "overall": mean over GenEval's categories, "held_out": share correct,
    "attributes": {attribute: share of its requirements held, over GenEval's categories (`judge.attribute_hits`)},
    "images": n, "details": [per image: prompt, seed, verdict, the objects the judge read]}."""
    from tqdm.auto import tqdm

    items = items or suite()
    details, per_category, hits = [], {}, {a: [] for a in judge.ATTRIBUTES}
    total = sum(len(v) for v in items.values())
    with tqdm(total=total, desc="scoring", unit="prompt", disable=not progress) as bar:
        for category, entries in items.items():
            correct = []
            for entry in entries:
                for seed, image in zip(entry.seeds, draw(entry.prompt, list(entry.seeds))):
                    verdict = judge.judge(image, entry.prompt)
                    correct.append(verdict["correct"])
                    if category in world.CATEGORIES:
                        for a, held in verdict["attributes"].items():
                            hits[a] += held
                    details.append({"category": category, "prompt": entry.prompt.text, "seed": seed,
                                    "correct": verdict["correct"], "reasons": verdict["reasons"],
                                    "objects": verdict["objects"]})
                bar.update(1)
            per_category[category] = sum(correct) / max(len(correct), 1)
    geneval = [per_category[c] for c in world.CATEGORIES if c in per_category]
    return {"suite_version": SUITE_VERSION, "categories": {c: round(v, 4) for c, v in per_category.items()},
            "overall": round(sum(geneval) / max(len(geneval), 1), 4),
            "attributes": {a: round(sum(h) / len(h), 4) for a, h in hits.items() if h},
            "images": len(details), "details": details}


def table(result: dict) -> str:
    """GenEval's table: one column per category, then overall; below it, the share of each attribute held."""
    names = [c for c in world.CATEGORIES if c in result["categories"]]
    header = names + ["overall"] + (["held_out"] if "held_out" in result["categories"] else [])
    values = [result["categories"][c] for c in names] + [result["overall"]]
    values += [result["categories"]["held_out"]] if "held_out" in result["categories"] else []
    lines = _rows(header, values)
    if result.get("attributes"):   # which attribute fails, read against the thing's colour (judge.attribute_hits)
        names = list(result["attributes"])
        lines += [""] + _rows(["attribute:"] + names, [None] + [result["attributes"][a] for a in names])
    return "\n".join(lines)


def _rows(header: list[str], values: list) -> list[str]:
    widths = [max(len(h), 6) for h in header]
    return ["  ".join(h.ljust(w) for h, w in zip(header, widths)),
            "  ".join(("" if v is None else f"{v:.3f}").ljust(w) for v, w in zip(values, widths))]


def model_drawer(model, **params):
    """`draw` for a difflab Model: one batched call per prompt, image i with seed i of the suite item (difflab's
    per-image CPU generators), with any generation parameters (steps, guidance_scale, scheduler...)."""
    from ..generate import generate

    def draw(prompt: world.Prompt, seeds: list[int]):
        return [out.image for out in generate(model, prompt=prompt.text, seeds=seeds, **params)]

    return draw


def world_drawer():
    """`draw` that renders the prompt with the world itself: what a perfect model would make (scores 1.0)."""
    def draw(prompt: world.Prompt, seeds: list[int]):
        return [world.make_scene(prompt, seed)[0] for seed in seeds]

    return draw


def reconstructions(vae, n: int, split: str = "val") -> tuple[list, list]:
    """Items 0..n-1 of `split` passed through `vae` (encode, take the posterior mean, decode): (images, scenes)."""
    import numpy as np
    import torch

    from ..ddpm.data import to_pil
    from ..train.data import to_model_range

    items = [world.item(i, split) for i in range(n)]
    pixels = torch.from_numpy(np.stack([np.asarray(im) for im, _ in items])).permute(0, 3, 1, 2)
    out = []
    with torch.no_grad():
        for i in range(0, n, 128):
            x = to_model_range(pixels[i:i + 128]).to(vae.device, vae.dtype)
            out.append(vae.decode(vae.encode(x).latent_dist.mean).sample.float().cpu())
    return [to_pil(r) for r in torch.cat(out)], [scene for _, scene in items]


def vae_accuracy(vae, n: int = 500) -> dict:
    """The judge's per-attribute accuracy on `n` validation items passed through `vae` (the bar: 0.97 each)."""
    return judge.attribute_accuracy(*reconstructions(vae, n))


def concept(draw, template: str, shape: str, colours=("red", "blue", "green", "yellow"), seeds=range(20)) -> dict:
    """How often a model draws a taught shape: `template` with {colour} filled in (e.g. "a {colour} sks shape"),
    each seed once per colour; the share of images holding an object the judge reads as `shape`, the share holding
    an object of the asked colour, and the share with one object that is both."""
    found = {"shape": [], "colour": [], "both": []}
    for colour in colours:
        for image in draw(world.Prompt(template.format(colour=colour), "concept", []), list(seeds)):
            _, objects = judge.read(image)
            found["shape"].append(any(o.shape == shape for o in objects))
            found["colour"].append(any(o.colour == colour for o in objects))
            found["both"].append(any(o.shape == shape and o.colour == colour for o in objects))
    return {k: round(sum(v) / len(v), 4) for k, v in found.items()} | {"images": len(found["shape"])}


def iou(a, b) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def _median(values) -> float:
    import numpy as np
    return round(float(np.median(values)), 4) if len(values) else 0.0


def control_fidelity(model, n: int = 100, control: bool = True, split: str = "val", **params) -> dict:
    """How well a ControlNet for outlines is followed, on `n` items of `split` (never trained on): each item's caption
    with the outlines of its objects as the control image (or, `control=False`, the caption alone: the reference).
    `iou`: median IoU between the objects the judge finds and the region the outlines enclose; `colours`: the share
    of items where every colour the caption names is found."""
    import numpy as np
    from PIL import Image

    from ..generate import generate

    ious, colours = [], []
    for i in range(n):
        _, scene = world.item(i, split)
        region = np.any(scene.masks, axis=0)
        extra = {"control_image": Image.fromarray(world.outline(region))} if control else {}
        image = generate(model, prompt=scene.prompt.text, seed=i, **extra, **params)[0].image
        _, found = judge.read(image)
        drawn = np.any([f.mask for f in found], axis=0) if found else np.zeros_like(region)
        ious.append(iou(drawn, region))
        wanted = {t.colour for t in scene.prompt.things if t.colour}
        if wanted:
            colours.append(wanted <= {f.colour for f in found})
    return {"iou_median": _median(ious), "iou_mean": round(float(np.mean(ious)), 4),
            "colours": round(sum(colours) / max(len(colours), 1), 4), "items": n, "items_with_colours": len(colours)}


def control_over_steps(run_dir) -> dict[int, float]:
    """When a ControlNet run started to follow its outlines: at each sample step, the mean IoU of the objects the
    judge finds in its saved samples (held-out captions and outlines) with the region each outline encloses."""
    from pathlib import Path

    import numpy as np
    from PIL import Image
    from scipy import ndimage

    curve = {}
    for step_dir in sorted((Path(run_dir) / "samples" / "steps").glob("step-*")):
        ious = []
        for control in sorted(step_dir.glob("*-control.png")):
            region = ndimage.binary_fill_holes(np.asarray(Image.open(control).convert("L")) > 127)
            for sample in sorted(step_dir.glob(control.name.replace("control", "seed-*"))):
                _, found = judge.read(Image.open(sample))
                drawn = np.any([f.mask for f in found], axis=0) if found else np.zeros_like(region)
                ious.append(iou(drawn, region))
        curve[int(step_dir.name[5:])] = round(float(np.mean(ious)), 4)
    return curve


def words_mask_fidelity(model, n: int = 100, threshold: float = 3.0, refine: str = "segments", split: str = "val",
                        true_masks: bool = False, reference: str | None = None, **params) -> dict:
    """Masks from words (DiffEdit) against the true masks, and inpainting through them, on `n` items of `split`: the
    words are the first object's "colour shape"; `iou` is the median IoU of the words' mask with the objects those
    words name (in "three black triangles", all three). Then they are repainted in another colour, neither theirs nor
    the background's (prompt "a NEW shape", the mask from the words, unmasked pixels kept): `edited` is the share
    where the judge finds an object of the new colour and shape over each named object's place and every other
    object as it was. The words are read against `reference` (None: the edit's prompt, as `difflab inpaint` does).
    `true_masks=True` repaints through the true masks instead (IoU 1 by construction): the edits' ceiling with
    perfect masks, what the model's inpainting alone can do."""
    import numpy as np
    from PIL import Image

    from ..control import mask_from_words
    from ..errors import InputError
    from ..generate import generate

    ious, edited = [], []
    words = None if true_masks else model.words_pipeline()   # an inpainting model's words are read by its base
    for i in range(n):
        image, scene = world.item(i, split)
        target = scene.objects[0]
        is_named = [(o.colour, o.shape) == (target.colour, target.shape) for o in scene.objects]
        named = [(o, m) for o, m, y in zip(scene.objects, scene.masks, is_named) if y]
        others = [(o, m) for o, m, y in zip(scene.objects, scene.masks, is_named) if not y]
        truth = world.kind_masks(scene)[(target.colour, target.shape)]
        new = next(c for c in ("red", "blue", "green", "yellow") if c not in (target.colour, scene.background))
        prompt = f"a {new} {target.shape}"
        try:
            mask = truth if true_masks else np.asarray(mask_from_words(
                words, image, f"{target.colour} {target.shape}", threshold, refine,
                prompt if reference is None else reference)) > 0
        except InputError:   # no region found: an empty mask, nothing edited
            ious.append(0.0)
            edited.append(False)
            continue
        ious.append(iou(mask, truth))
        out = generate(model, task="inpaint", prompt=prompt, image=image, seed=i,
                       mask_image=Image.fromarray(mask), keep_unmasked=True, **params)[0].image   # = mask_from
        _, found = judge.read(out)
        there = lambda colour, shape, m: any(  # noqa: E731
            f.colour == colour and f.shape == shape and (f.mask & m).sum() > 0.5 * m.sum() for f in found)
        edited.append(all(there(new, o.shape, m) for o, m in named)
                      and all(there(o.colour, o.shape, m) for o, m in others))
    return {"iou_median": _median(ious), "iou_mean": round(float(np.mean(ious)), 4),
            "edited": round(sum(edited) / max(len(edited), 1), 4), "items": n,
            **({"masks": "true"} if true_masks else {"masks": "words", "threshold": threshold, "refine": refine,
                                                     "reference": "the edit's prompt" if reference is None
                                                     else reference})}
