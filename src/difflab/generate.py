"""Text-to-image, image-to-image and inpainting calls: validated, seeded per image, fully recorded.

Each call is one diffusers pipeline call. difflab adds the checks, one CPU generator per image, the paste-back
of unmasked pixels, and a metadata record per image that is enough to regenerate it bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from . import inputs, masks, metadata, runs, seeding, threads, tracking
from .errors import InputError
from .params import GenerationParams
from .pipelines import Model, load, scheduler_label


@dataclass
class GeneratedImage:
    image: object  # PIL.Image
    record: dict   # everything needed to reproduce it; written into the PNG
    inputs: inputs.Inputs | None = None   # what the pipeline was given: sized image, mask, preprocessed control images

    @property
    def infotext(self) -> str:
        return metadata.infotext(self.record)

    def save(self, path) -> Path:
        """Write the PNG atomically, with the A1111 infotext and the JSON record in text chunks."""
        return runs.save_image(self.image, path, metadata.png_info(self.record))

    def _repr_png_(self):  # shown inline in Jupyter
        return self.image._repr_png_()


def version() -> str:
    """difflab's own version, from the installed package's metadata (pyproject.toml is the one source)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("difflab")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def _versions() -> dict:
    import diffusers
    import torch
    import transformers

    return {"difflab": version(), "diffusers": diffusers.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__}


def _cpu_threads() -> int:
    import torch

    return torch.get_num_threads()


def truncated_words(tokenizer, text: str) -> str | None:
    """The part of `text` that the text encoder drops (CLIP reads 77 tokens), or None."""
    if not text:
        return None
    ids = tokenizer(text, truncation=False, add_special_tokens=True).input_ids
    limit = tokenizer.model_max_length
    if len(ids) <= limit:
        return None
    return tokenizer.decode(ids[limit - 1:-1])


def _params(params: GenerationParams | None, fields: dict) -> GenerationParams:
    return GenerationParams.from_dict({**(params or GenerationParams()).to_dict(), **fields}).validate()


