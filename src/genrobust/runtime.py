"""Plumbing shared by estimation, attacks, verification and training: devices, the working copies of the
caller's models, derived seeds, progress bars, batched predictions. Neutral ground, so that no analysis module
reaches into ``train/`` for it."""

from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Iterator

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


def working_copy(
    model: torch.nn.Module, device: str | torch.device | None = None, *, fast: bool = False, finite: str | None = None
) -> torch.nn.Module:
    """The one rule for a caller's model: genrobust works on a copy and never changes the model itself (its
    device, train/eval mode, ``requires_grad`` flags, weights). The copy is on ``device`` (None: where the model
    is), in eval mode, with its parameters' gradients off: attacks differentiate with respect to inputs, never
    weights, and a frozen copy keeps autograd from recording its parameters.

    ``fast``: the copy laid out for fast batched inference (:func:`~genrobust.models.layout.inference_copy`, a
    copy already, so the model is copied once). ``finite``: refuse NaN or infinite weights, naming the model so
    (a bound over such weights would be NaN, and an attack's answer meaningless)."""
    out = inference_copy(model) if fast else model
    if out is model:
        out = copy.deepcopy(model)
    if device is not None:
        out = out.to(resolve_device(device))
    out = out.eval().requires_grad_(False)
    if finite is not None and not all(torch.isfinite(p).all() for p in out.parameters()):
        raise GenrobustError(f"the {finite} has NaN or infinite weights")
    return out


def sub_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (seed, epoch, ...), stable across runs and platforms."""
    if any(p < 0 for p in parts):
        raise GenrobustError(f"a seed must be a non-negative integer, got {min(parts)}")
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)


def progress(total: int, desc: str, enabled: bool, initial: int = 0, unit: str = "it"):
    """A tqdm bar on stderr (disabled unless asked: library calls print nothing by default)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, initial=initial, disable=not enabled, file=sys.stderr, dynamic_ncols=True,
                unit=unit)  # fmt: skip


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so that a kill at any moment leaves either the old file or the whole new one,
    never a torn one: a temporary file beside it, flushed to disk, then renamed over it (``os.replace`` is atomic
    on one file system). Caches of long runs are written this way: a torn cache would be refused on resume and
    lose every cell it held."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """An exclusive lock on ``path``.lock for the duration (POSIX ``flock``; held by one process at a time, released
    when it ends or dies), so that processes sharing a cache read, merge and write it one at a time. Where
    ``fcntl`` is missing (Windows) it does not lock: one process per cache there."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock = f"{os.fspath(path)}.lock"
    os.makedirs(os.path.dirname(lock) or ".", exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def eval_mode(*models: torch.nn.Module | None) -> Iterator[None]:
    """The models in eval mode (no dropout, batch norm on its running statistics) for the duration, then every
    submodule's own ``training`` flag back as it was: a library call must not leave the caller's model changed,
    and ``model.train(flag)`` afterwards would not do (it sets one flag on every submodule, so a batch-norm layer
    the caller had frozen inside a training model would come back training)."""
    flags = [(m, m.training) for model in models if model is not None for m in model.modules()]
    try:
        for model in models:
            if model is not None:
                model.eval()
        yield
    finally:
        for m, flag in flags:
            m.training = flag


@torch.no_grad()
def predictions(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Predicted classes (on the CPU) of ``model`` in eval mode; the caller's model is not touched.

    Runs on an NHWC copy in batches of 128, the fastest setting on a CPU (benchmarks/bench_correctness.py).
    """
    fast = inference_copy(model)
    device = next(model.parameters()).device
    with eval_mode(fast):  # inference_copy may return the model itself (no convolutions)
        return torch.cat([fast(x[i : i + batch_size].to(device)).argmax(1).cpu()
                          for i in range(0, x.shape[0], batch_size)])  # fmt: skip


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128) -> float:
    """Share of ``x`` classified as ``y``."""
    return int((predictions(model, x, batch_size) == y.cpu()).sum()) / max(1, x.shape[0])


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]  # fmt: skip


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """glibc's malloc statistics and trim (glibc ≥ 2.33 for ``mallinfo2``), or None on any other C library."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


#: glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def settle_malloc() -> bool:
    """Give glibc's malloc the thresholds its dynamic rule would reach on its own (blocks up to 32 MB from the
    heap, free pages kept up to 64 MB; :func:`release_heap` still trims after every bound computation).

    Why: Dask's workers, and every process started after a Dask ``LocalCluster`` in the same program, run with
    ``MALLOC_TRIM_THRESHOLD_=65536`` in their environment. A threshold set by the environment switches off glibc's
    dynamic mmap threshold, so every tensor above 128 KB is mapped and unmapped afresh, page faults included:
    measured on ``mnist-small`` ∘ ``mnist-gan`` (one thread), a worker ran global correctness 1.5× and the
    verifier 1.5× slower than the same process without the variable (``benchmarks/bench_scale.py``). Called by
    local pool workers at start and by every shard in a process whose environment sets the variable. A no-op
    returning False where the C library is not glibc."""
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
    return True


def release_heap(threshold_bytes: int = 256 << 20) -> bool:
    """Give the free pages of glibc's heap back to the system when more than ``threshold_bytes`` lie free in it.

    Why: the bound engine allocates and frees tensors of hundreds of MB whose sizes vary from box to box.
    glibc raises its mmap threshold after each large free, so later blocks of that size come from the heap,
    whose free holes it keeps resident. The verifier's peak memory then grows with the length of a run, not with
    its work. Called after every bound computation (``BoundEngine.margins``). Measured on 30 balls of
    ``mnist-small`` ∘ ``mnist-gan`` at ε = 0.05 (one process each, the benchmark's budget): peak 2.44 GB in 204 s
    without it; 2.25 GB in 217 s with it and 96 MB row chunks; 1.2 GB in 204 s with it and 16 MB chunks (the
    engine's default ``chunk_bytes``). Trimming after every chunk as well held the peak at 1.45 GB but took 246 s
    (the released pages are faulted in again), so it is not done. ``malloc_trim`` returns the holes' pages
    (``MADV_DONTNEED``) without moving anything, and only once the free total passes the threshold. A no-op
    returning False where the C library is not glibc.
    """
    libc = _glibc()
    if libc is None or libc.mallinfo2().fordblks <= threshold_bytes:
        return False
    libc.malloc_trim(0)
    return True
