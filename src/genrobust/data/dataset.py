"""In-memory datasets: uint8 images of shape (N, 28, 28), int64 labels, and a float view for models."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DatasetError, IdxFormatError
from .idx import read_idx
from .registry import DatasetSpec, get_spec
from .store import MISSING, UNVERIFIED, check_file, fetch, usable_path

SPLITS = ("train", "test", "all")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images and labels of one dataset split, in MNIST's orientation.

    ``images`` is uint8 of shape (N, 28, 28) with 0 = background; ``labels`` is int64 of shape (N,).
    ``source_index`` maps each row back to its position in the split it came from, so subsets (a class, one
    half of a disjoint split) keep their provenance.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source_index: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 3:
            raise DatasetError(f"images must be uint8 of shape (N, H, W), got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise DatasetError(f"{self.images.shape[0]} images but labels of shape {self.labels.shape}")
        if self.source_index is None:
            object.__setattr__(self, "source_index", np.arange(len(self.labels), dtype=np.int64))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, split={self.split!r}, n={len(self)}, classes={self.num_classes})"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> np.ndarray:
        """Number of images of each class (length ``num_classes``)."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def float_images(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The images as float32 in [0, 1] of shape (N, 1, 28, 28): the input every model here takes."""
        t = torch.from_numpy(self.images).to(device=device)
        return t.unsqueeze(1).to(torch.float32).div_(255.0)

    def tensors(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(float images, int64 labels) as tensors on ``device``."""
        return self.float_images(device), torch.from_numpy(self.labels).to(device=device)

    def subset(self, index: np.ndarray | Sequence[int], split: str | None = None) -> Dataset:
        """The rows at ``index`` (integer positions or a boolean mask)."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return Dataset(
            self.name,
            split or self.split,
            self.images[idx],
            self.labels[idx],
            self.class_names,
            self.source_index[idx],
        )

    def of_class(self, c: int) -> Dataset:
        """The images of class ``c``."""
        if not 0 <= c < self.num_classes:
            raise DatasetError(f"class {c} out of range for {self.name} ({self.num_classes} classes)")
        return self.subset(self.labels == c)

    @staticmethod
    def concat(parts: Sequence[Dataset], split: str) -> Dataset:
        """Stack datasets of the same kind (e.g. train + test); ``source_index`` runs on across parts."""
        if not parts:
            raise DatasetError("nothing to concatenate")
        offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
        return Dataset(
            parts[0].name,
            split,
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.labels for p in parts]),
            parts[0].class_names,
            np.concatenate([p.source_index + o for p, o in zip(parts, offsets, strict=True)]),
        )


def _load_split(spec: DatasetSpec, split: str, data_dir: str | os.PathLike[str] | None, download: bool) -> Dataset:
    image_file, label_file = spec.splits[split]
    checks = [check_file(spec, f, data_dir) for f in (image_file, label_file)]
    if download and any(c.state not in ("verified", UNVERIFIED) for c in checks):
        fetch(spec.name, data_dir=data_dir)
        checks = [check_file(spec, f, data_dir) for f in (image_file, label_file)]
    if any(c.state == MISSING for c in checks) and not download:
        missing = ", ".join(c.name for c in checks if c.state == MISSING)
        raise DatasetError(
            f"{spec.name} {split}: {missing} not found; run `genrobust data fetch {spec.name}` "
            "or pass data_dir= / --data-dir pointing at a folder that holds the files"
        )
    image_path, label_path = (usable_path(c) for c in checks)
    for c in checks:
        if c.state == UNVERIFIED:
            warnings.warn(f"{c.path}: {c.detail}", stacklevel=3)
    images = read_idx(image_path, dtype=np.uint8, ndim=3, trailing_shape=(28, 28))
    labels = read_idx(label_path, dtype=np.uint8, ndim=1).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise IdxFormatError(
            f"{image_path} holds {images.shape[0]} images but {label_path} holds {labels.shape[0]} labels"
        )
    if labels.size and labels.max() >= spec.num_classes:
        raise IdxFormatError(f"{label_path}: label {int(labels.max())} out of range for {spec.num_classes} classes")
    if spec.transposed:
        images = np.ascontiguousarray(images.transpose(0, 2, 1))
    return Dataset(spec.name, split, images, labels, spec.class_names)


def load_dataset(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Dataset:
    """Load a dataset split (``train``, ``test``, or ``all`` = train then test), verifying checksums.

    Missing or corrupt files are downloaded (into ``data_dir``, ``$GENROBUST_DATA_DIR`` or the cache) unless
    ``download=False``. EMNIST images are transposed back into MNIST's orientation.
    """
    spec = get_spec(name)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "all":
        return Dataset.concat([_load_split(spec, s, data_dir, download) for s in ("train", "test")], "all")
    return _load_split(spec, split, data_dir, download)
