"""Plumbing shared by estimation, attacks, verification and training: devices, derived seeds, progress bars,
batched predictions. Neutral ground, so that no analysis module reaches into ``train/`` for it."""

from __future__ import annotations

import sys

import numpy as np
import torch

from .errors import GenrobustError
from .models.layout import inference_copy


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` → CUDA when present, else the CPU; a named CUDA device that is absent is an error."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GenrobustError(f"device {device!r} requested but CUDA is not available")
    return dev


def sub_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (seed, epoch, ...), stable across runs and platforms."""
    if any(p < 0 for p in parts):
        raise GenrobustError(f"a seed must be a non-negative integer, got {min(parts)}")
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)


def progress(total: int, desc: str, enabled: bool, initial: int = 0):
    """A tqdm bar on stderr (disabled unless asked: library calls print nothing by default)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, initial=initial, disable=not enabled, file=sys.stderr, dynamic_ncols=True)


@torch.no_grad()
def predictions(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Predicted classes (on the CPU) of ``model`` in eval mode; the caller's model is not touched.

    Runs on an NHWC copy in batches of 128, the fastest setting on a CPU (benchmarks/bench_correctness.py).
    """
    was_training = model.training
    fast = inference_copy(model).eval()
    device = next(model.parameters()).device
    out = torch.cat([fast(x[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, x.shape[0], batch_size)])
    model.train(was_training)  # inference_copy may return the model itself (no convolutions)
    return out


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128) -> float:
    """Share of ``x`` classified as ``y``."""
    return int((predictions(model, x, batch_size) == y.cpu()).sum()) / max(1, x.shape[0])
