"""The Stable Diffusion trainer's configuration: strict dataclasses; YAML and --set only override them.

One config trains one stage of one model. What is trained (`train`: vae, unet, text_encoder), how (`method`: full
weights, LoRA adapters, DreamBooth, textual inversion, a ControlNet, an inpainting UNet), from what (`base`: a
model difflab loads, or None to build `architecture` from scratch) and on what (`data`: the shapes world or a folder
of images) is configuration, so the same loop trains the shapes model's VAE, then its text encoder and UNet (configs/shapes/), and fine-tunes
any model (configs/finetune/).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import config as configs
from .. import tracking
from ..errors import InputError

PARTS = ("vae", "unet", "text_encoder")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
METHODS = ("full", "lora", "dreambooth", "textual_inversion", "controlnet", "inpaint")


@dataclass
class VAEConfig:
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64])   # factor 2**(levels - 1)
    layers_per_block: int = 1
    latent_channels: int = 4


@dataclass
class UNetConfig:
    block_out_channels: list[int] = field(default_factory=lambda: [64, 128, 128])
    layers_per_block: int = 1
    attention_head_dim: int = 8
    cross_attention_levels: list[bool] = field(default_factory=lambda: [True, True, True])


@dataclass
class TextConfig:
    hidden_size: int = 128           # also the UNet's cross-attention width
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4


@dataclass
class ArchitectureConfig:
    image_size: int = 64
    vae: VAEConfig = field(default_factory=VAEConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    text: TextConfig = field(default_factory=TextConfig)


@dataclass
class DataConfig:
    name: str = "shapes"             # shapes: the shapes world's training split | folder: images in `folder`
    size: int = 20_000               # shapes: items of the training split, rendered once and cached
    caption_dropout: float = 0.1     # empty caption with this probability: the unconditional model for CFG
    object_weight: float = 20.0      # VAE stage: loss weight of object pixels (objects are a few % of the image)
    folder: str | None = None        # folder: images with captions in NAME.txt beside them or in metadata.jsonl
    instance_prompt: str | None = None   # one caption for every image (DreamBooth), instead of caption files
    crop: str = "center"             # center | random: the square cut from an image resized to the model's size
    flip: bool = False               # random horizontal flips
    upscale: bool = False            # allow images smaller than the model's size (resized up); refused otherwise


@dataclass
class LoRAConfig:
    """Low-rank adapters (Hu et al. 2021) on the attention projections, with peft."""
    rank: int = 4
    alpha: float = 4.0               # the update is scaled by alpha / rank
    targets: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    text_encoder: bool = False       # also adapt the text encoder's q/k/v/out projections


@dataclass
class DreamBoothConfig:
    """DreamBooth (Ruiz et al. 2022): `data.instance_prompt`, or else every image's caption, holds a rare `identifier`
    (captions can say more of each image: "a red sks shape"); prior preservation trains
    on `class_images` images of `class_prompt` made by the base model itself, weighted by `prior_loss_weight`.
    `class_prompt` may be a list: image i is made from prompt i mod n, so the prior keeps every prompt it names."""
    identifier: str = "sks"
    weights: str = "lora"            # lora (adapters, see `lora`) | full (the UNet's own weights)
    class_prompt: str | list[str] = ""
    class_images: int = 0            # 0: no prior preservation
    prior_loss_weight: float = 1.0
    class_steps: int = 20            # how the base model makes the class images (DPM++ 2M Karras)
    class_guidance: float = 4.0


@dataclass
class TextualInversionConfig:
    """Textual inversion (Gal et al. 2022): one new token's embedding is all that is trained."""
    token: str = "<new>"
    initializer: str = "shape"       # a word whose embedding the new token starts from


@dataclass
class InpaintConfig:
    """An inpainting model (Stable Diffusion's inpainting recipe): the UNet reads 9 channels, the noisy latents, the
    mask and the masked image's latents. Each training item is masked one of three ways, with these shares: the
    objects of one colour and shape, captioned "a COLOUR SHAPE" (the shapes world's masks: what an edit repaints);
    a random box, with the item's caption; the rest the whole image (text-to-image, item's caption)."""
    objects: float = 0.7
    boxes: float = 0.2
    min_box: float = 0.125           # a box's sides are at least this fraction of the image


@dataclass
class ValidationConfig:
    """Held-out images scored at fixed timesteps and noise (comparable across steps), and images at fixed prompts
    and seeds collected into one grid over steps (rows: prompt x seed, columns: steps)."""
    held_out: int = 0                # images of the data kept out of training for the validation loss
    timesteps: list[int] = field(default_factory=lambda: [100, 300, 500, 700, 900])


