"""Why the verifier leaves balls unknown at ε = 0.03 and 0.05, measured on the balls ``bench_verify.py`` left
unknown (its ``--work`` files): how far their bounds are from the truth, what branching on the classifier's
ReLUs buys against branching on the latent, and what a larger budget buys.

    python benchmarks/bench_verify_limits.py gap --eps 0.03 --work DIR [--sample 40] --out FILE.jsonl
    python benchmarks/bench_verify_limits.py split --eps 0.03 --ball 5:5 --ball 2:20 [--evals 32]
        [--modes relu,beta,input] [--alpha-steps 8] --out FILE.jsonl
    python benchmarks/bench_verify_limits.py budget --eps 0.03 --work DIR [--sample 40] [--max-boxes 64]
                                                    [--max-seconds 40] [--give-up 6] --out FILE.jsonl
    python benchmarks/bench_verify_limits.py {slack,ceiling} --eps 0.03 --work DIR [--sample 40] --out FILE.jsonl
    python benchmarks/bench_verify_limits.py head --eps 0.03 --ball 0:7 [--milp-seconds 60] --out FILE.jsonl
    python benchmarks/bench_verify_limits.py dims --eps 0.05 --ball 0:1 --ball 0:3 --out FILE.jsonl
    python benchmarks/bench_verify_limits.py collect --dir DIR --out docs/verify-limits.json

They take the built-in ``mnist-small`` ∘ ``mnist-gan`` (``slack``, ``head`` and the split's recorder assume its
ten classes and its dense head).

* ``gap``: per ball, the centre's margin, the sound bound on the whole box, and the smallest margin that PGD
  (100 Adam steps from 64 random starts) finds in it; the *ratio* bound / centre margin (what the give-up rule
  reads) and the *tightening needed*, (PGD − bound) / PGD: by what factor the bound's distance from the truth
  must shrink before it can certify the ball, if PGD's minimum were the true one.
* ``split``: best-first branch and bound on one box with the same number of bound computations, (a) on the
  classifier's unstable ReLUs (a child clamps one pre-activation interval to ≥ 0 or ≤ 0; the engine's bounds
  on that child hold on the part of the box where the clamp is true, so the two children cover the box;
  no β multipliers; the neuron is the one whose relaxation intercept costs the worst margin most, BaBSR's
  score read from the margins' backward pass), (b) ``--modes beta``: the same splits as constraints of the
  child's domain (``BoundEngine.margins(splits=…)``: clamped intervals, and β-CROWN's multipliers optimised
  with α in the margins' pass, ``--alpha-steps`` per bound), (c) on the latent box (the verifier's ``gap``
  split). Prints the global lower bound after each split.
* ``budget``: the unknown balls checked again with a larger budget (boxes, seconds, give-up ratio).
* ``slack``: where the whole-box bound loses, per classifier layer: the number of unstable ReLUs and what
  their upper lines' intercepts cost the worst margin's bound (Σ −min(λ, 0)·b_u over the layer, λ the margins
  pass's coefficients on the layer's output).
* ``head``: the classifier's two last hidden layers (its dense head) solved exactly, a MILP (HiGHS, big-M on
  every unstable ReLU), over the pre-activation intervals the engine gives for them, for the two worst
  margins; and its LP relaxation. Not a bound: a probe of whether exact reasoning in the head would certify.
  A solve stopped by its time limit reports its best feasible point, i.e. a value the exact minimum is at
  most, which is all the probe needs when that value is negative.
* ``ceiling``: the bound the engine's last pass would give if every classifier layer's intervals were (nearly)
  exact: each pre-activation's range over 1,024 corners and 4,096 uniform points of the box (an *inner*
  estimate: not sound) is handed to the engine as the box's intervals: an estimate of what near-exact
  intermediate bounds would give its last pass (not a strict cap: CROWN's slope choices need not improve as
  intervals tighten). Also each layer's ranges alone, and per layer the median ratio of the sound width to the
  sampled one.

* ``dims``: which latent dimension a split should halve, by brute force: the whole box's bound, then both
  halves of every dimension bounded (each inheriting the whole box's intervals, as in the verifier), and the
  dimension each split rule (``VerifyOptions.split``) picks with its rank by the worse half's bound
  (docs/verify-complete.md, "A split that follows the slack").

``collect --dir DIR --out docs/verify-limits.json`` bundles the parts' files in DIR (named PART-EPS.jsonl) with
the summary the README quotes, and prints that summary.

Every part appends one JSON line per ball to ``--out`` and skips the balls already there (a kill loses one
ball). Balls are the benchmark's: centre ``i`` of class ``c`` is ``latents(0, c, 100, 10)[i]``; ``--sample``
draws that many of the unknown balls (all classes together) with a fixed seed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

import genrobust as gr
import genrobust.bounds.engine as engine_module
from genrobust.errors import GenrobustError
from genrobust.estimate import latents
from genrobust.verify import LocalVerifier, VerifyOptions
from genrobust.verify.local import COST_NEURONS

BALLS = 100  # per class, as in bench_verify.py's 1,000-ball rows


def unknown_balls(work: Path, eps: float, sample: int) -> list[tuple[int, int, float]]:
    """(class, index, seconds) of the balls the benchmark's ``full`` row left unknown, a seeded sample of them."""
    todo = []
    for c in range(10):  # the run's files carry its split rule's name (gap before stop 37, unstable since)
        name = f"full*-eps{eps:g}-class{c}-n{BALLS}-boxes16-s10-*-giveup1.5.json"  # "full-threads1-…" too
        files = sorted(work.glob(name))
        if not files:
            raise SystemExit(f"no {name} in {work}: run benchmarks/bench_verify.py --work {work} first")
        part = json.loads(files[0].read_text())
        todo += [(c, i, part["seconds"][i]) for i in range(BALLS) if part["status"][i] == 0]
    random.Random(0).shuffle(todo)
    return sorted(todo[:sample])


