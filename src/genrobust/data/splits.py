"""Disjoint, seeded halves of a dataset, class by class.

The paper trains two GANs on disjoint data to see how much a verdict depends on the generative model. Each
class's images are shuffled with a seeded generator and cut in two; with train and test pooled, MNIST gives
about 3,500 images per class per half.
"""

from __future__ import annotations

import numpy as np

from ..errors import DatasetError
from .dataset import Dataset


def disjoint_halves(labels: np.ndarray, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted index arrays (A, B) that partition ``range(len(labels))``.

    Each class is halved; when a class has an odd count, A gets the extra image.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DatasetError(f"labels must be one-dimensional, got shape {labels.shape}")
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    half_a: list[np.ndarray] = []
    half_b: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cut = (len(idx) + 1) // 2
        half_a.append(idx[:cut])
        half_b.append(idx[cut:])
    empty = np.empty(0, dtype=np.int64)
    a = np.sort(np.concatenate(half_a)) if half_a else empty
    b = np.sort(np.concatenate(half_b)) if half_b else empty
    return a.astype(np.int64), b.astype(np.int64)


def split_halves(ds: Dataset, *, seed: int) -> tuple[Dataset, Dataset]:
    """Two disjoint datasets, ``<split>/half-a`` and ``<split>/half-b``, with the same class balance."""
    a, b = disjoint_halves(ds.labels, seed=seed)
    return ds.subset(a, f"{ds.split}/half-a"), ds.subset(b, f"{ds.split}/half-b")
