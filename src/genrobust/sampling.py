"""The one Monte Carlo loop that every estimate shares (correctness, robustness, attacks over many starts, the
tables): seeded latents per class, cut into *shards* (class, first sample, one past the last) that an *outcome
task* turns into outcomes, with an optional stopping rule (a sequential test) per class.

Latents come in fixed blocks of :data:`BLOCK` drawn from per-(seed, class, block) streams, so the samples — and
hence the counts — do not depend on the shard size used to evaluate them, and the same seed gives the same
centres to every estimate. A shard draws its own latents from the seed, so it can run anywhere: in this process,
a local pool or a Dask cluster (:mod:`genrobust.execute`), with its outcome journaled (:mod:`genrobust.journal`).
"""

from __future__ import annotations

import concurrent.futures as cf
import numbers
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import torch

from .errors import GenrobustError
from .runtime import progress, settle_malloc, sub_seed

if TYPE_CHECKING:
    from .journal import Journal

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


def latent_range(seed: int, cls: int, lo: int, hi: int, latent_dim: int) -> torch.Tensor:
    """Latents lo..hi − 1 of class ``cls`` for ``seed``: the same rows as ``latents(...)[lo:hi]``, drawing only the
    blocks they lie in (a shard deep into a run does not draw the blocks before it)."""
    if hi <= lo:
        return torch.empty(0, latent_dim)
    first, last = lo // BLOCK, (hi - 1) // BLOCK
    z = torch.cat([latent_block(seed, cls, b, latent_dim) for b in range(first, last + 1)])
    return z[lo - first * BLOCK : hi - first * BLOCK]


@dataclass
class ClassRun(Generic[T]):
    """One class's shard outcomes, in sample order, and what they cost."""

    cls: int
    parts: list[T] = field(default_factory=list)
    seconds: float = 0.0  # the seconds its shards took (summed over workers; for one worker, its wall time)
    stopped: bool = False  # the stop rule ended the class before its n samples
    spent: int = 0  # samples computed, with shards already in flight past a stop (discarded, but paid for)


_SETTLED = False  # whether this process's malloc thresholds were settled (once per worker process)


def run_shard(
    outcome: Outcome[T], seed: int, cls: int, lo: int, hi: int, latent_dim: int, threads: int
) -> tuple[T, float]:
    """One shard, wherever it runs: class ``cls``'s samples lo..hi − 1 of ``seed`` through ``outcome``, on
    ``threads`` torch threads (the process's own setting back afterwards)."""
    global _SETTLED
    if not _SETTLED and os.environ.get("MALLOC_TRIM_THRESHOLD_"):  # a Dask worker (see settle_malloc)
        _SETTLED = settle_malloc() or True
    t0 = time.perf_counter()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        z = latent_range(seed, cls, lo, hi, latent_dim)
        part = outcome(cls, z, list(range(lo, hi)))
    finally:
        torch.set_num_threads(before)
    return part, time.perf_counter() - t0


