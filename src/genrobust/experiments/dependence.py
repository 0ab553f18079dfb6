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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats as sps

from ..errors import GenrobustError
from ..estimate import global_correctness
from ..models.generators import GeneratorFamily
from ..models.zoo import load_generators, model_info
from ..runtime import write_atomic
from ..stats import clopper_pearson, difference_interval, two_proportion_test
from .correctness_table import GENERATORS, TablePlan, _classifier, check_rows

#: name → (half, GAN training seed); the halves always come from split seed 0.
FAMILIES: dict[str, tuple[str, int]] = {"half-a": ("half-a", 0), "half-b": ("half-b", 0), "half-a-seed1": ("half-a", 1)}
#: Datasets whose GANs judge another dataset's classifiers: the paper trained its two GANs on halves of EMNIST
#: digits (about 17,000 images per digit and half, against about 3,500 for MNIST) and checked MNIST classifiers.
CLASSIFIER_DATASET = {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "emnist-digits": "mnist"}


@dataclass
class DependencePlan:
    dataset: str = "mnist"
    n: int = 10_000
    rows: list[str] = field(default_factory=lambda: ["built-in", "small", "small-aug", "madry", "papernot"])
    work: Path = Path("reproduce")
    seed: int = 0  # of the latents
    gan_steps: int | None = None  # None: the built-in GAN's steps (fewer only to test the pipeline)

    @property
    def classifier_dataset(self) -> str:
        """Where the classifiers (and the GAN recipe) come from: the dataset itself, or MNIST for EMNIST digits."""
        if self.dataset not in CLASSIFIER_DATASET:
            raise GenrobustError(
                f"no dependence study for {self.dataset!r}; choose one of {', '.join(CLASSIFIER_DATASET)}"
            )
        return CLASSIFIER_DATASET[self.dataset]

    @property
    def folder(self) -> Path:
        steps = f"-steps{self.gan_steps}" if self.gan_steps else ""
        return self.work / self.dataset / f"dependence{steps}"

    @property
    def cache(self) -> Path:
        return self.folder / f"table-n{self.n}-seed{self.seed}.json"

    def gan_folder(self, name: str) -> Path:
        return self.folder / f"gan-{name}"


def train_families(plan: DependencePlan, *, data_dir=None, show_progress: bool = False,
                   device: str | torch.device | None = None) -> dict[str, GeneratorFamily]:  # fmt: skip
    """The three families, trained with the dataset's built-in GAN recipe (resumable: rerun to continue), on
    ``device`` where they are missing (None: CUDA when available)."""
    from ..train.gan import GANRecipe, train_gan

    base = model_info(GENERATORS[plan.classifier_dataset][0])["recipe"]
    out = {}
    for name, (half, seed) in FAMILIES.items():
        recipe = GANRecipe(**{**{k: v for k, v in base.items() if k in GANRecipe.__dataclass_fields__},
                              "dataset": plan.dataset, "data": half, "seed": seed, "split_seed": 0,
                              **({"steps": plan.gan_steps} if plan.gan_steps else {})})  # fmt: skip
        folder = plan.gan_folder(name)
        path = folder / "generators.safetensors"
        if path.is_file():
            fam = load_generators(path)
            if fam.genrobust_meta.get("recipe") == recipe.to_dict():
                out[name] = fam
                continue
        out[name] = train_gan(recipe, out=folder, data_dir=data_dir, device=device, show_progress=show_progress)[0]
    return out


def run_dependence(plan: DependencePlan, *, data_dir=None, show_progress: bool = False,
                   device: str | torch.device | None = None) -> dict[str, Any]:  # fmt: skip
    """Train what is missing, check every (row, family) cell not cached; return {row: {family: per-class counts}}.
    ``device``: where the GANs and classifiers train and the cells are computed (None: CUDA when available)."""
    check_rows(plan.rows)
    if not isinstance(plan.n, int) or plan.n <= 0:
        raise GenrobustError(f"n must be a positive integer, got {plan.n!r}")
    families = train_families(plan, data_dir=data_dir, show_progress=show_progress, device=device)
    cache = plan.cache
    table: dict[str, Any] = json.loads(cache.read_text()) if cache.is_file() else {}
    table_plan = TablePlan(plan.classifier_dataset, plan.n, plan.rows, plan.work)
    for row in plan.rows:
        entry = table.setdefault(row, {})
        if all(name in entry for name in families):
            continue
        clf, entry["source"] = _classifier(table_plan, row, data_dir, show_progress, device)
        for name, fam in families.items():
            if name in entry:
                continue
            res = global_correctness(clf, fam, n=plan.n, seed=plan.seed, device=device, show_progress=show_progress)
            entry[name] = {"correct": [c.correct for c in res.classes], "n": [c.n for c in res.classes],
                           "mean": res.mean}  # fmt: skip
            write_atomic(cache, json.dumps(table, indent=2))  # every finished cell survives a kill
    return {row: table[row] for row in plan.rows}


