"""The table the paper could not run: global (ε, δ)-robustness of every correctness-table row against the
standard-data GAN, at several ε, with both bounds on P(robust) and their exact intervals.

Rows and their trained classifiers are the correctness table's (``correctness_table``: missing classifiers
are trained, in the same ``work`` folder, and reused by both tables). The cache keeps every ball's outcome, one
file per row, written atomically; while a row runs, its journal beside the cache records every finished shard
of balls, so a kill loses at most the shards in flight; rows can be run by separate processes at once, and a
larger ``n`` only checks the new centres (the centres are the seeded latents, so the first n of a larger run
are the centres of a run of n).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import GenrobustError
from ..journal import resumed_or_fresh
from ..models.zoo import coverage_summary, load_generators
from ..runtime import write_atomic
from ..stats import Proportion, mcnemar_exact
from ..verify import CERTIFIED, FALSIFIED, VerifyOptions, global_robustness
from ..verify.local import GIVE_UP, VERIFIER_VERSION
from .correctness_table import BUILTIN_ROW, GENERATORS, TablePlan, _classifier, check_rows, row_recipe

CACHE_FORMAT = "genrobust-robustness-balls/1"
#: The row the others are compared with, ball by ball (every row is checked on the same seeded centres).
REFERENCE_ROW = "small"


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
    split: str = "unstable"
    chunk: int = 10  # balls per shard: what a kill loses at most, and a worker's unit of work
    #: Training seed of the rows' classifiers (as in the correctness table): a second seed measures how much of
    #: a difference between rows is training noise.
    train_seed: int = 0

    @property
    def cache(self) -> Path:
        """The folder of per-row ball caches (independent of n: a run of n reuses and extends it)."""
        eps = "-".join(f"{e:g}" for e in self.eps)
        suffix = f"-train{self.train_seed}" if self.train_seed else ""
        return self.work / self.dataset / f"robustness-seed{self.seed}-eps{eps}{suffix}"

    def row_cache(self, row: str) -> Path:
        """A row's cache file. Each branch-and-bound budget has its own (``small-boxes16-s600-gap.json``), so a
        run under another budget neither reads nor overwrites it; the one-box cache keeps the plain name."""
        if self.max_boxes == 1:
            return self.cache / f"{row}.json"
        return self.cache / f"{row}-boxes{self.max_boxes}-s{self.max_seconds:g}-{self.split}.json"

    @property
    def generators(self) -> str:
        return GENERATORS[self.dataset][0]  # the standard-data GAN

    @property
    def budget(self) -> dict[str, Any]:
        """What decides a ball's outcome besides the recipe; a cache made with another budget or verifier version
        is not reused. The give-up rule and the budget rules only act on balls that may be split, so one-box caches
        stay valid across them."""
        budget: dict[str, Any] = {"max_boxes": self.max_boxes, "max_seconds": self.max_seconds, "split": self.split}
        if self.max_boxes > 1:  # the verifier's version: its outcomes under a budget can change between versions
            budget |= {"give_up": GIVE_UP, "verifier": VERIFIER_VERSION}
        return budget


def _load_row(path: Path, recipe: dict[str, Any], budget: dict[str, Any]) -> dict[str, Any]:
    """A row's cached balls, or a fresh entry when there are none or they came from another recipe or budget."""
    fresh = {"format": CACHE_FORMAT, "recipe": recipe, "budget": budget, "classes": {}}
    if not path.is_file():
        return fresh
    try:
        entry = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GenrobustError(f"corrupt robustness cache {path}: {exc}; delete it to recompute") from None
    same = entry.get("format") == CACHE_FORMAT and entry.get("recipe") == recipe and entry.get("budget") == budget
    return entry if same else fresh


def _save_row(path: Path, entry: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(entry))  # a kill leaves the old file or the new one