def generate(model: Model, params: GenerationParams | None = None, *, image=None, mask_image=None,
             control_image=None, callback=None, seeds: list[int] | None = None, **fields) -> list[GeneratedImage]:
    """Run one request (one diffusers call) and return its images with their records.

    `params` and/or keyword fields use diffusers' names (prompt, negative_prompt, num_inference_steps,
    guidance_scale, height, width, strength, ...) plus seed and num_images: image i gets seed + i. `seeds`
    gives every image's seed explicitly instead (a sweep batches cells that differ only in seed).
    `image`/`mask_image` are PIL images or paths. `control_image`: one image (or path) per ControlNet of the model,
    preprocessed as `control_preprocess` says. With `mask_from`, the inpainting mask is where the model places those
    words (DiffEdit; its noise has a fixed seed, so the mask depends on the image and the words alone); with
    `mask_from_detector`, what a YOLO segmentation model finds. `callback` is diffusers'
    `callback_on_step_end(pipe, step, timestep, kwargs) -> kwargs`; set `pipe._interrupt = True` in it to stop.
    """
    params = _params(params, fields)
    pipe = model.pipeline(params.task)
    prepared = inputs.prepare(params, image, mask_image)
    if seeds is None:
        first = seeding.resolve_seed(params.seed)
        seeds = list(range(first, first + params.num_images))
    else:
        seeds = [seeding.resolve_seed(s) for s in seeds]
    n = len(seeds)
    if params.task == "text2img":
        default = pipe.unet.config.sample_size * pipe.vae_scale_factor
        height, width = params.height or default, params.width or default
    else:
        width, height = prepared.image.size
    if params.mask_from or params.mask_from_detector:
        from .control import mask_from_detector, mask_from_words
        reference = params.prompt if params.mask_reference is None else params.mask_reference
        found = [mask_from_words(model.words_pipeline(), prepared.image, params.mask_from, params.mask_threshold,
                                 params.mask_refine, reference)] if params.mask_from else []
        found += [mask_from_detector(prepared.image, params.mask_from_detector)] if params.mask_from_detector else []
        prepared = inputs.prepare(params, image, mask_image, found_masks=found)
    prepared.control, control_records = inputs.prepare_control(params, control_image, (width, height),
                                                               len(model.controlnets))
    if control_records:
        prepared.records["control_image"] = control_records

    truncated = {}
    for name in ("prompt", "negative_prompt"):
        dropped = truncated_words(pipe.tokenizer, getattr(params, name))
        if dropped:
            truncated[name] = dropped
            warnings.warn(f"{name}: longer than the text encoder's {pipe.tokenizer.model_max_length} tokens; "
                          f"these words are dropped: {dropped!r}", stacklevel=2)

    pipe.scheduler = model.make_scheduler(params.scheduler)
    lora_scale = params.lora_scale if model.loras else None
    prompt_embeds, negative_embeds = model.encode_prompt(pipe, params.prompt, params.negative_prompt, lora_scale)
    call = dict(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds,
                num_inference_steps=params.num_inference_steps, guidance_scale=params.guidance_scale,
                num_images_per_prompt=n, generator=seeding.generators(seeds), eta=params.eta,
                callback_on_step_end=callback)
    if lora_scale is not None:
        call["cross_attention_kwargs"] = {"scale": lora_scale}
    if model.controlnets:
        k = len(model.controlnets)
        one = (lambda values: values[0]) if k == 1 else (lambda values: values)   # a list means several ControlNets
        call.update(controlnet_conditioning_scale=one(params.per_controlnet("controlnet_conditioning_scale", k)),
                    control_guidance_start=one(params.per_controlnet("control_guidance_start", k)),
                    control_guidance_end=one(params.per_controlnet("control_guidance_end", k)),
                    guess_mode=params.guess_mode)
        # text2img's ControlNet pipeline takes the control image as `image`, the others as `control_image`
        call["image" if params.task == "text2img" else "control_image"] = one(prepared.control)
    if params.task == "text2img":
        call.update(height=height, width=width)
    elif params.task == "img2img":
        call.update(image=prepared.image, strength=params.resolved_strength)
    else:
        # One copy of the image and mask per generator: with a single copy, diffusers' inpaint pipeline encodes
        # the image with generator[0] only, and images 1..n-1 would no longer match single runs of seed+i.
        call.update(image=[prepared.image] * n, mask_image=[prepared.mask] * n, height=height, width=width,
                    strength=params.resolved_strength)

    start = time.perf_counter()
    images = pipe(**call).images
    elapsed = time.perf_counter() - start
    if params.task == "inpaint" and (params.keep_unmasked or params.mask_blur):
        images = [masks.paste_back(im, prepared.image, prepared.soft_mask) for im in images]

    name, sampler = scheduler_label(pipe.scheduler)
    shared = {
        **params.to_dict(), "height": height, "width": width, "strength": params.resolved_strength,
        "scheduler": params.scheduler, "sampler": sampler, "scheduler_name": name,
        "scheduler_config": json.loads(pipe.scheduler.to_json_string()),
        "model": model.describe(), "device": model.device, "dtype": str(model.dtype).replace("torch.", ""),
        "cpu_threads": _cpu_threads(), "versions": _versions(), "inputs": prepared.records, "truncated": truncated,
        "elapsed_s": round(elapsed / len(images), 4),
    }
    return [GeneratedImage(im, {**shared, "seed": seeds[i], "batch": {"seeds": seeds, "index": i}}, prepared)
            for i, im in enumerate(images)]


# --- reproducing an image from its file

def params_from_record(record: dict) -> GenerationParams:
    """The parameters an image was made with (its own seed, one image)."""
    names = {f.name for f in dataclasses.fields(GenerationParams)}
    values = {k: v for k, v in record.items() if k in names}
    if record.get("mask_from") and "mask_reference" not in record:
        values["mask_reference"] = ""   # recorded before mask_reference existed: read against no text
    return GenerationParams.from_dict({**values, "seed": record["seed"], "num_images": 1})


def model_options(record: dict) -> tuple[str, dict]:
    """(model, load options) that load the model an image was made with: LoRAs, embeddings, ControlNets, device,
    dtype."""
    model = record["model"]
    source = model["path"] if model["kind"] in ("folder", "file") else model["id"]
    return source, dict(device=record["device"], dtype=record["dtype"], **model.get("fast", {}),
                        lora=[f"{item['path']}:{item.get('weight', 1.0)}" for item in model.get("lora", [])],
                        textual_inversion=[f"{item['path']}:{item['token']}" if item.get("token") else item["path"]
                                           for item in model.get("textual_inversion", [])],
                        controlnet=[item["path"] if item["kind"] in ("folder", "file") else item["id"]
                                    for item in model.get("controlnet", [])])


def load_for_record(record: dict, **overrides) -> Model:
    source, options = model_options(record)
    return load(source, record["task"], **{**options, **overrides})


