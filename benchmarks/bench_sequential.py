"""Samples the anytime-valid sequential test needs to decide "P ≥ 1 − δ?", against a fixed n = 10,000.

For true P at 0.02 and 0.05 above and below 1 − δ (δ = 0.05, α = 0.05), simulate runs that look after every
batch of 100 and stop at the first verdict; print the median / mean / 90th-percentile stopping time, the
share of wrong verdicts, and the saving against the fixed-size Clopper–Pearson design.

    python benchmarks/bench_sequential.py [--runs 500]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from genrobust.stats import FAILS, HOLDS, UNDECIDED, simulate_sequential, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--delta", type=float, default=0.05)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    fixed = 10_000
    threshold = 1 - args.delta
    print(f"δ = {args.delta}, α = {args.alpha}, {args.runs} runs per row, batches of 100, fixed design n = {fixed:,}")
    print(
        f"{'true P':>7} {'gap':>6} {'median n':>9} {'mean n':>8} {'p90 n':>7} {'decided':>8} {'wrong':>6} "
        f"{'fixed-n verdict':>16} {'saving':>7}"
    )
    t0 = time.perf_counter()
    for gap in (+0.05, +0.02, -0.02, -0.05):
        p = threshold + gap
        decisions, stops = simulate_sequential(
            p, delta=args.delta, alpha=args.alpha, runs=args.runs, horizon=fixed, seed=int(1000 * (gap + 1))
        )
        right = HOLDS if gap > 0 else FAILS
        wrong = np.mean(decisions == (FAILS if right == HOLDS else HOLDS))
        decided = np.mean(decisions != UNDECIDED)
        fixed_verdict = verdict(round(p * fixed), fixed, args.delta, 1 - args.alpha)
        print(
            f"{p:>7.2f} {gap:>+6.2f} {np.median(stops):>9,.0f} {stops.mean():>8,.0f} "
            f"{np.percentile(stops, 90):>7,.0f} {decided:>8.1%} {wrong:>6.1%} {fixed_verdict:>16} "
            f"{fixed / stops.mean():>6.1f}×"
        )
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
