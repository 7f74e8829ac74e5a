"""Control: ControlNets (where they come from, whether they fit a model), their preprocessors, and masks from words.

ControlNet (Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion Models") adds a trainable
copy of the UNet's encoder that reads a control image (edges, a pose, an outline) and adds its features to the
frozen UNet's skip connections through zero-initialised convolutions. pipelines.py loads them as diffusers'
`ControlNetModel` (checking that they fit the model) and runs diffusers' ControlNet pipelines (made with
`from_pipe`); this module holds what turns an image into a control image.

Masks from words are DiffEdit's (Couairon et al. 2022, "DiffEdit: Diffusion-based semantic image editing with
mask guidance"): noise the image half-way, predict the noise with the words and with a neutral prompt, and keep
where the two predictions differ most: the region those words are about. It needs no other weights. That mask is
as coarse as the latents (8x8 pixels in Stable Diffusion, 4x4 in `shapes`) and patchy; `refine_mask` snaps it to
the image's own regions (Felzenszwalb-Huttenlocher segments), which more than doubles its overlap with the object
on the shapes world (bench/RESULTS.md).

Preprocessing is torch-free (the CLI checks before importing torch).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import InputError

PREPROCESSORS = ("none", "canny")
CANNY_THRESHOLDS = (100, 200)  # lllyasviel's ControlNet canny annotator (cv2.Canny's low, high on 0..255 pixels)
SCALE_RANGE = (0.0, 2.0)       # AUTOMATIC1111's ControlNet weight slider
MASK_REFINEMENTS = ("segments", "none")


# --- preprocessors (ControlNet's "annotators")

def canny_edges(rgb: np.ndarray, low: float = CANNY_THRESHOLDS[0], high: float = CANNY_THRESHOLDS[1]) -> np.ndarray:
    """Canny edges (H, W) bool of an (H, W, 3) uint8 image, with cv2.Canny's thresholds (0..255 Sobel magnitudes).

    scikit-image, not OpenCV: 37 MB installed against 153 MB, 16-56 ms for 512-768 px (bench/bench_canny.py). cv2
    measures the gradient as |gx| + |gy| and scikit-image as its length, up to sqrt(2) smaller: the thresholds are
    divided by sqrt(2), and a light blur (sigma 0.5) stands in for cv2's lack of one; then ~94% of cv2's edge
    pixels are found within a pixel, and ~97% of these edges are cv2's (measured on the shipped photos)."""
    from skimage.feature import canny

    gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)   # cv2's RGB2GRAY weights
    return canny(gray, sigma=0.5, low_threshold=low / np.sqrt(2), high_threshold=high / np.sqrt(2))


def preprocess(image: Image.Image, name: str) -> Image.Image:
    """The control image a ControlNet sees: `none` as given (RGB), `canny` white edges on black."""
    check_preprocessor(name)
    rgb = image.convert("RGB")
    if name == "none":
        return rgb
    edges = canny_edges(np.asarray(rgb))
    return Image.fromarray(np.repeat(edges[..., None].astype(np.uint8) * 255, 3, axis=2))


def check_preprocessor(name) -> None:
    if name not in PREPROCESSORS:
        raise InputError(f"control_preprocess: {name!r} is not allowed; choose one of {', '.join(PREPROCESSORS)}")


# --- masks from words (DiffEdit)

def mask_from_words(pipe, image: Image.Image, words: str, threshold: float = 3.0, refine: str = "segments",
                    seed: int = 0, num_maps: int = 10, encode_strength: float = 0.5,
                    guidance_scale: float = 7.5) -> Image.Image:
    """A binary 'L' mask (image size) of where `pipe`'s model places `words` in `image` (DiffEdit, section 3.2).

    diffusers' `generate_mask`: `num_maps` noisings at `encode_strength`, the noise predicted for `words` against
    an empty prompt, averaged over maps and channels; a latent is in the mask where that difference exceeds
    threshold/2 times its mean (diffusers' `mask_thresholding_ratio`; DiffEdit thresholds at 0.5 after clamping
    at that ratio). The latent mask is scaled to the image with nearest neighbours, then, with `refine="segments"`,
    snapped to the image's regions (`refine_mask`).
    """
    import diffusers
    import torch

    check_refinement(refine)
    if pipe.unet.config.in_channels != 4:
        raise InputError(f"mask_from: DiffEdit needs a text-to-image UNet (4 input channels); this model's has "
                         f"{pipe.unet.config.in_channels} (an inpainting model): draw the mask, or use its base model")
    editor = diffusers.StableDiffusionDiffEditPipeline.from_pipe(pipe, inverse_scheduler=None)
    editor.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    editor.set_progress_bar_config(disable=True)
    latent = editor.generate_mask(image=image.convert("RGB"), source_prompt=words, target_prompt="",
                                  mask_thresholding_ratio=threshold, num_maps_per_mask=num_maps,
                                  mask_encode_strength=encode_strength, guidance_scale=guidance_scale,
                                  generator=torch.Generator("cpu").manual_seed(seed))   # (1, h, w) of 0/1
    mask = Image.fromarray((latent[0] * 255).astype(np.uint8)).resize(image.size, Image.NEAREST)
    if refine == "segments":
        mask = refine_mask(image, mask)
    if not mask.getbbox():
        raise InputError(f"mask_from: no region found for {words!r}; lower --mask-threshold (now {threshold:g})")
    return mask


