"""Load Stable Diffusion: a hub id, a local diffusers folder, a single .safetensors file, or a tiny model.

`load()` returns a `Model`: one set of components and one genuine diffusers pipeline per task, made with
`from_pipe` so that switching task shares the very same modules (no second load, no second copy).
`model.pipe` is the diffusers pipeline itself: drop down to diffusers whenever you like.

Resolving where a model comes from is pure Python (the CLI does it before importing torch); torch and
diffusers are imported only by `load()`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import runs, tiny
from .errors import InputError
from .shapes.model import RECIPES as SHAPES_MODELS
from .params import SCHEDULERS, TASKS, check_scheduler

PIPELINE_CLASSES = {
    "text2img": "StableDiffusionPipeline",
    "img2img": "StableDiffusionImg2ImgPipeline",
    "inpaint": "StableDiffusionInpaintPipeline",
}
CONTROLNET_PIPELINE_CLASSES = {   # the same tasks with ControlNets (diffusers' names)
    "text2img": "StableDiffusionControlNetPipeline",
    "img2img": "StableDiffusionControlNetImg2ImgPipeline",
    "inpaint": "StableDiffusionControlNetInpaintPipeline",
}
DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


@dataclass
class ModelSource:
    """Where a model comes from. `kind` is one of tiny, shapes (trained here on first use), folder, file, hub."""

    id: str
    kind: str
    path: str | None = None
    name: str = ""


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _download_hint(repo: str) -> str:
    return (f"download it on a machine with a network (`hf download {repo}`, or any difflab call without "
            f"HF_HUB_OFFLINE=1), or pass a local diffusers folder, a .safetensors file, or 'tiny'")


def resolve_source(model: str) -> ModelSource:
    """Decide what `model` names, failing at once (no network wait) on what cannot be loaded."""
    if not isinstance(model, str) or not model.strip():
        raise InputError(f"model: {model!r} is not allowed; give a hub id, a folder, a .safetensors file or 'tiny'")
    if model in tiny.TINY_MODELS:
        return ModelSource(model, "tiny", name=model)
    if model in SHAPES_MODELS:
        return ModelSource(model, "shapes", name=model)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise InputError(f"model: folder {model!r} has no model_index.json; give a diffusers pipeline folder "
                             f"(save_pretrained) or a single .safetensors file")
        return ModelSource(model, "folder", str(path.resolve()), path.resolve().name)
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise InputError(f"model: {model!r} is a pickle checkpoint, which can run code when loaded; "
                             f"difflab loads only .safetensors files (convert it, or use a diffusers folder)")
        if path.suffix.lower() != ".safetensors":
            raise InputError(f"model: file {model!r} is not a .safetensors checkpoint")
        return ModelSource(model, "file", str(path.resolve()), path.stem)
    looks_like_path = (model.startswith((".", "/", "~")) or model.count("/") != 1
                       or model.lower().endswith((".safetensors",) + PICKLE_SUFFIXES))
    if looks_like_path or not re.fullmatch(r"[\w.\-]+/[\w.\-]+", model):
        raise InputError(f"model: {model!r} does not exist; give a hub id (org/name), a diffusers folder, "
                         f"a .safetensors file, or one of {', '.join(tiny.TINY_MODELS + tuple(SHAPES_MODELS))}")
    _check_cached("model", model, "model_index.json")
    return ModelSource(model, "hub", name=model)


def _check_cached(field: str, repo: str, marker: str) -> None:
    """Offline (HF_HUB_OFFLINE=1), a hub id must already be in the local cache: fail at once, not after a wait."""
    if _hub_offline():
        from huggingface_hub import try_to_load_from_cache
        if not isinstance(try_to_load_from_cache(repo, marker), str):
            raise InputError(f"{field}: hub id {repo!r} is not in the local Hugging Face cache and the hub is "
                             f"offline (HF_HUB_OFFLINE=1); {_download_hint(repo)}")


# --- weights hashes (A1111's "Model hash": SHA-256 of the weights file), cached by path, size and mtime

def file_sha256(path) -> str:
    path = Path(path).resolve()
    if re.fullmatch(r"[0-9a-f]{64}", path.name):  # a Hugging Face cache blob is named by its SHA-256
        return path.name
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = runs.cache_root() / "hashes.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
        cache[key] = digest.hexdigest()
        runs.write_json(cache_file, cache)
    return cache[key]


def weights_hash(source: ModelSource, subfolder: str = "unet") -> str | None:
    """SHA-256 of the single file, or of the weights in `subfolder` of a folder or cached hub snapshot (the UNet's
    for a pipeline; "" for a ControlNet, whose folder is the model)."""
    if source.kind == "file":
        return file_sha256(source.path)
    prefix = f"{subfolder}/" if subfolder else ""
    if source.kind == "hub":
        from huggingface_hub import try_to_load_from_cache
        for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"):
            cached = try_to_load_from_cache(source.id, prefix + name)
            if isinstance(cached, str):
                return file_sha256(cached)
        return None
    found = sorted((Path(source.path) / subfolder).glob("*.safetensors"))
    return file_sha256(found[0]) if found else None


# --- ControlNets: where one comes from, and whether it fits the model

def resolve_controlnet(spec: str) -> ModelSource:
    """Where a ControlNet comes from (kind tiny, folder, file or hub), failing at once on what cannot be loaded
    (no network wait)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"controlnet: {spec!r} is not allowed; give a hub id, a folder, a .safetensors file or "
                         f"{tiny.TINY_CONTROLNET}")
    if spec == tiny.TINY_CONTROLNET:
        return ModelSource(spec, "tiny", name=spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"controlnet: folder {spec!r} has no config.json; give a ControlNetModel folder "
                             f"(save_pretrained), e.g. a training run's controlnet/")
        return ModelSource(spec, "folder", str(path.resolve()), path.resolve().name)
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            what = "a pickle checkpoint, which can run code when loaded" if path.suffix.lower() in PICKLE_SUFFIXES \
                else "not a .safetensors file"
            raise InputError(f"controlnet: {spec!r} is {what}; difflab loads ControlNets from .safetensors")
        return ModelSource(spec, "file", str(path.resolve()), path.stem)
    if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", spec) or spec.startswith((".", "/", "~")):
        raise InputError(f"controlnet: {spec!r} does not exist; give a hub id (org/name), a ControlNet folder, a "
                         f".safetensors file, or {tiny.TINY_CONTROLNET}")
    _check_cached("controlnet", spec, "config.json")
    return ModelSource(spec, "hub", name=spec)


