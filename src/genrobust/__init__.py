"""genrobust: global correctness and robustness of image classifiers against generative models.

A generative model G_c draws realistic images of class c from Gaussian noise; a classifier C is judged on
the composition C∘G_c, with exact statistics and sound certificates.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .data import (
    AugmentConfig,
    Dataset,
    augment_dataset,
    augment_images,
    disjoint_halves,
    list_datasets,
    load_dataset,
    split_halves,
)
from .errors import ChecksumError, DatasetError, DownloadError, GenrobustError, IdxFormatError

__all__ = [
    "AugmentConfig",
    "ChecksumError",
    "Dataset",
    "DatasetError",
    "DownloadError",
    "GenrobustError",
    "IdxFormatError",
    "__version__",
    "augment_dataset",
    "augment_images",
    "disjoint_halves",
    "list_datasets",
    "load_dataset",
    "split_halves",
]
