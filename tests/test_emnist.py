"""EMNIST on small IDX files the tests write: orientation, the published-archive path, and verification."""

import dataclasses
import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

import genrobust as gr
from genrobust.data import registry
from genrobust.data.idx import encode_idx, write_idx
from genrobust.data.store import MANIFEST, fetch, inspect_dataset
from genrobust.errors import ChecksumError, DownloadError, IdxFormatError


def _bar_images(n: int) -> np.ndarray:
    """Images in MNIST orientation with a horizontal bar at row 5 and a dot at (20, 3): not symmetric."""
    img = np.zeros((n, 28, 28), dtype=np.uint8)
    img[:, 5, 4:24] = 200
    img[:, 20, 3] = 255
    return img


def _write_emnist(raw, stem, n_train=12, n_test=6, gz=True):
    raw.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("test", n_test)):
        stored = _bar_images(n).transpose(0, 2, 1)  # EMNIST stores images transposed
        write_idx(raw / f"{stem}-{split}-images-idx3-ubyte{suffix}", np.ascontiguousarray(stored))
        write_idx(raw / f"{stem}-{split}-labels-idx1-ubyte{suffix}", (np.arange(n) % 10).astype(np.uint8))


def test_emnist_is_returned_in_mnist_orientation(tmp_path):
    _write_emnist(tmp_path / "EMNIST" / "raw", "emnist-digits")
    with pytest.warns(UserWarning, match="no published checksum"):
        ds = gr.load_dataset("emnist-digits", "train", data_dir=tmp_path, download=False)
    assert ds.images.shape == (12, 28, 28)
    np.testing.assert_array_equal(ds.images, _bar_images(12))
    assert ds.images[0, 5, 10] == 200 and ds.images[0, 10, 5] == 0
    assert ds.images[0, 20, 3] == 255
    assert ds.labels.tolist() == [i % 10 for i in range(12)]
    rows = inspect_dataset("emnist-digits", tmp_path)
    assert [r.state for r in rows] == ["unverified", "unverified"]
    assert rows[0].images == 12 and rows[0].expected == 240_000


def test_emnist_uncompressed_torchvision_layout(tmp_path):
    _write_emnist(tmp_path / "EMNIST" / "raw", "emnist-mnist", gz=False)
    with pytest.warns(UserWarning):
        ds = gr.load_dataset("emnist-mnist", "test", data_dir=tmp_path, download=False)
    np.testing.assert_array_equal(ds.images, _bar_images(6))


def test_mismatched_counts_and_bad_labels(tmp_path):
    raw = tmp_path / "EMNIST" / "raw"
    _write_emnist(raw, "emnist-digits")
    write_idx(raw / "emnist-digits-test-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8))
    with (
        pytest.warns(UserWarning),
        pytest.raises(IdxFormatError, match=r"holds 6 images but .* holds 5 labels"),
    ):
        gr.load_dataset("emnist-digits", "test", data_dir=tmp_path, download=False)
    write_idx(raw / "emnist-digits-test-labels-idx1-ubyte.gz", np.full(6, 12, dtype=np.uint8))
    with pytest.warns(UserWarning), pytest.raises(IdxFormatError, match="label 12 out of range"):
        gr.load_dataset("emnist-digits", "test", data_dir=tmp_path, download=False)
    write_idx(raw / "emnist-digits-test-images-idx3-ubyte.gz", np.zeros((6, 28, 27), dtype=np.uint8))
    with pytest.warns(UserWarning), pytest.raises(IdxFormatError, match=r"expected \(28, 28\)"):
        gr.load_dataset("emnist-digits", "test", data_dir=tmp_path, download=False)


def _archive(stems) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for stem in stems:
            for split, n in (("train", 8), ("test", 4)):
                stored = np.ascontiguousarray(_bar_images(n).transpose(0, 2, 1))
                import gzip

                zf.writestr(f"gzip/{stem}-{split}-images-idx3-ubyte.gz", gzip.compress(encode_idx(stored)))
                labels = (np.arange(n) % 10).astype(np.uint8)
                zf.writestr(f"gzip/{stem}-{split}-labels-idx1-ubyte.gz", gzip.compress(encode_idx(labels)))
    return buf.getvalue()


def _patch_archive(monkeypatch, base, md5):
    archive = dataclasses.replace(registry.EMNIST_ARCHIVE, md5=md5)
    for name in ("emnist-digits", "emnist-mnist"):
        spec = dataclasses.replace(registry.DATASETS[name], archive=archive, mirrors=(base,))
        monkeypatch.setitem(registry.DATASETS, name, spec)


def test_emnist_fetch_verifies_archive_and_writes_manifest(tmp_path, file_server, monkeypatch):
    base, served = file_server
    data = _archive(["emnist-digits", "emnist-mnist", "emnist-letters"])
    (served / "gzip.zip").write_bytes(data)
    monkeypatch.delenv("GENROBUST_OFFLINE")
    _patch_archive(monkeypatch, base, hashlib.md5(data).hexdigest())
    dest = tmp_path / "data"
    checks = fetch("emnist-digits", data_dir=dest, progress=False)
    assert {c.state for c in checks.values()} == {"verified"}
    raw = dest / "EMNIST" / "raw"
    manifest = json.loads((raw / MANIFEST).read_text())
    assert sorted(manifest["files"]) == sorted(f"{f.name}.gz" for f in registry.DATASETS["emnist-digits"].files())
    fetch("emnist-mnist", data_dir=dest, progress=False)  # reuses the archive, extends the manifest
    assert len(json.loads((raw / MANIFEST).read_text())["files"]) == 8
    ds = gr.load_dataset("emnist-mnist", "train", data_dir=dest)
    np.testing.assert_array_equal(ds.images, _bar_images(8))
    # A tampered member no longer matches the manifest.
    write_idx(raw / "emnist-digits-test-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ChecksumError, match="emnist-digits-test-labels"):
        gr.load_dataset("emnist-digits", "test", data_dir=dest, download=False)


def test_emnist_fetch_rejects_a_wrong_archive(tmp_path, file_server, monkeypatch):
    base, served = file_server
    (served / "gzip.zip").write_bytes(_archive(["emnist-digits"]))
    monkeypatch.delenv("GENROBUST_OFFLINE")
    _patch_archive(monkeypatch, base, "0" * 32)
    with pytest.raises(DownloadError, match=r"gzip\.zip from any mirror"):
        fetch("emnist-digits", data_dir=tmp_path, progress=False)
    assert not list((tmp_path / "EMNIST" / "raw").glob("emnist-*"))
