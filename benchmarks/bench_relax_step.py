"""The ReLU backward step of the bound engine: the fused form it uses against the select-and-multiply form it
replaced, on the shapes that dominate a box of ``mnist-small`` ∘ ``mnist-gan`` (patch rows of the third and
fourth convolutions' refinement, float32), one thread; then, for dense rows of a batch of boxes, one step on
lines gathered per row against one step per box on views of its lines (``steps.relax_step_by_ball``, which
gathers below ``GATHER_BYTES``), and the same for the rounding guard's product with the layer's reach.

    python benchmarks/bench_relax_step.py [--rows 800] [--repeats 50]

The fused form computes A·al + min(A, 0)·dl (dl = au − al, stored once per layer) and min(A, 0)·bu; the old
one built a mask A > 0, selected al or au with it and multiplied. Both give the same rows up to rounding, which
the engine's guard pays (see ``engine._relax_step``).
"""

from __future__ import annotations

import argparse
import time

import torch

from genrobust.bounds.steps import GATHER_BYTES
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
    by_ball(a.repeats, g)


def _ms(fn, repeats: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats * 1000


def by_ball(repeats: int, g: torch.Generator) -> None:
    """Dense rows sorted by box: ``mnist_fc``'s layers (256 neurons; 54 boxes, as a batch of its branch and bound,
    with the 9 margins' rows, or 20–100 refinement rows each) and rows of the built-in classifier's dense head
    behind its convolutions (64×20×20 = 25,600 wide; 8 boxes of 9 margins, 2 boxes of 200 rows)."""
    print(f"\n{'dense rows':<24} {'per box ms':>10} {'gathered ms':>11} {'ratio':>7} {'engine':>9}")
    shapes = ((54, 9, 256), (54, 20, 256), (54, 40, 256), (54, 100, 256), (8, 9, 25_600), (2, 200, 25_600))
    for boxes, rows, n in shapes:
        R = boxes * rows
        A = torch.randn(R, n, generator=g)
        maps = torch.stack([(torch.rand(boxes, n, generator=g) > 0.5).float(), torch.rand(boxes, n, generator=g),
                            torch.rand(boxes, n, generator=g)], 1)  # fmt: skip
        reach = torch.rand(boxes, 2, n, generator=g)
        ball = torch.arange(boxes).repeat_interleave(rows)

        def loop(A=A, maps=maps, reach=reach, rows=rows, boxes=boxes):
            parts = [_relax_step(A[b * rows : (b + 1) * rows], maps[b : b + 1], True, True) for b in range(boxes)]
            flat = A.abs()
            guard = torch.cat([flat[b * rows : (b + 1) * rows] @ reach[b].T for b in range(boxes)])
            return [torch.cat(p) for p in zip(*parts, strict=True)], guard

        def gathered(A=A, maps=maps, reach=reach, ball=ball):
            return _relax_step(A, maps[ball], True, True), torch.einsum("rn,rkn->rk", A.abs(), reach[ball])

        t_loop, t_gather = _ms(loop, repeats), _ms(gathered, repeats)
        picks = "gathered" if R * 3 * n * 4 <= GATHER_BYTES else "per box"
        label = f"{boxes} boxes × {rows} × {n}"
        print(f"{label:<24} {t_loop:>10.2f} {t_gather:>11.2f} {t_loop / t_gather:>6.2f}× {picks:>9}")


if __name__ == "__main__":
    main()