def overlap(families: dict[str, GeneratorFamily], classifier: torch.nn.Module, *, n: int = 1000, k: int = 3,
            seed: int = 0, show_progress: bool = False,
            device: str | torch.device | None = None) -> dict[str, Any]:  # fmt: skip
    """Do two GANs draw the same part of a class? Per class, the share of each family's images that fall inside
    half a's k-nearest-neighbour manifold (the improved precision of Kynkäänniemi et al. with half a's images
    as the reference), in the classifier's feature space. The reference value is a second, independent sample
    of half a itself (``half-a`` below): what a GAN identical to half a would score. A family far below it
    draws another slice of the class, so the classifier is judged on other images. ``device``: where copies of
    the models draw and embed the images (None: where the models are)."""

    from ..runtime import progress, resolve_device, sub_seed, working_copy
    from .generator_quality import features, precision_recall

    if n <= k:
        raise GenrobustError(f"overlap needs more than k = {k} images per class, got n = {n}")
    if device is not None:  # copies: the caller's models stay where they are
        dev = resolve_device(device)
        classifier = working_copy(classifier, dev)
        families = {name: working_copy(fam, dev) for name, fam in families.items()}
    ref_name = next(iter(families))
    num_classes = families[ref_name].num_classes
    classes = []
    bar = progress(num_classes, "overlap of the families", show_progress)
    for c in range(num_classes):

        def feats(fam: GeneratorFamily, draw: int, c: int = c) -> torch.Tensor:
            gen = torch.Generator().manual_seed(sub_seed(seed, c, draw))
            return features(classifier, fam.sample(c, n, generator=gen)[1])

        ref = feats(families[ref_name], 0)
        classes.append(
            {"cls": c, **{name: precision_recall(ref, feats(fam, 1), k)[0] for name, fam in families.items()}}
        )
        bar.update(1)
    bar.close()
    mean = {name: float(np.mean([r[name] for r in classes])) for name in families}
    return {"reference": ref_name, "n": n, "k": k, "seed": seed, "classes": classes, "mean": mean}


