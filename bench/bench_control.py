"""Control measured on the shapes world (issue 15), side by side in one run:
- ControlNet: train configs/finetune/shapes_controlnet.yaml (or take a finished run's controlnet/), then on 100
  validation items (never trained on) the median IoU between the objects the judge finds and the region their
  outlines enclose, and how often the caption's colours are obeyed, with the outline as control and without it;
  and over the training steps, on the run's own sample grid (held-out outlines, filled, against the judge's objects
  in each saved sample): the "sudden convergence" step;
- masks from words (DiffEdit): the median IoU of the mask from "colour shape" with the true object mask, and how
  often inpainting through it repaints the object in a new colour and leaves the others, per threshold, with the
  mask as DiffEdit finds it (refine none), snapped to the image's regions (segments, the default) or the regions
  the words single out most (strongest), the words read against the edit's prompt or against no text; with
  --true-masks, also through the true masks (what the model's inpainting can do with perfect masks); with
  --inpaint-model, the same edits by an inpainting model trained from `shapes` (configs/finetune/shapes_inpaint.yaml;
  `train` trains it first, about 35 CPU minutes), its masks from words read by `shapes`, side by side.

    python bench/bench_control.py                                   # trains first (about 10 CPU minutes)
    python bench/bench_control.py --controlnet results/<run>/controlnet --items 100
    python bench/bench_control.py --only words --true-masks --inpaint-model results/<run>/model --guidance 7.5
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/finetune/shapes_controlnet.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--controlnet", help="a trained controlnet/ folder (skip training)")
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--thresholds", type=float, nargs="*", default=[2.0, 3.0, 4.0])
    ap.add_argument("--refine", nargs="*", default=["none", "segments", "strongest"],
                    help="mask refinements to compare (strongest ignores the threshold: measured once)")
    ap.add_argument("--references", nargs="*", default=["prompt", "empty"], choices=("prompt", "empty"),
                    help="what the words are read against: the edit's prompt (difflab's default) or no text")
    ap.add_argument("--true-masks", action="store_true",
                    help="also repaint through the true masks: the edits' ceiling with perfect masks")
    ap.add_argument("--inpaint-model", help="an inpainting model folder (model/ of a method inpaint run) whose edits "
                                            "are measured beside the base model's; 'train' trains one first")
    ap.add_argument("--inpaint-config", default="configs/finetune/shapes_inpaint.yaml")
    ap.add_argument("--only", choices=("control", "words"), help="measure one of the two")
    ap.add_argument("--skip-shapes", action="store_true", help="with --inpaint-model: measure the masks from words "
                                                                "on the inpainting model only")
    ap.add_argument("--out", default="results")
    args = ap.parse_args()

    import difflab

    params = dict(num_inference_steps=args.steps, guidance_scale=args.guidance, scheduler="dpm++_2m_karras")
    results = {"params": params, "items": args.items}
    if args.only == "words":
        controlnet = None
    elif args.controlnet:
        controlnet = Path(args.controlnet)
    else:
        from difflab.train.config import load_config
        from difflab.train.loop import train
        start = time.perf_counter()
        run = train(load_config(args.config, args.overrides), out=args.out)
        results["train_seconds"] = round(time.perf_counter() - start, 1)
        controlnet = run / "controlnet"
    results["controlnet"] = str(controlnet)
    base = difflab.load("shapes", progress=False)
    if args.only != "words":
        measure_control(args, base, controlnet, params, results)
    if args.only != "control":
        models = {} if args.skip_shapes and args.inpaint_model else {"shapes": base}
        if args.inpaint_model:
            models["inpainting model"] = difflab.load(inpaint_model(args, results), task="inpaint", progress=False)
        for name, model in models.items():
            measure_words(args, name, model, params, results)
    print(json.dumps(results))


def measure_control(args, base, controlnet: Path, params: dict, results: dict) -> None:
    import difflab
    from difflab.shapes import score

    print(f"{'model':<34} {'IoU median':>10} {'IoU mean':>9} {'colours':>8}")
    rows = {"no control": score.control_fidelity(base, args.items, control=False, **params)}
    cn = difflab.load("shapes", controlnet=str(controlnet), progress=False)
    rows["controlnet (outline)"] = score.control_fidelity(cn, args.items, **params)
    for name, r in rows.items():
        print(f"{name:<34} {r['iou_median']:>10.3f} {r['iou_mean']:>9.3f} {r['colours']:>8.3f}")
    results["control"] = rows
    results["over_steps"] = score.control_over_steps(controlnet.parent)
    print(f"\n{'step':>6} {'sample IoU (mean of held-out samples)':>38}")
    for step, iou in results["over_steps"].items():
        print(f"{step:>6} {iou:>38.3f}")


def inpaint_model(args, results: dict) -> str:
    if args.inpaint_model != "train":
        return args.inpaint_model
    from difflab.train.config import load_config
    from difflab.train.loop import train
    start = time.perf_counter()
    run = train(load_config(args.inpaint_config, args.overrides), out=args.out)
    results["inpaint_train_seconds"] = round(time.perf_counter() - start, 1)
    return str(run / "model")


def measure_words(args, name: str, model, params: dict, results: dict) -> None:
    """Masks from words and the edits through them (and through the true masks) by `model`."""
    from difflab.shapes import score

    print(f"\n{f'{name}: masks from words':<52} {'IoU median':>10} {'IoU mean':>9} {'edited':>8}")
    rows = results.setdefault("words", {}).setdefault(name, {})
    for reference in args.references:
        for threshold in args.thresholds:
            for refine in args.refine:
                if refine == "strongest" and threshold != args.thresholds[0]:
                    continue
                label = f"{reference}, refine {refine}" + ("" if refine == "strongest" else f", threshold {threshold:g}")
                r = rows[label] = score.words_mask_fidelity(model, args.items, threshold=threshold, refine=refine,
                                                            reference=None if reference == "prompt" else "", **params)
                print(f"{label:<52} {r['iou_median']:>10.3f} {r['iou_mean']:>9.3f} {r['edited']:>8.3f}", flush=True)
    if args.true_masks:
        r = rows["true masks"] = score.words_mask_fidelity(model, args.items, true_masks=True, **params)
        print(f"{'true masks (the ceiling)':<52} {r['iou_median']:>10.3f} {r['iou_mean']:>9.3f} {r['edited']:>8.3f}")


if __name__ == "__main__":
    main()
