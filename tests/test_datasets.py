"""Loading the real MNIST and Fashion-MNIST files, verification, and every way a file can be wrong."""

import dataclasses
import gzip
import shutil

import numpy as np
import pytest

import genrobust as gr
from genrobust.data import registry
from genrobust.data.store import fetch, inspect_dataset
from genrobust.errors import ChecksumError, DatasetError, DownloadError, IdxFormatError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_real_counts_labels_and_pixels(shared_datasets, mnist_train):
    test = gr.load_dataset("mnist", "test", data_dir=shared_datasets, download=False)
    assert mnist_train.images.shape == (60_000, 28, 28) and mnist_train.images.dtype == np.uint8
    assert test.images.shape == (10_000, 28, 28)
    assert mnist_train.class_counts().tolist() == MNIST_TRAIN_COUNTS
    assert test.class_counts().tolist() == MNIST_TEST_COUNTS
    assert mnist_train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # Digits look like digits: dark background, bright strokes, a thin "1", a round "0".
    mean = mnist_train.images.reshape(60_000, -1).mean(1)
    per_class = np.array([mean[mnist_train.labels == c].mean() for c in range(10)])
    assert np.all((per_class > 15) & (per_class < 60)), per_class
    assert per_class.argmin() == 1 and per_class.argmax() == 0
    assert mnist_train.images[:, :2, :2].max() == 0  # corners are background
    assert mnist_train.images.max() == 255


def test_fashion_mnist_real(shared_datasets):
    train = gr.load_dataset("fashion-mnist", "train", data_dir=shared_datasets, download=False)
    test = gr.load_dataset("fashion_mnist", "test", data_dir=shared_datasets, download=False)
    assert len(train) == 60_000 and len(test) == 10_000
    assert train.class_counts().tolist() == [6000] * 10
    assert test.class_counts().tolist() == [1000] * 10
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert test.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert train.class_names[9] == "Ankle boot"
    mean = train.images.reshape(60_000, -1).mean(1)
    per_class = np.array([mean[train.labels == c].mean() for c in range(10)])
    assert per_class.argmin() == 5  # sandals have the least material
    assert np.all((per_class > 20) & (per_class < 120)), per_class


def test_float_view_and_pooled_split(shared_datasets, mnist_train):
    x, y = mnist_train.subset(np.arange(100)).tensors()
    assert x.shape == (100, 1, 28, 28) and x.dtype.is_floating_point
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    np.testing.assert_allclose(x[:, 0].numpy() * 255, mnist_train.images[:100], atol=1e-4)
    assert y.tolist() == mnist_train.labels[:100].tolist()
    pooled = gr.load_dataset("mnist", "all", data_dir=shared_datasets, download=False)
    assert len(pooled) == 70_000
    assert pooled.class_counts().tolist() == [a + b for a, b in zip(MNIST_TRAIN_COUNTS, MNIST_TEST_COUNTS, strict=True)]
    assert pooled.source_index[60_000] == 60_000


def test_info_reports_verified_real_files(shared_datasets):
    rows = {(r.dataset, r.split): r for name in gr.list_datasets() for r in inspect_dataset(name, shared_datasets)}
    for name in ("mnist", "fashion-mnist"):
        assert rows[(name, "train")].state == "verified" and rows[(name, "train")].images == 60_000
        assert rows[(name, "test")].state == "verified" and rows[(name, "test")].images == 10_000
    assert rows[("emnist-digits", "train")].state == "missing"


def _copy_mnist(shared, dest):
    raw = dest / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (shared / "MNIST" / "raw").iterdir():
        shutil.copy(f, raw / f.name)
    return raw


def test_wrong_checksum_is_refused_naming_the_file(shared_datasets, tmp_path):
    raw = _copy_mnist(shared_datasets, tmp_path)
    target = raw / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(target.read_bytes()))
    content[-1] = (content[-1] + 1) % 10  # one label changed: still a valid IDX file
    target.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(ChecksumError, match=r"t10k-labels-idx1-ubyte\.gz: checksum mismatch"):
        gr.load_dataset("mnist", "test", data_dir=tmp_path, download=False)
    status = {r.split: r.state for r in inspect_dataset("mnist", tmp_path)}
    assert status == {"train": "verified", "test": "corrupt"}
    # The train split is untouched and still loads.
    assert len(gr.load_dataset("mnist", "train", data_dir=tmp_path, download=False)) == 60_000


