"""The largest batch that fits: probed once per model, task, size, device and dtype, and remembered.

A sweep with `max_batch: auto` asks for it before its plan is fixed. On CUDA the probe runs one-step generations
at growing batch sizes until the device runs out of memory (then halves back to the last size that fitted); the
answer is kept in <difflab cache>/batch_sizes.json, so a model is probed once per size. On the CPU memory is not
what limits a batch (the 24 GiB machines here fit far more than helps), so no probe runs and the answer is CPU_BATCH.
"""

from __future__ import annotations

import json

from . import runs, samples

CAP = 64          # never probe beyond this many images per call
CPU_BATCH = 8     # batching gains little on CPUs (bench/RESULTS.md); larger batches only delay the first images


def largest_fitting(fits, cap: int = CAP) -> int:
    """The largest n <= cap with fits(n), for a `fits` that is true up to some size and false beyond:
    doubling, then bisection between the last size that fitted and the first that did not."""
    if not fits(1):
        return 1  # even one image does not fit: let the sweep record the failure where it happens
    good, bad = 1, None
    while bad is None and good < cap:
        trial = min(cap, good * 2)
        good, bad = (trial, None) if fits(trial) else (good, trial)
    while bad is not None and bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


def _key(resolved: dict, device: str) -> str:
    p = resolved["params"]
    size = f"{p.get('width') or 'default'}x{p.get('height') or 'default'}"
    return f"{resolved['model']}|{resolved['task']}|{size}|{device}|{resolved['dtype']}"


def probed_batch(resolved: dict, fits=None) -> int:
    """The remembered batch for this sweep's model and size, probing it the first time (CUDA only)."""
    from .pipelines import resolve_device

    device = resolve_device(resolved["device"])
    if not device.startswith("cuda") and fits is None:
        return CPU_BATCH
    store = runs.cache_root() / "batch_sizes.json"
    known = json.loads(store.read_text()) if store.exists() else {}
    key = _key(resolved, device)
    if key not in known:
        known[key] = largest_fitting(fits or _cuda_fits(resolved, device))
        runs.write_json(store, known)
    return known[key]


def _cuda_fits(resolved: dict, device: str):
    import torch

    from .generate import generate
    from .params import GenerationParams
    from .pipelines import load

    model = load(resolved["model"], resolved["task"], device=device, dtype=resolved["dtype"], progress=False)
    params = GenerationParams.from_dict({**resolved["params"], "task": resolved["task"], "num_inference_steps": 1})

    def fits(n: int) -> bool:
        try:
            generate(model, params, image=samples.input_path(resolved.get("image")),
                     mask_image=samples.input_path(resolved.get("mask_image")), seeds=list(range(n)))
            return True
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            torch.cuda.empty_cache()

    return fits
