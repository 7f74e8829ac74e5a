"""Which precision trains fastest here. bf16 speed depends on the CPU and on the network: on this project's
2-core AMD EPYC (avx512_bf16) bf16 autocast made a 7 M-parameter UNet2DConditionModel step on 16x16 latents 1.2x
faster but the same net on 8x8 latents, or a 1 M one, 0.7x as fast (casts cost more than small matmuls gain);
on another machine the DDPM nets ran 10-17x slower (`aten::_slow_conv2d`). So `auto` never assumes: it times a
training step of the very model about to be trained, in float32 and under bf16 autocast, once per CPU model,
torch version, thread count and model signature, and remembers the answer in the cache.
"""

from __future__ import annotations

import json
import platform
import time
from typing import Callable

from .runs import cache_root, write_json

SPEEDUP_NEEDED = 1.15   # bf16 must beat float32 by this much to be chosen (it costs a little accuracy)


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _speedup(step: Callable[[bool], None], repeats: int = 3) -> float:
    """float32 time / bf16 time of `step`: the best of `repeats` runs each after a warm-up, the two precisions
    interleaved so that a machine that slows down or speeds up meanwhile favours neither. A first round that is
    already decisive (one precision more than twice as fast) ends it: where bf16 is emulated it can be 10x slower,
    and more of its steps would only confirm that."""
    step(False), step(True)                     # warm-up (allocations, kernel selection)
    best = {False: float("inf"), True: float("inf")}
    for _ in range(repeats):
        for bf16 in (False, True):
            start = time.perf_counter()
            step(bf16)
            best[bf16] = min(best[bf16], time.perf_counter() - start)
        if not 0.5 <= best[False] / best[True] <= 2.0:
            break
    return best[False] / best[True]


def cpu_bf16_speedup(signature: str, step: Callable[[bool], None]) -> float:
    """float32 time / bf16-autocast time of `step(bf16)` (a training step or a denoising step of the model that
    `signature` names) on this CPU; measured once, then read from the cache."""
    import sys

    import torch

    key = f"{_cpu_name()}|torch {torch.__version__}|{torch.get_num_threads()} threads|{signature}"
    store = cache_root() / "precision.json"
    known = json.loads(store.read_text()) if store.exists() else {}
    if key not in known:
        print(f"difflab: timing float32 against bf16 on this CPU for {signature} (once; remembered in {store})",
              file=sys.stderr, flush=True)
        known[key] = round(_speedup(step), 3)
        write_json(store, known)
    return known[key]


def cpu_inference_dtype(unet, context_length: int) -> str:
    """`dtype: auto` on the CPU: bfloat16 where this UNet's denoising step (batch 2, as under classifier-free
    guidance, at its default size) runs at least SPEEDUP_NEEDED faster under bf16, else float32; the environment
    variable DIFFLAB_CPU_DTYPE pins the answer instead."""
    import os

    import torch

    pinned = os.environ.get("DIFFLAB_CPU_DTYPE")   # e.g. the tests: the same dtype on every machine
    if pinned:
        if pinned not in ("float32", "bfloat16"):
            from .errors import InputError
            raise InputError(f"DIFFLAB_CPU_DTYPE: {pinned!r} is not allowed; use float32 or bfloat16")
        return pinned
    c, size = unet.config.in_channels, unet.config.sample_size
    x, t = torch.randn(2, c, size, size), torch.tensor([500, 500])
    context = torch.randn(2, context_length, unet.config.cross_attention_dim)

    def step(bf16: bool) -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            unet(x, t, context)

    params = sum(p.numel() for p in unet.parameters())
    signature = f"denoising with {type(unet).__name__}, {params} parameters, {size}x{size}x{c} latents"
    return "bfloat16" if cpu_bf16_speedup(signature, step) >= SPEEDUP_NEEDED else "float32"


def training_precision(requested: str, device_type: str, signature: str, step: Callable[[bool], None]) -> str:
    """The precision to train in: as requested, or for `auto` bf16 on GPUs that support it (else fp16) and on
    CPUs where the probe shows it at least SPEEDUP_NEEDED faster (else fp32)."""
    if requested != "auto":
        return requested
    if device_type == "cuda":
        import torch
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device_type == "cpu":
        return "bf16" if cpu_bf16_speedup(signature, step) >= SPEEDUP_NEEDED else "fp32"
    return "fp32"
