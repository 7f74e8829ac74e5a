"""Training a Stable Diffusion model: one readable loop for every stage and method (nanoGPT's train.py in spirit).

A stage trains what its config names (`train`, `method`: see methods.py) and keeps the rest frozen:
- `train: [vae]`: the autoencoder alone, on pixels: L1 reconstruction, weighted up where the objects are (the
  shapes world's masks; objects are a few percent of the pixels and a plain loss learns the background first),
  plus a small KL term (Rombach et al. 2022). It ends by setting the VAE's latent scaling factor (1 / std).
- everything else: the denoiser (its weights, or LoRA adapters on them) and/or the text encoder (its weights,
  adapters, or one new token's embedding) on latents of the frozen VAE; epsilon prediction under Stable
  Diffusion 1.5's noise schedule; captions dropped with `data.caption_dropout` for classifier-free guidance;
  DreamBooth's prior preservation adds the loss on the base model's own class images; a ControlNet adds its
  features of the control image; an inpainting UNet reads each item's mask and masked image's latents beside the
  noisy latents (the mask drawn per item: `data.inpaint_masks`), and is captioned to match its mask.
Everything random at step s is drawn from generators seeded by (seed, step, rank), so a resumed run continues
exactly as an uninterrupted one. The run folder: config.yaml (the precision `auto` chose is written there),
metrics.jsonl (with `val_loss` on held-out images), samples/step-*.png and samples/over-steps.png (every sample
prompt and seed against the steps), checkpoints/step-*/ (only the trained weights), and the output: model/ (a
diffusers folder from the EMA weights), lora/, embedding/ or controlnet/.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from .. import checkpoints, runs, threads, tracking
from .. import config as configs
from ..ddpm.data import batch_indices, to_pil
from ..errors import InputError
from ..grids import labelled_grid
from ..precision import training_precision
from ..training import MetricsLog, ema_update, step_seed
from . import methods
from .config import TrainConfig
from . import data as datasets
from .data import Dataset, to_model_range
from .models import SD15_BETAS, Parts, load_parts, vae_factor

ENCODE_BATCH = 256


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then constant or a cosine decay to zero at the last step."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.lr_schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))


def _ema_decay(cfg: TrainConfig, step: int) -> float:
    return min(cfg.ema_decay, (1 + step) / (10 + step))


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, device) -> torch.Tensor:
    """The VAE's posterior means of all images, scaled by its scaling factor: (N, C, h, w), computed once."""
    vae.eval()
    out = [vae.encode(to_model_range(images[i:i + ENCODE_BATCH]).to(device)).latent_dist.mean.float().cpu()
           for i in range(0, len(images), ENCODE_BATCH)]
    return torch.cat(out) * vae.config.scaling_factor


