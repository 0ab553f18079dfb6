"""A run's journal: one line per finished shard, so that a killed run resumes where it stopped and counts nothing
twice.

The file is JSON lines. The first line is the header: the format, the kind of run, its parameters and the
hashes of its models; a resumed run must match it exactly, or it is refused with what differs. Every later line
is one shard: its class, its sample range, the seconds it took, and its outcome in a lossless JSON form
(:func:`encode_tensor`). Each line is written whole, flushed and fsynced before the next shard is counted, so a
kill leaves at most the last line torn; that line is detected on resume, cut off, and its shard redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .errors import GenrobustError

FORMAT = "genrobust-journal/1"
ShardKey = tuple[int, int, int]  # (class, first sample, one past the last)


def encode_tensor(t: torch.Tensor) -> dict[str, Any]:
    """A tensor as JSON: dtype, shape and values. Floats go through Python floats (doubles), which hold float32
    values exactly and print the shortest text that reads back to the same double; NaN and infinities use
    Python's JSON extensions."""
    t = t.detach().cpu()
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "data": t.reshape(-1).tolist()}


def decode_tensor(obj: dict[str, Any]) -> torch.Tensor:
    dtype = getattr(torch, obj["dtype"], None)
    if not isinstance(dtype, torch.dtype):
        raise GenrobustError(f"journal: unknown tensor dtype {obj['dtype']!r}")
    return torch.tensor(obj["data"], dtype=dtype).reshape(obj["shape"])


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The keys whose values differ between two headers, with both values (nested keys joined by dots)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(k, "(absent)"), new.get(k, "(absent)"), f"{prefix}{k}.")
        return out
    if old != new:
        return [f"{prefix.rstrip('.')} is {json.dumps(old)[:60]} there, {json.dumps(new)[:60]} here"]
    return []


class JournalMismatch(GenrobustError):
    """A journal written by another run (other parameters, models or verifier)."""


class Journal:
    """The journal at ``path`` for a run described by ``header``.

    A new run (``resume=False``) needs a path with no journal yet (a run never appends to another's). A resumed
    run (``resume=True``) needs one whose header matches; :attr:`done` then holds its finished shards.
    """

    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any], *, resume: bool = False) -> None:
        self.path = Path(path)
        self.header = {"format": FORMAT, **json.loads(json.dumps(header))}  # as it reads back from the file
        self.done: dict[ShardKey, tuple[float, Any]] = {}
        exists = self.path.is_file() and self.path.stat().st_size > 0
        if resume and not exists:
            raise GenrobustError(f"nothing to resume: no journal at {self.path}")
        if not resume and exists:
            raise GenrobustError(f"{self.path} already holds a run's journal: resume it (--resume, resume=True) "
                                 "or write to another folder")  # fmt: skip
        if resume:
            self._read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w") as fh:
                self._write(fh, self.header)
        self._fh = open(self.path, "a")  # noqa: SIM115 - held for the run, closed by close()

    def _read(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        good = 0  # bytes up to the end of the last whole, readable line
        for i, raw in enumerate(lines):
            last = i == len(lines) - 1
            if last and not raw:
                break  # the file ends with a newline: nothing torn
            try:
                if last:
                    raise ValueError("no newline at its end")
                obj = json.loads(raw)
            except ValueError as exc:
                if i == 0:
                    raise GenrobustError(f"{self.path} is not a genrobust journal (its header is unreadable)") from None
                if last or (i == len(lines) - 2 and not lines[-1]):
                    print(f"note: {self.path}: the last line was torn by the kill ({exc}); its shard is redone",
                          file=sys.stderr)  # fmt: skip
                    break
                raise GenrobustError(f"{self.path}: line {i + 1} is corrupt ({exc}); it cannot be resumed") from None
            if i == 0:
                self._check_header(obj)
            else:
                try:
                    key = (int(obj["cls"]), int(obj["lo"]), int(obj["hi"]))
                    self.done[key] = (float(obj["seconds"]), obj["part"])
                except (KeyError, TypeError, ValueError):
                    raise GenrobustError(f"{self.path}: line {i + 1} is not a shard of this run") from None
            good += len(raw) + 1
        if good < len(data):
            with open(self.path, "r+b") as fh:  # cut the torn line off, so the redone shard's line starts clean
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())

    def _check_header(self, found: Any) -> None:
        if not isinstance(found, dict) or found.get("format") != FORMAT:
            raise GenrobustError(f"{self.path} is not a genrobust journal ({FORMAT})")
        diff = _differences(found, self.header)
        if diff:
            raise JournalMismatch(f"{self.path} belongs to another run: {'; '.join(diff[:4])}"
                                 + (f" (and {len(diff) - 4} more)" if len(diff) > 4 else ""))  # fmt: skip

    @staticmethod
    def _write(fh: Any, obj: Any) -> None:
        fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
        fh.flush()
        os.fsync(fh.fileno())

    def append(self, key: ShardKey, seconds: float, part: Any) -> None:
        """Record a finished shard (its outcome already in JSON form); on disk before this returns."""
        cls, lo, hi = key
        self._write(self._fh, {"cls": cls, "lo": lo, "hi": hi, "seconds": seconds, "part": part})

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_journal(path: str | os.PathLike[str] | None, header: Callable[[], dict[str, Any]], resume: bool) -> Any:
    """The run's :class:`Journal` at ``path``, or a context that yields None when the run keeps none. ``header``
    is called only for a journal: it hashes the models."""
    if path is None:
        if resume:
            raise GenrobustError("resume needs the journal of the run to continue (journal=, or --out with --resume)")
        return contextlib.nullcontext(None)
    return Journal(path, header(), resume=resume)


def resumed_or_fresh(run: Callable[..., Any], journal: Path, *args: Any, **kwargs: Any) -> Any:
    """``run(*args, journal=journal, resume=…, **kwargs)``, continuing a killed run's journal when there is one.
    A journal another run left there (other arguments, models or verifier version) is set aside as ``*.stale``
    with a note, and the work starts again: the tables' cells call this, so a changed recipe never mixes old
    shards with new ones."""
    if journal.is_file():
        try:
            return run(*args, journal=journal, resume=True, **kwargs)
        except JournalMismatch as exc:
            print(f"note: {exc}; starting again", file=sys.stderr)
            journal.replace(journal.with_suffix(".stale"))
    return run(*args, journal=journal, resume=False, **kwargs)
