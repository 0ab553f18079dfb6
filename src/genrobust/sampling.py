"""The Monte Carlo loop that global correctness and global robustness share: seeded latent blocks per class, fed
chunk by chunk to an *outcome function*, with an optional stopping rule (a sequential test) per class.

Latents come in fixed blocks of :data:`BLOCK` drawn from per-(seed, class, block) streams, so the samples — and
hence the counts — do not depend on the chunk size used to evaluate them, and the same seed gives the same
centres to every estimate (correctness, robustness, attacks). Any block can be computed on another device or
machine.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import torch

from .errors import GenrobustError
from .runtime import progress, sub_seed

BLOCK = 1024

T = TypeVar("T")
#: (class, latents of the chunk on the CPU, their indices among the class's samples) → the chunk's outcome.
Outcome = Callable[[int, torch.Tensor, list[int]], T]
#: Called after each chunk of a class with that chunk's outcome; True stops the class (the decision is final).
StopRule = Callable[[T], bool]


def check_estimate_args(*, n: object, delta: float, confidence: float, seed: object, **counts: object) -> None:
    """The checks every Monte Carlo estimate makes of its arguments (one message per mistake)."""
    if not isinstance(n, numbers.Integral) or n <= 0:
        raise GenrobustError(f"n must be a positive integer, got {n!r}")
    if not 0 < delta < 1:
        raise GenrobustError(f"delta must be in (0, 1), got {delta}")
    if not 0 < confidence < 1:
        raise GenrobustError(f"confidence must be in (0, 1), got {confidence}")
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise GenrobustError(f"seed must be a non-negative integer, got {seed!r}")
    for name, value in counts.items():
        if not isinstance(value, numbers.Integral) or value <= 0:
            raise GenrobustError(f"{name} must be a positive integer, got {value!r}")


def check_classes(classes: Sequence[int] | None, count: int) -> list[int]:
    """The classes to estimate (default: all ``count``), each checked to be one of the family's."""
    wanted = list(range(count)) if classes is None else list(classes)
    if not wanted:
        raise GenrobustError("classes is empty: name at least one class to estimate")
    for c in wanted:
        if not (isinstance(c, numbers.Integral) and 0 <= c < count):
            raise GenrobustError(f"class {c} out of range 0..{count - 1}")
    repeated = sorted({c for c in wanted if wanted.count(c) > 1})
    if repeated:  # a class twice would be one estimate reported twice (and counted twice in the mean)
        raise GenrobustError(f"class {', '.join(map(str, repeated))} listed more than once in classes")
    return wanted


def latent_block(seed: int, cls: int, block: int, latent_dim: int) -> torch.Tensor:
    """The ``block``-th block of BLOCK latents of class ``cls``: N(0, I), float32, on the CPU."""
    gen = torch.Generator().manual_seed(sub_seed(seed, cls, block))
    return torch.randn(BLOCK, latent_dim, generator=gen)


def latents(seed: int, cls: int, n: int, latent_dim: int) -> torch.Tensor:
    """The first n latents of class ``cls`` for ``seed`` (the same whatever the batch size)."""
    blocks = [latent_block(seed, cls, b, latent_dim) for b in range(-(-n // BLOCK))]
    return torch.cat(blocks)[:n] if blocks else torch.empty(0, latent_dim)


@dataclass
class ClassRun(Generic[T]):
    """One class's chunk outcomes, in sample order, and the wall time they took."""

    cls: int
    parts: list[T] = field(default_factory=list)
    seconds: float = 0.0
    stopped: bool = False  # the stop rule ended the class before its n samples


def run_classes(
    classes: Sequence[int],
    latent_dim: int,
    outcome: Outcome[T],
    *,
    n: int,
    seed: int,
    chunk: int,
    start: int = 0,
    stop_rule: Callable[[int], StopRule[T]] | None = None,
    desc: str = "samples",
    show_progress: bool = False,
) -> list[ClassRun[T]]:
    """Feed each class's first ``n`` latents of ``seed`` (from index ``start`` on: the rest of a run that
    stopped there), ``chunk`` at a time, to ``outcome``.

    ``stop_rule(c)`` makes class c's stopping rule (e.g. a sequential test fed with the chunk's outcomes):
    the class ends after the first chunk for which it returns True. The chunk size changes only where a
    sequential run may stop, never the samples: they are the same blocks whatever ``chunk`` is.
    """
    if not isinstance(start, numbers.Integral) or not 0 <= start < n:
        raise GenrobustError(f"start must be in 0..n − 1 = {n - 1}, got {start}")
    runs: list[ClassRun[T]] = []
    bar = progress((n - start) * len(classes), desc, show_progress)
    try:
        for c in classes:
            run: ClassRun[T] = ClassRun(c)
            t0 = time.perf_counter()
            z_all = latents(seed, c, n, latent_dim)
            rule = stop_rule(c) if stop_rule is not None else None
            for lo in range(start, n, chunk):
                ids = list(range(lo, min(n, lo + chunk)))
                part = outcome(c, z_all[lo : lo + len(ids)], ids)
                run.parts.append(part)
                bar.update(len(ids))
                if rule is not None and rule(part):
                    run.stopped = True
                    break
            run.seconds = time.perf_counter() - t0
            runs.append(run)
    finally:
        bar.close()
    return runs