@torch.no_grad()
def token_ids(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def vae_loss(vae, x0, mask, g, cfg: TrainConfig) -> torch.Tensor:
    posterior = vae.encode(x0).latent_dist
    recon = vae.decode(posterior.sample(generator=g)).sample
    weight = 1 + (cfg.data.object_weight - 1) * mask.float()
    l1 = (weight * (recon.float() - x0).abs()).mean() / weight.mean()
    return l1 + cfg.kl_weight * posterior.kl().mean()


@torch.no_grad()
def inpaint_inputs(vae, images: torch.Tensor, masks: torch.Tensor, device) -> torch.Tensor:
    """What an inpainting UNet reads beside the noisy latents, as diffusers' inpainting pipeline makes it: the mask
    (1: repaint) at the latents' size (nearest), then the latents of the image with the masked pixels set to 0."""
    vae.eval()
    masked = to_model_range(images) * (masks < 0.5)
    z = vae.encode(masked.to(device)).latent_dist.mean.float() * vae.config.scaling_factor
    return torch.cat([F.interpolate(masks, size=z.shape[-2:]).to(device), z], dim=1)


def predict_noise(unet, z_t, t, context, controlnet=None, control=None, inpaint=None) -> torch.Tensor:
    """The UNet's epsilon; with a ControlNet, its features of the control image (in [0, 1], as diffusers' ControlNet
    pipelines give it) are added to the UNet's skip connections and middle block; an inpainting UNet reads the mask
    and masked image's latents (`inpaint_inputs`) beside z_t."""
    if inpaint is not None:
        z_t = torch.cat([z_t, inpaint.to(z_t.dtype)], dim=1)
    if controlnet is None:
        return unet(z_t, t, context).sample
    down, mid = controlnet(z_t, t, context, controlnet_cond=control, return_dict=False)
    return unet(z_t, t, context, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample


def denoising_loss(unet, text_encoder, noise_scheduler, z0, ids, g, snr_gamma: float | None, controlnet=None,
                   control=None, inpaint=None) -> torch.Tensor:
    """Per-item epsilon-prediction MSE; with `snr_gamma`, each timestep weighted by min(SNR, gamma) / SNR (Min-SNR,
    Hang et al. 2023): the many nearly clean timesteps stop dominating, and layout and colour are learnt sooner."""
    from diffusers.training_utils import compute_snr

    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(z0),), generator=g).to(z0.device)
    noise = torch.randn(z0.shape, generator=g).to(z0.device)
    context = text_encoder(ids)[0]
    pred = predict_noise(unet, noise_scheduler.add_noise(z0, noise, t), t, context, controlnet, control, inpaint)
    per_item = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
    if snr_gamma is None:
        return per_item
    snr = compute_snr(noise_scheduler, t)
    return per_item * snr.clamp(max=snr_gamma) / snr


@torch.no_grad()
def validation_loss(unet, text_encoder, noise_scheduler, z0, ids, timesteps: list[int], seed: int, controlnet=None,
                    control=None, inpaint=None) -> float:
    """Plain epsilon MSE of held-out latents at fixed timesteps with fixed noise: the same question at every step,
    so the numbers compare across steps (rising while the training loss falls: overfitting)."""
    noise = torch.randn((len(timesteps),) + tuple(z0.shape), generator=torch.Generator().manual_seed(seed))
    context = text_encoder(ids)[0]
    losses = []
    for t, n in zip(timesteps, noise.to(z0.device)):
        tt = torch.full((len(z0),), t, device=z0.device)
        pred = predict_noise(unet, noise_scheduler.add_noise(z0, n, tt), tt, context, controlnet, control, inpaint)
        losses.append(F.mse_loss(pred.float(), n).item())
    return sum(losses) / len(losses)


@dataclass
class SampleRow:
    """One row of the sample grids: its prompt, the pipeline's other inputs (a ControlNet's control image; the image
    and mask to inpaint), and the images shown before the samples, by column name."""
    prompt: str
    inputs: dict = field(default_factory=dict)
    shown: dict = field(default_factory=dict)


@torch.no_grad()
def sample_images(parts: Parts, cfg: TrainConfig, rows: list[SampleRow]) -> list[list]:
    """Each row's prompt (and inputs) x the sample seeds, DPM++ 2M Karras, with the pipeline the parts make: a
    ControlNet's, an inpainting one for a 9-channel UNet, else text-to-image."""
    import diffusers

    components = dict(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
                      safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                      scheduler=diffusers.DPMSolverMultistepScheduler(**SD15_BETAS, steps_offset=1,
                                                                      use_karras_sigmas=True))
    if parts.controlnet is not None:
        pipe = diffusers.StableDiffusionControlNetPipeline(**components, controlnet=parts.controlnet)
    elif parts.unet.config.in_channels != parts.unet.config.out_channels:
        pipe = diffusers.StableDiffusionInpaintPipeline(**components)
    else:
        pipe = diffusers.StableDiffusionPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    s = cfg.sample
    images = []
    for row in rows:
        gens = [torch.Generator().manual_seed(seed) for seed in s.seeds]
        images.append(pipe(row.prompt, num_inference_steps=s.num_inference_steps, guidance_scale=s.guidance_scale,
                           num_images_per_prompt=len(gens), generator=gens, **row.inputs).images)
    return images


