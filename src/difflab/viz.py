"""Visual explanations: the forward process, noise schedules, denoising trajectories, cross-attention maps, GIFs.

Every function returns a PIL image, a list of frames or a matplotlib figure, so a notebook shows it inline and
saves it with `save_gif` / `save_figure` / `runs.save_image` (all atomic). Grids are the sweeps' labelled grids.

Two kinds of model are explained here: difflab's from-scratch DDPM (tensors in [-1, 1], a `Schedule`) and a
diffusers Stable Diffusion pipeline, observed through its step callback, a forward hook on the UNet, and an
attention processor that records cross-attention and is removed again afterwards.
"""

from __future__ import annotations

import io
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from . import runs
from .grids import labelled_grid
from .errors import InputError
from .params import GenerationParams


# --- images, grids, animations

def to_images(x) -> list[Image.Image]:
    """A batch (B, C, H, W) in [-1, 1] -> PIL images; a list of PIL images is returned as it is."""
    from .ddpm.data import to_pil

    return [to_pil(im) for im in x] if isinstance(x, torch.Tensor) else list(x)


def image_grid(rows: dict, col_labels=(), title: str = "") -> Image.Image:
    """A labelled grid: {row label: a batch tensor in [-1, 1] or a list of PIL images}, one image per column."""
    images = [to_images(r) for r in rows.values()]
    width = max(len(r) for r in images)
    cols = list(col_labels) or [""] * width
    if len(cols) != width:
        raise InputError(f"col_labels: {len(cols)} labels for {width} columns")
    cells = [[[im] for im in r] + ["" for _ in range(width - len(r))] for r in images]
    return labelled_grid(cells, cols, list(rows), title, max_pixels=6_000_000)


def frames_side_by_side(rows: dict, frame_labels=(), title: str = "") -> list[Image.Image]:
    """{label: frames}, all of one length -> one frame per step showing every row's frame side by side."""
    lengths = {len(f) for f in rows.values()}
    if len(lengths) != 1:
        raise InputError(f"rows: every row needs the same number of frames, got {sorted(lengths)}")
    n = lengths.pop()
    labels = list(frame_labels) or [""] * n
    return [image_grid({label: [frames[k]] for label, frames in rows.items()}, [labels[k]], title)
            for k in range(n)]


def save_gif(frames, path, duration_ms: int = 150, hold_last_ms: int = 1200) -> Path:
    """An animated GIF that loops, the last frame held a little longer; written atomically."""
    frames = to_images(frames)
    if not frames:
        raise InputError("frames: an animation needs at least one frame")
    size = frames[0].size
    frames = [f if f.size == size else f.resize(size, Image.LANCZOS) for f in frames]
    durations = [duration_ms] * (len(frames) - 1) + [hold_last_ms]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return runs.atomic_write(path, buf.getvalue())


def save_figure(fig, path, dpi: int = 110) -> Path:
    """A matplotlib figure as PNG, written atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return runs.atomic_write(path, buf.getvalue())


# --- the from-scratch DDPM: forward process, schedules, sampling steps

def forward_process(x0: torch.Tensor, sched, timesteps, seed: int = 0) -> Image.Image:
    """x_t = q_sample(x_0, t) for each image (rows) at each timestep (columns), one noise draw per image
    (DDPM eq. 4), so a row shows the same noise growing: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
    from .ddpm.diffusion import q_sample

    timesteps = [int(t) for t in timesteps]
    if not timesteps or not all(0 <= t < sched.timesteps for t in timesteps):
        raise InputError(f"timesteps: {timesteps} must lie in [0, {sched.timesteps - 1}]")
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    columns = [q_sample(sched, x0, torch.full((len(x0),), t), noise) for t in timesteps]  # each (B, C, H, W)
    rows = {f"image {i}": [c[i] for c in columns] for i in range(len(x0))}
    return image_grid({k: torch.stack(v) for k, v in rows.items()}, [f"t = {t}" for t in timesteps],
                      "The forward process q(x_t | x_0)")


