"""The generator's dense layers, on one box, as one exact affine map over the latent and the few neurons that box
leaves unstable: a backward pass through them at a fraction of the cost.

With ``refine_to_latent`` a classifier neuron's refinement row goes on from the image through the generator to
the latent. On the built-in GAN that is 784 → 1,024 → 512 → 256 → 10, 1.46 M multiply-adds per row, and it was 1.7
of the 4.1 s of a box on ball (0, 1) at ε = 0.05. Yet on one box most of the generator's neurons are *stable*:
both relaxation lines coincide (a LeakyReLU whose input keeps its sign is x or s·x), so the neuron is exactly
linear there. Each dense layer's output is then, on the box, an exact affine function

    y_k = P_k · (z, 1, h_U₁, h_U₃, …)

of the latent z and of the outputs h_U of the neurons below it that are not stable: at the root of that ball, 212
of 1,792, so P of the top layer has 10 + 1 + 212 columns instead of the 1,802 a chain of dense products carries.
A row takes one product with P_top; at each activation, top down, its coefficients on the unstable outputs are
relaxed exactly as the plain pass relaxes them (the same lines, the same step, :func:`.steps.relax_step`) and
substituted by the rows of the layer below's P. The bound is the plain pass's, up to rounding.

Soundness and rounding. The P are built in float64 from the weights (exact copies of the float32 files) and the
stable neurons' float64 lines; each layer's computed P̃ carries a bound e ≥ |P − P̃|·v per neuron, where v ≥ |(z,
1, h_U)| is known from the box and the activations' intervals. A product P_k = W·H rounds each entry by at most
γ_{n+2}·(|W||H|) (n = the stable neurons, one more rounding each for the bias and the slope), and the error of
the layer below enters as |W|·|s|·e. These are matrix-vector products, so the guards cost nothing next to the
rows. The rows' own products (in float32) pay γ_{n+1}·|A|·(|P̂|·v) as in the plain pass, and the cast of P̃ to
float32 u·|P̃|·v; every sum of the coefficients into a lower layer's columns pays u·|result|·v. All of it is
subtracted from the bound, as the plain pass's guards are (module docstring of :mod:`.engine`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..rounding import round_up
from .ops import DT, Activation, Dense, Op, Rows, gamma, gather_windows, to_dense
from .steps import relax_guard, relax_step


def segment_top(ops: list[Op], anchor: int) -> int | None:
    """The last dense op of the chain's longest prefix Dense, activation, Dense, …, Dense before ``anchor`` (the
    part this module folds), or None when that prefix holds no activation (nothing to gain)."""
    top = None
    k = 0
    while k < anchor and isinstance(ops[k], Dense):
        top = k
        if k + 2 < anchor and isinstance(ops[k + 1], Activation) and isinstance(ops[k + 2], Dense):
            k += 2
        else:
            break
    return top if top is not None and top >= 2 else None


def _abs_dot(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """An upper bound, in float64, on Σ_i |A_ri|·v_i per row r (v ≥ 0, float64), computed in A's dtype: v rounded up
    to it, and the sum's own rounding (nonnegative terms: relative γ_{n+1}) paid by a factor."""
    if A.dtype == DT:
        return A.abs() @ v * (1 + 2 * gamma(v.numel() + 1, DT))
    out = A.abs() @ round_up(v, A.dtype)
    return out.to(DT) * (1 + 2 * gamma(v.numel() + 1, A.dtype))


@dataclass
class _BoxMaps:
    """One box's folded generator: per activation m (top down), its unstable neurons, their lines in the rows'
    dtype (1, 4, n), the first column of their outputs, and the rows of the layer below's P for them (n, columns
    before theirs) with its error bound e (n,) and |P̂|·v (n,); P of the top layer (N, columns) with its e and |P̂|·v;
    v (columns,)."""

    acts: list[tuple[int, torch.Tensor, torch.Tensor, int, torch.Tensor, torch.Tensor, torch.Tensor]]
    top: torch.Tensor
    top_err: torch.Tensor
    top_pv: torch.Tensor
    v: torch.Tensor


