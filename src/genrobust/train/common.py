"""Pieces shared by the trainers: training data variants (device, seed and progress helpers live in ``runtime``)."""

from __future__ import annotations

import os

from ..data import Dataset, augment_dataset, load_dataset, split_halves
from ..errors import GenrobustError
from ..runtime import accuracy, predictions, progress, resolve_device, sub_seed

__all__ = ["DATA_VARIANTS", "accuracy", "predictions", "progress", "resolve_device", "sub_seed", "training_data"]

DATA_VARIANTS = ("standard", "augmented", "half-a", "half-b")


def training_data(dataset: str, variant: str, *, seed: int, data_dir: str | os.PathLike[str] | None) -> Dataset:
    """The training images of a recipe: the train split, its augmented 4× version, or a disjoint half of
    train+test pooled (as the paper's generator-dependence study uses)."""
    if variant == "standard":
        return load_dataset(dataset, "train", data_dir=data_dir)
    if variant == "augmented":
        return augment_dataset(load_dataset(dataset, "train", data_dir=data_dir), seed=seed)
    if variant in ("half-a", "half-b"):
        a, b = split_halves(load_dataset(dataset, "all", data_dir=data_dir), seed=seed)
        return a if variant == "half-a" else b
    raise GenrobustError(f"unknown training data {variant!r}; choose one of {', '.join(DATA_VARIANTS)}")
