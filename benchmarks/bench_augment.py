"""How long the paper's augmentation takes on all 60,000 MNIST training images.

Baselines measured in the same run, each on a sample and scaled to 60,000 images:
  * the same torch warp called one image at a time (what batching saves);
  * scipy.ndimage.affine_transform per image (the usual NumPy-world way).

    python benchmarks/bench_augment.py [--data-dir ../shared/datasets]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

import genrobust as gr
from genrobust.data.augment import augment_images, rotation_matrix, shear_matrix, warp

HERE = Path(__file__).resolve().parent


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def per_image_torch(x: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
    eye = torch.eye(2, dtype=torch.float64)[None]
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        warp(xi, rotation_matrix(params["rotation_deg"][i : i + 1]))
        warp(xi, shear_matrix(params["shear_deg"][i : i + 1]))
        warp(xi, eye, params["shift_px"][i : i + 1])


def per_image_scipy(images: np.ndarray, params: dict[str, torch.Tensor]) -> None:
    centre = np.array([13.5, 13.5])
    for i in range(images.shape[0]):
        img = images[i]
        for mat, off in (
            (rotation_matrix(params["rotation_deg"][i : i + 1])[0].numpy(), np.zeros(2)),
            (shear_matrix(params["shear_deg"][i : i + 1])[0].numpy(), np.zeros(2)),
            (np.eye(2), params["shift_px"][i].numpy()),
        ):
            inv = np.linalg.inv(mat)[::-1, ::-1]  # scipy works in (row, col)
            offset = centre - inv @ (centre + off[::-1])
            ndimage.affine_transform(img, inv, offset=offset, order=1, cval=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "datasets"))
    parser.add_argument("--sample", type=int, default=1000, help="images for the per-image baselines")
    args = parser.parse_args()

    ds = gr.load_dataset("mnist", "train", data_dir=args.data_dir, download=False)
    x = ds.float_images()
    n = x.shape[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {n:,} MNIST training images")

    t_batched = best_of(lambda: augment_images(x, seed=0), repeats=3)
    t_dataset = best_of(lambda: gr.augment_dataset(ds, seed=0), repeats=1)
    _, params = augment_images(x[: args.sample], seed=0, return_params=True)
    t_torch_loop = best_of(lambda: per_image_torch(x[: args.sample], params), 1) * n / args.sample
    t_scipy = best_of(lambda: per_image_scipy(ds.images[: args.sample], params), 1) * n / args.sample

    print(f"{'method':<44} {'seconds for 60k':>16} {'images/s out':>14} {'speed-up':>9}")
    rows = [
        ("batched torch (augment_images)", t_batched),
        ("batched + uint8 round trip (augment_dataset)", t_dataset),
        (f"torch, one image at a time (from {args.sample})", t_torch_loop),
        (f"scipy.ndimage per image (from {args.sample})", t_scipy),
    ]
    for name, t in rows:
        print(f"{name:<44} {t:>16.2f} {3 * n / t:>14,.0f} {t / t_batched:>8.1f}×")
    print(f"batched vs per-image torch: {t_torch_loop / t_batched:.1f}× faster; vs scipy: {t_scipy / t_batched:.1f}×")


if __name__ == "__main__":
    main()
