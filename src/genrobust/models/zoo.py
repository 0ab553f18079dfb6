"""The built-in model zoo: named, pretrained weights shipped inside the package.

Names follow ``<dataset>-<model>``: ``mnist-small`` is the paper's small classifier trained on MNIST,
``mnist-gan`` the ten per-class GANs trained on MNIST, ``-aug`` marks training on the augmented set and
``cgan`` a class-conditional GAN. Each file carries its own metadata (recipe, training command, test
accuracy); the registry adds the file's SHA-256, checked on every load.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import GenrobustError
from .classifiers import ConvClassifier
from .generators import GeneratorFamily
from .io import ModelFileError, file_sha256, load_model, read_metadata, save_model


@dataclass(frozen=True)
class ZooEntry:
    name: str
    role: str  # classifier | generators
    dataset: str
    arch: str
    data: str  # training data: standard | augmented
    filename: str
    sha256: str
    description: str

    def path(self) -> Path:
        return Path(str(resources.files("genrobust") / "weights" / self.filename))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ZOO: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    ZOO[entry.name] = entry
    return entry


def _load_registry() -> None:
    """Read the entries of the shipped weights from ``genrobust/weights/zoo.json``."""
    registry = resources.files("genrobust") / "weights" / "zoo.json"
    if registry.is_file():
        for item in json.loads(registry.read_text()):
            register(ZooEntry(**item))


_load_registry()


def list_models(role: str | None = None) -> list[str]:
    """Names of the built-in models (optionally only ``classifier`` or ``generators``)."""
    return [n for n, e in ZOO.items() if role is None or e.role == role]


def get_entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise GenrobustError(f"unknown built-in model {name!r}; known: {', '.join(ZOO) or 'none'}") from None


def _resolve(name_or_path: str | os.PathLike[str], role: str) -> Path:
    text = os.fspath(name_or_path)
    if text in ZOO:
        entry = ZOO[text]
        if entry.role != role:
            raise GenrobustError(f"built-in model {text!r} is a {entry.role}, not a {role}")
        path = entry.path()
        if not path.is_file():
            raise ModelFileError(f"built-in weights for {text!r} are missing from the installation ({path})")
        actual = file_sha256(path)
        if actual != entry.sha256:
            raise ModelFileError(f"{path}: SHA-256 {actual[:12]}… does not match the registry ({entry.sha256[:12]}…)")
        return path
    path = Path(text).expanduser()
    if path.suffix == ".onnx":
        raise GenrobustError(f"{path}: ONNX models are not supported yet; export to safetensors with gr.save_model")
    if not path.exists():
        known = ", ".join(list_models(role)) or "none"
        raise GenrobustError(f"{text!r} is neither a file nor a built-in {role} (built-in: {known})")
    return path


def load_classifier(name_or_path: str | os.PathLike[str], *, device: str | None = None) -> ConvClassifier:
    """A classifier by built-in name (``mnist-small``) or safetensors path, in eval mode.

    The metadata (recipe, test accuracy, ...) is attached as ``model.genrobust_meta``.
    """
    model, meta = load_model(_resolve(name_or_path, "classifier"), expect_role="classifier")
    assert isinstance(model, ConvClassifier)
    model.genrobust_meta = meta  # type: ignore[assignment]
    return model.to(device) if device else model


def load_generators(name_or_path: str | os.PathLike[str], *, device: str | None = None) -> GeneratorFamily:
    """A generator family by built-in name (``mnist-gan``) or safetensors path, in eval mode."""
    family, meta = load_model(_resolve(name_or_path, "generators"), expect_role="generators")
    assert isinstance(family, GeneratorFamily)
    family.genrobust_meta = meta  # type: ignore[assignment]
    return family.to(device) if device else family


def model_info(name_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a built-in model or a model file, without loading the weights."""
    text = os.fspath(name_or_path)
    path = ZOO[text].path() if text in ZOO else Path(text)
    return read_metadata(path)


def save_classifier(model: ConvClassifier, path: str | os.PathLike[str], **info: Any) -> dict[str, Any]:
    """Save your own classifier in genrobust's format (loadable with :func:`load_classifier`)."""
    if not isinstance(model, ConvClassifier):
        raise GenrobustError("save_classifier takes a genrobust ConvClassifier")
    return save_model(path, model, info=info)


def save_generators(family: GeneratorFamily, path: str | os.PathLike[str], **info: Any) -> dict[str, Any]:
    """Save your own generator family in genrobust's format (loadable with :func:`load_generators`)."""
    if not isinstance(family, GeneratorFamily):
        raise GenrobustError("save_generators takes a GeneratorFamily")
    return save_model(path, family, info=info)