def schedule_figure(names=("linear", "cosine", "sigmoid"), timesteps: int = 1000):
    """alpha_bar_t and log-SNR against t for each named beta schedule (two panels)."""
    import matplotlib.pyplot as plt

    from .ddpm.schedules import Schedule

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    t = torch.arange(timesteps)
    for name in names:
        ac = Schedule.named(name, timesteps).alphas_cumprod
        left.plot(t, ac, label=name)
        right.plot(t, torch.log(ac / (1 - ac)), label=name)
    left.set(title=r"$\bar\alpha_t$ (signal kept)", xlabel="t", ylabel=r"$\bar\alpha_t$")
    right.set(title=r"log SNR = $\log \bar\alpha_t / (1 - \bar\alpha_t)$", xlabel="t", ylabel="log SNR")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def loss_figure(run_dir):
    """The training loss (and learning rate) logged in a training run's metrics.jsonl."""
    import matplotlib.pyplot as plt

    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    if not records:
        raise InputError(f"run_dir: {str(run_dir)!r} has logged no metrics yet")
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot([r["step"] for r in records], [r["loss"] for r in records], label="loss (logged steps)")
    ax.set(xlabel="step", ylabel="loss", yscale="log", title="Training loss")
    ax.grid(alpha=0.3)
    lr = ax.twinx()
    lr.plot([r["step"] for r in records], [r["lr"] for r in records], color="tab:orange", alpha=0.6)
    lr.set_ylabel("learning rate", color="tab:orange")
    fig.tight_layout()
    return fig


def steps_grid(steps, field: str = "x_t", count: int = 8, title: str = "") -> Image.Image:
    """Kept sampler steps (ddpm.samplers.Step) as a grid: one row per sample, one column per kept step."""
    if field not in ("x_t", "pred_x0"):
        raise InputError(f"field: {field!r} is not known; choose x_t or pred_x0")
    rows = {f"sample {i}": [getattr(s, field)[i] for s in steps] for i in range(min(count, len(steps[0].x_t)))}
    return image_grid({k: torch.stack(v) for k, v in rows.items()}, [f"t = {s.t}" for s in steps], title)


def steps_frames(steps, field: str = "x_t", count: int = 8) -> list[Image.Image]:
    """One animation frame per kept step: the first `count` samples side by side, titled with t."""
    return [image_grid({field: getattr(s, field)[:count]}, title=f"t = {s.t}") for s in steps]


# --- Stable Diffusion: the denoising trajectory through the step callback

@dataclass
class Trajectory:
    """What one generation looked like on its way: the decoded prediction of the clean image at kept steps."""

    steps: list[int]            # the loop index of each kept step
    timesteps: list[float]      # the scheduler's timestep at each kept step
    frames: list[Image.Image]   # decoded predicted x_0 of image `index` at each kept step
    images: list                # the GeneratedImage results of the call

    @property
    def labels(self) -> list[str]:
        return [f"step {s + 1}\nt = {t:g}" for s, t in zip(self.steps, self.timesteps)]

    def strip(self, title: str = "") -> Image.Image:
        return image_grid({"predicted x0": self.frames}, self.labels, title)


def _alpha_bar(scheduler, t) -> float:
    """alpha_bar of the step just taken. Sigma-based schedulers (Euler, DPM++, UniPC, LMS) keep sigmas with
    sigma^2 = (1 - alpha_bar) / alpha_bar and may use fractional timesteps; the others index alphas_cumprod."""
    index = getattr(scheduler, "step_index", None)
    sigmas = getattr(scheduler, "sigmas", None)
    if index is not None and sigmas is not None and len(sigmas) >= index:
        sigma = float(sigmas[index - 1])
        return 1.0 / (1.0 + sigma * sigma)
    return float(scheduler.alphas_cumprod[int(t)])