def sample_rows(cfg: TrainConfig, held_out: Dataset, masks: torch.Tensor | None = None,
                captions: list[str] | None = None) -> list[SampleRow]:
    """The rows of the sample grids: the config's prompts; for a ControlNet, the first (up to 4) held-out captions
    with their control images (never trained on: does it follow new outlines?); for an inpainting model, the first
    held-out images with their validation masks and captions (is the masked region repainted as asked?)."""
    n = min(4, len(held_out))
    if cfg.method == "controlnet":
        controls = [to_pil(c) for c in to_model_range(held_out.controls[:n])]
        return [SampleRow(p, {"image": c}, {"control": c}) for p, c in zip(held_out.captions[:n], controls)]
    if cfg.method == "inpaint":
        from PIL import Image

        from ..masks import overlay

        rows = []
        for i in range(n):
            image = to_pil(to_model_range(held_out.images[i]))
            mask = Image.fromarray((masks[i, 0].numpy() * 255).astype("uint8"))
            rows.append(SampleRow(captions[i], {"image": image, "mask_image": mask},
                                  {"image": image, "mask": overlay(image, mask)}))
        return rows
    return [SampleRow(p) for p in cfg.sample.prompts]


@torch.no_grad()
def save_samples(parts: Parts, cfg: TrainConfig, data: Dataset, run_dir: Path, step: int, device,
                 rows: list[SampleRow]) -> Path:
    """The VAE stage: inputs over their reconstructions. The other stages: the sample rows x seeds at this step
    (samples/step-N.png), each image kept (samples/steps/), and samples/over-steps.png made again from them."""
    path = run_dir / "samples" / f"step-{step:07d}.png"
    if "vae" in cfg.train:
        x0 = to_model_range(data.images[:8]).to(device)
        recon = parts.vae.decode(parts.vae.encode(x0).latent_dist.mean).sample.float().cpu()
        grid = [[[to_pil(x)] for x in x0.cpu()], [[to_pil(x)] for x in recon]]
        return runs.save_image(labelled_grid(grid, [""] * 8, ["input", "reconstruction"], f"{cfg.name}: VAE",
                                             4_000_000), path)
    s = cfg.sample
    images = [list(row.shown.values()) + samples for row, samples in zip(rows, sample_images(parts, cfg, rows))]
    columns = list(rows[0].shown) + [f"seed {x}" for x in s.seeds]   # what each row shows first, then the seeds
    for i, row_images in enumerate(images):
        for name, image in zip(columns, row_images):
            runs.save_image(image, run_dir / "samples" / "steps" / f"step-{step:07d}" /
                            f"{i:02d}-{name.replace(' ', '-')}.png")
    prompts = [row.prompt for row in rows]
    grid = labelled_grid([[[im] for im in row_images] for row_images in images], columns, prompts,
                         f"{cfg.name}: DPM++ 2M Karras, {s.num_inference_steps} steps, CFG {s.guidance_scale}",
                         4_000_000)
    runs.save_image(_over_steps(run_dir, cfg, prompts), run_dir / "samples" / "over-steps.png")
    return runs.save_image(grid, path)


def _over_steps(run_dir: Path, cfg: TrainConfig, prompts: list[str]):
    """One grid of every sample so far: rows are (prompt, seed), columns the steps. When did it learn, when did it
    start to overfit (a ControlNet: when did it suddenly start to follow its control images)."""
    from PIL import Image

    steps = sorted((run_dir / "samples" / "steps").glob("step-*"))
    s = cfg.sample
    rows, labels = [], []
    for i, prompt in enumerate(prompts):
        for seed in s.seeds:
            labels.append(f"{prompt} / seed {seed}")
            row = []
            for step_dir in steps:
                f = step_dir / f"{i:02d}-seed-{seed}.png"
                row.append([Image.open(f).convert("RGB")] if f.is_file() else "missing")
            rows.append(row)
    return labelled_grid(rows, [f"step {int(f.name[5:])}" for f in steps], labels, f"{cfg.name}: samples over steps",
                         16_000_000)


