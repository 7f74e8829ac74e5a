"""Seeds and generators: randomness enters only through explicit CPU generators, one per image.

Image i of a request gets seed `seed + i` (the AUTOMATIC1111 convention) and its own `torch.Generator` on the
CPU, so its initial noise is the same whatever the batch size, the device or the process count.
"""

from __future__ import annotations

import random

from .errors import InputError

MAX_SEED = 2**32 - 1


def resolve_seed(seed: int | None) -> int:
    """A concrete seed: `None` or -1 draws a random one (to be recorded), anything else is checked."""
    if seed is None or seed == -1:
        return random.SystemRandom().randrange(MAX_SEED - 2**16)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed: {seed!r} is not allowed; use an integer in [0, {MAX_SEED}] or -1 for random")
    return seed


def generators(seeds: list[int]) -> list:
    """One CPU generator per image, seeded with that image's seed."""
    import torch

    return [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