def load_controlnet(spec: str, torch_dtype, unet, vae_scale_factor: int):
    """(ControlNetModel, record) for `spec`, refused with one line when it does not fit `unet`."""
    from diffusers import ControlNetModel

    source = resolve_controlnet(spec)
    try:
        if source.kind == "tiny":
            source.path = str(tiny.tiny_path(source.id))
        if source.kind in ("tiny", "folder"):
            net = ControlNetModel.from_pretrained(source.path, torch_dtype=torch_dtype, use_safetensors=True)
        elif source.kind == "file":
            net = ControlNetModel.from_single_file(source.path, torch_dtype=torch_dtype)
        else:
            net = ControlNetModel.from_pretrained(source.id, torch_dtype=torch_dtype, use_safetensors=True)
    except (OSError, ValueError) as e:
        raise InputError(f"controlnet: could not load {spec!r} ({str(e).splitlines()[0][:200]})") from None
    check_fits(net, unet, vae_scale_factor, source.name)
    from .checkpoints import training_record

    found = training_record(source.path) if source.kind in ("folder", "file") else None
    if found:   # one difflab trained: its run's name (not "controlnet", the folder's), method and base
        source.name = found["name"]
    extra = {"method": found["method"], "base": found["base"]} if found else {}
    return net, {**asdict(source), "hash": weights_hash(source, subfolder=""), **extra}


