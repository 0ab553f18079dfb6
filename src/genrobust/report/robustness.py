"""Pictures of a global-robustness run: per class, the two-sided bounds on P(robust) against ε."""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from ..attacks import AdversarialExample
from ..models.generators import module_device
from ..runtime import eval_mode
from ..verify.local import FALSIFIED
from ..verify.robustness import RobustnessResult


def save_robustness_curve(result: RobustnessResult, path: str | os.PathLike[str]) -> str:
    """One panel per class: the band between the lower bound (certified) and the upper bound (not falsified)
    on P(robust at ε), their Clopper–Pearson intervals as dotted lines, and 1 − δ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(result.classes)
    ncol = min(5, k)
    nrow = math.ceil(k / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.3 * nrow), dpi=120, squeeze=False, sharey=True)
    eps = np.array(result.eps)
    for ax, c in zip(axes.flat, result.classes, strict=False):
        cert = np.array([r.certified / r.n for r in c.per_eps])
        alive = np.array([(r.n - r.falsified) / r.n for r in c.per_eps])
        ax.fill_between(eps, cert, alive, color="0.85", label="unknown")
        ax.plot(eps, cert, "o-", color="tab:green", ms=3, label="certified")
        ax.plot(eps, alive, "o-", color="tab:red", ms=3, label="not falsified")
        ax.plot(eps, [r.lower for r in c.per_eps], ":", color="tab:green", lw=1)
        ax.plot(eps, [r.upper for r in c.per_eps], ":", color="tab:red", lw=1)
        ax.axhline(1 - result.delta, color="crimson", lw=0.8, ls="--")
        ax.set_title(f"class {c.name}", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("ε (latent)", fontsize=7)
    for ax in list(axes.flat)[k:]:
        ax.axis("off")
    axes.flat[0].set_ylabel("P(robust at ε)", fontsize=8)
    axes.flat[0].legend(fontsize=6, loc="lower left")
    fig.suptitle(f"Global robustness: bounds with {100 * result.confidence:g}% intervals (dotted); "
                 f"dashed: 1 − δ = {1 - result.delta:g}", fontsize=8)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def falsified_examples(
    result: RobustnessResult, cls: int, limit: int = 16, classifier: torch.nn.Module | None = None
) -> list[AdversarialExample]:
    """The witnesses of class ``cls`` as adversarial examples (closest first), for ``report.adversarial``;
    with ``classifier``, their softmax confidences are filled in (through the result's generators)."""
    res = result.local.get(cls)
    if res is None:
        return []
    out = []
    for i in range(len(res.labels)):
        hits = torch.nonzero(res.status[i] == FALSIFIED).flatten()
        if len(hits) == 0:
            continue
        e = int(hits[0])  # the smallest ε with a witness
        z, w = res.centers[i], res.witness[i, e]
        if torch.equal(z, w):
            continue  # a misclassified centre: no pair to show
        out.append(AdversarialExample(start=i, eps=res.eps[e], z=z, z_adv=w, pred=int(res.labels[i]), conf=math.nan,
                                      pred_adv=int(res.witness_pred[i, e]), conf_adv=math.nan, queries=0,
                                      seconds=float(res.seconds[i])))  # fmt: skip
    out = sorted(out, key=lambda ex: ex.distance)[:limit]
    if classifier is not None and result.generators is not None and out:
        gen = result.generators[cls]
        dev = module_device(gen)
        with torch.no_grad(), eval_mode(classifier, gen):
            for ex in out:
                z = torch.stack([ex.z, ex.z_adv]).to(dev)
                p = torch.softmax(classifier(gen(z)).double(), 1)
                ex.conf, ex.conf_adv = float(p[0, ex.pred]), float(p[1, ex.pred_adv])
    return out
