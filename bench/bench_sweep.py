"""A 3x3 guidance x seed sweep: difflab against a naive loop of direct diffusers calls, side by side.

Both load the model once (inside the timing) and make the same 9 images. The naive loop makes one pipeline
call per image; difflab batches the cells that differ only in seed, reuses prompt embeddings, and also writes
every PNG with metadata, the manifest, the grid and the HTML page. Runs alternate, the median is reported.

    python bench/bench_sweep.py [--model tiny] [--steps 20] [--size 64] [--repeats 3] [--device auto]
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from difflab import sweep  # noqa: E402
from difflab.pipelines import PIPELINE_CLASSES, resolve_device, resolve_source  # noqa: E402
from difflab.tiny import tiny_path  # noqa: E402

GUIDANCE, SEEDS, PROMPT = [3.0, 7.5, 12.0], [1, 2, 3], "a watercolor fox in a snowy forest"


def naive(model: str, steps: int, size: int, device: str) -> float:
    import diffusers
    start = time.perf_counter()
    source = resolve_source(model)
    path = tiny_path(model) if source.kind == "tiny" else (source.path or source.id)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = getattr(diffusers, PIPELINE_CLASSES["text2img"]).from_pretrained(
        path, dtype=dtype, safety_checker=None, requires_safety_checker=False).to(device)
    pipe.set_progress_bar_config(disable=True)
    for g in GUIDANCE:
        for seed in SEEDS:
            pipe(PROMPT, guidance_scale=g, num_inference_steps=steps, height=size, width=size,
                 generator=torch.Generator("cpu").manual_seed(seed))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def ours(model: str, steps: int, size: int, device: str, out: str) -> float:
    start = time.perf_counter()
    sweep.run_sweep({"name": "bench", "model": model, "device": device,
                     "params": {"prompt": PROMPT, "num_inference_steps": steps, "height": size, "width": size},
                     "x": {"param": "guidance_scale", "values": GUIDANCE},
                     "y": {"param": "seed", "values": SEEDS}}, out=out, progress=False)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    n = len(GUIDANCE) * len(SEEDS)
    with tempfile.TemporaryDirectory() as out:
        ours(args.model, 2, args.size, device, out)  # warm-up: builds the tiny model, first-call costs
        naive(args.model, 2, args.size, device)
        times = {"naive diffusers loop": [], "difflab sweep": []}
        for _ in range(args.repeats):
            times["naive diffusers loop"].append(naive(args.model, args.steps, args.size, device))
            times["difflab sweep"].append(ours(args.model, args.steps, args.size, device, out))
    base = statistics.median(times["naive diffusers loop"])
    print(f"3x3 guidance x seed sweep, model {args.model}, {args.size}px, {args.steps} steps, {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"| {'method':<22} | {'seconds':>8} | {'images/s':>8} | {'speed-up':>8} |")
    print(f"|{'-' * 24}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    for name, runs in times.items():
        t = statistics.median(runs)
        print(f"| {name:<22} | {t:8.2f} | {n / t:8.2f} | {base / t:7.2f}x |")


if __name__ == "__main__":
    main()