def check_fits(controlnet, unet, vae_scale_factor: int, name: str) -> None:
    """A ControlNet adds its features to the UNet's skip connections: their widths, the text width and the control
    image's downsampling to latents must all be the base model's."""
    c, u = controlnet.config, unet.config
    factor = 2 ** (len(c.conditioning_embedding_out_channels) - 1)
    for what, mine, theirs in (("block_out_channels", list(c.block_out_channels), list(u.block_out_channels)),
                               ("cross_attention_dim", c.cross_attention_dim, u.cross_attention_dim),
                               ("layers_per_block", c.layers_per_block, u.layers_per_block),
                               ("control downsampling", factor, vae_scale_factor)):
        if mine != theirs:
            raise InputError(f"controlnet: {name!r} does not fit this model: its {what} is {mine}, the model's "
                             f"{theirs} (a ControlNet for another architecture?)")


# --- devices and dtypes

DTYPES = ("auto", "float32", "float16", "bfloat16")


def check_device_dtype(device: str, dtype: str) -> None:
    """The checks that need no torch: names, and float16 on the CPU."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(device)):
        raise InputError(f"device: {device!r} is not allowed; use auto, cpu, cuda, cuda:N or mps")
    if dtype not in DTYPES:
        raise InputError(f"dtype: {dtype!r} is not allowed; use one of {', '.join(DTYPES)}")
    if device == "cpu" and dtype == "float16":
        raise InputError("dtype: float16 is not supported on cpu; use float32 (default) or bfloat16")


def resolve_device(device: str = "auto") -> str:
    """`auto` picks cuda, then mps, then cpu; an explicit device must exist."""
    import torch

    check_device_dtype(device, "auto")
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device: {device!r} is not available here (no CUDA device); use cpu or auto")
    if device == "mps" and not torch.backends.mps.is_available():
        raise InputError("device: 'mps' is not available here; use cpu or auto")
    return device


def resolve_dtype(dtype: str, device: str):
    """The dtype to load in: float16 on GPUs and float32 on the CPU for `auto` (where `load` then switches to
    bfloat16 if a probe of the model shows it faster on this CPU); as asked otherwise."""
    import torch

    check_device_dtype(device, dtype)
    if dtype == "auto":
        dtype = "float32" if device == "cpu" else "float16"
    return getattr(torch, dtype)


HARMLESS_NOTICES = ("requires torchvision", "should be kept in float32: []",
                    "No LoRA keys associated to CLIPTextModel", "StableDiffusionDiffEditPipeline has been deprecated")


def _quiet_harmless_notices() -> None:
    """Drop log lines that never concern difflab: transformers has no torchvision (difflab does not need it),
    from_pipe finds no module to keep in float32, a LoRA adapts the UNet alone."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for logger in (transformers_logging.get_logger(), diffusers_logging.get_logger()):
        for handler in logger.handlers:
            handler.addFilter(lambda record: not any(n in record.getMessage() for n in HARMLESS_NOTICES))


def scheduler_label(scheduler) -> tuple[str | None, str]:
    """(difflab name or None, AUTOMATIC1111 sampler name) of a scheduler instance."""
    cls = type(scheduler).__name__
    cfg = scheduler.config
    for name, (cls_name, overrides, label) in SCHEDULERS.items():
        if cls_name == cls and all(cfg.get(k, v) == v for k, v in overrides.items()):
            return name, label
    return None, cls.replace("Scheduler", "")


