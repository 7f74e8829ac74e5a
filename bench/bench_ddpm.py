"""Training and sampling speed of difflab's from-scratch U-Net, side by side with diffusers' UNet2DModel.

Both networks have about the same number of parameters and run in the same training loop (AdamW, MSE on eps),
with the same batches: fp32 and bf16 autocast, channels_last off and on. Then sampling images/s of DDPM
(all T steps) against DDIM (50 steps). Each configuration is timed after warm-up steps; ratios are to
diffusers' UNet2DModel in fp32.

    python bench/bench_ddpm.py [--size 16] [--channels 32] [--batch 64] [--steps 20] [--device auto]
"""

import argparse
import time

import torch
import torch.nn.functional as F

from difflab.ddpm import Schedule, ddim_sample, ddpm_sample, q_sample
from difflab.ddpm.unet import UNet, UNetConfig


def ours(size, ch, channels):
    return UNet(UNetConfig(image_size=size, in_channels=channels, channels=ch, channel_mult=(1, 2, 2),
                           num_res_blocks=1, attention_resolutions=(), dropout=0.0, num_groups=8, num_classes=10))


def theirs(size, ch, channels):
    from diffusers import UNet2DModel

    net = UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1,
                      block_out_channels=(ch, 2 * ch, 2 * ch), down_block_types=("DownBlock2D",) * 3,
                      up_block_types=("UpBlock2D",) * 3, norm_num_groups=8, num_class_embeds=11)

    class Wrapped(torch.nn.Module):  # the call signature the samplers and the loop use
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, t, y=None):
            return self.net(x, t, class_labels=y).sample
    return Wrapped()


def train_speed(model, size, channels, batch, steps, bf16, channels_last, device):
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    sched = Schedule.named("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, channels, size, size, generator=g).to(device)
    if channels_last:
        x0 = x0.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    times = []
    for i in range(steps + 3):
        t = torch.randint(0, 1000, (batch,), generator=g).to(device)
        noise = torch.randn(x0.shape, generator=g).to(device)
        start = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = F.mse_loss(model(q_sample(sched, x0, t, noise), t, y).float(), noise)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return batch / (sum(times) / len(times))


@torch.no_grad()
def sample_speed(model, size, channels, n, device, sampler):
    model = model.to(device).eval()
    noise = torch.randn(n, channels, size, size).to(device)
    y = torch.arange(n).to(device) % 10
    betas = Schedule.named("linear", 1000)
    start = time.perf_counter()
    if sampler == "ddpm":
        ddpm_sample(model, noise, betas, cond={"y": y})
    else:
        ddim_sample(model, noise, betas, 50, cond={"y": y})
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--image-channels", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--bf16-steps", type=int, default=3, help="bf16 can be very slow on CPUs without fast kernels")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    c = args.image_channels
    nets = {"difflab UNet": ours, "diffusers UNet2DModel": theirs}
    print(f"{args.size}x{args.size}x{c}, base width {args.channels}, batch {args.batch}, {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, make in nets.items():
        torch.manual_seed(0)
        print(f"  {name}: {sum(p.numel() for p in make(args.size, args.channels, c).parameters()) / 1e6:.2f} M params")
    rows = []
    for bf16 in (False, True):
        for channels_last in (False, True):
            for name, make in nets.items():
                torch.manual_seed(0)
                ips = train_speed(make(args.size, args.channels, c), args.size, c, args.batch,
                                  args.bf16_steps if bf16 else args.steps, bf16, channels_last, device)
                rows.append((name, "bf16" if bf16 else "fp32", "on" if channels_last else "off", ips))
    base = next(r[3] for r in rows if r[0] == "diffusers UNet2DModel" and r[1] == "fp32" and r[2] == "off")
    print("\nTraining (images/s, ratio to diffusers fp32 contiguous)")
    print("| network | precision | channels_last | images/s | ratio |\n|---|---|---|---|---|")
    for name, prec, cl, ips in rows:
        print(f"| {name} | {prec} | {cl} | {ips:.1f} | {ips / base:.2f}x |")
    print("\nSampling 16 images, difflab UNet fp32 (images/s)")
    torch.manual_seed(0)
    net = ours(args.size, args.channels, c)
    ddim = sample_speed(net, args.size, c, 16, device, "ddim")
    ddpm = sample_speed(net, args.size, c, 16, device, "ddpm")
    print(f"| sampler | images/s | ratio |\n|---|---|---|\n| DDPM 1000 steps | {ddpm:.2f} | 1.00x |\n"
          f"| DDIM 50 steps | {ddim:.2f} | {ddim / ddpm:.1f}x |")


if __name__ == "__main__":
    main()
