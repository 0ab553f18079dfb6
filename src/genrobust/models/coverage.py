"""How much of each class a generator family draws: the precision and recall of its images against the real ones.

A verdict about C∘G_c is a verdict about the images G_c draws. When G_c draws a narrow slice of class c (low
*recall*: few real images of c lie near any generated one), "P[C(G_c(z)) = c] ≥ 1 − δ" says nothing about the
rest of the class. So a family carries its measured coverage (``family.coverage``), every estimate on it copies
it into its result, and the result's table and JSON show it beside each class and mark the classes whose recall
is below :data:`RECALL_FLAG`: their verdict covers part of the class only.

The built-in families carry what ``genrobust reproduce generator-quality`` measured (zoo metadata); any family
gets it from :func:`genrobust.experiments.generator_quality.measure_coverage` (``--assess DATASET`` on the CLI).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ..errors import GenrobustError

#: A class whose generator's recall is below this covers part of the class only (flagged in every verdict).
RECALL_FLAG = 0.5


def _two(x: float) -> str:
    """``x`` to two decimals as written, half up: the registry's 0.485 is 0.49 (``f"{0.485:.2f}"`` is 0.48, the
    binary float lying just below), as in the measurement's own report."""
    return str(Decimal(repr(x)).quantize(Decimal("0.01"), ROUND_HALF_UP))


@dataclass(frozen=True)
class Coverage:
    """Per class: ``precision`` (share of generated images inside the real images' manifold: realism) and
    ``recall`` (share of real images inside the generated images' manifold: variety), and how they were
    measured (``source``: the real images, the feature classifier, n per class)."""

    precision: tuple[float, ...]
    recall: tuple[float, ...]
    source: str

    def __post_init__(self) -> None:
        if len(self.precision) != len(self.recall) or not self.recall:
            raise GenrobustError(f"coverage needs one precision and one recall per class, got "
                                 f"{len(self.precision)} and {len(self.recall)}")  # fmt: skip
        for v in (*self.precision, *self.recall):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= 1):
                raise GenrobustError(f"precision and recall must lie in [0, 1], got {v!r}")

    @property
    def partial(self) -> list[int]:
        """The classes whose recall is below :data:`RECALL_FLAG`."""
        return [c for c, r in enumerate(self.recall) if r < RECALL_FLAG]

    def cell(self, cls: int) -> str:
        """``0.87 / 0.24 *``: precision / recall, starred when the class is covered in part only."""
        return f"{_two(self.precision[cls])} / {_two(self.recall[cls])}{' *' if cls in self.partial else '  '}"

    def note(self, classes: Sequence[int], names: Sequence[str]) -> str:
        """The line under a verdict table: where the figures come from, and which classes it covers in part."""
        partial = [names[i] for i, c in enumerate(classes) if c in self.partial]
        head = f"precision / recall of the generators ({self.source})"
        if not partial:
            return f"{head}: every class's recall ≥ {RECALL_FLAG:g}"
        which = "every class" if len(partial) == len(classes) > 1 else ", ".join(partial)
        return f"{head}; * recall < {RECALL_FLAG:g}: the verdict on {which} covers part of the class only"

    def summary(self, names: Sequence[str]) -> str:
        """One sentence for a table of many verdicts on the family: means, the worst class, the partial classes."""
        worst = min(range(len(self.recall)), key=self.recall.__getitem__)
        mean_p, mean_r = sum(self.precision) / len(self.precision), sum(self.recall) / len(self.recall)
        low = f"worst class {names[worst]}: {_two(self.recall[worst])}"
        text = f"precision {_two(mean_p)}, recall {_two(mean_r)} ({low})"
        if not self.partial:
            return f"{text}; every class's recall ≥ {RECALL_FLAG:g}"
        which = ", ".join(names[c] for c in self.partial)
        share = f"{len(self.partial)} of {len(self.recall)} classes ({which})"
        return f"{text}; recall < {RECALL_FLAG:g} in {share}: a verdict there covers part of the class only"

    def to_dict(self) -> dict[str, Any]:
        return {"precision": list(self.precision), "recall": list(self.recall), "source": self.source,
                "recall_flag": RECALL_FLAG, "partial_classes": self.partial}  # fmt: skip

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Coverage:
        try:
            return Coverage(tuple(float(v) for v in d["precision"]), tuple(float(v) for v in d["recall"]),
                            str(d["source"]))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise GenrobustError(f"malformed coverage record {d!r}: {exc}") from None

    def check_classes(self, count: int) -> Coverage:
        if len(self.recall) != count:
            raise GenrobustError(f"coverage of {len(self.recall)} classes for a family of {count}")
        return self