def _summary(balls: dict[str, list], n: int, eps: list[float]) -> dict[str, Any]:
    """Counts per ε over a class's first n balls, and those balls' outcomes (for paired comparisons)."""
    status = balls["status"][:n]
    per_eps = []
    for e, value in enumerate(eps):
        column = [s[e] for s in status]
        cert, fals = column.count(CERTIFIED), column.count(FALSIFIED)
        per_eps.append({"eps": value, "n": n, "certified": cert, "falsified": fals, "unknown": n - cert - fals})
    return {"seconds": sum(balls["seconds"][:n]), "per_eps": per_eps, "status": status}


def _robustness_resumed(clf, gens, plan: RobustnessPlan, options: VerifyOptions, classes: list[int], start: int,
                        journal: Path, executor: Any, show_progress: bool,
                        device: str | torch.device | None = None):  # fmt: skip
    """Global robustness of ``classes``' balls start..n − 1, continuing the journal of a killed run if there is
    one; a journal left by another verifier or budget is set aside (renamed ``*.stale``) and the balls redone."""
    kw = {"eps": plan.eps, "n": plan.n, "start": start, "seed": plan.seed, "classes": classes, "options": options,
          "chunk": plan.chunk, "executor": executor, "show_progress": show_progress, "device": device}  # fmt: skip
    return resumed_or_fresh(global_robustness, journal, clf, gens, **kw)


