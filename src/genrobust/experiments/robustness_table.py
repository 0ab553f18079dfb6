"""The table the paper could not run: global (ε, δ)-robustness of every correctness-table row against the
standard-data GAN, at several ε, with both bounds on P(robust) and their exact intervals.

Rows and their trained classifiers are the correctness table's (``correctness_table``: missing classifiers
are trained, in the same ``work`` folder, and reused by both tables). Every finished class of every row is
cached, so the command can be killed and rerun at any time and loses at most one class of work.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GenrobustError
from ..models.zoo import load_generators
from ..stats import clopper_pearson
from ..verify import VerifyOptions, global_robustness
from .correctness_table import GENERATORS, TablePlan, _classifier, check_rows, row_recipe


@dataclass
class RobustnessPlan:
    dataset: str
    n: int
    rows: list[str]
    work: Path
    eps: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.05])
    seed: int = 0
    classes: list[int] | None = None
    max_boxes: int = 64
    max_seconds: float = 30.0
    split: str = "gap"

    @property
    def cache(self) -> Path:
        eps = "-".join(f"{e:g}" for e in self.eps)
        return self.work / self.dataset / f"robustness-n{self.n}-seed{self.seed}-eps{eps}.json"

    @property
    def generators(self) -> str:
        return GENERATORS[self.dataset][0]  # the standard-data GAN

    @property
    def budget(self) -> dict[str, Any]:
        return {"max_boxes": self.max_boxes, "max_seconds": self.max_seconds, "split": self.split}


def run_robustness_table(
    plan: RobustnessPlan, *, data_dir: str | os.PathLike[str] | None = None, show_progress: bool = True
) -> dict[str, Any]:
    """Fill every (row, class) not cached; return {row: {recipe, source, classes: {c: per-ε counts}}}."""
    if plan.dataset not in GENERATORS:
        raise GenrobustError(f"no built-in generators for {plan.dataset!r}; choose one of {', '.join(GENERATORS)}")
    if not isinstance(plan.n, int) or plan.n <= 0:
        raise GenrobustError(f"n must be a positive integer, got {plan.n!r}")
    check_rows(plan.rows)
    gens = load_generators(plan.generators)
    classes = list(range(len(gens))) if plan.classes is None else plan.classes
    table: dict[str, Any] = json.loads(plan.cache.read_text()) if plan.cache.is_file() else {}
    options = VerifyOptions(max_boxes=plan.max_boxes, max_seconds=plan.max_seconds, split=plan.split)
    for row in plan.rows:
        recipe = row_recipe(plan.dataset, row)
        entry = table.get(row)
        if entry is None or entry.get("recipe") != recipe or entry.get("budget") != plan.budget:
            entry = table[row] = {"recipe": recipe, "budget": plan.budget, "classes": {}}  # stale: recompute
        missing = [c for c in classes if str(c) not in entry["classes"]]
        if not missing:
            continue
        clf, source = _classifier(TablePlan(plan.dataset, plan.n, plan.rows, plan.work), row, data_dir, show_progress)
        entry["source"] = source
        for c in missing:
            res = global_robustness(clf, gens, eps=plan.eps, n=plan.n, seed=plan.seed, classes=[c], options=options,
                                    show_progress=show_progress)  # fmt: skip
            cls = res.classes[0]
            entry["classes"][str(c)] = {
                "seconds": cls.seconds,
                "per_eps": [
                    {"eps": r.eps, "n": r.n, "certified": r.certified, "falsified": r.falsified, "unknown": r.unknown}
                    for r in cls.per_eps
                ],
            }
            plan.cache.parent.mkdir(parents=True, exist_ok=True)
            plan.cache.write_text(json.dumps(table, indent=2))  # every finished class survives a kill
    return {row: table[row] for row in plan.rows}


def robustness_markdown(table: dict[str, Any], plan: RobustnessPlan) -> str:
    """Per row and ε: certified ≤ P(robust) ≤ not falsified, pooled over classes with Clopper–Pearson ends,
    and the worst class's certified share."""
    head = "| classifier | " + " | ".join(f"ε = {e:g}: P(robust) bounds [95% ends] · worst class" for e in plan.eps)
    lines = [head + " |", "|---" * (1 + len(plan.eps)) + "|"]
    for row, entry in table.items():
        cells = []
        for e in range(len(plan.eps)):
            per = [(c, v["per_eps"][e]) for c, v in entry["classes"].items()]
            if not per:
                cells.append("…")
                continue
            n = sum(p["n"] for _, p in per)
            cert = sum(p["certified"] for _, p in per)
            alive = n - sum(p["falsified"] for _, p in per)
            lo, hi = clopper_pearson(cert, n, 0.95)[0], clopper_pearson(alive, n, 0.95)[1]
            worst_c, worst = min(per, key=lambda cp: cp[1]["certified"] / cp[1]["n"])
            cells.append(
                f"{100 * cert / n:.1f}–{100 * alive / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] · "
                f"{worst_c}: ≥ {100 * worst['certified'] / worst['n']:.0f}%"
            )
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    classes = sorted({c for e in table.values() for c in e["classes"]}, key=int)
    lines.append(
        f"\nAgainst `{plan.generators}`, n = {plan.n} centres per class (classes {', '.join(classes)}), seed "
        f"{plan.seed}; budget {plan.max_boxes} sub-boxes and {plan.max_seconds:g} s per ball, split `{plan.split}`. "
        "A range is the certified share – non-falsified share (the two bounds on P(robust)), pooled over classes; "
        "the brackets hold the one-sided ends of their Clopper–Pearson intervals (conservative for a pooled count)."
    )
    return "\n".join(lines)
