"""Datasets: registry, verified download and loading, augmentation, disjoint splits."""

from .augment import AugmentConfig, augment_dataset, augment_images
from .dataset import Dataset, load_dataset
from .registry import DATASETS, DatasetSpec, get_spec, list_datasets
from .splits import disjoint_halves, split_halves
from .store import cache_dir, check_file, fetch

__all__ = [
    "DATASETS",
    "AugmentConfig",
    "Dataset",
    "DatasetSpec",
    "augment_dataset",
    "augment_images",
    "cache_dir",
    "check_file",
    "disjoint_halves",
    "fetch",
    "get_spec",
    "list_datasets",
    "load_dataset",
    "split_halves",
]
