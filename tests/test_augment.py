"""Augmentation: shapes, range, seeds, and geometry that lands pixels where the maths says."""

import numpy as np
import pytest
import torch

import genrobust as gr
from genrobust.data.augment import augment_images, rotation_matrix, shear_matrix, warp
from genrobust.errors import DatasetError


def _dot(r: int, c: int, n: int = 1) -> torch.Tensor:
    x = torch.zeros(n, 1, 28, 28)
    x[:, 0, r, c] = 1.0
    return x


def _where(img: torch.Tensor) -> tuple[int, int]:
    flat = int(img.reshape(-1).argmax())
    return divmod(flat, 28)


@pytest.mark.parametrize(("r", "c"), [(3, 20), (10, 5), (25, 13)])
def test_rotation_by_90_moves_a_pixel_where_geometry_says(r, c):
    # Counter-clockwise on screen: centred (x, y) goes to (y, -x), i.e. (row, col) -> (27 - c, r).
    out = warp(_dot(r, c), rotation_matrix(torch.tensor([90.0])))
    assert _where(out[0, 0]) == (27 - c, r)
    assert float(out.max()) == pytest.approx(1.0, abs=1e-5)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-4)


def test_shift_and_shear_move_pixels_exactly():
    out = warp(_dot(10, 10), torch.eye(2)[None], torch.tensor([[3.0, -2.0]]))
    assert _where(out[0, 0]) == (8, 13)
    # tan(angle) = 2: column c + 2 (r - 13.5) on row r.
    angle = torch.rad2deg(torch.atan(torch.tensor([2.0])))
    out = warp(_dot(16, 9), shear_matrix(angle))
    assert _where(out[0, 0]) == (16, 9 + 5)
    assert float(out.max()) == pytest.approx(1.0, abs=1e-4)


def test_small_rotation_moves_the_centre_of_mass_on_a_circle():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 4:7, 12:15] = 1.0  # a blob centred at row 5, col 13 -> centred (x, y) = (-0.5, -8.5)
    out = warp(x, rotation_matrix(torch.tensor([20.0])))[0, 0]
    rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    com = (float((out * rows).sum() / out.sum()) - 13.5, float((out * cols).sum() / out.sum()) - 13.5)
    t = np.deg2rad(20.0)
    x0, y0 = -0.5, -8.5
    expected = (-x0 * np.sin(t) + y0 * np.cos(t), x0 * np.cos(t) + y0 * np.sin(t))  # (y', x')
    assert com == pytest.approx(expected, abs=0.15)


def test_augment_shapes_range_seed_and_chunks(mnist_train):
    x = mnist_train.subset(np.arange(300)).float_images()
    a = augment_images(x, seed=7)
    assert a.shape == (1200, 1, 28, 28)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a[:300], x)
    assert torch.equal(a, augment_images(x, seed=7, chunk_size=64))
    assert not torch.equal(a, augment_images(x, seed=8))
    # Each copy is a genuine change of its source, yet keeps most of the ink.
    for k in (1, 2, 3):
        block = a[300 * k : 300 * (k + 1)]
        assert float((block - x).abs().amax(dim=(1, 2, 3)).median()) > 0.3
        ratio = block.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
        assert float(ratio.median()) > 0.85


def test_augment_parameters_stay_in_range(mnist_train):
    x = mnist_train.subset(np.arange(2000)).float_images()
    a, params = augment_images(x, seed=1, return_params=True)
    assert params["rotation_deg"].abs().max() <= 20 and params["rotation_deg"].abs().max() > 19
    assert params["shear_deg"].abs().max() <= 20 and params["shear_deg"].abs().max() > 19
    assert params["shift_px"].abs().max() <= 0.2 * 28 and params["shift_px"].abs().max() > 5.4
    # The rotated block is exactly the rotation with the reported angles.
    again = warp(x[:5], rotation_matrix(params["rotation_deg"][:5]))
    torch.testing.assert_close(a[2000:2005], again.clamp(0, 1))


def test_augment_dataset_is_four_times_uint8(mnist_train):
    small = mnist_train.subset(np.arange(50))
    aug = gr.augment_dataset(small, seed=0)
    assert len(aug) == 200 and aug.images.dtype == np.uint8
    assert aug.split == "train+augmented"
    assert aug.labels.tolist() == small.labels.tolist() * 4
    np.testing.assert_array_equal(aug.images[:50], small.images)
    np.testing.assert_array_equal(aug.source_index[150:], small.source_index)


def test_augment_rejects_bad_input():
    with pytest.raises(DatasetError, match="float images"):
        augment_images(torch.zeros(2, 28, 28), seed=0)
    with pytest.raises(DatasetError, match="one 2×2 matrix per image"):
        warp(torch.zeros(2, 1, 28, 28), torch.eye(2)[None])
