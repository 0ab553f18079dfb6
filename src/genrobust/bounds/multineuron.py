"""Multi-neuron relaxations of ReLU pairs (PRIMA's k = 2 case), as constraints for the margins' bound.

Every single-neuron relaxation (the triangle, α's lines) is a relaxation of one neuron at a time, and the bound
cannot get past the LP over those triangles (on `mnist_fc` 256×4 the optimised slopes reach it). Two neurons of one
layer are correlated: their inputs x_a, x_b move together over the box, which the octagon bounds of x_a ± x_b
record. The convex hull of {(x_a, x_b, ReLU(x_a), ReLU(x_b)) : x in the octagon} is then tighter than the product of
the two triangles, and its facets a·(x_a, x_b, y_a, y_b) ≤ d are linear constraints that hold at every point of the
box. They enter the margins' backward pass as cutting planes with multipliers γ ≥ 0 (:class:`.cuts.Cuts`' ``pairs``),
optimised beside α and β, the way GCP-CROWN carries PRIMA's constraints without an LP solver.

Soundness does not depend on the hull's floating point. The facet *directions* come from qhull (any direction would
do); each facet's constant d is computed again, rigorously: on each sign pattern (quadrant) of (x_a, x_b) the
function is linear, g·x, and its maximum over the octagon ∩ quadrant is bounded by LP duality, g·x ≤ λ·h +
Σ|g − Hᵀλ|·max|x| for any λ ≥ 0 (λ from the optimal vertex's two active constraints; the quadrant box alone as
a fallback), with a guard far above every rounding of those few float64 sums, and the largest over the four
quadrants rounded up.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from .cuts import Cuts, NeuronPairs
from .ops import DT

if TYPE_CHECKING:
    from .engine import BoundEngine

#: facets whose coefficient on one of the two neurons (x and y together) is below this share of the largest are
#: single-neuron facets (the triangle, already in every bound) and are left out
SINGLE_SHARE = 1e-9
#: relative guard on each rigorous maximum (far above the ~1e-15 relative error of its few float64 operations)
GUARD = 1e-11


def octagon_rows(n: int, pairs: np.ndarray) -> np.ndarray:
    """Rows (4P, n) whose lower bounds give each pair's octagon: x_a + x_b, −x_a − x_b, x_a − x_b, −x_a + x_b."""
    rows = np.zeros((4 * len(pairs), n))
    for t, (a, b) in enumerate(pairs):
        for s, (va, vb) in enumerate(((1, 1), (-1, -1), (1, -1), (-1, 1))):
            rows[4 * t + s, a], rows[4 * t + s, b] = va, vb
    return rows