def centre(c: int, i: int, latent_dim: int) -> torch.Tensor:
    return latents(0, c, BALLS, latent_dim)[i : i + 1]


def worst_margin(v: LocalVerifier, z: torch.Tensor, c: int) -> torch.Tensor:
    logits = v.plain(z)
    others = logits.clone()
    others[:, c] = -math.inf
    return logits[:, c] - others.amax(1)


def gap(v: LocalVerifier, c: int, i: int, eps: float) -> dict:
    z = centre(c, i, v.latent_dim)
    lab = torch.tensor([c])
    t = time.perf_counter()
    mb = v.engine.margins(z.double(), torch.full_like(z.double(), eps), v._spec(lab))
    seconds = time.perf_counter() - t
    lo, hi = v._float_box(z, eps)
    g = torch.Generator().manual_seed(c * 1000 + i)
    zz = (lo + (hi - lo) * torch.rand(64, z.shape[1], generator=g)).requires_grad_(True)
    opt = torch.optim.Adam([zz], lr=eps / 5)
    for _ in range(100):
        opt.zero_grad()
        worst_margin(v, zz, c).sum().backward()
        opt.step()
        with torch.no_grad():
            zz.copy_(torch.max(torch.min(zz, hi), lo))
    with torch.no_grad():
        pgd, m0 = float(worst_margin(v, zz, c).min()), float(worst_margin(v, z, c)[0])
    root = float(mb.lower.min())
    return {"c": c, "i": i, "m0": m0, "root": root, "pgd": pgd, "bound_s": seconds, "ratio": root / m0,
            "tightening": (pgd - root) / pgd if pgd > 0 else math.inf}  # fmt: skip


class MarginPassRecorder:
    """Keeps the rows of the margins' backward pass at every activation (the dense float64 rows of one ball's
    K − 1 margins; refinement rows are float32 patches or an even number of float64 rows)."""

    def __init__(self, rows: int) -> None:
        self.rows, self.seen, self.real = rows, [], engine_module.relax_step_by_ball

    def __enter__(self) -> MarginPassRecorder:
        def spy(A, maps, ball, origin, nonneg):
            if A.dtype == torch.float64 and A.shape[0] == self.rows:
                self.seen.append((A.detach().clone(), maps))
            return self.real(A, maps, ball, origin, nonneg)

        engine_module.relax_step_by_ball = spy
        return self

    def __exit__(self, *exc) -> None:
        engine_module.relax_step_by_ball = self.real


