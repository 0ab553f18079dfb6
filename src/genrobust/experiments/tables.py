"""The two tables as results of the one protocol (:mod:`genrobust.results`): what ``reproduce correctness-table``
and ``reproduce robustness-table`` write, and what :func:`genrobust.load_result` reads back.

A table's rows are kept as its cache holds them (the per-class counts of every cell, and each row's recipe,
source and hashes), so a cell computed once is the same object in the cache, the JSON and the markdown; every
estimate, interval and verdict a reader asks for comes from :class:`~genrobust.stats.Proportion` objects built
from those counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import GenrobustError
from ..results import Provenance, Result, register
from ..stats import FAILS, HOLDS, UNDECIDED, Proportion, bonferroni_fails

__all__ = ["CorrectnessTable", "RobustnessTable"]


def _row(rows: dict[str, Any], row: str) -> dict[str, Any]:
    if row not in rows:
        raise GenrobustError(f"no row {row!r}; rows: {', '.join(rows)}")
    return rows[row]


@register
@dataclass
class CorrectnessTable(Result):
    """Global correctness of classifiers (rows) against generator families (columns), per class."""

    kind: ClassVar[str] = "correctness-table"
    dataset: str
    n: int
    seed: int
    train_seed: int
    rows: dict[str, dict[str, Any]]  # row → recipe, source, test accuracy, hashes, and a cell per family
    provenance: Provenance = field(default_factory=Provenance)
    confidence: float = 0.95

    def families(self, row: str) -> list[str]:
        """The columns this row has cells for."""
        return [k for k, v in _row(self.rows, row).items() if isinstance(v, dict) and "classes" in v]

    def shares(self, row: str, family: str) -> list[Proportion]:
        """Per class of the cell: correct of the samples, with its exact interval."""
        cell = _row(self.rows, row).get(family)
        if not isinstance(cell, dict) or "classes" not in cell:
            raise GenrobustError(f"row {row!r} has no cell for {family!r}; it has: {', '.join(self.families(row))}")
        return [Proportion(int(c["correct"]), int(c["n"]), self.confidence) for c in cell["classes"]]

    def verdict(self, row: str, family: str, delta: float = 0.05) -> str:
        """δ-correctness of the row's classifier against the family, as :attr:`~genrobust.CorrectnessResult.verdict`
        says it: holds if every class holds, fails if a class fails after Bonferroni over the classes."""
        shares = self.shares(row, family)
        if any(bonferroni_fails(p.k, p.n, delta, p.confidence, len(shares)) for p in shares):
            return FAILS
        return HOLDS if all(p.verdict(delta) == HOLDS for p in shares) else UNDECIDED

    def markdown(self) -> str:
        from .correctness_table import to_markdown

        return to_markdown(self.rows, self.dataset, self.n)

    def body(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "n": self.n, "seed": self.seed, "train_seed": self.train_seed,
                "confidence": self.confidence, "rows": self.rows}  # fmt: skip

    @classmethod
    def from_body(cls, body: dict[str, Any], provenance: Provenance) -> CorrectnessTable:
        return cls(str(body["dataset"]), int(body["n"]), int(body["seed"]), int(body.get("train_seed", 0)),
                   dict(body["rows"]), provenance, float(body.get("confidence", 0.95)))  # fmt: skip


@register
@dataclass
class RobustnessTable(Result):
    """Global robustness of classifiers (rows) against one generator family, per class and ε: each ball certified,
    falsified or unknown, under one verifier budget."""

    kind: ClassVar[str] = "robustness-table"
    dataset: str
    generators: str
    eps: list[float]
    n: int
    seed: int
    train_seed: int
    budget: dict[str, Any]  # max_boxes, max_seconds, split
    rows: dict[str, dict[str, Any]]  # row → recipe, budget, source, classes: {c: seconds, per_eps counts, status}
    provenance: Provenance = field(default_factory=Provenance)
    confidence: float = 0.95

    def _counts(self, row: str, eps: float, cls: int | None) -> tuple[int, int, int]:
        e = next((i for i, v in enumerate(self.eps) if abs(v - eps) <= 1e-12 * max(1.0, abs(v))), None)
        if e is None:
            raise GenrobustError(f"ε = {eps} is not in the table; it has {', '.join(f'{v:g}' for v in self.eps)}")
        classes = _row(self.rows, row)["classes"]
        if cls is not None and str(cls) not in classes:
            raise GenrobustError(f"row {row!r} has no class {cls}; it has {', '.join(classes)}")
        per = [v["per_eps"][e] for c, v in classes.items() if cls is None or c == str(cls)]
        if not per:
            raise GenrobustError(f"row {row!r} has no balls yet")
        return (sum(p["n"] for p in per), sum(p["certified"] for p in per), sum(p["falsified"] for p in per))

    def certified(self, row: str, eps: float, cls: int | None = None) -> Proportion:
        """Certified balls of a class (or pooled over the row's classes): its lower end bounds P(robust)."""
        n, cert, _ = self._counts(row, eps, cls)
        return Proportion(cert, n, self.confidence)

    def not_falsified(self, row: str, eps: float, cls: int | None = None) -> Proportion:
        """Balls no attack broke: its upper end bounds P(robust)."""
        n, _, fals = self._counts(row, eps, cls)
        return Proportion(n - fals, n, self.confidence)

    def verdict(self, row: str, eps: float, delta: float = 0.05) -> str:
        """(ε, δ)-robustness of the row's classifier: holds if every class's certified share holds, fails if some
        class's non-falsified share fails after Bonferroni over the classes, else undecided."""
        classes = [int(c) for c in _row(self.rows, row)["classes"]]
        alive = [self.not_falsified(row, eps, c) for c in classes]
        if any(bonferroni_fails(p.k, p.n, delta, p.confidence, len(classes)) for p in alive):
            return FAILS
        return HOLDS if all(self.certified(row, eps, c).verdict(delta) == HOLDS for c in classes) else UNDECIDED

    def markdown(self) -> str:
        from .robustness_table import RobustnessPlan, robustness_markdown

        plan = RobustnessPlan(self.dataset, self.n, list(self.rows), Path("."), list(self.eps), self.seed, None,
                              self.budget["max_boxes"], self.budget["max_seconds"], self.budget["split"],
                              train_seed=self.train_seed)  # fmt: skip
        return robustness_markdown(self.rows, plan)

    def body(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "generators": self.generators, "eps": self.eps, "n": self.n,
                "seed": self.seed, "train_seed": self.train_seed, "budget": self.budget,
                "confidence": self.confidence, "rows": self.rows}  # fmt: skip

    @classmethod
    def from_body(cls, body: dict[str, Any], provenance: Provenance) -> RobustnessTable:
        return cls(str(body["dataset"]), str(body["generators"]), [float(e) for e in body["eps"]], int(body["n"]),
                   int(body["seed"]), int(body.get("train_seed", 0)), dict(body["budget"]), dict(body["rows"]),
                   provenance, float(body.get("confidence", 0.95)))  # fmt: skip
