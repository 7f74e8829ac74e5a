"""Training a Stable Diffusion model: one readable loop for every stage (nanoGPT's train.py in spirit).

A stage trains the parts its config names and keeps the rest frozen:
- `train: [vae]`: the autoencoder alone, on pixels: L1 reconstruction, weighted up where the objects are (the
  shapes world's masks; objects are a few percent of the pixels and a plain loss learns the background first),
  plus a small KL term (Rombach et al. 2022). It ends by setting the VAE's latent scaling factor (1 / std).
- `train: [unet, text_encoder]`: the denoiser and the text encoder jointly, as the latent diffusion paper's
  text-conditional model was, on latents encoded once by the frozen VAE; epsilon prediction under Stable
  Diffusion 1.5's noise schedule; captions dropped with `data.caption_dropout` for classifier-free guidance.
Everything random at step s is drawn from generators seeded by (seed, s, rank), so a resumed run continues
exactly as an uninterrupted one. The run folder: config.yaml (the precision `auto` chose is written there),
metrics.jsonl, samples/step-*.png, checkpoints/step-*/, and model/ (a diffusers folder from the EMA weights).
"""

from __future__ import annotations

import copy
import math
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
from .config import TrainConfig
from .data import Dataset, shapes, to_model_range
from .models import SD15_BETAS, Parts, load_parts, save_pipeline

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


def denoising_loss(unet, text_encoder, noise_scheduler, z0, ids, g, snr_gamma: float | None) -> torch.Tensor:
    """Epsilon-prediction MSE; with `snr_gamma`, each timestep weighted by min(SNR, gamma) / SNR (Min-SNR, Hang et
    al. 2023): the many nearly clean timesteps stop dominating, and layout and colour are learnt sooner."""
    from diffusers.training_utils import compute_snr

    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(z0),), generator=g).to(z0.device)
    noise = torch.randn(z0.shape, generator=g).to(z0.device)
    context = text_encoder(ids)[0]
    pred = unet(noise_scheduler.add_noise(z0, noise, t), t, context).sample
    per_item = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
    if snr_gamma is None:
        return per_item.mean()
    snr = compute_snr(noise_scheduler, t)
    return (per_item * snr.clamp(max=snr_gamma) / snr).mean()


@torch.no_grad()
def save_samples(parts: Parts, cfg: TrainConfig, data: Dataset, path, device) -> Path:
    """The VAE stage: inputs over their reconstructions. The other stages: the sample prompts x seeds."""
    if "vae" in cfg.train:
        x0 = to_model_range(data.images[:8]).to(device)
        parts.vae.eval()
        recon = parts.vae.decode(parts.vae.encode(x0).latent_dist.mean).sample.float().cpu()
        rows = [[[to_pil(x)] for x in x0.cpu()], [[to_pil(x)] for x in recon]]
        grid = labelled_grid(rows, [""] * 8, ["input", "reconstruction"], f"{cfg.name}: VAE", 4_000_000)
    else:
        from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

        pipe = StableDiffusionPipeline(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
                                       unet=parts.unet, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False, scheduler=DPMSolverMultistepScheduler(
                                           **SD15_BETAS, steps_offset=1, use_karras_sigmas=True))
        pipe.set_progress_bar_config(disable=True)
        s = cfg.sample
        rows = []
        for prompt in s.prompts:
            gens = [torch.Generator().manual_seed(seed) for seed in s.seeds]
            images = pipe(prompt, num_inference_steps=s.num_inference_steps, guidance_scale=s.guidance_scale,
                          num_images_per_prompt=len(gens), generator=gens).images
            rows.append([[im] for im in images])
        grid = labelled_grid(rows, [f"seed {x}" for x in s.seeds], s.prompts,
                             f"{cfg.name}: DPM++ 2M Karras, {s.num_inference_steps} steps, CFG {s.guidance_scale}",
                             4_000_000)
    return runs.save_image(grid, path)


