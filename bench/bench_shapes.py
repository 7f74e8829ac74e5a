"""The shapes model, trained and measured: both stages, the judge on the VAE's reconstructions, and the
prompt-following score of the result, with the wall time of each part, side by side in one run.

    python bench/bench_shapes.py                                    # the default recipe (configs/shapes/)
    python bench/bench_shapes.py --vae configs/shapes/quick_vae.yaml --unet configs/shapes/quick_unet.yaml
    python bench/bench_shapes.py --set-vae steps=1000 --set-unet steps=2000 --out results/bench-shapes
"""

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vae", default="configs/shapes/vae.yaml")
    ap.add_argument("--unet", default="configs/shapes/unet.yaml")
    ap.add_argument("--set-vae", action="append", default=[])
    ap.add_argument("--set-unet", action="append", default=[])
    ap.add_argument("--prompts-per-category", type=int, default=16)
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 4.0, 7.5])
    ap.add_argument("--out", default="results/bench-shapes")
    args = ap.parse_args()

    import torch

    import difflab
    from difflab.shapes import score
    from difflab.train.config import load_config
    from difflab.train.loop import train

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else f'CPU, {torch.get_num_threads()} threads'}"
          f"; torch {torch.__version__}", flush=True)
    rows = []
    start = time.perf_counter()
    vae_run = train(load_config(args.vae, args.set_vae), out=args.out, progress=False)
    rows.append(("VAE stage", time.perf_counter() - start, json.loads(
        (vae_run / "metrics.jsonl").read_text().splitlines()[-1])["loss"]))
    print(f"VAE stage: {rows[-1][1]:.0f} s, {vae_run}", flush=True)
    from diffusers import AutoencoderKL

    accuracy = score.vae_accuracy(AutoencoderKL.from_pretrained(vae_run / "model" / "vae").eval(), 500)
    print("judge on VAE reconstructions:", json.dumps({k: round(v, 3) for k, v in accuracy.items()}), flush=True)
    start = time.perf_counter()
    unet_run = train(load_config(args.unet, args.set_unet + [f"base={vae_run / 'model'}"]), out=args.out,
                     progress=False)
    rows.append(("text encoder + UNet stage", time.perf_counter() - start, json.loads(
        (unet_run / "metrics.jsonl").read_text().splitlines()[-1])["loss"]))
    print(f"UNet stage: {rows[-1][1]:.0f} s, {unet_run}", flush=True)
    model = difflab.load(str(unet_run / "model"), device=device, progress=False)
    for g in args.guidance:
        start = time.perf_counter()
        result = score.score(score.model_drawer(model, num_inference_steps=20, guidance_scale=g,
                                                scheduler="dpm++_2m_karras"),
                             score.suite(args.prompts_per_category), progress=False)
        print(f"\nguidance {g} ({time.perf_counter() - start:.0f} s to score {result['images']} images)")
        print(score.table(result), flush=True)
        (unet_run / f"score-cfg{g}.json").write_text(json.dumps(result, indent=1))
    print("\n| part | seconds | last loss |\n|---|---|---|")
    for name, seconds, loss in rows:
        print(f"| {name} | {seconds:.0f} | {loss:.4f} |")


if __name__ == "__main__":
    main()
