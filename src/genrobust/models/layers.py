"""Small parameter-free modules that keep every network's ``forward`` a pure chain of modules.

The bound engine (``genrobust.bounds``) reads a network as a chain of modules; an arithmetic step written
inline in a ``forward`` (``x * 0.5 + 0.5``, a ``torch.cat`` with a constant) would be invisible to a module walk
and awkward for a graph capture. Each step here is a module the engine's operator table knows.
"""

from __future__ import annotations

import torch
from torch import nn


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
