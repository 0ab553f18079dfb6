"""The operator table of the bound engine: one small class per kind of layer.

Each operator knows its concrete forward pass (float64), and either

* its linear map (``linear = True``): applied with or without bias, with the positive or negative part of its
  weights (forward linear bounds), with |W| (interval bounds), and transposed to carry a bound's coefficients
  backwards (CROWN), on dense rows or on convolution *patches* (only a neuron's receptive field); or
* its relaxation (``linear = False``): the two lines (slope, intercept) that sandwich it on an interval [l, u].

:data:`genrobust.bounds.capture.MODULE_BUILDERS` maps module types to these classes; the ONNX importer
(``genrobust.models.onnx_import``) turns ONNX operators into those same modules, so one table serves both.
Everything runs in float64 (see ``engine`` for why that is sound); the float32 or float16 weights convert to
float64 exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import GenrobustError
from ..rounding import round_up, widen

Shape = tuple[int, ...]
DT = torch.float64


@dataclass
class Rows:
    """Coefficients of R linear functions over one layer's neurons, each to be *minimised* (a lower bound).

    ``A`` is either dense, shape (R, *layer_shape), with ``off = None``, or for a (C, H, W) layer a patch, shape
    (R, C, ph, pw), whose top-left corner sits at ``off[r] = (y, x)`` of the map (positions outside the map
    hold zeros), or for a flat (N,) layer a *window* of w consecutive neurons, shape (R, w), starting at
    ``off[r] = (s,)`` (inside the layer: 0 ≤ s ≤ N − w). Windows are what a patch over a one-channel image
    becomes behind the reshape that made the image (the rows of pixels it touches, :meth:`Reshape.backward`),
    so that a generator's last layers carry a pixel patch's ~3–9 rows of the image instead of all 28.
    ``ball[r]`` is the box the row belongs to.
    """

    A: torch.Tensor
    ball: torch.Tensor
    off: torch.Tensor | None = None
    #: every row has one non-zero (a refinement's first step, ±e_i per neuron): a dense layer takes the weight
    #: rows directly instead of a GEMM
    unit: bool = False


def window_axes(off: torch.Tensor, ph: int, pw: int, H: int, W: int):
    """Rows' windows at ``off`` (R, 2) of size (ph, pw) on H × W maps: their row and column positions (R, ph) and
    (R, pw), and which of their (ph, pw) cells lie inside the maps (R, ph, pw)."""
    ys = off[:, 0, None] + torch.arange(ph, device=off.device)
    xs = off[:, 1, None] + torch.arange(pw, device=off.device)
    return ys, xs, ((ys >= 0) & (ys < H))[:, :, None] & ((xs >= 0) & (xs < W))[:, None, :]


def gather_patches(maps: torch.Tensor, rows_ball: torch.Tensor, off: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """``maps`` (B, *extra, C, H, W) → per row its (…, C, ph, pw) window at ``off`` (zeros outside the map).

    One ``index_select`` over (box, position) pairs of a position-major copy: memory is the output's, not R maps.
    """
    B = maps.shape[0]
    H, W = maps.shape[-2:]
    lead = maps.shape[1:-2]
    R = len(rows_ball)
    ys, xs, inside = window_axes(off, ph, pw, H, W)
    pos = ys.clamp(0, H - 1)[:, :, None] * W + xs.clamp(0, W - 1)[:, None, :]  # (R, ph, pw)
    table = maps.reshape(B, -1, H * W).transpose(1, 2).reshape(B * H * W, -1)  # (B·H·W, E)
    flat = (rows_ball[:, None, None] * (H * W) + pos).reshape(-1)
    out = table.index_select(0, flat).reshape(R, ph, pw, -1).permute(0, 3, 1, 2).reshape(R, *lead, ph, pw)
    if not bool(inside.all()):
        out = out * inside.reshape(R, *([1] * len(lead)), ph, pw)
    return out


#: Largest :class:`WindowTable` built (bytes); beyond it rows gather their windows with :func:`gather_patches`.
TABLE_LIMIT = 256 << 20


class WindowTable:
    """Every (ph, pw) window of a stack of maps (B, E, H, W), unfolded once, so that a row's window is one
    contiguous line of a table: gathering R windows is one ``index_select`` with no permuted copy (2.6× faster
    than :func:`gather_patches` for a backward step through a ReLU, 5×5 windows of 32 channels). Built per
    layer and window size, used by every chunk of rows of one refinement. ``pad`` = (top, bottom, left, right)
    zeros around the maps, for windows that stick out of them (convolutions with padding)."""

    def __init__(self, maps: torch.Tensor, ph: int, pw: int, pad: tuple[int, int, int, int]) -> None:
        B, E, H, W = maps.shape
        top, bottom, left, right = pad
        padded = F.pad(maps, (left, right, top, bottom)) if any(pad) else maps
        self.pad, self.shape = pad, (E, ph, pw)
        self.lh, self.lw = H + top + bottom - ph + 1, W + left + right - pw + 1
        cols = F.unfold(padded, (ph, pw))  # (B, E·ph·pw, L)
        self.table = cols.transpose(1, 2).reshape(B * self.lh * self.lw, E * ph * pw).contiguous()

    @staticmethod
    def nbytes(maps: torch.Tensor, ph: int, pw: int, pad: tuple[int, int, int, int]) -> int:
        B, E, H, W = maps.shape
        return B * (H + pad[0] + pad[1] - ph + 1) * (W + pad[2] + pad[3] - pw + 1) * E * ph * pw * maps.element_size()

    def gather(self, ball: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
        """The windows at ``off`` (R, 2) of the maps of ``ball`` (R,): (R, E, ph, pw), zeros outside the maps."""
        pos = (off[:, 0] + self.pad[0]) * self.lw + off[:, 1] + self.pad[2]
        return self.table.index_select(0, ball * (self.lh * self.lw) + pos).reshape(len(ball), *self.shape)


def gather_windows(maps: torch.Tensor, rows_ball: torch.Tensor, start: torch.Tensor, w: int) -> torch.Tensor:
    """``maps`` (B, *extra, N) → per row its (…, w) window of consecutive entries from ``start`` (R,): the
    windows of a flat layer (see :class:`Rows`), gathered from a view of every window (no unfolded copy)."""
    view = maps.unfold(-1, w, 1)  # (B, *extra, N − w + 1, w)
    lead = (slice(None),) * (maps.dim() - 2)
    return view[(rows_ball, *lead, start)]


def to_dense(rows: Rows, shape: Shape) -> Rows:
    """A patch row set scattered into full (C, H, W) maps (windows: into full (N,) rows)."""
    if rows.off is None:
        return rows
    if rows.A.dim() == 2:  # windows of a flat layer
        R, w = rows.A.shape
        out = rows.A.new_zeros(R, math.prod(shape))
        pos = rows.off[:, :1] + torch.arange(w, device=rows.A.device)
        out.scatter_(1, pos, rows.A)
        return Rows(out.reshape(R, *shape), rows.ball, None)
    C, H, W = shape
    R, _, ph, pw = rows.A.shape
    if rows.off.numel() and bool((rows.off == 0).all()) and (ph, pw) == (H, W):
        return Rows(rows.A, rows.ball, None)
    pad_y, pad_x = max(0, -int(rows.off[:, 0].min())), max(0, -int(rows.off[:, 1].min()))
    Hp = max(H + pad_y, int(rows.off[:, 0].max()) + pad_y + ph)
    Wp = max(W + pad_x, int(rows.off[:, 1].max()) + pad_x + pw)
    out = rows.A.new_zeros(R, C, Hp, Wp)
    ys = (rows.off[:, 0] + pad_y)[:, None] + torch.arange(ph, device=rows.A.device)
    xs = (rows.off[:, 1] + pad_x)[:, None] + torch.arange(pw, device=rows.A.device)
    lin = (ys[:, :, None] * Wp + xs[:, None, :]).reshape(R, 1, ph * pw).expand(-1, C, -1)
    out.view(R, C, Hp * Wp).scatter_add_(2, lin, rows.A.reshape(R, C, ph * pw))
    return Rows(out[:, :, pad_y : pad_y + H, pad_x : pad_x + W].contiguous(), rows.ball, None)


class Op:
    """A layer of the chain: ``in_shape`` → ``out_shape`` (without the batch dimension)."""

    name = "op"
    linear = True
    #: Whether :meth:`backward` accepts patch rows (convolution-like operators and elementwise ones).
    patches = False

    def __init__(self, in_shape: Shape) -> None:
        self.in_shape = tuple(in_shape)
        self.out_shape = self.in_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ----- linear operators
    def apply(self, x: torch.Tensor, part: str = "all", bias: bool = True) -> torch.Tensor:
        """W x (+ b), or |W| x (+ |b|) with ``part="abs"`` (the radius step of interval arithmetic)."""
        raise NotImplementedError

    def backward(self, rows: Rows) -> tuple[Rows, torch.Tensor]:
        """Rows over the output → rows over the input, and the bias they pick up (R,)."""
        raise NotImplementedError

    def to(self, device: torch.device) -> Op:
        """Move every tensor (and dict of tensors, like a weight's parts) to ``device``; drop cached casts. An
        operator already there is left as it is, caches included (operators captured once serve many engines)."""
        tensors = [v for v in vars(self).values() if isinstance(v, torch.Tensor)]
        if tensors and all(t.device == torch.device(device) for t in tensors):
            return self
        self.__dict__.pop("_casts", None)
        self.__dict__.pop("_toeplitz_cache", None)
        for k, v in list(vars(self).items()):
            if isinstance(v, torch.Tensor):
                setattr(self, k, v.to(device))
            elif isinstance(v, dict) and v and all(isinstance(t, torch.Tensor) for t in v.values()):
                setattr(self, k, {name: t.to(device) for name, t in v.items()})
        return self

    def __repr__(self) -> str:
        return f"{self.name}{self.in_shape}→{self.out_shape}"


def _parts(w: torch.Tensor) -> dict[str, torch.Tensor]:
    """W and |W|: the only parts the bounds read. (W's positive and negative parts were kept too until stop 69;
    nothing read them, and for the dense head's 25,600 × 200 float64 weights they were 82 MB per verifier.)"""
    return {"all": w, "abs": w.abs()}


def gamma(n: int, dtype: torch.dtype) -> float:
    """γ_n = n·u/(1 − n·u): bound on the relative rounding error of a dot product of n terms (Higham, Thm 3.5),
    whatever the order of the additions, fused or not."""
    u = 2.0**-53 if dtype == torch.float64 else 2.0**-24
    nu = n * u
    if nu >= 0.5:
        raise GenrobustError(f"a reduction of {n} terms is too long for a rounding guard in {dtype}")
    return nu / (1 - nu)


def cast_weight(op: Op, name: str, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` in ``dtype``, cached on the operator (weights from float32/float16 files convert exactly)."""
    if dtype == t.dtype:
        return t
    cache = op.__dict__.setdefault("_casts", {})
    key = (name, dtype)
    if key not in cache:  # an inexact cast (a folded BatchNorm) is one more rounding: the guards count n + 1
        cache[key] = t.to(dtype)
    return cache[key]


class Dense(Op):
    """x ↦ W x + b on flat vectors (``nn.Linear``, ONNX Gemm/MatMul+Add)."""

    name = "Dense"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, in_shape: Shape) -> None:
        super().__init__(in_shape)
        if len(self.in_shape) != 1 or self.in_shape[0] != weight.shape[1]:
            raise GenrobustError(f"a linear layer of input size {weight.shape[1]} receives shape {self.in_shape}")
        self.w = _parts(weight.detach().to(DT))
        self.b = bias.detach().to(DT) if bias is not None else torch.zeros(weight.shape[0], dtype=DT)
        self.out_shape = (weight.shape[0],)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x)

    def apply(self, x: torch.Tensor, part: str = "all", bias: bool = True) -> torch.Tensor:
        out = x @ self.w[part].T
        if bias:
            out = out + (self.b.abs() if part == "abs" else self.b)
        return out

    def backward(self, rows: Rows) -> tuple[Rows, torch.Tensor]:
        """Rows through Wᵀ. ``unit`` rows (one non-zero each: a refinement's first step, ±e_i per neuron) take
        their weight row directly, one product per entry instead of a GEMM (1,024× fewer operations behind the
        generator's last layer; the rounding is within the GEMM's guard)."""
        A = rows.A
        w, b = cast_weight(self, "w", self.w["all"], A.dtype), cast_weight(self, "b", self.b, A.dtype)
        if rows.unit and len(A):
            nz = torch.nonzero(A)
            if len(nz) != len(A) or not bool((nz[:, 0] == torch.arange(len(A), device=A.device)).all()):
                raise GenrobustError("internal: rows marked unit have more or fewer than one non-zero each")
            coef = A[nz[:, 0], nz[:, 1]].unsqueeze(1)
            return Rows(coef * w[nz[:, 1]], rows.ball), coef[:, 0] * b[nz[:, 1]]
        return Rows(A @ w, rows.ball), A @ b

    def dot_length(self, rows: Rows) -> int:
        return self.out_shape[0]

    @property
    def max_bias(self) -> float:
        return float(self.b.abs().max()) if self.b.numel() else 0.0


class Conv(Op):
    """2-d convolution (``nn.Conv2d``, and average pooling as a depthwise convolution), on (C, H, W) maps."""

    name = "Conv2d"
    patches = True

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None, in_shape: Shape, *,
        stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int], groups: int, name: str = "Conv2d",
    ) -> None:  # fmt: skip
        super().__init__(in_shape)
        if len(self.in_shape) != 3 or self.in_shape[0] != weight.shape[1] * groups:
            raise GenrobustError(
                f"a convolution of {weight.shape[1] * groups} input channels receives shape {self.in_shape}"
            )
        self.name = name
        self.w = _parts(weight.detach().to(DT))
        self.b = bias.detach().to(DT) if bias is not None else torch.zeros(weight.shape[0], dtype=DT)
        self.stride, self.padding, self.dilation, self.groups = tuple(stride), tuple(padding), tuple(dilation), groups
        k = weight.shape[2:]
        _, H, W = self.in_shape
        Ho = (H + 2 * padding[0] - dilation[0] * (k[0] - 1) - 1) // stride[0] + 1
        Wo = (W + 2 * padding[1] - dilation[1] * (k[1] - 1) - 1) // stride[1] + 1
        if Ho < 1 or Wo < 1:
            raise GenrobustError(f"a {k[0]}×{k[1]} convolution does not fit its input of shape {self.in_shape}")
        self.out_shape = (weight.shape[0], Ho, Wo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x)

    def apply(self, x: torch.Tensor, part: str = "all", bias: bool = True) -> torch.Tensor:
        b = (self.b.abs() if part == "abs" else self.b) if bias else None
        return F.conv2d(x, self.w[part], b, self.stride, self.padding, self.dilation, self.groups)

    #: Largest patch-transpose matrix kept (bytes): beyond it, ``conv_transpose2d`` does the step.
    TOEPLITZ_LIMIT = 64 << 20

    def _toeplitz(self, ph: int, pw: int) -> torch.Tensor | None:
        """The transposed convolution of a (Cout, ph, pw) patch as one matrix (Cout·ph·pw, Cin·qh·qw), so a
        backward step over many rows is one GEMM instead of a convolution over tiny maps (much faster)."""
        cache = self.__dict__.setdefault("_toeplitz_cache", {})
        if (ph, pw) not in cache:
            Cout = self.out_shape[0]
            n = Cout * ph * pw
            Cin = self.in_shape[0]
            k = self.w["all"].shape[2:]
            qh = (ph - 1) * self.stride[0] + self.dilation[0] * (k[0] - 1) + 1
            qw = (pw - 1) * self.stride[1] + self.dilation[1] * (k[1] - 1) + 1
            if n * Cin * qh * qw * 8 > self.TOEPLITZ_LIMIT:
                cache[(ph, pw)] = None
            else:
                eye = torch.eye(n, dtype=DT, device=self.b.device).reshape(n, Cout, ph, pw)
                t = F.conv_transpose2d(eye, self.w["all"], None, self.stride, 0, 0, self.groups, self.dilation)
                cache[(ph, pw)] = t.reshape(n, -1)  # every entry is one weight or 0: exact in any dtype
        return cache[(ph, pw)]

    def dot_length(self, rows: Rows) -> int:
        """Terms in one entry of the backward step that can round: a transposed convolution sums ≤ Cout·kh·kw
        products; a patch's Toeplitz GEMM sums the patch's size, but its matrix holds exact zeros except where
        a weight meets the entry (≤ Cout·kh·kw per column), and a product with an exact zero, or a sum with
        one, is exact. In any order of summation, a term's partial sums round only where they meet another
        non-zero term: at most m − 1 times for m non-zero terms, so γ of the non-zero count bounds either way of
        computing it. (Stop 50 took the patch's size: that cost the worst margin of ball (2, 1) 0.5 of its 20.)"""
        k = self.w["all"].shape[2:]
        return (self.out_shape[0] // self.groups) * k[0] * k[1]

    def _gemm_pays(self, ph: int, pw: int, dtype: torch.dtype) -> bool:
        """Whether a patch's backward step goes faster as a GEMM with the Toeplitz matrix than as a transposed
        convolution. Measured on a 2-core x86 CPU (4,096 rows, ms per step, GEMM vs ``conv_transpose2d``):
        float64 GEMM always wins (154 vs 215 for a 32×5×5 patch of a 32→32 convolution, 6 vs 34 for 64×1×1:
        oneDNN has no float64 kernels); in float32 the convolution wins when the matrix is sparse, 89 vs 25 for
        32×5×5 (18% of the matrix non-zero) and 30 vs 12 for 64×3×3 (36%), and loses for 64×1×1 (a dense matrix,
        2 vs 4) and for a single input channel (11 vs 19, 32×7×7 → 1×9×9)."""
        if dtype != torch.float32 or self.in_shape[0] < 8:
            return True
        k = self.w["all"].shape[2:]
        qh = (ph - 1) * self.stride[0] + self.dilation[0] * (k[0] - 1) + 1
        qw = (pw - 1) * self.stride[1] + self.dilation[1] * (k[1] - 1) + 1
        density = (k[0] * k[1]) / (qh * qw) / self.groups  # a grouped convolution's matrix is block-diagonal
        return density > 0.5

    @property
    def max_bias(self) -> float:
        return float(self.b.abs().max()) if self.b.numel() else 0.0

    def backward(self, rows: Rows) -> tuple[Rows, torch.Tensor]:
        A = rows.A
        R = A.shape[0]
        dt = A.dtype
        w, b = cast_weight(self, "w", self.w["all"], dt), cast_weight(self, "b", self.b, dt)
        bias = (A.sum((2, 3)) * b).sum(1)
        C, H, W = self.in_shape
        sy, sx = self.stride
        py, px = self.padding
        if rows.off is None:
            # Dense: the transposed convolution of the whole map, cropped to the (unpadded) input.
            Ho, Wo = self.out_shape[1:]
            out_pad = (H + 2 * py - ((Ho - 1) * sy + self.dilation[0] * (self.w["all"].shape[2] - 1) + 1),
                       W + 2 * px - ((Wo - 1) * sx + self.dilation[1] * (self.w["all"].shape[3] - 1) + 1))  # fmt: skip
            full = F.conv_transpose2d(A, w, None, self.stride, 0, out_pad, self.groups, self.dilation)
            return Rows(full[:, :, py : py + H, px : px + W], rows.ball), bias
        # Patch: only the receptive field. Window of output positions off..off+p → input off·s − pad ...
        t = self._toeplitz(*A.shape[2:]) if self._gemm_pays(*A.shape[2:], dt) else None
        if t is not None:
            t = cast_weight(self, f"toeplitz{A.shape[2:]}", t, dt)
            k = self.w["all"].shape[2:]
            qh = (A.shape[2] - 1) * sy + self.dilation[0] * (k[0] - 1) + 1
            qw = (A.shape[3] - 1) * sx + self.dilation[1] * (k[1] - 1) + 1
            full = (A.reshape(R, -1) @ t).reshape(R, C, qh, qw)
        else:
            full = F.conv_transpose2d(A, w, None, self.stride, 0, 0, self.groups, self.dilation)
        off = rows.off * torch.tensor([sy, sx], device=A.device) - torch.tensor([py, px], device=A.device)
        ph, pw = full.shape[2:]
        if ph >= H + 2 * py and pw >= W + 2 * px:  # the receptive field covers the map: go dense
            return to_dense(Rows(full, rows.ball, off), (C, H, W)), bias
        if py or px:  # positions in the zero padding multiply zeros: drop them
            full = full * window_axes(off, ph, pw, H, W)[2].reshape(R, 1, ph, pw)
        return Rows(full, rows.ball, off), bias


class Scale(Op):
    """Elementwise x ↦ a·x + c (``Affine``, BatchNorm in eval mode, the image adapter, arithmetic with constants).

    ``a`` and ``c`` are scalars, tensors of the per-example shape, or 1-D vectors with one value *per channel*:
    the first axis of an example, as BatchNorm1d/2d and the adapter normalise it, whatever the example's rank (a
    (C,) vector on a (C, L) example scales the rows, not the columns, as torch's BatchNorm1d does). Arithmetic
    with a constant is broadcast to the full shape by the capture before it gets here, so no torch broadcasting
    rule is left to guess.
    """

    name = "Scale"
    patches = True

    def __init__(self, scale: torch.Tensor | float, shift: torch.Tensor | float, in_shape: Shape, name: str = "Scale"):
        super().__init__(in_shape)
        self.name = name
        a = torch.as_tensor(scale, dtype=DT).detach()
        c = torch.as_tensor(shift, dtype=DT).detach()
        a, c = self._per_channel(a, "scale"), self._per_channel(c, "shift")
        self.a = _parts(a)
        self.c = c
        if any(t.ndim == 3 and t.shape[1:] != (1, 1) for t in (a, c)):
            self.patches = False  # a constant per pixel: rows must be dense to meet it

    def _per_channel(self, t: torch.Tensor, what: str) -> torch.Tensor:
        if t.ndim != 1 or len(self.in_shape) < 2:
            return t
        if t.numel() == 1:
            return t.reshape(())
        if t.numel() != self.in_shape[0]:
            raise GenrobustError(f"{self.name}: a {what} of {t.numel()} channels for inputs of shape "
                                 f"{tuple(self.in_shape)} ({self.in_shape[0]} channels)")  # fmt: skip
        return t.reshape(-1, *[1] * (len(self.in_shape) - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x)

    def apply(self, x: torch.Tensor, part: str = "all", bias: bool = True) -> torch.Tensor:
        out = x * self.a[part]
        if bias:
            out = out + (self.c.abs() if part == "abs" else self.c)
        return out

    def _bias(self, A: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if c.ndim == 3 and A.ndim == 4 and c.shape[1:] == (1, 1):  # per channel
            return (A.sum((2, 3)) * c.reshape(1, -1)).sum(1)
        return (A * c).reshape(A.shape[0], -1).sum(1)

    def backward(self, rows: Rows) -> tuple[Rows, torch.Tensor]:
        A = rows.A
        a, c = cast_weight(self, "a", self.a["all"], A.dtype), cast_weight(self, "c", self.c, A.dtype)
        if rows.off is not None and A.dim() == 2:  # windows of a flat layer: each row meets its own constants
            zero = torch.zeros_like(rows.ball)
            a, c = (t if t.dim() == 0 else gather_windows(t.unsqueeze(0), zero, rows.off[:, 0], A.shape[1])
                    for t in (a, c))  # fmt: skip
        return Rows(A * a, rows.ball, rows.off), self._bias(A, c)

    def dot_length(self, rows: Rows) -> int:
        return 1

    @property
    def max_bias(self) -> float:
        return float(self.c.abs().max())


class Reshape(Op):
    """A change of shape (``nn.Flatten``, ``nn.Unflatten``, ``view``/``reshape``)."""

    name = "Reshape"

    def __init__(self, in_shape: Shape, out_shape: Shape, name: str = "Reshape") -> None:
        super().__init__(in_shape)
        if math.prod(in_shape) != math.prod(out_shape):
            raise GenrobustError(f"cannot reshape {tuple(in_shape)} to {tuple(out_shape)}")
        self.name = name
        self.out_shape = tuple(out_shape)
        # a flat layer made into a one-channel image (a generator's pixels): patches over the image go back as
        # windows of the flat layer, the rows of pixels they touch (:class:`Rows`)
        self.patches = len(self.in_shape) == 1 and len(self.out_shape) == 3 and self.out_shape[0] == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x)

    def apply(self, x: torch.Tensor, part: str = "all", bias: bool = True) -> torch.Tensor:
        out = x.reshape(x.shape[0], *self.out_shape)
        return out

    def dot_length(self, rows: Rows) -> int:
        return 1

    max_bias = 0.0

    def backward(self, rows: Rows) -> tuple[Rows, torch.Tensor]:
        if rows.off is not None and self.patches:
            return self._windows(rows), rows.A.new_zeros(rows.A.shape[0])
        rows = to_dense(rows, self.out_shape)
        return Rows(rows.A.reshape(rows.A.shape[0], *self.in_shape), rows.ball), rows.A.new_zeros(rows.A.shape[0])

    def _windows(self, rows: Rows) -> Rows:
        """Patches (R, 1, ph, pw) over the (1, H, W) image → windows of the flat layer: each row's band of
        min(ph, H) rows of pixels (W each, consecutive in the flat layer), starting where its patch does
        (clamped into the image; the patch's positions outside it hold zeros and are dropped)."""
        A, off = rows.A, rows.off
        R, _, ph, pw = A.shape
        _, H, W = self.out_shape
        hb = min(ph, H)
        y0 = off[:, 0].clamp(0, H - hb)
        ys, xs, inside = window_axes(off, ph, pw, H, W)
        pos = (ys - y0[:, None]).clamp(0, hb - 1)[:, :, None] * W + xs.clamp(0, W - 1)[:, None, :]
        band = A.new_zeros(R, hb * W)
        band.scatter_add_(1, pos.reshape(R, -1), torch.where(inside, A[:, 0], 0).reshape(R, -1))
        return Rows(band, rows.ball, (y0 * W)[:, None])


class ConcatConst(Op):
    """x (d,) ↦ [b, x, c] (k + d + m,): constants around the input (a conditional generator's one-hot class)."""

    name = "ConcatConstant"

    def __init__(self, constant: torch.Tensor, in_shape: Shape, before: torch.Tensor | None = None) -> None:
        super().__init__(in_shape)
        if len(self.in_shape) != 1:
            raise GenrobustError(f"concatenation with a constant is supported on flat vectors, not {self.in_shape}")
        self.const = constant.detach().reshape(-1).to(DT)
        self.before = (before.detach().reshape(-1).to(DT) if before is not None
                       else torch.zeros(0, dtype=DT, device=self.const.device))  # fmt: skip
        self.out_shape = (len(self.before) + self.in_shape[0] + self.const.numel(),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x)

    def apply(self, x: torch.Tensor, part: str = "all", bias: bool = True) -> torch.Tensor:
        b, c = (self.before, self.const) if bias else (torch.zeros_like(self.before), torch.zeros_like(self.const))
        if part == "abs":
            b, c = b.abs(), c.abs()
        n = x.shape[0]
        return torch.cat([b.to(x.dtype).expand(n, -1), x, c.to(x.dtype).expand(n, -1)], 1)

    def dot_length(self, rows: Rows) -> int:
        return 1

    @property
    def max_bias(self) -> float:
        both = torch.cat([self.before, self.const])
        return float(both.abs().max()) if both.numel() else 0.0

    def backward(self, rows: Rows) -> tuple[Rows, torch.Tensor]:
        k, d = len(self.before), self.in_shape[0]
        A = rows.A
        bias = A[:, :k] @ self.before.to(A.dtype) + A[:, k + d :] @ self.const.to(A.dtype)
        return Rows(A[:, k : k + d], rows.ball), bias


# ------------------------------------------------------------------------------------------- nonlinear


class Activation(Op):
    """An elementwise nonlinearity with slopes in [0, 1]. Each subclass owns its bound rules:

    * :meth:`interval`: the image of [l, u], rounded outwards;
    * :meth:`relax`: lines y ≥ al·x + bl and y ≤ au·x + bu valid for every x in [l, u], slopes in [0, 1] (the
      engine's rounding guards and forward steps rely on that range: monotone functions with f′ ≤ 1), sound for
      every value of the tunable parameter ``alpha`` ∈ [0, 1] (α-CROWN optimises it; a bound computed with any
      α is a bound, whether or not the optimisation converged);
    * :meth:`unstable`: the neurons whose relaxation is not exact on [l, u] (worth tighter bounds).

    Class flags: ``upper_first`` (an input ≤ 0 gives an output that needs no lower bound, so refinement bounds
    from above first), ``tunable`` (``alpha`` changes the lower line), ``piecewise_linear`` (exact on each side
    of its kinks). The engine reads nothing else of an operator: adding one is a subclass here and a row in
    ``capture.ACTIVATION_BUILDERS``, and the property tests take every row of that table.
    """

    linear = False
    patches = True
    piecewise_linear = False
    upper_first = False
    tunable = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def interval(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: E741
        """[f(l), f(u)] (monotone), widened for libm's rounding of transcendental functions."""
        lo, hi = self.forward(l), self.forward(u)
        return lo - GUARD_IMAGE * (1 + lo.abs()), hi + GUARD_IMAGE * (1 + hi.abs())

    def unstable(self, l: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # noqa: E741
        return u > l

    def relax(self, l: torch.Tensor, u: torch.Tensor, alpha: torch.Tensor | None = None,  # noqa: E741
              ratio: float = 1.0):  # fmt: skip
        """(al, bl, au, bu) with al·x + bl ≤ f(x) ≤ au·x + bu on [l, u]. ``ratio``: how the default lower line of a
        kinked function (the ReLU family) picks its piece (:meth:`ReLU.relax`); smooth functions ignore it."""
        raise NotImplementedError

    def alpha_init(self, l: torch.Tensor, u: torch.Tensor, ratio: float = 1.0) -> torch.Tensor:  # noqa: E741
        """The α that gives :meth:`relax`'s default lines with this ``ratio`` (where to start optimising)."""
        return torch.full_like(l, 0.5)


#: Relative margins for libm's tanh/exp/log1p (within a few ulps): on relaxation lines, and (wider) on the
#: intervals that transcendental functions map their inputs to.
GUARD_LIBM = 1e-12
GUARD_IMAGE = 1e-9
#: a ReLU's indicator term is folded through its hull only where the side it divides by is at least this share of
#: its interval's larger side (else c·z is bounded by its range [min(c, 0), max(c, 0)]: a quotient by a
#: nearly-zero side would only make the rows' rounding guards explode)
FOLD_SHARE = 1e-4


class ReLU(Activation):
    """max(x, 0), and :class:`LeakyReLU`'s max(x, s·x) for 0 ≤ s ≤ 1 through ``slope``.

    Above: the chord. Below: a line through the origin of slope s + α·(1 − s); without α, slope 1 where
    u ≥ ratio·(−l), else s. Exact where l ≥ 0 or u ≤ 0.

    ``ratio`` 1 is CROWN's adaptive choice (the line of least area between it and the function). Larger ratios lean
    to the flat piece. A lower line of slope s stops a backward row at this neuron (its coefficient shrinks by s),
    while slope 1 passes the row on to every relaxation below, whose slack it then pays. Area alone ignores that
    cost. Ratio 2 (the engine's default, ``BoundOptions.lower_ratio``) tightens the built-in models' whole-box
    bounds at no cost (docs/verify-complete.md, stop 65).
    """

    name = "ReLU"
    piecewise_linear = True
    upper_first = True
    tunable = True
    slope = 0.0
    #: cuts over activation indicators fold through this op's big-M hull (:meth:`fold_indicators`)
    indicator_hull = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, self.slope * x)

    def interval(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: E741
        lo, hi = self.forward(l), self.forward(u)
        if self.slope in (0.0, 1.0):  # exact
            return lo, hi
        # the leak's s·x is rounded to nearest: round it outward
        return widen(lo, hi)

    def unstable(self, l: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # noqa: E741
        return (l < 0) & (u > 0)

    def alpha_init(self, l: torch.Tensor, u: torch.Tensor, ratio: float = 1.0) -> torch.Tensor:  # noqa: E741
        return (u >= ratio * -l).to(l.dtype)

    def relax(self, l: torch.Tensor, u: torch.Tensor, alpha: torch.Tensor | None = None,  # noqa: E741
              ratio: float = 1.0):  # fmt: skip
        s = self.slope
        width = (u - l).clamp(min=1e-300)
        au = torch.where(u <= 0, torch.full_like(u, s), torch.where(l >= 0, torch.ones_like(u), (u - s * l) / width))
        bu = torch.where((u <= 0) | (l >= 0), torch.zeros_like(u), u - au * u)
        if alpha is None:
            a = torch.where(u >= ratio * -l, torch.ones_like(u), torch.full_like(u, s))
        else:
            a = (s + alpha.clamp(0, 1) * (1 - s)).clamp(s, 1)  # rounding must not leave [s, 1]
        al = torch.where(u <= 0, torch.full_like(u, s), torch.where(l >= 0, torch.ones_like(u), a))
        bl = torch.zeros_like(u)
        # Rounding: the computed slope is au·(1 + θ), |θ| ≤ 4 units of roundoff (a product, two differences, a
        # quotient), which moves the line at l by θ·(u − s·l) = θ·(|u| + s·|l|); the intercept u − au·u adds
        # a rounding of (|u| + |bu|)·u. Lift by 8 epsilons (16 units) of both to stay above the chord. The
        # lower line a·x with s ≤ a ≤ 1 is below max(x, s·x) exactly (a·x rounds like s·x and x do).
        lift = 8 * torch.finfo(u.dtype).eps
        bu = bu + torch.where((u <= 0) | (l >= 0), 0.0, lift * (u.abs() + s * l.abs() + bu.abs()))
        return al, bl, au, bu

    def fold_indicators(
        self, A: torch.Tensor, c: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, absmax: torch.Tensor
    ):  # fmt: skip
        """Fold indicator terms c·z (c (R, *shape), float64) of a ReLU whose input lies in [lo, hi] (R, *shape) into
        rows A (R, *shape) over its output, before the neuron's relaxation step (:mod:`.cuts`).

        Returns the rows to relax (A + c⁺/u + c⁻/l on unstable neurons), the coefficients q (R, *shape) to subtract
        from the relaxed rows (on x: −c⁻/l), the constant (R,) the stable neurons and c⁻ contribute, and the guard
        (R,) of the rounding of the quotients, of the sum A + … (both ≤ their size times |y| ≤ ``absmax`` (R,)) and
        of the constant's sum. The subtraction's own rounding is the caller's, as for β."""
        dt = A.dtype
        R = len(A)
        unstable = (lo < 0) & (hi > 0)
        active = lo >= 0
        cp, cn = c.clamp(min=0), c.clamp(max=0)
        span = torch.maximum(-lo, hi)
        up = torch.where(unstable & (hi >= FOLD_SHARE * span), cp / hi.clamp(min=1e-300), 0.0)
        down = torch.where(unstable & (-lo >= FOLD_SHARE * span), cn / lo.clamp(max=-1e-300), 0.0)  # ≥ 0
        const = torch.where(active, c, 0.0) + torch.where(unstable, cn, 0.0)
        P, Q = up.to(dt), down.to(dt)
        new = A + P + Q
        n = A[0].numel() if R else 1
        flat = lambda t: t.detach().abs().reshape(R, -1).sum(1).to(DT)  # noqa: E731
        cabs = flat(c)
        err = (gamma(2, dt) * 2 * cabs  # the quotients, each ≤ 2 units of |c|
               + gamma(2, dt) * (flat(A) + flat(P) + flat(Q)) * absmax  # the two additions, times |y| ≤ absmax
               + gamma(n + 1, DT) * cabs)  # the constant's sum  # fmt: skip
        return new, Q, const.reshape(R, -1).sum(1), err


class LeakyReLU(ReLU):
    name = "LeakyReLU"
    indicator_hull = False
    #: an input ≤ 0 still passes s·x on, so its lower bound matters to the next layer's intervals
    upper_first = False

    def __init__(self, in_shape: Shape, slope: float = 0.01) -> None:
        super().__init__(in_shape)
        if not 0 <= slope <= 1:
            raise GenrobustError(f"LeakyReLU with negative slope {slope} outside [0, 1] is not supported")
        self.slope = float(slope)


class SShaped(Activation):
    """A sigmoid-like curve: increasing, convex below 0 and concave above, f′ unimodal with its peak at 0.

    On a convex (u ≤ 0) or concave (l ≥ 0) piece, the chord on one side and the tangent at the midpoint on the
    other; across 0, two parallel lines of the smaller endpoint slope through the endpoints (f′ ≥ that slope on
    [l, u]). A margin of ``GUARD_LIBM`` absorbs libm's rounding.
    """

    def fn(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def deriv(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def relax(self, l: torch.Tensor, u: torch.Tensor, alpha: torch.Tensor | None = None,  # noqa: E741
              ratio: float = 1.0):  # fmt: skip
        f, d = self.fn, self.deriv
        fl, fu = f(l), f(u)
        width = u - l
        flat = width <= 1e-12
        chord = torch.where(flat, d(l), (fu - fl) / width.clamp(min=1e-300))
        m = (l + u) / 2
        tan_s, tan_b = d(m), f(m) - d(m) * m
        convex, concave = u <= 0, l >= 0
        cross = ~convex & ~concave & ~flat
        # across 0: above, the tangent at a point t ∈ [0, u] that passes over (l, f(l)); below, the tangent at a
        # point t' ∈ [l, 0] that passes under (u, f(u)); where no such point exists, the chord is the line
        up_s, up_b = self._through(l, u, fl, cross, upper=True)
        lo_s, lo_b = self._through(u, l, fu, cross, upper=False)
        # or two parallel lines of the smaller endpoint slope through the endpoints (f′ ≥ that slope on [l, u]):
        # on a lopsided interval (l near 0, u far) the tangent is steep and these are tighter; each side takes
        # the line with less area between it and the curve (the nearer one at the midpoint), and a crossing
        # interval too narrow for bisection (width ≤ 1e-12) the parallel ones
        k = torch.minimum(d(l), d(u))
        par_u, par_l = fu - k * u, fl - k * l
        up_tan = cross & (up_s * m + up_b <= k * m + par_u)
        lo_tan = cross & (lo_s * m + lo_b >= k * m + par_l)
        up_s, up_b = torch.where(up_tan, up_s, k), torch.where(up_tan, up_b, par_u)
        lo_s, lo_b = torch.where(lo_tan, lo_s, k), torch.where(lo_tan, lo_b, par_l)
        al = torch.where(convex, tan_s, torch.where(concave, chord, lo_s))
        bl = torch.where(convex, tan_b, torch.where(concave, fl - chord * l, lo_b))
        au = torch.where(convex, chord, torch.where(concave, tan_s, up_s))
        bu = torch.where(convex, fl - chord * l, torch.where(concave, tan_b, up_b))
        guard = GUARD_LIBM * (1 + bl.abs() + bu.abs() + (al + au) * torch.maximum(l.abs(), u.abs()))
        return al, bl - guard, au, bu + guard

    def _through(self, p, q, fp, mask, upper: bool, iters: int = 40):
        """On [min(p, q), max(p, q)] across 0: a line above (``upper``, p = l, q = u) or below (p = u, q = l) the
        curve that passes by (p, f(p)) on the far side: the tangent at the point t between 0 and q nearest 0 whose
        tangent line clears (p, f(p)), found by bisection (the tangent's value at p moves monotonically with t);
        the chord from p to q where even the tangent at q does not clear it. Sound: the tangent lies above a
        concave piece (below a convex one) everywhere, and clearing f at p puts it above (below) the chord of the
        other piece too; the chord case holds because then f′(q) exceeds the chord's slope (CROWN's rule for
        S-shaped curves), and where the clearance test (with a margin for libm's rounding) was too close to call
        the chord is moved out by that margin."""
        f, d = self.fn, self.deriv
        sign = 1.0 if upper else -1.0  # ``upper``: T(p) ≥ f(p) is wanted; below: T(p) ≤ f(p)
        tol = 4 * GUARD_LIBM * (1 + fp.abs() + p.abs())

        def clears(t: torch.Tensor) -> torch.Tensor:
            return sign * (f(t) + d(t) * (p - t) - fp) >= tol

        q_ok = clears(q)
        lo_t, hi_t = torch.zeros_like(q), q.clone()  # clears(hi_t) holds where q_ok; t moves from 0 towards q
        for _ in range(iters):
            mid = (lo_t + hi_t) / 2
            ok = clears(mid)
            hi_t = torch.where(ok, mid, hi_t)
            lo_t = torch.where(ok, lo_t, mid)
        t = torch.where(mask & q_ok, hi_t, q)
        slope = d(t)
        inter = f(t) - slope * t
        fq = f(q)
        chord = (fq - fp) / (q - p).where(mask, torch.ones_like(q))
        # where the tangent at q missed clearing f(p) by less than ``tol``, f′(q) may not quite exceed the chord's
        # slope and the curve may stand above the chord by as much (the tangent at q bounds it there): move the
        # chord out by twice that
        chord_b = fp - chord * p + sign * 2 * tol
        use_tan = mask & q_ok
        return torch.where(use_tan, slope, chord), torch.where(use_tan, inter, chord_b)


class Tanh(SShaped):
    name = "Tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)

    def deriv(self, x: torch.Tensor) -> torch.Tensor:
        return 1 - torch.tanh(x) ** 2


class Sigmoid(SShaped):
    name = "Sigmoid"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)

    def deriv(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(x)
        return s * (1 - s)


class Softplus(Activation):
    """log(1 + eˣ) as ``nn.Softplus(beta=1, threshold=t)`` computes it: x itself where x > t.

    The true curve is convex and increasing with f′ = sigmoid ∈ (0, 1): above, its chord; below, its tangent at
    l + α·(u − l) (by default the midpoint). Torch's tail lies below the true curve by at most log(1 + e⁻ᵗ) (and
    jumps down at t, so torch's function is not monotone): lower lines and intervals pay that, upper ones hold.
    """

    name = "Softplus"
    tunable = True

    def __init__(self, in_shape: Shape, threshold: float = 20.0) -> None:
        super().__init__(in_shape)
        self.threshold = float(threshold)
        self.tail = math.log1p(math.exp(-self.threshold))  # true curve − torch's tail, at most

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x, 1.0, self.threshold)

    @staticmethod
    def true_curve(x: torch.Tensor) -> torch.Tensor:
        """log(1 + eˣ) without torch's tail, as max(x, 0) + log1p(e^−|x|) (no overflow)."""
        return x.clamp(min=0) + torch.log1p(torch.exp(-x.abs()))

    def interval(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: E741
        # torch's function jumps down at the threshold (not monotone): the true curve bounds it on both sides
        lo, hi = self.true_curve(l) - self.tail, self.true_curve(u)
        return lo - GUARD_IMAGE * (1 + lo.abs()), hi + GUARD_IMAGE * (1 + hi.abs())

    def relax(self, l: torch.Tensor, u: torch.Tensor, alpha: torch.Tensor | None = None,  # noqa: E741
              ratio: float = 1.0):  # fmt: skip
        f = self.true_curve
        fl, fu = f(l), f(u)
        width = u - l
        chord = torch.where(width <= 1e-12, torch.sigmoid(u), (fu - fl) / width.clamp(min=1e-300))
        t = (l + u) / 2 if alpha is None else l + alpha.clamp(0, 1) * width
        al = torch.sigmoid(t)
        bl = f(t) - al * t
        au, bu = chord, fl - chord * l
        guard = GUARD_LIBM * (1 + bl.abs() + bu.abs() + (al + au) * torch.maximum(l.abs(), u.abs()))
        return al, bl - guard - self.tail, au, bu + guard


class MaxPool(Op):
    """Max pooling with kernel = stride and no padding. Below: the window's element of largest lower bound;
    above: that element when it dominates its window (its lower bound ≥ every other upper bound), else the
    window's largest upper bound (a constant).

    A *selection*: the engine asks it for a :meth:`plan` on the input intervals, then for its :meth:`interval`,
    :meth:`forward_forms` and :meth:`backward_plan` steps under that plan."""

    name = "MaxPool2d"
    linear = False

    def __init__(self, kernel: int, in_shape: Shape) -> None:
        super().__init__(in_shape)
        C, H, W = self.in_shape
        self.k = kernel
        self.out_shape = (C, H // kernel, W // kernel)

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, C, Ho, Wo, k·k), cropping what does not fill a window (as PyTorch does)."""
        _, Ho, Wo = self.out_shape
        k = self.k
        x = x[..., : Ho * k, : Wo * k]
        return x.reshape(*x.shape[:-2], Ho, k, Wo, k).transpose(-3, -2).reshape(*x.shape[:-2], Ho, Wo, k * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._windows(x).amax(-1)

    def interval(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: E741
        return self._windows(l).amax(-1), self._windows(u).amax(-1)

    def plan(self, l: torch.Tensor, u: torch.Tensor):  # noqa: E741
        """Per window: the index of the largest lower bound, whether it dominates, and the largest upper bound."""
        lw, uw = self._windows(l), self._windows(u)
        best = lw.argmax(-1, keepdim=True)
        others_u = uw.scatter(-1, best, -math.inf).amax(-1)
        dominant = lw.gather(-1, best).squeeze(-1) >= others_u
        return best.squeeze(-1), dominant, uw.amax(-1)

    def select(self, x: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
        """The element ``best`` of every window of x (N, *extra, C, H, W) → (N, *extra, C, Ho, Wo)."""
        w = self._windows(x)
        idx = best.reshape(best.shape[0], *([1] * (w.ndim - best.ndim - 1)), *best.shape[1:], 1)
        return w.gather(-1, idx.expand(*w.shape[:-1], 1)).squeeze(-1)

    def forward_forms(self, plan, lc: torch.Tensor, l0: torch.Tensor, uc: torch.Tensor, u0: torch.Tensor):
        """Affine lower/upper forms (coef (B, d, *shape), const (B, *shape)) of the input → of the output: the
        selected element below; above, the selected element where it dominates, else the constant max upper."""
        best, dominant, maxu = plan
        uc_out = self.select(uc, best) * dominant.unsqueeze(1)
        u0_out = torch.where(dominant, self.select(u0, best), maxu)
        return self.select(lc, best), self.select(l0, best), uc_out, u0_out

    def backward_plan(self, rows: Rows, plan) -> tuple[Rows, torch.Tensor]:
        """Rows over the output → dense rows over the input (moving coefficients: exact) and the constant terms
        they pick up, (R, *out_shape), rounded so that their sum stays a lower bound (the caller sums them)."""
        best, dominant, maxu = plan
        rows = to_dense(rows, self.out_shape)
        A = rows.A
        ap, an = A.clamp(min=0), A.clamp(max=0)
        dom = dominant[rows.ball]
        terms = an * (~dom) * round_up(maxu[rows.ball], A.dtype)  # an ≤ 0: the constant must not shrink
        return Rows(self.spread(ap, best[rows.ball]) + self.spread(an * dom, best[rows.ball]), rows.ball), terms

    def spread(self, A: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
        """Transpose of :meth:`select`: coefficients over windows → over the input map (R, C, H, W)."""
        R = A.shape[0]
        C, Ho, Wo = self.out_shape
        k = self.k
        w = A.new_zeros(R, C, Ho, Wo, k * k).scatter_(-1, best.unsqueeze(-1), A.unsqueeze(-1))
        w = w.reshape(R, C, Ho, Wo, k, k).permute(0, 1, 2, 4, 3, 5).reshape(R, C, Ho * k, Wo * k)
        H, W = self.in_shape[1:]
        return F.pad(w, (0, W - Wo * k, 0, H - Ho * k))


# ------------------------------------------------------------------------------------------- the table

#: The layers genrobust can bound, as module type names (for error messages).
SUPPORTED_MODULES = (
    "Linear", "Conv2d", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softplus", "BatchNorm1d", "BatchNorm2d", "AvgPool2d",
    "MaxPool2d", "Flatten", "Unflatten", "BatchReshape", "Dropout", "Identity", "Affine", "ImageAdapter",
    "ConcatConstant", "Sequential",
)  # fmt: skip