@contextlib.contextmanager
def ema_weights(weights: dict, ema: dict):
    """The EMA weights in place of the trained ones for the duration (samples, validation), then back."""
    saved = {k: v.detach().clone() for k, v in weights.items()}
    with torch.no_grad():
        for k, v in weights.items():
            v.copy_(ema[k])
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in weights.items():
                v.copy_(saved[k])


def image_size(cfg: TrainConfig, parts: Parts) -> int:
    """The model's image size: the UNet's latent size times the VAE's factor (the architecture's with no base)."""
    if cfg.base is None:
        return cfg.architecture.image_size
    return parts.unet.config.sample_size * vae_factor(parts.vae)


def train(cfg: TrainConfig, out=runs.DEFAULT_ROOT, resume=None, progress: bool = True,
          stop_after: int | None = None) -> Path:
    """Train (or resume) one stage and return the run folder; its output (model/, lora/ or embedding/) is written
    when it finishes. `stop_after` ends the loop early at that step (tests)."""
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState
    from accelerate.utils import broadcast_object_list
    from diffusers import DDPMScheduler
    from tqdm.auto import tqdm

    AcceleratorState._reset_state()
    device_type = "cpu" if cfg.device == "cpu" or not torch.cuda.is_available() else "cuda"
    cpu = cfg.device == "cpu" or threads.cpu_workers()
    state = PartialState(cpu=cpu)
    rank, world, main, device = state.process_index, state.num_processes, state.is_main_process, state.device

    # --- parts, data (training, held out, DreamBooth's class images), what is trained
    parts = load_parts(cfg)
    size = image_size(cfg, parts)
    controls, inpaint = cfg.method == "controlnet", cfg.method == "inpaint"
    data = (datasets.shapes(cfg.data, progress=progress and main, controls=controls,
                            regions=inpaint and cfg.inpaint.objects > 0) if cfg.data.name == "shapes"
            else datasets.folder(cfg.data, size, controls=controls,
                                 identifier=cfg.dreambooth.identifier if cfg.method == "dreambooth" else None))
    if cfg.validation.held_out >= len(data):
        raise InputError(f"validation.held_out: {cfg.validation.held_out} leaves no training data of {len(data)} "
                         f"items; hold out fewer")
    data, held_out = data.split(cfg.validation.held_out)
    if len(data) < cfg.batch_size * world:
        key = "data.size" if cfg.data.name == "shapes" else "batch_size"
        raise InputError(f"{key}: {len(data)} training items are fewer than one batch ({cfg.batch_size} x {world})")
    db = cfg.dreambooth
    prior = None
    if cfg.method == "dreambooth" and db.class_images:
        with state.main_process_first():
            prior = datasets.class_images(cfg.base, db.class_prompt, db.class_images, db.class_steps, db.class_guidance,
                                 size, progress=progress and main)
    trainable = methods.prepare(parts, cfg)
    for name in ("vae", "unet", "text_encoder", "controlnet"):
        if getattr(parts, name) is not None:
            getattr(parts, name).to(device)
    weights = trainable.weights
    noise_scheduler = DDPMScheduler(**SD15_BETAS, clip_sample=False)
    augment = cfg.data.crop == "random" or cfg.data.flip
    rows = []   # the sample grids' rows (SampleRow); the VAE stage shows reconstructions instead
    if "vae" not in cfg.train:  # the frozen VAE encodes the images once (each batch, when they are augmented)
        latents = None if augment else encode_latents(parts.vae, data.images, device)
        ids, empty = token_ids(parts.tokenizer, data.captions), token_ids(parts.tokenizer, [""])[0]
        if prior is not None:
            prior_latents, prior_ids = encode_latents(parts.vae, prior.images, device), \
                token_ids(parts.tokenizer, prior.captions)
        val_captions, val_masks, val_inpaint = held_out.captions, None, None
        if inpaint:   # fixed masks (and their captions) for the held-out images, drawn once from the seed
            val_masks, val_captions = datasets.inpaint_masks(held_out, torch.arange(len(held_out)), cfg.inpaint, size,
                                                             torch.Generator().manual_seed(cfg.seed))
            val_inpaint = inpaint_inputs(parts.vae, held_out.images, val_masks, device)
        if len(held_out):
            val_latents, val_ids = encode_latents(parts.vae, held_out.images, device), \
                token_ids(parts.tokenizer, val_captions).to(device)
        rows = sample_rows(cfg, held_out, val_masks, val_captions)

    def part(model, name: str):
        return model[name] if name in model else getattr(parts, name)

    def control_images(dataset: Dataset, idx) -> torch.Tensor | None:
        return None if dataset.controls is None else (dataset.controls[idx].float() / 255).to(device)

    def loss_at(model, step: int) -> torch.Tensor:
        """The loss of this rank's batch at `step`; everything random in it comes from (seed, step, rank)."""
        g = torch.Generator().manual_seed(step_seed(cfg.seed, step, rank))
        torch.manual_seed(step_seed(cfg.seed, step, rank) + 1)
        idx = batch_indices(len(data), cfg.batch_size, step, cfg.seed, rank, world)
        if "vae" in cfg.train:
            return vae_loss(model["vae"], to_model_range(data.images[idx]).to(device), data.masks[idx].to(device),
                            g, cfg)
        images = data.batch(idx, cfg.data.crop, cfg.data.flip, g) if latents is None or inpaint else None
        z0 = latents[idx] if latents is not None else encode_latents(parts.vae, images, device)
        batch_ids, masked = ids[idx], None
        if inpaint:   # each item masked (objects, a box, everything), captioned to match; see InpaintConfig
            masks, captions = datasets.inpaint_masks(data, idx, cfg.inpaint, size, g)
            batch_ids, masked = token_ids(parts.tokenizer, captions), inpaint_inputs(parts.vae, images, masks, device)
        if prior is not None:   # DreamBooth: the instance batch and as many class images, in one forward pass
            pdx = batch_indices(len(prior), cfg.batch_size, step, cfg.seed + 1, rank, world)
            z0, batch_ids = torch.cat([z0, prior_latents[pdx]]), torch.cat([batch_ids, prior_ids[pdx]])
        drop = torch.rand(len(batch_ids), generator=g) < cfg.data.caption_dropout
        batch_ids = torch.where(drop[:, None], empty, batch_ids).to(device)
        per_item = denoising_loss(part(model, "unet"), part(model, "text_encoder"), noise_scheduler,
                                  z0.to(device), batch_ids, g, cfg.snr_gamma, part(model, "controlnet"),
                                  control_images(data, idx), masked)
        if prior is None:
            return per_item.mean()
        return per_item[:len(idx)].mean() + db.prior_loss_weight * per_item[len(idx):].mean()

    def validate(model) -> float | None:
        if "vae" in cfg.train or not len(held_out):
            return None
        return validation_loss(part(model, "unet"), part(model, "text_encoder"), noise_scheduler,
                               val_latents, val_ids, cfg.validation.timesteps, cfg.seed, part(model, "controlnet"),
                               control_images(held_out, slice(None)), val_inpaint)

    # --- precision: `auto` times this very step in float32 and bf16 on a CPU (rank 0 decides for all)
    modules = trainable.modules

    def probe_step(bf16: bool) -> None:
        modules.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_at(modules, 0)
        loss.backward()
        modules.zero_grad(set_to_none=True)

    params = sum(p.numel() for p in weights.values())
    signature = f"train {'+'.join(modules)}, {params} parameters, batch {cfg.batch_size}"
    precision = training_precision(cfg.mixed_precision, device_type, signature, probe_step) if main else None
    if world > 1:
        precision = broadcast_object_list([precision])[0]
    accelerator = Accelerator(mixed_precision={"fp32": "no"}.get(precision, precision), cpu=cpu)

    # --- run folder: rank 0 creates it (or resumes it) and tells the others; the chosen precision is recorded
    run_dir = Path(resume) if resume else (runs.new_run_dir(cfg.name, out) if main else None)
    if world > 1:
        run_dir = Path(broadcast_object_list([str(run_dir)])[0])
    resolved = {**configs.to_dict(cfg), "mixed_precision": precision}
    if main and not resume:
        runs.atomic_write(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))

    # --- EMA (float32), optimizer, learning-rate warm-up (or all of them as a checkpoint left them)
    ema = {k: v.detach().float().clone() for k, v in weights.items()}
    optimizer = torch.optim.AdamW(weights.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(cfg, s))
    step = 0
    if resume:
        found = checkpoints.latest(run_dir)
        if found is None:
            raise InputError(f"resume: {str(run_dir)!r} has no checkpoint to resume from")
        step = checkpoints.load_training_state(found, weights, ema, optimizer, lr_scheduler)
    wrapped, optimizer = accelerator.prepare(modules, optimizer)
    model = accelerator.unwrap_model(wrapped)

    end = min(cfg.steps, stop_after) if stop_after else cfg.steps
    bar = tqdm(total=cfg.steps, initial=step, disable=not (progress and main), unit="step", desc=cfg.name)
    tracker = tracking.make(cfg.tracker, run_dir) if main else tracking.Tracker(run_dir)
    tracker.log_params(resolved)
    metrics = MetricsLog(run_dir, tracker, bar, step if resume and main else None)
    k = cfg.gradient_accumulation
    with runs.status(run_dir if main else None, "train-sd", tracker):
        while step < end:
            # --- loss (over k micro-batches), backward, clip, step
            wrapped.train()
            for micro in range(k):
                with accelerator.autocast():
                    loss = loss_at(model, step * k + micro) / k
                accelerator.backward(loss)
            grad_norm = accelerator.clip_grad_norm_(weights.values(), cfg.grad_clip)
            optimizer.step()
            if trainable.after_step:
                trainable.after_step()
            lr = optimizer.param_groups[0]["lr"]
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1

            # --- EMA of the trainable weights (float32)
            ema_update(ema, weights, _ema_decay(cfg, step))

            # --- samples and validation loss from the EMA weights, log, checkpoints, the finished output
            last = step == cfg.steps
            sample_now = main and (step % cfg.sample_every == 0 or last)
            val = None
            if sample_now:
                with ema_weights(weights, ema):
                    wrapped.eval()
                    val = validate(model)
                    grid = save_samples(parts, cfg, data, run_dir, step, device, rows)
                tracker.log_image(grid, "samples", {"step": step}, step)
            metrics.count(cfg.batch_size * world * k)
            loss_all = accelerator.reduce(loss.detach().float() * k, "mean").item()
            bar.update(1)
            if main and (step % cfg.log_every == 0 or step == end or val is not None):
                metrics.log(step, loss_all, lr, grad_norm, world, **({"val_loss": val} if val is not None else {}))
            if main and (step % cfg.checkpoint_every == 0 or last):
                checkpoints.save(run_dir, step, weights, ema, optimizer, lr_scheduler, resolved, cfg.keep_checkpoints)
            if main and last:
                with ema_weights(weights, ema):
                    wrapped.eval()
                    if "vae" in cfg.train:
                        set_scaling_factor(parts.vae, data, device)
                    methods.save_outputs(parts, cfg, run_dir, methods.record(cfg, parts, data.digest, step))
            accelerator.wait_for_everyone()
    bar.close()
    return run_dir


@torch.no_grad()
def set_scaling_factor(vae, data: Dataset, device, n: int = 1024) -> float:
    """Stable Diffusion scales latents to unit variance (its 0.18215): 1 / std of the posterior means."""
    vae.register_to_config(scaling_factor=1.0)
    std = encode_latents(vae, data.images[:n], device).std().item()
    vae.register_to_config(scaling_factor=round(1.0 / std, 5))
    return vae.config.scaling_factor
