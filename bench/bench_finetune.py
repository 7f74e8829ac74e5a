"""Fine-tuning measured on the shapes world: teach the `shapes` model a heart (DreamBooth-LoRA with and without
prior preservation, DreamBooth on the full weights with it) and a star (textual inversion), and measure, side by
side in one run:
- how often "a {colour} sks shape" is judged a heart (and the colour obeyed), before and after, 20 seeds x 4 colours;
- language drift: `difflab score` of the base categories for the base model and each fine-tuned one;
- the training wall time of each.

    python bench/bench_finetune.py                          # the shipped config, 8 hearts, 8 stars
    python bench/bench_finetune.py --set steps=150 --prompts-per-category 4
"""

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

COLOURS = ("red", "blue", "green", "yellow")
FULL = ["lr=2e-4", "steps=1500"]   # DreamBooth on the UNet's and text encoder's own weights: a lower rate, more steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/finetune/heart_dreambooth_lora.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--base", default="shapes")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--prompts-per-category", type=int, default=8)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--ti-steps", type=int, default=300)
    ap.add_argument("--out", default="results/bench-finetune")
    args = ap.parse_args()

    import torch

    import difflab
    from difflab.shapes import score, world
    from difflab.train.config import load_config
    from difflab.train.loop import train

    print(f"CPU, {torch.get_num_threads()} threads; torch {torch.__version__}", flush=True)
    gen = dict(num_inference_steps=20, guidance_scale=args.guidance, scheduler="dpm++_2m_karras")
    hearts = world.write_folder(f"{args.out}/hearts", "a heart", args.images, call="sks shape")[0].parent
    stars = world.write_folder(f"{args.out}/stars", "a star", args.images)[0].parent
    seeds = range(args.seeds)
    items = score.suite(args.prompts_per_category)

    def measure(name, model, template, shape, seconds):
        taught = score.concept(score.model_drawer(model, **gen), template, shape, COLOURS, seeds)
        drift = score.score(score.model_drawer(model, **gen), items, progress=False)
        row = {"model": name, "template": template, **{f"{shape}_{k}": v for k, v in taught.items() if k != "images"},
               "overall": drift["overall"], "categories": drift["categories"], "train_s": seconds}
        print(json.dumps(row), flush=True)
        return row

    base = difflab.load(args.base, progress=False)
    rows = [measure("base", base, "a {colour} sks shape", "heart", 0),
            measure("base", base, "a {colour} star", "star", 0)]
    for label, extra in (("dreambooth-lora + prior", []), ("dreambooth-lora, no prior", ["dreambooth.class_images=0"]),
                         ("dreambooth, full weights + prior", ["dreambooth.weights=full", *FULL])):
        start = time.perf_counter()
        run = train(load_config(args.config, [f"base={args.base}", f"data.folder={hearts}", *extra, *args.overrides]),
                    out=args.out, progress=True)
        seconds = round(time.perf_counter() - start, 1)
        model = (difflab.load(args.base, lora=str(run / "lora"), progress=False) if (run / "lora").is_dir()
                 else difflab.load(str(run / "model"), progress=False))
        rows.append(measure(label, model, "a {colour} sks shape", "heart", seconds))
    start = time.perf_counter()
    run = train(load_config(args.config, [f"base={args.base}", "method=textual_inversion", f"data.folder={stars}",
                                          "data.instance_prompt=a <star> shape", "textual_inversion.token=<star>",
                                          "textual_inversion.initializer=shape", "lr=5e-3", f"steps={args.ti_steps}",
                                          "sample.prompts=[a <star> shape, a red <star> shape, a shape]"]),
                out=args.out, progress=True)
    seconds = round(time.perf_counter() - start, 1)
    model = difflab.load(args.base, textual_inversion=str(run / "embedding"), progress=False)
    rows.append(measure("textual inversion <star>", model, "a {colour} <star> shape", "star", seconds))

    print("\n| model | prompt | taught shape judged | colour obeyed | both | score overall (base categories) | "
          "training s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        shape = "heart" if "heart_shape" in r else "star"
        print(f"| {r['model']} | {r['template']} | {r[f'{shape}_shape']:.3f} | {r[f'{shape}_colour']:.3f} | "
              f"{r[f'{shape}_both']:.3f} | {r['overall']:.3f} | {r['train_s']} |")
    with open(f"{args.out}/results.json", "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
