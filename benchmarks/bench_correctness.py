"""Throughput of global correctness on small ∘ GAN, and the fraction of this machine's roofline it reaches.

Roofline fraction = FLOPs per sample × samples/s ÷ dense matmul FLOP/s, all measured in this run. The
baseline is the same estimate with batch size 1 (what a per-sample loop costs).

It also times a test-set accuracy (the table's test column, every trained classifier's record) as
``train.common.accuracy`` computes it (NHWC copy, batch 128) against a plain loop in the default layout with
batch 1000 (how it was computed before).

    python benchmarks/bench_correctness.py [--n 4096] [--repeats 5] [--data-dir ../shared/datasets]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch

import genrobust as gr
from bench_training import forward_flops, matmul_rate
from genrobust.train.common import accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-dir", default=None, help="Folder with the MNIST files (default: the cache).")
    args = parser.parse_args()
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    flops = forward_flops(clf, (1, 28, 28)) + forward_flops(gens[0], (gens.latent_dim,))
    peak = matmul_rate()
    print(f"small ∘ GAN: {flops / 1e6:.1f} MFLOP per sample; matmul {peak / 1e9:.1f} GFLOP/s")
    print(f"{'batch size':>10} {'samples/s':>10} {'GFLOP/s':>8} {'of matmul':>10} {'speed-up':>9}")
    rows = []
    for batch, n in ((1, 200), (64, args.n), (128, args.n), (256, args.n), (1024, args.n)):
        gr.global_correctness(clf, gens, n=min(n, 256), classes=[0], batch_size=batch)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):  # best of several runs: the least disturbed by the rest of the machine
            t0 = time.perf_counter()
            gr.global_correctness(clf, gens, n=n, classes=[3], batch_size=batch)
            best = min(best, time.perf_counter() - t0)
        rows.append((batch, n / best))
    base = rows[0][1]
    for batch, rate in rows:
        print(f"{batch:>10} {rate:>10,.0f} {rate * flops / 1e9:>8.1f} {rate * flops / peak:>9.0%} {rate / base:>8.1f}×")
    test_accuracy(clf, args.data_dir, args.repeats)


@torch.no_grad()
def _plain_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    pred = torch.cat([model(x[i : i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((pred == y).float().mean())


def test_accuracy(clf: torch.nn.Module, data_dir: str | None, repeats: int) -> None:
    x, y = gr.load_dataset("mnist", "test", data_dir=data_dir).tensors()
    times = {}
    for name, fn in (("plain, batch 1000", _plain_accuracy), ("accuracy(): NHWC, batch 128", accuracy)):
        fn(clf, x[:256], y[:256])  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            acc = fn(clf, x, y)
            best = min(best, time.perf_counter() - t0)
        times[name] = best
        print(f"test accuracy of mnist-small, {name:<28} {best:6.2f} s ({len(x) / best:,.0f} images/s), {acc:.4f}")
    base, new = times.values()
    print(f"speed-up of accuracy(): {base / new:.2f}×")


if __name__ == "__main__":
    main()
