"""Generation with the tiny pipelines: reproducibility, agreement with diffusers, strength, schedulers, sharing."""

import numpy as np
import pytest
import torch
from helpers import pixels

import difflab
from difflab import InputError
from difflab.pipelines import scheduler_label

FAST = dict(num_inference_steps=4)

# Measured on this project's CPU (float32): batch item i and a single run of seed+i differ by at most one
# 8-bit level. Their initial noise is bit-identical; the batched convolutions sum in another order.
BATCH_TOLERANCE_CPU = 1


def diffusers_pipe(task, model="tiny"):
    """The same tiny model, loaded by plain diffusers, with no difflab in between."""
    import diffusers
    from difflab.pipelines import PIPELINE_CLASSES
    from difflab.tiny import tiny_path
    cls = getattr(diffusers, PIPELINE_CLASSES[task])
    pipe = cls.from_pretrained(tiny_path(model), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_same_seed_is_bit_identical_and_seeds_differ(sd):
    a = difflab.generate(sd, prompt="a red fox", seed=7, **FAST)[0]
    b = difflab.generate(sd, prompt="a red fox", seed=7, **FAST)[0]
    c = difflab.generate(sd, prompt="a red fox", seed=8, **FAST)[0]
    assert (pixels(a.image) == pixels(b.image)).all()
    assert np.abs(pixels(a.image) - pixels(c.image)).mean() > 5


@pytest.mark.parametrize("task", ["text2img", "img2img", "inpaint"])
def test_batch_item_i_matches_single_run_of_seed_plus_i(sd, photo, task, monkeypatch):
    extra = {} if task == "text2img" else {"image": photo, "strength": 0.75}
    if task == "inpaint":
        extra["boxes"] = [(8, 8, 40, 40)]
    pipe = sd.pipeline(task)
    noises = []
    original = pipe.prepare_latents
    monkeypatch.setattr(pipe, "prepare_latents", lambda *a, **k: (noises.append(out := original(*a, **k)), out)[1])
    batch = difflab.generate(sd, task=task, prompt="a fox", seed=100, num_images=3, scheduler="euler_a", **extra,
                             **FAST)
    assert [g.record["seed"] for g in batch] == [100, 101, 102]
    for i in range(3):
        single = difflab.generate(sd, task=task, prompt="a fox", seed=100 + i, scheduler="euler_a", **extra, **FAST)
        first = lambda x: x[0] if isinstance(x, tuple) else x  # noqa: E731  (inpaint returns a tuple)
        assert torch.equal(first(noises[0])[i], first(noises[-1])[0])  # the very same initial noise
        assert np.abs(pixels(batch[i].image) - pixels(single[0].image)).max() <= BATCH_TOLERANCE_CPU


def test_text2img_agrees_with_diffusers_exactly(sd):
    ours = difflab.generate(sd, prompt="a lighthouse", negative_prompt="blurry", seed=3, guidance_scale=5.0,
                            num_inference_steps=5, height=64, width=48)[0]
    pipe = diffusers_pipe("text2img")
    ref = pipe("a lighthouse", negative_prompt="blurry", num_inference_steps=5, guidance_scale=5.0, height=64,
               width=48, generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert ours.image.size == (48, 64)
    assert (pixels(ours.image) == pixels(ref)).all()


def test_img2img_agrees_with_diffusers_exactly(sd, photo):
    ours = difflab.generate(sd, task="img2img", prompt="a castle", image=photo, strength=0.6, seed=4, **FAST)[0]
    ref = diffusers_pipe("img2img")("a castle", image=photo, strength=0.6, num_inference_steps=4,
                                    generator=torch.Generator("cpu").manual_seed(4)).images[0]
    assert (pixels(ours.image) == pixels(ref)).all()


@pytest.mark.parametrize("model", ["tiny", "tiny-inpaint"])
def test_inpaint_agrees_with_diffusers_exactly(sd, sd_inpaint, photo, model):
    from difflab.masks import make_mask
    handle = sd if model == "tiny" else sd_inpaint
    ours = difflab.generate(handle, task="inpaint", prompt="a green dragon", image=photo,
                            boxes=[(16, 16, 48, 48)], seed=5, strength=0.9, **FAST)[0]
    ref = diffusers_pipe("inpaint", model)("a green dragon", image=photo, mask_image=make_mask((64, 64), [(16, 16, 48, 48)]),
                                           strength=0.9, num_inference_steps=4, height=64, width=64,
                                           generator=torch.Generator("cpu").manual_seed(5)).images[0]
    assert (pixels(ours.image) == pixels(ref)).all()


@pytest.mark.parametrize("task,steps,strength", [("img2img", 10, 0.5), ("img2img", 7, 0.3), ("inpaint", 10, 0.75),
                                                 ("img2img", 4, 0.25)])
def test_strength_runs_int_steps_times_strength(sd, photo, task, steps, strength):
    calls = []
    extra = {"boxes": [(0, 0, 32, 32)]} if task == "inpaint" else {}

    def count(pipe, step, timestep, kwargs):
        calls.append(int(timestep))
        return kwargs

    out = difflab.generate(sd, task=task, prompt="x", image=photo, strength=strength, num_inference_steps=steps,
                           seed=0, callback=count, **extra)
    assert len(calls) == int(steps * strength)
    assert out[0].record["strength"] == strength


@pytest.mark.parametrize("fields,message", [
    (dict(num_inference_steps=3, strength=0.3), r"strength: 0.3 x num_inference_steps 3 runs int\(0.9\) = 0"),
    (dict(strength=0.0), r"strength: 0.0 is not allowed; use a number in \(0, 1\]"),
    (dict(strength=1.5), r"strength: 1.5 is not allowed"),
])
def test_bad_strength_is_refused_before_diffusers(sd, photo, fields, message):
    with pytest.raises(InputError, match=message):
        difflab.generate(sd, task="img2img", prompt="x", image=photo, **fields)


def test_default_strength_per_task(sd, photo):
    assert difflab.generate(sd, task="img2img", prompt="x", image=photo, seed=0, **FAST)[0].record["strength"] == 0.8
    out = difflab.generate(sd, task="inpaint", prompt="x", image=photo, boxes=[(0, 0, 8, 8)], seed=0, **FAST)
    assert out[0].record["strength"] == 1.0


@pytest.mark.parametrize("name", list(difflab.SCHEDULERS))
def test_every_scheduler_by_name(sd, name):
    out = difflab.generate(sd, prompt="x", seed=0, scheduler=name, num_inference_steps=3)[0]
    cls_name, overrides, label = difflab.SCHEDULERS[name]
    assert type(sd.pipe.scheduler).__name__ == cls_name
    assert scheduler_label(sd.pipe.scheduler) == (name, label)
    assert out.record["sampler"] == label and f"Sampler: {label}," in out.infotext
    assert np.isfinite(pixels(out.image)).all() and pixels(out.image).std() > 0
    # built from the model's own scheduler config: its trained beta schedule is kept
    assert sd.pipe.scheduler.config.beta_schedule == "scaled_linear"


def test_karras_flag_is_reset_between_schedulers(sd):
    difflab.generate(sd, prompt="x", seed=0, scheduler="dpm++_2m_karras", num_inference_steps=3)
    assert sd.pipe.scheduler.config.use_karras_sigmas is True
    difflab.generate(sd, prompt="x", seed=0, scheduler="dpm++_2m", num_inference_steps=3)
    assert sd.pipe.scheduler.config.use_karras_sigmas is False


def test_unknown_scheduler_lists_the_valid_ones(sd):
    with pytest.raises(InputError) as err:
        difflab.generate(sd, prompt="x", scheduler="heunish")
    assert "scheduler: 'heunish' is not known" in str(err.value)
    assert all(name in str(err.value) for name in difflab.SCHEDULERS)


def test_eta_adds_seeded_noise_to_ddim(sd):
    base = difflab.generate(sd, prompt="x", seed=1, scheduler="ddim", eta=0.0, num_inference_steps=6)[0]
    noisy = difflab.generate(sd, prompt="x", seed=1, scheduler="ddim", eta=1.0, num_inference_steps=6)[0]
    again = difflab.generate(sd, prompt="x", seed=1, scheduler="ddim", eta=1.0, num_inference_steps=6)[0]
    assert (pixels(noisy.image) != pixels(base.image)).any()
    assert (pixels(noisy.image) == pixels(again.image)).all()
    assert "Eta: 1.0" in noisy.infotext


def test_switching_task_shares_the_same_modules(sd):
    inpaint, img2img = sd.pipeline("inpaint"), sd.pipeline("img2img")
    assert type(inpaint).__name__ == "StableDiffusionInpaintPipeline"
    for name in ("unet", "vae", "text_encoder", "tokenizer"):
        assert getattr(inpaint, name) is getattr(sd.pipe, name) is getattr(img2img, name)
    ptrs = lambda p: {t.data_ptr() for m in (p.unet, p.vae, p.text_encoder) for t in m.parameters()}  # noqa: E731
    assert ptrs(inpaint) == ptrs(sd.pipe)  # no second copy of any weight
    assert sd.pipeline("inpaint") is inpaint  # made once


def test_inpainting_unet_cannot_do_text2img(sd_inpaint):
    assert sd_inpaint.pipe.unet.config.in_channels == 9
    with pytest.raises(InputError, match="task: text2img needs a 4-channel UNet.*9-channel"):
        difflab.generate(sd_inpaint, prompt="x")


def test_keep_unmasked_pixels_exact_and_feathered_blend(sd, photo):
    out = difflab.generate(sd, task="inpaint", prompt="x", image=photo, boxes=[(16, 16, 48, 48)], seed=2,
                           keep_unmasked=True, **FAST)[0]
    got, original = pixels(out.image), pixels(photo)
    assert (got[:16] == original[:16]).all() and (got[:, 48:] == original[:, 48:]).all()
    assert (got[16:48, 16:48] != original[16:48, 16:48]).any()
    soft = difflab.generate(sd, task="inpaint", prompt="x", image=photo, boxes=[(16, 16, 48, 48)], seed=2,
                            mask_blur=2.0, **FAST)[0]
    far = pixels(soft.image)
    assert (far[:8] == original[:8]).all()  # far from the edge: exactly the input


def test_long_prompt_warns_and_records_the_dropped_words(sd):
    prompt = "a " + "very " * 20 + "long prompt about foxes"  # the tiny tokenizer reads one token per byte
    with pytest.warns(UserWarning, match="prompt: longer than the text encoder's 77 tokens") as caught:
        out = difflab.generate(sd, prompt=prompt, seed=0, num_inference_steps=2)[0]
    dropped = out.record["truncated"]["prompt"]
    assert prompt.endswith(dropped) and "foxes" in dropped and dropped in str(caught[0].message)
    assert difflab.generate(sd, prompt="short", seed=0, num_inference_steps=2)[0].record["truncated"] == {}


def test_callback_can_interrupt(sd):
    steps = []

    def stop_after_two(pipe, step, timestep, kwargs):
        steps.append(step)
        if step == 1:
            pipe._interrupt = True
        return kwargs

    difflab.generate(sd, prompt="x", seed=0, num_inference_steps=10, callback=stop_after_two)
    assert steps == [0, 1]


def test_bfloat16_on_cpu_runs_and_is_recorded(difflab_cache):
    model = difflab.load("tiny", dtype="bfloat16", progress=False)
    assert model.pipe.unet.dtype == torch.bfloat16
    out = difflab.generate(model, prompt="x", seed=0, **FAST)[0]
    assert out.record["dtype"] == "bfloat16" and pixels(out.image).std() > 0


def test_memory_options_keep_results_close(sd, difflab_cache):
    ref = difflab.generate(sd, prompt="x", seed=0, height=128, width=128, **FAST)[0]
    lean = difflab.load("tiny", attention_slicing=True, vae_tiling=True, progress=False)
    lean.pipe.vae.tile_sample_min_size = 64  # tile even a 128 px image, so tiling really runs
    lean.pipe.vae.tile_latent_min_size = 32
    out = difflab.generate(lean, prompt="x", seed=0, height=128, width=128, **FAST)[0]
    diff = np.abs(pixels(out.image) - pixels(ref.image))
    assert diff.mean() < 8 and diff.max() > 0  # tiled decoding blends tile seams: close, not equal


def test_device_dtype_rules():
    from difflab.pipelines import check_device_dtype, resolve_device, resolve_dtype
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype("auto", "cpu") == torch.float32 and resolve_dtype("auto", "cuda") == torch.float16
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(InputError, match="dtype: float16 is not supported on cpu"):
        check_device_dtype("cpu", "float16")
    with pytest.raises(InputError, match="device: 'tpu' is not allowed"):
        check_device_dtype("tpu", "auto")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="device: 'cuda' is not available here"):
            resolve_device("cuda")
        with pytest.raises(InputError, match="cpu_offload: needs a CUDA device"):
            difflab.load("tiny", cpu_offload=True)


@pytest.mark.gpu
def test_cuda_float16_batch_matches_single_within_tolerance(difflab_cache):
    model = difflab.load("tiny", device="cuda", progress=False)
    batch = difflab.generate(model, prompt="a fox", seed=10, num_images=3, **FAST)
    for i in range(3):
        single = difflab.generate(model, prompt="a fox", seed=10 + i, **FAST)[0]
        assert np.abs(pixels(batch[i].image) - pixels(single.image)).max() <= 3


def test_auto_dtype_on_the_cpu_follows_a_probe_of_the_model(difflab_cache, monkeypatch, capsys):
    import json

    from difflab import precision

    monkeypatch.delenv("DIFFLAB_CPU_DTYPE")                        # unpinned: as users run it
    auto = difflab.load("tiny", device="cpu", progress=False)     # this machine's probe decided, and remembered it
    probes = json.loads((difflab_cache / "precision.json").read_text())
    params = sum(p.numel() for p in auto.pipe.unet.parameters())
    (speedup,) = [v for k, v in probes.items() if f"denoising with UNet2DConditionModel, {params} parameters" in k]
    assert auto.dtype == (torch.bfloat16 if speedup >= precision.SPEEDUP_NEEDED else torch.float32)
    assert auto.pipe.unet.dtype == auto.dtype
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda signature, step: 2.0)    # a CPU where bf16 is fast
    fast = difflab.load("tiny", device="cpu", progress=False)
    assert fast.dtype == torch.bfloat16 and fast.pipe.unet.dtype == torch.bfloat16
    assert difflab.generate(fast, prompt="x", seed=1, num_inference_steps=2)[0].record["dtype"] == "bfloat16"
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda signature, step: pytest.fail("asked: no probe"))
    assert difflab.load("tiny", device="cpu", dtype="float32", progress=False).dtype == torch.float32
    monkeypatch.setenv("DIFFLAB_CPU_DTYPE", "bfloat16")                                # pinned: no probe either
    assert difflab.load("tiny", device="cpu", progress=False).dtype == torch.bfloat16


def test_the_bf16_probe_stops_once_a_round_is_decisive():
    import time as clock
    from difflab.precision import _speedup

    for bf16_cost, rounds in ((0.02, 1), (0.0021, 3)):   # bf16 10x slower: one round; about as fast: all three
        calls = []

        def step(bf16, cost=bf16_cost):
            calls.append(bf16)
            clock.sleep(cost if bf16 else 0.002)

        ratio = _speedup(step)
        assert calls.count(True) == 1 + rounds and calls.count(False) == 1 + rounds
        assert (ratio < 0.5) == (rounds == 1)
