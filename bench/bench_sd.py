"""Stable Diffusion 1.5-architecture speed: difflab's fast paths against plain diffusers, side by side in one run.

The pipeline has SD 1.5's exact architecture (860 M-parameter UNet, CLIP ViT-L/14 text encoder, the SD VAE) with
random weights built from configs: the same FLOPs as the real model, nothing to download. For each size, batch
and fast-path combination it reports UNet steps/s (steady state: timed between step callbacks, classifier-free
guidance on, so each step runs the UNet on 2 x batch), images/s (whole calls, VAE decode included), the ratio to
plain diffusers with its documented defaults (float16 and SDPA on CUDA; float32 on the CPU), peak memory, and
model FLOP utilisation: UNet FLOPs per step (counted by torch.utils.flop_counter) x steps/s over the measured
matrix-multiply peak of the same device. compile runs are warmed up first; the warm-up is not timed.

    python bench/bench_sd.py                         # CUDA: 512 and 256 px, batch 1, 4, 16, every combination
    python bench/bench_sd.py --quick                 # CPU smoke run: 256 px, batch 1, 3 steps, no compile
    python bench/bench_sd.py --offload               # also: model CPU offload peak memory at 512 px (CUDA)
"""

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from difflab.pipelines import apply_fast_paths  # noqa: E402
from difflab.tiny import write_byte_tokenizer  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse"


def build_sd15(device: str, dtype, folder):
    """SD 1.5's architecture with random weights (seeded): configs as in runwayml/stable-diffusion-v1-5."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
                        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                        num_hidden_layers=12, vocab_size=49408, max_position_embeddings=77,
                                        hidden_act="quick_gelu", projection_dim=768))
    write_byte_tokenizer(Path(folder))  # the byte-level tokenizer of difflab's tiny models (ids < 49408)
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=77)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def matmul_peak(device: str, dtype) -> float:
    """Measured dense matrix-multiply throughput of this device, FLOP/s."""
    n = 8192 if device == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps = 20 if device == "cuda" else 5
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def unet_flops(pipe, size: int, batch: int, device: str, dtype) -> int:
    """FLOPs of one guided step: the UNet on 2 x batch latents (conditional and unconditional)."""
    from torch.utils.flop_counter import FlopCounterMode

    latents = torch.randn(2 * batch, 4, size // 8, size // 8, device=device, dtype=dtype)
    context = torch.randn(2 * batch, 77, 768, device=device, dtype=dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        pipe.unet(latents, torch.tensor(500, device=device), context)
    return counter.get_total_flops()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run(pipe, size: int, batch: int, steps: int, device: str) -> tuple[float, float]:
    """(UNet steps/s in the steady state, images/s of the whole call)."""
    stamps = []

    def stamp(p, i, t, kwargs):
        sync(device)
        stamps.append(time.perf_counter())
        return kwargs

    generators = [torch.Generator("cpu").manual_seed(i) for i in range(batch)]
    sync(device)
    start = time.perf_counter()
    pipe(PROMPT, height=size, width=size, num_inference_steps=steps, num_images_per_prompt=batch,
         generator=generators, callback_on_step_end=stamp, output_type="pil")
    sync(device)
    total = time.perf_counter() - start
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else steps / total
    return steady, batch / total


def peak_memory(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 256])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="CPU smoke run: 256 px, batch 1, 3 steps, no compile")
    ap.add_argument("--offload", action="store_true", help="also measure model CPU offload at 512 px (CUDA)")
    args = ap.parse_args()
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.quick:
        args.sizes, args.batches, args.steps = [256], [1], 3
    dtype = torch.float16 if device == "cuda" else torch.float32
    combos = {"diffusers defaults": {}, "channels_last": {"channels_last": True}, "fuse_qkv": {"fuse_qkv": True},
              "channels_last+fuse_qkv": {"channels_last": True, "fuse_qkv": True}}
    if device == "cuda" and not args.quick:
        combos["compile"] = {"compile": True}
        combos["compile+channels_last+fuse_qkv"] = {"compile": True, "channels_last": True, "fuse_qkv": True}
    import tempfile

    peak = matmul_peak(device, dtype)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; dtype {str(dtype).replace('torch.', '')}; matmul peak {peak / 1e12:.1f} TFLOP/s; "
          f"torch {torch.__version__}")
    print(f"{'config':<32}{'size':>6}{'batch':>6}{'it/s':>9}{'img/s':>9}{'x defaults':>12}{'MFU':>7}  peak memory")
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            for batch in args.batches:
                base = None
                for label, options in combos.items():
                    pipe = build_sd15(device, dtype, folder)
                    apply_fast_paths(pipe, **options)
                    if device == "cuda":
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats()
                    run(pipe, size, batch, 2 if options.get("compile") else 1, device)  # warm-up, not timed
                    if base is None:  # the same network in every combination: count its FLOPs once
                        flops = unet_flops(pipe, size, batch, device, dtype)
                    it_s, img_s = run(pipe, size, batch, args.steps, device)
                    base = base or it_s
                    print(f"{label:<32}{size:>6}{batch:>6}{it_s:>9.2f}{img_s:>9.3f}{it_s / base:>11.2f}x"
                          f"{flops * it_s / peak:>7.1%}  {peak_memory(device)}", flush=True)
                    del pipe
        if args.offload and device == "cuda":
            pipe = build_sd15("cpu", dtype, folder)
            pipe.enable_model_cpu_offload()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            run(pipe, 512, 1, args.steps, device)
            print(f"model CPU offload, 512 px, batch 1: peak GPU memory {peak_memory(device)} (target < 4 GB)")


if __name__ == "__main__":
    main()