@dataclass
class Model:
    """A loaded model: shared components, and one diffusers pipeline per task made on demand."""

    pipe: object  # the diffusers pipeline of `task`
    source: ModelSource
    device: str
    dtype: object
    task: str
    loras: list[dict] = field(default_factory=list)
    embeddings: list[dict] = field(default_factory=list)
    controlnets: list[dict] = field(default_factory=list)   # where each ControlNet came from (difflab.control)
    weights_hash: str | None = None
    fast: dict = field(default_factory=dict)  # the fast paths in use (recorded: they may move pixels a little)

    def __post_init__(self):
        self._pipes = {self.task: self.pipe}
        self._scheduler_cls = type(self.pipe.scheduler)
        self._scheduler_config = dict(self.pipe.scheduler.config)  # the model's own, kept for switching

    def pipeline(self, task: str):
        """The diffusers pipeline for `task`, sharing this model's components (`from_pipe`)."""
        if task not in TASKS:
            raise InputError(f"task: {task!r} is not known; choose one of {', '.join(TASKS)}")
        if task != "inpaint" and self.pipe.unet.config.in_channels != 4:
            raise InputError(f"task: {task} needs a 4-channel UNet, but model {self.source.name!r} has a "
                             f"{self.pipe.unet.config.in_channels}-channel inpainting UNet; use task inpaint")
        if task not in self._pipes:
            import diffusers
            classes = CONTROLNET_PIPELINE_CLASSES if self.controlnets else PIPELINE_CLASSES
            new = getattr(diffusers, classes[task]).from_pipe(self.pipe)
            new.set_progress_bar_config(**getattr(self.pipe, "_progress_bar_config", {}))
            self._pipes[task] = new
        return self._pipes[task]

    def words_pipeline(self):
        """The pipeline whose text-to-image UNet DiffEdit reads masks from words with: this model's own; for an
        inpainting model (a 9-channel UNet, which predicts noise from the mask it is given) the base model that its
        difflab training record names, loaded once on the same device and dtype."""
        if self.pipe.unet.config.in_channels == self.pipe.unet.config.out_channels:
            return self.pipe
        if getattr(self, "_words_pipe", None) is None:
            from .checkpoints import training_record

            found = training_record(Path(self.source.path) / "unet") if self.source.kind == "folder" else None
            if not found or not found.get("base"):
                raise InputError(f"mask_from: DiffEdit needs a text-to-image UNet (4 input channels); model "
                                 f"{self.source.name!r} is an inpainting model with no recorded base model: draw the "
                                 f"mask, or use its base model")
            base = load(found["base"]["id"], device=self.device, dtype=str(self.dtype).removeprefix("torch."),
                        progress=False)
            self._words_pipe = base.pipe
        return self._words_pipe

    def encode_prompt(self, pipe, prompt: str, negative_prompt: str, lora_scale: float | None):
        """Text embeddings of (prompt, negative prompt): diffusers' own `encode_prompt`, reused while they do
        not change. Both are always made; diffusers ignores the negative one when guidance is off."""
        key = (prompt, negative_prompt, lora_scale)
        if getattr(self, "_embeds_key", None) != key:
            self._embeds = pipe.encode_prompt(prompt, pipe._execution_device, 1, True,
                                              negative_prompt or None, lora_scale=lora_scale)
            self._embeds_key = key
        return self._embeds

    def make_scheduler(self, name: str | None):
        """A fresh scheduler: `name` from difflab's table, or None for the model's own."""
        check_scheduler(name)
        if name is None:
            return self._scheduler_cls.from_config(self._scheduler_config)
        import diffusers
        cls_name, overrides, _ = SCHEDULERS[name]
        return getattr(diffusers, cls_name).from_config(self._scheduler_config, **overrides)

    def describe(self) -> dict:
        """What metadata records about the model: enough to load it again."""
        return {"name": self.source.name, "id": self.source.id, "kind": self.source.kind, "path": self.source.path,
                "hash": self.weights_hash, "lora": self.loras, "textual_inversion": self.embeddings,
                **({"controlnet": self.controlnets} if self.controlnets else {}),
                **({"fast": self.fast} if self.fast else {})}


def apply_fast_paths(pipe, channels_last: bool = False, fuse_qkv: bool = False, compile: bool = False) -> None:
    """Speed options on a loaded pipeline (see `load`)."""
    import torch

    if fuse_qkv:
        pipe.fuse_qkv_projections()
    if channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if compile:
        # compiled code is cached on disk by inductor, so a new process (a resumed sweep) compiles faster
        import os
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(runs.cache_root() / "inductor"))
        pipe.unet = torch.compile(pipe.unet, fullgraph=True)
        pipe.vae.decode = torch.compile(pipe.vae.decode)


def _local_record(path: str) -> dict:
    p = Path(path).expanduser()
    if p.is_file():
        return {"path": str(p.resolve()), "sha256": file_sha256(p)}
    return {"path": str(p.resolve()) if p.exists() else path, "sha256": None}


