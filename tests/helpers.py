"""Small helpers the tests share (fixtures live in conftest.py)."""

import numpy as np


def pixels(image):
    """An image's pixels as int16, so that differences of uint8 values do not wrap around."""
    return np.asarray(image).astype(np.int16)
