"""Training throughput of the paper's `small` classifier and GAN, beside this machine's matmul rate.

FLOPs are counted analytically (2 per multiply-add; a backward pass costs two forwards), so the last column
says how much of the machine's dense matmul rate (measured in the same run) training actually uses.

    python benchmarks/bench_training.py [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from genrobust.models import MLPDiscriminator, MLPGenerator, build_classifier


def forward_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-add FLOPs (×2) of the Conv2d and Linear layers for one input."""
    total = 0

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += 2 * k * out[0].numel()
        elif isinstance(mod, nn.Linear):
            total += 2 * mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for h in handles:
        h.remove()
    return total


def matmul_rate(n: int = 1024, seconds: float = 2.0) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def timed(step, warmup: int, seconds: float) -> float:
    """Steps per second of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        reps += 1
    return reps / (time.perf_counter() - t0)


def classifier_step_fn(batch: int):
    model = build_classifier("small").train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, 3 * forward_flops(model, (1, 28, 28)) * batch


def gan_step_fn(batch: int):
    g, d = MLPGenerator(), MLPDiscriminator()
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    real = torch.rand(batch, 1, 28, 28)

    def step() -> None:
        fake = g(torch.randn(batch, 10))
        dr, df = d(real), d(fake.detach())
        loss_d = F.binary_cross_entropy_with_logits(dr, torch.full_like(dr, 0.9))
        loss_d = loss_d + F.binary_cross_entropy_with_logits(df, torch.zeros_like(df))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        dg = d(fake)
        loss_g = F.binary_cross_entropy_with_logits(dg, torch.ones_like(dg))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

    gf, df = forward_flops(g, (10,)), forward_flops(d, (1, 28, 28))
    # G: forward + backward; D: three forwards (real, fake, fake again) and three backwards.
    return step, (3 * gf + 9 * df) * batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    peak = matmul_rate()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"matmul 1024×1024 float32: {peak / 1e9:.1f} GFLOP/s (the baseline)")
    print(f"{'workload':<34} {'throughput':>24} {'GFLOP/s':>9} {'of matmul':>10}")
    for name, (step, flops), unit, per in (
        ("small classifier, batch 128", classifier_step_fn(128), "images/s", 128),
        ("small classifier, batch 512", classifier_step_fn(512), "images/s", 512),
        ("GAN (G+D step), batch 64", gan_step_fn(64), "real images/s", 64),
        ("GAN (G+D step), batch 256", gan_step_fn(256), "real images/s", 256),
    ):
        rate = timed(step, warmup=2, seconds=args.seconds)
        gflops = rate * flops / 1e9
        print(f"{name:<34} {rate * per:>10,.0f} {unit:<13} {gflops:>9.1f} {gflops * 1e9 / peak:>9.0%}")


if __name__ == "__main__":
    main()
