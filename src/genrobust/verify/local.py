"""Local robustness of C∘G_c on latent ε-boxes: *certified*, *falsified* or *unknown*, for many balls and many ε.

For each ball B(z, ε) and label c:

* **falsified** when a latent in the box has a plain forward pass (float32, the caller's own models) whose class
  is not c; a misclassified centre counts. The witness is kept, and its distance to z is checked in float64.
* **certified** when sound bounds (``genrobust.bounds``) prove every margin logit_c − logit_j > 0 on the
  whole box, possibly after splitting it into sub-boxes (branch and bound on the latent dimensions).
* **unknown** when the budget (sub-boxes or seconds per ball) runs out first.

Several ε are checked in increasing order and monotonicity does the rest: certified at ε ⇒ at every smaller
ε, falsified at ε ⇒ at every larger ε. Only balls certified at one ε are bounded at the next, so a run over a
list of ε costs little more than over its largest certified one; the others are only attacked.
"""

from __future__ import annotations

import math
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from ..attacks import _eps_list, box_bounds, pgd_in_boxes
from ..bounds.capture import capture
from ..bounds.cuts import Cuts, cut_from_splits
from ..bounds.engine import BoundEngine, BoundOptions, refutation
from ..bounds.multineuron import pair_cuts
from ..bounds.ops import DT, Activation, Reshape
from ..bounds.planes import Planes, drop_implied, lp_range, min_linear
from ..compose import Composed
from ..errors import GenrobustError, GenrobustWarning
from ..models.layout import inference_copy
from ..rounding import centre_radius, inward, outward, real_ball
from ..runtime import progress, resolve_device, sub_seed, working_copy

CERTIFIED, UNKNOWN, FALSIFIED = 1, 0, -1
#: Changes whenever the same options can give other outcomes (caches of results keep it, so old cells are not
#: mixed with new ones). 2: budgets kept instead of overrun. 3: undecided sub-boxes attacked margin by margin
#: (``leaf_targets``), ReLU branching on pixel boxes. 4: S-shaped curves (the generators' tanh, sigmoid) across 0
#: bounded by tangents that clear the far end; half the falsifier's starts output-diversified (and on pixel
#: boxes, in ``vnnlib.answer``, 32 restarts of doubled steps). 5: latent boxes halve the dimension that spans most
#: of the classifier's unstable neurons' intervals (``split="unstable"``, the new default). 6: float32 refinement
#: rows pay their rounding neuron by neuron (tighter intermediate bounds, so more boxes certified). 7: the first
#: classifier nonlinearity behind the image is refined by rows to the latent too (fewer boxes on hard balls). 8: pixel
#: patches cross the generator's last layers as windows of its rows of pixels, and patch rows through a convolution
#: pay the rounding of its non-zero terms only (tighter bounds: ball (2, 1)'s whole box −20.68 → −20.05). 9: a split
#: makes as many latent halvings at once as the box's bound is predicted to need (``fan``; fewer boxes per ball). 10:
#: α-CROWN on the margins of the near misses (``near_alpha``: boxes a few margins' passes prove instead of a split).
#: 11: an unstable ReLU's default lower line leans to its flat piece (``BoundOptions.lower_ratio`` 2: tighter bounds
#: at no cost). 12: a ball's boxes are bounded together (:meth:`_Search.next_batch`), so a split ball's seconds pay
#: for its own boxes, not half of another ball's whole box (more balls certified within the same budget). 13: with a
#: pool of seconds, the deferred balls go on one at a time, the most promising first (:meth:`_Search._resume_deferred`).
#: 14: an undecided latent box is cut first across the direction its open neurons share (``oblique``). 15: that cut
#: goes through the middle of the part's exact range along it (a linear program), and half-spaces a part implies are
#: dropped (a part cut across nearly the same direction again no longer has itself as a child).
VERIFIER_VERSION = 15
#: ``VerifyOptions.give_up``'s default (measured: see there).
GIVE_UP = 1.5
#: The factor by which a halving of the latent dimension of largest reach shrinks a box's gap m − b (centre margin
#: minus worst bound) before the ball's own is measured, its clip once measured, and how far below an integer a
#: predicted number of halvings may fall before it is rounded up (:meth:`LocalVerifier._fan_levels`).
FAN_RHO = 0.65
FAN_RHO_RANGE = (0.4, 0.9)
FAN_SLACK = 0.1
#: an undecided box is cut obliquely only where its top direction holds at least this share of its open rows' weight
#: (``VerifyOptions.oblique``). On six ε = 0.05 balls, the three at 0.52–0.61 bounded their two sides 2–10× closer to a
#: proof than the best halving did; the three at 0.24–0.31 only 1.1–1.4× closer, and their sides, bounded in boxes
#: almost as wide as the parent's, cost more than a halving's: on the first 200 balls, every split oblique lost four
#: balls of class 2 to the pool and gained six hard ones of classes 0 and 1 (docs/verify-complete.md, stop 70).
OBLIQUE_SHARE = 0.4
#: ``VerifyOptions.fan`` at most (2^6 children of one box)
MAX_FAN = 6
STATUS_NAMES = {CERTIFIED: "certified", UNKNOWN: "unknown", FALSIFIED: "falsified"}
Split = Literal["unstable", "cost", "gap", "width", "gradient"]
SPLITS: tuple[str, ...] = ("unstable", "cost", "gap", "width", "gradient")
#: ``split="cost"``: the worst margin's costliest unstable neurons whose shares are weighed
COST_NEURONS = 4096
Branch = Literal["latent", "relu", "auto"]
BRANCHES: tuple[str, ...] = ("latent", "relu", "auto")
#: ``VerifyOptions.branch=None`` halves input dimensions up to this many, and splits ReLUs above.
LATENT_SPLIT_DIMS = 32


@dataclass(frozen=True)
class VerifyOptions:
    """Budgets and choices of the local check.

    ``max_boxes``: bound computations allowed per ball and ε (1 = bounds only, no splitting).
    ``max_seconds``: wall time per ball over all its ε (each batch's time shared equally among its boxes; a ball's
    boxes are batched together, :meth:`_Search.next_batch`).
    ``split``: which latent dimension to halve: ``"unstable"`` (the one that spans most of the classifier's
    unstable ReLUs' intervals, :meth:`LocalVerifier._reach`: where the bound's slack is), ``"cost"`` (the same,
    each neuron's share weighed by what its relaxation's intercept costs the worst margin's bound: a candidate,
    measured in docs/verify-complete.md, not the default), ``"gap"`` (the one
    whose width costs the worst margin's linear bound most), ``"width"`` (the widest), ``"gradient"``
    (|∂margin/∂z|·width at the box's centre).
    ``batch_boxes``: boxes bounded together; by default (:func:`default_batch_boxes`) 2 on a CPU for networks
    the size of the built-in ones, more for small networks, and 16 on a GPU. On a 2-core CPU smaller
    batches are faster per box (their tensors stay in cache): seconds per ball at ε = 0.03 (16 balls of classes
    0 and 8, same outcomes) were 3.4 / 3.26 / 3.95 / 4.38 / 4.93 for batches of 1 / 2 / 4 / 8 / 16, and 0.66 /
    0.69 / 0.75 for 2 / 4 / 16 at ε = 0.01. ``attack_steps``/``attack_restarts``/``attack_step_size``: the PGD
    falsifier (:func:`~genrobust.attacks.pgd_in_boxes`; each step moves ``attack_step_size``/``attack_steps``
    half-widths: larger steps reach what lies far from the uniform starts, smaller ones land in narrow regions).
    ``leaf_attacks``: when a ball's budget runs out, PGD searches this many of its undecided sub-boxes (where
    the bounds are weakest) before the ball is left unknown; ``leaf_targets``: there, the margins of this many
    classes (the closest to the label at each sub-box's centre) are attacked one by one, ``attack_restarts``
    starts each (0: the untargeted search alone).
    ``give_up`` (latent splitting only): a ball whose first bound (the whole box) has a worst margin below
    −``give_up`` × its centre's margin is not split: its box is attacked and, unless that falsifies it, left
    unknown at once. Splitting a
    latent box tightens its bounds slowly (ten dimensions to halve), so a bound far below zero is not closed by
    any affordable budget. Measured at ε = 0.03 on 89 of the 192 balls (of 1,000) whose whole-box bound is
    undecided: splitting (16 boxes / 10 s) certified 36 of them, none below the ratio −1.81; the 44 below −1.5
    (one of them certifiable) took 477 s of the 784 s spent on the 89; a ball far below (bound −81 against a
    PGD minimum of +5.3) was still unknown after 251 boxes.
    With the ``"unstable"`` split (ε = 0.05, 30 balls, 16 boxes, no give-up) two balls below −1.5 were
    certified, at −2.1 and −3.2, in 47 s and 34 s, beyond a 10 s budget; none below −3.2 was.
    Those measurements are of older, looser bounds: the default stays 1.5 for a short run. With version 12's
    bounds at ε = 0.03, 64 boxes / 45 s certify 7 of the 14 balls between −1.4 and −4.6 that 32 boxes / 30 s
    left unknown, one as far down as −4.47 (1,000 balls with give-up 5: 98.1% decided in 1.86 s a ball;
    docs/verify-complete.md, stop 66).
    ``None`` splits every ball until its budget runs out.
    ``mean_seconds``: a pool of this many seconds per ball for a whole :meth:`LocalVerifier.run` (all its balls
    and ε): a ball decided early leaves its time to the others, a ball is split only while its share of what is
    left (and ``max_seconds``) allows, and the give-up rule becomes an order instead of a stop: a hopeless-looking
    ball is attacked at once and split last, with what the other balls left, one such ball at a time and the
    highest whole-box bound over its margin first (:meth:`_Search._resume_deferred`). What is left is shared among the
    balls being split, after a root's cost is set aside for each ball whose whole box still waits
    (:meth:`_Search.limit`): on the 50 side-by-side balls at ε = 0.05 (a pool of 5 s a ball, 64 boxes / 30 s at
    most) that decides 30 against 25 when every ball not yet done took an equal share.
    ``branch``: what a box that is neither certified nor falsified is split on: ``"latent"`` (halve a latent
    dimension, ``split`` says which), ``"relu"`` (one of the classifier's unstable ReLUs, the one whose
    relaxation costs the worst margin most: two children on the same box, its input ≥ 0 and ≤ 0, whose bounds
    carry the constraint with ``beta_steps`` steps of optimised multipliers and slopes, β-CROWN; a child keeps
    its parent's intervals up to the split layer, so a split in the dense head costs little more than a margins
    pass), or ``"auto"``: per box, whichever the margins' pass says removes more of the worst margin's bound
    (halving a latent dimension takes half its coefficient off each child; a ReLU split takes its intercept
    cost off both). ``None`` (the default) is ``"latent"`` for inputs of at most ``LATENT_SPLIT_DIMS``
    dimensions and ``"relu"`` above (a pixel box has too many dimensions to halve).
    ``branch_candidates``: which ReLU is split, FSB's way: the children of this many candidates (the best by
    BaBSR's score) are bounded cheaply (:meth:`BoundEngine.split_bounds`: the parent's intervals, that one
    neuron clamped, a plain margins pass) and the candidate whose *better* child is tightest wins (the field's
    ``max`` reduction; taking the worse child chose splits that lift both children a little and lost an
    instance BaBSR alone decides). 1: BaBSR's top neuron. ``None``: 4 where only linear layers precede the
    classifier (on the competition's MNIST networks 2–3× fewer boxes than BaBSR: see docs/verify-complete.md), 1
    behind a generator (each estimate would bound the generator again).
    ``refine_children``: a ReLU child refines the layers after its split (plain passes from its parent's
    intervals); ``False`` keeps every parent interval (cheaper per box, looser: on those networks it lost).
    ``attack_first``: PGD on the whole ball before its bounds at the smallest ε too (at larger ε it always comes
    first); for a single instance, where a cheap attack can spare the whole branch and bound.
    ``cuts``: with ReLU splitting, every split domain proved safe gives a cut over the activation patterns (no
    violating point has all its splits' signs, :func:`~genrobust.bounds.cuts.cut_from_splits`, BICCOS's inferred
    cuts), and the boxes still open inside the same latent box carry up to this many of their ball's latest cuts
    into their α/β optimisation, each with its own multiplier (:mod:`genrobust.bounds.cuts`). 0: none.
    ``pair_neurons``: with ReLU splitting, a ball whose whole box is not certified gets the multi-neuron
    relaxation of its ``pair_neurons`` unstable ReLUs that cost the worst margin most (BaBSR's score): every pair
    of them in one layer gives the facets of its two-neuron hull over the pair's octagon
    (:mod:`genrobust.bounds.multineuron`, PRIMA's k = 2), and every box of the ball carries them into its α/β
    optimisation as cuts with their own multipliers. 0: none.
    ``fan`` (latent branching only): the most halvings one split makes at once. An undecided box is cut into 2^h
    parts, h the halvings its bound is predicted to need (:meth:`LocalVerifier._fan_levels`: the gap between the
    centre's margin and the box's bound shrinks by a nearly constant factor per halving), each halving on the
    dimension ``split`` rates highest, its rating then halved. The boxes a binary tree bounds on its way down
    decide nothing: on the ε = 0.05 balls that certify three halvings down, 1 + 8 bounds instead of 15, and the
    parts bound as tightly from the whole box's intervals as from their parents' (docs/verify-complete.md, stop
    63). Fewer halvings where the budget would not hold the parts. 1: every split in two.
    ``near_alpha``: α-CROWN steps on the margins of the near misses: the boxes whose plain bound falls short of a
    proof by at most ``near_share`` × the centre's margin (the engine's ``tune_above``). The optimisation closes
    6–10% of a box's gap to the centre's margin, so it proves only such boxes, and each one it proves is a split
    saved, at a few margins' passes (on the ε = 0.05 side-by-side balls, 41 of 50 decided in 4.05 s a ball
    against 40 in 4.51 s; docs/verify-complete.md, stop 64). Latent branching only (ReLU and auto branching
    tune their split boxes with ``beta_steps``), and not where ``BoundOptions.alpha_steps`` already tunes every
    box. 0: none.
    ``oblique`` (latent branching only, without ``cuts`` and ``pair_neurons``): an undecided box whose open neurons'
    latent coefficients mostly share one direction (the top eigenvector of
    :attr:`~genrobust.bounds.engine.MarginBounds.directions` holds at least ``OBLIQUE_SHARE`` of their weight) is
    first cut across that direction, through the middle of its exact extent (a linear program: where to cut never
    affects soundness); the fan's other levels halve coordinates of each side. A part is the box's points on one
    side of the cut, bounded by Lagrangian duality over the box and the half-spaces it does not imply
    (:mod:`genrobust.bounds.planes`) in the box that bounds it. A cut across that direction settles far more neurons
    than a halving: on ball (0, 36) at ε = 0.05 the worse of two parts is −5.7 against the best halving's −34.0,
    from the whole box's −67.6; on the first 200 balls 81.5% decided against 79.5% in the same time (stop 70), 83.5%
    once the parts' bounds cost less (stop 71; docs/verify-complete.md). ``False``: halve coordinates only, as
    ``split`` rates them.
    """

    bounds: BoundOptions = field(default_factory=BoundOptions)
    max_boxes: int = 64
    max_seconds: float = 60.0
    split: Split = "unstable"
    batch_boxes: int | None = None
    attack_steps: int = 20
    attack_restarts: int = 4
    attack_step_size: float = 2.5
    leaf_attacks: int = 8
    leaf_targets: int = 3
    give_up: float | None = GIVE_UP
    mean_seconds: float | None = None
    branch: Branch | None = None
    beta_steps: int = 8
    branch_candidates: int | None = None
    refine_children: bool = True
    attack_first: bool = False
    cuts: int = 0
    pair_neurons: int = 0
    fan: int = 3
    near_alpha: int = 5
    near_share: float = 0.15
    oblique: bool = True

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise GenrobustError(f"unknown split heuristic {self.split!r}; choose one of {', '.join(SPLITS)}")
        if self.branch is not None and self.branch not in BRANCHES:
            raise GenrobustError(f"unknown branching {self.branch!r}; choose one of {', '.join(BRANCHES)}")
        if self.beta_steps < 0 or self.cuts < 0 or self.pair_neurons < 0:
            raise GenrobustError(f"beta_steps, cuts and pair_neurons must be ≥ 0, got {self.beta_steps}, {self.cuts}, "
                                 f"{self.pair_neurons}")  # fmt: skip
        if self.near_alpha < 0 or not (math.isfinite(self.near_share) and self.near_share > 0):
            raise GenrobustError(f"near_alpha must be ≥ 0 and near_share a finite number > 0, got {self.near_alpha}, "
                                 f"{self.near_share}")  # fmt: skip
        if not 1 <= self.fan <= MAX_FAN:
            raise GenrobustError(f"fan must be between 1 and {MAX_FAN} halvings, got {self.fan}")
        if self.branch_candidates is not None and self.branch_candidates < 1:
            raise GenrobustError(f"branch_candidates must be ≥ 1, got {self.branch_candidates}")
        batch = 1 if self.batch_boxes is None else self.batch_boxes
        if self.max_boxes < 1 or batch < 1 or self.attack_steps < 1 or self.attack_restarts < 1:
            raise GenrobustError("max_boxes, batch_boxes, attack_steps and attack_restarts must be ≥ 1")
        if not self.attack_step_size > 0:
            raise GenrobustError(f"attack_step_size must be > 0, got {self.attack_step_size}")
        if self.leaf_attacks < 0 or self.leaf_targets < 0:
            raise GenrobustError(f"leaf_attacks and leaf_targets must be ≥ 0, got {self.leaf_attacks}, "
                                 f"{self.leaf_targets}")  # fmt: skip
        if self.give_up is not None and not (math.isfinite(self.give_up) and self.give_up >= 0):
            raise GenrobustError(f"give_up must be a finite number ≥ 0 or None, got {self.give_up}")
        if not self.max_seconds > 0:
            raise GenrobustError(f"max_seconds must be > 0, got {self.max_seconds}")
        if self.mean_seconds is not None and not (math.isfinite(self.mean_seconds) and self.mean_seconds > 0):
            raise GenrobustError(f"mean_seconds must be a finite number > 0 or None, got {self.mean_seconds}")
        if not isinstance(self.oblique, bool):
            raise GenrobustError(f"oblique must be True or False, got {self.oblique!r}")


