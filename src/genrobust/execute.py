"""Where shards of work run — in the caller's process, on a local pool of processes, or on a Dask cluster — and
how the models reach the workers.

Every estimate cuts its work into shards (:mod:`genrobust.sampling`) whose outcomes depend only on (seed, class,
sample indices), so *where* a shard runs never changes its answer. A shard is one call of a picklable task
object; the task holds its models as :class:`Shipped` values: in the caller's process they are the caller's
private copies, used as they are; in a worker they travel as bytes with a content hash, and the first shard a
worker runs with that hash builds them and keeps them (:func:`worker_cached`), so later shards skip the build.
No closure is ever pickled.

:func:`open_workers` turns the user's choice (``executor=``, ``--workers N``, ``--scheduler ADDRESS`` or the
``GENROBUST_SCHEDULER`` environment variable) into a :class:`Workers`: an executor, how many shards it runs at
once, and whether genrobust started it (and so shuts it down).
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import hashlib
import multiprocessing
import os
import pickle
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from .errors import GenrobustError
from .runtime import settle_malloc

SCHEDULER_ENV = "GENROBUST_SCHEDULER"
#: how long to wait for a Dask scheduler before saying it is unreachable
CONNECT_TIMEOUT = "10s"
#: how many built objects a worker keeps (models, verifiers): the newest ones, the oldest dropped first
CACHE_SIZE = 24

V = TypeVar("V")


class InlineExecutor(cf.Executor):
    """Runs each call at once, in the caller's process and thread: the default, with nothing pickled or copied."""

    def submit(self, fn: Callable[..., V], /, *args: Any, **kwargs: Any) -> cf.Future[V]:
        future: cf.Future[V] = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def _start_worker(threads: int) -> None:
    """A local pool process's set-up: its torch threads, and malloc's thresholds (see
    :func:`genrobust.runtime.settle_malloc`: it may have inherited a Dask-set environment)."""
    torch.set_num_threads(threads)
    settle_malloc()


@dataclass
class Workers:
    """An executor with what the shard runner needs to know of it: how many shards it runs at once (the runner
    keeps about twice that many in flight), a label for the progress bar, and how to restart it when a local
    worker died (a broken process pool refuses all further work; a Dask scheduler retries on its own).

    ``threads`` is the number of torch threads every shard runs with, wherever it runs: float32 sums split over
    a different number of threads can round differently in their last bits (a softmax confidence in its seventh
    digit, a PGD step, hence a witness), so runs with equal ``threads`` give identical files and others may not.
    In the caller's process it defaults to torch's setting; a local pool and a Dask cluster run every shard on
    one thread (start Dask workers with ``--nthreads 1``, one per core), so pools of any size and a cluster give
    identical results, and the caller's process does too with ``threads=1``."""

    executor: cf.Executor
    count: int = 1
    where: str = "in-process"
    owned: bool = False
    threads: int = 1
    restart: Callable[[], cf.Executor] | None = field(default=None, repr=False)
    client: Any = field(default=None, repr=False)

    @property
    def inline(self) -> bool:
        return isinstance(self.executor, InlineExecutor)

    def renew(self) -> None:
        """Replace a broken local pool by a fresh one (the shards in flight are then submitted again)."""
        if self.restart is None:
            raise GenrobustError(f"the workers ({self.where}) failed and cannot be restarted")
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self.restart()

    def share(self, task: Any) -> Any:
        """What to submit in place of ``task``: on Dask, a future of it (a worker fetches it once, from the
        scheduler's graph or a peer, and no shard carries the models again); elsewhere the task itself.

        A task that returns ``task``, not ``scatter``: scattered data is not part of the graph, so a worker
        that died while holding it took it with it (with ``broadcast=True`` a scatter during a death waited 30 s
        per retry on the dead worker and then failed the run), while a task's result is recomputed elsewhere."""
        if self.client is None:
            return task
        with warnings.catch_warnings():  # "Sending large graph": it is sent once per class, on purpose
            warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
            return self.client.submit(_same, task, pure=False)

    def accelerated(self) -> bool:
        """Whether the shards land on a GPU: one of Dask's workers has one (asked once per call), or this machine
        does (the caller's process and a local pool). Estimates then default to larger shards and batches."""
        if self.client is not None:
            return any(self.client.run(_has_cuda).values())
        return torch.cuda.is_available()

    def close(self) -> None:
        """Shut down what genrobust started; an executor the caller passed in stays the caller's."""
        if self.owned:
            if self.client is not None:  # Dask's executor has no cancel_futures
                self.executor.shutdown(wait=True)
                self.client.close()
            else:
                self.executor.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Stop what genrobust started at once, for a run that was interrupted (Ctrl-C, or SIGTERM through the
        command line): local worker processes are terminated instead of finishing their shards (a journal keeps
        the finished ones; a kill of the parent alone used to leave them computing), a Dask client closed."""
        if not self.owned:
            return
        if self.client is not None:
            self.client.close()
            return
        procs = list((getattr(self.executor, "_processes", None) or {}).values())  # a process pool's children
        self.executor.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=5)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            self.abort()
        else:
            self.close()


def _same(task: Any) -> Any:
    return task


def _has_cuda() -> bool:
    return torch.cuda.is_available()


def local_pool(count: int, threads: int = 1) -> Workers:
    """``count`` worker processes on this machine, ``threads`` torch threads each (started by *spawn*: a forked
    child of a process that already ran torch's thread pools can hang). One thread each by default, so that a
    pool of any size gives the same bits (see :class:`Workers`); give N workers for N cores."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise GenrobustError(f"workers must be a whole number ≥ 1, got {count!r}")

    def start() -> cf.Executor:
        return cf.ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_start_worker, initargs=(threads,))  # fmt: skip

    label = f"{count} local process{'es' if count > 1 else ''}"
    return Workers(start(), count, label, owned=True, threads=threads, restart=start)