def _bound(v: LocalVerifier, lab, lo, hi, parent, splits=None):
    """Margins over [lo, hi] with ``parent`` intervals (and ReLU ``splits``), and the margin pass's rows; None if
    the clamps are contradictory (an empty interval: no point of the box satisfies them, so that child is
    vacuous)."""
    center = (lo + hi) / 2
    radius = torch.nextafter(torch.maximum(hi - center, center - lo), torch.full_like(lo, math.inf))
    with MarginPassRecorder(v.num_classes - 1) as rec:
        try:
            mb = v.engine.margins(center, radius, v._spec(lab), parent=parent, splits=splits)
        except GenrobustError as err:
            if "empty interval" in str(err):
                return None
            raise
    return mb, rec.seen


def dims(v: LocalVerifier, c: int, i: int, eps: float) -> dict:
    """Both halves of every latent dimension of the whole box, bounded; and what each split rule picks."""
    from genrobust.verify.local import _outward32, refutation

    z = centre(c, i, v.latent_dim).double()
    lab = torch.tensor([c])
    lo, hi = v._ball(z, eps)
    mb, _ = _bound(v, lab, lo, hi, None)
    root, worst = refutation(mb.lower, v.groups)
    parent = {k: (a[None], b[None]) for k, (a, b) in
              _outward32({k: (a[0], b[0]) for k, (a, b) in mb.intervals.items()}).items()}  # fmt: skip
    halves = []
    for d in range(v.latent_dim):
        mid = (lo[0, d] + hi[0, d]) / 2
        left_hi, right_lo = hi.clone(), lo.clone()
        left_hi[0, d], right_lo[0, d] = mid, mid
        pair = [float(refutation(_bound(v, lab, a, b, parent)[0].lower, v.groups)[0][0])
                for a, b in ((lo, left_hi), (right_lo, hi))]  # fmt: skip
        halves.append(pair)
    worse = [min(p) for p in halves]
    order = sorted(range(v.latent_dim), key=lambda d: -worse[d])
    center, radius = (lo + hi) / 2, (hi - lo) / 2
    reach = v._reach(center, radius, mb.intervals, torch.ones(1, dtype=torch.bool))[0]
    costed = v.engine.margins(
        (lo + hi) / 2, torch.nextafter((hi - lo) / 2, torch.full_like(lo, math.inf)), v._spec(lab), branch=COST_NEURONS
    )  # the same bound, with the intercept costs
    weighed = v._reach(center, radius, mb.intervals, torch.ones(1, dtype=torch.bool), costed.branch)[0]
    picks = {"gap": int(mb.coef[0, int(worst[0])].abs().argmax()), "unstable": int(reach.argmax()),
             "cost": int(weighed.argmax())}  # fmt: skip
    return {"c": c, "i": i, "root": float(root[0]), "halves": halves, "best": order[0],
            **{f"{k}_pick": d for k, d in picks.items()}, **{f"{k}_rank": order.index(d) + 1 for k, d in picks.items()},
            **{f"{k}_worse": worse[d] for k, d in picks.items()}}  # fmt: skip


def _activations(v: LocalVerifier) -> list[int]:
    return [k for k, op in enumerate(v.engine.ops) if isinstance(op, engine_module.Activation)]


def _classifier_rows(v: LocalVerifier, seen: list) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """(op index, the margins' rows on its output, its relaxation lines) for each of the classifier's activations,
    from the last margins pass recorded (which visits every activation, the last one first)."""
    acts = _activations(v)
    return [(k, A, maps) for (A, maps), k in zip(seen[-len(acts) :], reversed(acts), strict=True)
            if k >= v.engine.anchor]  # fmt: skip


def _relu_to_split(v: LocalVerifier, mb, seen) -> tuple[float, int, int] | None:
    """(score, op index, flat neuron) of the unstable classifier ReLU whose upper line's intercept, weighted by
    the worst margin's (negative) coefficient on its output, costs that margin's bound most."""
    worst = int(mb.lower[0].argmin())
    best = None
    for k, A, maps in _classifier_rows(v, seen):
        lo, hi = mb.intervals[k]
        score = (-A[worst].clamp(max=0)) * maps[0, -1] * ((lo[0] < 0) & (hi[0] > 0))  # bu: the last line
        val, idx = score.flatten().max(0)
        if best is None or float(val) > best[0]:
            best = (float(val), k, int(idx))
    return best if best is not None and best[0] > 0 else None


