"""difflab.ddpm against diffusers' schedulers, the reference: schedules, q_sample, one DDPM step, DDIM paths."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from difflab import InputError
from difflab.ddpm import (Schedule, beta_schedule, ddim_sample, ddim_timesteps, ddpm_sample, ddpm_step,
                          predict_eps_from_v, predict_v, predict_x0_from_eps, predict_x0_from_v, q_sample,
                          training_loss)

DIFFUSERS_NAME = {"linear": "linear", "cosine": "squaredcos_cap_v2", "sigmoid": "sigmoid"}


def reference(cls, name, T, **kw):
    scale = 1000 / T
    return cls(num_train_timesteps=T, beta_schedule=DIFFUSERS_NAME[name], beta_start=scale * 1e-4,
               beta_end=scale * 0.02, **kw)


def reference64(cls, name, T, **kw):
    """The diffusers scheduler computing in float64: diffusers keeps its schedule in float32 (which alone moves
    results by ~3e-6); the schedules are compared on their own above, the step algorithms here."""
    ref = reference(cls, name, T, **kw)
    ours = Schedule.named(name, T)
    ref.betas, ref.alphas, ref.alphas_cumprod = ours.betas, ours.alphas, ours.alphas_cumprod
    ref.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(ref, "final_alpha_cumprod"):
        ref.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64) if ref.config.set_alpha_to_one else ours.alphas_cumprod[0]
    return ref


def model_fn(x, t, **_):
    """A fixed, smooth stand-in for a network: deterministic in (x, t)."""
    t = t.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
    return 0.3 * torch.sin(x) + 0.1 * x * torch.cos(t / 170.0)


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid"])
@pytest.mark.parametrize("T", [100, 1000])
def test_alphas_cumprod_match_diffusers(name, T):
    betas = beta_schedule(name, T)
    assert betas.dtype == torch.float64 and betas.shape == (T,)
    ours = Schedule(betas).alphas_cumprod
    theirs = reference(DDPMScheduler, name, T).alphas_cumprod.double()
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)


def test_schedule_shapes_and_bad_input():
    cosine = beta_schedule("cosine", 1000)
    assert cosine.max() <= 0.999 and (cosine > 0).all()
    with pytest.raises(InputError, match="schedule: 'quadratic' is not known; choose one of linear, cosine, sigmoid"):
        beta_schedule("quadratic", 10)
    with pytest.raises(InputError, match="timesteps: 1 is not allowed; use an integer >= 2"):
        beta_schedule("linear", 1)


def test_q_sample_matches_add_noise():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64), torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 999])
    ours = q_sample(Schedule.named("linear", 1000), x0, t, noise)
    assert torch.allclose(ours, reference(DDPMScheduler, "linear", 1000).add_noise(x0, noise, t), atol=1e-5)
    assert torch.equal(ours, reference64(DDPMScheduler, "linear", 1000).add_noise(x0, noise, t))


@pytest.mark.parametrize("variance,theirs_name", [("small", "fixed_small"), ("large", "fixed_large")])
@pytest.mark.parametrize("t", [999, 500, 1, 0])
def test_one_ddpm_step_matches_diffusers(variance, theirs_name, t):
    sched = Schedule.named("linear", 1000)
    ref = reference64(DDPMScheduler, "linear", 1000, variance_type=theirs_name, clip_sample=True)
    g = torch.Generator().manual_seed(1)
    x_t, eps = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64), torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    theirs = ref.step(eps, t, x_t, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64) if t > 0 else None
    ours, x0 = ddpm_step(sched, eps, t, x_t, noise, variance=variance, clip_x0=True)
    assert torch.allclose(ours, theirs.prev_sample, atol=1e-5)
    assert torch.allclose(x0, theirs.pred_original_sample, atol=1e-5)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_eta0_trajectory_matches_diffusers(spacing, steps):
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = reference64(DDIMScheduler, "linear", 1000, clip_sample=False, set_alpha_to_one=True, steps_offset=0,
                      timestep_spacing=spacing)
    ref.set_timesteps(steps)
    assert ddim_timesteps(1000, steps, spacing) == ref.timesteps.tolist()
    x = noise.clone()
    for t in ref.timesteps:
        x = ref.step(model_fn(x, t.repeat(2)), t, x, eta=0.0).prev_sample
    ours = ddim_sample(model_fn, noise.clone(), beta_schedule("linear", 1000), steps, eta=0.0, spacing=spacing)
    assert ours.dtype == torch.float64
    assert torch.allclose(ours, x, atol=1e-5, rtol=0)


def test_ddim_eta1_with_the_same_noise_matches_diffusers():
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ref = reference64(DDIMScheduler, "linear", 1000, clip_sample=False, set_alpha_to_one=True)
    ref.set_timesteps(20)
    g = torch.Generator().manual_seed(9)
    x = noise.clone()
    for t in ref.timesteps:
        x = ref.step(model_fn(x, t.repeat(2)), t, x, eta=1.0, generator=g).prev_sample
    ours = ddim_sample(model_fn, noise.clone(), beta_schedule("linear", 1000), 20, eta=1.0,
                       generator=torch.Generator().manual_seed(9))
    assert torch.allclose(ours, x, atol=1e-4)


def test_v_and_x0_conversions_round_trip():
    sched = Schedule.named("cosine", 1000)
    g = torch.Generator().manual_seed(5)
    x0, eps = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64), torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([3, 400, 990])
    x_t = q_sample(sched, x0, t, eps)
    v = predict_v(sched, x0, t, eps)
    assert torch.allclose(predict_x0_from_v(sched, x_t, t, v), x0, atol=1e-9)
    assert torch.allclose(predict_eps_from_v(sched, x_t, t, v), eps, atol=1e-9)
    assert torch.allclose(predict_x0_from_eps(sched, x_t, t, eps), x0, atol=1e-6)


def test_losses_are_zero_for_a_perfect_network_and_min_snr_weights():
    sched = Schedule.named("linear", 1000)
    g = torch.Generator().manual_seed(6)
    x0, eps = torch.randn(4, 1, 4, 4, generator=g), torch.randn(4, 1, 4, 4, generator=g)
    t = torch.tensor([1, 10, 300, 900])
    oracle = {"eps": lambda x, tt: eps, "x0": lambda x, tt: x0, "v": lambda x, tt: predict_v(sched, x0, tt, eps)}
    for objective, model in oracle.items():
        assert training_loss(model, sched, x0, t, eps, objective=objective) < 1e-10
    zero = lambda x, tt: torch.zeros_like(x)  # noqa: E731: loss = mean(eps^2) per sample
    plain = training_loss(zero, sched, x0, t, eps, objective="eps")
    weighted = training_loss(zero, sched, x0, t, eps, objective="eps", min_snr_gamma=5.0)
    snr = sched.snr(t).float()
    per = (eps**2).mean(dim=(1, 2, 3))
    assert torch.allclose(plain, per.mean())
    assert torch.allclose(weighted, (per * snr.clamp(max=5.0) / snr).mean())


def test_ddpm_sample_is_seeded_per_image_and_keeps_intermediates():
    betas = beta_schedule("linear", 50)
    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    gens = lambda: [torch.Generator().manual_seed(s) for s in (10, 11)]  # noqa: E731
    a, kept = ddpm_sample(model_fn, noise, betas, generator=gens(), keep_every=10)
    b = ddpm_sample(model_fn, noise[1:], betas, generator=[torch.Generator().manual_seed(11)])
    assert torch.allclose(a[1:], b, atol=1e-6)  # image 1 does not depend on its batch mate
    assert [s.t for s in kept] == [49, 39, 29, 19, 9, 0] and kept[-1].x_t.shape == (2, 1, 4, 4)


def test_classifier_free_guidance_combines_conditional_and_null():
    def model(x, t, y):
        return x * 0 + y.to(x.dtype).reshape(-1, 1, 1, 1)  # predicts its label everywhere
    x = torch.zeros(2, 1, 2, 2)
    from difflab.ddpm.samplers import guided
    out = guided(model, x, torch.zeros(2, dtype=torch.long), 3.0, {"y": torch.tensor([2, 5])},
                 {"y": torch.tensor([10, 10])})
    assert torch.allclose(out[:, 0, 0, 0], torch.tensor([10 + 3 * (2 - 10), 10 + 3 * (5 - 10)], dtype=torch.float32))


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_steps=0), r"num_steps: 0 is not allowed; use an integer in \[1, 100\]"),
    (dict(num_steps=101), "num_steps: 101 is not allowed"),
    (dict(num_steps=10, eta=1.5), r"eta: 1.5 is not allowed; use a number in \[0, 1\]"),
    (dict(num_steps=10, spacing="middle"), "spacing: 'middle' is not known"),
    (dict(num_steps=10, objective="score"), "objective: 'score' is not known; choose one of eps, x0, v"),
])
def test_sampler_bad_input(kwargs, message):
    with pytest.raises(InputError, match=message):
        ddim_sample(model_fn, torch.zeros(1, 1, 2, 2), beta_schedule("linear", 100), **kwargs)
