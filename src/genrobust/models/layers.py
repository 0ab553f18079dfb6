"""Small parameter-free modules that keep every network's ``forward`` a pure chain of modules.

The bound engine (``genrobust.bounds``) reads a network as a chain of modules; an arithmetic step written
inline in a ``forward`` (``x * 0.5 + 0.5``, a ``torch.cat`` with a constant) would be invisible to a module walk
and awkward for a graph capture. Each step here is a module the engine's operator table knows.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import GenrobustError


class Affine(nn.Module):
    """x ↦ scale · x + shift, with scalar constants (e.g. tanh's (−1, 1) mapped to [0, 1])."""

    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale = float(scale)
        self.shift = float(shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    def extra_repr(self) -> str:
        return f"scale={self.scale}, shift={self.shift}"


class ConcatConstant(nn.Module):
    """x (N, d) ↦ [x, c] (N, d + k): a constant row appended to every input (a conditional generator's one-hot)."""

    def __init__(self, constant: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("constant", constant.reshape(1, -1).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.constant.to(x.dtype).expand(x.shape[0], -1)], dim=1)


class ChannelsLast(nn.Module):
    """Runs ``module`` on NHWC ("channels_last") inputs: the memory layout lives outside the network's forward."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.module(x)


class ImageAdapter(nn.Module):
    """The one explicit map from a generator's images to the inputs a classifier expects.

    Generators and classifiers come from different places: a GAN with a tanh ends in (−1, 1), a classifier may
    want [0, 1] or [0, 255], often normalised per channel as (x − mean)/std. The adapter maps ``source_range``
    linearly onto ``target_range``, then normalises per channel, all as one affine map x ↦ a·x + b (per channel),
    so the bound engine sees a single elementwise step (with the float32 constants the forward uses) and
    :meth:`inverse` recovers the generator's image for pictures.
    """

    def __init__(
        self,
        source_range: tuple[float, float] = (0.0, 1.0),
        target_range: tuple[float, float] = (0.0, 1.0),
        mean: float | tuple[float, ...] | None = None,
        std: float | tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        (s_lo, s_hi), (t_lo, t_hi) = map(float, source_range), map(float, target_range)
        if not (s_hi > s_lo and t_hi > t_lo) or not all(map(math.isfinite, (s_lo, s_hi, t_lo, t_hi))):
            raise GenrobustError(
                f"ranges must be finite (low, high) with low < high, got {source_range}, {target_range}"
            )
        m = torch.as_tensor(0.0 if mean is None else mean, dtype=torch.float64).reshape(-1)
        s = torch.as_tensor(1.0 if std is None else std, dtype=torch.float64).reshape(-1)
        if len(m) != len(s) and min(len(m), len(s)) != 1:
            raise GenrobustError(f"mean has {len(m)} channels but std has {len(s)}")
        if not bool((s > 0).all()) or not bool(torch.isfinite(m).all() and torch.isfinite(s).all()):
            raise GenrobustError(f"std must be positive and finite and mean finite, got mean={mean}, std={std}")
        k = (t_hi - t_lo) / (s_hi - s_lo)
        scale, shift = k / s, (t_lo - s_lo * k - m) / s
        self.source_range, self.target_range = (s_lo, s_hi), (t_lo, t_hi)
        self.mean = None if mean is None else tuple(m.tolist())
        self.std = None if std is None else tuple(s.tolist())
        self.register_buffer("scale", scale.float(), persistent=False)
        self.register_buffer("shift", shift.float(), persistent=False)

    def _per_channel(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if t.numel() == 1:
            return t.reshape(())
        if x.ndim < 2 or x.shape[1] != t.numel():
            raise GenrobustError(f"the adapter normalises {t.numel()} channels, the images have shape {tuple(x.shape)}")
        return t.reshape(1, -1, *([1] * (x.ndim - 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._per_channel(self.scale, x).to(x.dtype) + self._per_channel(self.shift, x).to(x.dtype)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The generator's image back from the classifier's input."""
        return (y - self._per_channel(self.shift, y).to(y.dtype)) / self._per_channel(self.scale, y).to(y.dtype)

    def extra_repr(self) -> str:
        return f"source_range={self.source_range}, target_range={self.target_range}, mean={self.mean}, std={self.std}"


class BatchReshape(nn.Module):
    """x (N, ...) ↦ x reshaped to (N, *shape): a reshape that keeps the batch (ONNX Reshape and Flatten)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"
