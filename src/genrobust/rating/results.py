"""The paper's manual-score summary for any number of raters, the thresholds it implies, and agreement.

Per image, over the raters who rated it (the paper: 100 images, 5 raters):

* **identified correctly**: every rater named the intended class;
* **near-perfect for all**: identified correctly and every rater said near-perfect;
* **+ clearly identifiable**: identified correctly, every rater said near-perfect or perturbed-but-clearly-
  identifiable, not all near-perfect;
* **hard to identify by one**: identified correctly, yet at least one rater said hard to identify;
* **rubbish or wrong**: some rater said rubbish or named another class.

The first three give the paper's thresholds: a classifier should be at least (near-perfect + clearly
identifiable)/n correct, and (identified correctly)/n to match the raters (the paper: .89 and .96).
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..stats import clopper_pearson
from .study import CATEGORIES, Study


@dataclass
class RatingSummary:
    n_images: int
    n_rated: int  # images with at least one rating
    raters: dict[str, int]  # name → images rated
    complete_raters: int  # raters who rated every image
    identified: int
    perfect: int
    clear: int
    hard: int
    rubbish_or_wrong: int
    threshold_clear: dict[str, float]  # (perfect + clear) / rated, with its Clopper–Pearson interval
    threshold_human: dict[str, float]  # identified / rated
    kappa_category: float | None  # Fleiss' κ over the complete raters (None with fewer than two)
    kappa_label: float | None
    classifier: dict[str, Any] = field(default_factory=dict)  # correct, n, share, and agreement with the raters

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        n = self.n_rated
        pct = (lambda k: f"{k} ({100 * k / n:.0f}%)") if n else str
        rows = [
            ("images rated (of the study's)", f"{n} of {self.n_images}"),
            ("raters (who rated every image)", f"{len(self.raters)} ({self.complete_raters})"),
            ("identified correctly by all", pct(self.identified)),
            ("near-perfect for all", pct(self.perfect)),
            ("+ perturbed but clearly identifiable", pct(self.clear)),
            ("hard to identify by at least one, yet identified", pct(self.hard)),
            ("rubbish or wrong", pct(self.rubbish_or_wrong)),
            ("threshold: near-perfect or clear", _interval(self.threshold_clear)),
            ("threshold: identified correctly", _interval(self.threshold_human)),
            ("Fleiss' κ, categories / classes", f"{_k(self.kappa_category)} / {_k(self.kappa_label)}"),
        ]
        if self.classifier:
            c = self.classifier
            share = f"{c['correct']} of {c['n']} ({100 * c['share']:.0f}%)"
            rows.append(("classifier correct on the same images", share))
            rows.append(("classifier correct where all raters identified", f"{c['correct_where_identified']} of "
                                                                         f"{self.identified}"))  # fmt: skip
        width = max(len(a) for a, _ in rows)
        return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


def _interval(t: dict[str, float]) -> str:
    return f"{t['estimate']:.2f} [{t['low']:.2f}, {t['high']:.2f}]" if t else "–"


def _k(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' κ of a (subjects, categories) table of rating counts, every subject rated by the same m ≥ 2 raters."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or len(counts) == 0:
        return None
    m = counts.sum(1)
    if not np.all(m == m[0]) or m[0] < 2:
        return None
    m = m[0]
    p = counts.sum(0) / counts.sum()
    agree = ((counts**2).sum(1) - m) / (m * (m - 1))
    pe = float((p**2).sum())
    if pe >= 1.0:
        return 1.0  # every rating in one category: perfect agreement
    return float((agree.mean() - pe) / (1 - pe))


def summarise(study: Study, con: sqlite3.Connection, predictions: list[int] | None = None) -> RatingSummary:
    """The summary of every rating in the study's database (``predictions``: a classifier's class per image)."""
    rows = con.execute(
        "SELECT r.name, t.image_id, t.category, t.label FROM ratings t JOIN raters r ON r.id = t.rater_id"
    ).fetchall()
    raters: dict[str, int] = {name: 0 for (name,) in con.execute("SELECT name FROM raters")}
    by_image: dict[int, list[tuple[str, str, int]]] = {}
    for name, image, category, label in rows:
        by_image.setdefault(int(image), []).append((name, category, int(label)))
        raters[name] += 1
    classes = study.classes
    identified = perfect = clear = hard = bad = 0
    identified_ids = []
    for image, ratings in by_image.items():
        correct = all(label == classes[image] for _, _, label in ratings)
        cats = {c for _, c, _ in ratings}
        if not correct or "rubbish" in cats:
            bad += 1
            if correct:  # identified, but someone called it rubbish: counted as rubbish, still identified
                identified += 1
                identified_ids.append(image)
            continue
        identified += 1
        identified_ids.append(image)
        if cats == {"perfect"}:
            perfect += 1
        elif cats <= {"perfect", "perturbed"}:
            clear += 1
        else:
            hard += 1
    n = len(by_image)
    complete = [name for name, k in raters.items() if k == study.n]
    kc = kl = None
    if len(complete) >= 2:
        keys = list(CATEGORIES)
        cat_counts = np.zeros((study.n, len(keys)))
        lab_counts = np.zeros((study.n, len(study.class_names)))
        for image, ratings in by_image.items():
            for name, c, label in ratings:
                if name in complete:
                    cat_counts[image, keys.index(c)] += 1
                    lab_counts[image, label] += 1
        kc, kl = fleiss_kappa(cat_counts), fleiss_kappa(lab_counts)

    def share(k: int) -> dict[str, float]:
        if not n:
            return {}
        lo, hi = clopper_pearson(k, n)
        return {"estimate": k / n, "low": lo, "high": hi}

    classifier: dict[str, Any] = {}
    if predictions is not None:
        correct = [int(p == c) for p, c in zip(predictions, classes, strict=True)]
        classifier = {"correct": sum(correct), "n": study.n, "share": sum(correct) / study.n,
                      "correct_where_identified": sum(correct[i] for i in identified_ids)}  # fmt: skip
    return RatingSummary(study.n, n, raters, len(complete), identified, perfect, clear, hard, bad,
                         share(perfect + clear), share(identified), kc, kl, classifier)  # fmt: skip
