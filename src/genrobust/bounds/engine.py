"""Sound bounds on the margins of C∘G over boxes of latents, batched over many boxes.

The chain of operators is cut at the *anchor*, the classifier's input (the generated image):

1. **Generator.** Every neuron before the anchor gets two affine functions of the latent box (lower and upper),
   pushed forward through each layer (2·(d+1) columns per neuron; the layers are small). Forward forms pay each
   relaxation's slack again through |W| at every later layer, so each nonlinearity's unstable inputs (every
   input of a tanh) are also bounded by a backward pass to the latent, whose lower and upper *functions* replace
   the forward forms wherever they are tighter. On the built-in GAN this took the first convolution's bound
   widths from 7× the sampled ones to 1.9× at ε = 0.03 (370× to 3.3× at ε = 0.1).
2. **Classifier, layer by layer.** Each neuron's interval is the intersection of interval arithmetic from the
   previous layer and (optionally) the forward affine bounds carried on. Neurons that a nonlinearity still finds
   unstable (a ReLU with l < 0 < u) are refined by a backward (CROWN) pass from that neuron to the anchor,
   where the generator's affine bounds of the pixels are substituted; the pass's linear function of the latent
   then replaces the neuron's forward form wherever it is tighter (as in the generator), so the next layer's
   forward bounds start tighter and leave fewer neurons to refine (16 boxes of class 8 at ε = 0.03: 194,667
   instead of 224,639 in the fourth convolution; 1.3× faster). Backward passes through convolutions carry only
   the neuron's receptive field (a *patch*), not the whole map, and read each ReLU's lines from a
   :class:`~.ops.WindowTable` of the layer's windows.
3. **Margins.** One backward pass from the margins logit_c − logit_j through the classifier *and* the generator
   to the latent; the lower bound is minimised over the box exactly (a linear function of the latent). Its
   coefficients say which latent dimension costs most: the branch-and-bound splits there.

Children of a split box pass their parent's intervals in (``parent``): every interval is intersected with the
parent's, so a neuron stable in the parent is never refined again. A child cut off by half-spaces of the latent
(``planes``, the oblique split) is bounded on its points alone: every minimisation over the latent box (the
forward forms' intervals, the refinement rows' and the margins' bounds) takes the half-spaces in by Lagrangian
duality (:mod:`.planes`), and a form kept from a row gives back exactly the bound that row was minimised with.

Soundness and floating point: everything is computed in float64 from weights converted exactly. A backward
pass computes A_k = A_{k+1}·W_k step by step; with rounding, the computed Ã_k differs by at most γ_n·|A_{k+1}||W_k|
(γ_n = n·2⁻⁵³/(1 − n·2⁻⁵³) for dot products of n terms, in any summation order, fused or not). Any coefficients
give a valid bound once the difference is paid for: A_{k+1}·x = Ã_k·x + (A_{k+1}W_k − Ã_k)·x ≥ Ã_k·x − γ_n·|A_{k+1}|·
(|W_k||x|), and |W_k||x| ≤ ``absmax_k``, the largest |W_k|·max(|l|, |u|) + |b| over the layer's sound intervals.
Biases, relaxation intercepts (|b| ≤ max(|l|, |u|) for a ReLU's chord) and the final substitution are sums of
the same kind. Each row therefore pays ``GUARD`` · Σ_k ‖A_{k+1}‖₁ · absmax_k, with ``GUARD`` = 10⁻⁹ ≥ 8·γ_n for
every n ≤ 10⁶ (the widest reduction here is a 25,600-input dense layer). The forward sweep pays the same way,
layer by layer: interval bounds widen by ``GUARD``·(|W|·max(|l|, |u|) + |b|) per neuron, and forward affine
bounds move their constants outwards by ``GUARD``·|W|·(their own magnitude), so each layer's computed bounds
are valid as they stand and the next layer only adds its own rounding. Relaxations of tanh/sigmoid, and their
interval images, carry a margin for libm's rounding (``ops.GUARD_LIBM``).

The same argument, with the unit roundoff 2⁻²⁴ and n the length of each step's dot products (a patch's
size, a convolution's Cout·k·k, plus one for the cast of a weight), makes float32 backward passes sound. Their
rows pay each linear step neuron by neuron, γ_n(float32)·Σ_i |A_i|·(|W_k||x|)_i + γ_m·Σ_i |A_i|·|b_i| with the
per-neuron maps of :func:`reach_maps` (the layer-wide ‖A‖₁·absmax_k charged the largest neuron's reach to every
coefficient: 9 of the 61 units of the worst margin of ball (0, 1) at ε = 0.05), and the relaxation lines they use
are the float64 lines
with slopes rounded to float32 and intercepts moved outward by |Δslope|·max(|l|, |u|), then rounded outward.
Intercept sums are blocked: 128 terms in float32, their partial sums in float64 (guard γ₁₂₉ in float32 plus
γₙ in float64); the final substitution is done in float64.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from ..errors import GenrobustError
from ..rounding import outward, round_up
from ..runtime import release_heap
from .cuts import Cuts, CutTerms
from .ops import (
    DT,
    TABLE_LIMIT,
    Activation,
    Op,
    Rows,
    WindowTable,
    gamma,
    gather_patches,
    gather_windows,
    to_dense,
    window_axes,
)
from .planes import GUARD as PLANES_GUARD
from .planes import Planes, min_linear
from .steps import GATHER_BYTES, relax_guard, relax_step, relax_step_by_ball
from .symbolic import FoldedGenerator, segment_top

GUARD = 1e-9
#: the step of the multipliers of neuron-pair constraints, as a share of ``alpha_lr``: thousands of them move at
#: once, and at the full step their sum swamped α and β (mnist_fc 256×4 `prop_3_0.05`: 491 boxes against 127 without
#: them; at 0.02 99–107 boxes, and the root's worst margin after 20 steps −1.88 against −2.07 at the full step)
GAMMA_LR = 0.02
Mode = Literal["crown", "forward", "interval"]
#: ``BoundOptions.generator_cells`` at most: 2^12 = 4,096 generator sweeps per box already cost minutes
MAX_CELL_SPLITS = 12


@dataclass(frozen=True)
class BoundOptions:
    """How bounds are computed (each switch is an ablation in ``benchmarks/bench_verify.py``).

    ``mode``: ``"crown"`` (forward in the generator, interval/forward/backward in the classifier, backward
    margins), ``"forward"`` (forward affine bounds all the way), ``"interval"`` (interval arithmetic only).
    ``classifier_forward``: also carry forward affine bounds through the classifier (besides intervals).
    ``refine``: backward passes for the classifier's unstable neurons, in ``refine_dtype`` (float32 is ~3–10×
    faster on a CPU; its rounding is paid for by a rigorous guard, see the module docstring). The margins
    are always bounded in float64. ``row_chunk``: rows per backward pass, at most; rows that cover whole
    maps are cut further so that one chunk's coefficients stay under ``chunk_bytes`` (peak memory). 16 MB chunks
    are no slower than 96 MB ones and much leaner (30 balls, the benchmark's budget: at ε = 0.05 peak 1.2 GB in
    203 s against 2.25 GB in 217 s; at ε = 0.03 1.17 GB in 65 s against 1.71 GB in 86 s).
    ``refine_limit``: a box whose first refined layer has more than this share of its neurons unstable (by its
    forward-form bounds; without forward forms the limit does not apply) keeps its interval/forward bounds
    everywhere (sound, looser). With the generator's backward forms, the second
    convolution of the built-in models has 1–2% of its neurons unstable (after refinement) at ε = 0.01, 4–8%
    at 0.03, 8–18% at 0.05 and 28–52% at 0.1 (measured on classes 0 and 8), so the limit now only spares
    boxes far wider than any certifiable one (ε = 0.5: every neuron unstable).
    ``generator_backward``: bound the generator's unstable neurons (and every pixel before its tanh) by backward
    passes to the latent and keep those functions as the pixels' affine forms where tighter (the ablation of
    this switch is the README's "7× → 1.9×"). ``margins_to_latent``: the margins' backward pass goes on through
    the generator to the latent instead of stopping at the image's forms. ``lazy_last``: the classifier's last
    nonlinearity is refined only for the boxes its unrefined bounds do not already certify (a margins pass
    costs 9 rows; refining the last dense layer of the built-in classifier costs ~300 rows that cover whole maps).
    ``refine_to_latent`` (on by default since stop 48): the classifier's refinement passes go on through the
    generator to the latent box instead of stopping at the image's affine forms: coefficients of many pixels
    cancel at the generator's neurons before their relaxations are paid. A row goes on only where its bound at the
    image leaves its neuron unstable (:meth:`BoundEngine._refine_rows`), through the generator's dense layers
    folded per box (``fold_generator``, :mod:`.symbolic`). Ball (0, 1) at ε = 0.05: worst margin −54.8 → −15.6
    for about 1.15× the time of a box; through branch and bound on the 50 side-by-side balls (16 boxes / 10 s)
    30 decided against 24 in 3.50 against 3.21 s a ball (docs/verify-complete.md). With it the first nonlinearity
    behind the image is refined too (only linear layers before it: at the image its rows would give what the
    image's forms give): ball (2, 1) −29.6 → −20.7 for 2% more time, certified in 15 boxes instead of 25.
    ``fold_generator``: the rows that go on to the latent cross the generator's leading dense layers as one exact
    affine map per box over the latent and the neurons the box leaves unstable (:mod:`.symbolic`): the same bounds
    (to 10⁻⁹ in float64), a fraction of the products.
    ``alpha_steps``: α-CROWN on the margins: the tunable lower lines of every unstable neuron on the margins'
    path (each margin its own) are optimised by this many steps of projected Adam (step ``alpha_lr``) on the
    margins' bound, for the boxes the plain bound does not certify; every step's bound is a sound bound (any α
    in [0, 1] gives valid lines), and the best per margin is kept. 0 switches it off.
    ``alpha_intermediate``: the same for the inputs of the classifier's dense head (its flat nonlinearities),
    each neuron's lower and upper row with its own slopes, this many steps, on the boxes that do not inherit
    their parent's intervals (a ReLU split's children keep their parent's α-tightened intervals and refine
    later layers by plain passes: the field's usual set-up, 2–3× faster per box at the same bounds on the
    competition's MNIST networks). ``None`` (the default): 10 for networks whose every nonlinearity is dense
    and that have no generator in front (a pixel-space MLP, whose rows are cheap: on ``mnist_fc`` it decides
    instances plain refinement cannot), 0 otherwise (behind convolutions a dense row costs minutes per box).
    ``alpha_maps``: α-CROWN, this many steps, on the inputs of the classifier's last ``alpha_map_layers``
    image-shaped nonlinearities (the last convolutions), each neuron's lower and upper row with its own slopes on
    the classifier's nonlinearities, on whole boxes only (a split's children intersect their intervals with the
    parent's, so they inherit the gain). The rows are patches and their slopes live in each row's receptive field
    (:meth:`BoundEngine._tune_rows`), 15× cheaper than whole-map rows. On ball (2, 1) of the built-in models at
    ε = 0.05 (one thread) 5 steps on the last two convolutions take the worst margin from −20.1 to −10.3, but at
    about 20× the time of a box (69 s), and the branch and bound still needs the same 15 boxes to certify it: the
    children inherit the gain (a third of a child's gap, a quarter of a grandchild's), but the boxes certify at the
    same depth. 0 (the default) switches it off (docs/verify-complete.md, stop 62).
    ``generator_cells``: m > 0 bounds the generator (alone) on 2^m cells of every box, the box halved along the
    m latent dimensions that move its image most, and gives each generator nonlinearity the union of its cells'
    intervals (sound: the cells cover the box). The generator is a small share of a box's cost and most of its
    slack: on ball (0, 1) of the built-in models at ε = 0.05, sampled (exact) generator ranges would lift the
    worst margin from −61.4 to −14.8. With 4 / 8 / 16 cells it is −47.5 / −43.1 / −38.7 (ball (0, 3): −10.9 →
    −7.6 / −6.7 / −5.5) for about 0.13 s per cell; through branch and bound with 4 cells, the 50 side-by-side
    balls at ε = 0.05 (16 boxes / 10 s, one thread) decide 19 against 18 in 5.65 against 5.23 s per ball: not the
    default.
    ``row_cells``: m > 0 carries every row that goes on to the latent (``refine_to_latent``, and the margins with
    ``margins_to_latent``) through the generator once more per cell of 2^m cells of its box (halved as for
    ``generator_cells``), each cell with the generator's own relaxation on it, and takes the least of the cells'
    bounds where it is tighter (sound: the cells cover the box, and the row's classifier part holds for every image
    of the box). The classifier part of a row is computed once; only rows whose neuron (or box) the whole box's
    pass leaves open go on per cell. Unlike ``generator_cells`` (the union of the cells' intervals, one relaxation
    on the box), each row meets the generator's slack of each cell: on ball (2, 1) at ε = 0.05 the whole box's
    bound is −20.7, −15.3, −10.3, −6.9 with 0 / 2 / 4 / 8 cells (one thread) (docs/verify-complete.md, stop 50).
    ``beta_per_width``: β-CROWN's multipliers are optimised as β·w, w the split neuron's interval width on its
    side of the split (|l| or u), instead of β itself. Adam moves every parameter by about the same step, while a
    split that proves much needs β ~ 1/w: on a random network's split domain that was in fact empty, plain β
    reached a bound of 0.005 after 400 steps where the scaled one reached 0.07 in 8. Soundness does not depend on
    it (any β ≥ 0 gives a bound).
    ``lower_ratio``: an unstable ReLU's lower line without α takes the rising piece (slope 1) where u ≥ ratio·(−l)
    and the flat one (the leak's slope) elsewhere (:meth:`.ops.ReLU.relax`); α-CROWN starts from the same lines.
    1 is CROWN's adaptive rule (least area). 2, the default, leans to the flat piece, which stops a backward row
    where slope 1 would carry it on to pay the relaxations below. On the whole boxes of the built-in models it
    closes about 30% of the gap between the bound and the centre's margin at ε = 0.05 (median over six balls) and
    about 20% at ε = 0.03 (twelve balls), at no cost. Any ratio in [0, ∞] is sound. On the classifier alone, 1.5 and
    2 close 22% of the gap, 3 closes 12%, and 5 or 0.5 are worse than 1 (docs/verify-complete.md, stop 65).
    """

    def __post_init__(self) -> None:
        if self.alpha_steps < 0 or (self.alpha_intermediate or 0) < 0 or self.alpha_maps < 0 or not self.alpha_lr > 0:
            raise GenrobustError(f"alpha_steps, alpha_intermediate and alpha_maps must be ≥ 0 and alpha_lr > 0, got "
                                 f"{self.alpha_steps}, {self.alpha_intermediate}, {self.alpha_maps}, "
                                 f"{self.alpha_lr}")  # fmt: skip
        if self.alpha_map_layers < 1:
            raise GenrobustError(f"alpha_map_layers must be ≥ 1, got {self.alpha_map_layers}")
        if not self.lower_ratio >= 0:  # NaN too
            raise GenrobustError(f"lower_ratio must be ≥ 0 (inf: always the flat piece), got {self.lower_ratio}")
        for name in ("generator_cells", "row_cells"):
            if not 0 <= getattr(self, name) <= MAX_CELL_SPLITS:
                raise GenrobustError(f"{name} halves at most {MAX_CELL_SPLITS} dimensions (2^m cells per box), "
                                     f"got {getattr(self, name)}")  # fmt: skip

    mode: Mode = "crown"
    classifier_forward: bool = True
    refine: bool = True
    refine_dtype: torch.dtype = torch.float32
    row_chunk: int = 4096
    chunk_bytes: int = 16 << 20
    refine_limit: float = 0.9
    generator_backward: bool = True
    margins_to_latent: bool = True
    lazy_last: bool = True
    alpha_steps: int = 0
    alpha_intermediate: int | None = None
    alpha_maps: int = 0
    alpha_map_layers: int = 1
    alpha_lr: float = 0.25
    refine_to_latent: bool = True
    generator_cells: int = 0
    row_cells: int = 0
    beta_per_width: bool = True
    fold_generator: bool = True
    lower_ratio: float = 2.0


@dataclass
class MarginBounds:
    """Lower bounds of the margins over each box, the linear function behind them, and the layer intervals."""

    lower: torch.Tensor  # (B, M), guarded: every margin ≥ lower on the whole box
    coef: torch.Tensor  # (B, M, d): ∂(lower bound)/∂s with the box written as center + radius·s, s ∈ [−1, 1]^d
    intervals: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(repr=False)  # op index → pre-activation (l, u)
    refined: int = 0  # classifier neurons refined by backward passes
    refined_generator: int = 0  # generator neurons bounded by backward passes to the latent
    #: the optimised α per tunable activation, (B, M, *shape) in float32, for the boxes' children to start from
    alpha: dict[int, torch.Tensor] | None = field(default=None, repr=False)
    #: per box, the classifier neurons to branch on next, best first: (op index of its nonlinearity, flat index of
    #: the neuron in its input, score), each (B, candidates): the unstable piecewise-linear neurons whose
    #: relaxation intercepts cost the worst margin's bound most (BaBSR's intercept score, read from the margins'
    #: backward pass); op −1 where none
    branch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)
    #: the optimised β per split nonlinearity (op index → (B, M, *input shape), float32, NaN where not optimised),
    #: for the boxes' children to start from (a child's new split starts at 0)
    beta: dict[int, torch.Tensor] | None = field(default=None, repr=False)
    #: the optimised multipliers of the cuts (B, M, C) in float32, NaN where not optimised, for the children
    gamma: torch.Tensor | None = field(default=None, repr=False)
    #: (B, d, d) when asked (``directions=True``): per box, Σ w·x·xᵀ over the classifier's open refinement rows, x
    #: a row's latent coefficients (over s) normalised and w = min(1, ‖g‖₁/|bound|): its top eigenvector is the
    #: direction across which a cut settles most neurons (:mod:`.planes`)
    directions: torch.Tensor | None = field(default=None, repr=False)


@dataclass
class _RowCells:
    """A generator-only sweep of 2^m cells of every box (``BoundOptions.row_cells``): box b's cells are rows
    b·k … b·k + k − 1 of the cells' relaxations, latent forms and box, and rounding maps."""

    relax: _Relaxations
    latent_forms: _BoxForms
    latent_box: tuple[torch.Tensor, torch.Tensor]
    absmax: dict
    k: int


@dataclass
class _Forms:
    """Affine lower/upper bounds of a layer over s ∈ [−1, 1]^d: coef (B, d, *shape), const (B, *shape)."""

    lc: torch.Tensor
    l0: torch.Tensor
    uc: torch.Tensor
    u0: torch.Tensor
    #: the boxes' half-spaces, where rows are minimised over these forms (the image's forms, :meth:`_concretize`)
    planes: Planes | None = None

    @property
    def same(self) -> bool:
        return self.lc is self.uc and self.l0 is self.u0

    def concrete(self, planes: Planes | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Each neuron's interval from its forms over the boxes; with ``planes`` (:mod:`.planes`) its ends tightened
        over the cut boxes where the whole boxes leave the neuron's sign open (elsewhere a ReLU is exact already)."""
        lo, hi = self.l0 - self.lc.abs().sum(1), self.u0 + self.uc.abs().sum(1)
        if planes is None:
            return lo, hi
        B, d = self.lc.shape[:2]
        idx = torch.nonzero(((lo < 0) & (hi > 0)).reshape(B, -1))
        if not len(idx):
            return lo, hi
        lo, hi = lo.clone(), hi.clone()
        key = (idx[:, 0], idx[:, 1])
        lc, uc = self.lc.reshape(B, d, -1).transpose(1, 2)[key], self.uc.reshape(B, d, -1).transpose(1, 2)[key]
        lo.view(B, -1)[key] = torch.maximum(
            lo.view(B, -1)[key], self.l0.reshape(B, -1)[key] + min_linear(lc, idx[:, 0], planes)
        )
        hi.view(B, -1)[key] = torch.minimum(
            hi.view(B, -1)[key], self.u0.reshape(B, -1)[key] - min_linear(-uc, idx[:, 0], planes)
        )
        return lo, hi

    def magnitude(self) -> torch.Tensor:
        """Per neuron, |l0| + |u0| + Σ|lc| + Σ|uc|: bounds every term the forms hold (for rounding guards)."""
        m = self.l0.abs() + self.lc.abs().sum(1)
        return m if self.same else m + self.u0.abs() + self.uc.abs().sum(1)

    def widened(self, err: torch.Tensor) -> _Forms:
        """The same forms with the constants moved outwards by ``err``: still valid despite rounding ≤ err."""
        return _Forms(self.lc, self.l0 - err, self.uc, self.u0 + err)

    def take(self, idx: torch.Tensor) -> _Forms:
        return _Forms(self.lc[idx], self.l0[idx], self.uc[idx], self.u0[idx],
                      None if self.planes is None else self.planes.take(idx))  # fmt: skip


@dataclass
class _BoxForms:
    """The input box itself as forms (x = center + radius·s, s ∈ [−1, 1]^d): a row is minimised over it in
    closed form, A·center − Σ|A·radius|, instead of through a (d × d) diagonal (784 × 784 for a pixel box)."""

    center: torch.Tensor  # (B, d)
    radius: torch.Tensor  # (B, d)
    planes: Planes | None = None  # half-spaces cutting the boxes (:mod:`.planes`)

    def take(self, idx: torch.Tensor) -> _BoxForms:
        return _BoxForms(self.center[idx], self.radius[idx], None if self.planes is None else self.planes.take(idx))


@dataclass
class _Domain:
    """What a sweep's refinement needs to know of its boxes' domains: their half-spaces (None: whole boxes) and,
    when asked, the accumulator of their open rows' directions (B, d, d) (:attr:`MarginBounds.directions`)."""

    planes: Planes | None = None
    directions: torch.Tensor | None = None

    def record(self, ball: torch.Tensor, val: torch.Tensor, g: torch.Tensor) -> None:
        """Add the open rows' (bound < 0) normalised coefficients, weighted by min(1, ‖g‖₁/|bound|)."""
        if self.directions is None:
            return
        g = g.detach().to(DT)
        l1 = g.abs().sum(1)
        open_ = torch.isfinite(val) & (val < 0) & (l1 > 0)
        if not bool(open_.any()):
            return
        g, val, l1, ball = g[open_], val[open_].to(DT), l1[open_], ball[open_]
        w = (l1 / val.abs()).clamp(max=1.0)
        x = g * (w.sqrt() / g.norm(dim=1))[:, None]  # √w·ĝ: each box's sum of w·ĝĝᵀ is one small GEMM
        for b in torch.unique(ball).tolist():
            xb = x[ball == b]
            self.directions[b] += xb.T @ xb


@contextmanager
def ieee_float32() -> Iterator[None]:
    """Float32 GEMMs and convolutions in IEEE single precision while bounds are computed.

    The float32 guards assume the unit roundoff 2⁻²⁴, but PyTorch lets cuDNN run float32 convolutions in TF32
    by default (10-bit mantissa on Ampere and later GPUs), and ``set_float32_matmul_precision("medium")`` lets
    oneDNN and cuBLAS use bfloat16 or TF32: either would void the guards. The caller's settings come back after.
    """
    b = torch.backends
    knobs = [b.cuda.matmul, b.cudnn.conv, b.mkldnn.matmul, b.mkldnn.conv]
    if all(hasattr(k, "fp32_precision") for k in knobs):  # torch ≥ 2.9 (mixing in the legacy flags is an error)
        old = [k.fp32_precision for k in knobs]
        try:
            for k in knobs:
                k.fp32_precision = "ieee"
            yield
        finally:
            for k, v in zip(knobs, old, strict=True):
                k.fp32_precision = v
    else:  # pragma: no cover - older torch
        legacy = (torch.get_float32_matmul_precision(), b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32)
        try:
            torch.set_float32_matmul_precision("highest")
            b.cudnn.allow_tf32 = b.cuda.matmul.allow_tf32 = False
            yield
        finally:
            torch.set_float32_matmul_precision(legacy[0])
            b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32 = legacy[1], legacy[2]


def _widths(ctx, ops: dict, inverse: bool = False) -> dict[int, torch.Tensor]:
    """Per split op (the keys of ``ops``), each row's neurons' interval widths (float32, at least 1e-6), or their
    inverses."""
    out = {}
    for k in ops:
        lo, hi = ctx.pre[k]
        w = (hi - lo).float().clamp(min=1e-6)
        out[k] = 1 / w if inverse else w
    return out


def _flat_apply(op: Op, coef: torch.Tensor, part: str) -> torch.Tensor:
    B, d = coef.shape[:2]
    return op.apply(coef.reshape(B * d, *coef.shape[2:]), part, bias=False).reshape(B, d, *op.out_shape)


def _abs_terms(op: Op, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|W|·size and |b| (broadcast) for the linear op, per neuron of its output (float64): their sum bounds every
    term the op sums for inputs |x| ≤ ``size`` (B, *in_shape)."""
    no_bias = op.apply(size, "abs", bias=False)
    return no_bias, op.apply(torch.zeros_like(size[:1]), "abs").expand_as(no_bias)


def reach_maps(op: Op, size: torch.Tensor, terms: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Per neuron of the linear op's output, what its rounding guard multiplies (:meth:`BoundEngine._reach_guard`):
    (B, 2, *out_shape) upper bounds, in float32, on |W||x| and on |b| for inputs |x| ≤ ``size`` (B, *in_shape)
    (``terms``: :func:`_abs_terms`, if already computed). |W||x| is a float64 sum of ≤ 10⁶ terms ≥ 0 (relative
    error < 10⁻¹⁰, lifted by that); |b| is exact."""
    no_bias, bias = _abs_terms(op, size) if terms is None else terms
    return round_up(torch.stack([no_bias * (1 + 1e-10), bias], 1), torch.float32)


def _take_rows(rows: Rows, sel: torch.Tensor) -> Rows:
    """The rows ``sel`` of ``rows`` (a copy)."""
    return Rows(rows.A[sel], rows.ball[sel], None if rows.off is None else rows.off[sel])


def _keep_tighter(
    forms: _Forms, key, val: torch.Tensor, g: torch.Tensor, signs=(1.0, -1.0), planes: Planes | None = None
) -> None:
    """Replace, in place, the forms of the neurons ``key`` by backward passes' functions where those are tighter.

    Rows come in groups of ``len(signs)`` per neuron: a row of sign +1 bounds its neuron from below by g·s + c over
    the box's domain, its guarded minimum ``val`` = c + m with m the guarded lower bound of min g·s that the row was
    minimised with, so c = val − m, less m's own rounding; a row of sign −1 is the negated upper bound. A form is
    kept where its own minimum (maximum) over the whole box is the better one.

    m is recomputed here, and must be the bound the row's ``val`` took: over a whole box m = −Σ|g|; over a box cut
    by half-spaces (``planes``, :mod:`.planes`) the same :func:`~.planes.min_linear` on the same rows. Its multipliers
    μ are a function of each row's numbers, but should rounding tip a near-tie the other way (μ = 0 in one evaluation,
    μ* > 0 on a flat dual in the other), the two bounds differ by their guards, 10⁻⁹ of the larger size: that is
    paid here (``PLANES_GUARD``), so c never exceeds the row's constant. Taking −‖g‖₁ there would overstate c:
    ``planes`` must be the sweep's."""
    k = len(signs)
    ball = key[0]
    for t, sign in enumerate(signs):
        v, gt = val[t::k], g[t::k]
        gsum = gt.abs().sum(1)
        m, size = (-gsum, gsum) if planes is None else min_linear(gt, ball, planes, with_size=True)
        c = v - m - GUARD * (v.abs() + gsum) - (0.0 if planes is None else PLANES_GUARD * size)
        # which form to keep: any choice is sound; the old form's minimum over the whole box (not the cut one)
        if sign > 0:
            better = v > forms.l0[key] - forms.lc.movedim(1, -1)[key].abs().sum(-1)
            coef, const, new_coef, new_const = forms.lc.movedim(1, -1), forms.l0, gt, c  # views: (B, *shape, d)
        else:
            better = -v < forms.u0[key] + forms.uc.movedim(1, -1)[key].abs().sum(-1)
            coef, const, new_coef, new_const = forms.uc.movedim(1, -1), forms.u0, -gt, -c
        coef[key] = torch.where(better[:, None], new_coef, coef[key])
        const[key] = torch.where(better, new_const, const[key])


def refutation(lower: torch.Tensor, groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """What a box's row bounds ``lower`` (B, M) prove about a property whose unsafe outputs are a disjunction of
    conjunctions, row r refuting one constraint of disjunct ``groups[r]`` when its bound is > 0 (each row its own
    disjunct when ``groups`` is None, as in robustness: every margin must be positive). Returns the box's
    certificate (B,), the worst disjunct's best row bound (> 0: every disjunct is refuted, the property holds
    on the box), and the row (B,) that bound belongs to: the one to work on."""
    if groups is None:
        worst = lower.argmin(1)
        return lower.gather(1, worst[:, None])[:, 0], worst
    B, M = lower.shape
    G = int(groups.max()) + 1 if M else 0
    best = lower.new_full((B, G), -math.inf).scatter_reduce(1, groups.expand(B, M), lower, "amax")
    cert, disjunct = best.min(1)
    masked = torch.where(groups[None, :] == disjunct[:, None], lower, -math.inf)
    return cert, masked.argmax(1)


def open_rows(lower: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """(B, M): the rows whose disjunct no row refutes yet (the only rows worth tightening)."""
    if groups is None:
        return lower <= 0
    B, M = lower.shape
    G = int(groups.max()) + 1 if M else 0
    best = lower.new_full((B, G), -math.inf).scatter_reduce(1, groups.expand(B, M), lower, "amax")
    return best.gather(1, groups.expand(B, M)) <= 0


@dataclass
class _Sweep:
    """What :meth:`BoundEngine._sweep` leaves for the margins' bound: the logits' interval and forward forms, where
    backward passes end (the image's forms and box, the latent's), the relaxations, the rounding guards' ``absmax``,
    every nonlinearity's input interval, the neurons refined, the last nonlinearity when its refinement was
    deferred (``lazy_last``: its index and the boxes to skip), and the boxes whose split domain is empty."""

    lo: torch.Tensor
    hi: torch.Tensor
    forms: _Forms | None
    anchor_forms: _Forms | _BoxForms | None
    anchor_box: tuple[torch.Tensor, torch.Tensor]
    latent_forms: _BoxForms | None
    latent_box: tuple[torch.Tensor, torch.Tensor]
    relax: _Relaxations
    absmax: dict
    intervals: dict[int, tuple[torch.Tensor, torch.Tensor]]
    refined: int
    refined_gen: int
    deferred: tuple[int, torch.Tensor] | None
    empty: torch.Tensor
    cells: _RowCells | None = None


class _Relaxations:
    """What the backward passes of one margins pass read of its nonlinear ops.

    ``lines[k]``: activation k's relaxation lines (B, 4, *shape): al, bl, au, bu, float64, gathered together in
    backward passes; ``pre[k]``: its input interval (lo, hi); ``plans[k]``: a selection's (MaxPool's) plan of which
    input bounds each output. Derived forms are cached per (op, dtype): the lines cast to float32 (still sound),
    the origin form of ReLU-like lines, and whether they allow the fused step's shortcuts. Setting an op's lines
    drops its cached forms. In α-CROWN each row is its own "box" (:meth:`rows`), and every step replaces the tuned
    ops' lines (:meth:`with_lines`). ``windows[k]``: op k's lines and input interval are each patch row's window
    (R, ·, C, ph, pw) at its own position (zeros outside the map) rather than whole maps per box (α on the rows of
    a convolution's neurons, where a row sees only its receptive field: :meth:`BoundEngine._tune_rows`)."""

    __slots__ = ("_cache", "lines", "plans", "pre", "windows")

    def __init__(self) -> None:
        self.lines: dict[int, torch.Tensor] = {}
        self.pre: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.plans: dict[int, tuple] = {}
        self.windows: dict[int, torch.Tensor] = {}  # op → each row's inside-the-map mask (R, 1, ph, pw)
        self._cache: dict[tuple, object] = {}

    def set_activation(self, k: int, lines: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> None:
        """Activation ``k``'s lines (B, 4, *shape) on its input interval [lo, hi]; drops forms cached of older ones."""
        self.lines[k], self.pre[k] = lines, (lo, hi)
        for key in [key for key in self._cache if key[1] == k]:
            del self._cache[key]

    def rows(self, b: torch.Tensor, ops: list[int], without_lines: list[int],
             windows: dict[int, tuple[torch.Tensor, int, int]] | None = None) -> _Relaxations:  # fmt: skip
        """The relaxations of ``ops`` seen per row, row r taking box ``b[r]``'s, but no lines for ``without_lines``
        (their lines are set at every step of the optimisation). ``windows[k]`` = (offsets (R, 2), ph, pw): op k's
        input interval as each row's window only (and its lines, unless set per step)."""
        out = _Relaxations()
        for k in ops:
            if k in self.plans:
                out.plans[k] = tuple(t[b] for t in self.plans[k])
                continue
            if windows and k in windows:
                off, ph, pw = windows[k]
                lo, hi = (gather_patches(t, b, off, ph, pw) for t in self.pre[k])
                inside = window_axes(off, ph, pw, *self.pre[k][0].shape[-2:])[2]
                out.pre[k], out.windows[k] = (lo, hi), inside[:, None]
                if k not in without_lines:
                    out.lines[k] = gather_patches(self.lines[k], b, off, ph, pw)
                continue
            out.pre[k] = tuple(t[b] for t in self.pre[k])
            if k not in without_lines:
                out.lines[k] = self.lines[k][b]
        return out

    def with_lines(self, lines: dict[int, torch.Tensor]) -> _Relaxations:
        """A copy with the given ops' lines replaced (on the same intervals). The copy shares this object's cache, so
        that the other ops' cast lines are made once for all the optimisation's steps; the replaced ops' cached
        forms (the previous step's) are dropped from it."""
        for key in [key for key in self._cache if key[1] in lines]:
            del self._cache[key]
        out = _Relaxations()
        out.lines, out.pre, out.plans = {**self.lines, **lines}, dict(self.pre), dict(self.plans)
        out.windows = self.windows
        for k, inside in self.windows.items():  # lines outside the map: zero (the rows are zero there too)
            if k in lines:
                out.lines[k] = torch.where(inside[:, None], lines[k], 0.0)
        out._cache = self._cache
        return out

    def cast(self, k: int, dt: torch.dtype) -> torch.Tensor:
        """Activation ``k``'s lines in ``dt``, still sound after the rounding (see the module docstring): slopes
        rounded, intercepts moved outward by |Δslope|·max(|l|, |u|), then rounded outward."""
        rel = self.lines[k]
        if dt == DT:
            return rel
        key = ("cast", k, dt)
        if key not in self._cache:
            l, u = self.pre[k]  # noqa: E741
            M = torch.maximum(l.abs(), u.abs())
            al, bl, au, bu = rel.unbind(1)
            al32, au32 = al.to(dt), au.to(dt)
            bl = bl - (al32.to(DT) - al).abs() * M
            bu = bu + (au32.to(DT) - au).abs() * M
            bl32, bu32 = outward(bl, bu, dt)
            self._cache[key] = torch.stack([al32, bl32, au32, bu32], 1)
        return self._cache[key]  # type: ignore[return-value]

    def shortcuts(self, k: int, dt: torch.dtype, maps: torch.Tensor) -> tuple[bool, bool]:
        """Whether activation ``k``'s lines ``maps`` (in ``dt``) all have lower lines through the origin (a ReLU's:
        their intercept terms are skipped) and upper intercepts ≥ 0."""
        key = ("shortcuts", k, dt)
        if key not in self._cache:
            self._cache[key] = (bool((maps[:, 1] == 0).all()), bool((maps[:, 3] >= 0).all()))
        return self._cache[key]  # type: ignore[return-value]

    def origin_lines(self, k: int, dt: torch.dtype, maps: torch.Tensor) -> torch.Tensor:
        """Activation ``k``'s lines in ``dt`` (``maps``, every bl = 0) as (B, 3, *shape): al, dl = fl(au − al) and
        an upper intercept raised so that the line of slope al + dl (the exact sum, what the fused step applies)
        still lies above: |al + dl − au| ≤ u·|au − al| ≤ u (slopes in [0, 1]), so the intercept gains 2u·max(|l|,
        |u|) over the neuron's interval, added in float64 and rounded up."""
        key = ("origin", k, dt)
        if key not in self._cache:
            al, au, bu = maps[:, 0], maps[:, 2], maps[:, 3]
            lo, hi = self.pre[k]
            unit = 2.0**-53 if dt == DT else 2.0**-24
            raised = bu.to(DT) + 2 * unit * torch.maximum(lo.abs(), hi.abs())
            raised = round_up(torch.nextafter(raised, torch.full_like(raised, math.inf)), dt)
            self._cache[key] = torch.stack([al, au - al, raised], 1)
        return self._cache[key]  # type: ignore[return-value]


class BoundEngine:
    """Bounds for the chain ``ops`` (latent → logits) cut at ``anchor`` (index of the classifier's first op)."""

    #: the domains of the boxes being bounded (set by :meth:`margins` for its call, and by the sweeps of cells
    #: for theirs): every refinement row minimised over them must be taken back out over the same half-spaces
    _dom: _Domain = _Domain()

    def __init__(self, ops: list[Op], anchor: int, options: BoundOptions | None = None) -> None:
        if not ops:
            raise GenrobustError("the network has no layers to bound")
        if len(ops[-1].out_shape) != 1:
            raise GenrobustError(f"the network must end in logits of shape (K,), not {ops[-1].out_shape}")
        self.ops = ops
        self.anchor = anchor
        self.options = options or BoundOptions()
        self.in_dim = ops[0].in_shape[0]
        self.last_nonlinear = max((k for k, o in enumerate(ops) if not o.linear), default=-1)
        alpha = self.options.alpha_intermediate
        if alpha is None:  # see ``BoundOptions.alpha_intermediate``
            mlp = all(len(o.in_shape) == 1 for o in ops[anchor:] if not o.linear)
            alpha = 10 if mlp and all(o.linear for o in ops[:anchor]) else 0
        #: α-CROWN steps on the dense head's inputs (``BoundOptions.alpha_intermediate``, its default resolved)
        self.alpha_intermediate = alpha
        #: the classifier's last image-shaped nonlinearities whose inputs get α-CROWN (``BoundOptions.alpha_maps``)
        maps = [k for k in range(anchor + 1, len(ops)) if isinstance(ops[k], Activation) and len(ops[k].in_shape) == 3]
        self._alpha_map_ops = set(maps[-self.options.alpha_map_layers :]) if self.options.alpha_maps else set()
        #: the last op of the generator's leading dense layers that :mod:`.symbolic` folds (None: nothing to fold)
        self._fold_top = segment_top(ops, anchor)
        #: intervals proved for nonlinearities' inputs on the whole region this engine is asked about (op index →
        #: (lo, hi), each (1, *in_shape)): :meth:`with_facts`
        self.facts: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def to(self, device: torch.device) -> BoundEngine:
        for op in self.ops:
            op.to(device)
        self.facts = {i: (lo.to(device), hi.to(device)) for i, (lo, hi) in self.facts.items()}
        return self

    def with_facts(self, facts: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> BoundEngine:
        """Intersect every box's intervals at nonlinearity i with ``facts[i]`` (lower, upper of its input, shaped
        (*in_shape) or (1, *in_shape); ±inf where nothing is known), as its own bounds are computed: before the
        refinement, so that a neuron they show stable costs no backward rows, and after it. The facts must hold on
        every box the engine will be given (a property's box and its sub-boxes): they were proved there, e.g. by
        :func:`genrobust.verify.vnnlib.stabilise`, which shows hidden neurons to keep one sign on the whole box;
        a fact that does not hold there makes every bound unsound. Returns ``self``."""
        out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for i, (lo, hi) in facts.items():
            op = self.ops[i] if 0 <= i < len(self.ops) else None
            if op is None or op.linear:
                raise GenrobustError(f"facts are intervals of nonlinearities' inputs; op {i} is not one")
            lo, hi = (torch.as_tensor(t, dtype=DT).reshape(1, *op.in_shape) for t in (lo, hi))
            if bool(torch.isnan(lo).any() or torch.isnan(hi).any() or (lo > hi).any()):
                raise GenrobustError(f"the facts of op {i} are NaN or empty (lower > upper)")
            out[i] = (lo, hi)
        self.facts = out
        return self

    @property
    def num_classes(self) -> int:
        return self.ops[-1].out_shape[0]

    # ------------------------------------------------------------------------------------------ the pass
    def margins(
        self,
        center: torch.Tensor,
        radius: torch.Tensor,
        spec: torch.Tensor,
        parent: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
        alpha: dict[int, torch.Tensor] | None = None,
        splits: dict[int, torch.Tensor] | None = None,
        settled: torch.Tensor | None = None,
        steps: torch.Tensor | None = None,
        branch: bool | int = False,
        offset: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
        beta: dict[int, torch.Tensor] | None = None,
        cuts: Cuts | None = None,
        gamma: torch.Tensor | None = None,
        refine_cuts: bool = False,
        tune_above: torch.Tensor | None = None,
        planes: torch.Tensor | None = None,
        directions: bool = False,
    ) -> MarginBounds:
        """Lower bounds of spec·logits (spec (B, M, K)) over the boxes center ± radius ((B, d), float64).

        ``parent``: intervals the boxes are known to lie in (a split box's parent's); ``alpha``: a start for the
        α-optimisation (a parent's :attr:`MarginBounds.alpha`, boxes without one given NaN). ``splits``: ReLU
        splits (op index of a nonlinearity → (B, *shape) of −1, 0, +1): each box is restricted to the latents
        where every split neuron's input is ≤ 0 (−1) or ≥ 0 (+1); the bounds hold on that domain. Their
        intervals are clamped, and with ``alpha_steps`` the margins' pass carries each constraint with an
        optimised multiplier β ≥ 0 (β-CROWN). A box whose domain the bounds show empty gets the largest bound.

        ``settled`` (B,): per box, the op index up to which its nonlinearities keep the ``parent``'s intervals
        without refinement (−1: none). A ReLU split's child is its parent's box with one more constraint at op
        k: nothing before k can tighten, so its bounds are the parent's up to k and only later layers are
        refined again (a split in the dense head costs a margins pass, not a box). ``steps`` (B,): α/β steps
        per box instead of ``BoundOptions.alpha_steps`` (0: none), e.g. only for the boxes with splits.
        ``branch``: also choose each box's ReLU to split (:attr:`MarginBounds.branch`; a gather of every
        activation's lines per margin row, so only when asked); an int asks for that many candidates per box.

        ``offset`` (B, M): constants added to the rows (a property's constraints c·y + k, not only margins), the
        sum rounded down; ``groups`` (M,): the disjunct of each row when a property is a disjunction of
        conjunctions (see :func:`refutation`): α/β tune only rows of disjuncts not yet refuted, and branching
        works on the worst disjunct's best row. ``beta``: a start for the split constraints' multipliers (a
        parent's :attr:`MarginBounds.beta`, NaN where none).

        ``cuts``: cutting planes over the ReLUs' activation patterns that hold on the boxes' violating points
        (:class:`.cuts.Cuts`, its mask one row per box), each entering the α/β optimisation with its own
        multiplier γ ≥ 0 per row. The bounds then hold for the points the cuts hold for, so a positive bound still
        proves a box; the plain pass (and ``steps`` 0) ignores them. ``gamma`` (B, M, C): a start for their
        multipliers (a parent's :attr:`MarginBounds.gamma` placed in this pool's columns, NaN where none).
        ``refine_cuts``: the α-CROWN rows of the hidden layers' inputs (``alpha_intermediate``) carry the cuts on
        earlier layers too, each from γ = 0 (PRIMA's use of multi-neuron constraints: tighter intermediate
        intervals, fewer unstable neurons after them).

        ``tune_above`` (B,): α/β only for the boxes whose plain worst bound (the disjunction's, with ``offset``)
        reaches it, with ``steps`` (or ``alpha_steps``) there: the optimisation closes a small share of a box's gap,
        so it decides only the boxes the plain bound leaves just short of a proof (the near misses).

        ``planes`` (B, m, d + 1), float64: half-spaces P·z ≥ q of the latent (rows [P | q]; rows of zeros are
        none) that cut each box: the bounds hold on the box's points that satisfy them (:mod:`.planes`; every
        minimisation over the latent takes them in by Lagrangian duality). ``directions``: also return
        :attr:`MarginBounds.directions`, which way to cut each box next."""
        if cuts is not None:
            cuts.check_ops(self.ops)
            if cuts.mask.shape[0] != center.shape[0]:
                raise GenrobustError(f"cuts: a mask row per box is needed ({center.shape[0]} boxes), got "
                                     f"{cuts.mask.shape[0]}")  # fmt: skip
        if gamma is not None and (cuts is None or gamma.shape != (*spec.shape[:2], len(cuts))):
            raise GenrobustError(f"gamma: a start (boxes, margins, cuts) for the cuts given is needed, got "
                                 f"{tuple(gamma.shape)}")  # fmt: skip
        B, d = center.shape
        if planes is not None and (planes.dim() != 3 or planes.shape[0] != B or planes.shape[2] != d + 1
                                   or not bool(torch.isfinite(planes).all())):  # fmt: skip
            raise GenrobustError(f"planes: finite (boxes, m, {d + 1}) half-spaces are needed, got "
                                 f"{tuple(planes.shape)}")  # fmt: skip
        cut = None if planes is None or planes.shape[1] == 0 else Planes.from_latent(planes, center.to(DT),
                                                                                    radius.to(DT))  # fmt: skip
        acc = torch.zeros(B, d, d, dtype=DT, device=center.device) if directions else None
        self._dom = _Domain(cut, acc)
        try:
            with ieee_float32():
                mb = self._margins(center, radius, spec, parent, alpha, splits, settled, steps, branch, offset,
                                   groups, beta, cuts, gamma, refine_cuts, tune_above)  # fmt: skip
            mb.directions = acc
            return mb
        finally:
            del self._dom  # back to the class's: whole boxes
            release_heap()  # the pass's large temporaries would otherwise stay resident (see there)

    def _margins(self, center, radius, spec, parent, alpha_start=None, splits=None, settled=None, steps=None,
                 want_branch=False, offset=None, groups=None, beta_start=None, cuts=None,
                 gamma_start=None, refine_cuts=False, tune_above=None) -> MarginBounds:  # fmt: skip
        opt = self.options
        if settled is not None and parent is None:
            raise GenrobustError("settled boxes need their parent's intervals")
        center, radius, spec = center.to(DT), radius.to(DT), spec.to(DT)
        B, d = center.shape
        sw = self._sweep(center, radius, parent, splits, settled, cuts=cuts if refine_cuts else None)
        lo, hi, forms, empty = sw.lo, sw.hi, sw.forms, sw.empty
        size = torch.maximum(lo.abs(), hi.abs())  # of the logits
        M = spec.shape[1]
        alphas = betas = branch = gammas = None
        if opt.mode == "crown":
            lower, coef, alphas, betas, branch, gammas = self._crown_margins(
                sw, spec, alpha_start, splits, settled, steps, want_branch, offset, groups, beta_start, cuts,
                gamma_start, tune_above,
            )  # fmt: skip
        elif opt.mode == "forward":
            assert forms is not None
            sp, sn = spec.clamp(min=0), spec.clamp(max=0)
            c = torch.einsum("bmk,bdk->bmd", sp, forms.lc) + torch.einsum("bmk,bdk->bmd", sn, forms.uc)
            c0 = torch.einsum("bmk,bk->bm", sp, forms.l0) + torch.einsum("bmk,bk->bm", sn, forms.u0)
            guard = GUARD * torch.einsum("bmk,bk->bm", spec.abs(), forms.magnitude())
            lower, coef = c0 - c.abs().sum(2) - guard, c
        else:
            sp, sn = spec.clamp(min=0), spec.clamp(max=0)
            guard = GUARD * torch.einsum("bmk,bk->bm", spec.abs(), size)
            lower = torch.einsum("bmk,bk->bm", sp, lo) + torch.einsum("bmk,bk->bm", sn, hi) - guard
            coef = torch.zeros(B, M, d, dtype=DT, device=center.device)
        if not torch.isfinite(lower).all():
            raise GenrobustError("the margin bounds are NaN or infinite: check the network's weights")
        if offset is not None:  # rounded down: the sum stays a lower bound
            lower = torch.nextafter(lower + offset.to(lower), torch.full_like(lower, -math.inf))
        lower = torch.where(empty[:, None], torch.finfo(DT).max, lower)  # an empty domain: nothing to disprove
        return MarginBounds(lower, coef, sw.intervals, sw.refined, sw.refined_gen, alphas, branch, betas, gammas)

    def _cell_intervals(self, center, radius, parent):
        """``parent`` with the generator's nonlinearities' input intervals tightened to the union of their bounds
        over 2^m cells of each box (``BoundOptions.generator_cells`` = m): the box halved along the m latent
        dimensions that move its image most (the image's change between the box's two faces, by forward passes).
        Each cell is bounded by the generator's own sweep, and the cells cover the box (their radii are rounded
        up past every rounding of their centres), so each union holds on the whole box."""
        B = center.shape[0]
        cen, rad, k = self._cells(center, radius, self.options.generator_cells)
        sub = None
        if parent is not None:
            sub = {i: (lo.repeat_interleave(k, 0), hi.repeat_interleave(k, 0)) for i, (lo, hi) in parent.items()
                   if i < self.anchor}  # fmt: skip
        sw = self._cell_sweep(cen, rad, sub)
        out = dict(parent or {})
        for i, (lo, hi) in sw.intervals.items():
            lo = lo.reshape(B, k, *lo.shape[1:]).amin(1)
            hi = hi.reshape(B, k, *hi.shape[1:]).amax(1)
            if i in out:
                lo, hi = torch.maximum(lo, out[i][0]), torch.minimum(hi, out[i][1])
            out[i] = (lo, hi)
        return out

    def _row_cells(self, center, radius, parent) -> _RowCells:
        """The generator swept on 2^m cells of every box (``BoundOptions.row_cells`` = m), each cell inheriting its
        box's generator intervals (``parent``'s where given)."""
        cen, rad, k = self._cells(center, radius, self.options.row_cells)
        sub = {i: (lo.repeat_interleave(k, 0), hi.repeat_interleave(k, 0)) for i, (lo, hi) in parent.items()
               if i < self.anchor}  # fmt: skip
        sw = self._cell_sweep(cen, rad, sub)
        return _RowCells(sw.relax, sw.latent_forms, sw.latent_box, sw.absmax, k)

    def _cell_sweep(self, cen, rad, sub) -> _Sweep:
        """The generator's sweep on cells of the boxes: whole cells (no half-spaces: each holds on its cell, so on
        every cut of it), and none of their rows' directions recorded."""
        outer = self._dom
        self._dom = _Domain()
        try:
            return self._sweep(cen, rad, sub, None, None, stop=self.anchor)
        finally:
            self._dom = outer

    def _cells(self, center, radius, m: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Centres and radii of 2^m cells of every box (box b's are rows b·k … b·k + k − 1): the box halved along
        the m latent dimensions that move its image most (the image's change between the box's two faces, by
        forward passes), each cell's radius rounded up so that the cells cover the box."""
        B, d = center.shape
        m = min(m, d)
        k = 2**m
        with torch.no_grad():  # per box, the image's change between its two faces along each dimension
            step = torch.diag_embed(radius)  # (B, d, d)
            h = torch.cat([center[:, None] + step, center[:, None] - step], 1).reshape(2 * B * d, d)
            for op in self.ops[: self.anchor]:
                h = op.forward(h)
            h = h.reshape(B, 2, d, -1)
            dims = (h[:, 0] - h[:, 1]).abs().sum(2).topk(m, dim=1).indices  # (B, m)
        signs = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=m)), dtype=DT, device=center.device)
        idx = dims.repeat_interleave(k, 0)  # (B·k, m)
        cen, rad = center.repeat_interleave(k, 0), radius.repeat_interleave(k, 0)
        half = rad.gather(1, idx) / 2  # exact
        cen = cen.scatter_add(1, idx, signs.repeat(B, 1) * half)
        # the cell [c ± r/2] ± r/2 rounds c ± r/2 by at most (|c| + r)·2⁻⁵³: a radius that much wider (rounded up)
        # keeps every cell's true range inside what its sweep bounds, and the cells' union covers the box
        pad = (center.gather(1, dims).abs().repeat_interleave(k, 0) + 2 * half) * 2.0**-51
        rad = rad.scatter(1, idx, torch.nextafter(half + pad, torch.full_like(half, math.inf)))
        return cen, rad, k

    def _sweep(self, center, radius, parent, splits, settled, stop: int | None = None,
               cuts: Cuts | None = None) -> _Sweep:  # fmt: skip
        """The layer-by-layer pass of :meth:`margins`: every op's interval (and forward forms where they are used),
        the generator's nonlinearities refined by backward passes to the latent, the classifier's unstable
        neurons by backward passes to the image (or the latent), and each nonlinearity's relaxation recorded for
        the margins' backward pass."""
        opt = self.options
        # a ReLU split's child settled past the generator keeps its parent's (already cell-tightened) intervals there
        inherits = settled is not None and bool((settled >= self.anchor).all())
        if stop is None and opt.generator_cells > 0 and opt.mode == "crown" and self.anchor > 0 and not inherits:
            parent = self._cell_intervals(center, radius, parent)
        empty = torch.zeros(center.shape[0], dtype=torch.bool, device=center.device)  # split domains shown empty
        B = center.shape[0]
        lo, hi = center - radius, center + radius
        planes = self._dom.planes
        box_forms = None if opt.mode == "interval" else _BoxForms(center, radius, planes)
        # forward forms: (B, d, *shape) per layer, so only where they are used (a pixel box without forward
        # forms in the classifier would otherwise build and drop a 784 × 784 diagonal per box)
        forward = opt.mode == "forward" or (opt.mode == "crown" and (self.anchor > 0 or opt.classifier_forward))
        coef = torch.diag_embed(radius) if box_forms is not None and forward else None  # (B, d over s, d over x)
        forms: _Forms | None = None if coef is None else _Forms(coef, center, coef, center)
        anchor_forms, anchor_box = box_forms, (lo, hi)
        latent_forms, latent_box = box_forms, (lo, hi)
        relax = _Relaxations()
        absmax: dict[int, torch.Tensor] = {}  # op index → (B,) bound on |op's inputs·weights| terms (rounding guard)
        intervals: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        refined = refined_gen = 0
        hopeless: torch.Tensor | None = None  # (B,) boxes too wide to be worth refining (``refine_limit``)
        deferred: tuple[int, torch.Tensor] | None = None  # the last nonlinearity, refined after a first try
        cells: _RowCells | None = None  # the generator on cells of each box (``row_cells``)
        for i, op in enumerate(self.ops[:stop]):
            in_classifier = i >= self.anchor
            if i == self.anchor:
                anchor_forms = box_forms if i == 0 else None if forms is None else replace(forms, planes=planes)
                anchor_box = (lo, hi)
                absmax["anchor"] = torch.maximum(lo.abs(), hi.abs()).flatten(1).amax(1)
                if stop is None and opt.row_cells > 0 and opt.mode == "crown" and self._to_latent:
                    cells = self._row_cells(center, radius, intervals)
            size = torch.maximum(lo.abs(), hi.abs())  # sound: |x| ≤ size on the box
            if op.linear:
                # |W||x| + |b| bounds every term this layer sums: GUARD times it pays for all its rounding
                terms = _abs_terms(op, size)
                reach = terms[0] + terms[1]
                absmax[i] = reach.flatten(1).amax(1)
                if opt.mode == "crown":  # per neuron, for float32 rows' guards (backward passes only)
                    absmax["reach", i] = reach_maps(op, size, terms)
                mid, rad = (lo + hi) / 2, (hi - lo) / 2
                r = op.apply(rad, "abs", bias=False)
                m = op.apply(mid)
                lo, hi = m - r - GUARD * reach, m + r + GUARD * reach
                if forms is not None:
                    forms = self._forward_linear(op, forms)
            else:
                absmax[i] = size.flatten(1).amax(1)
                # boxes that inherit nothing here (whole boxes: a batch's roots have (−inf, inf) from their parent)
                whole = None
                if parent is not None and i in parent:
                    if i in self._alpha_map_ops:
                        whole = torch.isinf(parent[i][0]).flatten(1).all(1)
                    lo, hi = torch.maximum(lo, parent[i][0]), torch.minimum(hi, parent[i][1])
                if i in self.facts:
                    lo, hi = torch.maximum(lo, self.facts[i][0]), torch.minimum(hi, self.facts[i][1])
                if splits is not None and i in splits:  # the box's domain: split inputs ≥ 0 (+1) or ≤ 0 (−1)
                    lo = torch.where(splits[i] > 0, lo.clamp(min=0), lo)
                    hi = torch.where(splits[i] < 0, hi.clamp(max=0), hi)
                if (not in_classifier and opt.mode == "crown" and opt.generator_backward and forms is not None
                        and any(not o.linear for o in self.ops[:i])):  # fmt: skip
                    lo, hi, forms, n = self._refine_generator(i, lo, hi, forms, relax, latent_forms, latent_box, absmax)
                    refined_gen += n
                # behind linear layers alone the image's forms give what a pass to the image would; a pass on to
                # the latent is tighter (the pixels' coefficients cancel at the generator's neurons)
                if (in_classifier and opt.mode == "crown" and opt.refine and i > self.anchor
                        and (self._to_latent or any(not o.linear for o in self.ops[self.anchor : i]))):  # fmt: skip
                    if hopeless is None and isinstance(op, Activation):
                        # judged on forward-form bounds only: plain intervals (a pixel box, no forms) leave nearly
                        # every neuron of a second layer unstable even where refinement settles most of them
                        # (mnist_fc 256×4, ε = 0.05: 235 of 256 by intervals, 86 refined; the root bound −1,095
                        # without refinement, −3.2 with it)
                        share = op.unstable(lo, hi).reshape(B, -1).double().mean(1)
                        hopeless = (share > opt.refine_limit) & (forms is not None)
                    skip = hopeless if settled is None or hopeless is None else hopeless | (settled >= i)
                    if opt.lazy_last and i == self.last_nonlinear and isinstance(op, Activation):
                        deferred = (i, skip)
                    else:
                        *target, deeper = self._refine_passes(anchor_forms, anchor_box, latent_forms, latent_box,
                                                              cells)  # fmt: skip
                        lo, hi, n, forms = self._refine(i, lo, hi, relax, *target, absmax, skip, forms,
                                                        None if settled is None else settled >= 0,
                                                        None if cuts is None else cuts.only_ops(range(i)),
                                                        deeper, whole)  # fmt: skip
                        refined += n
                        if i in self.facts:  # a refined bound looser than a fact: the fact stands
                            lo, hi = torch.maximum(lo, self.facts[i][0]), torch.minimum(hi, self.facts[i][1])
                if bool((lo > hi).any()):
                    if splits is None and planes is None:
                        raise GenrobustError(f"internal: empty interval at layer {i} ({op!r}): NaN or inconsistent "
                                             "bounds")  # fmt: skip
                    # sound bounds of a split (or cut) domain that contradict each other: no latent of the box is in it
                    empty |= (lo > hi).flatten(1).any(1)
                    hi = torch.maximum(hi, lo)
                intervals[i] = (lo, hi)
                if isinstance(op, Activation):
                    rel = op.relax(lo, hi, ratio=self.options.lower_ratio)
                    relax.set_activation(i, torch.stack(rel, 1), lo, hi)
                    if forms is not None:
                        forms = self._forward_activation(rel, forms)
                    lo, hi = op.interval(lo, hi)
                else:  # a selection (MaxPool): its plan of which input bounds each output
                    plan = op.plan(lo, hi)
                    relax.plans[i] = plan
                    if forms is not None:
                        forms = _Forms(*op.forward_forms(plan, forms.lc, forms.l0, forms.uc, forms.u0))
                    lo, hi = op.interval(lo, hi)
            if forms is not None:
                fl, fu = forms.concrete(planes)
                slack = GUARD * forms.magnitude()  # the d-term sums of the concretisation
                lo, hi = torch.maximum(lo, fl - slack), torch.minimum(hi, fu + slack)
                if in_classifier and opt.mode == "crown" and not opt.classifier_forward and i + 1 < len(self.ops):
                    forms = None
            if not torch.isfinite(lo).all() or not torch.isfinite(hi).all():
                raise GenrobustError(f"bounds became NaN or infinite at layer {i} ({op!r})")
        return _Sweep(lo, hi, forms, anchor_forms, anchor_box, latent_forms, latent_box, relax, absmax, intervals,
                      refined, refined_gen, deferred, empty, cells)  # fmt: skip

    def _crown_margins(self, sw: _Sweep, spec, alpha_start, splits, settled, steps, want_branch, offset, groups,
                       beta_start, cuts=None, gamma_start=None, tune_above=None):  # fmt: skip
        """The margins' backward pass (CROWN) through the classifier and, where ``margins_to_latent`` says, the
        generator; then the last nonlinearity refined for the boxes still open when it was deferred
        (``lazy_last``), the ReLU branching choice, and α/β optimisation. Returns (lower, coef, alphas, betas,
        branch, gammas)."""
        opt = self.options
        (B, M, K), d = spec.shape, self.in_dim
        relax, absmax, intervals = sw.relax, sw.absmax, sw.intervals
        anchor_forms, anchor_box = sw.anchor_forms, sw.anchor_box
        latent_forms, latent_box = sw.latent_forms, sw.latent_box
        alphas: dict[int, torch.Tensor] | None = None
        betas: dict[int, torch.Tensor] | None = None
        gammas: torch.Tensor | None = None
        branch = None
        rows = Rows(spec.reshape(B * M, K), torch.arange(B, device=spec.device).repeat_interleave(M))
        if opt.margins_to_latent and any(not o.linear for o in self.ops[: self.anchor]):
            forms_at, box_at, stop = latent_forms, latent_box, 0
        else:
            forms_at, box_at, stop = anchor_forms, anchor_box, self.anchor
        scores: dict[int, torch.Tensor] | None = {} if want_branch else None
        val, g = self._backward(len(self.ops) - 1, rows, relax, forms_at, box_at, absmax, stop=stop, record=scores)
        lower, coef = val.reshape(B, M), g.reshape(B, M, d)
        if sw.deferred is not None:  # refine the last nonlinearity for the boxes not yet certified, and retry
            k, hopeless = sw.deferred
            skip = hopeless | (refutation(self._offset(lower, offset), groups)[0] > 0)
            if not bool(skip.all()):
                *target, deeper = self._refine_passes(anchor_forms, anchor_box, latent_forms, latent_box, sw.cells)
                lo_k, hi_k, n, _ = self._refine(k, *intervals[k], relax, *target, absmax, skip, None,
                                                None if settled is None else settled >= 0, deeper=deeper)  # fmt: skip
                sw.refined += n
                intervals[k] = (lo_k, hi_k)
                lines = self.ops[k].relax(lo_k, hi_k, ratio=self.options.lower_ratio)
                relax.set_activation(k, torch.stack(lines, 1), lo_k, hi_k)
                # later layers keep their absmax from the wider intervals: still bounds, so the guard holds
                val, g = self._backward(len(self.ops) - 1, rows, relax, forms_at, box_at, absmax, stop=stop,
                                        record=scores)  # fmt: skip
                better = val.reshape(B, M) > lower  # both are sound lower bounds: keep the larger
                lower = torch.where(better, val.reshape(B, M), lower)
                coef = torch.where(better.unsqueeze(2), g.reshape(B, M, d), coef)
        if sw.cells is not None and stop == 0:  # the boxes still open: their margins once more per cell
            todo = torch.nonzero(refutation(self._offset(lower, offset), groups)[0] <= 0).flatten()
            if len(todo):
                pick = (todo[:, None] * M + torch.arange(M, device=todo.device)).reshape(-1)
                _, _, (went, bias, err) = self._backward(len(self.ops) - 1, _take_rows(rows, pick), relax,
                                                         anchor_forms, anchor_box, absmax, keep=True)  # fmt: skip
                val_c = self._cell_rows(went, (bias, err), sw.cells).reshape(len(todo), M)
                lower[todo] = torch.maximum(lower[todo], val_c)
        branch = None if scores is None else self._branch_choice(scores, self._offset(lower, offset),
                                                                 int(want_branch), groups)  # fmt: skip
        if tune_above is not None:  # α/β only for the near misses
            near = refutation(self._offset(lower, offset), groups)[0] >= tune_above.to(lower)
            given = torch.full_like(near, opt.alpha_steps, dtype=torch.long) if steps is None else steps
            steps = torch.where(near, given, 0)
        if opt.alpha_steps if steps is None else bool((steps > 0).any()):
            lower, coef, alphas, betas, gammas = self._optimise_alpha(
                rows, relax, forms_at, box_at, absmax, stop, lower, coef, alpha_start, splits, steps, offset, groups,
                beta_start, cuts, gamma_start,
            )  # fmt: skip
        return lower, coef, alphas, betas, branch, gammas

    @staticmethod
    def _offset(lower: torch.Tensor, offset: torch.Tensor | None) -> torch.Tensor:
        return lower if offset is None else lower + offset.to(lower)

    def _branch_choice(self, scores: dict[int, torch.Tensor], lower: torch.Tensor, count: int, groups=None):
        """Per box, the ``count`` recorded neurons with the largest scores on the box's worst margin (the worst
        disjunct's best row, :func:`refutation`), best first (see :attr:`MarginBounds.branch`; op −1 and score 0
        where fewer have a positive score)."""
        B, M = lower.shape
        dev = lower.device
        worst = refutation(lower, groups)[1]
        ops, flat = [], []
        for k, sc in scores.items():
            val = sc.reshape(B, M, -1)[torch.arange(B, device=dev), worst]
            flat.append(val)
            ops.append(torch.full((val.shape[1],), k, dtype=torch.long, device=dev))
        if not flat:
            none = torch.full((B, count), -1, dtype=torch.long, device=dev)
            return none, torch.zeros_like(none), torch.zeros(B, count, dtype=DT, device=dev)
        val = torch.cat(flat, 1)
        owner = torch.cat(ops)
        first = torch.cumsum(torch.tensor([0] + [f.shape[1] for f in flat[:-1]], device=dev), 0)
        start = torch.repeat_interleave(first, torch.tensor([f.shape[1] for f in flat], device=dev))
        best, idx = val.topk(min(count, val.shape[1]), 1)
        op = torch.where(best > 0, owner[idx], -1)
        neuron = idx - start[idx]
        if best.shape[1] < count:  # fewer neurons than candidates asked for
            pad = count - best.shape[1]
            op = torch.cat([op, op.new_full((B, pad), -1)], 1)
            neuron = torch.cat([neuron, neuron.new_zeros(B, pad)], 1)
            best = torch.cat([best, best.new_zeros(B, pad)], 1)
        return op, neuron, torch.where(op >= 0, best, 0.0)

    def input_rows(self, center, radius, intervals, k: int, A: torch.Tensor, ball: torch.Tensor) -> torch.Tensor:
        """Lower bounds (R,) of the rows ``A`` (R, *input shape of op ``k``) over op ``k``'s input, each over box
        ``ball[r]`` of ``center`` ± ``radius`` with its ``intervals`` (a :class:`MarginBounds`' own), which are kept
        without refinement: one backward pass per row, e.g. the octagon bounds of neuron pairs
        (:mod:`.multineuron`)."""
        if not 0 < k < len(self.ops) or self.ops[k].linear:
            raise GenrobustError(f"input_rows bounds the input of a nonlinearity, op {k} is not one")
        center, radius = center.to(DT), radius.to(DT)
        settled = torch.full((center.shape[0],), k, device=center.device)
        sw = self._sweep(center, radius, intervals, None, settled, stop=k)
        forms, box, stop = self._refine_target(sw.anchor_forms, sw.anchor_box, sw.latent_forms, sw.latent_box)
        if k <= self.anchor:
            forms, box, stop = sw.latent_forms, sw.latent_box, 0
        val, _ = self._backward(k - 1, Rows(A.to(DT), ball), sw.relax, forms, box, sw.absmax, stop=stop)
        return val

    def split_bounds(
        self, center, radius, spec, intervals, op: torch.Tensor, neuron: torch.Tensor,
        offset: torch.Tensor | None = None, groups: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """What splitting each candidate ReLU would give, cheaply (FSB's estimate): for boxes (B, d) with their
        ``intervals`` (a :class:`MarginBounds`' own) and candidates ``op``, ``neuron`` (B, k), the margins' lower
        bounds (B, k, 2, M) of the two children (input ≥ 0, ≤ 0), each on its parent's intervals with that one
        neuron clamped, no refinement and no α/β: a plain backward pass per child. Sound bounds of the
        children, looser than what branch and bound then computes for the chosen one; candidates with op −1
        get −inf."""
        B, k = op.shape
        dev = center.device
        n = 2 * k
        own = torch.arange(B, device=dev).repeat_interleave(n)
        cand_op = op.repeat_interleave(2, 1).reshape(-1)
        cand_neuron = neuron.repeat_interleave(2, 1).reshape(-1)
        side = torch.tensor([1, -1], dtype=torch.int8, device=dev).repeat(B * k)
        parent = {i: (lo[own], hi[own]) for i, (lo, hi) in intervals.items()}
        splits = {}
        for i in torch.unique(cand_op[cand_op >= 0]).tolist():  # each child's one split, as a split domain
            rows = torch.nonzero(cand_op == i).flatten()
            mark = torch.zeros(B * n, math.prod(self.ops[i].in_shape), dtype=torch.int8, device=dev)
            mark[rows, cand_neuron[rows]] = side[rows]
            splits[i] = mark.reshape(B * n, *self.ops[i].in_shape)
        settled = torch.full((B * n,), len(self.ops), device=dev)
        none = torch.zeros(B * n, dtype=torch.long, device=dev)
        mb = self.margins(center[own], radius[own], spec[own], parent=parent, splits=splits or None, settled=settled,
                          steps=none, offset=None if offset is None else offset[own], groups=groups)  # fmt: skip
        lower = mb.lower.reshape(B, k, 2, -1)
        return torch.where((op >= 0)[:, :, None, None], lower, -math.inf)

    # ----------------------------------------------------------------------------------------- α-CROWN
    def _optimise_alpha(self, rows: Rows, relax, forms_at, box_at, absmax, stop, lower, coef, start, splits=None,
                        steps=None, offset=None, groups=None, beta_start=None, cuts=None,
                        gamma_start=None):  # fmt: skip
        """Tighten the margins' bounds of the boxes not yet certified by optimising the lower lines (α), one set
        per margin (see :meth:`_tune_rows`), ``steps`` per box (default ``alpha_steps``; the most any box asks
        for). Returns the new (lower, coef), the α per box (B, M, *shape), the β per split nonlinearity
        (B, M, *input shape) and the cuts' γ (B, M, C) for the children (NaN where not optimised;
        ``beta_start`` and ``gamma_start`` are a parent's)."""
        B, M = lower.shape
        j = len(self.ops) - 1
        out_alpha = {k: torch.full((B, M, *self.ops[k].out_shape), math.nan, dtype=torch.float32,
                                   device=lower.device) for k in self._tunable(stop, j)}  # fmt: skip
        out_beta = {k: torch.full((B, M, *self.ops[k].in_shape), math.nan, dtype=torch.float32, device=lower.device)
                    for k in (splits or {}) if stop <= k <= j}  # fmt: skip
        if steps is None:
            steps = torch.full((B,), self.options.alpha_steps, dtype=torch.long, device=lower.device)
        shifted = self._offset(lower, offset)
        todo = torch.nonzero((refutation(shifted, groups)[0] <= 0) & (steps > 0)).flatten()
        with_cuts = cuts is not None and len(cuts) > 0
        out_gamma = (torch.full((B, M, len(cuts)), math.nan, dtype=torch.float32, device=lower.device)
                     if with_cuts else None)  # fmt: skip
        if not (out_alpha or out_beta or with_cuts) or not len(todo):
            return lower, coef, out_alpha, out_beta, out_gamma
        # the rows of those boxes whose margin is still open (a margin proved already needs no tuning)
        sel = torch.nonzero(torch.isin(rows.ball, todo) & open_rows(shifted, groups).reshape(-1)).flatten()
        init = None if start is None else {k: a.reshape(-1, *a.shape[2:])[sel] for k, a in start.items()}
        init_beta = None if beta_start is None else {k: b.reshape(-1, *b.shape[2:])[sel] for k, b in
                                                     beta_start.items()}  # fmt: skip
        init_gamma = None if gamma_start is None else gamma_start.reshape(B * M, -1)[sel]
        lower, coef = lower.clone().reshape(-1), coef.clone().reshape(B * M, -1)
        goal = torch.zeros_like(lower) if offset is None else -offset.to(lower)  # a margin proved: raw > −offset
        lower[sel], coef[sel], tuned, tuned_beta, tuned_gamma = self._tune_rows(
            j, rows.A[sel], rows.ball[sel], relax, forms_at, box_at, absmax, stop, lower[sel], coef[sel], init,
            int(steps[todo].max()), splits, goal.reshape(-1)[sel], init_beta,
            cuts.take(rows.ball[sel]) if with_cuts else None, init_gamma,
        )  # fmt: skip
        for k, a in tuned.items():
            out_alpha[k].reshape(-1, *a.shape[1:])[sel] = a
        for k, b in tuned_beta.items():
            out_beta[k].reshape(-1, *b.shape[1:])[sel] = b
        if out_gamma is not None and tuned_gamma is not None:
            out_gamma.reshape(B * M, -1)[sel] = tuned_gamma
        return lower.reshape(B, M), coef.reshape(B, M, -1), out_alpha, out_beta, out_gamma

    def _patch_windows(self, j: int, A: torch.Tensor, ball: torch.Tensor, off: torch.Tensor, stop: int,
                       ops: list[int]) -> dict[int, tuple[torch.Tensor, int, int]]:  # fmt: skip
        """Where patch rows ``A`` (R, C, ph, pw) at ``off`` over op ``j``'s output sit when they reach each of
        ``ops`` on their way back to ``stop`` while still patches: op → (offsets (R, 2), ph, pw). The geometry does
        not depend on the rows' values, so zero rows are carried through the linear ops once."""
        rows, out = Rows(torch.zeros_like(A[:, :, :1, :1]).expand(-1, -1, *A.shape[2:]), ball, off), {}
        for k in range(j, stop - 1, -1):
            op = self.ops[k]
            if rows.off is None or rows.A.dim() != 4 or not op.patches:
                break
            if op.linear:
                rows, _ = op.backward(rows)
            elif isinstance(op, Activation):
                if k in ops:
                    out[k] = (rows.off, *rows.A.shape[2:])
            else:
                break
        return out

    def _tunable(self, stop: int, j: int) -> list[int]:
        return [k for k in range(stop, j + 1) if isinstance(self.ops[k], Activation) and self.ops[k].tunable]

    def _tune_rows(self, j, A, ball, relax, forms_at, box_at, absmax, stop, best, best_g, init, steps, splits=None,
                   goal: torch.Tensor | None = None, init_beta: dict[int, torch.Tensor] | None = None,
                   cuts: Cuts | None = None, init_gamma: torch.Tensor | None = None,
                   off: torch.Tensor | None = None, tune_from: int | None = None):  # fmt: skip
        """α-CROWN for rows ``A`` (R, *shape of op j's output) of boxes ``ball``: every tunable lower line on the
        rows' path to ``stop`` becomes a parameter *per row*, optimised by ``steps`` steps of projected Adam on
        the rows' bounds. Each row becomes its own "box" (every per-box tensor indexed by its box), so the
        guarded :meth:`_backward` runs unchanged on per-row lines; the steps run in float32 (guarded like the
        refinement's passes) and every step's value is a sound bound for its α, so the best per row is kept
        (starting from ``best``, ``best_g``): soundness never depends on convergence. Rows go in chunks whose
        per-row lines stay under 256 MB. Returns the best values, their coefficients, and α and β per row (β per
        split nonlinearity, NaN where a row's chunk had no split there).

        ``splits`` (β-CROWN): each split neuron's constraint s·x ≥ 0 on the rows' path enters with a multiplier
        β ≥ 0 per row, optimised with α: the rows bound f − Σ β·s·x, which on the split domain is ≤ f (any β ≥ 0:
        ``init_beta``, a parent's, is only a start).
        ``goal`` (R,): a row whose bound exceeds its goal (a margin proved) leaves the optimisation; the rest
        go on in a smaller batch (in branch and bound two thirds of the row-steps were spent on rows already
        proved). ``cuts`` (a mask row per row of ``A``): each cut enters with a multiplier γ ≥ 0 per row, from 0
        (or ``init_gamma`` (R, C), a parent's, where not NaN), optimised with α and β (:mod:`.cuts`); the best
        row's γ is returned too (None without cuts). ``off`` (R, 2): ``A`` are patch rows (R, C, ph, pw) at these
        positions of op ``j``'s output (a convolution's neurons); their slopes are tuned in each row's window only
        (:meth:`_patch_windows`), a fifteenth of the time of whole-map rows on the built-in classifier's last
        convolution. ``tune_from``: only the ops from this index on are tuned (the others keep their lines)."""
        tunable = self._tunable(stop, j)
        acts = [k for k in range(stop, j + 1) if not self.ops[k].linear]
        R = len(A)
        # patch rows (a convolution's neurons) see only their receptive field: the tuned ops they cross as patches
        # get their lines, slopes and intervals as each row's window there, not as whole maps per row
        windows = {} if off is None else self._patch_windows(j, A, ball, off, stop, tunable)
        if tune_from is not None:
            tunable = [k for k in tunable if k >= tune_from]
        out_alpha = {k: torch.full((R, *(self.ops[k].out_shape if k not in windows else
                                         (self.ops[k].out_shape[0], *windows[k][1:]))),
                                   math.nan, dtype=torch.float32, device=A.device) for k in tunable}  # fmt: skip
        out_beta = {k: torch.full((R, *self.ops[k].in_shape), math.nan, dtype=torch.float32, device=A.device)
                    for k in (splits or {}) if stop <= k <= j}  # fmt: skip
        out_gamma = (None if cuts is None else
                     torch.full((R, len(cuts)), math.nan, dtype=torch.float32, device=A.device))  # fmt: skip
        seen = {k: (self.ops[k].out_shape[0] * windows[k][1] * windows[k][2] if k in windows
                    else math.prod(self.ops[k].out_shape)) for k in acts}  # fmt: skip
        per_row = 8 * 4 * sum(seen.values()) * 3  # lines, α and Adam's moments
        chunk = max(1, (256 << 20) // max(1, per_row))
        best, best_g = best.clone(), best_g.clone()
        lr, (b1, b2), tiny = self.options.alpha_lr, (0.9, 0.999), 1e-8  # Adam's defaults
        per_width = self.options.beta_per_width

        def context(rows_idx: torch.Tensor):
            """Everything the backward pass needs for these rows (indices into ``A``), each row its own box."""
            b = ball[rows_idx]
            ctx = relax.rows(b, acts, tunable, {k: (w[0][rows_idx], w[1], w[2]) for k, w in windows.items()})
            forms = None if forms_at is None else forms_at.take(b)
            signs = {k: t[b].float() for k, t in (splits or {}).items() if stop <= k <= j and bool((t[b] != 0).any())}
            # the per-neuron maps stay per box (a copy per row would be large): ``ball`` says whose each row's is
            row_absmax = {key: v[b] for key, v in absmax.items() if not isinstance(key, tuple)}
            row_absmax.update({key: v for key, v in absmax.items() if isinstance(key, tuple)}, ball=b)
            return (ctx, row_absmax, forms, (box_at[0][b], box_at[1][b]),
                    Rows(A[rows_idx].float(), torch.arange(len(b), device=A.device),
                         None if off is None else off[rows_idx]), signs,
                    None if cuts is None else cuts.take(rows_idx))  # fmt: skip

        for first in range(0, R, chunk):
            part = torch.arange(first, min(R, first + chunk), device=A.device)
            ctx, ctx_absmax, ctx_forms, ctx_box, rows, signs, ctx_cuts = context(part)
            alpha: dict[int, torch.Tensor] = {}
            for k in tunable:
                start = self.ops[k].alpha_init(*ctx.pre[k], ratio=self.options.lower_ratio).float()
                if init is not None and k in init:  # a given start (a parent's α), where it has one
                    prior = init[k][part].to(start)
                    start = torch.where(torch.isnan(prior), start, prior)
                alpha[k] = start
            beta = {k: torch.zeros_like(t) for k, t in signs.items()}
            for k, t in beta.items():  # a given start (a parent's β), where it has one
                if init_beta is not None and k in init_beta:
                    prior = init_beta[k][part].to(t)
                    beta[k] = torch.where(torch.isnan(prior), t, prior.clamp(min=0))
            top, top_g = best[part].clone(), best_g[part].clone()
            top_alpha = {k: a.clone() for k, a in alpha.items()}
            top_beta = {k: t.clone() for k, t in beta.items()}
            if per_width:  # the parameter is β times the split neuron's interval width (``beta_per_width``)
                width = _widths(ctx, top_beta)
                beta = {k: t * width[k] for k, t in beta.items()}
            params = {**{("a", k): a for k, a in alpha.items()}, **{("b", k): t for k, t in beta.items()}}
            if ctx_cuts is not None and bool(ctx_cuts.mask.any()):
                start_g = torch.zeros(ctx_cuts.mask.shape, dtype=torch.float32, device=A.device)
                if init_gamma is not None:  # a parent's γ where it has one (only on cuts this row's box holds)
                    prior = init_gamma[part].to(start_g)
                    start_g = torch.where(torch.isnan(prior), start_g, prior.clamp(min=0)) * ctx_cuts.mask
                params["g", -1] = start_g
            top_gamma = params["g", -1].clone() if ("g", -1) in params else None
            moments = {key: (torch.zeros_like(p), torch.zeros_like(p)) for key, p in params.items()}
            pair_pool = ctx_cuts is not None and bool(ctx_cuts.pairs)  # the multipliers' smaller step (``GAMMA_LR``)
            live = torch.arange(len(part), device=A.device)  # rows of this chunk still optimised
            for t in range(1, (steps if params else 0) + 1):
                leaves = {key: p.requires_grad_(True) for key, p in params.items()}
                step = ctx.with_lines({k: torch.stack(self.ops[k].relax(*ctx.pre[k], leaves["a", k].double()), 1)
                                       for k in tunable})  # fmt: skip
                scale = _widths(ctx, top_beta, inverse=True) if per_width else dict.fromkeys(top_beta, 1.0)
                with torch.enable_grad():
                    terms = {k: leaves["b", k] * signs[k] * scale[k] for k in signs}
                    cut_terms = None if ("g", -1) not in leaves else ctx_cuts.terms(leaves["g", -1])
                    val, g = self._backward(j, rows, step, ctx_forms, ctx_box, ctx_absmax, stop=stop, beta=terms,
                                            cuts=cut_terms)  # fmt: skip
                    grads = torch.autograd.grad(val.sum(), list(leaves.values()), allow_unused=True)
                with torch.no_grad():
                    better = val > top[live]
                    if bool(better.any()):
                        at = live[better]
                        top[at], top_g[at] = val[better], g[better]
                        for k in tunable:
                            top_alpha[k][at] = params["a", k][better]
                        for k in top_beta:
                            top_beta[k][at] = (
                                params["b", k][better] * scale[k][better] if per_width else params["b", k][better]
                            )
                        if top_gamma is not None:
                            top_gamma[at] = params["g", -1][better]
                    for (key, p), grad in zip(list(params.items()), grads, strict=True):
                        m, v = moments[key]
                        if grad is not None:  # ascent on the bound
                            m.mul_(b1).add_(grad, alpha=1 - b1)
                            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                        step_ = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + tiny)
                        p = p.detach() + (lr * GAMMA_LR if key[0] == "g" and pair_pool else lr) * step_
                        params[key] = p.clamp(0, 1) if key[0] == "a" else p.clamp(min=0)
                    if goal is None or t == steps:
                        continue
                    keep = top[live] <= goal[part][live]
                    if bool(keep.all()):
                        continue
                    if not bool(keep.any()):
                        break
                    live = live[keep]  # proved rows leave: every per-row tensor shrinks to the rest
                    ctx, ctx_absmax, ctx_forms, ctx_box, rows, signs, ctx_cuts = context(part[live])
                    params = {key: p[keep] for key, p in params.items()}
                    moments = {key: (m[keep], v[keep]) for key, (m, v) in moments.items()}
            best[part], best_g[part] = top, top_g
            for k, a in top_alpha.items():
                out_alpha[k][part] = a
            for k, t in top_beta.items():
                out_beta[k][part] = t
            if top_gamma is not None and out_gamma is not None:
                out_gamma[part] = top_gamma
        return best, best_g, out_alpha, out_beta, out_gamma

    # --------------------------------------------------------------------------------- forward mode
    @staticmethod
    def _forward_linear(op: Op, f: _Forms) -> _Forms:
        """The forms pushed through a linear op; its rounding (≤ γ_n·|W|·terms, each term's effect on the box
        at most its magnitude since |s| ≤ 1) is paid by moving the constants outwards."""
        err = GUARD * op.apply(f.magnitude(), "abs")
        if f.same:
            c = _flat_apply(op, f.lc, "all")
            c0 = op.apply(f.l0)
            return _Forms(c, c0, c, c0).widened(err)
        # W⁺·l + W⁻·u = W·m − |W|·r with m = (l + u)/2, r = (u − l)/2 (any signs): two passes instead of four.
        # Rounding m and r moves each term by ≤ 2⁻⁵³·(|l| + |u|), far inside the guard above.
        m, r = _flat_apply(op, (f.lc + f.uc) / 2, "all"), _flat_apply(op, (f.uc - f.lc) / 2, "abs")
        m0, r0 = op.apply((f.l0 + f.u0) / 2), op.apply((f.u0 - f.l0) / 2, "abs", bias=False)
        return _Forms(m - r, m0 - r0, m + r, m0 + r0).widened(err)

    @staticmethod
    def _forward_activation(rel, f: _Forms) -> _Forms:
        al, bl, au, bu = rel  # slopes in [0, 1]: lower bound · al stays a lower bound
        err = GUARD * (f.magnitude() + bl.abs() + bu.abs())  # two roundings per term
        out = _Forms(f.lc * al.unsqueeze(1), f.l0 * al + bl, f.uc * au.unsqueeze(1), f.u0 * au + bu)
        return out.widened(err)

    # -------------------------------------------------------------------------------- backward mode
    def _refine_generator(self, i, lo, hi, forms: _Forms, relax, latent_forms, latent_box, absmax):
        """Backward (CROWN) bounds, to the latent box, of the inputs of the generator's nonlinearity ``i``.

        Forward forms lose each earlier relaxation's slack through |W| at every layer; a backward pass pays it
        only once, weighted by the signed coefficients. Each refined neuron also gets the backward pass's lower
        and upper *functions* as its affine forms wherever they are tighter than the forward ones, so the
        generator's pixels reach the classifier as tight affine functions of the latent.
        """
        op = self.ops[i]
        j = i - 1
        shape = self.ops[j].out_shape
        idx = torch.nonzero(op.unstable(lo, hi))
        if len(idx) == 0:
            return lo, hi, forms, 0
        lo, hi = lo.clone(), hi.clone()
        forms = _Forms(forms.lc.clone(), forms.l0.clone(), forms.uc.clone(), forms.u0.clone())
        chunk = max(1, min(self.options.row_chunk, self.options.chunk_bytes // (8 * math.prod(shape))) // 2)
        for start in range(0, len(idx), chunk):
            part = idx[start : start + chunk]
            n = len(part)
            A = torch.zeros(2 * n, *shape, dtype=DT, device=lo.device)
            sign = torch.tensor([1.0, -1.0], dtype=DT, device=lo.device).repeat(n)  # lower, upper row per neuron
            A[(torch.arange(2 * n, device=lo.device), *part[:, 1:].repeat_interleave(2, 0).T)] = sign
            rows = Rows(A, part[:, 0].repeat_interleave(2), unit=True)  # sorted by ball, as activation steps like
            val, g = self._backward(j, rows, relax, latent_forms, latent_box, absmax, stop=0)
            key = tuple(part.T)
            _keep_tighter(forms, key, val, g, planes=self._dom.planes)
            lo[key] = torch.maximum(lo[key], val[0::2])
            hi[key] = torch.minimum(hi[key], -val[1::2])
        return lo, hi, forms, len(idx)

    def _refine_target(self, anchor_forms, anchor_box, latent_forms, latent_box):
        """Where the classifier's refinement passes end: at the image (its pixels' affine forms substituted), or
        with ``refine_to_latent`` on through the generator to the latent box (tighter, costlier: see there)."""
        if self._to_latent:
            return latent_forms, latent_box, 0
        return anchor_forms, anchor_box, self.anchor

    @property
    def _to_latent(self) -> bool:
        return self.options.refine_to_latent and any(not o.linear for o in self.ops[: self.anchor])

    def _refine_passes(self, anchor_forms, anchor_box, latent_forms, latent_box, cells: _RowCells | None = None):
        """The refinement's arguments: its passes end at the image, and with ``refine_to_latent`` the rows that
        leave their neuron unstable there go on to the latent (``deeper``: the latent's forms and box, and the
        generator's cells if any, :meth:`_refine_rows`)."""
        return anchor_forms, anchor_box, self.anchor, ((latent_forms, latent_box, cells) if self._to_latent else None)

    def _refine(self, i, lo, hi, relax, anchor_forms, anchor_box, stop, absmax, hopeless, forms: _Forms | None = None,
                plain: torch.Tensor | None = None, cuts: Cuts | None = None, deeper=None,
                whole: torch.Tensor | None = None):  # fmt: skip
        """Tighten the unstable inputs of nonlinearity ``i`` by backward passes from each such neuron to the image.

        (A cascade with a shallow pass first, back through two linear layers, settled two thirds of the
        convolutions' unstable neurons while the generator's pixels had loose forward forms; with backward forms
        it settles almost none, and dropping it made a box 20% faster at equal bounds, so every pass is full.)
        """
        op = self.ops[i]
        if not isinstance(op, Activation) or hopeless is None:
            return lo, hi, 0, forms
        lo, hi = lo.clone(), hi.clone()
        idx = torch.nonzero(op.unstable(lo, hi) & ~hopeless.reshape(-1, *([1] * (lo.ndim - 1))))
        if len(idx):
            if forms is not None:
                forms = _Forms(forms.lc.clone(), forms.l0.clone(), forms.uc.clone(), forms.u0.clone())
            args = (relax, anchor_forms, anchor_box, stop, absmax, forms)
            if op.upper_first:
                # a ReLU whose input is ≤ 0 is exact whatever the lower bound: upper bounds first, then lower
                # bounds only where the upper one stays > 0: at ε = 0.03 (4 boxes of class 8) 34% of the fourth
                # convolution's neurons need a lower row, margins identical, 8 boxes 16.4 → 12.6 s
                # (to the latent: the upper rows wait at the image until the lower rows have settled what they
                # can, and only those of neurons still unstable then go on)
                held: list | None = [] if deeper is not None else None
                self._refine_rows(i - 1, idx, lo, hi, *args, signs=(-1.0,), deeper=deeper, held=held)
                idx_lower = idx[hi[tuple(idx.T)] > 0]
                if len(idx_lower):
                    self._refine_rows(i - 1, idx_lower, lo, hi, *args, signs=(1.0,), deeper=deeper)
                for key, rows, bias, err in held or ():
                    self._go_deeper(i - 1, key, rows, bias, err, lo, hi, relax, deeper, absmax, forms, (-1.0,))
            else:
                self._refine_rows(i - 1, idx, lo, hi, *args, deeper=deeper)
            skip = hopeless if plain is None else hopeless | plain  # ``plain`` boxes: their parent's α stands
            at = (anchor_forms, anchor_box, stop) if deeper is None else (deeper[0], deeper[1], 0)
            if self.alpha_intermediate and len(op.in_shape) == 1:  # the dense head: α-CROWN on its inputs
                self._alpha_refine(i, lo, hi, relax, *at, absmax, skip, cuts)
            if i in self._alpha_map_ops:  # the last convolutions, on whole boxes only (children inherit)
                skip = skip if whole is None else skip | ~whole
                self._alpha_refine(
                    i, lo, hi, relax, *at, absmax, skip, steps=self.options.alpha_maps, tune_from=self.anchor
                )
        return lo, hi, len(idx), forms

    def _alpha_refine(self, i, lo, hi, relax, forms_at, box_at, stop, absmax, hopeless, cuts: Cuts | None = None,
                      steps: int | None = None, tune_from: int | None = None) -> None:  # fmt: skip
        """Tighten, in place, the still unstable inputs of nonlinearity ``i`` by α-CROWN: a lower and an upper
        row per neuron, each with its own slopes on its path (:meth:`_tune_rows`), started from the plain
        bounds already in ``lo``/``hi``; with ``cuts`` (on ops before ``i`` only, a mask row per box) each row
        carries them with its own multipliers. ``steps`` (default ``alpha_intermediate``); ``tune_from``: the first
        op whose slopes are tuned (:meth:`_tune_rows`). A convolution's neurons get patch rows."""
        op = self.ops[i]
        idx = torch.nonzero(op.unstable(lo, hi) & ~hopeless.reshape(-1, *([1] * (lo.ndim - 1))))
        if not len(idx):
            return
        shape = self.ops[i - 1].out_shape
        n = len(idx)
        pairs = idx.repeat_interleave(2, 0)
        sign = torch.tensor([1.0, -1.0], dtype=DT, device=lo.device).repeat(n)  # a lower and an upper row
        off = None
        if len(shape) == 3 and self.ops[i - 1].patches:  # a convolution's neurons: patch rows, as in the refinement
            A = torch.zeros(2 * n, shape[0], 1, 1, dtype=DT, device=lo.device)
            A[torch.arange(2 * n, device=lo.device), pairs[:, 1], 0, 0] = sign
            off = pairs[:, 2:4]
        else:
            A = torch.zeros(2 * n, *shape, dtype=DT, device=lo.device)
            A[(torch.arange(2 * n, device=lo.device), *pairs[:, 1:].T)] = sign
        key = tuple(idx.T)
        best = torch.stack([lo[key], -hi[key]], 1).reshape(-1)
        zero_g = torch.zeros(2 * n, self.in_dim, dtype=DT, device=lo.device)
        row_cuts = None if cuts is None or not len(cuts) else cuts.take(pairs[:, 0])
        val, _, _, _, _ = self._tune_rows(i - 1, A, pairs[:, 0], relax, forms_at, box_at, absmax, stop, best, zero_g,
                                          None, self.alpha_intermediate if steps is None else steps, cuts=row_cuts,
                                          off=off, tune_from=tune_from)  # fmt: skip
        lo[key] = torch.maximum(lo[key], val[0::2])
        hi[key] = torch.minimum(hi[key], -val[1::2])

    def _refine_rows(self, j, idx, lo, hi, relax, anchor_forms, anchor_box, stop, absmax, forms=None,
                     signs=(1.0, -1.0), deeper: tuple | None = None, held: list | None = None) -> None:  # fmt: skip
        """Backward passes for the neurons ``idx`` of op ``j``'s output: per neuron, a lower-bound row (sign +1)
        and/or an upper-bound row (sign −1), as ``signs`` says; ``lo``/``hi`` and ``forms`` are tightened in place.

        ``deeper`` (forms, box) of the latent: the rows of the neurons that their bound at ``stop`` leaves
        unstable go on from there through the generator to the latent (``refine_to_latent``), where the
        generator's neurons cancel the pixels' coefficients before their relaxations are paid. The rest stop:
        a stable neuron's relaxation is exact, so a tighter interval would change no bound. Each row is carried
        through the classifier once. ``held``: instead of going on at once, the rows of the neurons still open
        wait in this list, (neurons, rows, constants, guards) per chunk, for :meth:`_go_deeper` once other rows
        have tightened their neurons further."""
        if held is not None and len(signs) != 1:
            raise GenrobustError("internal: rows wait at the image one per neuron")
        shape = self.ops[j].out_shape
        patch = len(shape) == 3 and self.ops[j].patches
        # dense rows are as large as the largest map on their way back; patches stay small
        widest = max(math.prod(op.out_shape) for op in self.ops[self.anchor : j + 1]) if not patch else 2600
        k = len(signs)
        chunk = max(1, min(self.options.row_chunk, self.options.chunk_bytes // (8 * widest)) // k)
        dt = self.options.refine_dtype
        tables: dict = {}  # the relaxation lines' windows, shared by the chunks
        for start in range(0, len(idx), chunk):
            part = idx[start : start + chunk]
            n = len(part)
            # rows ordered by ball (each neuron's rows together): activation steps then take each ball's
            # relaxation as a broadcast view instead of gathering a copy per row
            ball = part[:, 0].repeat_interleave(k)
            sign = torch.tensor(signs, dtype=dt, device=lo.device).repeat(n)
            pairs = part.repeat_interleave(k, 0)
            if patch:
                A = torch.zeros(k * n, shape[0], 1, 1, dtype=dt, device=lo.device)
                A[torch.arange(k * n), pairs[:, 1], 0, 0] = sign
                rows = Rows(A, ball, pairs[:, 2:4])
            else:
                A = torch.zeros(k * n, *shape, dtype=dt, device=lo.device)
                A[(torch.arange(k * n), *pairs[:, 1:].T)] = sign
                rows = Rows(A, ball, unit=True)
            out = self._backward(j, rows, relax, anchor_forms, anchor_box, absmax, stop=stop, tables=tables,
                                 keep=deeper is not None)  # fmt: skip
            key = tuple(part.T)
            self._tighten(key, out[0], out[1], lo, hi, forms, signs)
            if deeper is None or stop == 0:
                continue
            went, bias, err = out[2]
            if held is not None:  # one row per neuron (``signs`` of one sign): the open neurons' rows wait
                sel = torch.nonzero(self.ops[j + 1].unstable(lo[key], hi[key])).flatten()
                if len(sel):
                    held.append((tuple(t[sel] for t in key), _take_rows(went, sel), bias[sel], err[sel]))
                continue
            self._go_deeper(j, key, went, bias, err, lo, hi, relax, deeper, absmax, forms, signs, tables)

    def _go_deeper(self, j, key, rows: Rows, bias, err, lo, hi, relax, deeper, absmax, forms, signs,
                   tables=None) -> None:  # fmt: skip
        """The refinement rows of the neurons ``key`` of op ``j``'s output (``len(signs)`` rows each), carried
        back to the image with their constants and guards, go on through the generator to the latent for the
        neurons still unstable; their bounds tighten ``lo``/``hi``/``forms`` in place."""
        k = len(signs)
        open_ = self.ops[j + 1].unstable(lo[key], hi[key]).repeat_interleave(k)
        if not bool(open_.any()):
            return
        sel = torch.nonzero(open_).flatten()
        rows, state = _take_rows(rows, sel), (bias[sel], err[sel])
        val, g = self._to_latent_rows(rows, state, relax, deeper[0], deeper[1], absmax, tables)
        full_val = torch.full((len(open_),), -math.inf, dtype=val.dtype, device=val.device)
        full_val[sel] = val
        full_g = torch.zeros(len(open_), g.shape[1], dtype=g.dtype, device=g.device)
        full_g[sel] = g
        self._tighten(key, full_val, full_g, lo, hi, forms, signs)
        cells = deeper[2]
        if cells is None:
            return
        # the neurons still open go on once per cell (their rows' intervals only: a cell's function holds on it alone)
        still = self.ops[j + 1].unstable(lo[key], hi[key]).repeat_interleave(k)[sel]
        if not bool(still.any()):
            return
        part = torch.nonzero(still).flatten()
        val_c = self._cell_rows(_take_rows(rows, part), (state[0][part], state[1][part]), cells)
        full_val = torch.full((len(open_),), -math.inf, dtype=val.dtype, device=val.device)
        full_val[sel[part]] = val_c
        self._tighten(key, full_val, torch.zeros_like(full_g), lo, hi, None, signs)

    def _to_latent_rows(self, rows: Rows, state, relax, latent_forms, latent_box, absmax, tables=None):
        """Rows at the image (with their constant and guard, ``state``) carried on through the generator (its dense
        layers folded where they can be) and minimised over the latent box: the guarded bounds and coefficients."""
        fold = self._folded(relax, latent_box, rows.A.dtype)
        if fold is None:
            return self._backward(self.anchor - 1, rows, relax, latent_forms, latent_box, absmax, stop=0, tables=tables,
                                  state=state)  # fmt: skip
        # through the generator's last layers as usual, then through its folded dense layers
        carried = self._backward(self.anchor - 1, rows, relax, latent_forms, latent_box, absmax, stop=fold.top + 1,
                                 tables=tables, state=state, carry_only=True)  # fmt: skip
        to_latent = fold.carry(*carried, absmax)
        return self._minimise(*to_latent, latent_forms, latent_box, absmax, stop=0)

    def _cell_rows(self, rows: Rows, state, cells: _RowCells) -> torch.Tensor:
        """Rows at the image (``state``: constants and guards) bounded over their box as the least of their bounds
        over its cells, each carried through the generator with that cell's relaxation (``row_cells``)."""
        k, R = cells.k, len(rows.A)
        at = torch.arange(k, device=rows.A.device)
        each = Rows(rows.A.repeat_interleave(k, 0), (rows.ball[:, None] * k + at).reshape(-1),
                    None if rows.off is None else rows.off.repeat_interleave(k, 0))  # fmt: skip
        val, _ = self._to_latent_rows(each, (state[0].repeat_interleave(k), state[1].repeat_interleave(k)),
                                      cells.relax, cells.latent_forms, cells.latent_box, cells.absmax)  # fmt: skip
        return val.reshape(R, k).amin(1)

    def _folded(self, relax: _Relaxations, latent_box, dtype: torch.dtype) -> FoldedGenerator | None:
        """The generator's dense layers folded for this sweep's boxes (:mod:`.symbolic`), made on first use and kept
        with the relaxations; None where ``fold_generator`` is off or the generator does not start with them."""
        top = self._fold_top
        if not self.options.fold_generator or top is None:
            return None
        key = ("fold", None, dtype)
        fold = relax._cache.get(key)
        if not isinstance(fold, FoldedGenerator) or not fold.matches(relax, latent_box, dtype):
            fold = relax._cache[key] = FoldedGenerator(self.ops, top, relax, latent_box, dtype)
        return fold

    def _tighten(self, key, val, g, lo, hi, forms, signs) -> None:
        """Rows' lower bounds ``val`` (and coefficients ``g`` over s) for the neurons ``key``, interleaved by
        ``signs`` (+1: a lower row, −1: an upper row), taken into ``lo``/``hi`` and ``forms`` where tighter (over
        the boxes' domains, :attr:`_dom`; the open rows' directions recorded there when asked)."""
        k = len(signs)
        if forms is not None:
            _keep_tighter(forms, key, val, g, signs, self._dom.planes)
        for t in range(k):
            self._dom.record(key[0], val[t::k], g[t::k])
        for t, s_t in enumerate(signs):
            if s_t > 0:
                lo[key] = torch.maximum(lo[key], val[t::k])
            else:
                hi[key] = torch.minimum(hi[key], -val[t::k])

    def _backward(
        self, j, rows: Rows, relax, anchor_forms: _Forms | None, anchor_box, absmax, stop: int | None = None,
        tables: dict | None = None, beta: dict[int, torch.Tensor] | None = None, record: dict | None = None,
        cuts: CutTerms | None = None, state: tuple | None = None, keep: bool = False, carry_only: bool = False,
    ):  # fmt: skip
        """Minimise each row over the box: rows are coefficients over the output of op ``j``, carried back to
        the input of op ``stop`` (default: the anchor) and minimised there over ``anchor_forms`` (affine bounds
        in the latent) and the intervals ``anchor_box`` of that layer.

        Rows in float32 or float64; returns the guarded float64 lower bound (R,) and its coefficients over s.
        ``tables``: a cache of :class:`WindowTable` shared by the chunks of one refinement (patch rows only).
        ``record``: filled with each of the classifier's piecewise-linear activations' branching scores per row
        (R, *shape): −(A⁺·bl + A⁻·bu) on its unstable neurons, what their relaxations' intercepts cost the
        row's bound (dense rows only; see :attr:`MarginBounds.branch`).
        ``cuts``: the Lagrangian terms of cutting planes (:meth:`.cuts.Cuts.terms`): the indicator terms folded in
        at each ReLU (:meth:`.ops.ReLU.fold_indicators`), the neuron pairs' terms added to the rows on the ReLU's
        output and then on its input; the rows then bound f + γ·(q·z − d) + γ·(a·(x, y) − d), a lower bound of f
        on the points the cuts hold for (dense rows).
        ``keep``: also return the rows as they reach op ``stop``'s input, before they are minimised there, with
        their constant and rounding guard: a ``state`` from which a later call goes on further back (ops ``j``
        down to its ``stop``) without carrying the rows through the later ops again. ``carry_only``: return just
        that (rows, constant, guard), without minimising (another pass, :mod:`.symbolic`, goes on from there).
        """
        stop = self.anchor if stop is None else stop
        dt = rows.A.dtype
        R = rows.A.shape[0]
        if state is not None:  # rows already carried back to op j's output, with their constant and guard
            bias, err = state
        else:
            bias = torch.zeros(R, dtype=DT, device=rows.A.device)
            # bound on the rounding error of everything computed so far; built from detached values: under α/β
            # optimisation its value guards the bound, and its gradient (a 1e-9 share) would only double the graph
            err = torch.zeros_like(bias)

        def l1(t: torch.Tensor) -> torch.Tensor:
            """An upper bound on Σ|t| per row despite its own rounding: the sum of n terms in t's dtype is within
            γₙ·Σ|t| of the truth, so Σ|t| ≤ Σ̃/(1 − γₙ) ≤ Σ̃·(1 + 2γₙ). It only scales rounding guards, so a
            plain sum in float32 does (1.5e-3 relative at 25,600 terms) and costs a fifth of a blocked one."""
            n = t[0].numel() if len(t) else 1
            return t.detach().abs().reshape(R, -1).sum(1).to(DT) * (1 + 2 * gamma(n + 1, t.dtype))

        norm: torch.Tensor | None = None  # a known upper bound on the current rows' Σ|A|, if any
        if cuts is not None:
            outside = [k for k in (*cuts.z, *cuts.y) if not stop <= k <= j]
            if outside:  # their −γ·d would enter without their terms: not a bound
                raise GenrobustError(f"internal: cuts on ops {outside} outside the rows' path {stop}..{j}")
            bias = bias + cuts.const
            err = err + cuts.guard
        for k in range(j, stop - 1, -1):
            op = self.ops[k]
            if rows.off is not None and not op.patches:
                rows = to_dense(rows, op.out_shape)
            if op.linear:
                numel = rows.A[0].numel() if R else 1
                reach = absmax.get(("reach", k)) if dt != DT else None
                if reach is not None:
                    own = absmax.get("ball")  # rows that are their own boxes (α/β): their boxes for the maps
                    of = rows if own is None else Rows(rows.A, own[rows.ball], rows.off)
                    err = err + self._reach_guard(of, reach, op)
                else:
                    norm = l1(rows.A) if norm is None else norm
                    err = err + norm * (gamma(op.dot_length(rows) + 1, dt) * absmax[k][rows.ball]
                                        + gamma(numel + 1, dt) * op.max_bias)  # fmt: skip
                rows, b = op.backward(rows)
                bias = bias + b.to(DT)
                norm = None
            elif isinstance(op, Activation):
                maps = relax.cast(k, dt)  # (B, 4, *shape): al, bl, au, bu
                origin, nonneg = relax.shortcuts(k, dt, maps)  # ReLU's lower lines: through the origin, terms skipped
                lines = relax.origin_lines(k, dt, maps) if origin else maps
                A = rows.A
                fold_x = pair_x = None
                if cuts is not None and (k in cuts.z or k in cuts.y) and rows.off is not None:
                    raise GenrobustError("internal: cuts enter only dense (margin) rows")
                if cuts is not None and k in cuts.y:  # the neuron pairs' terms on y (on x after the relaxation)
                    A = A + cuts.y[k].to(A.dtype)
                    # the addition's and the coefficients' rounding to the rows' dtype (|y| ≤ |x| ≤ absmax), and
                    # the coefficients' own sums
                    err = err + ((l1(A) + l1(cuts.y[k])) * gamma(1, dt) + cuts.scale[k]) * absmax[k][rows.ball]
                    pair_x = cuts.x[k]
                if cuts is not None and k in cuts.z:  # the cuts' indicator terms: into the rows on y, then on x
                    lo_k, hi_k = relax.pre[k]
                    A, fold_x, c_const, c_err = op.fold_indicators(A, cuts.z[k], lo_k[rows.ball], hi_k[rows.ball],
                                                                   absmax[k][rows.ball])  # fmt: skip
                    bias = bias + c_const
                    err = err + c_err
                if record is not None and op.piecewise_linear and k >= self.anchor and rows.off is None:
                    lo_k, hi_k = relax.pre[k]
                    bl, bu = maps[rows.ball, 1], maps[rows.ball, 3]
                    cost = -(A.clamp(min=0) * bl + A.clamp(max=0) * bu).to(DT)
                    record[k] = torch.where(op.unstable(lo_k, hi_k)[rows.ball], cost, 0.0)
                norm = l1(A)
                if rows.off is None:
                    new, t_sum, t_abs = relax_step_by_ball(A, lines, rows.ball, origin, nonneg)
                else:
                    m = lines if k in relax.windows else self._windows(tables, k, lines, rows)
                    new, t_sum, t_abs = relax_step(A, m, origin, nonneg)
                err = err + relax_guard(norm, t_abs, A[0].numel() if R else 1, dt, origin, absmax[k][rows.ball])
                # the slopes are in [0, 1] (al + dl ≤ 1 + u): Σ|new| ≤ Σ|A|·(1 + γ₄) + u·Σ|A|, the next step's norm
                g_new = gamma(4 if origin else 1, dt)
                norm = norm * (1 + g_new + gamma(1, dt))
                bias = bias + t_sum
                if beta is not None and k in beta:  # β-CROWN: the split constraints' terms, −β·s on x_k (dense rows)
                    new = new - beta[k].to(new.dtype)
                    err = err + l1(new) * gamma(1, dt) * absmax[k][rows.ball]  # the subtraction's rounding
                    norm = None  # Σ|new| may have grown past the bound above: the next linear step measures it
                if fold_x is not None:  # the cuts' terms on x_k
                    new = new - fold_x
                    err = err + l1(new) * gamma(1, dt) * absmax[k][rows.ball]
                    norm = None
                if pair_x is not None:  # the neuron pairs' terms on x_k (the sum's and the cast's rounding)
                    new = new + pair_x.to(new.dtype)
                    err = err + (l1(new) + l1(pair_x)) * gamma(1, dt) * absmax[k][rows.ball]
                    norm = None
                rows = Rows(new, rows.ball, rows.off)
            else:  # a selection (MaxPool): moving coefficients is exact, its constants are summed here
                rows, terms = op.backward_plan(rows, relax.plans[k])
                err = err + l1(terms) * gamma(terms[0].numel() + 1 if R else 1, dt)
                bias = bias + terms.reshape(R, -1).sum(1).to(DT)
                norm = None
        if carry_only:
            return rows, bias, err
        val, g = self._minimise(rows, bias, err, anchor_forms, anchor_box, absmax, stop)
        return (val, g, (rows, bias, err)) if keep else (val, g)

    @staticmethod
    def _reach_guard(rows: Rows, reach: torch.Tensor, op: Op) -> torch.Tensor:
        """The rounding guard (R,) of rows' step back through the linear op ``k``, neuron by neuron: the computed
        A·W differs from the exact one by at most γ_n·|A||W| (n the dot products' length) and A·b by γ_m·|A||b| (m
        the row's length), so the bound moves by at most γ_n·Σ_i |A_i|·(|W||x|)_i + γ_m·Σ_i |A_i|·|b_i|, with
        ``reach`` (B, 2, *shape) ≥ (|W||x|, |b|) on the box, in float32; patch rows take each channel's largest.
        The layer-wide form ‖A‖₁·max_i(…) paid the largest neuron's reach for every coefficient: on ball (0, 1) of
        the built-in models at ε = 0.05 that alone cost the worst margin 9 of its 61 (−61.4 against −52.4 with no
        guard at all; −54.8 with this one). Terms ≥ 0, summed in float32: relative error γ_{m+1}."""
        A = rows.A.detach()
        R = len(A)
        if not R:
            return torch.zeros(0, dtype=DT, device=A.device)
        m = A[0].numel()
        if rows.off is not None and A.dim() == 2:  # windows of a flat layer: each row's own neurons
            total = torch.einsum("rn,rkn->rk", A.abs(), gather_windows(reach, rows.ball, rows.off[:, 0], A.shape[1]))
        elif rows.off is not None:
            # patch rows: each channel's largest reach over the map (no window gathered per row: the per-neuron
            # form lifted the worst margin of ball (0, 1) by 1 more for 8% more time a box, this one by 6.6 for 4%;
            # in stop 51, read from window tables as the relaxation lines are, ball (2, 1) by 0.5 (−20.05 →
            # −19.56) for 7–25% more time a root)
            top = reach.flatten(3).amax(3)[rows.ball]  # (R, 2, C)
            total = torch.einsum("rc,rkc->rk", A.abs().sum((2, 3)), top)
        elif R * m * 2 * reach.element_size() <= GATHER_BYTES:  # small layers: one gathered product, no loop
            total = torch.einsum("rn,rkn->rk", A.abs().reshape(R, -1), reach.reshape(reach.shape[0], 2, -1)[rows.ball])
        else:
            flat, maps = A.abs().reshape(R, -1), reach.reshape(reach.shape[0], 2, -1).transpose(1, 2)
            total = A.new_empty(R, 2)
            for b in torch.unique(rows.ball).tolist():
                sel = torch.nonzero(rows.ball == b).flatten()
                if len(sel) == R:
                    total = flat @ maps[b]
                else:
                    total[sel] = flat[sel] @ maps[b]
        total = total.to(DT) * (1 + 2 * gamma(m + 1, A.dtype))
        return gamma(op.dot_length(rows) + 1, A.dtype) * total[:, 0] + gamma(m + 1, A.dtype) * total[:, 1]

    def _minimise(self, rows: Rows, bias, err, anchor_forms, anchor_box, absmax, stop: int):
        """The end of a backward pass: rows (with their constant ``bias`` and rounding guard ``err``) over the input
        of op ``stop``, minimised in float64 over ``anchor_forms`` and the intervals ``anchor_box`` there; the
        guarded lower bound (R,) and its coefficients over s."""
        R = rows.A.shape[0]
        rows = Rows(rows.A.to(DT), rows.ball, rows.off)  # the substitution in float64
        size = torch.maximum(anchor_box[0].abs(), anchor_box[1].abs()).flatten(1).amax(1)
        if stop == self.anchor:
            size = torch.maximum(size, absmax["anchor"])
        numel = rows.A[0].numel() if R else 1
        # the rows' Σ|A| (computed in float64: its own rounding is far inside the γ below)
        norm = rows.A.detach().abs().reshape(R, -1).sum(1) * (1 + 2 * gamma(numel + 1, DT))
        err = err + norm * gamma(numel * (self.in_dim + 2) + 2, DT) * size[rows.ball]
        if isinstance(anchor_forms, _BoxForms):  # the input box itself: minimised exactly, in closed form
            if rows.off is not None:
                rows = to_dense(rows, self.ops[stop].in_shape)
            A = rows.A.reshape(R, -1)
            g = A * anchor_forms.radius[rows.ball]
            val = (A * anchor_forms.center[rows.ball]).sum(1) + bias + min_linear(g, rows.ball, anchor_forms.planes)
        else:  # the image's affine forms in the latent, or intervals alone
            val, g = self._concretize(rows, bias, anchor_forms, anchor_box, self.ops[stop].in_shape)
        err = err + GUARD * (bias.detach().abs() + val.detach().abs())  # the few float64 additions of the bias terms
        return val - err, g

    @staticmethod
    def _windows(tables: dict | None, k: int, maps: torch.Tensor, rows: Rows) -> torch.Tensor:
        """Each patch row's window of the relaxation lines ``maps`` (B, n_lines, C, H, W) of activation ``k``:
        (R, n_lines, C, ph, pw), from a :class:`WindowTable` when it fits in memory."""
        A, off = rows.A, rows.off
        if A.dim() == 2:  # windows of a flat layer (a generator's pixels): views, nothing to build
            return gather_windows(maps, rows.ball, off[:, 0], A.shape[1])
        ph, pw = A.shape[2:]
        if tables is None or not len(A):
            return gather_patches(maps, rows.ball, off, ph, pw)
        H, W = maps.shape[-2:]
        pad = (max(0, -int(off[:, 0].min())), max(0, int(off[:, 0].max()) + ph - H),
               max(0, -int(off[:, 1].min())), max(0, int(off[:, 1].max()) + pw - W))  # fmt: skip
        n_lines = maps.shape[1]
        key = (k, A.dtype, ph, pw)
        table = tables.get(key)
        if table is None or table.pad != pad:  # built once per layer and window (the lines' copy included)
            tables.pop(key, None)
            stack = maps.reshape(len(maps), -1, H, W)
            if WindowTable.nbytes(stack, ph, pw, pad) > TABLE_LIMIT:
                return gather_patches(maps, rows.ball, off, ph, pw)
            table = tables[key] = WindowTable(stack, ph, pw, pad)
        return table.gather(rows.ball, off).reshape(len(A), n_lines, -1, ph, pw)

    def _concretize(self, rows: Rows, bias, f: _Forms | None, box, shape):
        """Minimise rows (over a layer of ``shape``) over the affine forms ``f`` (if any) and the intervals ``box``.

        Each ball's forms and intervals are stacked as the columns of two matrices (N, d + 2), so the
        substitution is one pair of GEMMs per ball (patch rows are scattered into the dense layer first; a
        gather of every row's window of the forms cost more than the rest of the backward pass).
        """
        if rows.off is not None:
            rows = to_dense(rows, shape)
        R = rows.A.shape[0]
        A = rows.A.reshape(R, -1)
        N, d = A.shape[1], self.in_dim
        ap, an = A.clamp(min=0), A.clamp(max=0)
        low, up = [], []
        if f is not None:
            B = f.l0.shape[0]
            low += [f.lc.reshape(B, d, N).transpose(1, 2), f.l0.reshape(B, N, 1)]
            up += [f.uc.reshape(B, d, N).transpose(1, 2), f.u0.reshape(B, N, 1)]
        low.append(box[0].reshape(-1, N, 1))
        up.append(box[1].reshape(-1, N, 1))
        ml, mu = torch.cat(low, 2), torch.cat(up, 2)  # (B, N, columns)
        out = A.new_empty(R, ml.shape[2])
        for b in torch.unique(rows.ball).tolist():
            sel = torch.nonzero(rows.ball == b).flatten()
            if len(sel) == R:
                out = ap @ ml[b] + an @ mu[b]
            else:
                out[sel] = ap[sel] @ ml[b] + an[sel] @ mu[b]
        box_val = out[:, -1] + bias
        if f is None:
            return box_val, torch.zeros(R, d, dtype=DT, device=A.device)
        g = out[:, :d]
        form_val = out[:, d] + bias + min_linear(g, rows.ball, f.planes)
        better = form_val >= box_val
        g = torch.where(better.unsqueeze(1), g, torch.zeros_like(g))
        return torch.where(better, form_val, box_val), g
