"""Which precision trains (and runs) fastest here. bf16 speed depends on the CPU: on one machine of this project
bf16 autocast made a UNet2DConditionModel training step 1.77x faster, on another the DDPM nets ran 10-17x slower
(`aten::_slow_conv2d`). So `auto` never assumes: a short probe times the same small conv-and-attention step in
float32 and under bf16 autocast, once per CPU model, torch version and thread count, remembered in the cache.
"""

from __future__ import annotations

import json
import platform
import time

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


def _probe_seconds(dtype) -> float:
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(64, 128, 3, padding=1), nn.SiLU(), nn.Conv2d(128, 64, 3, padding=1))
    attn = nn.MultiheadAttention(64, 4, batch_first=True)
    x = torch.randn(16, 64, 16, 16)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            h = net(x)
            seq = h.flatten(2).transpose(1, 2)
            out = attn(seq, seq, seq, need_weights=False)[0]
        out.float().square().mean().backward()

    step()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def cpu_bf16_speedup() -> float:
    """float32 time / bf16-autocast time of the probe step on this CPU (cached)."""
    import torch

    key = f"{_cpu_name()}|torch {torch.__version__}|{torch.get_num_threads()} threads"
    store = cache_root() / "precision.json"
    known = json.loads(store.read_text()) if store.exists() else {}
    if key not in known:
        known[key] = round(_probe_seconds("fp32") / _probe_seconds("bf16"), 3)
        write_json(store, known)
    return known[key]


def training_precision(requested: str, device_type: str) -> str:
    """The precision to train in: as requested, or for `auto` bf16 on GPUs that support it (else fp16) and on
    CPUs where the probe shows it faster (else fp32)."""
    if requested != "auto":
        return requested
    if device_type == "cuda":
        import torch
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device_type == "cpu":
        return "bf16" if cpu_bf16_speedup() >= SPEEDUP_NEEDED else "fp32"
    return "fp32"