class FoldedGenerator:
    """Ops 0..``top`` of a chain (Dense, activation, …, Dense; :func:`segment_top`) folded per box, for rows that
    reach op ``top``'s output: :meth:`carry` takes them to the latent. Built for one sweep's relaxations (the
    generator's lines and intervals ``relax``, the latent box ``latent_box``); each box is folded when its first
    rows arrive."""

    def __init__(self, ops: list[Op], top: int, relax, latent_box: tuple[torch.Tensor, torch.Tensor],
                 dtype: torch.dtype) -> None:  # fmt: skip
        self.ops, self.top, self.latent_box, self.dtype = ops, top, latent_box, dtype
        acts = range(1, top, 2)
        #: the line tensors it was built from: a later sweep's (or a tuned copy's) relaxations need a new fold
        self.lines = {m: relax.lines[m] for m in acts}
        # what the folds read of the relaxations, held directly: the fold is kept in their cache, and a reference
        # back to them would make a cycle that only the garbage collector frees (a few MB per sweep that piled up
        # to 0.8 GB over a benchmark's run)
        self.pre = {m: relax.pre[m] for m in acts}
        self.cast = {m: relax.cast(m, dtype) for m in acts}
        self._boxes: dict[int, _BoxMaps] = {}

    def matches(self, relax, latent_box, dtype: torch.dtype) -> bool:
        return (dtype == self.dtype and latent_box[0] is self.latent_box[0]
                and all(relax.lines.get(m) is t for m, t in self.lines.items()))  # fmt: skip

    def _fold(self, b: int) -> _BoxMaps:
        """Box ``b``'s P per layer, in float64, with their error bounds, then cast to the rows' dtype."""
        ops, dt = self.ops, self.dtype
        lo_z, hi_z = self.latent_box[0][b].reshape(-1), self.latent_box[1][b].reshape(-1)
        d = lo_z.numel()
        first = ops[0]
        P = torch.cat([first.w["all"], first.b.unsqueeze(1)], 1)  # (N₀, d + 1): y₀ = W₀ z + b₀, exact
        e = torch.zeros(P.shape[0], dtype=DT, device=P.device)
        v = torch.cat([torch.maximum(lo_z.abs(), hi_z.abs()).to(DT), torch.ones(1, dtype=DT, device=P.device)])
        unit = 2.0**-53 if dt == DT else 2.0**-24
        acts = []
        for m in range(1, self.top, 2):
            act, dense = ops[m], ops[m + 1]
            al, bl, au, bu = self.lines[m][b].reshape(4, -1)
            fixed = (al == au) & (bl == bu)  # the two lines coincide: the neuron is that line on its interval
            U, F = torch.nonzero(~fixed).flatten(), torch.nonzero(fixed).flatten()
            # the rows of this P for the unstable neurons, cast, with their errors (the cast's included)
            Pu = P[U]
            pv_exact = Pu.abs() @ v
            Pu_dt = Pu.to(dt)
            pu_v = _pv(Pu_dt, v)
            lines = self.cast[m][b].reshape(4, -1)[:, U].unsqueeze(0)
            acts.append((m, U, lines, P.shape[1], Pu_dt, e[U] + unit * pv_exact * (1 + unit), pu_v))
            # h on the stable neurons: s·y + t, in float64
            s, t = al[F], bl[F]
            PF = P[F]
            H = s.unsqueeze(1) * PF
            H[:, d] += t
            # |h| on the unstable neurons: the activation's output interval
            lo, hi = self.pre[m]
            h_lo, h_hi = act.interval(lo[b].reshape(-1)[U], hi[b].reshape(-1)[U])
            hv = torch.maximum(h_lo.abs(), h_hi.abs()).to(DT)
            W = dense.w["all"]
            WF, Wabs = W[:, F], dense.w["abs"][:, F]
            n = len(F)
            new = torch.cat([WF @ H, W[:, U]], 1)
            new[:, d] += dense.b
            # errors: this layer's products (n terms, the bias), the slopes' products and t's sum (γ₂), and the layer
            # below's errors through |W|·|s|
            g2 = gamma(2, DT)
            below = s.abs() * e[F] + g2 * (s.abs() * (PF.abs() @ v) + t.abs())
            e = Wabs @ below + gamma(n + 2, DT) * (Wabs @ (H.abs() @ v) + dense.b.abs())
            e = e * (1 + 4 * gamma(n + len(v) + 2, DT))  # the guards' own float64 sums, all of terms ≥ 0
            P = new
            v = torch.cat([v, hv])
        top_dt = P.to(dt)
        top_err = e + unit * (P.abs() @ v) * (1 + unit)
        return _BoxMaps(acts[::-1], top_dt, top_err, _pv(top_dt, v), v)

    def carry(self, rows: Rows, bias: torch.Tensor, err: torch.Tensor,
              absmax: dict) -> tuple[Rows, torch.Tensor, torch.Tensor]:  # fmt: skip
        """Dense rows (R, N) over op ``top``'s output, with their constant and rounding guard (float64, (R,)),
        carried to the latent: rows (R, d) over op 0's input, the new constant and guard. ``absmax[m]`` (B,) ≥ |x|
        on activation m's input, as in the plain pass."""
        windows = rows.off is not None and rows.A.dim() == 2  # a pixel patch's rows of pixels (:class:`.ops.Rows`)
        if rows.off is not None and not windows:
            rows = to_dense(rows, self.ops[self.top].out_shape)
        A, ball = rows.A.reshape(len(rows.A), -1), rows.ball
        if A.dtype != self.dtype:
            raise ValueError(f"rows in {A.dtype}, folded for {self.dtype}")
        out = torch.empty(len(A), self.latent_box[0][0].numel(), dtype=A.dtype, device=A.device)
        bias, err = bias.clone(), err.clone()
        for b in torch.unique(ball).tolist():
            sel = torch.nonzero(ball == b).flatten()
            maps = self._boxes.get(b)
            if maps is None:
                maps = self._boxes[b] = self._fold(b)
            start = None
            if windows:  # rows that meet the same rows of the top map side by side
                sel = sel[torch.argsort(rows.off[sel, 0], stable=True)]
                start = rows.off[sel, 0]
            out[sel], add_bias, add_err = self._carry_box(A[sel], maps, absmax, b, start)
            bias[sel] += add_bias
            err[sel] += add_err
        return Rows(out, ball), bias, err

    def _carry_box(self, A: torch.Tensor, maps: _BoxMaps, absmax: dict, b: int, start: torch.Tensor | None = None):
        """Rows ``A`` of box ``b`` through its maps; ``start`` (sorted): the rows are windows of the top layer
        starting there (the rows with one start meet the same rows of the top map: one product each)."""
        dt = A.dtype
        w = A.shape[1]
        g = gamma(w + 1, dt)
        if start is None:
            c = A @ maps.top
            err = _abs_dot(A, maps.top_err + g * maps.top_pv)
        else:
            c = A.new_empty(len(A), maps.top.shape[1])
            first = 0
            for s, n in zip(*(t.tolist() for t in torch.unique_consecutive(start, return_counts=True)), strict=True):
                torch.matmul(A[first : first + n], maps.top[s : s + w], out=c[first : first + n])
                first += n
            # as _abs_dot, each row with its window of the top's error terms
            ev = round_up(maps.top_err + g * maps.top_pv, dt)
            err = (A.abs() * gather_windows(ev[None], torch.zeros_like(start), start, w)).sum(1).to(DT)
            err = err * (1 + 2 * gamma(w + 1, dt))
        bias = torch.zeros(len(A), dtype=DT, device=A.device)
        for m, U, lines, off, Pu, e_u, pv_u in maps.acts:
            n = len(U)
            if n == 0:
                c = c[:, :off]
                continue
            q = c[:, off : off + n]  # coefficients on the unstable outputs of activation m
            norm = q.detach().abs().sum(1).to(DT) * (1 + 2 * gamma(n + 1, dt))
            new, t_sum, t_abs = relax_step(q, lines, origin=False)
            err = err + relax_guard(norm, t_abs, n, dt, False, absmax[m][b])
            bias = bias + t_sum
            # their inputs are the layer below's rows of P: substituted into the columns before theirs, each entry a
            # sum of n products and the entry already there (γ_{n+1} of both), plus P̂'s own error
            head = c[:, :off]
            g = gamma(n + 1, dt)
            err = err + g * _abs_dot(head, maps.v[:off]) + _abs_dot(new, e_u + g * pv_u)
            c = torch.addmm(head, new, Pu)
        d = c.shape[1] - 1
        bias = bias + c[:, d].to(DT)  # the constant's coefficient (its rounding: v = 1 in every guard above)
        return c[:, :d], bias, err


def _pv(P: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """|P|·v in float64 for P in any dtype (exact conversion), with the sum's own rounding paid."""
    return P.abs().to(DT) @ v * (1 + 2 * gamma(v.numel() + 1, DT))