@contextmanager
def _unet_calls(unet):
    """Record (sample, timestep, output) of every UNet call: the forward hook sees what the scheduler saw."""
    calls = []
    handle = unet.register_forward_hook(
        lambda module, args, kwargs, out: calls.append(
            (args[0] if args else kwargs["sample"], args[1] if len(args) > 1 else kwargs["timestep"],
             out[0] if isinstance(out, tuple) else out.sample)), with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


@torch.no_grad()
def _decode(pipe, latents: torch.Tensor) -> Image.Image:
    image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(image, output_type="pil")[0]


def denoising_trajectory(model, params: GenerationParams | None = None, *, every: int = 1, index: int = 0,
                         image=None, mask_image=None, **fields) -> Trajectory:
    """Generate as `difflab.generate` does and decode the predicted clean image x_0 every `every` steps.

    x_0 comes from the guided noise prediction: x_0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)
    (DDPM eq. 15; for v-prediction x_0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v). The UNet's input is x_t
    in the variance-preserving form for every scheduler (Euler-type schedulers scale it so before the call).
    """
    from .generate import _params, generate

    if not isinstance(every, int) or every < 1:
        raise InputError(f"every: {every!r} is not allowed; use an integer >= 1")
    params = _params(params, fields)
    pipe = model.pipeline(params.task)
    steps, timesteps, frames = [], [], []

    def on_step(p, i, t, kwargs):
        last = i == p._num_timesteps - 1 if hasattr(p, "_num_timesteps") else False
        if i % every and not last:
            return kwargs
        x_in, _, out = calls[-1]
        out, x_in = out[:, :4], x_in[:, :4]  # the inpainting UNet also reads the mask and masked image
        if p.do_classifier_free_guidance:
            uncond, cond = out.chunk(2)
            out, x_in = uncond + p.guidance_scale * (cond - uncond), x_in.chunk(2)[1]
        a = _alpha_bar(p.scheduler, t)
        if p.scheduler.config.prediction_type == "v_prediction":
            x0 = math.sqrt(a) * x_in - math.sqrt(1 - a) * out
        else:
            x0 = (x_in - math.sqrt(1 - a) * out) / math.sqrt(a)
        steps.append(i)
        timesteps.append(float(t))
        frames.append(_decode(p, x0[index:index + 1].to(p.vae.dtype)))
        return kwargs

    with _unet_calls(pipe.unet) as calls:
        images = generate(model, params, image=image, mask_image=mask_image, callback=on_step)
    return Trajectory(steps, timesteps, frames, images)


# Approximate RGB of Stable Diffusion 1.x/2.x latents: a fixed linear map of the 4 latent channels (the "latent RGB
# factors" that AUTOMATIC1111's and ComfyUI's cheap previews use). No VAE decode, so it costs nothing per step.
LATENT_RGB = torch.tensor([[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264],
                           [-0.184, -0.271, -0.473]])


def latent_preview(latents: torch.Tensor, scale: int = 8) -> Image.Image:
    """A cheap preview of one latent (4, h, w): the linear RGB map, upscaled `scale` times."""
    rgb = torch.einsum("chw,cr->hwr", latents[:4].float().cpu(), LATENT_RGB)
    rgb = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    image = Image.fromarray(rgb)
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


# --- Stable Diffusion: cross-attention maps

class _CrossAttentionRecorder:
    """Wraps a cross-attention layer's processor: the layer's output is the wrapped processor's own, unchanged;
    the attention probabilities softmax(Q K^T / sqrt(d)) are computed once more on the side and summed."""

    def __init__(self, inner, store: dict, name: str):
        self.inner, self.store, self.name = inner, store, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        if encoder_hidden_states is not None and hidden_states.ndim == 3:
            context = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross \
                else encoder_hidden_states
            query = attn.head_to_batch_dim(attn.to_q(hidden_states))
            key = attn.head_to_batch_dim(attn.to_k(context))
            probs = attn.get_attention_scores(query, key, None)             # (B * heads, Q, tokens)
            probs = probs.reshape(hidden_states.shape[0], attn.heads, *probs.shape[1:]).mean(1).float()
            total, count = self.store.get(probs.shape[1], (0, 0))
            self.store[probs.shape[1]] = (total + probs, count + 1)
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)


