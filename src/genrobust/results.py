"""One protocol for every result genrobust writes, and :func:`load_result` to read any of them back.

A result (correctness, robustness, attack, rare failures, the two tables) is a dataclass that

- holds its counts as :class:`~genrobust.stats.Proportion` objects, never copies of their fields, so an estimate,
  its exact interval and its δ verdict come from one place;
- says ``verdict`` the same way (a property for one run, a method of the cell for a table);
- carries a :class:`Provenance`: the parameters it was asked with, the content hashes of the models it judged
  and the genrobust version that made it;
- writes JSON as ``{"kind", "format_version", "genrobust", "parameters", "models", ...its body}`` and is read
  back into the same class by :func:`load_result`, which dispatches on ``kind``.

Drawing lives in :mod:`genrobust.report`, which takes these objects: a result knows its numbers, not its pictures.
A file written before the protocol (no ``format_version``) is read where its body holds the whole result
(correctness, robustness, rare failures); an attack file of that age held only its examples and is refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .errors import GenrobustError
from .runtime import write_atomic

__all__ = ["FORMAT_VERSION", "Provenance", "Result", "load_result", "model_hashes"]

#: The JSON layout's version: 2 is the first with ``kind`` and ``format_version`` (1 had neither, or robustness's
#: ``"format": "genrobust-robustness/1"``). A reader refuses a newer version rather than misread it.
FORMAT_VERSION = 2
_KINDS: dict[str, type[Result]] = {}
R = TypeVar("R", bound="type[Result]")
T = TypeVar("T", bound="Result")


def _version() -> str:
    from . import __version__

    return __version__


@dataclass
class Provenance:
    """What a result was made from: the call's parameters, the models' content hashes
    (:func:`genrobust.execute.content_hash`: equal hashes mean the same function) and the genrobust version."""

    parameters: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    genrobust: str = field(default_factory=_version)

    def to_dict(self) -> dict[str, Any]:
        return {"genrobust": self.genrobust, "parameters": self.parameters, "models": self.models}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Provenance:
        return cls(dict(d.get("parameters") or {}), dict(d.get("models") or {}), str(d.get("genrobust") or "unknown"))


def model_hashes(classifier: Any = None, generators: Any = None, classes: list[int] | None = None) -> dict[str, Any]:
    """The content hashes of a classifier and of the generators of ``classes`` (all by default), for a result's
    provenance: a reader can tell whether two results judged the same models."""
    from .execute import content_hash

    out: dict[str, Any] = {}
    if classifier is not None:
        out["classifier"] = content_hash(classifier)
    if generators is not None:
        wanted = range(len(generators)) if classes is None else classes
        out["generators"] = {str(c): content_hash(generators[c]) for c in wanted}
    return out


class Result:
    """The protocol's shared half. A subclass is a dataclass with a ``provenance`` field, names its ``kind``, and
    implements :meth:`body` (its own JSON) and :meth:`from_body` (the inverse); :func:`register` makes
    :func:`load_result` know it."""

    kind: ClassVar[str] = ""
    provenance: Provenance

    def body(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_body(cls, body: dict[str, Any], provenance: Provenance) -> Result:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data: the envelope (kind, format version, provenance), then the body."""
        return {"kind": self.kind, "format_version": FORMAT_VERSION, **self.provenance.to_dict(), **self.body()}

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` to ``path`` (atomically: a kill leaves the old file or the new one)."""
        write_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def with_generators(self: T, generators: Any) -> T:
        """A copy of this result with ``generators`` attached, for what needs the models after :func:`load_result`
        (drawing a correctness run's outliers, a rare-failure run's failures). The family must be the one the
        result judged: every class the provenance hashed is checked against it
        (:func:`~genrobust.execute.content_hash`), so that pictures are never drawn from other weights than the
        numbers beside them. A result whose file records no generator hashes (from before format 2) is refused."""
        import dataclasses

        from .execute import content_hash

        if not any(f.name == "generators" for f in dataclasses.fields(self)):  # type: ignore[arg-type]
            raise GenrobustError(f"a {self.kind} result keeps no generators: nothing to attach them to")
        recorded = self.provenance.models.get("generators")
        if not recorded:
            raise GenrobustError(f"this {self.kind} result records no generator hashes (a file from before format "
                                 "2): it cannot tell whether these generators are the ones it judged")  # fmt: skip
        if not hasattr(generators, "__getitem__") or not hasattr(generators, "__len__"):
            raise GenrobustError(f"generators must be a GeneratorFamily, got {type(generators).__name__}")
        for cls_name, digest in sorted(recorded.items(), key=lambda kv: int(kv[0])):
            c = int(cls_name)
            if c >= len(generators):
                raise GenrobustError(f"the result judged class {c}, but the family has {len(generators)} classes")
            if content_hash(generators[c]) != digest:
                raise GenrobustError(f"class {c}'s generator is not the one this result judged (its SHA-256 differs "
                                     "from the result's provenance)")  # fmt: skip
        return dataclasses.replace(self, generators=generators)  # type: ignore[type-var]


def register(cls: R) -> R:
    """Class decorator: :func:`load_result` reads files of ``cls.kind`` into ``cls``."""
    if not cls.kind or cls.kind in _KINDS:
        raise ValueError(f"result kind {cls.kind!r} is empty or taken")
    _KINDS[cls.kind] = cls
    return cls


def _known_kinds() -> dict[str, type[Result]]:
    from . import attacks, estimate, rare  # noqa: F401  (each registers its kinds on import)
    from .experiments import tables  # noqa: F401
    from .verify import robustness  # noqa: F401

    return _KINDS


def _legacy(data: dict[str, Any], where: str) -> dict[str, Any]:
    """A file from before ``format_version``: its kind from the keys it had (the only place that guesses)."""
    if data.get("format") == "genrobust-robustness/1":
        return {**data, "kind": "robustness"}
    if data.get("method") == "amls":
        return {**data, "kind": "rare-failures", "failure": data.get("kind", "correctness")}
    if "method" in data and "metrics" in data:
        raise GenrobustError(f"{where}: an attack result from before genrobust's result format 2 holds only its "
                             "examples and cannot be read back; run the attack again")  # fmt: skip
    if "verdict" in data and "classes" in data and "delta" in data:
        return {**data, "kind": "correctness"}
    raise GenrobustError(f"{where}: not a genrobust result (no kind, and not a result from before format 2)")


def load_result(source: str | os.PathLike[str] | dict[str, Any]) -> Result:
    """Read a result that :meth:`Result.save_json` wrote (a path, a run folder holding ``result.json``, or the
    parsed dict) back into its class: :class:`~genrobust.CorrectnessResult`, :class:`~genrobust.RobustnessResult`,
    :class:`~genrobust.AttackResult`, :class:`~genrobust.RareFailureResult`, or a table
    (:class:`~genrobust.experiments.tables.CorrectnessTable`, :class:`~genrobust.experiments.tables.RobustnessTable`).

    The models themselves are not in the file: a loaded result has no generators attached. Its numbers, tables and
    verdicts do not need them; drawing its outliers or failures does: :meth:`Result.with_generators` attaches the
    family it judged (checked by content hash)."""
    if isinstance(source, dict):
        data, where = source, "the result"
    else:
        path = Path(source)
        if path.is_dir():
            path = path / "result.json"
        where = str(path)
        if not path.is_file():
            raise GenrobustError(f"{where}: no such result file")
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            raise GenrobustError(f"{where}: not valid JSON") from None
        if not isinstance(data, dict):
            raise GenrobustError(f"{where}: not a genrobust result (the JSON is not an object)")
    version = data.get("format_version")
    if version is None:
        data = _legacy(data, where)
    elif not isinstance(version, int) or version > FORMAT_VERSION:
        raise GenrobustError(f"{where}: result format {version!r} is newer than this genrobust reads "
                             f"({FORMAT_VERSION}); upgrade genrobust")  # fmt: skip
    kinds = _known_kinds()
    kind = data.get("kind")
    if kind not in kinds:
        raise GenrobustError(f"{where}: unknown result kind {kind!r}; known: {', '.join(sorted(kinds))}")
    body = {k: v for k, v in data.items() if k not in ("kind", "format_version", "genrobust", "parameters", "models")}
    try:
        return kinds[kind].from_body(body, Provenance.from_dict(data))
    except GenrobustError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise GenrobustError(f"{where}: a {kind} result with a missing or malformed field ({exc!r})") from None
