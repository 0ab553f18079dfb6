"""The ReLU backward step of the bound engine: the fused form it uses against the select-and-multiply form it
replaced, on the shapes that dominate a box of ``mnist-small`` ∘ ``mnist-gan`` (patch rows of the third and
fourth convolutions' refinement, float32), one thread.

    python benchmarks/bench_relax_step.py [--rows 800] [--repeats 50]

The fused form computes A·al + min(A, 0)·dl (dl = au − al, stored once per layer) and min(A, 0)·bu; the old
one built a mask A > 0, selected al or au with it and multiplied. Both give the same rows up to rounding, which
the engine's guard pays (see ``engine._relax_step``).
"""

from __future__ import annotations

import argparse
import time

import torch

from genrobust.bounds.steps import relax_step as _relax_step
from genrobust.bounds.steps import sum64 as _sum64


def select_and_multiply(A: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The replaced form, as the engine had it: lines (al, au, bu), the intercepts summed by ``_sum64``."""
    al, au, bu = m[:, 0], m[:, 1], m[:, 2]
    new = torch.where(A > 0, al, au).mul_(A)
    terms = A.clamp(max=0).mul_(bu)
    return new, _sum64(terms.reshape(len(A), -1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=800)
    ap.add_argument("--repeats", type=int, default=50)
    a = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    print(f"{'patch':<10} {'old ms':>8} {'fused ms':>9} {'speed-up':>9} {'max |Δ|':>9}")
    for C, p in ((32, 5), (64, 3), (64, 5)):
        A = torch.randn(a.rows, C, p, p, generator=g)
        al = (torch.rand(a.rows, C, p, p, generator=g) > 0.5).float()
        au = torch.rand(a.rows, C, p, p, generator=g)
        bu = torch.rand(a.rows, C, p, p, generator=g)
        old_lines, fused_lines = torch.stack([al, au, bu], 1), torch.stack([al, au - al, bu], 1)
        times = []
        old = lambda A=A, m=old_lines: select_and_multiply(A, m)  # noqa: E731
        fused = lambda A=A, m=fused_lines: _relax_step(A, m, True, True)  # noqa: E731
        for fn in (old, fused):
            fn()
            t = time.perf_counter()
            for _ in range(a.repeats):
                fn()
            times.append((time.perf_counter() - t) / a.repeats * 1000)
        diff = float((select_and_multiply(A, old_lines)[0] - _relax_step(A, fused_lines, True, True)[0]).abs().max())
        print(f"{C}×{p}×{p:<5} {times[0]:>8.2f} {times[1]:>9.2f} {times[0] / times[1]:>8.2f}× {diff:>9.1e}")


if __name__ == "__main__":
    main()