@dataclass
class LocalResult:
    """Outcome per ball and ε (``status``: 1 certified, 0 unknown, −1 falsified) with witnesses and costs."""

    eps: list[float]
    centers: torch.Tensor  # (N, d)
    labels: torch.Tensor  # (N,)
    status: torch.Tensor  # (N, E) int8
    witness: torch.Tensor  # (N, E, d), NaN where not falsified
    witness_pred: torch.Tensor  # (N, E), −1 where not falsified
    boxes: torch.Tensor  # (N, E) bound computations spent
    seconds: torch.Tensor  # (N,) wall time attributed to each ball
    options: dict[str, Any] = field(default_factory=dict)
    #: (N, E) float64 from :meth:`LocalVerifier.run` only (not written by :meth:`to_dict` nor kept by journals): a
    #: sound lower bound of the worst margin over the whole ball, the least over the branch and bound's leaves
    #: (boxes it certified, split no further, or never reached, each with the best bound of it or an ancestor);
    #: > 0 where certified, NaN where no bound was computed. Where a ball is left unknown it says how far the
    #: certificate is, and it is the anytime bound a budgeted search buys (:func:`~genrobust.verify.vnnlib.stabilise`)
    bound: torch.Tensor | None = None

    @property
    def certified_radius(self) -> torch.Tensor:
        """Per ball, the largest ε of the list certified (0 if none): a lower bound on its robustness radius."""
        eps = torch.tensor([0.0, *self.eps], dtype=torch.float64)
        cert = torch.cat([torch.ones(len(self.labels), 1, dtype=torch.bool), self.status == CERTIFIED], 1)
        return eps[(cert.cumprod(1).sum(1) - 1)]

    @property
    def attack_radius(self) -> torch.Tensor:
        """Per ball, the distance of the closest witness found (inf if none): an upper bound on the radius."""
        d = (self.witness.double() - self.centers.double()[:, None, :]).abs().amax(2)
        d = torch.where(self.status == FALSIFIED, d, torch.full_like(d, math.inf))
        return d.amin(1) if d.shape[1] else torch.full((len(self.labels),), math.inf, dtype=torch.float64)

    def counts(self) -> list[dict[str, int]]:
        return [
            {name: int((self.status[:, e] == code).sum()) for code, name in STATUS_NAMES.items()}
            for e in range(len(self.eps))
        ]

    def table(self) -> str:
        lines = [f"{'ε':>8} {'certified':>10} {'falsified':>10} {'unknown':>8} {'boxes/ball':>11}"]
        for e, (eps, c) in enumerate(zip(self.eps, self.counts(), strict=True)):
            boxes = float(self.boxes[:, e].double().mean()) if len(self.labels) else 0.0
            lines.append(f"{eps:>8g} {c['certified']:>10} {c['falsified']:>10} {c['unknown']:>8} {boxes:>11.1f}")
        lines.append(f"{len(self.labels)} balls, {float(self.seconds.sum()):.1f} s "
                     f"({float(self.seconds.mean()) if len(self.labels) else 0:.2f} s per ball)")  # fmt: skip
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "options": self.options,
            "counts": self.counts(),
            "balls": [
                {
                    "z": self.centers[i].tolist(),
                    "label": int(self.labels[i]),
                    "status": [STATUS_NAMES[int(s)] for s in self.status[i]],
                    "certified_radius": float(self.certified_radius[i]),
                    "attack_radius": None if math.isinf(r := float(self.attack_radius[i])) else r,
                    "boxes": self.boxes[i].tolist(),
                    "seconds": float(self.seconds[i]),
                    "witness": [
                        w.tolist() if s == FALSIFIED else None
                        for s, w in zip(self.status[i], self.witness[i], strict=True)
                    ],
                    "witness_pred": self.witness_pred[i].tolist(),
                }
                for i in range(len(self.labels))
            ],
        }

    @classmethod
    def from_balls(cls, eps: list[float], balls: list[dict[str, Any]], options: dict[str, Any]) -> LocalResult:
        """The result :meth:`to_dict` described by its ``balls`` (witnesses only where written: format 2)."""
        codes = {name: code for code, name in STATUS_NAMES.items()}
        n, d, k = len(balls), len(balls[0]["z"]) if balls else 0, len(eps)
        witness = torch.full((n, k, d), math.nan)
        pred = torch.full((n, k), -1, dtype=torch.long)
        for i, b in enumerate(balls):
            for e, w in enumerate(b.get("witness") or [None] * k):
                if w is not None:
                    witness[i, e] = torch.tensor(w, dtype=torch.float32)
            if "witness_pred" in b:
                pred[i] = torch.tensor(b["witness_pred"], dtype=torch.long)
        return cls(
            list(eps),
            torch.tensor([b["z"] for b in balls], dtype=torch.float32).reshape(n, d),
            torch.tensor([b["label"] for b in balls], dtype=torch.long),
            torch.tensor([[codes[s] for s in b["status"]] for b in balls], dtype=torch.int8).reshape(n, k),
            witness,
            pred,
            torch.tensor([b["boxes"] for b in balls], dtype=torch.long).reshape(n, k),
            torch.tensor([b["seconds"] for b in balls], dtype=torch.float64),
            options,
        )


