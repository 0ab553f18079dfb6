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

from dataclasses import dataclass

import torch

from ..errors import GenrobustError
from .ops import DT, gamma


@dataclass
class Cuts:
    """A pool of cuts and which boxes they hold for.

    ``coef``: per ReLU op index, (C, *its input shape) of each cut's coefficients q (float64; 0 where a cut does
    not involve a neuron); ``const`` (C,): each cut's d (q·z ≤ d); ``mask`` (B, C): whether cut c holds on box b
    (a cut proved on one domain holds on every box inside that domain's input box, see the module docstring)."""

    coef: dict[int, torch.Tensor]
    const: torch.Tensor
    mask: torch.Tensor

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

    def __len__(self) -> int:
        return len(self.const)

    def take(self, boxes: torch.Tensor) -> Cuts:
        """The same cuts seen by the boxes ``boxes`` (e.g. each row its own box)."""
        return Cuts(self.coef, self.const, self.mask[boxes])

    def check_ops(self, ops: list) -> None:
        """Cuts only on ops that own an indicator hull (``fold_indicators``: a plain ReLU; a leaky ReLU's z would
        need its own)."""
        for k in self.coef:
            if not 0 <= k < len(ops) or not getattr(ops[k], "indicator_hull", False):
                raise GenrobustError(f"cuts: op {k} is not a ReLU (cuts are over ReLU activation patterns)")

    def terms(self, gammas: torch.Tensor) -> tuple[dict[int, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The Lagrangian terms of multipliers ``gammas`` (R, C), ≥ 0, zero where a row's box lacks a cut: per
        ReLU the coefficients c (R, *shape) on its indicators, float64; the constant −Σ γ·d (R,); and a guard
        (R,) for both sums' rounding (c·z with |z| ≤ 1 moves by at most γ_C·Σ γ·|q|)."""
        g = gammas.to(DT).clamp(min=0) * self.mask.to(DT)
        C = g.shape[1]
        c = {k: (g @ q.reshape(C, -1)).reshape(len(g), *q.shape[1:]) for k, q in self.coef.items()}
        const = -(g @ self.const)
        size = sum((g @ q.reshape(C, -1).abs()).sum(1) for q in self.coef.values()) + g @ self.const.abs()
        return c, const, (gamma(C + 1, DT) * size).detach()


def cut_from_splits(splits: dict[int, torch.Tensor]) -> tuple[dict[int, torch.Tensor], float] | None:
    """The cut a safe ReLU-split domain gives (see the module docstring): per op its coefficients (+1 for an
    active split, −1 for an inactive one, float64, the splits' shape) and d = |S+| − 1. None without splits."""
    coef = {k: s.to(DT) for k, s in splits.items() if bool((s != 0).any())}
    if not coef:
        return None
    return coef, float(sum(int((s > 0).sum()) for s in coef.values())) - 1.0