def refine_mask(image: Image.Image, mask: Image.Image) -> Image.Image:
    """`mask` snapped to `image`'s regions: the Felzenszwalb-Huttenlocher segments (scikit-image; areas of like
    colour) that the mask covers for at least half of their pixels. A coarse, blocky mask from the latents takes
    the edges of the objects it lies on; scattered patches over a large region drop out. Where that leaves nothing
    (patches that mostly cover no region), the mask stays as found. Light smoothing (sigma 0.3) keeps small
    objects' antialiased rims with them."""
    from skimage.segmentation import felzenszwalb

    segments = felzenszwalb(np.asarray(image.convert("RGB")), scale=100, sigma=0.3,
                            min_size=max(4, image.width * image.height // 4096))
    covered = np.bincount(segments.ravel(), weights=(np.asarray(mask) > 0).ravel()) / np.bincount(segments.ravel())
    snapped = (covered >= 0.5)[segments]
    return Image.fromarray((snapped * 255).astype(np.uint8)) if snapped.any() else mask


def check_refinement(name) -> None:
    if name not in MASK_REFINEMENTS:
        raise InputError(f"mask_refine: {name!r} is not allowed; choose one of {', '.join(MASK_REFINEMENTS)}")


# --- masks from a detector: the user's optional choice (not installed by difflab)

def check_detector(spec: str) -> tuple[str, str]:
    """(weights, class) of 'WEIGHTS:CLASS', once the package and the file are known to be there (before any model
    loads)."""
    import importlib.util
    from pathlib import Path

    weights, _, wanted = str(spec).rpartition(":")
    if not weights or not wanted:
        raise InputError(f"mask_from_detector: {spec!r} is not allowed; use WEIGHTS:CLASS, e.g. yolov8n-seg.pt:person")
    if importlib.util.find_spec("ultralytics") is None:
        raise InputError("mask_from_detector: needs the ultralytics package, which difflab does not install (pip "
                         "install ultralytics), and a YOLO segmentation weights file such as yolov8n-seg.pt "
                         "(https://docs.ultralytics.com/tasks/segment/) passed as PATH:CLASS; or use --mask-from "
                         "WORDS, which needs neither")
    if not Path(weights).is_file():
        raise InputError(f"mask_from_detector: weights {weights!r} do not exist; download a YOLO segmentation model "
                         f"(e.g. yolov8n-seg.pt) and give its path")
    return weights, wanted


def mask_from_detector(image: Image.Image, spec: str) -> Image.Image:
    """The union of the segmentation masks of class CLASS that a YOLO segmentation model finds in `image`, for
    `spec` = 'WEIGHTS.pt:CLASS'. Needs the ultralytics package, which difflab does not install (it pulls torchvision
    and loads pickled weights; the user chooses it), and a weights file the user has downloaded."""
    from ultralytics import YOLO

    weights, wanted = check_detector(spec)
    result = YOLO(weights)(image.convert("RGB"), verbose=False)[0]
    classes = [i for i, name in result.names.items() if name == wanted]
    if not classes:
        raise InputError(f"mask_from_detector: {wanted!r} is not a class of {weights!r}; it knows "
                         f"{', '.join(sorted(result.names.values())[:20])}, ...")
    masks = [] if result.masks is None else result.masks.data.cpu().numpy()
    found = [m for m, c in zip(masks, result.boxes.cls.tolist()) if int(c) in classes]
    if not found:
        raise InputError(f"mask_from_detector: no {wanted!r} found in the image")
    union = (np.max(np.stack(found), axis=0) > 0.5).astype(np.uint8) * 255
    return Image.fromarray(union).resize(image.size, Image.NEAREST)
