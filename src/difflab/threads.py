"""CPU threads decide pixels: on the CPU, kernels sum in an order that depends on the thread count, so the same
request run with 1 and with 2 threads differs by up to 1/255. difflab records the count with every result (a
sweep's sweep.yaml, each image's record) and runs again with the recorded count: a resumed sweep, every worker of
a multi-process sweep however it was launched, and `generate --from` give the very same pixels on the CPU.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


def default_count() -> int:
    """The count a run records when none is given: this process's own, unless a launcher chose it (torchrun and
    `accelerate launch --cpu` give each worker a share of the cores: one thread each on two cores); then the count
    that one process on this machine gets, PyTorch's default of one thread per physical core."""
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or "ACCELERATE_MIXED_PRECISION" in os.environ:
        import psutil  # a dependency of accelerate

        return psutil.cpu_count(logical=False) or torch.get_num_threads()
    return torch.get_num_threads()


def check(count) -> None:
    from .errors import InputError

    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise InputError(f"cpu_threads: {count!r} is not allowed; use an integer >= 1 (or leave it out)")


@contextmanager
def recorded(count: int | None, where: str, device: str):
    """Run the block on `count` CPU threads (when the work is on the CPU and a count was recorded), with a note
    on stderr when that overrides this process's count; the count is put back afterwards."""
    if count is None or not str(device).startswith("cpu"):
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before != count:
        print(f"difflab: note: running on {count} CPU threads, as recorded in {where} (this process had {before}); "
              f"on the CPU the thread count changes pixels", file=sys.stderr)
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_workers() -> bool:
    """True in a worker of a multi-process run on a machine without CUDA (started by torchrun or `--processes`):
    accelerate must be told it runs on the CPU, or each worker believes it is alone."""
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