def recorded_input(record: dict, key: str):
    entry = (record.get("inputs") or {}).get(key)
    if entry is None:
        return None
    if isinstance(entry, list):   # the control images, one per ControlNet
        return [_checked_input(item, key) for item in entry]
    return _checked_input(entry, key)


def _checked_input(entry: dict, key: str) -> Path:
    if not entry.get("path"):
        raise InputError(f"{key}: this image was made from an in-memory {key}; it cannot be found again")
    path = Path(entry["path"])
    if not path.is_file() or inputs.file_record(path)["sha256"] != entry["sha256"]:
        raise InputError(f"{key}: the input {entry['path']!r} recorded in the image is missing or has changed")
    return path


def regenerate(record: dict, model: Model | None = None) -> GeneratedImage:
    """Make the recorded image again: its whole batch is rerun (batching can change the last bits)."""
    params = params_from_record(record)
    model = model or load_for_record(record)
    with threads.recorded(record.get("cpu_threads"), "the image's metadata", model.device):
        out = generate(model, params, image=recorded_input(record, "image"),
                       mask_image=recorded_input(record, "mask_image"),
                       control_image=recorded_input(record, "control_image"), seeds=record["batch"]["seeds"])
    return out[record["batch"]["index"]]


# --- a generation run: one folder of images with their run record (the CLI's, the web UI's, a notebook's)

@dataclass
class GenerationRun:
    dir: Path | None                 # <out>/<timestamp>-<name>/, created with the first image (None: nothing saved)
    images: list[Path] = field(default_factory=list)
    status: str = "complete"         # complete | interrupted (Ctrl-C, or the caller's cancel flag)


def generate_run(model: Model, requests: list[GenerationParams], *, image=None, mask_image=None, control_image=None,
                 out=runs.DEFAULT_ROOT, name: str | None = None, command: list | None = None, tracker: str = "local",
                 callback=None, cancel=None, on_saved=None, from_record: dict | None = None,
                 progress: bool = False) -> GenerationRun:
    """Generate every request (one pipeline call each) into one run folder, and return the run.

    The folder appears with the first finished batch and holds `NNNN-<seed>.png` (each with its record),
    mask.png and mask_overlay.png for inpainting, control_<i>.png (what ControlNet i saw), and run.json (what made
    the images, and whether all finished).
    `from_record`: remake that image's batch instead (`--from`). `cancel`: a threading.Event checked before and
    after each call (with `callback` setting `pipe._interrupt`, it stops within a step); a cancelled call saves
    nothing. Ctrl-C and `cancel` end the run as `interrupted`, with what was finished kept and recorded.
    `on_saved(paths)` is told each batch's files as they are written; `tracker` mirrors the images to Comet or TensorBoard.
    """
    from tqdm.auto import tqdm

    run = GenerationRun(None)
    first = requests[0]
    mirror = None
    stopped = lambda: cancel is not None and cancel.is_set()  # noqa: E731
    try:
        for params in tqdm(requests, desc="prompts", unit="prompt", disable=not progress or len(requests) == 1):
            if stopped():
                break
            batch = [regenerate(from_record, model)] if from_record is not None else \
                generate(model, params, image=image, mask_image=mask_image, control_image=control_image,
                         callback=callback)
            if stopped():
                break
            if run.dir is None:
                run.dir = runs.new_run_dir(name or first.prompt or first.task, out)
                prepared = batch[0].inputs
                if prepared.mask is not None:
                    runs.save_image(prepared.mask, run.dir / "mask.png")
                    runs.save_image(masks.overlay(prepared.image, prepared.mask), run.dir / "mask_overlay.png")
                for i, control in enumerate(prepared.control or []):
                    runs.save_image(control, run.dir / f"control_{i}.png")
                mirror = tracking.make(tracker, run.dir)
                mirror.log_params({**first.to_dict(), "model": model.describe(), "prompts": [r.prompt for r in requests]})
            saved = []
            for item in batch:
                saved.append(item.save(run.dir / f"{len(run.images) + len(saved):04d}-{item.record['seed']}.png"))
                mirror.log_image(saved[-1], saved[-1].stem, item.record)
            run.images += saved
            if on_saved is not None:
                on_saved(saved)
    except KeyboardInterrupt:
        run.status = "interrupted"
    if stopped():
        run.status = "interrupted"
    if run.dir is not None:
        runs.write_run_record(run.dir, kind="generate", status=run.status, command=command, task=first.task,
                              model=model.describe(), params=first.to_dict(), prompts=[r.prompt for r in requests],
                              images=[p.name for p in run.images])
        mirror.finish(run.status)
    return run
