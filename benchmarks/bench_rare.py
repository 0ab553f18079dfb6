"""Adaptive multilevel splitting against plain Monte Carlo: model evaluations for 50% relative error.

Closed-form cases (``--cases``): in a 10-dimensional latent, a "classifier" that fails on a half-space of N(0, I)
(P = Φ(−t)) and on the intersection of two orthogonal half-spaces (P = Φ(−t)²), at P = 10⁻⁴, 10⁻⁶, 10⁻⁹ and
10⁻¹². For each, ``--repeats`` independent AMLS runs per particle count (doubling from ``--particles``) give the
relative root-mean-square error against the true P; the first particle count whose error is ≤ 50% is the
answer, in model evaluations, beside plain Monte Carlo's 4/P (its relative error is √((1 − P)/(nP))), with the
share of runs whose own 95% interval held P.

Built-in models (``--models``): every class's failure probability P_z[C(G_c(z)) ≠ c] of ``--classifier`` ∘
``--generators`` by AMLS, timed, beside plain Monte Carlo with ``--mc-n`` samples per class measured in the same
run (its failures seen, and its Clopper–Pearson interval).

    python benchmarks/bench_rare.py [--cases] [--models] [--repeats 40] [--particles 50]
                                    [--classifier mnist-small] [--generators mnist-gan] [--out docs/rare.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm

D = 10
PROBABILITIES = (1e-4, 1e-6, 1e-9, 1e-12)


def half_spaces(p: float, k: int):
    """A score whose failure set is the intersection of k orthogonal half-spaces of probability p^(1/k) each."""
    t = float(-norm.ppf(p ** (1 / k)))
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(k), dtype=torch.float64))
    dirs = q[:, :k].T.float()

    def score(z: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        return (z @ dirs.T - t).min(-1).values

    return score, float(norm.cdf(-t)) ** k


def cases(repeats: int, particles: int, mcmc_steps: int, quantile: float) -> list[dict]:
    from genrobust.rare import adaptive_splitting

    rows = []
    print(f"{'case':<16} {'P':>8} {'particles':>9} {'rel. RMSE':>9} {'cover':>6} {'evaluations':>11} "
          f"{'MC: 4/P':>10} {'fewer':>9} {'s':>6}", flush=True)  # fmt: skip
    for k, name in ((1, "half-space"), (2, "two half-spaces")):
        for p_target in PROBABILITIES:
            score, p = half_spaces(p_target, k)
            n = particles
            while True:
                t0 = time.perf_counter()
                runs = adaptive_splitting(score, D, list(range(repeats)), particles=n, quantile=quantile,
                                          mcmc_steps=mcmc_steps, max_levels=500, seed=k)  # fmt: skip
                est = np.array([r.estimate for r in runs])
                rmse = float(np.sqrt(np.mean((est / p - 1) ** 2)))
                cover = float(np.mean([lo <= p <= hi for lo, hi in (r.interval(0.95) for r in runs)]))
                evals = float(np.mean([r.evaluations for r in runs]))
                row = {"case": name, "p": p, "particles": n, "rel_rmse": rmse, "bias": float(est.mean() / p - 1),
                       "cover": cover, "evaluations": evals, "mc_evaluations": 4 / p, "ratio": 4 / p / evals,
                       "seconds": time.perf_counter() - t0, "repeats": repeats}  # fmt: skip
                if rmse <= 0.5 or n >= 3200:
                    break
                n *= 2
            rows.append(row)
            print(f"{name:<16} {p:>8.1e} {n:>9} {rmse:>9.2f} {cover:>6.2f} {evals:>11,.0f} {4 / p:>10.1e} "
                  f"{4 / p / evals:>8,.0f}× {row['seconds']:>6.1f}", flush=True)  # fmt: skip
    return rows


def models(classifier: str, generators: str, particles: int, mcmc_steps: int, quantile: float, repeats: int,
           mc_n: int) -> dict:  # fmt: skip
    import genrobust as gr

    clf, gens = gr.load_classifier(classifier), gr.load_generators(generators)
    t0 = time.perf_counter()
    res = gr.rare_failure(clf, gens, particles=particles, mcmc_steps=mcmc_steps, quantile=quantile,
                          repeats=repeats, delta=1e-6, seed=0)  # fmt: skip
    amls_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    mc = gr.global_correctness(clf, gens, n=mc_n, seed=0)
    mc_s = time.perf_counter() - t1
    print(f"{classifier} ∘ {generators}: AMLS ({particles} particles, {repeats} runs per class) in {amls_s:.0f} s, "
          f"{res.evaluations:,} evaluations; plain Monte Carlo n = {mc_n:,} per class in {mc_s:.0f} s",
          flush=True)  # fmt: skip
    print(f"{'class':<8} {'AMLS P(failure)':>16} {'95% interval':>22} {'MC failures':>12} {'MC P(failure)':>14} "
          f"{'MC 95% interval':>22}", flush=True)  # fmt: skip
    rows = []
    for a, m in zip(res.classes, mc.classes, strict=True):
        fails = m.n - m.correct
        lo, hi = 1 - m.ci_high, 1 - m.ci_low
        rows.append({"class": a.cls, "amls": a.estimate, "amls_ci": [a.ci_low, a.ci_high], "levels": len(a.levels),
                     "evaluations": a.evaluations, "mc_failures": fails, "mc_n": m.n, "mc": fails / m.n,
                     "mc_ci": [lo, hi]})  # fmt: skip
        print(f"{a.name:<8} {a.estimate:>16.2e} [{a.ci_low:>9.2e}, {a.ci_high:>9.2e}] {fails:>12} {fails / m.n:>14.2e} "
              f"[{lo:>9.2e}, {hi:>9.2e}]", flush=True)  # fmt: skip
    return {"classifier": classifier, "generators": generators, "amls_seconds": amls_s, "mc_seconds": mc_s,
            "evaluations": res.evaluations, "rows": rows, "table": res.table()}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", action="store_true", help="the closed-form cases")
    ap.add_argument("--models", action="store_true", help="the built-in models")
    ap.add_argument("--repeats", type=int, default=40, help="closed-form cases: independent runs per setting")
    ap.add_argument("--particles", type=int, default=50, help="closed-form cases: the first particle count tried")
    ap.add_argument("--model-particles", type=int, default=200)
    ap.add_argument("--model-repeats", type=int, default=1)
    ap.add_argument("--mcmc-steps", type=int, default=10)
    ap.add_argument("--quantile", type=float, default=0.5)
    ap.add_argument("--classifier", default="mnist-small")
    ap.add_argument("--generators", default="mnist-gan")
    ap.add_argument("--mc-n", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the figures to OUT (.json)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out: dict = {"args": vars(a)}
    if a.cases or not a.models:
        out["cases"] = cases(a.repeats, a.particles, a.mcmc_steps, a.quantile)
    if a.models:
        out["models"] = models(a.classifier, a.generators, a.model_particles, a.mcmc_steps, a.quantile,
                               a.model_repeats, a.mc_n)  # fmt: skip
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2, default=lambda x: None if isinstance(x, float) and
                                          math.isnan(x) else x) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
