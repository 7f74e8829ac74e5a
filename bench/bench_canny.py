"""Canny edges for ControlNet without downloaded weights: OpenCV (headless) against scikit-image.

Both are timed side by side in one run on the same photos (scikit-learn's, resized), and compared: recall (the
share of OpenCV's edge pixels that difflab's scikit-image canny marks within one pixel) and precision (the share of
difflab's edge pixels within one pixel of OpenCV's). OpenCV is needed only to run this benchmark. Install sizes are
measured separately (`pip install --target DIR --no-deps PKG` + its dependencies not already installed; see
RESULTS.md).

    python bench/bench_canny.py [--sizes 512 768] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage


def best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import cv2
    from difflab import control
    from difflab.samples import sample_photo

    print(f"{'photo':>8} {'size':>5} {'opencv ms':>10} {'skimage ms':>11} {'skimage/opencv':>15} {'recall':>7} "
          f"{'precision':>9}")
    for name in ("china", "flower"):
        for size in args.sizes:
            rgb = np.asarray(sample_photo(name, size).convert("RGB"))
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            t_cv = best_of(lambda: cv2.Canny(gray, 100, 200), args.repeats)
            t_sk = best_of(lambda: control.canny_edges(rgb, 100, 200), args.repeats)
            ref = cv2.Canny(gray, 100, 200) > 0
            ours = control.canny_edges(rgb, 100, 200)
            recall = (ref & ndimage.binary_dilation(ours)).sum() / max(ref.sum(), 1)
            precision = (ours & ndimage.binary_dilation(ref)).sum() / max(ours.sum(), 1)
            print(f"{name:>8} {size:>5} {t_cv * 1e3:>10.2f} {t_sk * 1e3:>11.2f} {t_sk / t_cv:>15.1f} {recall:>7.3f} "
                  f"{precision:>9.3f}")


if __name__ == "__main__":
    main()
