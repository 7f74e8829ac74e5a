"""Training a DDPM: one readable loop (nanoGPT's train.py and EDM's training loop in spirit); its config is
in config.py.

Everything random at step s (the batch, flips, timesteps, noise, label dropout, dropout inside the network) is
drawn from generators seeded by (seed, s, rank). A checkpoint therefore needs only the step beside the weights,
optimizer and learning-rate state, and a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import yaml

from .. import config as configs
from .. import checkpoints, runs, threads, tracking
from ..training import MetricsLog, ema_update, step_seed
from ..grids import labelled_grid
from ..errors import InputError
from .config import TrainConfig
from .data import batch_indices, load_dataset, to_model_range, to_pil
from .diffusion import training_loss
from .generation import sample_images
from .schedules import Schedule
from .unet import UNet


def ema_decay(cfg: TrainConfig, step: int) -> float:
    return min(cfg.ema_decay, (1 + step) / (10 + step)) if cfg.ema_warmup else cfg.ema_decay


def save_sample_grid(model, sched, cfg: TrainConfig, path, class_names, seed: int = 0) -> Path:
    """A grid from `model`: one row per class (class-conditional) or rows of 8."""
    classes = cfg.model.num_classes
    n = cfg.sample.per_class * (classes or 1)
    labels = torch.arange(classes).repeat_interleave(cfg.sample.per_class) if classes else None
    images = sample_images(model, sched, n, sampler=cfg.sample.sampler, steps=cfg.sample.steps, eta=cfg.sample.eta,
                           guidance_scale=cfg.sample.guidance_scale, labels=labels, seed=seed,
                           objective=cfg.diffusion.objective)
    pils = [to_pil(im) for im in images]
    width = cfg.sample.per_class if classes else 8
    rows = [[[im] for im in pils[i:i + width]] for i in range(0, len(pils), width)]
    rows[-1] += [["missing"]] * (width - len(rows[-1]))
    row_labels = [class_names[i] for i in range(classes)] if classes else [""] * len(rows)
    title = f"{cfg.name}: {cfg.sample.sampler} {cfg.sample.steps} steps, guidance {cfg.sample.guidance_scale}"
    return runs.save_image(labelled_grid(rows, [""] * width, row_labels, title, 4_000_000), path)


def train(cfg: TrainConfig, out=runs.DEFAULT_ROOT, resume=None, progress: bool = True,
          stop_after: int | None = None) -> Path:
    """Train (or resume) and return the run folder. `stop_after` ends the loop early at that step (tests)."""
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list
    from tqdm.auto import tqdm

    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()  # a notebook may train twice with other precisions; keeps the process group
    accelerator = Accelerator(mixed_precision={"fp32": "no"}.get(cfg.mixed_precision, cfg.mixed_precision),
                              cpu=cfg.device == "cpu" or threads.cpu_workers())
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process

    # --- run folder: rank 0 creates it (or resumes it) and tells the others
    run_dir = Path(resume) if resume else (runs.new_run_dir(cfg.name, out) if main else None)
    if world > 1:
        run_dir = Path(broadcast_object_list([str(run_dir)])[0])
    resolved = configs.to_dict(cfg)
    if main and not resume:
        runs.atomic_write(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))

    # --- data, network, EMA, optimizer, learning-rate warm-up, noise schedule
    data = load_dataset(cfg.data)
    if cfg.model.num_classes is not None and cfg.model.num_classes != data.num_classes:
        raise InputError(f"model.num_classes: {cfg.model.num_classes} but dataset {cfg.data.name} has "
                         f"{data.num_classes} classes")
    torch.manual_seed(cfg.seed)
    model = UNet(cfg.model)
    ema = copy.deepcopy(model).requires_grad_(False)
    fused = {"fused": True} if accelerator.device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.adam_betas),
                                  weight_decay=cfg.weight_decay, **fused)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
    sched = Schedule.named(cfg.diffusion.schedule, cfg.diffusion.timesteps)
    step = 0
    if resume:
        found = checkpoints.latest(run_dir)
        if found is None:
            raise InputError(f"resume: {str(run_dir)!r} has no checkpoint to resume from")
        step = checkpoints.load_training_state(found, model, ema, optimizer, lr_scheduler)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model, optimizer = accelerator.prepare(model, optimizer)  # the LR scheduler is stepped by hand, once a step
    net = torch.compile(model) if cfg.compile else model
    ema.to(accelerator.device)
    device = accelerator.device

    end = min(cfg.steps, stop_after) if stop_after else cfg.steps
    bar = tqdm(total=cfg.steps, initial=step, disable=not (progress and main), unit="step", desc=cfg.name)
    tracker = tracking.make(cfg.tracker, run_dir) if main else tracking.Tracker(run_dir)
    tracker.log_params(resolved)
    metrics = MetricsLog(run_dir, tracker, bar, step if resume and main else None)
    with runs.status(run_dir if main else None, "train", tracker):
        while step < end:
            # --- the batch and its randomness, all from (seed, step, rank)
            g = torch.Generator().manual_seed(step_seed(cfg.seed, step, rank))
            torch.manual_seed(step_seed(cfg.seed, step, rank) + 1)  # dropout inside the network
            idx = batch_indices(len(data.images), cfg.batch_size, step, cfg.seed, rank, world)
            x0 = to_model_range(data.images[idx])
            if cfg.data.flip:
                flip = torch.rand(len(idx), generator=g) < 0.5
                x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
            t = torch.randint(0, sched.timesteps, (len(idx),), generator=g)
            noise = torch.randn(x0.shape, generator=g)
            cond = {}
            if cfg.model.num_classes:
                drop = torch.rand(len(idx), generator=g) < cfg.label_dropout
                cond["y"] = torch.where(drop, cfg.model.num_classes, data.labels[idx]).to(device)
            x0, t, noise = x0.to(device), t.to(device), noise.to(device)
            if cfg.channels_last:
                x0, noise = x0.contiguous(memory_format=torch.channels_last), noise.contiguous(memory_format=torch.channels_last)

            # --- loss, backward, clip, step
            model.train()
            with accelerator.autocast():
                loss = training_loss(net, sched, x0, t, noise, cfg.diffusion.objective, cfg.diffusion.min_snr_gamma,
                                     **cond)
            accelerator.backward(loss)
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]  # the rate this step used
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1

            # --- EMA of the weights (float32)
            ema_update(ema, accelerator.unwrap_model(model), ema_decay(cfg, step))

            # --- log
            metrics.count(len(idx) * world)
            loss_all = accelerator.reduce(loss.detach().float(), "mean").item()
            bar.update(1)
            if main and (step % cfg.log_every == 0 or step == end):
                metrics.log(step, loss_all, lr, grad_norm, world)

            # --- sample grids from the EMA network, checkpoints
            if main and (step % cfg.sample_every == 0 or step == cfg.steps):
                grid = save_sample_grid(ema, sched, cfg, run_dir / "samples" / f"step-{step:07d}.png", data.class_names)
                tracker.log_image(grid, "samples", {"step": step}, step)
            if main and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
                checkpoints.save(run_dir, step, accelerator.unwrap_model(model), ema, optimizer, lr_scheduler,
                                resolved, cfg.keep_checkpoints)
            accelerator.wait_for_everyone()
    bar.close()
    return run_dir