def split(v: LocalVerifier, c: int, i: int, eps: float, evals: int, mode: str) -> dict:
    z = centre(c, i, v.latent_dim).double()
    lab = torch.tensor([c])
    t = time.perf_counter()
    lo, hi = z - eps, z + eps
    mb, seen = _bound(v, lab, lo, hi, None)
    domains = [(float(mb.lower.min()), lo, hi, mb, seen, {})]
    trace, n = [domains[0][0]], 1
    while n < evals and domains:
        domains.sort(key=lambda d: d[0])
        if domains[0][0] > 0:
            break
        _, dlo, dhi, dmb, dseen, dsplits = domains.pop(0)
        intervals = {k: (a.clone(), b.clone()) for k, (a, b) in dmb.intervals.items()}
        kids = []
        if mode == "relu":  # interval clamps only
            pick = _relu_to_split(v, dmb, dseen)
            if pick is None:
                break
            _, k, idx = pick
            for side in ("active", "inactive"):
                p = {j: (a.clone(), b.clone()) for j, (a, b) in intervals.items()}
                (p[k][0] if side == "active" else p[k][1]).view(-1)[idx] = 0.0
                kids.append((dlo, dhi, p, {}))
        elif mode == "beta":  # the split as a constraint of the domain: clamps, and β with α in the margins' pass
            pick = _relu_to_split(v, dmb, dseen)
            if pick is None:
                break
            _, k, idx = pick
            for side in (1, -1):
                sp = {j: t.clone() for j, t in dsplits.items()}
                sp.setdefault(k, torch.zeros(1, *v.engine.ops[k].in_shape, dtype=torch.int8)).view(-1)[idx] = side
                kids.append((dlo, dhi, intervals, sp))
        else:
            g = dmb.coef[0, int(dmb.lower[0].argmin())]
            dim = int((g.abs() * ((dhi - dlo)[0] > 0)).argmax())
            mid = (dlo[0, dim] + dhi[0, dim]) / 2
            h1, l2 = dhi.clone(), dlo.clone()
            h1[0, dim] = l2[0, dim] = mid
            kids = [(dlo, h1, intervals, {}), (l2, dhi, intervals, {})]
        for klo, khi, kp, ks in kids:
            r = _bound(v, lab, klo, khi, kp, ks or None)
            n += 1
            if r is not None and float(r[0].lower.min()) <= 0:
                domains.append((float(r[0].lower.min()), klo, khi, *r, ks))
        trace.append(min((d[0] for d in domains), default=math.inf))
    final = min((d[0] for d in domains), default=math.inf)
    return {"c": c, "i": i, "mode": mode, "evals": n, "trace": trace, "final": final,
            "certified": final > 0, "seconds": time.perf_counter() - t}  # fmt: skip


def slack(v: LocalVerifier, c: int, i: int, eps: float) -> dict:
    z = centre(c, i, v.latent_dim).double()
    with MarginPassRecorder(v.num_classes - 1) as rec:
        mb = v.engine.margins(z, torch.full_like(z, eps), v._spec(torch.tensor([c])))
    worst = int(mb.lower[0].argmin())
    layers = []
    for k, A, maps in _classifier_rows(v, rec.seen):
        lo, hi = mb.intervals[k]
        layers.append({"op": k, "shape": list(v.engine.ops[k].in_shape), "unstable": int(((lo < 0) & (hi > 0)).sum()),
                       "intercepts": float(((-A[worst].clamp(max=0)) * maps[0, -1]).sum())})  # fmt: skip
    return {"c": c, "i": i, "bound": float(mb.lower[0, worst]), "layers": layers[::-1]}


