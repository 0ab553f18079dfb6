"""What the CPU's arithmetic could give the bound engine's backward steps, one thread: float32 (what the
refinement rows use) against bfloat16 (AMX / AVX-512-BF16 where the CPU has them) and exact int8 GEMMs
(``torch._int_mm``), and a dense transposed convolution's step in channels-last layout, copies included.

    python benchmarks/bench_arithmetic.py [--repeats 5]

Why it matters and why the engine does not use it (yet): a backward step's rows A·W may be computed in any way
whose error is bounded and paid (``bounds/engine.py``'s docstring); a float32 step pays γ_n ≈ n·2⁻²⁴ of
|A|·|W|·|x| per entry. bfloat16 GEMMs and convolutions on a CPU return bfloat16 in this PyTorch (no float32
output: ``torch.mm(..., out_dtype=...)`` has no CPU kernel), so every coefficient would carry 2⁻⁸ of its size,
hundreds of times the float32 guard; splitting operands into high and low halves cannot undo the rounding of the
output. int8 GEMMs accumulate exactly in int32, but coefficients would have to become fixed point per row (a
row's small entries lose their bits against its largest), and 2–3 limbs per operand take 3–6 GEMMs. The table
prints the raw ratios so the trade can be weighed on the machine at hand.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def seconds(f, repeats: int) -> float:
    f()
    t = time.perf_counter()
    for _ in range(repeats):
        f()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    print("GEMM (m × k × n), one thread: ms and G(FL)OP/s; ratios against float32")
    print(f"{'shape':<18} {'float32':>16} {'bfloat16':>16} {'int8 (exact)':>16} {'bf16 ×':>7} {'int8 ×':>7}")
    # a dense head's rows through its first layer; patch rows through a 3×3 convolution; a large square
    for m, k, n in [(512, 25600, 200), (4096, 576, 64), (4096, 1024, 1024)]:
        x, y = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
        flops = 2 * m * k * n
        f32 = seconds(lambda: x @ y, a.repeats)  # noqa: B023
        xb, yb = x.bfloat16(), y.bfloat16()
        bf = seconds(lambda: xb @ yb, a.repeats)  # noqa: B023
        xi = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=g)
        yi = torch.randint(-127, 128, (k, n), dtype=torch.int8, generator=g)
        try:
            i8 = seconds(lambda: torch._int_mm(xi, yi), a.repeats)  # noqa: B023
        except RuntimeError:
            i8 = float("nan")
        cells = " ".join(f"{t * 1e3:7.2f} ({flops / t / 1e9:5.0f})" for t in (f32, bf, i8))
        print(f"{f'{m}×{k}×{n}':<18} {cells} {f32 / bf:7.1f} {f32 / i8:7.1f}")
    print("\nDense transposed convolution (rows R, channels Cout → Cin, map side), one thread: ms")
    print(f"{'step':<22} {'NCHW':>8} {'channels-last + copies':>23} {'×':>6}")
    for R, co, ci, h in [(200, 64, 64, 20), (200, 64, 32, 22), (200, 32, 32, 24), (36, 64, 64, 20)]:
        A, w = torch.randn(R, co, h, h, generator=g), torch.randn(co, ci, 3, 3, generator=g)
        base = seconds(lambda: F.conv_transpose2d(A, w), a.repeats)  # noqa: B023

        def last(A=A, w=w):
            return F.conv_transpose2d(A.contiguous(memory_format=torch.channels_last), w).contiguous()

        cl = seconds(last, a.repeats)
        print(f"{f'R{R} {co}→{ci} {h}×{h}':<22} {base * 1e3:8.1f} {cl * 1e3:23.1f} {base / cl:6.2f}")


if __name__ == "__main__":
    main()