def test_truncated_download_is_refused(shared_datasets, tmp_path):
    raw = _copy_mnist(shared_datasets, tmp_path)
    target = raw / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:100_000])
    with pytest.raises(IdxFormatError, match=r"t10k-images-idx3-ubyte\.gz: gzip stream is truncated"):
        gr.load_dataset("mnist", "test", data_dir=tmp_path, download=False)


def test_missing_files_give_a_hint(tmp_path):
    with pytest.raises(DatasetError, match="genrobust data fetch mnist"):
        gr.load_dataset("mnist", "train", data_dir=tmp_path, download=False)
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'"):
        gr.load_dataset("cifar")
    with pytest.raises(DatasetError, match="unknown split"):
        gr.load_dataset("mnist", "validation", data_dir=tmp_path)


def test_offline_download_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match="downloads are disabled"):
        gr.load_dataset("mnist", "train", data_dir=tmp_path)


def test_recompressed_and_uncompressed_copies_verify_by_content(shared_datasets, tmp_path, monkeypatch):
    """Debian's dataset-fashion-mnist differs from the published .gz only in the gzip header."""
    flat = tmp_path / "usr-share-datasets-fashion-mnist"
    flat.mkdir()
    for f in (shared_datasets / "FashionMNIST" / "raw").iterdir():
        (flat / f.name).write_bytes(gzip.compress(gzip.decompress(f.read_bytes()), compresslevel=1, mtime=123456789))
    spec = dataclasses.replace(registry.FASHION_MNIST, system_dirs=(str(flat),))
    monkeypatch.setitem(registry.DATASETS, "fashion-mnist", spec)
    rows = inspect_dataset("fashion-mnist", tmp_path / "empty")
    assert [r.state for r in rows] == ["verified", "verified"]
    assert rows[0].location == str(flat)
    ds = gr.load_dataset("fashion-mnist", "test", data_dir=tmp_path / "empty", download=False)
    assert ds.labels[:3].tolist() == [9, 2, 1]
    # Uncompressed files in torchvision's layout verify too.
    raw = tmp_path / "plain" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (shared_datasets / "MNIST" / "raw").glob("t10k*"):
        (raw / f.name.removesuffix(".gz")).write_bytes(gzip.decompress(f.read_bytes()))
    assert len(gr.load_dataset("mnist", "test", data_dir=tmp_path / "plain", download=False)) == 10_000


@pytest.mark.skipif(
    not (registry.FASHION_MNIST.system_dirs and __import__("os").path.isdir(registry.FASHION_MNIST.system_dirs[0])),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_debian_package_is_found(tmp_path):
    rows = inspect_dataset("fashion-mnist", tmp_path)
    assert [r.state for r in rows] == ["verified", "verified"]


def test_fetch_downloads_from_mirrors_with_checksums(
    shared_datasets, tmp_path, file_server, closed_port_url, monkeypatch
):
    base, served = file_server
    for f in (shared_datasets / "MNIST" / "raw").iterdir():
        shutil.copy(f, served / f.name)
    monkeypatch.delenv("GENROBUST_OFFLINE")
    # The first mirror is dead: fetch must fall through to the second.
    spec = dataclasses.replace(registry.MNIST, mirrors=(closed_port_url, base))
    monkeypatch.setitem(registry.DATASETS, "mnist", spec)
    dest = tmp_path / "data"
    checks = fetch("mnist", data_dir=dest, progress=False)
    assert {c.state for c in checks.values()} == {"verified"}
    assert (dest / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()
    assert gr.load_dataset("mnist", "test", data_dir=dest).labels[:3].tolist() == [7, 2, 1]
    # A mirror serving a different file is rejected by the checksum.
    (served / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00"))
    (dest / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DownloadError, match=r"t10k-labels-idx1-ubyte\.gz from any mirror"):
        fetch("mnist", data_dir=dest, progress=False)
