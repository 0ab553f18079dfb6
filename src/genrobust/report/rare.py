"""Pictures of a rare-failure run (adaptive multilevel splitting): each class's ladder of levels, and the
failures its last level held."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import GenrobustError
from ..rare import RareFailureResult
from .grid import save_grid


def save_levels_plot(result: RareFailureResult, path: str | os.PathLike[str]) -> str:
    """Per class (the first run): the score threshold at each level (left), and the tail it traced, the
    estimated P[score > threshold] against the threshold, ending at the failure level 0 (right, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=120)
    for c in result.classes:
        th = [lv["threshold"] for lv in c.levels]
        running = list(np.cumprod([lv["survived"] for lv in c.levels]))
        (line,) = ax1.plot(range(1, len(th) + 1), th, marker=".", label=c.name)
        if c.reached and c.runs[0] > 0:  # the last point: the failure level itself
            th, running = [*th, 0.0], [*running, c.runs[0]]
        ax2.semilogy(th, running, marker=".", color=line.get_color(), label=c.name)
    ax1.axhline(0, color="crimson", lw=1, ls="--")
    ax2.axvline(0, color="crimson", lw=1, ls="--")
    ax1.set_xlabel("level")
    ax1.set_ylabel("score threshold (failure at 0)")
    ax2.set_xlabel("score threshold: max other logit − own logit")
    ax2.set_ylabel("P[score > threshold]")
    ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def save_failures(result: RareFailureResult, path: str | os.PathLike[str], per_class: int = 8) -> str:
    """The failing images the last level held, ``per_class`` per class, one row per class."""
    gens = result.generators
    if gens is None:
        raise GenrobustError(
            "the generators are not attached to this result (a loaded one has none): attach the "
            "family it judged with result.with_generators(family) to draw the failures"
        )
    rows = [(c.cls, c.failures[:per_class]) for c in result.classes if c.failures]
    if not rows:
        raise GenrobustError("no failures were found: nothing to draw")
    dev = next((p.device for p in gens.parameters()), torch.device("cpu"))
    with torch.no_grad():
        images = torch.cat([gens.display(gens[c](torch.tensor(zs, device=dev))).cpu() for c, zs in rows])
    return save_grid(images, path, ncol=max(len(zs) for _, zs in rows))