def head(v: LocalVerifier, clf: torch.nn.Module, c: int, i: int, eps: float, seconds: float) -> dict:
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp

    linears = [m for m in clf.modules() if isinstance(m, torch.nn.Linear)][-2:]  # hidden → hidden → logits
    (W1, b1), (W2, b2) = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy()) for m in linears]
    z = centre(c, i, v.latent_dim).double()
    mb = v.engine.margins(z, torch.full_like(z, eps), v._spec(torch.tensor([c])))
    (l0, u0), (l1, u1) = [[t[0].numpy() for t in mb.intervals[k]] for k in _activations(v)[-2:]]
    n0, n1 = len(l0), len(l1)
    # variables: x0 (n0), y0 (n0), y1 (n1), d0 (n0), d1 (n1); x1 = W1·y0 + b1
    N = 3 * n0 + 2 * n1
    cols = np.cumsum([0, n0, n0, n1, n0, n1])
    x0, y0, y1, d0, d1 = [np.eye(N)[a:b] for a, b in itertools.pairwise(cols)]
    x1, c1 = W1 @ y0, b1
    rows, low, up = [], [], []
    for x, const, y, d, lo, hi in ((x0, 0.0, y0, d0, l0, u0), (x1, c1, y1, d1, l1, u1)):
        n = len(lo)  # y ≥ x, y ≤ x − l·(1 − d), y ≤ u·d (big-M with the interval ends)
        rows += [y - x, y - x - d * lo[:, None], y - d * hi[:, None]]
        low += [np.broadcast_to(const, n), np.full(n, -np.inf), np.full(n, -np.inf)]
        up += [np.full(n, np.inf), -lo + const, np.zeros(n)]
    rows.append(x1)
    low.append(l1 - b1)
    up.append(u1 - b1)
    cons = LinearConstraint(np.vstack(rows), np.concatenate(low), np.concatenate(up))
    box = Bounds(np.concatenate([l0, np.zeros(n0), np.zeros(n1), np.zeros(n0 + n1)]),
                 np.concatenate([u0, np.maximum(u0, 0), np.maximum(u1, 0), np.ones(n0 + n1)]))  # fmt: skip
    others = [j for j in range(v.num_classes) if j != c]
    out = []
    for m in mb.lower[0].argsort()[:2].tolist():
        j = others[m]
        cost = (W2[c] - W2[j]) @ y1
        rec = {"j": j, "engine": float(mb.lower[0, m])}
        for name, integral in (("lp", 0), ("milp", 1)):
            t = time.perf_counter()
            kinds = np.r_[np.zeros(N - n0 - n1), np.full(n0 + n1, integral)]
            r = milp(cost, constraints=cons, bounds=box, integrality=kinds, options={"time_limit": seconds})
            rec[name] = None if r.fun is None else float(r.fun + b2[c] - b2[j])
            rec[f"{name}_optimal"] = r.status == 0
            rec[f"{name}_s"] = time.perf_counter() - t
        out.append(rec)
    unstable = [int(((lo < 0) & (hi > 0)).sum()) for lo, hi in ((l0, u0), (l1, u1))]
    return {"c": c, "i": i, "unstable": unstable, "margins": out}