def lora_spec(item) -> tuple[str, float]:
    """'PATH[:WEIGHT]' -> (path, weight): each LoRA has its own weight (AUTOMATIC1111's <lora:name:weight>)."""
    text = str(item)
    if not Path(text).expanduser().exists() and ":" in text:
        path, weight = text.rsplit(":", 1)
        try:
            return path, float(weight)
        except ValueError:
            raise InputError(f"lora: {text!r} is not allowed; use PATH or PATH:WEIGHT with a number WEIGHT") from None
    return text, 1.0


def _lora_record(path: str, weight: float) -> dict:
    """What an image records of a LoRA: file, hash, weight, and, for one difflab trained, its name, method, base."""
    from .checkpoints import training_record

    found = training_record(path) if Path(path).expanduser().exists() else None
    name = found["name"] if found else Path(path).stem.removesuffix(".kohya")
    extra = {"method": found["method"], "base": found["base"]} if found else {}
    return {**_local_record(path), "weight": weight, "name": name, **extra}


def _load_loras(pipe, loras) -> list[dict]:
    """Load each LoRA as its own adapter and weight them (diffusers' set_adapters)."""
    records = []
    for i, item in enumerate([loras] if isinstance(loras, (str, Path)) else (loras or [])):
        path, weight = lora_spec(item)
        from diffusers.utils import logging as diffusers_logging

        level = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)   # a failure is our one line, not its log
        try:
            with warnings.catch_warnings():   # peft's notice that a second adapter is a second adapter
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                pipe.load_lora_weights(path, adapter_name=f"lora{i}")
        except RuntimeError as e:   # torch's size mismatch
            raise InputError(f"lora: could not load {path!r}: its tensors do not fit this model's layers (a LoRA "
                             f"for another architecture?; {str(e).splitlines()[0][:120]})") from None
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"lora: could not load {path!r} ({str(e).splitlines()[0][:200]})") from None
        finally:
            diffusers_logging.set_verbosity(level)
        if f"lora{i}" not in pipe.get_list_adapters().get("unet", []) + \
                pipe.get_list_adapters().get("text_encoder", []):
            raise InputError(f"lora: {path!r} adapts no layer of this model (made for another architecture?)")
        records.append(_lora_record(path, weight))
    if records:
        pipe.set_adapters([f"lora{i}" for i in range(len(records))], [r["weight"] for r in records])
    return records