#: how many times the shards in flight are resubmitted after the local pool broke (a worker process died)
RETRIES = 3


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
    unit: str = "samples",
    executor: Any = None,
    journal: Journal | None = None,
) -> list[ClassRun[T]]:
    """Feed each class's first ``n`` latents of ``seed`` (from index ``start`` on: the rest of a run that
    stopped there), in shards of ``chunk``, to ``outcome``, on ``executor`` (:func:`genrobust.execute.open_workers`:
    by default in this process, one shard at a time).

    A shard is (class, first sample, one past the last); its outcome depends on nothing else, so the answer is the
    same whatever runs it. With a pool, about twice as many shards as workers are in flight, and each class's
    outcomes are taken in sample order: ``stop_rule(c)`` (e.g. a sequential test) sees them exactly as it would in
    one process, the class ends after the first shard for which it returns True, and shards already in flight
    past that point are discarded (counted in :attr:`ClassRun.spent`). The chunk size changes only where a
    sequential run may stop, never the samples: they are the same blocks whatever ``chunk`` is.

    Off the caller's process, ``outcome.for_class(c)`` (where the outcome has it) is what class c's shards carry:
    a task with that class's generator only.

    With a ``journal`` every shard taken is written to it (``outcome.encode``) before the next is counted, and
    the shards it already holds are read back (``outcome.decode(obj, shard)``) instead of run: a killed run
    resumes where it stopped.
    """
    if not isinstance(start, numbers.Integral) or not 0 <= start < n:
        raise GenrobustError(f"start must be in 0..n − 1 = {n - 1}, got {start}")
    from .execute import open_workers

    workers = open_workers(executor)
    plan = {c: [(c, lo, min(n, lo + chunk)) for lo in range(start, n, chunk)] for c in classes}
    runs = {c: ClassRun[T](c) for c in classes}
    rules = {c: stop_rule(c) if stop_rule is not None else None for c in classes}
    finished: dict[tuple[int, int, int], tuple[T, float, bool]] = {}  # shard → (outcome, seconds, from the journal)
    if journal is not None:
        known = {key for keys in plan.values() for key in keys}
        for key, (secs, obj) in journal.done.items():
            if key not in known:
                raise GenrobustError(f"{journal.path}: shard {key} is not part of this run (another chunk size?)")
            finished[key] = (outcome.decode(obj, key), secs, True)  # type: ignore[attr-defined]
    next_taken = dict.fromkeys(classes, 0)  # index into plan[c] of the next shard to take
    queue = [key for c in classes for key in plan[c] if key not in finished]
    queue.reverse()  # popped from the end: in order
    inflight: dict[cf.Future, tuple[int, int, int]] = {}
    window = 1 if workers.inline else 2 * workers.count
    bar = progress((n - start) * len(classes), desc, show_progress, unit=f" {unit}")
    bar.set_postfix_str(workers.where)  # one bar over every shard: samples (balls) per second, and on what
    retries = 0

    def take() -> None:
        """Hand each class its finished shards in sample order, through its stop rule and into the journal."""
        for c in classes:
            run, keys = runs[c], plan[c]
            while not run.stopped and next_taken[c] < len(keys) and keys[next_taken[c]] in finished:
                key = keys[next_taken[c]]
                part, secs, replayed = finished.pop(key)
                if journal is not None and not replayed:
                    journal.append(key, secs, outcome.encode(part))  # type: ignore[attr-defined]
                run.parts.append(part)
                run.seconds += secs
                run.spent += key[2] - key[1]
                next_taken[c] += 1
                bar.update(key[2] - key[1])
                if rules[c] is not None and rules[c](part):
                    run.stopped = True
                    skipped = sum(hi - lo for _, lo, hi in keys[next_taken[c] :])
                    bar.total -= skipped
                    bar.refresh()

    payloads: dict[int, Any] = {}

    def submit(key: tuple[int, int, int]) -> None:
        c = key[0]
        if c not in payloads:  # what travels: the class's part of the task only, sent to a cluster once
            task = outcome if workers.inline else getattr(outcome, "for_class", lambda c: outcome)(c)
            payloads[c] = task if workers.inline else workers.share(task)
        inflight[workers.executor.submit(run_shard, payloads[c], seed, *key, latent_dim, workers.threads)] = key

    try:
        take()  # the journal's shards first: a class they already decided needs nothing more
        bar.refresh()  # show them now, not at the first new shard (minutes on a long run)
        while queue or inflight:
            while queue and len(inflight) < window:
                key = queue.pop()
                if not runs[key[0]].stopped:
                    submit(key)
            if not inflight:
                break
            done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
            for future in done:
                key = inflight.pop(future)
                try:
                    part, secs = future.result()
                except BrokenProcessPool:
                    retries += 1
                    if retries > RETRIES:
                        raise GenrobustError(
                            f"a worker process died {retries} times; last on shard {key}. Workers start fresh Python "
                            "processes that import your script: a script that starts them needs its code under "
                            '`if __name__ == "__main__":`, or each worker runs it again and dies'
                        ) from None
                    lost = [key, *inflight.values()]
                    inflight.clear()
                    workers.renew()
                    for k in lost:
                        submit(k)
                    break
                if runs[key[0]].stopped:
                    runs[key[0]].spent += key[2] - key[1]  # in flight past the stop: paid for, not counted
                else:
                    finished[key] = (part, secs, False)
            take()
    finally:
        for future in inflight:
            future.cancel()
        bar.close()
        if workers is not executor:
            workers.close()
    return [runs[c] for c in classes]
