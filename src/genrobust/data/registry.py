"""The datasets genrobust knows: where they are published, their checksums, sizes and class names.

Checksums come in two kinds. ``md5`` is the published checksum of the distributed ``.gz`` file (the one
torchvision checks). ``content_sha256`` is the SHA-256 of the *decompressed* IDX bytes: it lets us verify a
copy that was re-compressed (Debian's ``dataset-fashion-mnist`` differs only in the gzip header) or stored
uncompressed. EMNIST publishes a single checksum, for its whole archive; its member files are verified by a
manifest that genrobust writes when it extracts them from an archive whose checksum matched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DatasetError


@dataclass(frozen=True)
class RawFile:
    """One IDX file of a dataset, as named in torchvision's raw layout (without ``.gz``)."""

    name: str
    md5: str | None = None
    content_sha256: str | None = None


@dataclass(frozen=True)
class Archive:
    """A published archive whose members hold the raw files (EMNIST's ``gzip.zip``)."""

    filename: str
    md5: str
    member_prefix: str  # path of the members inside the archive, e.g. "gzip/"
    approx_size: str  # shown before a long download


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to find, download, verify and decode one dataset."""

    name: str
    folder: str  # torchvision's folder name: <data_dir>/<folder>/raw/
    mirrors: tuple[str, ...]
    splits: dict[str, tuple[RawFile, RawFile]]  # split -> (images, labels)
    counts: dict[str, int]
    class_names: tuple[str, ...]
    transposed: bool = False  # EMNIST stores each image transposed
    archive: Archive | None = None
    system_dirs: tuple[str, ...] = ()  # folders a distribution may install (flat layout)
    licence: str = ""
    homepage: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def files(self) -> list[RawFile]:
        return [f for pair in self.splits.values() for f in pair]


DIGITS = tuple(str(d) for d in range(10))

MNIST = DatasetSpec(
    name="mnist",
    folder="MNIST",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    splits={
        "train": (
            RawFile(
                "train-images-idx3-ubyte",
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            ),
            RawFile(
                "train-labels-idx1-ubyte",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
        ),
        "test": (
            RawFile(
                "t10k-images-idx3-ubyte",
                "9fb629c4189551a2d022fa330f9573f3",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ),
            RawFile(
                "t10k-labels-idx1-ubyte",
                "ec29112dd5afa0611ce80d1b7f02629c",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        ),
    },
    counts={"train": 60_000, "test": 10_000},
    class_names=DIGITS,
    licence="Y. LeCun and C. Cortes; usually given as CC BY-SA 3.0",
    homepage="http://yann.lecun.com/exdb/mnist/",
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    folder="FashionMNIST",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    splits={
        "train": (
            RawFile(
                "train-images-idx3-ubyte",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            ),
            RawFile(
                "train-labels-idx1-ubyte",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ),
        ),
        "test": (
            RawFile(
                "t10k-images-idx3-ubyte",
                "bef4ecab320f06d8554ea6380940ec79",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            ),
            RawFile(
                "t10k-labels-idx1-ubyte",
                "bb300cfdad3c16e7a12a480ee83cd310",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
        ),
    },
    counts={"train": 60_000, "test": 10_000},
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    licence="MIT, Zalando SE",
    homepage="https://github.com/zalandoresearch/fashion-mnist",
)

#: EMNIST (Cohen et al. 2017) is published as one zip of gzipped IDX files with one MD5 for the zip.
EMNIST_ARCHIVE = Archive(
    filename="gzip.zip",
    md5="58c8d27c78d21e728a6bc7b3cc06412e",
    member_prefix="gzip/",
    approx_size="about 0.5 GB",
)
EMNIST_MIRRORS = (
    "https://biometrics.nist.gov/cs_links/EMNIST/",
    "http://www.itl.nist.gov/iaui/vip/cs_links/EMNIST/",
)


def _emnist(split_name: str, train: int, test: int) -> DatasetSpec:
    stem = f"emnist-{split_name}"
    return DatasetSpec(
        name=f"emnist-{split_name}",
        folder="EMNIST",
        mirrors=EMNIST_MIRRORS,
        splits={
            "train": (RawFile(f"{stem}-train-images-idx3-ubyte"), RawFile(f"{stem}-train-labels-idx1-ubyte")),
            "test": (RawFile(f"{stem}-test-images-idx3-ubyte"), RawFile(f"{stem}-test-labels-idx1-ubyte")),
        },
        counts={"train": train, "test": test},
        class_names=DIGITS,
        transposed=True,
        archive=EMNIST_ARCHIVE,
        licence="NIST Special Database 19 terms (public domain in the US)",
        homepage="https://www.nist.gov/itl/products-and-services/emnist-dataset",
    )


EMNIST_DIGITS = _emnist("digits", 240_000, 40_000)
EMNIST_MNIST = _emnist("mnist", 60_000, 10_000)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST, EMNIST_DIGITS, EMNIST_MNIST)}


def get_spec(name: str) -> DatasetSpec:
    """Look a dataset up by name (case-insensitive; ``_`` and ``-`` are interchangeable)."""
    key = name.strip().lower().replace("_", "-")
    if key == "fashionmnist":
        key = "fashion-mnist"
    try:
        return DATASETS[key]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {known}") from None


def list_datasets() -> list[str]:
    """The names of the datasets genrobust can load, verify and download (``mnist``, ``fashion-mnist``, ...)."""
    return list(DATASETS)
