"""Tile images into one picture: the quickest way for a person to judge generated or augmented images."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import GenrobustError


def _to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, H, W) greyscale or (N, H, W, 3) colour uint8 from (N, H, W), (N, 1, H, W) or (N, 3, H, W) images."""
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim == 4:
        if arr.shape[1] not in (1, 3):
            raise GenrobustError(f"image_grid takes greyscale or RGB images (N, 1 or 3, H, W), got {arr.shape}")
        arr = arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)
    if arr.ndim not in (3, 4):
        raise GenrobustError(f"image_grid takes images of shape (N, H, W) or (N, C, H, W), got {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.isfinite(arr).all():
            raise GenrobustError("image_grid: images contain NaN or infinity")
        arr = (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return np.ascontiguousarray(arr)


def image_grid(
    images: torch.Tensor | np.ndarray,
    *,
    ncol: int = 10,
    scale: int = 2,
    pad: int = 2,
    row_labels: Sequence[str] | None = None,
    invert: bool = False,
) -> Image.Image:
    """A grid of greyscale or RGB images (uint8, or floats in [0, 1]), ``ncol`` per row, upscaled by ``scale``.

    ``row_labels`` writes a caption left of each row; ``invert`` draws dark ink on white paper.
    """
    arr = _to_uint8(images)
    if invert:
        arr = 255 - arr
    n, h, w = arr.shape[:3]
    mode = "L" if arr.ndim == 3 else "RGB"
    nrow = max(1, -(-n // ncol))
    label_w = 0 if not row_labels else 8 + 7 * max(len(s) for s in row_labels)
    cell_h, cell_w = h * scale + pad, w * scale + pad
    background = 255 if invert else 40
    canvas = Image.new(mode, (label_w + ncol * cell_w + pad, nrow * cell_h + pad),
                       color=background if mode == "L" else (background,) * 3)  # fmt: skip
    for i in range(n):
        r, c = divmod(i, ncol)
        tile = Image.fromarray(arr[i]).resize((w * scale, h * scale), Image.NEAREST)
        canvas.paste(tile, (label_w + pad + c * cell_w, pad + r * cell_h))
    if row_labels:
        draw = ImageDraw.Draw(canvas)
        for r, text in enumerate(row_labels[:nrow]):
            ink = 0 if invert else 255
            draw.text((4, pad + r * cell_h + cell_h // 2 - 6), text, fill=ink if mode == "L" else (ink,) * 3)
    return canvas


def save_grid(images: torch.Tensor | np.ndarray, path: str | os.PathLike[str], **kwargs: object) -> str:
    """Write :func:`image_grid` to a PNG file and return its path."""
    image_grid(images, **kwargs).save(path)  # type: ignore[arg-type]
    return str(path)