def _halfplanes(lo: np.ndarray, hi: np.ndarray, octa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The octagon {x : H·x ≤ h} of one pair from its intervals and the lower bounds ``octa`` of the four rows of
    :func:`octagon_rows` (each row's bound r ≤ row·x gives −row·x ≤ −r)."""
    H = np.array([[1, 0], [-1, 0], [0, 1], [0, -1], [-1, -1], [1, 1], [-1, 1], [1, -1]], dtype=np.float64)
    h = np.array([hi[0], -lo[0], hi[1], -lo[1], -octa[0], -octa[1], -octa[2], -octa[3]], dtype=np.float64)
    return H, h


_PAIRS = np.array(list(itertools.combinations(range(10), 2)))  # the 8 octagon sides and the 2 quadrant sides


def _vertices(H: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The polygon {H·x ≤ h}'s vertices (V, 2), approximately in float64, and each one's two active constraints
    (V, 2): every pair of sides intersected (Cramer's rule), the points that meet every side kept."""
    M = H[_PAIRS]  # (45, 2, 2)
    b = h[_PAIRS]  # (45, 2)
    det = M[:, 0, 0] * M[:, 1, 1] - M[:, 0, 1] * M[:, 1, 0]
    ok = np.abs(det) > 1e-12
    M, b, det, pairs = M[ok], b[ok], det[ok], _PAIRS[ok]
    x = np.stack([b[:, 0] * M[:, 1, 1] - b[:, 1] * M[:, 0, 1], M[:, 0, 0] * b[:, 1] - M[:, 1, 0] * b[:, 0]], 1)
    x = x / det[:, None]
    inside = (x @ H.T <= h + 1e-9 * (1 + np.abs(h))).all(1)
    return x[inside], pairs[inside]


def _sound_max(g: np.ndarray, H: np.ndarray, h: np.ndarray, lo: np.ndarray, hi: np.ndarray, verts: np.ndarray,
               active: np.ndarray) -> np.ndarray:  # fmt: skip
    """Rigorous upper bounds (F,) of max g_f·x over {H·x ≤ h}, a polygon inside the box [lo, hi], for the rows of
    ``g`` (F, 2): the least of the box's bound and the dual bound from each row's best vertex (see the module
    docstring), each with its guard."""
    m = np.maximum(np.abs(lo), np.abs(hi))
    best = np.maximum(g * lo, g * hi).sum(1) + GUARD * (np.abs(g) @ m) + 1e-300
    if not len(verts):
        return best
    top = (g @ verts.T).argmax(1)  # (F,)
    M = H[active[top]]  # (F, 2, 2): the best vertex's two sides; λ solves Mᵀλ = g
    det = M[:, 0, 0] * M[:, 1, 1] - M[:, 0, 1] * M[:, 1, 0]
    lam = np.stack([g[:, 0] * M[:, 1, 1] - g[:, 1] * M[:, 1, 0], M[:, 0, 0] * g[:, 1] - M[:, 0, 1] * g[:, 0]], 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.clip(lam / det[:, None], 0.0, None)
    r = g - np.einsum("fij,fi->fj", M, lam)
    hb = h[active[top]]
    val = (lam * hb).sum(1) + np.abs(r) @ m
    scale = (np.abs(lam) * np.abs(hb)).sum(1) + (np.abs(g) + np.einsum("fij,fi->fj", np.abs(M), lam)) @ m
    dual = val + GUARD * scale + 1e-300
    return np.where(np.isfinite(dual), np.minimum(best, dual), best)


def pair_facets(lo: np.ndarray, hi: np.ndarray, octa: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """The two-neuron facets of conv{(x_a, x_b, ReLU x_a, ReLU x_b) : x in the pair's octagon}, both neurons
    unstable: each (coefficients on (x_a, x_b, y_a, y_b), d) with a·v ≤ d at every such point (d rigorous, see the
    module docstring). Empty when the hull is degenerate (qhull refuses it): no constraint is always sound."""
    from scipy.spatial import ConvexHull, QhullError

    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    H, h = _halfplanes(lo, hi, np.asarray(octa, np.float64))
    pieces, points = [], []
    for q in itertools.product((-1.0, 1.0), repeat=2):  # the quadrant q·x ≥ 0 of each coordinate
        Hq = np.vstack([H, [[-q[0], 0.0], [0.0, -q[1]]]])
        hq = np.concatenate([h, [0.0, 0.0]])
        verts, active = _vertices(Hq, hq)
        act = np.array([q[0] > 0, q[1] > 0], dtype=np.float64)
        qlo = np.where(np.array(q) > 0, np.maximum(lo, 0.0), lo)
        qhi = np.where(np.array(q) > 0, hi, np.minimum(hi, 0.0))
        if (qlo <= qhi).all():  # else the box misses this quadrant: no point of it there
            pieces.append((Hq, hq, verts, active, act, qlo, qhi))
        points.append(np.hstack([verts, verts * act]))
    points = np.unique(np.vstack(points), axis=0)
    if len(points) < 5:
        return []
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):
        return []
    a = hull.equations[:, :4]
    big = np.abs(a).max(1)
    two = (np.abs(a[:, 0]) + np.abs(a[:, 2]) >= SINGLE_SHARE * big) & (
        np.abs(a[:, 1]) + np.abs(a[:, 3]) >= SINGLE_SHARE * big
    )
    a = a[two]
    if not len(a):
        return []
    _, first = np.unique(np.round(a / np.abs(a).max(1, keepdims=True), 9), axis=0, return_index=True)
    a = a[np.sort(first)]
    d = np.full(len(a), -np.inf)
    for Hq, hq, verts, active, act, qlo, qhi in pieces:
        g = a[:, :2] + act * a[:, 2:]  # on this quadrant y = act·x
        d = np.maximum(d, _sound_max(g, Hq, hq, qlo, qhi, verts, active))
    d = np.nextafter(d, np.inf)
    return [(a[f].copy(), float(d[f])) for f in range(len(a)) if np.isfinite(d[f])]


def pair_cuts(
    engine: BoundEngine, center: torch.Tensor, radius: torch.Tensor, intervals: dict, neurons: dict[int, list[int]]
) -> Cuts | None:
    """The hull facets of every pair among ``neurons`` (op index → flat indices of unstable ReLU inputs, one box:
    ``center``, ``radius`` (1, d) with its ``intervals``), as a pool of cuts that hold on that box and on every
    box inside it (mask (1, C); a caller widens it to the boxes that share the box). The octagon of each pair is
    bounded by backward passes on the box's intervals (:meth:`.engine.BoundEngine.input_rows`, four rows per
    pair). None when no pair gives a facet."""
    pairs: dict[int, NeuronPairs] = {}
    consts: list[float] = []
    dev = center.device
    for k, idx in sorted(neurons.items()):
        idx = [int(i) for i in idx]
        if len(idx) < 2:
            continue
        shape = tuple(engine.ops[k].in_shape)
        n = math.prod(shape)
        lo = intervals[k][0][0].reshape(-1).double().cpu().numpy()
        hi = intervals[k][1][0].reshape(-1).double().cpu().numpy()
        P = np.array(list(itertools.combinations(idx, 2)), dtype=np.int64)
        rows = torch.as_tensor(octagon_rows(n, P), dtype=DT, device=dev).reshape(-1, *shape)
        octa = np.empty(len(rows))
        for s in range(0, len(rows), 4096):
            part = rows[s : s + 4096]
            ball = torch.zeros(len(part), dtype=torch.long, device=dev)
            octa[s : s + len(part)] = engine.input_rows(center, radius, intervals, k, part, ball).cpu().numpy()
        octa = octa.reshape(-1, 4)
        index, coef, cut = [], [], []
        for (a, b), o in zip(P, octa, strict=True):
            for facet, d in pair_facets(lo[[a, b]], hi[[a, b]], o):
                index.append((a, b))
                coef.append(facet)
                cut.append(len(consts))
                consts.append(d)
        if index:
            pairs[k] = NeuronPairs(torch.as_tensor(np.array(index), device=dev),
                                   torch.as_tensor(np.array(coef), dtype=DT, device=dev),
                                   torch.as_tensor(cut, dtype=torch.long, device=dev), shape)  # fmt: skip
    if not consts:
        return None
    C = len(consts)
    mask = torch.ones(1, C, dtype=torch.bool, device=dev)
    return Cuts({}, torch.as_tensor(consts, dtype=DT, device=dev), mask, pairs)