def load(model: str = "tiny", task: str = "text2img", *, device: str = "auto", dtype: str = "auto",
         lora=None, textual_inversion=None, controlnet=None, attention_slicing: bool = False, vae_tiling: bool = False,
         cpu_offload: bool = False, config: str | None = None, safety_checker: bool = False,
         progress: bool = True, channels_last: bool = False, fuse_qkv: bool = False, compile: bool = False,
         vae_slicing: bool = False) -> Model:
    """Load `model` for `task` and return a `Model`; `model.pipe` is the diffusers pipeline.

    model:  a hub id (org/name), a diffusers folder, a .safetensors single-file checkpoint, or tiny/tiny-inpaint.
    lora:   a LoRA (file, folder or hub id), or a list of them, each 'PATH[:WEIGHT]' (weight 1 by default);
            `lora_scale` per generation scales them all.
    textual_inversion: an embedding file, or a list of them; 'path:token' names the token to add.
    controlnet: a ControlNet (hub id, ControlNetModel folder, .safetensors file, tiny-controlnet), or a list of them;
            the task pipelines are then diffusers' ControlNet pipelines, and each image needs one control image per
            ControlNet (`generate(..., control_image=...)`).
    config: for a single file, a diffusers folder or hub id holding the matching configs (offline use).
    safety_checker: keep the model's NSFW checker (off by default: this is a research lab; it blacks out images).
    Fast paths, all off by default because each may move pixels by a little (each is tested for closeness and
    recorded in every image's metadata): channels_last (UNet and VAE memory format), fuse_qkv (one matmul for
    q, k and v: diffusers' fuse_qkv_projections), compile (torch.compile of the UNet and the VAE decoder; the first
    call at each size compiles, later calls and a whole sweep reuse it), vae_slicing (decode a batch one image at
    a time). PyTorch's SDPA attention is diffusers' default and always on.
    """
    if task not in TASKS:
        raise InputError(f"task: {task!r} is not known; choose one of {', '.join(TASKS)}")
    source = resolve_source(model)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if cpu_offload and not device.startswith("cuda"):
        raise InputError(f"cpu_offload: needs a CUDA device, but the device is {device}; drop --cpu-offload")

    _quiet_harmless_notices()
    import diffusers
    from diffusers.utils import logging as diffusers_logging

    cls = getattr(diffusers, PIPELINE_CLASSES[task])
    kwargs = {"dtype": torch_dtype}
    if not safety_checker:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    from transformers.utils import logging as transformers_logging
    if not progress:
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
    try:
        if source.kind in ("tiny", "shapes"):
            from .shapes.model import model_path
            source.path = str(tiny.tiny_path(source.id) if source.kind == "tiny" else model_path(source.id, progress))
            pipe = cls.from_pretrained(source.path, use_safetensors=True, **kwargs)
        elif source.kind == "folder":
            pipe = cls.from_pretrained(source.path, use_safetensors=True, **kwargs)
        elif source.kind == "file":
            pipe = cls.from_single_file(source.path, config=config, **kwargs)
        else:
            pipe = cls.from_pretrained(source.id, use_safetensors=True, **kwargs)
    except OSError as e:  # huggingface_hub raises OSError subclasses when offline or not found
        reason = str(e).splitlines()[0][:200]
        if source.kind == "file":
            hint = ("a single file needs its model's configs: pass config=<a diffusers folder of the same "
                    "architecture> (--config), or run once with a network")
        else:
            hint = _download_hint(model)
        raise InputError(f"model: could not load {model!r} ({reason}); {hint}") from None
    finally:
        if not progress:
            diffusers_logging.enable_progress_bar()
            transformers_logging.enable_progress_bar()
    pipe.set_progress_bar_config(disable=not progress, leave=False)

    loras, embeddings = _load_loras(pipe, lora), []
    try:
        for item in [textual_inversion] if isinstance(textual_inversion, (str, Path)) else (textual_inversion or []):
            path, token = str(item), None
            if not Path(path).exists() and ":" in path:  # path:token
                path, token = path.rsplit(":", 1)
            pipe.load_textual_inversion(path, token=token)
            embeddings.append({**_local_record(path), "token": token})
    except (OSError, ValueError) as e:
        raise InputError(f"textual_inversion: could not load {str(item)!r} ({str(e).splitlines()[0][:200]})") \
            from None

    controlnets = []
    if controlnet:
        nets = [load_controlnet(spec, torch_dtype, pipe.unet, pipe.vae_scale_factor)
                for spec in ([controlnet] if isinstance(controlnet, (str, Path)) else controlnet)]
        controlnets = [record for _, record in nets]
        modules = [net for net, _ in nets]   # several: diffusers wraps them in a MultiControlNetModel
        pipe = getattr(diffusers, CONTROLNET_PIPELINE_CLASSES[task]).from_pipe(
            pipe, controlnet=modules[0] if len(modules) == 1 else modules)
        pipe.set_progress_bar_config(disable=not progress, leave=False)
    pipe.to(device) if not cpu_offload else pipe.enable_model_cpu_offload()
    if device == "cpu" and dtype == "auto":   # bf16 only where a probe of this UNet shows it faster here
        from .precision import cpu_inference_dtype

        if cpu_inference_dtype(pipe.unet, min(pipe.tokenizer.model_max_length, 77)) == "bfloat16":
            import torch

            torch_dtype = torch.bfloat16
            pipe.to(dtype=torch_dtype)
    if attention_slicing:
        pipe.enable_attention_slicing()
    if vae_tiling:
        pipe.vae.enable_tiling()
    if vae_slicing:
        pipe.vae.enable_slicing()
    fast = {"channels_last": channels_last, "fuse_qkv": fuse_qkv, "compile": compile}
    apply_fast_paths(pipe, **fast)
    result = Model(pipe=pipe, source=source, device=device, dtype=torch_dtype, task=task, loras=loras,
                   embeddings=embeddings, controlnets=controlnets, weights_hash=weights_hash(source),
                   fast={k: v for k, v in fast.items() if v})
    result.pipeline(task)  # refuses a task that the UNet cannot do (a 9-channel UNet and text2img)
    return result
