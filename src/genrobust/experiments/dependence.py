"""How much does the verdict depend on the generative model? (The paper: two GANs trained on disjoint halves
"yield sensibly the same results".)

Three generator families per dataset, all with the built-in GAN's recipe: ``half-a`` and ``half-b`` trained on
the two disjoint halves of train + test pooled (split seed 0), and ``half-a-seed1``, trained on half a again with
another training seed. Several classifiers are checked against each. Per class, a two-proportion test asks
whether the halves give different correctness (the data effect plus training noise) and the same test between
the two seeds on one half measures training noise alone: the data matter only where the first difference
clearly exceeds the second.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats as sps

from ..errors import GenrobustError
from ..estimate import global_correctness
from ..models.generators import GeneratorFamily
from ..models.zoo import load_generators, model_info
from .correctness_table import GENERATORS, TablePlan, _classifier, check_rows

#: name → (half, GAN training seed); the halves always come from split seed 0.
FAMILIES: dict[str, tuple[str, int]] = {"half-a": ("half-a", 0), "half-b": ("half-b", 0), "half-a-seed1": ("half-a", 1)}


def two_proportion_test(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """(difference p1 − p2, two-sided p-value) of the pooled two-proportion z-test (n ≥ a few hundred here);
    p = 1 when both proportions are 0 or 1 alike."""
    if min(n1, n2) <= 0 or not (0 <= k1 <= n1 and 0 <= k2 <= n2):
        raise GenrobustError(f"invalid counts {k1}/{n1}, {k2}/{n2}")
    p1, p2 = k1 / n1, k2 / n2
    pooled = (k1 + k2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if var == 0:
        return p1 - p2, 1.0
    z = (p1 - p2) / math.sqrt(var)
    return p1 - p2, float(2 * sps.norm.sf(abs(z)))


@dataclass
class DependencePlan:
    dataset: str = "mnist"
    n: int = 10_000
    rows: list[str] = field(default_factory=lambda: ["built-in", "small", "small-aug", "madry", "papernot"])
    work: Path = Path("reproduce")
    seed: int = 0  # of the latents
    gan_steps: int | None = None  # None: the built-in GAN's steps (fewer only to test the pipeline)

    @property
    def folder(self) -> Path:
        steps = f"-steps{self.gan_steps}" if self.gan_steps else ""
        return self.work / self.dataset / f"dependence{steps}"

    @property
    def cache(self) -> Path:
        return self.folder / f"table-n{self.n}-seed{self.seed}.json"

    def gan_folder(self, name: str) -> Path:
        return self.folder / f"gan-{name}"


def train_families(plan: DependencePlan, *, data_dir=None, show_progress: bool = False) -> dict[str, GeneratorFamily]:
    """The three families, trained with the dataset's built-in GAN recipe (resumable: rerun to continue)."""
    from ..train.gan import GANRecipe, train_gan

    if plan.dataset not in GENERATORS:
        raise GenrobustError(f"no built-in generators for {plan.dataset!r}; choose one of {', '.join(GENERATORS)}")
    base = model_info(GENERATORS[plan.dataset][0])["recipe"]
    out = {}
    for name, (half, seed) in FAMILIES.items():
        recipe = GANRecipe(**{**{k: v for k, v in base.items() if k in GANRecipe.__dataclass_fields__},
                              "data": half, "seed": seed, "split_seed": 0,
                              **({"steps": plan.gan_steps} if plan.gan_steps else {})})  # fmt: skip
        folder = plan.gan_folder(name)
        path = folder / "generators.safetensors"
        if path.is_file():
            fam = load_generators(path)
            if fam.genrobust_meta.get("recipe") == recipe.to_dict():
                out[name] = fam
                continue
        out[name] = train_gan(recipe, out=folder, data_dir=data_dir, show_progress=show_progress)[0]
    return out


