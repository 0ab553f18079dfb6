"""The paper's augmented training set: each image plus a rotated, a sheared and a shifted copy (4× data).

Everything is one batched ``affine_grid`` / ``grid_sample`` call per chunk, in torch only. The random
parameters are drawn up front from one seeded ``torch.Generator`` on the CPU, so the result depends on the
seed alone, not on the chunk size or the device.

Geometry convention (pixel coordinates, x to the right, y downwards, origin at the image centre): a
*forward* matrix ``A, t`` moves the content at ``q`` to ``A q + t``. A positive rotation turns the content
counter-clockwise as seen on screen; a positive shear moves the bottom of the image to the right; a
positive shift moves content right / down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DatasetError
from .dataset import Dataset


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the three random transforms (each drawn uniformly in ±range)."""

    max_rotation_deg: float = 20.0
    max_shear_deg: float = 20.0
    max_shift_fraction: float = 0.2  # of the image side


def rotation_matrix(deg: torch.Tensor) -> torch.Tensor:
    """Forward 2×2 matrices turning content counter-clockwise (on screen) by ``deg`` degrees."""
    r = torch.deg2rad(deg.to(torch.float64))
    c, s = torch.cos(r), torch.sin(r)
    return torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)


def shear_matrix(deg: torch.Tensor) -> torch.Tensor:
    """Forward 2×2 matrices of a horizontal shear by angle ``deg`` (x' = x + tan(deg)·y)."""
    k = torch.tan(torch.deg2rad(deg.to(torch.float64)))
    one, zero = torch.ones_like(k), torch.zeros_like(k)
    return torch.stack([torch.stack([one, k], -1), torch.stack([zero, one], -1)], -2)


def _base_grid(h: int, w: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(H·W, 3) rows (x, y, 1) of pixel centres in normalised coordinates (``align_corners=False``).

    ``base @ thetaᵀ`` is what ``F.affine_grid`` computes, but one broadcast matmul is ~3× faster on CPU.
    """
    xs = (torch.arange(w, dtype=dtype, device=device) * 2 + 1) / w - 1
    ys = (torch.arange(h, dtype=dtype, device=device) * 2 + 1) / h - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(h * w, 3)


def warp(images: torch.Tensor, matrix: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """Apply forward affine maps (``matrix`` (N, 2, 2), ``shift`` (N, 2) in pixels) to (N, C, H, W) images.

    Bilinear interpolation, zero (background) outside the image.
    """
    n, _, h, w = images.shape
    if matrix.shape != (n, 2, 2):
        raise DatasetError(f"need one 2×2 matrix per image: images {tuple(images.shape)}, matrix {tuple(matrix.shape)}")
    matrix = matrix.to(torch.float64)
    shift = torch.zeros(n, 2, dtype=torch.float64) if shift is None else shift.to(torch.float64)
    inv = torch.linalg.inv(matrix)
    # align_corners=False: normalised coordinate p and centred pixel coordinate q satisfy q = S p.
    s = torch.tensor([w / 2.0, h / 2.0], dtype=torch.float64)
    theta_lin = inv * s[None, None, :] / s[None, :, None]  # S⁻¹ A⁻¹ S
    theta_off = -(inv @ shift.unsqueeze(-1)).squeeze(-1) / s  # −S⁻¹ A⁻¹ t
    theta = torch.cat([theta_lin, theta_off.unsqueeze(-1)], -1).to(images.dtype).to(images.device)
    grid = (_base_grid(h, w, images.dtype, images.device) @ theta.transpose(1, 2)).view(n, h, w, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augment_images(
    images: torch.Tensor,
    *,
    seed: int,
    config: AugmentConfig = AugmentConfig(),
    chunk_size: int = 4096,
    return_params: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return ``[images; rotated; sheared; shifted]`` (4N, C, H, W) for float images in [0, 1].

    With ``return_params`` also return the drawn ``rotation_deg`` (N,), ``shear_deg`` (N,) and
    ``shift_px`` (N, 2) (x, y), so a copy can be traced back to its transform.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise DatasetError(
            f"augment_images needs float images of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    n, _, h, w = images.shape
    gen = torch.Generator().manual_seed(int(seed))
    rot = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * config.max_rotation_deg
    shear = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * config.max_shear_deg
    shift = (torch.rand(n, 2, generator=gen, dtype=torch.float64) * 2 - 1) * config.max_shift_fraction
    shift = shift * torch.tensor([w, h], dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64).expand(n, 2, 2)
    out = torch.empty((4 * n, *images.shape[1:]), dtype=images.dtype, device=images.device)
    out[:n] = images
    for lo in range(0, n, chunk_size):
        hi = min(n, lo + chunk_size)
        x = images[lo:hi]
        out[n + lo : n + hi] = warp(x, rotation_matrix(rot[lo:hi]))
        out[2 * n + lo : 2 * n + hi] = warp(x, shear_matrix(shear[lo:hi]))
        out[3 * n + lo : 3 * n + hi] = warp(x, eye[lo:hi], shift[lo:hi])
    out.clamp_(0.0, 1.0)
    if return_params:
        return out, {"rotation_deg": rot, "shear_deg": shear, "shift_px": shift}
    return out


def augment_dataset(ds: Dataset, *, seed: int, config: AugmentConfig = AugmentConfig()) -> Dataset:
    """The augmented training set of the paper: 4× the images, labels repeated, stored as uint8 again."""
    aug = augment_images(ds.float_images(), seed=seed, config=config)
    assert isinstance(aug, torch.Tensor)
    images = aug.mul_(255.0).round_().to(torch.uint8).squeeze(1).numpy()
    reps = 4
    return Dataset(
        ds.name,
        f"{ds.split}+augmented",
        images,
        np.tile(ds.labels, reps),
        ds.class_names,
        np.tile(ds.source_index, reps),
    )


__all__ = [
    "AugmentConfig",
    "augment_dataset",
    "augment_images",
    "rotation_matrix",
    "shear_matrix",
    "warp",
]