@contextmanager
def record_cross_attention(unet):
    """Install recording processors on every cross-attention layer (attn2) of a diffusers UNet; yields
    {query length: (summed probabilities (B, Q, tokens), calls)}; puts the original processors back."""
    original = unet.attn_processors
    store: dict = {}
    unet.set_attn_processor({name: _CrossAttentionRecorder(proc, store, name) if ".attn2." in name else proc
                             for name, proc in original.items()})
    try:
        yield store
    finally:
        unet.set_attn_processor(original)


@dataclass
class AttentionMaps:
    tokens: list[str]        # the prompt's tokens, without start and end markers
    maps: torch.Tensor       # (images, tokens, h, w): mean attention of each image position to each token
    images: list             # the GeneratedImage results of the call

    def token_map(self, token: str, index: int = 0) -> torch.Tensor:
        if token not in self.tokens:
            raise InputError(f"token: {token!r} is not in the prompt's tokens {self.tokens}")
        return self.maps[index, self.tokens.index(token)]

    def share_inside(self, token: str, mask, index: int = 0) -> tuple[float, float]:
        """The share of `token`'s attention that falls inside `mask` (a boolean array the image's size), and the
        mask's share of the image: a map that follows the object has the first well above the second."""
        attention = self.token_map(token, index).float()
        cells = torch.nn.functional.adaptive_avg_pool2d(torch.as_tensor(mask, dtype=torch.float32)[None],
                                                        attention.shape)[0]   # the mask's coverage of each cell
        return float((attention * cells).sum() / attention.sum()), float(cells.mean())

    def panels(self, index: int = 0, alpha: float = 0.55) -> Image.Image:
        """The image, then one panel per token: its attention map upsampled and overlaid on the image."""
        import matplotlib

        image = self.images[index].image
        colormap = matplotlib.colormaps["inferno"]
        panels = [image]
        for m in self.maps[index]:
            m = (m - m.min()) / (m.max() - m.min() + 1e-8)
            up = torch.nn.functional.interpolate(m[None, None], size=image.size[::-1], mode="bicubic")[0, 0]
            heat = Image.fromarray((colormap(up.clamp(0, 1).numpy())[..., :3] * 255).astype("uint8"))
            panels.append(Image.blend(image.convert("RGB"), heat, alpha))
        prompt = self.images[index].record["prompt"]
        return labelled_grid([[[p] for p in panels]], ["image", *self.tokens], [""],
                             f"Cross-attention per token: {prompt!r}", max_pixels=6_000_000)


def cross_attention_maps(model, params: GenerationParams | None = None, *, resolution: int = 16, image=None,
                         mask_image=None, **fields) -> AttentionMaps:
    """Generate and record, for each prompt token, where the image attends to it: cross-attention averaged
    over heads, layers whose map is `resolution` latent cells high, and all steps (the conditional half of
    classifier-free guidance only; prompt-to-prompt, Hertz et al. 2022, averages at 16x16 for SD at 512 px)."""
    from .generate import _params, generate

    params = _params(params, fields)
    pipe = model.pipeline(params.task)
    with record_cross_attention(pipe.unet) as store:
        images = generate(model, params, image=image, mask_image=mask_image)
    height, width = images[0].image.height // pipe.vae_scale_factor, images[0].image.width // pipe.vae_scale_factor
    shapes = {q: (round(math.sqrt(q * height / width)), round(math.sqrt(q * width / height))) for q in store}
    chosen = [q for q, (h, _) in shapes.items() if h == resolution]
    if not chosen:
        raise InputError(f"resolution: {resolution} is not one of this model's cross-attention map heights at "
                         f"this size; choose one of {sorted({h for h, _ in shapes.values()})}")
    total, count = store[chosen[0]]
    probs = total / count                                                     # (B, Q, tokens)
    if pipe.do_classifier_free_guidance:
        probs = probs.chunk(2)[1]
    ids = pipe.tokenizer(params.prompt).input_ids
    words = [t.replace("</w>", "") for t in pipe.tokenizer.convert_ids_to_tokens(ids)[1:-1]]
    h, w = shapes[chosen[0]]
    maps = probs[:, :, 1:1 + len(words)].permute(0, 2, 1).reshape(len(probs), len(words), h, w)
    return AttentionMaps(words, maps.cpu(), images)