def ceiling(v: LocalVerifier, c: int, i: int, eps: float) -> dict:
    """The sound bound, the bound with every classifier layer's sampled ranges, and with one layer's only; and
    per layer, the median ratio of the sound interval's width to the sampled range's (neurons that vary)."""
    z = centre(c, i, v.latent_dim).double()
    d = v.latent_dim
    corners = torch.tensor([[(k >> b) & 1 for b in range(d)] for k in range(2**d)], dtype=torch.float64)
    uniform = torch.rand(4096, d, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
    h = z + eps * torch.cat([corners * 2 - 1, uniform * 2 - 1])
    ranges, generator = {}, {}
    with torch.no_grad():
        for k, op in enumerate(v.engine.ops):
            if not op.linear:
                (ranges if k >= v.engine.anchor else generator)[k] = (h.amin(0, keepdim=True), h.amax(0, keepdim=True))
            h = op.forward(h)
    spec = v._spec(torch.tensor([c]))
    radius = torch.full_like(z, eps)
    sound = v.engine.margins(z, radius, spec)
    layers = {}
    for k, (lo, hi) in ranges.items():
        sampled, width = (hi - lo)[0], (sound.intervals[k][1] - sound.intervals[k][0])[0]
        varies = sampled > 1e-6
        only = float(v.engine.margins(z, radius, spec, parent={k: ranges[k]}).lower.min())
        layers[k] = {"width_ratio": float((width[varies] / sampled[varies]).median()), "exact_here_only": only}
    every = float(v.engine.margins(z, radius, spec, parent=ranges).lower.min())
    gen = float(v.engine.margins(z, radius, spec, parent=generator).lower.min()) if generator else None
    return {"c": c, "i": i, "bound": float(sound.lower.min()), "ceiling": every, "generator_ceiling": gen,
            "layers": layers,
            "sampled_min": float(torch.einsum("mk,nk->nm", spec[0], h).min())}  # fmt: skip


def budget(v: LocalVerifier, c: int, i: int, eps: float, old_seconds: float) -> dict:
    res = v.run(centre(c, i, v.latent_dim), [c], [eps], ids=[i])
    return {"c": c, "i": i, "status": int(res.status[0, 0]), "seconds": float(res.seconds[0]),
            "boxes": int(res.boxes[0, 0]), "old_seconds": old_seconds}  # fmt: skip


def _quantiles(values: list[float]) -> list[float]:
    """Lower quartile, median, upper quartile (interpolated between order statistics)."""
    return statistics.quantiles(values, n=4, method="inclusive")


def summarise(parts: dict[str, list[dict]]) -> dict:
    """The figures the README quotes, from the records."""
    out: dict = {}
    needed = {"0.03": 70 / 120, "0.05": 443 / 543}  # unknown balls to certify for 95% / 90% decided (of 1,000)
    for name, recs in parts.items():
        part, _, eps = name.partition("-")
        if part == "gap":
            tight = sorted(r["tightening"] for r in recs)
            k = math.ceil(needed.get(eps, 0.5) * len(recs))
            out[name] = {"balls": len(recs), "pgd_min": min(r["pgd"] for r in recs),
                         "pgd_over_centre_median": statistics.median(r["pgd"] / r["m0"] for r in recs),
                         "ratio_quartiles": _quantiles([r["ratio"] for r in recs]),
                         "tightening_quartiles": _quantiles(tight), "tightening_for_target": tight[k - 1]}  # fmt: skip
        elif part == "slack":
            share = [sum(x["intercepts"] for x in r["layers"] if len(x["shape"]) == 1)
                     / sum(x["intercepts"] for x in r["layers"]) for r in recs]  # fmt: skip
            out[name] = {"balls": len(recs), "dense_share_median": statistics.median(share),
                         "dense_share_range": [min(share), max(share)],
                         "unstable_medians": [statistics.median(r["layers"][j]["unstable"] for r in recs)
                                              for j in range(len(recs[0]["layers"]))]}  # fmt: skip
        elif part == "ceiling":
            layers = {}
            for k in recs[0]["layers"]:
                per = [r["layers"][k] for r in recs]
                layers[k] = {"width_ratio_median": statistics.median(x["width_ratio"] for x in per),
                             "certified_exact_here_only": sum(x["exact_here_only"] > 0 for x in per)}  # fmt: skip
            gens = [r["generator_ceiling"] for r in recs if r.get("generator_ceiling") is not None]
            out[name] = {"balls": len(recs), "certified_by_ceiling": sum(r["ceiling"] > 0 for r in recs),
                         "bound_median": statistics.median(r["bound"] for r in recs),
                         "ceiling_median": statistics.median(r["ceiling"] for r in recs),
                         "generator_ceiling_median": statistics.median(gens) if gens else None,
                         "certified_by_generator_ceiling": sum(g > 0 for g in gens),
                         "layers": layers}  # fmt: skip
        elif part == "budget":
            out[name] = {"balls": len(recs), "certified": sum(r["status"] == 1 for r in recs),
                         "mean_s": statistics.mean(r["seconds"] for r in recs),
                         "mean_s_before": statistics.mean(r["old_seconds"] for r in recs),
                         "boxes_of_certified": [r["boxes"] for r in recs if r["status"] == 1],
                         # this run's host against the benchmark's, on balls given up at once in both
                         "slowdown_median": statistics.median(r["seconds"] / r["old_seconds"] for r in recs
                                                              if r["boxes"] == 1)}  # fmt: skip
        elif part == "split":
            out[name] = [{"ball": [r["c"], r["i"]], "mode": r["mode"], "root": r["trace"][0], "final": r["final"],
                          "evals": r["evals"]} for r in recs]  # fmt: skip
    return out


def collect(folder: Path, out: Path) -> None:
    parts = {f.stem: [json.loads(line) for line in f.read_text().splitlines()] for f in sorted(folder.glob("*.jsonl"))}
    summary = summarise(parts)
    records = ",\n".join(
        f" {json.dumps(name)}: [\n" + ",\n".join("  " + json.dumps(r) for r in recs) + "\n ]"
        for name, recs in parts.items()
    )  # one line per ball
    summary_text = json.dumps(summary, indent=1).replace("\n", "\n ")
    out.write_text(f'{{\n "summary": {summary_text},\n "records": {{\n{records}\n }}\n}}\n')
    print(json.dumps(summary, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=("gap", "split", "budget", "slack", "head", "ceiling", "dims", "collect"))
    ap.add_argument("--dir", type=Path, help="the parts' files (collect)")
    ap.add_argument("--eps", type=float)
    ap.add_argument("--work", type=Path, help="bench_verify.py's --work directory (without --ball)")
    ap.add_argument("--sample", type=int, default=40, help="unknown balls to draw (without --ball)")
    ap.add_argument("--ball", action="append", default=[], help="CLASS:INDEX, repeatable (else --sample)")
    ap.add_argument("--milp-seconds", type=float, default=60.0, help="time limit of each head solve")
    ap.add_argument(
        "--evals",
        type=int,
        default=32,
        help="split: stop splitting once this many bounds are computed (a split computes two)",
    )
    ap.add_argument(
        "--modes",
        default="relu,input",
        help="split: relu (clamps), beta (β-CROWN: clamps, α and β on the margins, --alpha-steps), input (latent)",
    )
    ap.add_argument("--alpha-steps", type=int, default=8, help="split --modes beta: α/β steps per bound")
    ap.add_argument("--max-boxes", type=int, default=64)
    ap.add_argument("--max-seconds", type=float, default=40.0)
    ap.add_argument("--give-up", default="6", help="'none' splits every ball")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.part == "collect":
        collect(a.dir, a.out)
        return
    if a.eps is None:
        ap.error(f"{a.part} needs --eps")
    torch.set_num_threads(a.threads)
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    done = set()
    if a.out.exists():
        done = {(r["c"], r["i"], r.get("mode")) for r in map(json.loads, a.out.read_text().splitlines())}
    balls = [(int(b.split(":")[0]), int(b.split(":")[1])) for b in a.ball]
    if a.part == "split":
        jobs = [(c, i, m, 0.0) for c, i in balls for m in a.modes.split(",")]
    elif balls:
        jobs = [(c, i, None, 0.0) for c, i in balls]
    else:
        if a.work is None:
            ap.error(f"{a.part} needs --work (or --ball)")
        jobs = [(c, i, None, s) for c, i, s in unknown_balls(a.work, a.eps, a.sample)]
    give_up = None if a.give_up == "none" else float(a.give_up)
    opts = VerifyOptions(max_boxes=a.max_boxes, max_seconds=a.max_seconds, give_up=give_up)
    with a.out.open("a") as f:
        for c, i, mode, old in jobs:
            if (c, i, mode) in done:
                continue
            v = LocalVerifier(clf, gens[c], latent_dim=gens.latent_dim, options=opts)
            if a.part == "gap":
                rec = gap(v, c, i, a.eps)
            elif a.part == "split":
                if mode == "beta":
                    v.engine.options = replace(v.engine.options, alpha_steps=a.alpha_steps)
                rec = split(v, c, i, a.eps, a.evals, mode)
            elif a.part == "ceiling":
                rec = ceiling(v, c, i, a.eps)
            elif a.part == "slack":
                rec = slack(v, c, i, a.eps)
            elif a.part == "head":
                rec = head(v, clf, c, i, a.eps, a.milp_seconds)
            elif a.part == "dims":
                rec = dims(v, c, i, a.eps)
            else:
                rec = budget(v, c, i, a.eps, old)
            f.write(json.dumps(rec) + "\n")
            f.flush()
            print(json.dumps({k: round(x, 3) if isinstance(x, float) else x for k, x in rec.items()
                              if k not in ("trace", "layers", "margins")}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
