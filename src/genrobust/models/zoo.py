"""The built-in model zoo: named, pretrained weights shipped inside the package.

Names follow ``<dataset>-<model>``: ``mnist-small`` is the paper's small classifier trained on MNIST,
``mnist-gan`` the ten per-class GANs trained on MNIST, ``-aug`` marks training on the augmented set and
``cgan`` a class-conditional GAN. Each file carries its own metadata (recipe, training command, test
accuracy); the registry adds the file's SHA-256, checked on every load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import GenrobustError
from .classifiers import ConvClassifier
from .coverage import Coverage
from .generators import GeneratorFamily
from .io import ModelFileError, file_sha256, load_model, read_metadata, save_model
from .sources import is_factory, load_factory, onnx_classifier, onnx_generators, refuse_pickle
from .variation import VariationGenerator


@dataclass(frozen=True)
class ZooEntry:
    name: str
    role: str  # classifier | generators | variation
    dataset: str
    arch: str
    data: str  # training data: standard | augmented
    filename: str
    sha256: str
    description: str
    #: generator families: their measured precision and recall per class (:class:`~.coverage.Coverage`'s dict)
    coverage: dict[str, Any] | None = None

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
    refuse_pickle(path)
    if not path.exists():
        known = ", ".join(list_models(role)) or "none"
        raise GenrobustError(f"{text!r} is neither a file nor a built-in {role} (built-in: {known})")
    return path


def load_classifier(source: str | os.PathLike[str], *, device: str | None = None) -> nn.Module:
    """A classifier in eval mode from a built-in name (``mnist-small``), a genrobust ``.safetensors`` file, an
    ``.onnx`` file or a factory ``package.module:attr`` (see ``genrobust.models.sources``).

    The metadata (recipe, test accuracy, ... ; for ONNX the file's hash) is attached as ``model.genrobust_meta``.
    """
    text = os.fspath(source)
    if text not in ZOO and is_factory(text):
        model = load_factory(text)
        if not isinstance(model, nn.Module):
            raise GenrobustError(f"factory {text!r} gave a {type(model).__name__}, not a torch nn.Module")
        model.eval()
    elif text.lower().endswith(".onnx"):
        model = onnx_classifier(Path(text).expanduser())
    else:
        model, meta = load_model(_resolve(text, "classifier"), expect_role="classifier")
        model.genrobust_meta = meta  # type: ignore[assignment]
    return model.to(device) if device else model


def load_generators(
    source: str | os.PathLike[str],
    *,
    device: str | None = None,
    output_range: tuple[float, float] | None = None,
    class_names: Sequence[str] | None = None,
) -> GeneratorFamily:
    """A generator family in eval mode from a built-in name (``mnist-gan``), a genrobust ``.safetensors`` file,
    ONNX (one conditional file, or per-class files as ``a.onnx,b.onnx`` or ``gen_{c}.onnx``) or a factory
    ``package.module:attr`` returning a :class:`GeneratorFamily`.

    ``output_range`` and ``class_names`` declare what an ONNX file cannot say (default range [0, 1]).
    """
    text = os.fspath(source)
    if text not in ZOO and is_factory(text):
        family = load_factory(text)
        if not isinstance(family, GeneratorFamily):
            raise GenrobustError(f"factory {text!r} gave a {type(family).__name__}, not a genrobust GeneratorFamily")
        if output_range is not None or class_names is not None:
            raise GenrobustError(f"factory {text!r}: its GeneratorFamily declares its own output range and classes")
    elif ".onnx" in text.lower():
        family = onnx_generators(text, output_range=output_range or (0.0, 1.0), class_names=class_names)
    else:
        family, meta = load_model(_resolve(text, "generators"), expect_role="generators")
        assert isinstance(family, GeneratorFamily)
        if output_range is not None and tuple(output_range) != family.output_range:
            raise GenrobustError(f"{text}: genrobust's generators draw in {family.output_range}, not {output_range}")
        family.genrobust_meta = meta  # type: ignore[assignment]
        measured = meta.get("coverage") or (ZOO[text].coverage if text in ZOO else None)
        if measured:
            family.coverage = Coverage.from_dict(measured).check_classes(len(family))
    return family.eval().to(device) if device else family.eval()


def coverage_summary(name: str) -> str | None:
    """One sentence on how much of each class a built-in family draws (its measured precision and recall, from
    the registry: no weights loaded), for tables of many verdicts on it; None for a family without figures."""
    entry = ZOO.get(name)
    if entry is None or not entry.coverage:
        return None
    from ..data.registry import get_spec

    return Coverage.from_dict(entry.coverage).summary(get_spec(entry.dataset).class_names)


def load_variation(source: str | os.PathLike[str], *, device: str | None = None) -> VariationGenerator:
    """An image-conditional generator (thumbnail ⊕ latent → image) in eval mode from a built-in name
    (``mnist-variation``) or a genrobust ``.safetensors`` file (see ``genrobust.models.variation``)."""
    model, meta = load_model(_resolve(os.fspath(source), "variation"), expect_role="variation")
    assert isinstance(model, VariationGenerator)
    model.genrobust_meta = meta  # type: ignore[assignment]
    return model.eval().to(device) if device else model.eval()


def model_info(name_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a built-in model or a model file, without loading the weights (for an ``.onnx`` file: its
    inputs, outputs, operators and the ones genrobust cannot import)."""
    text = os.fspath(name_or_path)
    path = ZOO[text].path() if text in ZOO else Path(text)
    if path.suffix.lower() == ".onnx":
        from .onnx_import import onnx_info

        return onnx_info(path)
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
