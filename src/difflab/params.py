"""Generation parameters: diffusers' names, difflab's defaults, and validation at the boundary.

Pure Python: the CLI validates a request with this module before it imports torch or diffusers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import InputError
from .seeding import resolve_seed

TASKS = ("text2img", "img2img", "inpaint")

# name -> (diffusers class, config overrides, AUTOMATIC1111 sampler name).
# Every scheduler is built from the model's *own* scheduler config plus these overrides, so the beta schedule
# the model was trained with is kept (diffusers' "switch schedulers" recipe).
SCHEDULERS: dict[str, tuple[str, dict, str]] = {
    "ddim": ("DDIMScheduler", {}, "DDIM"),
    "ddpm": ("DDPMScheduler", {}, "DDPM"),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}, "PLMS"),
    "lms": ("LMSDiscreteScheduler", {"use_karras_sigmas": False}, "LMS"),
    "euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}, "Euler"),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}, "Euler a"),
    "dpm++_2m": ("DPMSolverMultistepScheduler",
                 {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}, "DPM++ 2M"),
    "dpm++_2m_karras": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
                        "DPM++ 2M Karras"),
    "unipc": ("UniPCMultistepScheduler", {}, "UniPC"),
}

def check_scheduler(name: str | None) -> None:
    if name is not None and name not in SCHEDULERS:
        raise InputError(f"scheduler: {name!r} is not known; choose one of {', '.join(SCHEDULERS)}")


@dataclass
class GenerationParams:
    """One generation request. Field names are diffusers' call arguments, plus `seed` and `num_images`.

    `height`/`width` left as None take the model's default size (text2img) or the input image's size.
    `strength` left as None becomes 0.8 for img2img and 1.0 for inpaint (diffusers' defaults).
    Image i of a request uses seed `seed + i` (the AUTOMATIC1111 convention).
    """

    task: str = "text2img"
    prompt: str = ""
    negative_prompt: str = ""
    num_inference_steps: int = 30
    guidance_scale: float = 7.5
    height: int | None = None
    width: int | None = None
    seed: int | None = None
    num_images: int = 1
    scheduler: str | None = None
    eta: float = 0.0
    strength: float | None = None
    lora_scale: float = 1.0
    # inpainting masks: boxes and ellipses as (x0, y0, x1, y1), in pixels or as fractions of the size
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    ellipses: list[tuple[float, float, float, float]] = field(default_factory=list)
    mask_dilate: int = 0
    mask_blur: float = 0.0
    keep_unmasked: bool = False
    resize_mask: bool = False
    mask_from: str = ""              # inpaint: the mask where the model places these words (DiffEdit)
    mask_threshold: float = 3.0      # DiffEdit: a latent joins the mask where the difference > threshold/2 x its mean
    mask_refine: str = "segments"    # DiffEdit's mask snapped to the image's regions (segments), its strongest
                                     # regions whole (strongest), or as found (none)
    mask_reference: str | None = None  # DiffEdit's reference text, against which mask_from is read: None the prompt
    mask_from_detector: str = ""     # inpaint: WEIGHTS:CLASS, a YOLO segmentation model's masks (optional package)
    # ControlNet (one value for all ControlNets, or a list with one per ControlNet); see difflab.control
    control_preprocess: str | list[str] = "none"
    controlnet_conditioning_scale: float | list[float] = 1.0
    control_guidance_start: float | list[float] = 0.0
    control_guidance_end: float | list[float] = 1.0
    guess_mode: bool = False
    resize_control: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationParams":
        """Build from a plain dict, refusing unknown keys (strict, like every difflab config)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"{unknown[0]}: not a generation parameter; known: {', '.join(sorted(names))}")
        data = dict(data)
        for key in ("boxes", "ellipses"):
            if key in data:
                data[key] = [tuple(b) for b in data[key]]
        return cls(**data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "GenerationParams":
        """Raise InputError on the first field that is not allowed; return self for chaining."""
        if self.task not in TASKS:
            raise InputError(f"task: {self.task!r} is not known; choose one of {', '.join(TASKS)}")
        _check_type("prompt", self.prompt, str)
        _check_type("negative_prompt", self.negative_prompt, str)
        if not self.prompt.strip():
            raise InputError("prompt: empty; give a text prompt")
        _check_int("num_inference_steps", self.num_inference_steps, low=1)
        _check_number("guidance_scale", self.guidance_scale, low=0.0, what="a number >= 0")
        for name in ("height", "width"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 8 or value % 8):
                raise InputError(f"{name}: {value!r} is not allowed; use a positive multiple of 8")
        if self.seed is not None and self.seed != -1:
            resolve_seed(self.seed)
        _check_int("num_images", self.num_images, low=1)
        check_scheduler(self.scheduler)
        _check_number("eta", self.eta, low=0.0, high=1.0, what="a number in [0, 1]")
        _check_number("lora_scale", self.lora_scale, what="a number")
        if self.task == "text2img":
            if self.strength is not None:
                raise InputError("strength: only img2img and inpaint take a strength; text2img does not")
            if self.boxes or self.ellipses or self.keep_unmasked or self.mask_dilate or self.mask_blur:
                raise InputError("boxes: masks are for inpaint only; text2img takes none")
        else:
            strength = self.resolved_strength
            _check_number("strength", strength, what="a number in (0, 1]")
            if not 0.0 < strength <= 1.0:
                raise InputError(f"strength: {strength!r} is not allowed; use a number in (0, 1]")
            if int(self.num_inference_steps * strength) < 1:
                raise InputError(
                    f"strength: {strength} x num_inference_steps {self.num_inference_steps} runs "
                    f"int({self.num_inference_steps * strength:g}) = 0 denoising steps; "
                    f"raise steps or strength so that steps x strength >= 1")
        if self.task != "inpaint" and (self.boxes or self.ellipses):
            raise InputError(f"boxes: masks are for inpaint only, not {self.task}")
        _check_int("mask_dilate", self.mask_dilate, low=0)
        _check_number("mask_blur", self.mask_blur, low=0.0, what="a number >= 0")
        _check_type("mask_from", self.mask_from, str)
        _check_type("mask_from_detector", self.mask_from_detector, str)
        if self.mask_reference is not None:
            _check_type("mask_reference", self.mask_reference, str)
        for name in ("mask_from", "mask_from_detector"):
            if getattr(self, name) and self.task != "inpaint":
                raise InputError(f"{name}: masks are for inpaint only, not {self.task}")
        _check_number("mask_threshold", self.mask_threshold, low=0.0, what="a number > 0")
        if self.mask_threshold <= 0:
            raise InputError(f"mask_threshold: {self.mask_threshold!r} is not allowed; use a number > 0")
        from .control import check_refinement
        check_refinement(self.mask_refine)
        self._validate_control()
        return self

    def _validate_control(self) -> None:
        from .control import SCALE_RANGE, check_preprocessor

        for name in as_list(self.control_preprocess):
            check_preprocessor(name)
        low, high = SCALE_RANGE
        for value in as_list(self.controlnet_conditioning_scale):
            _check_number("controlnet_conditioning_scale", value, low, high, f"a number in [{low:g}, {high:g}]")
        starts, ends = as_list(self.control_guidance_start), as_list(self.control_guidance_end)
        for value in starts:
            _check_number("control_guidance_start", value, 0.0, 1.0, "a number in [0, 1]")
        for value in ends:
            _check_number("control_guidance_end", value, 0.0, 1.0, "a number in [0, 1]")
        for start, end in zip(starts * len(ends) if len(starts) == 1 else starts,
                              ends * len(starts) if len(ends) == 1 else ends):
            if start >= end:
                raise InputError(f"control_guidance_start: {start} is not before control_guidance_end {end}; "
                                 f"use 0 <= start < end <= 1")

    def per_controlnet(self, name: str, count: int) -> list:
        """The value of control field `name` for each of `count` ControlNets (one value serves them all)."""
        values = as_list(getattr(self, name))
        if len(values) == 1:
            return values * count
        if len(values) != count:
            raise InputError(f"{name}: {len(values)} values for {count} ControlNet(s); give one, or one per "
                             f"ControlNet")
        return values

    @property
    def resolved_strength(self) -> float | None:
        if self.task == "text2img":
            return None
        if self.strength is None:
            return 0.8 if self.task == "img2img" else 1.0
        return self.strength

    @property
    def denoising_steps(self) -> int:
        """Steps the sampler actually runs: img2img and inpaint skip the first (1 - strength) of them."""
        strength = self.resolved_strength
        return self.num_inference_steps if strength is None else int(self.num_inference_steps * strength)


def as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_type(name, value, kind) -> None:
    if not isinstance(value, kind):
        raise InputError(f"{name}: {value!r} is not allowed; use a {kind.__name__}")


def _check_int(name, value, low) -> None:
    if not _is_int(value) or value < low:
        raise InputError(f"{name}: {value!r} is not allowed; use an integer >= {low}")


def _check_number(name, value, low=None, high=None, what="a number") -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if ok and low is not None:
        ok = value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        raise InputError(f"{name}: {value!r} is not allowed; use {what}")