@dataclass
class SampleConfig:
    """Sample grids during training: fixed prompts and seeds, one row per prompt, one column per seed."""
    prompts: list[str] = field(default_factory=lambda: ["a red circle", "two blue squares",
                                                        "a yellow triangle at the top left",
                                                        "a green circle to the left of a purple square"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    num_inference_steps: int = 20
    guidance_scale: float = 4.0


@dataclass
class TrainConfig:
    name: str = "shapes"
    seed: int = 0
    base: str | None = None          # a model to start from (folder, hub id, shapes, tiny); None: build `architecture`
    architecture: ArchitectureConfig = field(default_factory=ArchitectureConfig)
    train: list[str] = field(default_factory=lambda: ["unet", "text_encoder"])
    fresh: list[str] = field(default_factory=list)   # parts built new from `architecture` instead of taken from base
    data: DataConfig = field(default_factory=DataConfig)
    steps: int = 5000
    batch_size: int = 64
    lr: float = 5e-4
    warmup: int = 200
    lr_schedule: str = "cosine"      # after warm-up: cosine (decays to 0 at `steps`) | constant
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    kl_weight: float = 1e-6          # VAE stage
    snr_gamma: float | None = 5.0    # UNet stage: Min-SNR loss weighting (None: plain epsilon MSE)
    mixed_precision: str = "auto"    # auto: a short probe on this machine decides (recorded in the run)
    device: str = "auto"             # auto | cpu
    tracker: str = "local"
    log_every: int = 25
    sample_every: int = 1000
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    sample: SampleConfig = field(default_factory=SampleConfig)
    method: str = "full"
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    dreambooth: DreamBoothConfig = field(default_factory=DreamBoothConfig)
    textual_inversion: TextualInversionConfig = field(default_factory=TextualInversionConfig)
    inpaint: InpaintConfig = field(default_factory=InpaintConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    gradient_checkpointing: bool = False
    gradient_accumulation: int = 1

    @property
    def uses_lora(self) -> bool:
        return self.method == "lora" or (self.method == "dreambooth" and self.dreambooth.weights == "lora")

    def validate(self) -> "TrainConfig":
        self._validate_method()
        if not self.train or any(p not in PARTS for p in self.train):
            raise InputError(f"train: {self.train!r} is not allowed; choose from {', '.join(PARTS)}")
        if any(p not in PARTS for p in self.fresh) or (self.base is not None and "vae" in self.fresh):
            raise InputError(f"fresh: {self.fresh!r} is not allowed; choose from unet, text_encoder (the VAE "
                             f"comes from the base model)")
        if "vae" in self.train and len(self.train) > 1:
            raise InputError("train: the VAE is trained alone (its own stage), before the text encoder and UNet")
        if "vae" not in self.train and self.base is None:
            raise InputError("base: training the UNet or text encoder needs a base model with a trained VAE "
                             "(the VAE stage's model folder)")
        self._validate_data()
        size = self.architecture.image_size
        factor = 2 ** (len(self.architecture.vae.block_out_channels) - 1)
        if size % factor:
            raise InputError(f"architecture.image_size: {size} is not divisible by the VAE factor {factor}")
        if self.data.size < 1:
            raise InputError(f"data.size: {self.data.size} is not allowed; the dataset needs at least one item")
        if not 0 <= self.data.caption_dropout < 1:
            raise InputError(f"data.caption_dropout: {self.data.caption_dropout} is not allowed; use [0, 1)")
        if self.lr_schedule not in ("cosine", "constant"):
            raise InputError(f"lr_schedule: {self.lr_schedule!r} is not allowed; use cosine or constant")
        if self.mixed_precision not in PRECISIONS:
            raise InputError(f"mixed_precision: {self.mixed_precision!r} is not allowed; use {', '.join(PRECISIONS)}")
        if self.device not in ("auto", "cpu"):
            raise InputError(f"device: {self.device!r} is not allowed; use auto or cpu (GPUs: accelerate launch)")
        tracking.check(self.tracker)
        for key in ("steps", "batch_size", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints",
                    "gradient_accumulation"):
            if getattr(self, key) < 1:
                raise InputError(f"{key}: {getattr(self, key)} is not allowed; use an integer >= 1")
        if len(self.architecture.unet.cross_attention_levels) != len(self.architecture.unet.block_out_channels):
            raise InputError("architecture.unet.cross_attention_levels: give one flag per block_out_channels entry")
        return self


    def _validate_method(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"method: {self.method!r} is not known; choose one of {', '.join(METHODS)}")
        if self.method != "full" and self.base is None:
            raise InputError(f"base: method {self.method} fine-tunes a model; name one (a folder, hub id, shapes)")
        if self.method == "controlnet":
            if self.validation.held_out < 1:
                raise InputError("validation.held_out: method controlnet draws its sample grid from held-out "
                                 "(caption, control image) pairs; hold out at least 1")
            if self.data.crop != "center" or self.data.flip:
                raise InputError("data.crop: a ControlNet's image and control image must stay aligned; use crop "
                                 "center and flip false")
        if self.method == "inpaint":
            ip = self.inpaint
            if "unet" not in self.train:
                raise InputError(f"train: {self.train!r}; method inpaint trains the unet (and the text_encoder if "
                                 f"named)")
            if self.validation.held_out < 1:
                raise InputError("validation.held_out: method inpaint draws its sample grid from held-out images with "
                                 "their masks; hold out at least 1")
            for key in ("objects", "boxes"):
                if not 0 <= getattr(ip, key) <= 1:
                    raise InputError(f"inpaint.{key}: {getattr(ip, key)} is not allowed; use a share in [0, 1]")
            if ip.objects + ip.boxes > 1:
                raise InputError(f"inpaint.objects + inpaint.boxes: {ip.objects} + {ip.boxes} is over 1; the rest "
                                 f"(whole-image masks) cannot be negative")
            if not 0 < ip.min_box <= 1:
                raise InputError(f"inpaint.min_box: {ip.min_box} is not allowed; use a fraction in (0, 1]")
            if ip.objects and self.data.flip:
                raise InputError("data.flip: true would flip the images but not the objects' masks; method inpaint "
                                 "with inpaint.objects needs flip false")
            if ip.objects and self.data.name != "shapes":
                raise InputError(f"inpaint.objects: {ip.objects} needs the shapes world's object masks; with "
                                 f"data.name {self.data.name} use 0 (boxes and whole images)")
        if self.method != "full" and "vae" in self.train:
            raise InputError(f"train: method {self.method} trains unet or text_encoder, not the VAE")
        if self.uses_lora:
            if self.lora.rank <= 0:
                raise InputError(f"lora.rank: {self.lora.rank} is not allowed; use an integer >= 1")
            if self.lora.alpha <= 0:
                raise InputError(f"lora.alpha: {self.lora.alpha} is not allowed; use a number > 0")
            if not self.lora.targets:
                raise InputError("lora.targets: empty; name the modules to adapt, e.g. [to_q, to_k, to_v, to_out.0]")
        if self.method == "dreambooth":
            db = self.dreambooth
            if db.weights not in ("lora", "full"):
                raise InputError(f"dreambooth.weights: {db.weights!r} is not allowed; use lora or full")
            prompt = self.data.instance_prompt   # None: each image's own caption, checked when the data is read
            if prompt is not None and db.identifier not in prompt.split():
                raise InputError(f"data.instance_prompt: {prompt!r} does not hold the identifier {db.identifier!r} "
                                 f"(dreambooth.identifier); e.g. 'a {db.identifier} shape'")
            if not isinstance(db.class_prompt, str) and not all(p.strip() for p in db.class_prompt):
                raise InputError(f"dreambooth.class_prompt: {db.class_prompt!r} holds an empty prompt; give each "
                                 f"prompt its words, or one prompt as a string")
            if db.class_images < 0 or (db.class_images and not db.class_prompt):
                raise InputError(f"dreambooth.class_images: {db.class_images} needs a dreambooth.class_prompt and "
                                 f"a count >= 0 (0: no prior preservation)")
            if db.prior_loss_weight < 0:
                raise InputError(f"dreambooth.prior_loss_weight: {db.prior_loss_weight} is not allowed; use >= 0")
        if self.method == "textual_inversion":
            ti = self.textual_inversion
            if not ti.token.strip() or " " in ti.token:
                raise InputError(f"textual_inversion.token: {ti.token!r} is not allowed; use one word, e.g. <heart>")
            prompt = self.data.instance_prompt
            if prompt is not None and ti.token not in prompt.split():
                raise InputError(f"data.instance_prompt: {prompt!r} does not hold the token {ti.token!r} "
                                 f"(textual_inversion.token)")

    def _validate_data(self) -> None:
        d = self.data
        if d.name not in ("shapes", "folder"):
            raise InputError(f"data.name: {d.name!r} is not known; use shapes or folder")
        if d.name == "folder" and not d.folder:
            raise InputError("data.folder: missing; data.name folder needs the folder of images")
        if d.name == "shapes" and self.method not in ("full", "controlnet", "inpaint"):
            raise InputError(f"data.name: shapes is the world's training split; method {self.method} needs a folder "
                             f"(data.name: folder, data.folder: ...; `difflab shapes-folder` writes one)")
        if d.crop not in ("center", "random"):
            raise InputError(f"data.crop: {d.crop!r} is not allowed; use center or random")
        if self.validation.held_out < 0:
            raise InputError(f"validation.held_out: {self.validation.held_out} is not allowed; use an integer >= 0")
        if any(not 0 <= t < 1000 for t in self.validation.timesteps):
            raise InputError(f"validation.timesteps: {self.validation.timesteps} is not allowed; use integers in "
                             f"[0, 1000)")


def load_config(path=None, overrides=()) -> TrainConfig:
    data = configs.load_yaml(path) if path else {}
    return configs.from_dict(TrainConfig, configs.apply_overrides(data, list(overrides))).validate()
