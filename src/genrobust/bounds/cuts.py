"""Cutting planes over ReLU activation patterns, carried into the margins' backward pass (BICCOS-style cuts).

A ReLU neuron with input x ∈ [l, u] and output y has an activation indicator z ∈ {0, 1} (z = 1 where x ≥ 0).
A *cut* is a linear inequality Σ q·z ≤ d over the indicators of any ReLUs of the network that holds at every
point of a box that *violates the property* (each point with its natural pattern: z = 1 where x > 0, 0 where
x < 0, either where x = 0). Branch and bound produces them for free: a ReLU-split domain with splits S proved
safe means no violating point has all of S's signs, so Σ_{S+} z − Σ_{S−} z ≤ |S+| − 1 (see
:func:`cut_from_splits`).

A cut enters a row's bound as a Lagrangian term γ·(q·z − d) ≤ 0 with γ ≥ 0 optimised beside α and β: the row
then bounds f + γ·(q·z − d) ≤ f over the violating points, so a positive bound still proves them absent. The
indicator terms c·z (c = Σ γ·q per neuron) are eliminated at each ReLU by the exact projection of the neuron's
big-M hull {y ≥ 0, y ≥ x, y ≤ u·z, y ≤ x − l·(1 − z), z ∈ [0, 1]}: given (x, y), z ranges over
[y/u, 1 + (y − x)/l], so c·z ≥ (c⁺/u)·y + c⁻·(1 + (y − x)/l), which folds into the row's coefficient on y
(before the neuron's usual relaxation) and on x (after it). A stable neuron's z is a constant (1 where l ≥ 0,
0 where u ≤ 0, split neurons included), and its c·z moves into the bias.

Rounding: the folded coefficients are quotients rounded to the rows' dtype; each moves its term by at most two
units of c (|Δ(c/u)|·y ≤ 2ε|c| as y ≤ u, and |Δ(c/l)|·(y − x) ≤ 2ε|c| as 0 ≤ y − x ≤ −l), paid per row with the
sums' own rounding (see :meth:`.ops.ReLU.fold_indicators`: the hull is the operator's rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..errors import GenrobustError
from .ops import DT, gamma


@dataclass
class NeuronPairs:
    """Linear constraints on pairs of one ReLU's neurons, a·(x_a, x_b, y_a, y_b) ≤ d (x its input, y its output),
    that hold at *every* point of the boxes they are given for (:mod:`.multineuron`'s hull facets).

    ``index`` (P, 2): the two neurons' flat indices in the op's input; ``coef`` (P, 4) float64: a; ``cut`` (P,):
    each constraint's position among the pool's cuts (its multiplier, its d in :attr:`Cuts.const`, its mask
    column); ``shape``: the op's input shape."""

    index: torch.Tensor
    coef: torch.Tensor
    cut: torch.Tensor
    shape: tuple[int, ...]


@dataclass
class CutTerms:
    """A batch of rows' Lagrangian terms (:meth:`Cuts.terms`): per op the coefficients on its indicators ``z``, on
    its input ``x`` and on its output ``y`` (R, *shape), float64; the constant −Σ γ·d (R,); ``guard`` (R,) for the
    rounding of the constant and of the indicator sums (|z| ≤ 1); ``scale`` per op with x/y terms (R,): their sums'
    rounding per unit of max |x| (the caller multiplies by its bound on |x|, as |y| ≤ |x| for a ReLU)."""

    z: dict[int, torch.Tensor]
    x: dict[int, torch.Tensor]
    y: dict[int, torch.Tensor]
    const: torch.Tensor
    guard: torch.Tensor
    scale: dict[int, torch.Tensor]


@dataclass
class Cuts:
    """A pool of cuts and which boxes they hold for.

    ``coef``: per ReLU op index, (C, *its input shape) of each cut's coefficients q (float64; 0 where a cut does
    not involve a neuron); ``const`` (C,): each cut's d (q·z ≤ d); ``mask`` (B, C): whether cut c holds on box b
    (a cut proved on one domain holds on every box inside that domain's input box, see the module docstring).
    ``pairs``: per ReLU op index, constraints on (x, y) of pairs of its neurons (:class:`NeuronPairs`), which are
    cuts of the pool too (their columns of ``const`` and ``mask``; 0 in ``coef``)."""

    coef: dict[int, torch.Tensor]
    const: torch.Tensor
    mask: torch.Tensor
    pairs: dict[int, NeuronPairs] = field(default_factory=dict)

    def __post_init__(self) -> None:
        C = len(self.const)
        if self.mask.dim() != 2 or self.mask.shape[1] != C:
            raise GenrobustError(f"cuts: a mask of shape (boxes, {C}) is needed, got {tuple(self.mask.shape)}")
        for k, q in self.coef.items():
            if q.shape[0] != C:
                raise GenrobustError(f"cuts: op {k} has coefficients for {q.shape[0]} cuts, not {C}")
            if not torch.isfinite(q).all():
                raise GenrobustError(f"cuts: op {k} has NaN or infinite coefficients")
        if not torch.isfinite(self.const).all():
            raise GenrobustError("cuts: NaN or infinite constants")
        for k, p in self.pairs.items():
            if p.index.dim() != 2 or p.index.shape[1] != 2 or p.coef.shape != (len(p.index), 4):
                raise GenrobustError(f"cuts: op {k}'s neuron pairs need index (P, 2) and coef (P, 4)")
            if not torch.isfinite(p.coef).all():
                raise GenrobustError(f"cuts: op {k}'s neuron pairs have NaN or infinite coefficients")
            if len(p.cut) and (int(p.cut.min()) < 0 or int(p.cut.max()) >= C):
                raise GenrobustError(f"cuts: op {k}'s neuron pairs refer to cuts outside the pool of {C}")

    def __len__(self) -> int:
        return len(self.const)

    @staticmethod
    def concat(parts: list[Cuts | None]) -> Cuts | None:
        """One pool of several (``None`` entries skipped), their masks over the same boxes side by side."""
        parts = [p for p in parts if p is not None and len(p)]
        if len(parts) <= 1:
            return parts[0] if parts else None
        sizes = [len(p) for p in parts]
        starts = [sum(sizes[:i]) for i in range(len(parts))]
        coef = {}
        for k in sorted({k for p in parts for k in p.coef}):
            shape = next(p.coef[k].shape[1:] for p in parts if k in p.coef)
            coef[k] = torch.cat([p.coef[k] if k in p.coef else p.const.new_zeros(len(p), *shape) for p in parts])
        pairs = {}
        for k in sorted({k for p in parts for k in p.pairs}):
            have = [(p.pairs[k], s) for p, s in zip(parts, starts, strict=True) if k in p.pairs]
            pairs[k] = NeuronPairs(torch.cat([q.index for q, _ in have]), torch.cat([q.coef for q, _ in have]),
                                   torch.cat([q.cut + s for q, s in have]), have[0][0].shape)  # fmt: skip
        return Cuts(coef, torch.cat([p.const for p in parts]), torch.cat([p.mask for p in parts], 1), pairs)

    def only_ops(self, ops) -> Cuts | None:
        """The cuts whose every term lies on ``ops`` (e.g. the layers before a refined one): the others' columns
        leave, so no multiplier is left with its constant and without its terms. None if none is left."""
        ops = set(ops)
        keep = torch.ones(len(self), dtype=torch.bool, device=self.const.device)
        for k, q in self.coef.items():
            if k not in ops:
                keep &= ~(q.reshape(len(self), -1) != 0).any(1)
        for k, p in self.pairs.items():
            if k not in ops:
                keep[p.cut] = False
        if not bool(keep.any()):
            return None
        if bool(keep.all()):
            return self
        new = torch.full((len(self),), -1, dtype=torch.long, device=keep.device)
        new[keep] = torch.arange(int(keep.sum()), device=keep.device)
        coef = {k: q[keep] for k, q in self.coef.items() if k in ops}
        pairs = {k: NeuronPairs(p.index, p.coef, new[p.cut], p.shape) for k, p in self.pairs.items() if k in ops}
        return Cuts(coef, self.const[keep], self.mask[:, keep], pairs)

    def take(self, boxes: torch.Tensor) -> Cuts:
        """The same cuts seen by the boxes ``boxes`` (e.g. each row its own box)."""
        return Cuts(self.coef, self.const, self.mask[boxes], self.pairs)

    def check_ops(self, ops: list) -> None:
        """Cuts only on ops that own an indicator hull (``fold_indicators``: a plain ReLU; a leaky ReLU's z would
        need its own)."""
        for k in [*self.coef, *self.pairs]:
            if not 0 <= k < len(ops) or not getattr(ops[k], "indicator_hull", False):
                raise GenrobustError(f"cuts: op {k} is not a ReLU (cuts are over ReLU activation patterns)")
        for k, p in self.pairs.items():
            if tuple(p.shape) != tuple(ops[k].in_shape) or (len(p.index) and int(p.index.max()) >= math.prod(p.shape)):
                raise GenrobustError(f"cuts: op {k}'s neuron pairs do not fit its input {tuple(ops[k].in_shape)}")

    def terms(self, gammas: torch.Tensor) -> CutTerms:
        """The Lagrangian terms of multipliers ``gammas`` (R, C), ≥ 0, zero where a row's box lacks a cut (see
        :class:`CutTerms`): c·z with |z| ≤ 1 moves by at most γ_C·Σ γ·|q| through the sums' rounding, and each
        x/y coefficient sums at most P terms."""
        g = gammas.to(DT).clamp(min=0) * self.mask.to(DT)
        R, C = g.shape
        c = {k: (g @ q.reshape(C, -1)).reshape(R, *q.shape[1:]) for k, q in self.coef.items()}
        const = -(g @ self.const)
        size = sum((g @ q.reshape(C, -1).abs()).sum(1) for q in self.coef.values()) + g @ self.const.abs()
        xs, ys, scale = {}, {}, {}
        for k, p in self.pairs.items():
            gk = g[:, p.cut]  # (R, P)
            n = math.prod(p.shape)
            x = torch.zeros(R, n, dtype=DT, device=g.device)
            y = torch.zeros(R, n, dtype=DT, device=g.device)
            for s in (0, 1):
                x = x.index_add(1, p.index[:, s], gk * p.coef[:, s])
                y = y.index_add(1, p.index[:, s], gk * p.coef[:, 2 + s])
            xs[k], ys[k] = x.reshape(R, *p.shape), y.reshape(R, *p.shape)
            scale[k] = (gamma(len(p.cut) + 2, DT) * (gk.abs() @ p.coef.abs().sum(1))).detach()
        return CutTerms(c, xs, ys, const, (gamma(C + 1, DT) * size).detach(), scale)


def cut_from_splits(splits: dict[int, torch.Tensor]) -> tuple[dict[int, torch.Tensor], float] | None:
    """The cut a safe ReLU-split domain gives (see the module docstring): per op its coefficients (+1 for an
    active split, −1 for an inactive one, float64, the splits' shape) and d = |S+| − 1. None without splits."""
    coef = {k: s.to(DT) for k, s in splits.items() if bool((s != 0).any())}
    if not coef:
        return None
    return coef, float(sum(int((s > 0).sum()) for s in coef.values())) - 1.0