def run_robustness_table(
    plan: RobustnessPlan,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
    executor: Any = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Check every (row, class) ball not cached; return {row: {recipe, source, budget, classes: {c: counts}}}.
    ``executor`` runs the balls' shards (``plan.chunk`` balls each) as for :func:`global_robustness`; ``device``
    is where missing classifiers train and the balls are verified (None: CUDA when available)."""
    if plan.dataset not in GENERATORS:
        raise GenrobustError(f"no built-in generators for {plan.dataset!r}; choose one of {', '.join(GENERATORS)}")
    if not isinstance(plan.n, int) or plan.n <= 0:
        raise GenrobustError(f"n must be a positive integer, got {plan.n!r}")
    if not isinstance(plan.chunk, int) or plan.chunk <= 0:
        raise GenrobustError(f"the save interval must be a positive number of balls, got {plan.chunk!r}")
    check_rows(plan.rows, plan.train_seed)
    gens = load_generators(plan.generators)
    classes = list(range(len(gens))) if plan.classes is None else plan.classes
    options = VerifyOptions(max_boxes=plan.max_boxes, max_seconds=plan.max_seconds, split=plan.split)
    table: dict[str, Any] = {}
    for row in plan.rows:
        path = plan.row_cache(row)
        entry = _load_row(path, row_recipe(plan.dataset, row, plan.train_seed), plan.budget)
        cells = entry["classes"]
        if any(len(cells.get(str(c), {}).get("status", [])) < plan.n for c in classes):
            table_plan = TablePlan(plan.dataset, plan.n, plan.rows, plan.work, train_seed=plan.train_seed)
            clf, entry["source"] = _classifier(table_plan, row, data_dir, show_progress, device)
            # every ball of a row comes from one classifier: a retrained one (other weights; retraining is not
            # bit-identical across machines) starts the row again. A row cached before the hash was recorded is
            # kept only for the built-in classifier, whose weights the registry pins.
            sha = getattr(clf, "genrobust_meta", {}).get("weights_sha256")
            known = entry.get("classifier_sha256")
            if (known is not None and known != sha) or (known is None and cells and row != BUILTIN_ROW):
                entry["classes"] = cells = {}
            if sha is not None:
                entry["classifier_sha256"] = sha
            missing: dict[int, list[int]] = {}  # first missing ball → the classes that lack it
            for c in classes:
                balls = cells.setdefault(str(c), {"status": [], "seconds": []})
                if len(balls["status"]) < plan.n:
                    missing.setdefault(len(balls["status"]), []).append(c)
            for start, todo in sorted(missing.items()):
                # one call per row: the networks are traced and each class's verifier built once (per worker), and
                # the journal beside the cache keeps every finished chunk of balls through a kill
                journal = path.with_name(f"{path.stem}.n{plan.n}-from{start}-classes{'-'.join(map(str, todo))}.jsonl")
                res = _robustness_resumed(
                    clf, gens, plan, options, todo, start, journal, executor, show_progress, device
                )
                for c in todo:
                    balls = cells[str(c)]
                    balls["status"] += res.local[c].status.tolist()
                    balls["seconds"] += res.local[c].seconds.tolist()
                _save_row(path, entry)
                journal.unlink()
        table[row] = {
            "recipe": entry["recipe"], "budget": entry["budget"], "source": entry.get("source", ""),
            "classifier_sha256": entry.get("classifier_sha256"),
            "classes": {str(c): _summary(cells[str(c)], plan.n, plan.eps) for c in classes},
        }  # fmt: skip
    return table


def paired_comparison(table: dict[str, Any], row: str, reference: str, e: int) -> dict[str, Any]:
    """Row against reference at the ε of index ``e``, ball by ball over the classes both have: how many balls
    only one of them certifies (falsifies), and the exact McNemar p-value of each difference."""
    a, b = table[row]["classes"], table[reference]["classes"]
    out: dict[str, Any] = {"row": row, "reference": reference, "eps": a[next(iter(a))]["per_eps"][e]["eps"]}
    for name, code in (("certified", CERTIFIED), ("falsified", FALSIFIED)):
        only_row = only_ref = 0
        for c in sorted(set(a) & set(b), key=int):
            for sa, sb in zip(a[c]["status"], b[c]["status"], strict=False):
                only_row += sa[e] == code and sb[e] != code
                only_ref += sb[e] == code and sa[e] != code
        out[name] = {"only_row": only_row, "only_reference": only_ref, "p": mcnemar_exact(only_row, only_ref)}
    return out


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
            cert = Proportion(sum(p["certified"] for _, p in per), n)
            alive = Proportion(n - sum(p["falsified"] for _, p in per), n)
            worst_c, worst = min(per, key=lambda cp: cp[1]["certified"] / cp[1]["n"])
            cells.append(
                f"{100 * cert.estimate:.1f}–{100 * alive.estimate:.1f}% [{100 * cert.ci[0]:.1f}, "
                f"{100 * alive.ci[1]:.1f}] · {worst_c}: ≥ {100 * worst['certified'] / worst['n']:.0f}%"
            )
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    classes = sorted({c for e in table.values() for c in e["classes"]}, key=int)
    lines.append(
        f"\nAgainst `{plan.generators}`, n = {plan.n} centres per class (classes {', '.join(classes)}), seed "
        f"{plan.seed}; budget {plan.max_boxes} sub-boxes and {plan.max_seconds:g} s per ball, split `{plan.split}`. "
        "A range is the certified share – non-falsified share (the two bounds on P(robust)), pooled over classes; "
        "the brackets hold the one-sided ends of their Clopper–Pearson intervals (conservative for a pooled count)."
    )
    coverage = coverage_summary(plan.generators)
    if coverage is not None:
        lines.append(f"\nHow much of each class `{plan.generators}` draws: {coverage}.")
    others = [r for r in table if r != REFERENCE_ROW]
    if REFERENCE_ROW in table and others:
        lines += [
            f"\nBall by ball against `{REFERENCE_ROW}` (the same centres): balls certified (falsified) by the row only "
            f"/ by `{REFERENCE_ROW}` only, and the exact McNemar p-value of the difference.\n",
            "| row | " + " | ".join(f"ε = {e:g}: certified · falsified" for e in plan.eps) + " |",
            "|---" * (1 + len(plan.eps)) + "|",
        ]
        for row in others:
            cells = []
            for e in range(len(plan.eps)):
                cmp = paired_comparison(table, row, REFERENCE_ROW, e)
                cert, fals = cmp["certified"], cmp["falsified"]
                cells.append(f"+{cert['only_row']}/−{cert['only_reference']} (p = {cert['p']:.2g}) · "
                             f"+{fals['only_row']}/−{fals['only_reference']} (p = {fals['p']:.2g})")  # fmt: skip
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
