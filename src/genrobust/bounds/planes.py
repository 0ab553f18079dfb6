"""Latent boxes cut by half-spaces, and linear functions minimised over them soundly.

Why: a box of the latent is split where its unstable neurons' bounds are loosest. Their backward passes give each
neuron a linear function g·s of the box's coordinates s ∈ [−1, 1]^d, and on the built-in C∘G these functions
point mostly one way: on ball (0, 36) at ε = 0.05 the top principal direction of the open neurons' g holds 52% of
their weight, while no coordinate axis holds more than a tenth. A halving along an axis moves each neuron's bound
by its one coefficient |g_k|; a cut across that direction moves most of them by most of Σ|g|. Bounding both
sides of such a cut took the worst margin from −67.6 to −5.7 where the best axis halving reached −34.0
(docs/verify-complete.md, stop 70).

A domain is a box with half-spaces P·z ≥ q on it (z the latent). In the box's own coordinates (z = c + r·s) each
is V·s ≥ T with V = P·r and T = q − P·c. A linear function g·s has on the domain, for every μ ≥ 0,

    g·s = (g − Σ_j μ_j V_j)·s + Σ_j μ_j V_j·s ≥ −‖g − Σ_j μ_j V_j‖₁ + Σ_j μ_j T_j,

so every μ ≥ 0 gives a lower bound of its minimum (weak duality): soundness never depends on how well μ is
chosen. μ is chosen by coordinate ascent, each coordinate at its exact optimum (a weighted median of the
breakpoints g_i/v_i, found by one sort of d numbers). With one half-space this is the exact minimum; with
several, a bound that the box's own closed form (−‖g‖₁) can only improve on.

Rounding: V, T and the sum are computed in float64 from exact inputs; each moves the bound by at most a few
units of 2⁻⁵³ of the magnitudes involved (‖g‖₁, and μ_j times ‖P_j‖₁·(|c| + r) + |q_j|), which ``GUARD`` × those
magnitudes pays many times over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .ops import DT

#: relative rounding guard of a minimisation over a cut box (≥ 100·γ_n in float64 for every n ≤ 10⁵)
GUARD = 1e-9
#: coordinate-ascent sweeps over the half-spaces (one is exact with a single half-space)
SWEEPS = 2


@dataclass
class Planes:
    """The half-spaces of a batch of boxes in each box's coordinates: V·s ≥ T, with V (B, m, d), T (B, m), and the
    magnitude ``mag`` (B, m) that bounds the rounding of V and T (rows of zeros: no constraint)."""

    V: torch.Tensor
    T: torch.Tensor
    mag: torch.Tensor
    _scale: torch.Tensor | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_latent(cls, planes: torch.Tensor, center: torch.Tensor, radius: torch.Tensor) -> Planes:
        """From half-spaces P·z ≥ q in the latent, ``planes`` (B, m, d + 1) as [P | q], and the boxes c ± r."""
        planes = planes.to(DT)
        P, q = planes[..., :-1], planes[..., -1]
        V = P * radius[:, None, :]
        T = q - (P * center[:, None, :]).sum(2)
        mag = (P.abs() * (center.abs() + radius)[:, None, :]).sum(2) + q.abs()
        return cls(V, T, mag)

    @property
    def scale(self) -> torch.Tensor:
        """(B, m): what one unit of a half-space's multiplier adds to a bound's rounding magnitude,
        ‖V_j‖₁ + |T_j| + ``mag``_j (computed once per batch, not once per row)."""
        if self._scale is None:
            self._scale = self.V.abs().sum(2) + self.T.abs() + self.mag
        return self._scale

    def take(self, idx: torch.Tensor) -> Planes:
        return Planes(self.V[idx], self.T[idx], self.mag[idx])


def min_linear(g: torch.Tensor, ball: torch.Tensor, planes: Planes | None, with_size: bool = False):
    """A guarded lower bound (R,) of min g_r·s over the domain of box ``ball[r]`` (s ∈ [−1, 1]^d cut by that box's
    half-spaces), for rows ``g`` (R, d); −‖g‖₁ (the box's exact minimum) without half-spaces.

    ``with_size``: also the magnitude (R,) its rounding is measured against. Two evaluations on the same rows may
    differ by a few units of 2⁻⁵³ of it (the sums' order may depend on the batch's layout; μ is a function of each
    row's own numbers, computed elementwise and by reductions along the row): a caller that takes such a bound back
    out of another (:func:`.engine._keep_tighter`) pays ``GUARD`` (10⁻⁹) of it."""
    g = g.to(DT)
    if planes is None or planes.V.shape[1] == 0 or not len(g):
        m = -g.abs().sum(1)
        return (m, -m) if with_size else m
    V, T = planes.V[ball], planes.T[ball]  # (R, m, d), (R, m)
    R, m = V.shape[:2]
    with torch.no_grad():
        mu = torch.zeros(R, m, dtype=DT, device=g.device)
        h = g.detach().clone()  # g − Σ_j μ_j V_j, kept up to date
        for sweep in range(SWEEPS if m > 1 else 1):
            for j in range(m):
                v = V[:, j]
                if sweep:
                    h.addcmul_(mu[:, j : j + 1], v)  # g less the other planes' terms
                mu[:, j] = _best_mu(h, v, T[:, j])
                h.addcmul_(mu[:, j : j + 1], v, value=-1.0)
    # h's own rounding (2·m·SWEEPS roundings of terms ≤ |g| + Σ μ_j|V_j|) is far inside the guard; under autograd
    # (α, β) the bound is recomputed from g so that its gradient flows
    if g.requires_grad:
        h = g - (V[:, 0] * mu[:, :1] if m == 1 else torch.einsum("rm,rmd->rd", mu, V))
    val = -h.abs().sum(1) + (mu * T).sum(1)
    size = g.detach().abs().sum(1) + (mu * planes.scale[ball]).sum(1)
    return (val - GUARD * size, size) if with_size else val - GUARD * size


def _best_mu(h: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """argmax over μ ≥ 0 of −‖h − μ·v‖₁ + μ·t per row: the slope t + Σ_{b_i > μ} |v_i| − Σ_{b_i < μ} |v_i| (b_i =
    h_i/v_i) falls as μ passes each breakpoint, so the optimum is the first breakpoint where it turns ≤ 0.

    Only the rows whose slope at μ = 0 is positive, t + Σ_i sign(h_i)·v_i (−|v_i| where h_i = 0), have an optimum
    above 0: the others keep μ = 0 without a sort. On balls (0, 36) and (5, 1) of the built-in models at ε = 0.05,
    27–29% of the rows rise (the plane cuts off their minimising corner); the rest skip the sort."""
    w = v.abs()
    slope0 = t + torch.where(h != 0, torch.sign(h) * v, -w).sum(1)
    mu = torch.zeros_like(t)
    rise = torch.nonzero(slope0 > 0).flatten()
    if not len(rise):
        return mu
    h, v, w, t = h[rise], v[rise], w[rise], t[rise]
    b = h / torch.where(w > 0, v, 1.0)  # where v_i = 0 its weight is 0: wherever it sorts, it moves nothing
    b, order = torch.sort(b, 1)
    slope = (t + w.sum(1))[:, None] - 2 * torch.gather(w, 1, order).cumsum(1)  # just past each breakpoint
    past = slope <= 0
    first = past.to(torch.uint8).argmax(1)  # the first breakpoint past which it no longer rises (0 if none)
    # rising past every breakpoint: an empty domain, where any μ is sound: the last
    first = torch.where(past[:, -1], first, b.shape[1] - 1)
    mu[rise] = b.gather(1, first[:, None]).squeeze(1).clamp(min=0)
    return mu


def lp_range(lo: torch.Tensor, hi: torch.Tensor, planes: torch.Tensor | None, p: torch.Tensor,
             sides: tuple[int, ...] = (1, -1)) -> list[float] | None:  # fmt: skip
    """The least and the largest p·z over the box [lo, hi] (latent, (d,)) cut by ``planes`` ((m, d + 1), P·z ≥ q),
    by a linear program (HiGHS): exact up to the solver's tolerances, so for choosing where to cut a domain (any
    cut is sound: both sides keep the hyperplane) and which half-spaces to drop (dropping one only widens a domain),
    never for a bound. ``sides``: 1 for the least, −1 for the largest. None where the solver does not succeed (an
    empty domain among them).

    Why not :func:`min_linear`: its coordinate ascent over the multipliers is exact for one half-space, but with
    several nearly parallel ones it stalls far from the optimum. On ball (0, 43) of the built-in models at ε = 0.05 a
    part cut five times across nearly the same direction had a least p·z of −2.85 (its own plane's bound) where the
    ascent gave −3.63; the next cut through the middle of that range fell on the part's edge, and its child was its
    parent again, four times over (docs/verify-complete.md, stop 72)."""
    from scipy.optimize import linprog

    A = b = None
    if planes is not None and len(planes):
        P = planes[:, :-1].detach().cpu().double().numpy()
        used = np.abs(P).sum(1) > 0
        A, b = -P[used], -planes[:, -1].detach().cpu().double().numpy()[used]
        if not len(A):
            A = b = None
    bounds = list(zip(lo.detach().cpu().double().tolist(), hi.detach().cpu().double().tolist(), strict=True))
    c = p.detach().cpu().double().numpy()
    out = []
    for side in sides:
        res = linprog(side * c, A_ub=A, b_ub=b, bounds=bounds, method="highs")
        if res.status != 0 or not np.isfinite(res.fun):
            return None
        out.append(side * float(res.fun))
    return out


def drop_implied(lo: torch.Tensor, hi: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
    """``planes`` (m, d + 1) less the half-spaces that the box [lo, hi] and the others kept imply (one linear
    program each, :func:`lp_range`, in order). Sound whatever the solver says: a domain with fewer half-spaces
    contains the one with all of them. Why: each half-space costs every minimisation over the part a coordinate of
    :func:`min_linear`'s ascent, and implied ones (a part halved across an earlier cut's direction keeps that cut)
    only slow the ascent down."""
    keep = list(range(len(planes)))
    center, radius = (lo + hi) / 2, (hi - lo) / 2
    for j in range(len(planes)):
        rest = [k for k in keep if k != j]
        row = planes[j].double()
        size = float((row[:-1].abs() * (center.abs() + radius)).sum() + row[-1].abs())
        least = lp_range(lo, hi, planes[rest] if rest else None, row[:-1], sides=(1,))
        if least is not None and least[0] >= float(row[-1]) + 1e-9 * size:
            keep = rest
    return planes[keep]
