"""Generating images with a trained DDPM: seeded batches (`sample_images`, used by training, evaluation and the
notebooks) and the run folder of `difflab sample`. The sampling algorithms themselves are in samplers.py."""

from __future__ import annotations

import torch

from .. import runs
from ..errors import InputError
from ..grids import labelled_grid
from .checkpoint import load_model
from .data import to_pil as pil
from .samplers import SAMPLERS, ddim_sample, ddpm_sample
from .schedules import Schedule


def sample_images(model, sched: Schedule, n: int, *, sampler: str = "ddim", steps: int = 50, eta: float = 0.0,
                  guidance_scale: float = 1.0, labels: torch.Tensor | None = None, seed: int = 0,
                  objective: str = "eps", batch_size: int = 256, keep_every: int | None = None,
                  clip_x0: bool = True, progress: bool = False):
    """`n` images (float, [-1, 1]) with seeds seed .. seed+n-1: image i is the same in any batch.

    labels: (n,) class labels for a class-conditional network (guidance uses its null label).
    clip_x0: clip each predicted x_0 to the data range [-1, 1] (pixel-space models; as diffusers does).
    Returns images, or (images, kept steps) with keep_every.
    """
    if sampler not in SAMPLERS:
        raise InputError(f"sampler: {sampler!r} is not known; choose one of {', '.join(SAMPLERS)}")
    if not isinstance(n, int) or n < 1:
        raise InputError(f"n: {n!r} is not allowed; use an integer >= 1")
    cfg = model.config
    device = next(model.parameters()).device
    if labels is not None and cfg.num_classes is None:
        raise InputError("class: this model is not class-conditional; drop --class")
    if labels is not None and not ((labels >= 0) & (labels < cfg.num_classes)).all():
        raise InputError(f"class: labels must be in [0, {cfg.num_classes - 1}]")
    model.eval()
    outputs, kept = [], []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        gens = [torch.Generator().manual_seed(seed + start + i) for i in range(count)]
        noise = torch.cat([torch.randn((1, cfg.in_channels, cfg.image_size, cfg.image_size), generator=g)
                           for g in gens]).to(device)
        cond = null = None
        if labels is not None:
            y = labels[start:start + count].to(device)
            cond, null = {"y": y}, {"y": torch.full_like(y, model.null_label)}
        common = dict(objective=objective, generator=gens, guidance_scale=guidance_scale, cond=cond,
                      null_cond=null, keep_every=keep_every, clip_x0=clip_x0, progress=progress)
        if sampler == "ddim":
            out = ddim_sample(model, noise, sched, steps, eta, **common)
        else:
            out = ddpm_sample(model, noise, sched, **common)
        if keep_every:
            out, steps_kept = out
            kept.append(steps_kept)
        outputs.append(out.float().cpu())
    images = torch.cat(outputs)
    if not keep_every:
        return images
    merged = [type(s)(s.t, torch.cat([k[i].x_t for k in kept]), torch.cat([k[i].pred_x0 for k in kept]))
              for i, s in enumerate(kept[0])]
    return images, merged


def sample_to_folder(checkpoint_path, *, sampler=None, steps=None, eta=None, guidance_scale=None, classes=None,
                     n: int = 64, seed: int = 0, every: int | None = None, out="results"):
    """`difflab sample`: a labelled grid, the individual images (named by index, class and seed), and with
    `every` the trajectory (x_t and predicted x_0 every K steps). Returns the run folder."""
    model, cfg, step = load_model(checkpoint_path)
    s = cfg.sample.override(sampler, steps, eta, guidance_scale)
    sampler, steps, eta, guidance_scale = s.sampler, s.steps, s.eta, s.guidance_scale
    if steps > cfg.diffusion.timesteps:
        raise InputError(f"steps: {steps} is more than the model's T = {cfg.diffusion.timesteps}")
    labels = None
    if classes is not None:
        labels = torch.tensor([classes[i % len(classes)] for i in range(n)])
    elif cfg.model.num_classes:
        labels = torch.arange(n) % cfg.model.num_classes
    sched = Schedule.named(cfg.diffusion.schedule, cfg.diffusion.timesteps)
    result = sample_images(model, sched, n, sampler=sampler, steps=steps, eta=eta, guidance_scale=guidance_scale,
                           labels=labels, seed=seed, objective=cfg.diffusion.objective, keep_every=every,
                           progress=True)
    images, kept = result if every else (result, None)
    run = runs.new_run_dir(f"sample-{cfg.name}", out)

    pils = [pil(x) for x in images]
    for i, im in enumerate(pils):
        tag = f"-c{int(labels[i])}" if labels is not None else ""
        runs.save_image(im, run / "images" / f"{i:04d}{tag}-s{seed + i}.png")
    cols = 8
    rows = [[[im] for im in pils[i:i + cols]] for i in range(0, n, cols)]
    rows[-1] += [["-"]] * (cols - len(rows[-1]))
    title = (f"{cfg.name} step {step}: {sampler} {steps if sampler == 'ddim' else cfg.diffusion.timesteps} steps, "
             f"eta {eta}, guidance {guidance_scale}, seeds {seed}..{seed + n - 1}")
    runs.save_image(labelled_grid(rows, [""] * cols, [""] * len(rows), title), run / "grid.png")
    if kept:
        shown = min(n, 8)
        strip = [[[pil(k.x_t[i]) for k in kept]] for i in range(shown)] + \
                [[[pil(k.pred_x0[i]) for k in kept]] for i in range(shown)]
        labels_t = [f"x_t, image {i}" for i in range(shown)] + [f"predicted x_0, image {i}" for i in range(shown)]
        runs.save_image(labelled_grid(strip, [f"t = {', '.join(str(k.t) for k in kept)}"], labels_t,
                                      f"trajectory every {every} steps"), run / "trajectory.png")
    runs.write_json(run / "sample.json", {"checkpoint": str(checkpoint_path), "step": step, "sampler": sampler,
                                          "steps": steps, "eta": eta, "guidance_scale": guidance_scale,
                                          "classes": classes, "n": n, "seed": seed, "every": every})
    return run