def train(cfg: TrainConfig, out=runs.DEFAULT_ROOT, resume=None, progress: bool = True,
          stop_after: int | None = None) -> Path:
    """Train (or resume) one stage and return the run folder; the model is in <run>/model/ when it finishes.
    `stop_after` ends the loop early at that step (tests)."""
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

    # --- data, parts (trainable and frozen), what one step's loss is
    data = shapes(cfg.data, progress=progress and main)
    if len(data) < cfg.batch_size * world:
        raise InputError(f"data.size: {len(data)} items are fewer than one batch ({cfg.batch_size} x {world})")
    parts = load_parts(cfg)
    for name in ("vae", "unet", "text_encoder"):
        getattr(parts, name).requires_grad_(name in cfg.train).to(device)
    trainable = torch.nn.ModuleDict({name: getattr(parts, name) for name in cfg.train})
    noise_scheduler = DDPMScheduler(**SD15_BETAS, clip_sample=False)
    if "vae" not in cfg.train:  # the frozen VAE encodes every image once
        latents = encode_latents(parts.vae, data.images, device)
        ids, empty = token_ids(parts.tokenizer, data.captions), token_ids(parts.tokenizer, [""])[0]

    def loss_at(model, step: int) -> torch.Tensor:
        """The loss of this rank's batch at `step`; everything random in it comes from (seed, step, rank)."""
        g = torch.Generator().manual_seed(step_seed(cfg.seed, step, rank))
        torch.manual_seed(step_seed(cfg.seed, step, rank) + 1)
        idx = batch_indices(len(data), cfg.batch_size, step, cfg.seed, rank, world)
        if "vae" in cfg.train:
            return vae_loss(model["vae"], to_model_range(data.images[idx]).to(device), data.masks[idx].to(device),
                            g, cfg)
        drop = torch.rand(len(idx), generator=g) < cfg.data.caption_dropout
        batch_ids = torch.where(drop[:, None], empty, ids[idx]).to(device)
        text_encoder = model["text_encoder"] if "text_encoder" in cfg.train else parts.text_encoder
        unet = model["unet"] if "unet" in cfg.train else parts.unet
        return denoising_loss(unet, text_encoder, noise_scheduler, latents[idx].to(device), batch_ids, g,
                              cfg.snr_gamma)

    # --- precision: `auto` times this very step in float32 and bf16 on a CPU (rank 0 decides for all)
    def probe_step(bf16: bool) -> None:
        trainable.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_at(trainable, 0)
        loss.backward()
        trainable.zero_grad(set_to_none=True)

    params = sum(p.numel() for p in trainable.parameters())
    signature = f"train {'+'.join(cfg.train)}, {params} parameters, batch {cfg.batch_size}"
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

    # --- EMA, optimizer, learning-rate warm-up (or all of them as a checkpoint left them)
    ema = copy.deepcopy(trainable).requires_grad_(False)
    optimizer = torch.optim.AdamW(trainable.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(cfg, s))
    step = 0
    if resume:
        found = checkpoints.latest(run_dir)
        if found is None:
            raise InputError(f"resume: {str(run_dir)!r} has no checkpoint to resume from")
        step = checkpoints.load_training_state(found, trainable, ema, optimizer, lr_scheduler)
    trainable, optimizer = accelerator.prepare(trainable, optimizer)
    model = accelerator.unwrap_model(trainable)

    end = min(cfg.steps, stop_after) if stop_after else cfg.steps
    bar = tqdm(total=cfg.steps, initial=step, disable=not (progress and main), unit="step", desc=cfg.name)
    tracker = tracking.make(cfg.tracker, run_dir) if main else tracking.Tracker(run_dir)
    tracker.log_params(resolved)
    metrics = MetricsLog(run_dir, tracker, bar, step if resume and main else None)
    with runs.status(run_dir if main else None, "train-sd", tracker):
        while step < end:
            # --- loss, backward, clip, step
            trainable.train()
            with accelerator.autocast():
                loss = loss_at(model, step)
            accelerator.backward(loss)
            grad_norm = accelerator.clip_grad_norm_(trainable.parameters(), cfg.grad_clip)
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1

            # --- EMA of the trainable weights (float32)
            ema_update(ema, model, _ema_decay(cfg, step))

            # --- log
            metrics.count(cfg.batch_size * world)
            loss_all = accelerator.reduce(loss.detach().float(), "mean").item()
            bar.update(1)
            if main and (step % cfg.log_every == 0 or step == end):
                metrics.log(step, loss_all, lr, grad_norm, world)

            # --- sample grids from the EMA weights, checkpoints, the finished model
            last = step == cfg.steps
            if main and (step % cfg.sample_every == 0 or last):
                grid = save_samples(_with_ema(parts, ema), cfg, data, run_dir / "samples" / f"step-{step:07d}.png",
                                    device)
                tracker.log_image(grid, "samples", {"step": step}, step)
            if main and (step % cfg.checkpoint_every == 0 or last):
                checkpoints.save(run_dir, step, model, ema, optimizer, lr_scheduler, resolved, cfg.keep_checkpoints)
            if main and last:
                finished = _with_ema(parts, ema)
                if "vae" in cfg.train:
                    set_scaling_factor(finished.vae, data, device)
                save_pipeline(finished, run_dir / "model")
            accelerator.wait_for_everyone()
    bar.close()
    return run_dir


def _with_ema(parts: Parts, ema: torch.nn.ModuleDict) -> Parts:
    """The parts with the EMA weights in place of the trained ones (copies; training goes on with its own)."""
    swapped = {name: copy.deepcopy(ema[name]).eval() if name in ema else getattr(parts, name)
               for name in ("vae", "unet", "text_encoder")}
    return Parts(**swapped, tokenizer=parts.tokenizer)


@torch.no_grad()
def set_scaling_factor(vae, data: Dataset, device, n: int = 1024) -> float:
    """Stable Diffusion scales latents to unit variance (its 0.18215): 1 / std of the posterior means."""
    vae.register_to_config(scaling_factor=1.0)
    std = encode_latents(vae, data.images[:n], device).std().item()
    vae.register_to_config(scaling_factor=round(1.0 / std, 5))
    return vae.config.scaling_factor