class _Violation(nn.Module):
    """A network's outputs y seen as scores [0, s_1, …, s_G], s_g = min over disjunct g's rows of coef·y + const:
    a point breaks the property exactly where some s_g ≥ 0, i.e. where its "label" is not 0 (ties aside: a tie
    counts as safe here, and every candidate is re-checked on the property itself)."""

    def __init__(self, net: nn.Module, coef: torch.Tensor, const: torch.Tensor, groups: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("coef", coef.float())
        self.register_buffer("const", const.float())
        self.register_buffer("groups", groups)
        self.G = int(groups.max()) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        v = y.float() @ self.coef.T + self.const  # (N, M)
        s = v.new_full((len(v), self.G), math.inf).scatter_reduce(1, self.groups.expand_as(v), v, "amin")
        return torch.cat([torch.zeros_like(s[:, :1]), s], 1)


class _RowScores(nn.Module):
    """A network's outputs y seen as one score per property row, coef[l]·y + const[l] (unsafe where ≥ 0): the
    network that :meth:`LocalVerifier.with_rows` checks, ball by ball, on the row its label names."""

    def __init__(self, net: nn.Module, coef: torch.Tensor, const: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("coef", coef.float())
        self.register_buffer("const", const.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).float() @ self.coef.T + self.const


class BoxedNetwork(nn.Module):
    """s ↦ ``net``(``box``(s)): a property's box map (free inputs in [−1, 1]^d → the network's flat input) before a
    network whose input has shape ``shape``. :meth:`LocalVerifier.for_model` captures the two parts separately,
    so that a benchmark's network is copied and captured once, not once per instance (``_network_ops``)."""

    def __init__(self, box: nn.Module, net: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.box, self.net, self.shape = box, net, tuple(shape)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.net(self.box(s).reshape(-1, *self.shape))


_PLAIN = (bool, int, float, str, tuple, type(None))


def _fingerprint(model: nn.Module) -> tuple:
    """What identifies a model's current function without reading its weights: each tensor's identity, storage
    and in-place version counter (an optimiser step, ``load_state_dict`` or ``.data`` assignment changes one),
    and every module's type and plain attributes (a changed ``negative_slope`` or temperature must not reuse
    operators captured with the old one: a stale capture would be an unsound bound)."""
    tensors = tuple((name, id(t), t.data_ptr(), t._version) for name, t in model.state_dict(keep_vars=True).items())
    attrs = tuple((name, type(m).__name__, tuple(sorted((k, v) for k, v in vars(m).items()
                                                         if k != "training" and isinstance(v, _PLAIN))))
                  for name, m in model.named_modules())  # fmt: skip
    return tensors, attrs


#: a network's copy and captured operators per (device, input shape), for as long as the caller keeps the network
_NETWORK_OPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _network_ops(model: nn.Module, shape: tuple[int, ...], device: torch.device) -> tuple[nn.Module, list]:
    """An eval-mode copy of ``model`` on ``device`` and its operators on inputs of ``shape``, cached while the
    weights stay the same (the fingerprint is checked at every call: a changed model is captured again)."""
    key, mark = (str(device), tuple(shape)), _fingerprint(model)
    per_model = _NETWORK_OPS.setdefault(model, {})
    hit = per_model.get(key)
    if hit is not None and hit[0] == mark:
        return hit[1], hit[2]
    net = working_copy(model, device, finite="model")
    ops = capture(net, tuple(shape))
    per_model[key] = (mark, net, ops)
    return net, ops


def _pixel_chain(classifier: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    return nn.Sequential(nn.Unflatten(1, input_shape), classifier)


@dataclass
class _Chain:
    """What a verifier bounds and checks, however its networks arrived: ``plain``, the float32 chain from the
    flat input to logits that witnesses are re-checked on; ``ops``, its operators, the classifier from ``anchor``
    on; ``latent_dim``, the flat input's size; the bound options as this chain needs them."""

    plain: nn.Module
    ops: list
    anchor: int
    latent_dim: int
    bounds: BoundOptions


def _without_forward_forms(bounds: BoundOptions) -> BoundOptions:
    """No forward forms through the classifier: with no generator in front, its input has hundreds of
    directions, and forms over them cost more than they tighten (mnist_fc given as (1, 28, 28) with an anchor
    after the reshapes: 256×2 prop_6_0.03 unknown after 26.6 s; as (784,): unsat in 1.7 s)."""
    return BoundOptions(**{**vars(bounds), "classifier_forward": False})


def _generator_chain(classifier: nn.Module, generator: nn.Module, latent_dim: int | None, bounds: BoundOptions,
                     device: torch.device) -> _Chain:  # fmt: skip
    """C∘G from the latent: the generator's operators, then the classifier's on the generator's image shape."""
    if latent_dim is None:
        raise GenrobustError("give the generator's latent_dim")
    clf = working_copy(classifier, device, finite="classifier")
    gen = working_copy(generator, device, finite="generator")
    with torch.no_grad():
        image = gen(torch.zeros(1, latent_dim, device=device))
    gen_ops = capture(gen, (latent_dim,))
    ops = gen_ops + capture(clf, tuple(image.shape[1:]))
    return _Chain(Composed(clf, gen), ops, len(gen_ops), latent_dim, bounds)


def _pixel_space_chain(classifier: nn.Module, input_shape: tuple[int, ...] | None, bounds: BoundOptions,
                       device: torch.device) -> _Chain:  # fmt: skip
    """The classifier alone on flattened images of ``input_shape`` (the classifier's own ``input_shape`` if None)."""
    if input_shape is None:
        input_shape = getattr(classifier, "input_shape", None)
    if input_shape is None:
        raise GenrobustError("pixel-space checks need the classifier's input_shape, e.g. (1, 28, 28)")
    clf = working_copy(classifier, device, finite="classifier")
    ops = [Reshape((math.prod(input_shape),), tuple(input_shape), name="Unflatten"), *capture(clf, input_shape)]
    return _Chain(_pixel_chain(clf, tuple(input_shape)), ops, 1, math.prod(input_shape),
                  _without_forward_forms(bounds))  # fmt: skip


def _whole_chain(model: nn.Module, input_shape: tuple[int, ...], bounds: BoundOptions,
                 device: torch.device) -> _Chain:  # fmt: skip
    """One network from its flattened input, where the classifier starts read from the chain: at the first
    operator that takes an image (C, H, W); with only linear ops before it (no generator in front: a box map and
    reshapes at most) the whole chain is the classifier, as in pixel space. A :class:`BoxedNetwork`'s network is
    copied and captured once per network (``_network_ops``), its box map per call."""
    latent_dim = math.prod(input_shape)
    if not isinstance(model, BoxedNetwork):  # a whole network: the identity map before it, inputs flattened
        model = BoxedNetwork(nn.Identity(), model, tuple(input_shape))
    net, net_ops = _network_ops(model.net, model.shape, device)
    box = working_copy(model.box, device)
    front = nn.Sequential(box, *([nn.Unflatten(1, model.shape)] if len(model.shape) > 1 else []))
    ops = capture(front, (latent_dim,)) + net_ops
    anchor = next((i for i, op in enumerate(ops) if len(op.in_shape) == 3), 0)
    if all(op.linear for op in ops[:anchor]):
        anchor, bounds = 0, _without_forward_forms(bounds)
    return _Chain(BoxedNetwork(box, net, model.shape), ops, anchor, latent_dim, bounds)


class LocalVerifier:
    """The local check of one classifier behind one generator (or of the classifier alone, in pixel space, or of
    one network that arrives whole: :meth:`for_model`).

    Build it once and call :meth:`run` on as many balls as you like; the caller's models are copied, never
    changed. ``generator=None`` checks the classifier on pixel boxes (an image flattened, ε in pixel units, the
    box clipped to ``pixel_range``): the case of published local-robustness benchmarks. ``generator=None`` and
    ``pixel_range=None``: the classifier is any network from its flattened input (``input_shape``) to logits,
    boxes are not clipped, and where a generator part ends is read from the network (:meth:`for_model`).
    """

    def __init__(
        self,
        classifier: nn.Module,
        generator: nn.Module | None,
        *,
        latent_dim: int | None = None,
        input_shape: tuple[int, ...] | None = None,
        options: VerifyOptions | None = None,
        device: str | torch.device | None = None,
        pixel_range: tuple[float, float] | None = (0.0, 1.0),
    ) -> None:
        self.options = options or VerifyOptions()
        bounds = self.options.bounds
        whole = generator is None and pixel_range is None
        devices = {p.device for m in (classifier, generator) if m is not None for p in m.parameters()}
        if device is None and len(devices) > 1:
            names = ", ".join(sorted(str(d) for d in devices))
            raise GenrobustError(f"the classifier and the generator are on different devices ({names}): move both "
                                 "to one device, or pass device=")  # fmt: skip
        if device is None and not whole:
            device = devices.pop() if devices else None
        self.device = resolve_device(device)  # a whole network: None is CUDA where there is one (the copy moves)
        self.pixel = generator is None and not whole
        self.pixel_range = pixel_range if self.pixel else (0.0, 1.0)
        if whole:
            if input_shape is None:
                raise GenrobustError("a whole network needs its input_shape")
            chain = _whole_chain(classifier, tuple(input_shape), bounds, self.device)
        elif self.pixel:
            chain = _pixel_space_chain(classifier, input_shape, bounds, self.device)
        else:
            chain = _generator_chain(classifier, generator, latent_dim, bounds, self.device)
        self.latent_dim = chain.latent_dim
        self.plain: nn.Module = chain.plain
        self.fast = inference_copy(self.plain)
        self.engine = BoundEngine(chain.ops, chain.anchor, chain.bounds).to(self.device)
        self.num_classes = self.engine.num_classes
        self.rows = self.offset = self.groups = None  # a general property's terms (:meth:`with_property`)
        self.per_label = False  # one row per label (:meth:`with_rows`)
        self._start: tuple[dict, dict | None] | None = None  # the whole box's bounds, given (:meth:`with_start`)
        #: asked before every batch of the branch and bound: True ends it there (the balls still open stay unknown),
        #: for a caller whose answer another process has already found (:func:`~genrobust.verify.vnnlib._by_disjunct`)
        self.stop_when: Callable[[], bool] | None = None

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        input_shape: tuple[int, ...],
        *,
        options: VerifyOptions | None = None,
        device: str | torch.device | None = None,
    ) -> LocalVerifier:
        """The local check of one network from its input (flattened, boxes around points of it) to logits, for a
        model that arrives whole, such as C∘G exported to ONNX (``LocalVerifier(model, None, input_shape=…,
        pixel_range=None)``). Where the classifier starts is read from the chain: at the first operator that takes
        an image (C, H, W); without one the whole network is refined. ``model`` may be a :class:`BoxedNetwork` (a
        property's box map before the network): the network's copy and operators are then kept while the caller
        holds the network, so that a benchmark's instances share them. ``device`` None: CUDA when available."""
        return cls(model, None, input_shape=input_shape, options=options, device=device, pixel_range=None)

    # ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _logits(self, z: torch.Tensor) -> torch.Tensor:
        if not len(z):
            return torch.zeros(0, self.num_classes, device=z.device)
        out = torch.cat([self.plain(z[i : i + 256].float()) for i in range(0, len(z), 256)])
        if not torch.isfinite(out).all():
            raise GenrobustError("the model returned NaN or infinite logits")
        return out

    def _classify(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self._label_of(self._logits(z), labels)

    def _label_of(self, logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The class of each point from its outputs; with one row per label (:meth:`with_rows`) its label where its
        row is safe and label + L (not a class) where it is not."""
        if self.per_label:
            if labels is None:
                raise GenrobustError("a verifier with one row per label classifies points of given labels only")
            unsafe = logits.gather(1, labels[:, None])[:, 0] >= 0
            return torch.where(unsafe, labels + self.num_classes, labels)
        return logits.argmax(1)

    def _ball(self, z: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The real box around z (float64) for ε, clipped to the pixel range in pixel space. z ± ε is rounded
        outward, so the box holds every real point of the ball, not only its float64 points."""
        lo, hi = real_ball(z, eps)
        if self.pixel:
            lo, hi = lo.clamp(min=self.pixel_range[0]), hi.clamp(max=self.pixel_range[1])
        return lo, hi

    def _float_box(self, z: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The float32 box (bounds rounded inwards) in which attack candidates live."""
        lo, hi = box_bounds(z.float(), torch.full((len(z),), eps, dtype=torch.float64, device=z.device))
        if self.pixel:
            lo, hi = lo.clamp(min=self.pixel_range[0]), hi.clamp(max=self.pixel_range[1])
        return lo, hi

    def with_property(self, coef: torch.Tensor, const: torch.Tensor, groups: torch.Tensor) -> LocalVerifier:
        """This check for a general property of the outputs y instead of robustness: the unsafe outputs are the
        disjunction over disjuncts g of the conjunction of coef[r]·y + const[r] ≥ 0 over the rows r with
        groups[r] = g (the form of a VNN-LIB property). Run it with label 0 on every ball: the bounds refute
        each disjunct by one of its rows (:func:`~genrobust.bounds.engine.refutation`), and the attacks and
        the checks of candidates see the network as the scores [0, min_r (coef[r]·y + const[r]) per disjunct],
        so that a counterexample is a point whose label is not 0 (the targeted falsifier attacks one disjunct
        at a time). Returns ``self``."""
        if self.rows is not None:
            raise GenrobustError("this verifier already checks a property: build a new one for another")
        coef = torch.as_tensor(coef, dtype=DT, device=self.device)
        const = torch.as_tensor(const, dtype=DT, device=self.device)
        groups = torch.as_tensor(groups, dtype=torch.long, device=self.device)
        M = len(groups)
        if coef.shape != (M, self.engine.num_classes) or const.shape != (M,) or not M:
            raise GenrobustError(f"a property needs rows (M, {self.engine.num_classes}), constants (M,) and groups "
                                 f"(M,) with M ≥ 1, got {tuple(coef.shape)}, {tuple(const.shape)}, {M}")  # fmt: skip
        if not bool(torch.isfinite(coef).all() and torch.isfinite(const).all()):
            raise GenrobustError("the property's constraints have NaN or infinite coefficients")
        _, groups = torch.unique(groups, return_inverse=True)  # disjuncts numbered 0..G−1
        self.rows, self.offset, self.groups = -coef, -const, groups
        self.plain = _Violation(self.plain, coef, const, groups)
        self.fast = _Violation(self.fast, coef, const, groups)
        self.num_classes = int(groups.max()) + 2
        return self

    def with_rows(self, coef: torch.Tensor, const: torch.Tensor) -> LocalVerifier:
        """Many one-row properties of the outputs y at once: a ball with label l is checked for the property whose
        unsafe outputs are coef[l]·y + const[l] ≥ 0 (coef (L, K), const (L,); labels 0..L−1), so that balls
        asking different questions share the branch and bound's batches (:func:`~genrobust.verify.vnnlib.
        stabilise` asks, for every neuron of a layer on one box, whether it can change sign). Nothing attacks
        the balls (no PGD, first or last): a ball is falsified only where a bound's minimiser (re-checked by a
        forward pass) meets its row, and otherwise ends certified or unknown. Returns ``self``."""
        if self.rows is not None:
            raise GenrobustError("this verifier already checks a property: build a new one for another")
        coef = torch.as_tensor(coef, dtype=DT, device=self.device)
        const = torch.as_tensor(const, dtype=DT, device=self.device)
        L = len(const)
        if coef.shape != (L, self.engine.num_classes) or const.shape != (L,) or not L:
            raise GenrobustError(f"rows need coefficients (L, {self.engine.num_classes}) and constants (L,) with "
                                 f"L ≥ 1, got {tuple(coef.shape)} and {tuple(const.shape)}")  # fmt: skip
        if not bool(torch.isfinite(coef).all() and torch.isfinite(const).all()):
            raise GenrobustError("the rows have NaN or infinite coefficients")
        self.rows, self.offset, self.per_label = -coef[:, None, :], -const[:, None], True
        self.plain = _RowScores(self.plain, coef, const)
        self.fast = _RowScores(self.fast, coef, const)
        self.num_classes = L
        return self

    def activation_ops(self) -> list[int]:
        """The op indices of the chain's activations, in order: the k-th is what facts keyed k refer to."""
        return [i for i, op in enumerate(self.engine.ops) if isinstance(op, Activation)]

    def with_facts(self, facts: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> LocalVerifier:
        """Bound every box with ``facts``: the k-th activation's input lies in facts[k] = (lower, upper) (flat
        or shaped as that input; ±inf where nothing is known) on the whole region this verifier will be asked
        about (:meth:`BoundEngine.with_facts`). Keyed by the activation's position, so that facts proved on a
        network cut after some layer (:func:`genrobust.verify.vnnlib.stabilise`) apply to the whole network
        behind the same box map. Returns ``self``."""
        acts = self.activation_ops()
        if any(not 0 <= k < len(acts) for k in facts):
            raise GenrobustError(f"facts for activations {sorted(facts)}, the network has {len(acts)}")
        self.engine.with_facts({acts[k]: (lo.to(self.device), hi.to(self.device)) for k, (lo, hi) in facts.items()})
        return self

    def with_start(self, intervals: dict[int, tuple[torch.Tensor, torch.Tensor]],
                   alpha: dict[int, torch.Tensor] | None = None) -> LocalVerifier:  # fmt: skip
        """Bound every ball's whole box from ``intervals`` (op index of this verifier's chain → (lower, upper),
        shaped as the op's input with no box dimension), already proved on that box or a larger one, keeping them
        without refinement, and start its α from ``alpha`` (op → (margins, *shape), as :attr:`MarginBounds.alpha`
        gives them for one box; with one row per label (:meth:`with_rows`) op → (labels, 1, *shape)). For many
        properties of one network on one box (:func:`~genrobust.verify.vnnlib.stabilise` asks about every neuron
        of a layer): the hidden layers are refined once, not once per property. Children refine after their split
        as usual. Returns ``self``."""
        ops = self.engine.ops
        if any(not 0 <= i < len(ops) or ops[i].linear for i in intervals):
            raise GenrobustError(f"start intervals for ops {sorted(intervals)}: only the chain's nonlinear ops have "
                                 "them")  # fmt: skip
        kept = {i: outward(lo.to(self.device), hi.to(self.device)) for i, (lo, hi) in intervals.items()}
        if any(lo.shape != ops[i].in_shape or bool((lo > hi).any()) for i, (lo, hi) in kept.items()):
            raise GenrobustError("start intervals must be shaped as their op's input, with lower ≤ upper")
        self._start = (kept, None if alpha is None else {i: a.to(self.device) for i, a in alpha.items()})
        return self

    def _start_alpha(self, label: int) -> dict[int, torch.Tensor] | None:
        """The α a whole box of this label starts from (:meth:`with_start`): per label with one row per label."""
        alpha = None if self._start is None else self._start[1]
        if alpha is None or not self.per_label:
            return alpha
        return {i: a[label] for i, a in alpha.items()}

    def _terms(self, labels: torch.Tensor) -> dict[str, Any]:
        """The margins' property terms for a batch of boxes of these labels (none for robustness)."""
        if self.rows is None:
            return {}
        if self.per_label:
            return {"offset": self.offset[labels]}
        return {"offset": self.offset.expand(len(labels), -1), "groups": self.groups}

    def _spec(self, labels: torch.Tensor) -> torch.Tensor:
        if self.per_label:
            return self.rows[labels]
        if self.rows is not None:
            return self.rows.expand(len(labels), -1, -1)
        K = self.num_classes
        eye = torch.eye(K, dtype=DT, device=labels.device)
        spec = eye[labels][:, None, :] - eye[None, :, :]  # (B, K, K): row j = e_c − e_j
        keep = ~torch.eye(K, dtype=torch.bool, device=labels.device)[labels]  # drop j = c
        return spec[keep].reshape(len(labels), K - 1, K)

    def run(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        eps: float | Sequence[float],
        *,
        seed: int = 0,
        ids: Sequence[int] | None = None,
        show_progress: bool = False,
        attack_only: bool = False,
    ) -> LocalResult:
        """Check the balls B(z[i], ε) for label ``labels[i]`` and every ε. ``ids`` (default 0..N−1) seed the
        attack per ball, so a ball's outcome does not depend on which others share its batch. ``attack_only``: the
        falsifier alone, no bounds (balls it does not falsify stay unknown), for a caller that bounds the balls
        its own way only if no counterexample is cheap to find."""
        eps_values = sorted(_eps_list(eps))
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise GenrobustError(
                f"centres must be a tensor of shape (N, {self.latent_dim}), got {tuple(getattr(z, 'shape', ()))}"
            )
        if not torch.isfinite(z).all():
            raise GenrobustError("centres contain NaN or infinity")
        dev = self.device
        z = z.detach().to(dev, torch.float32)
        labels = torch.as_tensor(labels, dtype=torch.long, device=dev).reshape(-1)
        if len(labels) != len(z):
            raise GenrobustError(f"{len(labels)} labels for {len(z)} centres")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise GenrobustError(f"labels must be classes 0..{self.num_classes - 1}")
        ids = list(range(len(z))) if ids is None else list(ids)
        N, E, d = len(z), len(eps_values), self.latent_dim
        run = _Run(z, labels, eps_values, seed, ids, status=torch.zeros(N, E, dtype=torch.int8),
                   witness=torch.full((N, E, d), math.nan), witness_pred=torch.full((N, E), -1, dtype=torch.long),
                   boxes=torch.zeros(N, E, dtype=torch.long), seconds=torch.zeros(N, dtype=torch.float64),
                   bar=progress(N * E, "robustness", show_progress),
                   bound=torch.full((N, E), math.nan, dtype=torch.float64))  # fmt: skip
        status = run.status
        t0 = time.perf_counter()
        logits = self._logits(z)
        pred = self._label_of(logits, labels)
        if self.per_label:  # the row's distance from unsafe
            run.margin = -logits.gather(1, labels[:, None])[:, 0].double().cpu()
        else:
            others = logits.scatter(1, labels[:, None], -math.inf)
            run.margin = (logits.gather(1, labels[:, None])[:, 0] - others.amax(1)).double().cpu()
        for i in torch.nonzero(pred != labels).flatten().tolist():
            self._falsify(run, i, 0, z[i], int(pred[i]))  # a misclassified centre falsifies every ε
        run.seconds += (time.perf_counter() - t0) / max(1, N)
        eligible = [i for i in range(N) if status[i, 0] != FALSIFIED]
        for e in range(E):
            todo = [i for i in eligible if status[i, e] != FALSIFIED]
            if not todo:
                continue
            # At the smallest ε most balls certify, so bounds come first; at larger ones a (cheap) attack first
            # spares the (costly) bounds of the balls it falsifies.
            first = e > 0 or self.options.attack_first or attack_only
            if first:
                self._attack(run, todo, e)
            prove = [i for i in todo if status[i, e] == UNKNOWN and (e == 0 or status[i, e - 1] == CERTIFIED)]
            if prove and not attack_only:
                self._branch_and_bound(run, prove, e)
            if not first:
                self._attack(run, todo, e)
            run.bar.update(int(sum(1 for i in todo if status[i, e] != FALSIFIED)))
        run.bar.close()
        return LocalResult(eps_values, z.cpu(), labels.cpu(), status, run.witness, run.witness_pred, run.boxes,
                           run.seconds, options=_options_dict(self.options), bound=run.bound)  # fmt: skip

    def _falsify(self, run: _Run, i: int, e: int, w: torch.Tensor, p: int) -> None:
        """Record a re-checked witness ``w`` (class ``p``) of ball ``i`` found at ε index ``e``: falsified there and
        at every larger ε, and at every smaller ε whose box holds it."""
        status, E = run.status, len(run.eps)
        for f in range(e, E):  # falsified at ε ⇒ at every larger ε
            if status[i, f] != FALSIFIED:
                status[i, f] = FALSIFIED
                run.witness[i, f] = w.cpu()
                run.witness_pred[i, f] = p
                run.bar.update(1)
        for f in range(e):  # ... and at every smaller ε whose ball holds the witness (counted in the bar)
            lo, hi = self._ball(run.z[i : i + 1], run.eps[f])
            if not bool(((w.double() >= lo[0]) & (w.double() <= hi[0])).all()):
                continue
            if status[i, f] == CERTIFIED:  # exact arithmetic says robust, float32 finds a point: say so
                warnings.warn(f"ball {run.ids[i]}: a float32 counterexample lies in the box certified at ε = "
                              f"{run.eps[f]:g} (the certificate holds in exact arithmetic; rounding ties "
                              "the logits)", GenrobustWarning, stacklevel=3)  # fmt: skip
            elif status[i, f] == UNKNOWN:
                status[i, f] = FALSIFIED
                run.witness[i, f] = w.cpu()
                run.witness_pred[i, f] = p

    def _attack(self, run: _Run, todo: list[int], e: int) -> None:
        """PGD on the whole ball for the balls still unknown at this ε."""
        left = [i for i in todo if run.status[i, e] == UNKNOWN]
        if not left or self.per_label:
            return
        t1 = time.perf_counter()
        idx = torch.tensor(left, device=self.device)
        lo, hi = self._float_box(run.z[idx], run.eps[e])
        found, cand = pgd_in_boxes(
            self.fast, run.labels[idx], lo, hi, steps=self.options.attack_steps,
            restarts=self.options.attack_restarts, step_size=self.options.attack_step_size,
            seeds=[sub_seed(run.seed, run.ids[i], e) for i in left],
        )  # fmt: skip
        self._confirm(run, left, e, found, cand)
        run.seconds[idx.cpu()] += (time.perf_counter() - t1) / len(left)

    def _confirm(self, run: _Run, rows: list[int], e: int, found: torch.Tensor, cand: torch.Tensor) -> None:
        """Re-check claimed witnesses (``cand[j]`` for ball ``rows[j]`` where ``found[j]``): a plain forward pass and
        the distance in float64; keep the true ones."""
        hits = torch.nonzero(found).flatten()
        if len(hits) == 0:
            return
        w = cand[hits].float()
        p = self._classify(w, run.labels[torch.tensor([rows[j] for j in hits.tolist()], device=self.device)])
        for j, pj, wj in zip(hits.tolist(), p.tolist(), w, strict=True):
            i = rows[j]
            lo, hi = self._ball(run.z[i : i + 1], run.eps[e])
            inside = bool(((wj.double() >= lo[0]) & (wj.double() <= hi[0])).all())
            if inside and pj != int(run.labels[i]):
                self._falsify(run, i, e, wj, pj)

    def _branch_and_bound(self, run: _Run, balls: list[int], e: int) -> None:
        """Prove ``balls`` at ε index ``e``: bound their boxes in batches, split the undecided ones while each
        ball's budget allows (:class:`_Search` keeps the queue and the budgets), and attack a ball's undecided
        sub-boxes before it is left unknown."""
        opt, dev = self.options, self.device
        neurons = sum(math.prod(op.out_shape) for op in self.engine.ops if not op.linear)
        batch_boxes = default_batch_boxes(dev, neurons) if opt.batch_boxes is None else opt.batch_boxes
        lo, hi = self._ball(run.z[torch.tensor(balls, device=dev)], run.eps[e])
        # with a pool of seconds (``mean_seconds``), hopeless-looking balls are attacked at once and split last,
        # with what the others left
        pool = None if opt.mean_seconds is None else opt.mean_seconds * len(run.seconds)
        search = _Search(run.seconds, opt.max_seconds, pool, [_Box(b, lo[k], hi[k]) for k, b in enumerate(balls)],
                         dict.fromkeys(balls, 1), dict.fromkeys(balls, 0.0), best_first=self.per_label)  # fmt: skip
        while not (self.stop_when is not None and self.stop_when()) and (batch := search.next_batch(batch_boxes)):
            self._step(run, search, batch, e)
        for ball, low in search.low.items():
            run.bound[ball, e] = low

    def _step(self, run: _Run, search: _Search, batch: list[_Box], e: int) -> None:
        """One round of branch and bound: bound ``batch``, then per box certify, falsify (its bound's minimiser),
        split, or, when its ball's budget is spent, keep it among the sub-boxes to attack."""
        opt, status = self.options, run.status
        t1 = time.perf_counter()
        owners = [item.ball for item in batch]
        b = self._bound(run, batch, e, search.cuts, search.pairs)
        if opt.cuts:
            self._infer_cuts(run, search, batch, b, e)
        dt = (time.perf_counter() - t1) / len(batch)
        if opt.pair_neurons and self.branching == "relu":  # paid by its ball, once: not a box's cost
            self._pair_cuts(run, search, batch, b, dt)
        for ball, box in zip(owners, batch, strict=True):
            run.boxes[ball, e] += 1
            run.seconds[ball] += dt
            search.last_cost[ball] = dt
            if box.parent is None and not box.splits:
                search.root_costs.append(dt)
        children: list[_Box] = []
        exhausted: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        deferred: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # attacked now, split last
        left_in_batch = Counter(owners)
        done = search.done
        # the balls whose whole box still waits to be bounded get a root's cost from the pool, not a share of it:
        # most of them end at their root, and the rest of the pool goes to the balls already split
        pending = {item.ball for item in search.queue if item.parent is None and not item.splits} - done
        waiting = {item.ball for item in search.queue} | set(owners)
        own_bounds = b.worst_bound.double().cpu().tolist()  # one transfer per batch, not one per box
        for k, (ball, box) in enumerate(zip(owners, batch, strict=True)):
            left_in_batch[ball] -= 1
            # the box's bound: its own or an ancestor's, whichever is higher (both hold on it); a leaf's counts
            # towards its ball's least bound, a split box's is its children's start
            own = own_bounds[k]
            wb = box.bound if math.isnan(own) else max(own, box.bound)
            if ball in done:
                search.leaf(ball, wb)
                if ball in exhausted and not b.certified[k]:  # its siblings in this batch are leaves too
                    exhausted[ball].append((b.lo[k], b.hi[k]))
                continue
            search.open_boxes[ball] -= 1
            if b.certified[k]:
                search.leaf(ball, wb)
                if search.open_boxes[ball] == 0:
                    status[ball, e] = CERTIFIED
                    done.add(ball)
                continue
            if int(b.pred[k]) != int(run.labels[ball]):
                self._confirm(run, [ball], e, torch.ones(1, dtype=torch.bool), b.corner[k : k + 1])
                if status[ball, e] == FALSIFIED:
                    search.leaf(ball, wb)
                    done.add(ball)
                    continue
            hopeless = (opt.give_up is not None and self.branching == "latent" and box.parent is None
                        and float(b.worst_bound[k]) < -opt.give_up * float(run.margin[ball]))  # fmt: skip
            # the budget is kept, not overrun: split only if the boxes this ball still has queued and the two
            # children fit in its seconds, each costing what this box cost (a child has at most its parent's
            # unstable neurons: the mean over the ball's boxes, the root's included, overestimates them)
            queued = search.open_boxes[ball] - left_in_batch[ball]  # this batch's other boxes are paid for already
            competing = len(waiting - done - pending)  # the balls being split (done: those decided so far, too)
            limit = search.limit(ball, competing, len(pending))
            # as many halvings at once as the box is predicted to need (``fan``), as many as the budget allows
            levels = self._fan_levels(box, own_bounds[k], float(run.margin[ball]))
            while levels > 1 and (
                float(run.seconds[ball]) + (queued + 2**levels) * dt > limit
                or run.boxes[ball, e] + search.open_boxes[ball] + 2**levels > opt.max_boxes
            ):
                levels -= 1
            over_time = float(run.seconds[ball]) + (queued + 2) * dt > limit
            over_boxes = run.boxes[ball, e] + search.open_boxes[ball] + 2 > opt.max_boxes
            if (hopeless and search.pool is None) or over_boxes or over_time:
                search.leaf(ball, wb)
                done.add(ball)  # budget spent: its undecided sub-boxes are attacked below, then the whole ball
                exhausted.setdefault(ball, []).append((b.lo[k], b.hi[k]))
                continue
            pair = self._children(box, b.mb, k, b.lo[k], b.hi[k], b.worst[k], run.labels, int(b.choice[k]),
                                  None if b.reach is None else b.reach[k], b.gamma(k, ball), levels)  # fmt: skip
            for child in pair:
                child.bound = wb
            search.open_boxes[ball] += len(pair)
            if hopeless:
                deferred[ball] = [(b.lo[k], b.hi[k])]
                search.later.extend(pair)
                search.promise[ball] = own_bounds[k] / float(run.margin[ball])  # the give-up rule's ratio
            else:
                children.extend(pair)
        search.queue = children + search.queue  # depth first: few boxes (and their intervals) wait in memory
        if (exhausted or deferred) and opt.leaf_attacks and not self.per_label:
            t2 = time.perf_counter()
            for item in search.queue:
                if item.ball in exhausted:
                    exhausted[item.ball].append((item.lo, item.hi))
            targets = exhausted | deferred
            self._attack_leaves(run, targets, e)
            for ball in targets:
                run.seconds[ball] += (time.perf_counter() - t2) / len(targets)
                if status[ball, e] == FALSIFIED:
                    done.add(ball)

    def _infer_cuts(self, run: _Run, search: _Search, batch: list[_Box], b: _Bounded, e: int) -> None:
        """BICCOS's inferred cuts, strengthened: a split domain the batch proved safe yields the cut of its splits
        (:meth:`_Search.add_cut`), but in one tree every other open domain has one of those splits the other way
        round (where their paths part), so that cut alone would hold nowhere else. The splits whose multipliers
        β the proof left at zero (for every margin) are dropped and the box is bounded again with the rest, from
        its ball's root intervals (those of the dropped splits' descendants no longer hold); if that still proves
        it, the shorter cut is kept: it holds wherever the kept splits do. Each ball's root intervals are recorded
        here when its first box is bounded."""
        for k, box in enumerate(batch):
            if box.parent is None and box.ball not in search.roots:
                search.roots[box.ball] = _outward32({i: (lo[k], hi[k]) for i, (lo, hi) in b.mb.intervals.items()})
        proved = [k for k, box in enumerate(batch) if bool(b.certified[k]) and box.splits]
        if not proved:
            return
        betas = b.mb.beta or {}
        tries: list[tuple[int, dict[int, torch.Tensor]]] = []
        for k in proved:
            box = batch[k]
            kept = {}
            for i, mark in (box.splits or {}).items():
                used = (betas[i][k] > 0).any(0) if i in betas else torch.zeros_like(mark, dtype=torch.bool)
                kept[i] = torch.where(used, mark, 0).to(mark.dtype)
            n_kept = sum(int((m != 0).sum()) for m in kept.values())
            n_all = sum(int((m != 0).sum()) for m in (box.splits or {}).values())
            if 0 < n_kept < n_all and box.ball in search.roots:
                tries.append((k, {i: m for i, m in kept.items() if bool((m != 0).any())}))
            else:
                search.add_cut(box, self.options.cuts)
        if not tries:
            return
        idx = torch.tensor([k for k, _ in tries], device=self.device)
        blo, bhi = b.lo[idx], b.hi[idx]
        center, radius = centre_radius(blo, bhi)
        roots = [search.roots[batch[k].ball] for k, _ in tries]
        parent = {i: (torch.stack([r[i][0] for r in roots]), torch.stack([r[i][1] for r in roots])) for i in roots[0]}
        keys = sorted({i for _, kept in tries for i in kept})
        splits = {i: torch.stack([kept.get(i, torch.zeros(self.engine.ops[i].in_shape, dtype=torch.int8,
                                                           device=self.device)) for _, kept in tries])
                  for i in keys}  # fmt: skip
        owners = torch.tensor([batch[k].ball for k, _ in tries], device=self.device)
        steps = torch.full((len(tries),), self.options.beta_steps, device=self.device)
        mb = self.engine.margins(center, radius, self._spec(run.labels[owners]), parent=parent, splits=splits,
                                 steps=steps, **self._terms(run.labels[owners]))  # fmt: skip
        safe = refutation(mb.lower, self.groups)[0] > 0
        for t, (k, kept) in enumerate(tries):
            box = batch[k]
            search.add_cut(_Box(box.ball, box.lo, box.hi, splits=kept) if bool(safe[t]) else box, self.options.cuts)
            search.strengthened += int(safe[t])

    def _pair_cuts(self, run: _Run, search: _Search, batch: list[_Box], b: _Bounded, dt: float) -> None:
        """The multi-neuron relaxation of each ball whose whole box this batch left open (``pair_neurons``): its
        costliest unstable ReLUs by BaBSR's score on the worst margin, and the hull facets of their pairs, which
        hold on the whole box and so on every box of the ball (:func:`~genrobust.bounds.multineuron.pair_cuts`).

        As PRIMA does, the facets tighten the hidden layers too: the whole box is bounded again with them in the
        α-CROWN rows of every later layer's inputs (``refine_cuts``), the facets are drawn again from the
        tighter intervals and octagons (``PAIR_ROUNDS`` rounds), and the box's intervals, which its children
        inherit, become the tighter ones; the last bound, with ``PAIR_STEPS`` steps on the margins, may certify
        the ball at once. Its seconds are the ball's; a ball with less than ``PAIR_COST`` times its box's cost
        ``dt`` left in its budget goes without."""
        n = self.options.pair_neurons
        for k, box in enumerate(batch):
            if box.parent is not None or box.splits or bool(b.certified[k]) or box.ball in search.pairs:
                continue
            if float(run.seconds[box.ball]) + PAIR_COST * dt > self.options.max_seconds:
                search.pairs[box.ball] = None
                continue
            t0 = time.perf_counter()
            center, radius = (t[None] for t in centre_radius(box.lo, box.hi))
            spec = self._spec(run.labels[torch.tensor([box.ball], device=self.device)])
            terms = self._terms(run.labels[torch.tensor([box.ball], device=self.device)])
            mb = self.engine.margins(center, radius, spec, branch=n, **terms)
            ops, neurons, _ = mb.branch
            chosen: dict[int, list[int]] = {}
            for op, neuron in zip(ops[0].tolist(), neurons[0].tolist(), strict=True):
                if op >= 0:
                    chosen.setdefault(op, []).append(neuron)
            intervals = {i: (torch.maximum(lo, b.mb.intervals[i][0][k : k + 1]),
                             torch.minimum(hi, b.mb.intervals[i][1][k : k + 1])) for i, (lo, hi) in
                         mb.intervals.items()}  # fmt: skip
            pool = None
            steps = torch.tensor([PAIR_STEPS], device=self.device)
            for _ in range(PAIR_ROUNDS):
                pool = pair_cuts(self.engine, center, radius, intervals, chosen)
                if pool is None:
                    break
                mb = self.engine.margins(center, radius, spec, parent=intervals, steps=steps, cuts=pool,
                                         refine_cuts=True, **terms)  # fmt: skip
                intervals = {i: (torch.maximum(lo, intervals[i][0]), torch.minimum(hi, intervals[i][1]))
                             for i, (lo, hi) in mb.intervals.items()}  # fmt: skip
                if bool(refutation(mb.lower, self.groups)[0][0] > 0):
                    b.certified[k] = True
                    break
            for i, (lo, hi) in intervals.items():  # the children inherit the tighter intervals
                b.mb.intervals[i][0][k], b.mb.intervals[i][1][k] = lo[0], hi[0]
            search.pairs[box.ball] = pool
            run.seconds[box.ball] += time.perf_counter() - t0

    def _bound(self, run: _Run, batch: list[_Box], e: int, cuts: dict[int, list[_Cut]] | None = None,
               pairs: dict[int, Cuts | None] | None = None) -> _Bounded:  # fmt: skip
        """Bounds of a batch of boxes, with what the decisions need: the worst margin's bound and index, the
        bound's minimiser (a corner: a cheap candidate counterexample) and its class, and the split choices."""
        opt, dev = self.options, self.device
        owners = [item.ball for item in batch]
        blo = torch.stack([item.lo for item in batch])
        bhi = torch.stack([item.hi for item in batch])
        center, radius = centre_radius(blo, bhi)
        own = torch.tensor(owners, device=dev)
        spec = self._spec(run.labels[own])
        costs = opt.split == "cost" and self.branching == "latent"  # the worst margin's intercept costs
        pool, cols, gamma = self._batch_pool(batch, own, spec.shape[1], cuts, pairs)
        terms = self._terms(run.labels[own])
        args = self._batch_args(batch, run.labels[own].tolist())
        near = opt.near_alpha and self.branching == "latent" and not self.engine.options.alpha_steps
        if near and "steps" not in args:
            # α only for the near misses: a bound short of a proof by at most near_share × the centre's margin
            margin = run.margin[own].to(center)
            args["steps"] = torch.full((len(batch),), opt.near_alpha, dtype=torch.long, device=dev)
            args["tune_above"] = torch.where(margin > 0, -opt.near_share * margin, math.inf)
        mb = self.engine.margins(center, radius, spec, **args, **terms, cuts=pool, gamma=gamma,
                                 branch=self.candidates if self.branching != "latent" else
                                 COST_NEURONS if costs else 0, planes=_stack_planes(batch, center.shape[1]),
                                 directions=self.oblique)  # fmt: skip
        worst_bound, worst = refutation(mb.lower, self.groups)
        certified = worst_bound > 0
        g = mb.coef[torch.arange(len(batch), device=dev), worst]
        corner = (center - radius * torch.sign(g)).clamp(min=blo, max=bhi).float()
        flo, fhi = self._float_box(run.z[own], run.eps[e])  # float32 rounding must not leave the ball
        corner = torch.minimum(torch.maximum(corner, flo), fhi)
        # FSB's choice among ReLU candidates; the cost split's 4,096 scores are weights, not candidates
        choice = (self._choose_splits(mb, center, radius, spec, certified, terms) if not costs else
                  torch.zeros(len(batch), dtype=torch.long, device=dev))  # fmt: skip
        reach = (self._reach(center, radius, mb.intervals, ~certified, mb.branch if costs else None)
                 if opt.split in ("unstable", "cost") and self.branching != "relu" else None)  # fmt: skip
        pred = self._classify(corner, run.labels[own])
        return _Bounded(blo, bhi, mb, worst_bound, worst, certified, corner, pred, choice, reach, cols)

    def _batch_pool(self, batch: list[_Box], own: torch.Tensor, M: int, cuts: dict[int, list[_Cut]] | None,
                    pairs: dict[int, Cuts | None] | None):  # fmt: skip
        """The batch's pool of cuts: the inferred cuts its boxes hold (``cuts``), then each ball's multi-neuron
        relaxation (``pairs``, held by every box of the ball); the columns of each ball's relaxation; and the
        multipliers' start (B, M, C): each box's parent's γ in its ball's columns, NaN elsewhere (None if no box
        has one)."""
        parts = [None if not cuts else _batch_cuts(batch, cuts, self.engine.ops, self.device)]
        cols: dict[int, tuple[int, int]] = {}
        start = 0 if parts[0] is None else len(parts[0])
        for ball, p in (pairs or {}).items():
            if p is not None and bool((own == ball).any()):
                parts.append(_ball_mask(p, own == ball))
                cols[ball] = (start, start + len(p))
                start += len(p)
        pool = Cuts.concat(parts)
        gamma = None
        if pool is not None and any(item.gamma is not None and item.ball in cols for item in batch):
            gamma = torch.full((len(batch), M, len(pool)), math.nan, dtype=torch.float32, device=self.device)
            for i, item in enumerate(batch):
                if item.gamma is not None and item.ball in cols:
                    a, b = cols[item.ball]
                    gamma[i, :, a:b] = item.gamma
        return pool, cols, gamma

    def _batch_args(self, batch: list[_Box], labels: list[int]) -> dict[str, Any]:
        """The engine's per-box arguments for a batch: parents' intervals and α, ReLU splits, settled layers and
        α/β steps (only the boxes with splits get ``beta_steps``)."""
        # a whole box (no parent) starts from the given bounds, if any (:meth:`with_start`), all of them settled
        start = [self._start is not None and item.parent is None and not item.splits for item in batch]
        given = self._start or (None, None)
        args: dict[str, Any] = {"parent": _stack_parents([given[0] if s else item.parent
                                                          for s, item in zip(start, batch, strict=True)]),
                                "alpha": _stack_alphas([self._start_alpha(c) if s and not item.alpha else item.alpha
                                                        for s, item, c in zip(start, batch, labels, strict=True)]),
                                "beta": _stack_alphas([item.beta for item in batch])}  # fmt: skip
        settled = [len(self.engine.ops) if s else item.settled for s, item in zip(start, batch, strict=True)]
        if any(item.splits for item in batch):
            keys = sorted({k for item in batch if item.splits for k in item.splits})
            args["splits"] = {k: torch.stack([item.splits[k] if item.splits and k in item.splits else
                                              torch.zeros(self.engine.ops[k].in_shape, dtype=torch.int8,
                                                          device=self.device) for item in batch])
                              for k in keys}  # fmt: skip
            args["steps"] = torch.tensor([self.options.beta_steps if item.splits else self.engine.options.alpha_steps
                                          for item in batch], device=self.device)  # fmt: skip
        if any(v >= 0 for v in settled):
            args["settled"] = torch.tensor(settled, device=self.device)
        return args

    def _choose_splits(self, mb, center, radius, spec, certified, terms: dict[str, Any]) -> torch.Tensor:
        """Per box, which of its ReLU candidates (a column of :attr:`MarginBounds.branch`) to split: the first
        (the best BaBSR score) or, with ``branch_candidates`` > 1, the one whose two children's cheap bounds
        (:meth:`BoundEngine.split_bounds`) have the best worse child, FSB's rule: the worst of the margins the
        parent left open."""
        choice = torch.zeros(len(center), dtype=torch.long, device=self.device)
        if mb.branch is None or mb.branch[0].shape[1] < 2:
            return choice
        todo = torch.nonzero(~certified & (mb.branch[0][:, 1] >= 0)).flatten()
        if not len(todo):
            return choice
        op, neuron = mb.branch[0][todo], mb.branch[1][todo]
        terms = {k: v[todo] if k == "offset" else v for k, v in terms.items()}
        kids = self.engine.split_bounds(center[todo], radius[todo], spec[todo],
                                        {i: (lo[todo], hi[todo]) for i, (lo, hi) in mb.intervals.items()}, op,
                                        neuron, **terms)  # fmt: skip
        T, k, _, M = kids.shape
        better_child = refutation(kids.reshape(-1, M), self.groups)[0].reshape(T, k, 2).amax(2)
        choice[todo] = better_child.argmax(1)
        return choice

    def _fan_levels(self, box: _Box, own: float, margin: float) -> int:
        """How many latent halvings to make at once on an undecided box (1 … ``VerifyOptions.fan``): as many as
        its bound is predicted to need.

        Why: the boxes between a ball's whole box and the leaves that certify cost as much as a leaf and decide
        nothing. Their bounds follow a rule measured on the ε = 0.05 balls (docs/verify-complete.md, stop 63):
        with m the centre's margin and b a box's worst bound, the gap m − b shrinks by a nearly constant factor ρ
        per halving of the dimension of largest reach (ball (2, 1): 0.71 at each of three levels; 0.52–0.72 over
        the balls measured), so the box certifies after about log(gap / m) / log(1 / ρ) halvings. ρ is the ball's
        own where the box has a parent (its gap against the parent's, per halving between them), ``FAN_RHO``
        otherwise. 1 (a plain split) where the prediction says so, and wherever it has nothing to go on."""
        fan = self.options.fan
        gap = margin - own
        if fan <= 1 or self.branching != "latent" or not (math.isfinite(gap) and margin > 0 and gap > margin):
            return 1
        rho = FAN_RHO
        if box.levels and math.isfinite(box.bound) and margin - box.bound > 0:
            rho = min(max((gap / (margin - box.bound)) ** (1 / box.levels), FAN_RHO_RANGE[0]), FAN_RHO_RANGE[1])
        return max(1, min(fan, math.ceil(math.log(gap / margin) / math.log(1 / rho) - FAN_SLACK)))

    def _children(self, box: _Box, mb, k: int, lo, hi, worst, labels, choice: int = 0,
                  reach: torch.Tensor | None = None, gamma: torch.Tensor | None = None,
                  levels: int = 1) -> list[_Box]:  # fmt: skip
        """The children of an undecided box: the 2^``levels`` parts of ``levels`` halvings of latent dimensions
        (the one the split rule rates highest, its rating then halved, and again: a dimension may be quartered),
        or the two sides of a ReLU (``VerifyOptions.branch``; ``choice``: which of the box's candidates). All
        keep the parent's intervals (rounded outwards to float32), slopes and splits."""
        inherited = _outward32({i: (lo_i[k], hi_i[k]) for i, (lo_i, hi_i) in mb.intervals.items()})
        alpha = None if mb.alpha is None else {i: a[k] for i, a in mb.alpha.items()}
        beta = None if not mb.beta else {i: b[k] for i, b in mb.beta.items()}
        branch = self.branching
        op = -1 if mb.branch is None else int(mb.branch[0][k, choice])
        if op >= 0 and branch == "auto":  # which split removes more of the worst margin's bound, as the pass says:
            # halving the latent dimension of largest |coefficient| g takes |g|/2 off each child's linear term; a
            # ReLU split takes its relaxation's intercept cost (the branching score) off both
            g = mb.coef[k, worst].abs() * (hi > lo)
            branch = "relu" if float(mb.branch[2][k, choice]) > float(g.max()) / 2 else "latent"
        if op >= 0 and branch == "relu":
            neuron = int(mb.branch[1][k, choice])
            kids = []
            for side in (1, -1):
                splits = {i: t.clone() for i, t in (box.splits or {}).items()}
                mark = splits.setdefault(op, torch.zeros(self.engine.ops[op].in_shape, dtype=torch.int8,
                                                         device=self.device))  # fmt: skip
                mark.view(-1)[neuron] = side
                settled = op if self.options.refine_children else len(self.engine.ops)
                kids.append(_Box(box.ball, lo, hi, inherited, alpha, splits, settled, beta, gamma))
            return kids
        scores = self._split_scores(lo, hi, mb.coef[k, worst], box.ball, labels, reach)
        cut = self.oblique and mb.directions is not None and _top_share(mb.directions[k]) >= OBLIQUE_SHARE
        # an oblique cut first (both sides keep its plane), then the other halvings on coordinates
        sides = oblique_parts(lo, hi, box.planes, mb.directions[k], 1) if cut else [(lo, hi, box.planes)]
        out = []
        for lo_s, hi_s, planes in sides:
            parts = [(lo_s, hi_s)]
            rating = scores.clone()
            for _ in range(levels - 1 if cut else levels):
                dim = int(rating.argmax())
                rating[dim] /= 2  # every rating is proportional to the dimension's width
                halves = []
                for a, b in parts:
                    mid = (a[dim] + b[dim]) / 2
                    left_hi, right_lo = b.clone(), a.clone()
                    left_hi[dim], right_lo[dim] = mid, mid  # the same midpoint on both sides: an exact partition
                    halves += [(a, left_hi), (right_lo, b)]
                parts = halves
            for a, b in parts:
                kept = planes
                if planes is not None and len(planes):
                    kept = drop_implied(a, b, planes)  # a halving may leave a cut implied: it would slow every bound
                    a, b = bounding_box(a, b, kept)
                out.append(_Box(box.ball, a, b, inherited, alpha, box.splits, beta=beta, gamma=gamma, levels=levels,
                                planes=kept))  # fmt: skip
        return out

    def _attack_leaves(self, run: _Run, leaves: dict[int, list[tuple[torch.Tensor, torch.Tensor]]], e: int) -> None:
        """PGD inside up to ``leaf_attacks`` undecided sub-boxes per ball (float32 boxes rounded inwards)."""
        owners, los, his, seeds = [], [], [], []
        for b, items in leaves.items():
            for k, (lo, hi) in enumerate(items[: self.options.leaf_attacks]):
                owners.append(b)
                los.append(lo)
                his.append(hi)
                seeds.append(sub_seed(run.seed, run.ids[b], e, 1 + k))  # per ball: batching changes nothing
        lo64, hi64 = torch.stack(los), torch.stack(his)
        lo32, hi32 = inward(lo64, hi64)
        own = torch.tensor(owners, device=self.device)
        flo, fhi = self._float_box(run.z[own], run.eps[e])
        lo32, hi32 = torch.maximum(lo32, flo), torch.minimum(hi32, fhi)
        hi32 = torch.maximum(hi32, lo32)  # a sub-box thinner than a float32 step: its lower corner
        targets = None
        if self.options.leaf_targets:  # the classes closest to the label at each leaf's centre, one margin each
            logits = self._logits((lo32 + hi32) / 2).scatter(1, run.labels[own][:, None], -math.inf)
            targets = logits.topk(min(self.options.leaf_targets, self.num_classes - 1), 1).indices
        found, cand = pgd_in_boxes(self.fast, run.labels[own], lo32, hi32, steps=self.options.attack_steps,
                                   restarts=self.options.attack_restarts, seeds=seeds, targets=targets,
                                   step_size=self.options.attack_step_size)  # fmt: skip
        self._confirm(run, owners, e, found, cand)

    @property
    def candidates(self) -> int:
        """ReLUs whose children are estimated before one is split (``VerifyOptions.branch_candidates``, its
        default resolved): 4 where nothing precedes the classifier's ReLUs but linear layers (an estimate is a
        plain margins pass), 1 behind a generator (each estimate would bound the generator again)."""
        if self.options.branch_candidates is not None:
            return self.options.branch_candidates
        return 4 if all(op.linear for op in self.engine.ops[: self.engine.anchor]) else 1

    @property
    def oblique(self) -> bool:
        """Whether undecided boxes are cut across their open neurons' direction (``VerifyOptions.oblique``): with
        latent branching only, and not with cuts, which are kept per latent box (:class:`_Cut`), not per domain."""
        opt = self.options
        return opt.oblique and self.branching == "latent" and not opt.cuts and not opt.pair_neurons

    @property
    def branching(self) -> str:
        """What boxes are split on (``VerifyOptions.branch``, its default resolved by the input's size)."""
        return self.options.branch or ("latent" if self.latent_dim <= LATENT_SPLIT_DIMS else "relu")

    @torch.no_grad()
    def _reach(self, center: torch.Tensor, radius: torch.Tensor, intervals, todo: torch.Tensor,
               costs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
        """(B, d): per input dimension of each box, how much of the classifier's unstable neurons' intervals it
        spans: for every unstable neuron n of a classifier activation (l_n < 0 < u_n for a ReLU), the share
        |∂x_n/∂z_i|·r_i / (u_n − l_n) of its interval that dimension i's half-width r_i accounts for at the box's
        centre, averaged over the layer's unstable neurons and summed over layers (0 for boxes not in ``todo``).

        Why: on these boxes the bound's slack is in the relaxations' intercepts, not in its linear part, so the
        split that pays is the one that shrinks the unstable neurons' intervals most, whatever the margin's
        coefficient on the dimension (``"gap"``'s rule) says. Bounding both children of every dimension on
        eight ε = 0.05 balls of ``mnist-small`` ∘ ``mnist-gan``, this rule picks the dimension whose worse child
        is best on seven, ``"gap"`` on two (docs/verify-complete.md). The derivatives are forward differences of
        the float64 chain (d + 1 forward passes per box): a heuristic, so its rounding does not matter. Boxes of
        more than ``LATENT_SPLIT_DIMS`` inputs (a pixel box halved by input) fall back to ``"gap"``: their
        Jacobians would hold d × (every neuron) entries per box.

        ``costs`` (``split="cost"``, :attr:`MarginBounds.branch` of the costliest neurons on each box's worst
        margin): each neuron's share is weighed by its relaxation's intercept cost on that margin and the weighted
        shares are summed over every layer (costs are in the margin's units, so layers need no averaging): how
        much of the bound's slack halving dimension i reaches."""
        B, d = center.shape
        out = torch.zeros(B, d, dtype=DT, device=center.device)
        rows = torch.nonzero(todo).flatten()
        if not len(rows) or d > LATENT_SPLIT_DIMS:
            return out
        c = center[rows].to(DT)
        h = 1e-6 * (1 + c.abs().amax(1))  # (b,)
        pts = torch.cat([c[:, None], c[:, None] + h[:, None, None] * torch.eye(d, dtype=DT, device=c.device)], 1)
        x = pts.reshape(-1, d)
        for i, op in enumerate(self.engine.ops):
            if i >= self.engine.anchor and isinstance(op, Activation) and i in intervals:
                low, up = (t[rows].flatten(1) for t in intervals[i])
                xs = x.reshape(len(rows), d + 1, -1)
                J = (xs[:, 1:] - xs[:, :1]).abs() / h[:, None, None]  # (b, d, n)
                unstable = op.unstable(low, up)
                width = (up - low).clamp(min=1e-30)[:, None]
                share = J * (radius[rows].to(DT)[:, :, None] / width) * unstable[:, None]
                if costs is None:
                    out[rows] += share.sum(2) / unstable.sum(1, keepdim=True).clamp(min=1)
                else:
                    ops, neuron, score = (t[rows] for t in costs)
                    weight = torch.zeros_like(low)
                    mine = ops == i
                    weight.scatter_add_(1, torch.where(mine, neuron, 0), torch.where(mine, score.to(DT), 0.0))
                    out[rows] += (share * weight[:, None]).sum(2)
            x = op.forward(x)
        return out

    def _split_scores(self, lo: torch.Tensor, hi: torch.Tensor, coef: torch.Tensor, ball: int, labels,
                      reach: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """(d,) float64 ratings of the box's latent dimensions by ``VerifyOptions.split``: the highest is halved
        first. Each is proportional to the dimension's width (0 where it has none), so a halved dimension's rating
        halves."""
        split = self.options.split
        width = (hi - lo).double()
        live = (width > 0).double()
        if split in ("unstable", "cost") and reach is not None and bool((reach * live).any()):
            return reach.double() * live
        if split == "width" or not bool((coef != 0).any()):
            return width
        if split in ("gap", "unstable", "cost"):  # no unstable neurons: the largest coefficient
            return coef.abs().double() * live
        zc = ((lo + hi) / 2).float()[None].requires_grad_(True)
        with torch.enable_grad():
            logits = self.plain(zc)
            c = int(labels[ball])
            others = logits.clone()
            others[0, c] = -math.inf
            (grad,) = torch.autograd.grad(logits[0, c] - others.max(), zc)
        return grad[0].double().abs() * width


@dataclass
class _Run:
    """What one :meth:`LocalVerifier.run` knows so far: its balls (centres ``z``, ``labels``, the centres' margins),
    the ε list, the seeds, and per ball and ε the outcome, witness and cost (shared by the attacks and the
    branch and bound, which fill them in)."""

    z: torch.Tensor
    labels: torch.Tensor
    eps: list[float]
    seed: int
    ids: list[int]
    status: torch.Tensor  # (N, E) int8
    witness: torch.Tensor  # (N, E, d)
    witness_pred: torch.Tensor  # (N, E)
    boxes: torch.Tensor  # (N, E) bound computations spent
    seconds: torch.Tensor  # (N,) float64
    bar: Any
    margin: torch.Tensor | None = None  # (N,) float64, set once the centres are classified
    bound: torch.Tensor | None = None  # (N, E) float64: the least bound over each ball's leaves (LocalResult.bound)


@dataclass
class _Search:
    """The branch and bound of one ε: the boxes waiting (children go first: depth first), per ball the boxes
    still open and the seconds of its latest box, the balls done, and, with a pool of seconds, the children of
    hopeless-looking balls, deferred until no other ball waits."""

    seconds: torch.Tensor  # the run's seconds per ball (updated as boxes are paid for)
    max_seconds: float
    pool: float | None  # ``mean_seconds`` × the run's balls, or None
    queue: list[_Box]
    open_boxes: dict[int, int]
    last_cost: dict[int, float]
    root_costs: list[float] = field(default_factory=list)  # seconds of every whole box bounded so far
    done: set[int] = field(default_factory=set)
    later: list[_Box] = field(default_factory=list)
    cuts: dict[int, list[_Cut]] = field(default_factory=dict)  # per ball, the cuts of its safe split domains
    roots: dict[int, dict] = field(default_factory=dict)  # per ball, its whole box's intervals (for the cuts)
    strengthened: int = 0  # cuts shortened by dropping splits (a count for benchmarks)
    #: per ball, its multi-neuron relaxation (``VerifyOptions.pair_neurons``; None where no pair gave a facet)
    pairs: dict[int, Cuts | None] = field(default_factory=dict)
    #: each ball's boxes taken lowest bound first (they are all bounded before it is certified, but where its budget
    #: ends first the least bound over its leaves rises fastest so: what :meth:`LocalVerifier.with_rows` asks for)
    best_first: bool = False
    low: dict[int, float] = field(default_factory=dict)  # per ball, the least bound over its leaves so far
    #: per deferred ball, its whole box's worst bound over its centre's margin: the higher, the sooner it goes on
    promise: dict[int, float] = field(default_factory=dict)

    def leaf(self, ball: int, bound: float) -> None:
        """A box of ``ball`` that will not be split (certified, out of budget, or its ball decided) and its bound."""
        self.low[ball] = min(self.low.get(ball, math.inf), -math.inf if math.isnan(bound) else bound)

    def add_cut(self, box: _Box, keep: int) -> None:
        """The cut of a split domain proved safe (its splits and latent box), keeping the ball's latest ``keep``."""
        made = cut_from_splits(box.splits or {})
        if made is None:
            return
        pool = self.cuts.setdefault(box.ball, [])
        pool.append(_Cut(box.lo, box.hi, *made))
        del pool[:-keep]

    def limit(self, ball: int, competing: int, pending: int = 0) -> float:
        """Seconds ``ball`` may reach: its own budget, and its share, among the ``competing`` balls being split, of
        what is left of the pool once the ``pending`` balls whose whole box waits have been set aside a root's
        cost each (the mean so far).

        Why not an equal share for every ball not yet done: at the start of a run every ball competes, so a ball
        split first could reach only about ``mean_seconds`` although most of the others end at their root, far
        below it (measured at ε = 0.05, a pool of 25 s for five balls: ball (0, 1), three boxes and 6.6 s to
        certify, was stopped after its root, and the run ended with 11 s of the pool unspent)."""
        if self.pool is None:
            return self.max_seconds
        root = sum(self.root_costs) / len(self.root_costs) if self.root_costs else 0.0
        left = max(0.0, self.pool - float(self.seconds.sum()) - pending * root)
        return min(self.max_seconds, float(self.seconds[ball]) + left / max(1, competing))

    def next_batch(self, size: int) -> list[_Box]:
        """Up to ``size`` boxes to bound next (empty when nothing is left): the first open box in the queue and as
        many more of its own ball's as fit, then others in queue order. Once only deferred boxes remain, the balls
        whose deferred parts all still fit go on (a fan's 2^h parts, not two: a ball's budget is kept, not
        overrun).

        Why a ball's boxes go together: a batch's seconds are shared equally among its boxes, and a split ball's
        part (a child: cheaper, it starts from its parent's intervals) bounded beside another ball's whole box was
        charged half of the pair's cost, which used its budget up. With one box from as many balls as possible
        before a second from any (the rule before), balls (4, 51) and (6, 75) at ε = 0.03, certified alone in 34 s
        and 32 s, ran out of a 45 s budget at 43.8 s and 42.4 s; now they certify in it, and 1,000 balls (64 boxes /
        45 s) are decided 98.1% in 1.86 s a ball against 97.9% in 1.81 s (docs/verify-complete.md, stop 66)."""
        if self.later and not any(item.ball not in self.done for item in self.queue):
            self._resume_deferred()
        if self.best_first:
            self.queue.sort(key=lambda item: item.bound)
        batch, rest = [], []
        for item in self.queue:
            if item.ball in self.done:
                self.leaf(item.ball, item.bound)  # never bounded: its parent's bound holds on it
                continue
            if len(batch) < size and (not batch or item.ball == batch[0].ball):
                batch.append(item)
            else:
                rest.append(item)
        room = size - len(batch)
        batch, self.queue = batch + rest[:room], rest[room:]
        return batch

    def _resume_deferred(self) -> None:
        """Once no other ball waits, the deferred balls go on one at a time, the most promising first (the highest
        whole-box bound over its centre's margin), each with what the pool has left (up to its own budget). A ball
        whose deferred parts do not all fit in that, at its last box's cost, ends: its parts become leaves.

        Why one at a time: a deferred ball needs tens of seconds to certify (at ε = 0.05, 48 s and 55 s for two
        balls whose whole box lay at −6.8 and −11 × their margin), and a pool shared equally among a dozen of them
        held none's first fan: on the first 500 balls at ε = 0.05 (5 s a ball, 64 boxes / 60 s), nine classes of ten
        split none of their deferred balls and left 521 s of their pools unspent (docs/verify-complete.md, stop 67)."""
        parts = Counter(item.ball for item in self.later if item.ball not in self.done)
        left = math.inf if self.pool is None else max(0.0, self.pool - float(self.seconds.sum()))
        chosen = None
        for b in sorted(parts, key=lambda b: (-self.promise.get(b, -math.inf), b)):
            need = parts[b] * self.last_cost[b]
            if float(self.seconds[b]) + need > self.max_seconds or need > left:
                self.done.add(b)
            elif chosen is None:
                chosen = b
        for item in self.later:
            if item.ball in self.done:
                self.leaf(item.ball, item.bound)
        self.queue = [item for item in self.later if item.ball == chosen]
        self.later = [item for item in self.later if item.ball not in self.done and item.ball != chosen]


@dataclass
class _Bounded:
    """A bounded batch (:meth:`LocalVerifier._bound`): the boxes, the engine's bounds, each box's worst margin
    (bound and index), whether it is certified, the bound's minimiser (a corner) and its class, the ReLU
    candidate chosen, and each latent dimension's reach (``split="unstable"``/``"cost"``)."""

    lo: torch.Tensor
    hi: torch.Tensor
    mb: Any
    worst_bound: torch.Tensor
    worst: torch.Tensor
    certified: torch.Tensor
    corner: torch.Tensor
    pred: torch.Tensor
    choice: torch.Tensor
    reach: torch.Tensor | None
    #: per ball, the columns (start, stop) of its multi-neuron relaxation in the batch's pool of cuts
    pair_cols: dict[int, tuple[int, int]] = field(default_factory=dict)

    def gamma(self, k: int, ball: int) -> torch.Tensor | None:
        """Box ``k``'s optimised multipliers (M, C) of its ball's multi-neuron relaxation, for its children."""
        if self.mb.gamma is None or ball not in self.pair_cols:
            return None
        start, stop = self.pair_cols[ball]
        return self.mb.gamma[k, :, start:stop].clone()  # not a view: it would keep the whole batch alive


@dataclass
class _Box:
    """A sub-box waiting in branch and bound: its ball, its latent bounds (float64; the boxes of a ball
    partition it exactly), what it inherits from its parent (intervals rounded outwards to float32, optimised
    α), the ReLU splits that restrict its domain (op index → (*input shape) of −1/0/+1), the op up to which
    its parent's intervals stand unrefined (−1: none), and its parent's optimised β and γ (the multipliers of its
    ball's multi-neuron relaxation): starts for its own."""

    ball: int
    lo: torch.Tensor
    hi: torch.Tensor
    parent: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None
    alpha: dict[int, torch.Tensor] | None = None
    splits: dict[int, torch.Tensor] | None = None
    settled: int = -1
    beta: dict[int, torch.Tensor] | None = None
    gamma: torch.Tensor | None = None
    bound: float = -math.inf  # a lower bound of its worst margin: its parent's (the best of its ancestors')
    levels: int = 0  # latent halvings between its parent and it (0: a whole box or a ReLU split)
    #: (m, d + 1) float64, half-spaces P·z ≥ q as rows [P | q] that cut the box (``oblique``): its domain is the
    #: box's points that satisfy them (the box bounds that domain; the domains of a ball partition it)
    planes: torch.Tensor | None = None


@dataclass
class _Cut:
    """A cut over ReLU activation patterns (coefficients per op, q·z ≤ d) that holds on the latent box [lo, hi]."""

    lo: torch.Tensor
    hi: torch.Tensor
    coef: dict[int, torch.Tensor]
    const: float


def _batch_cuts(batch: list[_Box], pools: dict[int, list[_Cut]], ops: list, device: torch.device) -> Cuts | None:
    """The cuts a batch's boxes carry: each ball's pool, a cut held by a box of that ball inside the cut's latent
    box unless one of the box's own splits already meets it (a literal of the opposite sign: then the cut holds
    on the whole domain and only costs a multiplier). None when no box holds any."""
    cuts = [cut for ball in dict.fromkeys(item.ball for item in batch) for cut in pools.get(ball, [])]
    owner = [ball for ball in dict.fromkeys(item.ball for item in batch) for _ in pools.get(ball, [])]
    if not cuts:
        return None
    mask = torch.zeros(len(batch), len(cuts), dtype=torch.bool)
    for i, item in enumerate(batch):
        splits = item.splits or {}
        for c, (cut, ball) in enumerate(zip(cuts, owner, strict=True)):
            if ball != item.ball or not bool((item.lo >= cut.lo).all() and (item.hi <= cut.hi).all()):
                continue
            mask[i, c] = not any(bool((splits[k] * q < 0).any()) for k, q in cut.coef.items() if k in splits)
    if not bool(mask.any()):
        return None
    keep = torch.nonzero(mask.any(0)).flatten().tolist()
    cuts = [cuts[c] for c in keep]
    coef = {k: torch.stack([cut.coef[k] if k in cut.coef else torch.zeros(ops[k].in_shape, dtype=DT, device=device)
                            for cut in cuts]) for k in sorted({k for cut in cuts for k in cut.coef})}  # fmt: skip
    const = torch.tensor([cut.const for cut in cuts], dtype=DT, device=device)
    return Cuts(coef, const, mask[:, keep].to(device))


#: rounds of the multi-neuron relaxation at a ball's root (facets drawn, then the hidden layers tightened with them),
#: and the α/β/γ steps of its margins' bound there
PAIR_ROUNDS = 2
PAIR_STEPS = 20
#: what the relaxation costs at a ball's root, in its root box's costs (mnist_fc 256×4 and 256×6: 6–10)
PAIR_COST = 12


def _ball_mask(cuts: Cuts, boxes: torch.Tensor) -> Cuts:
    """A ball's pool (mask (1, C): it holds on the ball's whole box) seen by a batch: held by ``boxes`` (B,)."""
    return Cuts(cuts.coef, cuts.const, boxes[:, None] & cuts.mask[:1], cuts.pairs)


def _top_share(directions: torch.Tensor) -> float:
    """The share of the open rows' weight that the top direction holds: its eigenvalue over the trace (0 if none)."""
    trace = float(torch.diagonal(directions).sum())
    return float(torch.linalg.eigvalsh(directions.double())[-1]) / trace if trace > 0 else 0.0


def _stack_planes(batch: list[_Box], d: int) -> torch.Tensor | None:
    """The batch's half-spaces (B, m, d + 1), each box's padded with rows of zeros (0 ≥ 0: no constraint); None if
    no box has any."""
    m = max((len(item.planes) for item in batch if item.planes is not None), default=0)
    if not m:
        return None
    out = torch.zeros(len(batch), m, d + 1, dtype=torch.float64, device=batch[0].lo.device)
    for k, item in enumerate(batch):
        if item.planes is not None:
            out[k, : len(item.planes)] = item.planes
    return out


def oblique_parts(lo: torch.Tensor, hi: torch.Tensor, planes: torch.Tensor | None, directions: torch.Tensor,
                  levels: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:  # fmt: skip
    """The 2^``levels`` parts of the domain [lo, hi] ∩ ``planes`` cut across the top ``levels`` eigenvectors of
    ``directions`` (d, d, over the box's coordinates s, z = c + r·s): each cut p·z = t through the middle of the
    domain's extent along p, each part the domain's points on one side of every cut (the hyperplanes belong to both:
    the parts cover the domain). Each part comes with the box that bounds it: [lo, hi] narrowed to the part's extent
    along every coordinate (sound lower bounds of each side's minimum, :func:`~genrobust.bounds.planes.min_linear`,
    rounded outwards)."""
    lo, hi = lo.double(), hi.double()
    d = lo.numel()
    center, radius = (lo + hi) / 2, (hi - lo) / 2
    own = torch.zeros(0, d + 1, dtype=torch.float64, device=lo.device) if planes is None else planes
    cut = Planes.from_latent(own[None], center[None], radius[None]) if len(own) else None
    zero = torch.zeros(1, dtype=torch.long, device=lo.device)
    _, vectors = torch.linalg.eigh(directions.double())
    parts = [own]
    for j in range(min(levels, d)):
        v = vectors[:, -1 - j] * (radius > 0)  # over s: no cut along a dimension the box does not span
        if not bool(v.any()):
            break
        p = torch.where(radius > 0, v / torch.where(radius > 0, radius, 1.0), 0.0)  # the same cut over z
        # where the domain's points lie along p, by a linear program (exact; min_linear's bound stalls where several
        # half-spaces are nearly parallel, and a cut through the middle of its range can miss the domain)
        exact = lp_range(lo, hi, own if len(own) else None, p)
        if exact is not None:
            t = (exact[0] + exact[1]) / 2
        else:
            low = float(min_linear(v[None], zero, cut))
            high = -float(min_linear(-v[None], zero, cut))
            t = float((p * center).sum()) + (low + high) / 2
        row = torch.cat([p, p.new_tensor([t])])
        parts = [torch.cat([q, side[None]]) for q in parts for side in (row, -row)]
    return [(*bounding_box(lo, hi, q), q) for q in (drop_implied(lo, hi, q) for q in parts)]


def bounding_box(lo: torch.Tensor, hi: torch.Tensor, planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[lo, hi] narrowed to the extent of its points that satisfy ``planes`` along every coordinate: sound lower
    bounds of each side's minimum (:func:`~genrobust.bounds.planes.min_linear`), rounded outwards. An empty
    domain may come back as a thin box: whatever its bound, no point of the ball lies in it."""
    lo, hi = lo.double(), hi.double()
    d = lo.numel()
    center, radius = (lo + hi) / 2, (hi - lo) / 2
    mine = Planes.from_latent(planes[None], center[None], radius[None])
    eye = torch.eye(d, dtype=torch.float64, device=lo.device)
    idx = torch.zeros(d, dtype=torch.long, device=lo.device)
    pad = 1e-12 * (center.abs() + radius)  # the rounding of c + r·m, many times over
    new_lo = torch.maximum(lo, center + radius * min_linear(eye, idx, mine) - pad)
    new_hi = torch.minimum(hi, center - radius * min_linear(-eye, idx, mine) + pad)
    return new_lo, torch.maximum(new_hi, new_lo)


def _outward32(intervals: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Intervals kept for a box's children in float32 (half the memory), rounded outwards so they stay sound."""
    return {i: outward(lo, hi) for i, (lo, hi) in intervals.items()}


def _stack_parents(parents: list) -> dict[int, tuple[torch.Tensor, torch.Tensor]] | None:
    """The parents' intervals of a batch, stacked; boxes without a parent get (−inf, inf)."""
    known = [p for p in parents if p is not None]
    if not known:
        return None
    out = {}
    for i in known[0]:
        lows, highs = [], []
        for p in parents:
            if p is None:
                ref = known[0][i][0]
                lows.append(torch.full_like(ref, -math.inf))
                highs.append(torch.full_like(ref, math.inf))
            else:
                lows.append(p[i][0])
                highs.append(p[i][1])
        out[i] = (torch.stack(lows).double(), torch.stack(highs).double())
    return out


def _stack_alphas(alphas: list) -> dict[int, torch.Tensor] | None:
    """The parents' optimised α (or β) of a batch, stacked per op; boxes without one get NaN (the engine's
    default start)."""
    known = [a for a in alphas if a]
    if not known:
        return None
    keys = sorted({i for a in known for i in a})
    like = {i: next(a[i] for a in known if i in a) for i in keys}
    return {i: torch.stack([a[i] if a and i in a else torch.full_like(like[i], math.nan) for a in alphas])
            for i in keys}  # fmt: skip


def default_batch_boxes(device: torch.device, neurons: int = 0) -> int:
    """Boxes bounded together when ``VerifyOptions.batch_boxes`` is None: on a CPU as many as keep a batch's
    nonlinear neurons near 2¹⁸ (2 to 64), 16 elsewhere (a GPU wants large batches; not measured here).

    Measured on a 2-core CPU: the built-in C∘G (about 100,000 neurons) is fastest per box in batches of 2 (see
    ``VerifyOptions.batch_boxes``); a small network is not: on the 1,024 ReLUs of a competition MNIST network
    (``benchmarks/bench_vnncomp.py``, one thread) a hard instance took 30 s and stayed unknown in batches of 2,
    and was certified in 10.9 s in batches of 16 and 9.8 s in batches of 64."""
    if device.type != "cpu":
        return 16
    return int(min(64, max(2, 2 ** math.floor(math.log2(max(1, (1 << 18) // max(1, neurons)))))))


def _options_dict(opt: VerifyOptions) -> dict[str, Any]:
    b = opt.bounds
    return {
        "bounds": {"mode": b.mode, "classifier_forward": b.classifier_forward, "refine": b.refine,
                   "refine_dtype": str(b.refine_dtype).removeprefix("torch."), "alpha_steps": b.alpha_steps,
                   "alpha_intermediate": b.alpha_intermediate, "refine_to_latent": b.refine_to_latent,
                   # newer options only where set, so that older journals' headers still match
                   **({"generator_cells": b.generator_cells} if b.generator_cells else {}),
                   **({"alpha_maps": b.alpha_maps, "alpha_map_layers": b.alpha_map_layers} if b.alpha_maps else {}),
                   **({} if b.beta_per_width else {"beta_per_width": False}),
                   **({"lower_ratio": b.lower_ratio} if b.lower_ratio != 1 else {})},
        "max_boxes": opt.max_boxes, "max_seconds": opt.max_seconds, "split": opt.split,
        "batch_boxes": opt.batch_boxes, "attack_steps": opt.attack_steps, "attack_restarts": opt.attack_restarts,
        "attack_step_size": opt.attack_step_size,
        "leaf_attacks": opt.leaf_attacks, "leaf_targets": opt.leaf_targets,
        "give_up": opt.give_up, "mean_seconds": opt.mean_seconds,
        "branch": opt.branch, "beta_steps": opt.beta_steps, "branch_candidates": opt.branch_candidates,
        "refine_children": opt.refine_children, "attack_first": opt.attack_first,
        **({"cuts": opt.cuts} if opt.cuts else {}),  # only where set, as above
        **({"pair_neurons": opt.pair_neurons} if opt.pair_neurons else {}),
        **({"fan": opt.fan} if opt.fan != 1 else {}),
        **({"near_alpha": opt.near_alpha, "near_share": opt.near_share} if opt.near_alpha else {}),
        **({"oblique": True} if opt.oblique else {}),
    }  # fmt: skip