def run_dependence(plan: DependencePlan, *, data_dir=None, show_progress: bool = False) -> dict[str, Any]:
    """Train what is missing, check every (row, family) cell not cached; return {row: {family: per-class counts}}."""
    check_rows(plan.rows)
    if not isinstance(plan.n, int) or plan.n <= 0:
        raise GenrobustError(f"n must be a positive integer, got {plan.n!r}")
    families = train_families(plan, data_dir=data_dir, show_progress=show_progress)
    cache = plan.cache
    table: dict[str, Any] = json.loads(cache.read_text()) if cache.is_file() else {}
    table_plan = TablePlan(plan.dataset, plan.n, plan.rows, plan.work)
    for row in plan.rows:
        entry = table.setdefault(row, {})
        if all(name in entry for name in families):
            continue
        clf, entry["source"] = _classifier(table_plan, row, data_dir, show_progress)
        for name, fam in families.items():
            if name in entry:
                continue
            res = global_correctness(clf, fam, n=plan.n, seed=plan.seed, show_progress=show_progress)
            entry[name] = {"correct": [c.correct for c in res.classes], "n": [c.n for c in res.classes],
                           "mean": res.mean}  # fmt: skip
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(table, indent=2))  # every finished cell survives a kill
    return {row: table[row] for row in plan.rows}


def comparisons(table: dict[str, Any], alpha: float = 0.05) -> dict[str, Any]:
    """Per row and class: the halves' difference and p-value, the seeds' difference and p-value; and counts of
    the classes where each is significant at ``alpha`` after Bonferroni over the classes of all rows."""
    out: dict[str, Any] = {"rows": {}}
    m = sum(len(e["half-a"]["correct"]) for e in table.values())
    level = alpha / max(1, m)
    sig_halves = sig_seeds = 0
    for row, e in table.items():
        a, b, s = e["half-a"], e["half-b"], e["half-a-seed1"]
        rows = []
        for c in range(len(a["correct"])):
            dh, ph = two_proportion_test(a["correct"][c], a["n"][c], b["correct"][c], b["n"][c])
            ds, ps = two_proportion_test(a["correct"][c], a["n"][c], s["correct"][c], s["n"][c])
            sig_halves += ph < level
            sig_seeds += ps < level
            rows.append({"cls": c, "half_a": a["correct"][c] / a["n"][c], "half_b": b["correct"][c] / b["n"][c],
                         "half_a_seed1": s["correct"][c] / s["n"][c], "halves_diff": dh, "halves_p": ph,
                         "seeds_diff": ds, "seeds_p": ps})  # fmt: skip
        out["rows"][row] = rows
    out.update({"tests": m, "level": level, "significant_halves": int(sig_halves), "significant_seeds": int(sig_seeds)})
    return out


def dependence_markdown(table: dict[str, Any], plan: DependencePlan, class_names: list[str]) -> str:
    cmp = comparisons(table)
    lines = [f"n = {plan.n} generated images per class and cell (latent seed {plan.seed}). Per class: correctness "
             "against the GANs of half a, half b and half a with GAN seed 1 (%), then the differences a − b "
             "(data + training noise) and a − a′ (training noise alone), * where significant after Bonferroni "
             f"over the {cmp['tests']} classes × rows (p < {cmp['level']:.1e}).", ""]  # fmt: skip
    for row, rows in cmp["rows"].items():
        lines += [
            f"### {row}",
            "",
            "| class | half a | half b | half a, seed 1 | a − b | a − a′ |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            star = lambda p: "*" if p < cmp["level"] else ""  # noqa: E731
            lines.append(f"| {class_names[r['cls']]} | {100 * r['half_a']:.2f} | {100 * r['half_b']:.2f} | "
                         f"{100 * r['half_a_seed1']:.2f} | {100 * r['halves_diff']:+.2f}{star(r['halves_p'])} | "
                         f"{100 * r['seeds_diff']:+.2f}{star(r['seeds_p'])} |")  # fmt: skip
        means = {k: table[row][k]["mean"] for k in FAMILIES}
        lines += ["", f"Means: half a {100 * means['half-a']:.2f}%, half b {100 * means['half-b']:.2f}%, half a "
                      f"seed 1 {100 * means['half-a-seed1']:.2f}%.", ""]  # fmt: skip
    lines.append(f"Significant class differences: between the halves {cmp['significant_halves']} of {cmp['tests']}, "
                 f"between the GAN seeds on one half {cmp['significant_seeds']} of {cmp['tests']}.")  # fmt: skip
    return "\n".join(lines)


def save(table: dict[str, Any], plan: DependencePlan, out: str | os.PathLike[str], class_names: list[str]) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"dependence-{plan.dataset}.json").write_text(
        json.dumps({"table": table, "comparisons": comparisons(table)}, indent=2)
    )
    (out / f"dependence-{plan.dataset}.md").write_text(dependence_markdown(table, plan, class_names) + "\n")