def overlap_cached(plan: DependencePlan, families: dict[str, GeneratorFamily], n: int = 1000, k: int = 3,
                   show_progress: bool = False,
                   device: str | torch.device | None = None) -> dict[str, Any]:  # fmt: skip
    """:func:`overlap` with the dataset's built-in classifier as the feature extractor, cached beside the cells.
    Its sample is ``n`` images per class, or the study's own n if smaller (but always more than k)."""
    from ..experiments.correctness_table import BUILTIN_CLASSIFIERS
    from ..models.zoo import load_classifier

    n = max(k + 1, min(n, plan.n))
    path = plan.folder / f"overlap-n{n}-k{k}-seed{plan.seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    name = BUILTIN_CLASSIFIERS[plan.classifier_dataset]
    out = {
        "classifier": name,
        **overlap(
            families, load_classifier(name), n=n, k=k, seed=plan.seed, show_progress=show_progress, device=device
        ),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    return out


def _pair(k1: int, n1: int, k2: int, n2: int) -> dict[str, Any]:
    diff, p = two_proportion_test(k1, n1, k2, n2)
    return {"diff": diff, "ci": list(difference_interval(k1, n1, k2, n2)), "p": p}


def comparisons(table: dict[str, Any], alpha: float = 0.05) -> dict[str, Any]:
    """Per row and class: each family's correctness with its Clopper–Pearson interval, and the differences
    half a − half b (data + GAN training noise) and half a − half a′ (training noise alone), each with
    Newcombe's 95% interval and a p-value; the same for the means over classes; and the summary counts.

    Significance is Bonferroni-adjusted over the classes of all rows. Beyond counting significant classes, the
    question "do the data matter beyond training noise?" is asked of the classes themselves: per class the mean
    over rows of |a − b| against that of |a − a′|, and a one-sided sign test over the classes (the GANs, not the
    rows, are the replicates: every row sees the same three GANs of a class).
    """
    out: dict[str, Any] = {"rows": {}, "means": {}}
    m = sum(len(e["half-a"]["correct"]) for e in table.values())
    level = alpha / max(1, m)
    sig_halves = sig_seeds = 0
    abs_halves: dict[int, list[float]] = {}
    abs_seeds: dict[int, list[float]] = {}
    for row, e in table.items():
        a, b, s = e["half-a"], e["half-b"], e["half-a-seed1"]
        rows = []
        for c in range(len(a["correct"])):
            cell: dict[str, Any] = {"cls": c}
            for key, fam in (("half_a", a), ("half_b", b), ("half_a_seed1", s)):
                cell[key] = fam["correct"][c] / fam["n"][c]
                cell[f"{key}_ci"] = list(clopper_pearson(fam["correct"][c], fam["n"][c]))
            halves = _pair(a["correct"][c], a["n"][c], b["correct"][c], b["n"][c])
            seeds = _pair(a["correct"][c], a["n"][c], s["correct"][c], s["n"][c])
            cell.update({"halves": halves, "seeds": seeds})
            sig_halves += halves["p"] < level
            sig_seeds += seeds["p"] < level
            abs_halves.setdefault(c, []).append(abs(halves["diff"]))
            abs_seeds.setdefault(c, []).append(abs(seeds["diff"]))
            rows.append(cell)
        out["rows"][row] = rows
        # The pooled count over classes (equal n per class): its binomial intervals are conservative for the mean.
        pooled = {k: (sum(f["correct"]), sum(f["n"])) for k, f in (("a", a), ("b", b), ("s", s))}
        out["means"][row] = {
            "half_a": pooled["a"][0] / pooled["a"][1],
            "half_b": pooled["b"][0] / pooled["b"][1],
            "half_a_seed1": pooled["s"][0] / pooled["s"][1],
            "halves": _pair(*pooled["a"], *pooled["b"]),
            "seeds": _pair(*pooled["a"], *pooled["s"]),
        }
        # The δ verdict is decided by the worst class: which one, and how bad, under each GAN.
        out.setdefault("worst", {})[row] = {
            key: min(({"cls": c, "share": f["correct"][c] / f["n"][c]} for c in range(len(f["correct"]))),
                     key=lambda w: w["share"])
            for key, f in (("half_a", a), ("half_b", b), ("half_a_seed1", s))
        }  # fmt: skip
    classes = sorted(abs_halves)
    per_class = [{"cls": c, "mean_abs_halves": float(sum(abs_halves[c]) / len(abs_halves[c])),
                  "mean_abs_seeds": float(sum(abs_seeds[c]) / len(abs_seeds[c]))} for c in classes]  # fmt: skip
    wins = sum(r["mean_abs_halves"] > r["mean_abs_seeds"] for r in per_class)
    ties = sum(r["mean_abs_halves"] == r["mean_abs_seeds"] for r in per_class)
    trials = len(per_class) - ties
    sign_p = float(sps.binom.sf(wins - 1, trials, 0.5)) if trials else 1.0
    # Does the choice of GAN change which classifier looks better? The rows ranked by pooled mean, per family.
    keys = {"half-a": "half_a", "half-b": "half_b", "half-a-seed1": "half_a_seed1"}
    ranking = {fam: sorted(out["means"], key=lambda r, k=key: -out["means"][r][k]) for fam, key in keys.items()}
    out.update({
        "ranking": ranking, "ranking_agrees": len({tuple(v) for v in ranking.values()}) == 1,
        "tests": m, "level": level, "significant_halves": int(sig_halves), "significant_seeds": int(sig_seeds),
        "per_class": per_class, "classes_halves_larger": int(wins), "classes_compared": int(trials),
        "sign_test_p": sign_p,
    })  # fmt: skip
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _diff(d: dict[str, Any], level: float) -> str:
    star = "*" if d["p"] < level else ""
    return f"{100 * d['diff']:+.2f}{star} [{100 * d['ci'][0]:+.2f}, {100 * d['ci'][1]:+.2f}]"


def _table_line(label: str, r: dict[str, Any], level: float) -> str:
    cells = [label, _pct(r["half_a"]), _pct(r["half_b"]), _pct(r["half_a_seed1"]), _diff(r["halves"], level),
             _diff(r["seeds"], level)]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def overlap_markdown(ov: dict[str, Any], class_names: list[str]) -> list[str]:
    names = list(ov["mean"])
    lines = ["### Do the GANs draw the same images?", "",
             f"Per class, the share (%) of each family's images inside the k-NN manifold (k = {ov['k']}) of "
             f"{ov['n']:,} images of `{ov['reference']}`, in the feature space of `{ov['classifier']}`. The "
             f"`{ov['reference']}` row is a second, independent sample of it: the value for a GAN that draws the "
             "same images.", "",
             "| family | " + " | ".join(class_names[r["cls"]] for r in ov["classes"]) + " | mean |",
             "|---|" + "---|" * (len(ov["classes"]) + 1)]  # fmt: skip
    for name in names:
        cells = [_pct(r[name]) for r in ov["classes"]] + [_pct(ov["mean"][name])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def dependence_markdown(table: dict[str, Any], plan: DependencePlan, class_names: list[str],
                        overlap_result: dict[str, Any] | None = None) -> str:  # fmt: skip
    cmp = comparisons(table)
    level = cmp["level"]
    lines = [f"n = {plan.n:,} generated images per class and cell (latent seed {plan.seed}). Per class: correctness "
             "(%) against the GANs of half a, half b and half a with GAN seed 1, then the differences a − b (data "
             "+ training noise) and a − a′ (training noise alone) in points with Newcombe's 95% interval; * where "
             f"significant after Bonferroni over the {cmp['tests']} classes × rows (p < {level:.1e}). The mean row "
             "pools the classes (its intervals are conservative). Per-cell Clopper–Pearson intervals are in the "
             "JSON.", "",
             f"![the differences per class and row](images/dependence-{plan.dataset}.png)", ""]  # fmt: skip
    for row, rows in cmp["rows"].items():
        lines += [f"### {row}", "", "| class | half a | half b | half a, seed 1 | a − b | a − a′ |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for r in rows:
            lines.append(_table_line(class_names[r["cls"]], r, level))
        lines += [_table_line("**mean**", cmp["means"][row], level), ""]
    lines += ["### Summary", "",
              f"Significant class differences: between the halves {cmp['significant_halves']} of {cmp['tests']}, "
              f"between the GAN seeds on one half {cmp['significant_seeds']} of {cmp['tests']}.", "",
              "Per class, the mean over rows of |a − b| and |a − a′| (points):", "",
              "| class | " + " | ".join(class_names[r["cls"]] for r in cmp["per_class"]) + " |",
              "|---|" + "---|" * len(cmp["per_class"]),
              "| halves | " + " | ".join(f"{100 * r['mean_abs_halves']:.2f}" for r in cmp["per_class"]) + " |",
              "| seeds | " + " | ".join(f"{100 * r['mean_abs_seeds']:.2f}" for r in cmp["per_class"]) + " |", "",
              f"The halves differ more than the seeds in {cmp['classes_halves_larger']} of "
              f"{cmp['classes_compared']} classes (one-sided sign test p = {cmp['sign_test_p']:.3f}).", "",
              "The worst class (it decides the δ verdict), per row: "
              + "; ".join(f"{row} " + " / ".join(f"{class_names[w['cls']]} {_pct(w['share'])}" for w in ws.values())
                          for row, ws in cmp["worst"].items())
              + " (half a / half b / half a, seed 1; %).", "",
              "Rows ranked by mean correctness (best first): "
              + "; ".join(f"{fam}: {' > '.join(rows)}" for fam, rows in cmp["ranking"].items())
              + (" (the same order for all three GANs)." if cmp["ranking_agrees"] else ".")]  # fmt: skip
    if overlap_result is not None:
        lines += ["", *overlap_markdown(overlap_result, class_names)]
    return "\n".join(lines).rstrip("\n")


def save_difference_plot(table: dict[str, Any], path: str | os.PathLike[str], class_names: list[str]) -> str:
    """Two panels sharing one axis, per class and row: a − b (data + training noise) above a − a′ (training
    noise alone), each with Newcombe's 95% interval. The data matter where the upper panel's spread clearly
    exceeds the lower's; a table of numbers hides that comparison, a picture shows it at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmp = comparisons(table)
    rows = list(cmp["rows"])
    width = 0.8 / max(1, len(rows))
    fig, axes = plt.subplots(2, 1, figsize=(7.5, 4.8), dpi=120, sharex=True, sharey=True)
    for ax, key, title in ((axes[0], "halves", "half a − half b (data + GAN training noise)"),
                           (axes[1], "seeds", "half a − half a, GAN seed 1 (GAN training noise alone)")):  # fmt: skip
        for i, row in enumerate(rows):
            cells = cmp["rows"][row]
            x = np.array([r["cls"] for r in cells]) - 0.4 + width * (i + 0.5)
            d = np.array([100 * r[key]["diff"] for r in cells])
            lo = np.array([100 * r[key]["ci"][0] for r in cells])
            hi = np.array([100 * r[key]["ci"][1] for r in cells])
            sig = np.array([r[key]["p"] < cmp["level"] for r in cells])
            bar = ax.errorbar(x, d, yerr=[d - lo, hi - d], fmt="o", ms=3, lw=0.8, capsize=0, label=row)
            ax.plot(x[sig], d[sig], "o", ms=6, mfc="none", color=bar[0].get_color())
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_title(title, fontsize=8)
        ax.set_ylabel("points", fontsize=8)
        ax.tick_params(labelsize=7)
    ncls = len(class_names)
    axes[1].set_xticks(range(ncls))
    axes[1].set_xticklabels(class_names, fontsize=7, rotation=30 if max(map(len, class_names)) > 3 else 0)
    axes[0].legend(fontsize=6, ncol=len(rows), loc="best")
    fig.suptitle("Correctness differences with 95% intervals (ringed: significant after Bonferroni)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def save_samples(families: dict[str, GeneratorFamily], path: str | os.PathLike[str], *, per_class: int = 3,
                 seed: int = 0) -> str:  # fmt: skip
    """One row per family, ``per_class`` images of each class: what the three GANs draw, side by side."""
    from ..report.grid import save_grid
    from ..runtime import sub_seed

    rows = []
    for fam in families.values():
        for c in range(fam.num_classes):
            gen = torch.Generator().manual_seed(sub_seed(seed, c))
            rows.append(fam.sample(c, per_class, generator=gen)[1].float().cpu())
    ncol = per_class * next(iter(families.values())).num_classes
    return save_grid(torch.cat(rows), path, ncol=ncol, scale=1, row_labels=list(families))


def save(
    table: dict[str, Any],
    plan: DependencePlan,
    out: str | os.PathLike[str],
    class_names: list[str],
    families: dict[str, GeneratorFamily] | None = None,
    overlap_result: dict[str, Any] | None = None,
) -> list[str]:
    """Write dependence-DATASET.{md,json}, images/dependence-DATASET.png and, given the families,
    images/dependence-samples-DATASET.png; ``overlap_result`` (from :func:`overlap`) goes into the JSON and the
    doc. Returns the names written (relative to ``out``)."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    names = [f"dependence-{plan.dataset}.json", f"dependence-{plan.dataset}.md",
             f"images/dependence-{plan.dataset}.png"]  # fmt: skip
    data = {
        "table": table,
        "comparisons": comparisons(table),
        **({"overlap": overlap_result} if overlap_result else {}),
    }
    (out / names[0]).write_text(json.dumps(data, indent=2) + "\n")
    (out / names[1]).write_text(dependence_markdown(table, plan, class_names, overlap_result) + "\n")
    save_difference_plot(table, out / names[2], class_names)
    if families:
        names.append(f"images/dependence-samples-{plan.dataset}.png")
        save_samples(families, out / names[-1], seed=plan.seed)
    return names
