"""Backward steps through an activation's relaxation lines, shared by every backward pass: the new rows, the
intercepts they pick up summed in float64 with a known rounding error, and the guard that error costs.

Split out of :mod:`.engine` so that passes other than the engine's own (:mod:`.symbolic`) take exactly the same
step and pay exactly the same guard.
"""

from __future__ import annotations

import torch

from .ops import DT, gamma


def relax_step(A: torch.Tensor, m: torch.Tensor, origin: bool, nonneg: bool = False):
    """One backward step through an activation with lines ``m`` (rows or one broadcast ball; (·, 4, *shape) as
    al, bl, au, bu, or when ``origin`` (·, 3, *shape) as al, dl, bu with the upper slope al + dl, see
    :meth:`_Relaxations.origin_lines`): the new rows, the intercepts they pick up summed in float64 (R,), and an
    upper bound on those terms' Σ|·| (R,). ``origin``: every lower line passes through the origin (bl = 0,
    ReLU), so only negative coefficients pick up an intercept, and the new rows are A·al + min(A, 0)·dl (three
    fused passes instead of a mask, a select and a product: 2× faster for 800 patch rows of 32×5×5); ``nonneg``:
    besides, every upper intercept is ≥ 0, so every term is ≤ 0 and Σ|·| is −Σ (up to the sum's own rounding,
    paid here)."""
    if origin:
        al, dl, bu = m[:, 0], m[:, 1], m[:, 2]
        neg = A.clamp(max=0)
        new = torch.addcmul(A * al, neg, dl)
        terms = neg * bu
    else:
        al, bl, au, bu = m[:, 0], m[:, 1], m[:, 2], m[:, 3]
        pos = A > 0  # a lower bound takes the lower line where the coefficient is positive
        new = torch.where(pos, al, au).mul_(A)
        terms = A * torch.where(pos, bl, bu)
    flat = terms.reshape(len(A), -1)
    total = sum64(flat)
    if origin and nonneg:  # |Σ̃ − Σ| ≤ g·Σ|t| and Σ|t| = |Σ|, so Σ|t| ≤ |Σ̃|/(1 − g) ≤ |Σ̃|·(1 + 2g)
        g = gamma(SUM_BLOCK + 1, A.dtype) + gamma(flat.shape[1] + 1, DT)
        return new, total, total.detach().abs() * (1 + 2 * g)
    return new, total, sum64(flat.detach().abs())


#: Terms summed in the rows' own dtype before the partial sums go to float64 (see :func:`sum64`).
SUM_BLOCK = 128


def sum64(flat: torch.Tensor) -> torch.Tensor:
    """Row sums of ``flat`` (R, n) in float64 with a rounding error ≤ γ(SUM_BLOCK + 1)·Σ|·| in the rows' dtype:
    blocks of ``SUM_BLOCK`` terms are summed in that dtype, their partial sums in float64. As fast as a plain
    sum (a float64 copy of the rows would cost more than the step), and the guard stays that of 129 terms
    whatever the row's length (25,600 behind a dense layer: γ in float32 would be 1.5e-3 instead of 7.7e-6)."""
    R, n = flat.shape
    if flat.dtype == DT or n <= SUM_BLOCK:
        return flat.sum(1, dtype=DT)
    block = _block(n)
    if block:  # a view: no copy of the rows
        return flat.reshape(R, -1, block).sum(2).sum(1, dtype=DT)
    full = n - n % SUM_BLOCK
    out = flat[:, :full].reshape(R, -1, SUM_BLOCK).sum(2).sum(1, dtype=DT)
    return out + flat[:, full:].sum(1, dtype=DT) if full < n else out


def _block(n: int) -> int:
    """The largest divisor of ``n`` in [SUM_BLOCK / 4, SUM_BLOCK] (0 if none): blocks of it are a view of a row
    (a patch of 32×5×5 = 800 terms sums in blocks of 100), and the guard of SUM_BLOCK terms still covers them."""
    return next((b for b in range(SUM_BLOCK, SUM_BLOCK // 4 - 1, -1) if n % b == 0), 0)


#: Below this many bytes, a batch's rows gather their balls' lines (or reach maps) in one copy and take one step
#: instead of one per ball: on ``mnist_fc`` (layers of 256, 50 boxes a batch) the loop's calls cost more than the
#: copy; behind convolutions (25,600 neurons a row) the copy would cost more than the loop.
GATHER_BYTES = 8 << 20


def relax_step_by_ball(A: torch.Tensor, maps: torch.Tensor, ball: torch.Tensor, origin: bool, nonneg: bool):
    """:func:`_relax_step` for dense rows: rows sorted by ball take their ball's lines as a view (no copy).
    Rows of many balls with few rows each (α/β optimisation makes every row its own box), or rows whose gathered
    lines take at most ``GATHER_BYTES``, gather their lines instead: one step, not one per ball."""
    small = len(ball) * maps[0].numel() * maps.element_size() <= GATHER_BYTES
    if small or len(ball) < 4 * maps.shape[0] or (len(ball) > 1 and not bool((ball[1:] >= ball[:-1]).all())):
        own = len(ball) == maps.shape[0] and bool((ball == torch.arange(len(ball), device=ball.device)).all())
        return relax_step(A, maps if own else maps[ball], origin, nonneg)
    counts = torch.bincount(ball, minlength=maps.shape[0]).tolist()
    parts, start = [], 0
    for b, n in enumerate(counts):
        if n:
            parts.append(relax_step(A[start : start + n], maps[b : b + 1], origin, nonneg))
            start += n
    if not parts:
        return A.clone(), A.new_zeros(0, dtype=DT), A.new_zeros(0, dtype=DT)
    return tuple(torch.cat(p) for p in zip(*parts, strict=True))


def relax_guard(norm: torch.Tensor, t_abs: torch.Tensor, n: int, dt: torch.dtype, origin: bool,
                absmax: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """What one :func:`relax_step` over rows of ``n`` neurons in ``dt`` costs each row's bound in rounding: the
    rows' Σ|A| before the step ``norm`` (R,), the intercept terms' Σ|·| ``t_abs`` (R,), and ``absmax`` (R,) ≥ |x|
    on the activation's input. Each intercept product rounds once and each sum is blocked (:func:`sum64`); a new
    row's entry is one product (a select of a slope in [0, 1]) or, with ``origin``, A·al + min(A, 0)·dl: at most
    four roundings of terms ≤ |A| each, moving the bound by at most γ₄·|A|·|x|."""
    g_sum = gamma(SUM_BLOCK + 1, dt) + gamma(n + 1, DT)
    g_new = gamma(4 if origin else 1, dt)
    return t_abs.detach() * (1 + g_sum) * (gamma(1, dt) + g_sum) + norm * g_new * absmax
