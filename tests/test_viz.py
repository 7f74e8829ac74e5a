"""The visual tools: each returns something whose contents are checked (sizes, frames, values, side effects)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import pixels
from difflab import InputError, viz
from difflab.ddpm.data import load_digits, to_model_range
from difflab.ddpm.samplers import Step
from difflab.ddpm.schedules import Schedule


def test_forward_process_rows_keep_one_noise_and_reach_noise():
    sched = Schedule.named("linear", 1000)
    x0 = to_model_range(load_digits(16).images[:2])
    grid = viz.forward_process(x0, sched, [0, 500, 999])
    again = viz.forward_process(x0, sched, [0, 500, 999])
    assert (pixels(grid) == pixels(again)).all()  # seeded
    assert grid.width > 3 * 128 and grid.height > 2 * 128  # 3 columns, 2 rows, thumbnails grown to >= 128 px
    with pytest.raises(InputError, match="timesteps"):
        viz.forward_process(x0, sched, [1000])


def test_schedule_figure_plots_each_schedule_alpha_bar_and_log_snr():
    fig = viz.schedule_figure(("linear", "cosine"), 100)
    left, right = fig.axes
    assert [line.get_label() for line in left.lines] == ["linear", "cosine"]
    ours = left.lines[1].get_ydata()
    assert np.allclose(ours, Schedule.named("cosine", 100).alphas_cumprod.numpy())
    snr = right.lines[0].get_ydata()
    assert snr[0] > 0 > snr[-1] and (np.diff(snr) < 0).all()  # log-SNR falls monotonically through zero


def test_gif_has_every_frame_and_loops(tmp_path):
    frames = [Image.new("RGB", (20, 10), (i * 40, 0, 0)) for i in range(5)]
    path = viz.save_gif(frames, tmp_path / "a.gif")
    gif = Image.open(path)
    assert gif.n_frames == 5 and gif.size == (20, 10) and gif.info["loop"] == 0
    gif.seek(3)
    assert gif.convert("RGB").getpixel((0, 0))[0] == pytest.approx(120, abs=8)
    with pytest.raises(InputError, match="frames"):
        viz.save_gif([], tmp_path / "b.gif")
    assert not (tmp_path / "b.gif").exists()


def test_steps_grid_and_frames_from_kept_sampler_steps():
    steps = [Step(t, torch.full((3, 1, 8, 8), v), torch.full((3, 1, 8, 8), -v)) for t, v in ((900, 1.0), (0, -1.0))]
    grid = viz.steps_grid(steps, "x_t", count=2)
    frames = viz.steps_frames(steps, "pred_x0", count=3)
    assert len(frames) == 2 and frames[0].size == frames[1].size
    assert grid.height < grid.width  # 2 rows (count) by 2 columns (steps) plus the row labels
    with pytest.raises(InputError, match="field"):
        viz.steps_grid(steps, "noise")


def test_image_grid_and_side_by_side_frames_check_their_shapes():
    a = [Image.new("RGB", (8, 8), "red")] * 3
    assert len(viz.frames_side_by_side({"a": a, "b": a}, ["1", "2", "3"])) == 3
    with pytest.raises(InputError, match="same number"):
        viz.frames_side_by_side({"a": a, "b": a[:2]})
    with pytest.raises(InputError, match="col_labels"):
        viz.image_grid({"a": a}, ["only one"])


def test_loss_figure_reads_the_metrics_of_a_run(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s, "lr": 1e-3}) + "\n"
                                                    for s in (1, 2, 3)))
    fig = viz.loss_figure(tmp_path)
    assert list(fig.axes[0].lines[0].get_ydata()) == [1.0, 0.5, 1 / 3]


@pytest.mark.parametrize("scheduler", ["ddim", "euler", "dpm++_2m_karras"])
def test_trajectory_ends_on_the_generated_image(sd, scheduler):
    traj = viz.denoising_trajectory(sd, prompt="a red fox", seed=3, num_inference_steps=7, every=3,
                                    scheduler=scheduler)
    assert traj.steps == [0, 3, 6] and len(traj.frames) == 3 and len(traj.labels) == 3
    # the last step's prediction of x_0 is the final latent: its decoding is the image (to float rounding)
    assert np.abs(pixels(traj.frames[-1]) - pixels(traj.images[0].image)).max() <= 2
    # and the first prediction is far from it: the trajectory really moves
    assert np.abs(pixels(traj.frames[0]) - pixels(traj.images[0].image)).mean() > 2
    assert traj.timesteps[0] > traj.timesteps[-1]


def test_cross_attention_maps_change_with_the_prompt_and_leave_no_trace(sd):
    before = sd.pipe.unet.attn_processors
    a = viz.cross_attention_maps(sd, prompt="a red fox", seed=1, num_inference_steps=3)
    b = viz.cross_attention_maps(sd, prompt="a fox in the snow", seed=1, num_inference_steps=3)
    after = sd.pipe.unet.attn_processors
    assert all(after[k] is before[k] for k in before)           # the original processors are back
    assert a.maps.shape == (1, len(a.tokens), 16, 16)
    # per position, attention over all prompt tokens is a share of 1 (softmax over the 77 tokens)
    assert float(a.maps.sum(1).max()) <= 1.0 + 1e-5 and float(a.maps.min()) >= 0
    assert not torch.allclose(a.token_map("f"), b.token_map("f"))  # same token, another prompt: another map
    plain = __import__("difflab").generate(sd, prompt="a red fox", seed=1, num_inference_steps=3)
    assert (pixels(plain[0].image) == pixels(a.images[0].image)).all()  # recording does not change the image
    panels = a.panels()
    assert panels.width > (len(a.tokens) + 1) * 64
    with pytest.raises(InputError, match="resolution: 5 .* choose one of \\[16\\]"):
        viz.cross_attention_maps(sd, prompt="a red fox", seed=1, num_inference_steps=2, resolution=5)
    with pytest.raises(InputError, match="token"):
        a.token_map("zebra")