def dask_workers(scheduler: Any) -> Workers:
    """A Dask distributed cluster: a scheduler's address (``tcp://host:port``) or a ``distributed.Client``.
    Its workers run the shards; the scheduler retries a shard whose worker died, on another worker."""
    try:
        from distributed import Client
    except ImportError:
        raise GenrobustError("a Dask scheduler needs Dask: pip install 'genrobust[dask]'") from None
    owned = not isinstance(scheduler, Client)
    if owned:
        try:
            client = Client(str(scheduler), timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise GenrobustError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    else:
        client = scheduler
    count = max(1, sum(client.nthreads().values()))
    return Workers(client.get_executor(pure=False), count, f"dask {client.scheduler.address} ({count} threads)",
                   owned=owned, client=client)  # fmt: skip


def open_workers(
    executor: Any = None, *, workers: int | None = None, scheduler: str | None = None, threads: int | None = None
) -> Workers:
    """The executor for a run, from the first of: ``executor`` (a ``concurrent.futures.Executor``, a
    ``distributed.Client``, a Dask scheduler's address or a :class:`Workers`), ``workers`` (a local pool),
    ``scheduler`` or the ``GENROBUST_SCHEDULER`` environment variable (a Dask cluster); otherwise the caller's
    process. ``threads``: torch threads per shard (see :class:`Workers`)."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise GenrobustError(f"threads must be a whole number ≥ 1, got {threads!r}")
    if isinstance(executor, Workers):
        return executor
    scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if isinstance(executor, str) or (executor is None and workers is None and scheduler):
        chosen = dask_workers(executor or scheduler)
    elif executor is not None:
        if hasattr(executor, "get_executor"):  # a distributed.Client
            chosen = dask_workers(executor)
        elif not isinstance(executor, cf.Executor):
            raise GenrobustError(f"executor must be a concurrent.futures.Executor or a Dask Client, got {executor!r}")
        else:
            chosen = Workers(executor, int(getattr(executor, "_max_workers", None) or 1), type(executor).__name__)
    elif workers is not None:
        chosen = local_pool(workers, threads or 1)
    else:
        chosen = Workers(InlineExecutor(), threads=torch.get_num_threads())
    if threads is not None:
        chosen.threads = threads
    return chosen


# --- the worker side: models by content, built once per worker ---------------------------------------------------

_CACHE: OrderedDict[Hashable, Any] = OrderedDict()
_CACHE_LOCK = threading.RLock()  # reentrant: building a verifier gets its models from the cache


def worker_cached(key: Hashable, build: Callable[[], V]) -> V:
    """The object built for ``key`` in this process, building it on first use; the newest :data:`CACHE_SIZE`
    are kept. Why: a worker runs many shards of one run, and re-tracing the networks or rebuilding a verifier for
    each would cost more than the shard (the robustness table once did so every 10 balls)."""
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        value = build()
        _CACHE[key] = value
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
        return value


def content_hash(obj: Any) -> str:
    """A SHA-256 of a model's architecture (its ``repr``) and of every tensor it computes with: its state (names,
    dtypes, shapes, bytes) and its non-persistent buffers, which ``state_dict`` leaves out but which change the
    function (a conditional generator's one-hot class is one: without it every class of a family would hash alike,
    and a worker would reuse class 0's network for every class). Equal hashes mean the same function. A tensor
    hashes its dtype, shape and bytes; other objects their pickle."""
    h = hashlib.sha256()
    if isinstance(obj, nn.Module):
        h.update(f"{type(obj).__module__}.{type(obj).__qualname__}\n{obj!r}".encode())
        state = obj.state_dict()
        extra = {f"(buffer) {k}": v for k, v in obj.named_buffers(remove_duplicate=False) if k not in state}
        for name, t in (state | extra).items():
            t = t.detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    else:
        h.update(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return h.hexdigest()


class Shipped:
    """A model that a task takes to its workers. In the process that made it, :meth:`get` returns the object itself.
    Pickled, it travels as (hash, bytes of a CPU copy); in a worker, :meth:`get` returns the copy that worker
    built from the first shard with that hash, moved to the worker's device once. The bytes are the caller's
    own objects in flight between the caller's processes, never read from a file."""

    def __init__(self, obj: Any, key: str | None = None) -> None:
        self.obj: Any = obj
        self._key = key
        self._blob: bytes | None = None

    @property
    def key(self) -> str:
        """The content hash, computed when first needed (a run in the caller's process without a journal never
        needs it, and hashing the built-in generators costs about 0.2 s)."""
        if self._key is None:
            self._key = content_hash(self.obj)
        return self._key

    def __getstate__(self) -> dict[str, Any]:
        if self._blob is None:
            obj = self.obj
            if isinstance(obj, nn.Module) and any(t.device.type != "cpu" for t in obj.state_dict().values()):
                obj = copy.deepcopy(obj).cpu()
            try:
                self._blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                raise GenrobustError(
                    f"{type(self.obj).__name__} cannot be sent to worker processes ({exc}); run in-process, or "
                    "define the model's classes in an importable module"
                ) from None
        return {"key": self.key, "blob": self._blob}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._key, self._blob, self.obj = state["key"], state["blob"], None

    def get(self, device: torch.device | None = None) -> Any:
        if self.obj is not None:
            return self.obj
        blob = self._blob

        def build() -> Any:
            obj = pickle.loads(blob)
            return obj.to(device) if device is not None and isinstance(obj, nn.Module) else obj

        return worker_cached(("shipped", self.key, str(device)), build)


class ClassTask:
    """A task whose shards each need one class's generator (``generators``: class → :class:`Shipped`): off the
    caller's process a shard of class c carries :meth:`for_class` (the family's other generators stay home)."""

    generators: dict[int, Shipped]

    def for_class(self, c: int) -> ClassTask:
        task = copy.copy(self)
        task.generators = {c: self.generators[c]}
        return task

    def generator_keys(self) -> dict[str, str]:
        """The content hash of each class's generator (for a journal's header)."""
        return {str(c): g.key for c, g in self.generators.items()}
