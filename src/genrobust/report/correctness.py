"""Pictures of a global-correctness result: how confidently each class is classified, and the generated images
the classifier gets most confidently wrong."""

from __future__ import annotations

import os

import numpy as np

from ..errors import GenrobustError
from ..estimate import PROFILE_LEVELS, CorrectnessResult
from .grid import save_grid


def save_confidence_profile(result: CorrectnessResult, path: str | os.PathLike[str]) -> str:
    """Bar chart per class: share classified correctly, and with softmax confidence > 0.90 / 0.97 / 0.99."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = result.classes
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=120)
    x = np.arange(len(classes))
    width = 0.8 / (len(PROFILE_LEVELS) + 1)
    ax.bar(x - 1.5 * width, [c.estimate for c in classes], width, label="correct", color="0.3")
    for i, level in enumerate(PROFILE_LEVELS):
        shares = [c.confident[f"{level:.2f}"] for c in classes]
        ax.bar(x + (i - 0.5) * width, shares, width, label=f"correct, confidence > {level:.2f}")
    ax.set_xticks(x, [c.name for c in classes], rotation=30 if len(classes) > 10 else 0)
    ax.set_ylim(min(0.8, min(c.confident["0.99"] for c in classes) - 0.02), 1.0)
    ax.axhline(1 - result.delta, color="crimson", lw=1, ls="--", label=f"1 − δ = {1 - result.delta:g}")
    ax.set_ylabel("share of generated images")
    ax.legend(fontsize=7, ncol=3, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def save_outliers(result: CorrectnessResult, path: str | os.PathLike[str], k: int = 64, ncol: int = 8) -> str:
    """The ``k`` most confidently misclassified samples the result kept, drawn by its generators (as people see
    them: an adapter's normalisation undone)."""
    items = result.outliers(k)
    if not items.items:
        raise GenrobustError("no misclassified samples to draw")
    return save_grid(items.images(), path, ncol=ncol)
