"""Control: ControlNets (where they come from, whether they fit a model), their preprocessors, and masks from words.

ControlNet (Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion Models") adds a trainable
copy of the UNet's encoder that reads a control image (edges, a pose, an outline) and adds its features to the
frozen UNet's skip connections through zero-initialised convolutions. pipelines.py loads them as diffusers'
`ControlNetModel` (checking that they fit the model) and runs diffusers' ControlNet pipelines (made with
`from_pipe`); this module holds what turns an image into a control image.

Masks from words are DiffEdit's (Couairon et al. 2022, "DiffEdit: Diffusion-based semantic image editing with
mask guidance"): noise the image half-way, predict the noise with the words and with a reference text (the edit's
prompt, or none), and keep where the two predictions differ most: the region those words are about, that the edit
must change. It needs no other weights. That map is as coarse as the latents (8x8 pixels in Stable Diffusion, 4x4
in `shapes`) and patchy; `refine_mask` snaps its thresholded mask to the image's own regions
(Felzenszwalb-Huttenlocher segments). DiffEdit's difference is unsigned: it is as large where the reference fits
better as where the words do. `evidence_map` keeps the sign (which text's prediction denoises the image better,
place by place: a diffusion classifier's evidence), and `strongest_regions` takes, whole, the regions where the
words' evidence is strongest (bench/RESULTS.md measures both ways on the shapes world).

Preprocessing is torch-free (the CLI checks before importing torch).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import InputError

PREPROCESSORS = ("none", "canny")
CANNY_THRESHOLDS = (100, 200)  # lllyasviel's ControlNet canny annotator (cv2.Canny's low, high on 0..255 pixels)
SCALE_RANGE = (0.0, 2.0)       # AUTOMATIC1111's ControlNet weight slider
MASK_REFINEMENTS = ("segments", "strongest", "none")
STRONGEST = 0.8            # strongest_regions: a region joins at this share of the strongest one's evidence
EVIDENCE_STRENGTHS = (0.3, 0.5, 0.7)   # evidence_map's noise levels: the object's shape (low) to its place (high)
EVIDENCE_MAPS = 4          # evidence_map's noise draws per level


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

def difference_map(pipe, image: Image.Image, words: str, reference: str = "", seed: int = 0, num_maps: int = 10,
                   encode_strength: float = 0.5) -> np.ndarray:
    """DiffEdit's mask estimate (section 3.2), an (h, w) float array at the latents' size: the image's latents
    noised `num_maps` times to `encode_strength` of a 50-step DDIM schedule, the noise predicted for `words` and for
    the `reference` text, their absolute difference averaged over maps and channels. Large where the two texts
    disagree about the image: the region the words are about, and, with the edit's own prompt as the reference,
    the region the edit must change. (diffusers' `generate_mask`, in its deprecated DiffEdit pipeline, computes the
    same, with the same draws from the generator, but returns only its thresholded mask; classifier-free guidance
    would only scale the difference.)"""
    import torch

    g = torch.Generator("cpu").manual_seed(seed)
    noisy, _, t = _noised(pipe, image, g, num_maps, encode_strength)
    eps = _predicted_noise(pipe, noisy, t, [words, reference])
    return (eps[0] - eps[1]).abs().mean(dim=(0, 1)).cpu().numpy()


def evidence_map(pipe, image: Image.Image, words: str, references: list[str], seed: int = 0,
                 num_maps: int = EVIDENCE_MAPS) -> np.ndarray:
    """Where `words` explain the image better than each reference text, an (h, w) float array at the latents'
    size: the image's latents noised `num_maps` times at each of EVIDENCE_STRENGTHS, and per latent the squared
    error of the noise predicted for a reference minus that for the words, averaged over draws and channels,
    summed over noise levels and references. It is the diffusion classifier's evidence (Li et al. 2023, "Your
    Diffusion Model is Secretly a Zero-Shot Classifier": the text whose prediction denoises best is the likelier)
    kept per place: positive where the words fit better, negative where a reference does, which DiffEdit's unsigned
    difference cannot tell apart (an edit from "green circle" to "a blue circle" disagrees about every object)."""
    import torch

    g = torch.Generator("cpu").manual_seed(seed)
    references = list(dict.fromkeys(references))
    total = 0
    for strength in EVIDENCE_STRENGTHS:
        noisy, noise, t = _noised(pipe, image, g, num_maps, strength)
        error = ((_predicted_noise(pipe, noisy, t, [words, *references]) - noise) ** 2).mean(dim=(1, 2))
        total = total + (error[1:] - error[0]).sum(dim=0)
    return total.cpu().numpy()


def _noised(pipe, image: Image.Image, g, num_maps: int, strength: float):
    """(noisy latents, their noise, the timestep): the image's latents, drawn `num_maps` times from the VAE's
    posterior, noised to `strength` of a 50-step DDIM schedule (DiffEdit's encoding)."""
    import diffusers
    import torch

    device, dtype = pipe.unet.device, pipe.unet.dtype
    pixels = pipe.image_processor.preprocess(image.convert("RGB")).to(device, pipe.vae.dtype).repeat(num_maps, 1, 1, 1)
    with torch.no_grad():
        latents = pipe.vae.encode(pixels).latent_dist.sample(g).to(dtype) * pipe.vae.config.scaling_factor
    scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(50)
    t = scheduler.timesteps[50 - min(int(50 * strength), 50)]
    noise = torch.randn(latents.shape, generator=g).to(device, dtype)
    return scheduler.add_noise(latents, noise, t), noise.float(), t


def _predicted_noise(pipe, noisy, t, texts: list[str]):
    """The UNet's noise prediction for each text on the same noisy latents: (len(texts), maps, C, h, w), float32."""
    import torch

    n = len(noisy)
    embeddings = pipe.encode_prompt(texts, noisy.device, n, do_classifier_free_guidance=False)[0]
    with torch.no_grad():
        eps = pipe.unet(noisy.repeat(len(texts), 1, 1, 1), t, encoder_hidden_states=embeddings).sample.float()
    return eps.view(len(texts), n, *eps.shape[1:])


def mask_from_words(pipe, image: Image.Image, words: str, threshold: float = 3.0, refine: str = "segments",
                    reference: str = "", seed: int = 0, num_maps: int = 10,
                    encode_strength: float = 0.5) -> Image.Image:
    """A binary 'L' mask (image size) of where `pipe`'s model places `words` in `image`, against `reference` (an
    inpainting edit passes its prompt, as DiffEdit contrasts the query with the edit's text).

    `refine`: "none" keeps the latents where DiffEdit's `difference_map` exceeds threshold/2 times its mean
    (DiffEdit's thresholding, as diffusers' `mask_thresholding_ratio`), scaled to the image with nearest
    neighbours; "segments" snaps that mask to the image's regions (`refine_mask`); "strongest" ignores the threshold
    (and `num_maps`, `encode_strength`, which are DiffEdit's) and takes the image's regions where the words'
    `evidence_map` against the reference and against no text is at least STRONGEST of the strongest region's
    (`strongest_regions`).
    """
    check_refinement(refine)
    if pipe.unet.config.in_channels != 4:
        raise InputError(f"mask_from: DiffEdit needs a text-to-image UNet (4 input channels); this model's has "
                         f"{pipe.unet.config.in_channels} (an inpainting model): draw the mask, or use its base model")
    if refine == "strongest":
        mask = strongest_regions(image, evidence_map(pipe, image, words, [reference, ""], seed))
    else:
        found = difference_map(pipe, image, words, reference, seed, num_maps, encode_strength)
        latent = found > threshold / 2 * found.mean()
        mask = Image.fromarray(latent.astype(np.uint8) * 255).resize(image.size, Image.NEAREST)
        mask = refine_mask(image, mask) if refine == "segments" else mask
    if not mask.getbbox():
        against = f"{reference!r} or no text" if reference else "no text"
        raise InputError(f"mask_from: no region found for {words!r}; " + (
            f"the words explain no region better than {against}" if refine == "strongest"
            else f"lower --mask-threshold (now {threshold:g})"))
    return mask


def _segments(image: Image.Image) -> np.ndarray:
    """The image's regions of like colour (Felzenszwalb-Huttenlocher, scikit-image), one label per pixel. Light
    smoothing (sigma 0.3) keeps small objects' antialiased rims with them."""
    from skimage.segmentation import felzenszwalb

    return felzenszwalb(np.asarray(image.convert("RGB")), scale=100, sigma=0.3,
                        min_size=max(4, image.width * image.height // 4096))


def refine_mask(image: Image.Image, mask: Image.Image) -> Image.Image:
    """`mask` snapped to `image`'s regions (`_segments`): those the mask covers for at least half of their pixels.
    A coarse, blocky mask from the latents takes the edges of the objects it lies on; scattered patches over a
    large region drop out. Where that leaves nothing (patches that mostly cover no region), the mask stays as
    found."""
    segments = _segments(image)
    snapped = (_region_means(segments, np.asarray(mask) > 0) >= 0.5)[segments]
    return Image.fromarray((snapped * 255).astype(np.uint8)) if snapped.any() else mask


def strongest_regions(image: Image.Image, found: np.ndarray) -> Image.Image:
    """The image's regions (`_segments`) whose mean evidence (`found` scaled bilinearly to the image) is positive
    and at least STRONGEST times the strongest region's: the objects the words single out, whole, however coarse
    the latents. Meant for separate objects of flat colour (the shapes world); an object of many regions in a photo
    keeps only its strongest ones."""
    segments = _segments(image)
    fine = np.asarray(Image.fromarray(found.astype(np.float32)).resize(image.size, Image.BILINEAR))
    mean = _region_means(segments, fine)
    taken = (mean >= STRONGEST * mean.max()) & (mean > 0)   # nowhere better explained by the words: nothing
    return Image.fromarray((taken[segments] * 255).astype(np.uint8))


def _region_means(segments: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The mean of `values` over each region of `segments`, by label."""
    return np.bincount(segments.ravel(), weights=values.ravel().astype(float)) / np.bincount(segments.ravel())


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
