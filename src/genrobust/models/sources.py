"""Where a model can come from besides the zoo: ONNX files and Python factories, never pickles.

A *source* is what a user writes after ``--classifier`` or ``--generators``:

* a built-in name (``mnist-small``) or a genrobust ``.safetensors`` file (see ``zoo``);
* an ``.onnx`` file: a classifier, one conditional generator (inputs z and the class, as an index or one-hot),
  or one generator per class, written as a comma-separated list or a pattern with ``{c}`` (``gen_{c}.onnx``);
* a Python factory ``package.module:attr``: a module, a family, or a function without arguments returning one
  (it is imported with the current folder on the path, like ``python -m`` does);
* a pickled ``.pt``/``.pth``/``.ckpt`` file is refused: unpickling runs arbitrary code, and a state dict
  still needs its network's code, which is what a factory provides.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import GenrobustError
from .generators import GeneratorFamily
from .io import ModelFileError, file_sha256

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar")
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_factory(spec: str) -> bool:
    return bool(_FACTORY.match(spec))


def refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelFileError(
            f"{path}: genrobust does not load pickled files (unpickling can run any code). Save the weights with "
            "safetensors and pass a factory 'package.module:function' that builds the network and loads them, "
            "or export the network to ONNX (torch.onnx.export) and pass the .onnx file"
        )


def load_factory(spec: str) -> Any:
    """The object a ``package.module:attr`` spec names; a function is called without arguments."""
    module_name, attr = spec.split(":", 1)
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise GenrobustError(f"factory {spec!r}: cannot import {module_name!r} ({exc})") from None
    finally:
        if added:
            sys.path.remove(os.getcwd())
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise GenrobustError(f"factory {spec!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if callable(obj) and not isinstance(obj, nn.Module):
        obj = obj()
    return obj


def onnx_classifier(path: Path) -> nn.Module:
    """A classifier from an ONNX file, its input shape and file hash attached."""
    from .onnx_import import import_onnx

    model = import_onnx(path)
    if len(model.onnx_inputs) != 1:
        raise ModelFileError(f"{path}: a classifier takes one input (images), this model takes "
                             f"{len(model.onnx_inputs)}")  # fmt: skip
    model.input_shape = tuple(model.onnx_inputs[0]["shape"])
    model.genrobust_meta = {"role": "classifier", "format": "onnx", "source": str(path), "sha256": file_sha256(path)}
    return model


def _generator_paths(spec: str) -> list[Path]:
    if "{c}" in spec:
        paths = []
        while Path(spec.format(c=len(paths))).is_file():
            paths.append(Path(spec.format(c=len(paths))))
        if not paths:
            raise ModelFileError(f"{spec}: no file for class 0 ({spec.format(c=0)})")
        return paths
    return [Path(p.strip()).expanduser() for p in spec.split(",") if p.strip()]


def onnx_generators(
    spec: str,
    *,
    output_range: tuple[float, float] = (0.0, 1.0),
    class_names: Sequence[str] | None = None,
) -> GeneratorFamily:
    """A family from ONNX: one file with inputs (z, class) is conditional, several files are one per class."""
    from .onnx_import import import_onnx

    paths = _generator_paths(spec)
    for p in paths:
        if not p.is_file():
            raise ModelFileError(f"{p}: ONNX file not found")
    modules = [import_onnx(p) for p in paths]
    meta = {"role": "generators", "format": "onnx", "source": spec,
            "sha256": [file_sha256(p) for p in paths]}  # fmt: skip
    first = modules[0].onnx_inputs
    if len(paths) == 1 and len(first) == 2:
        z, label = first
        if len(z["shape"]) != 1:
            raise ModelFileError(f"{paths[0]}: the latent input must be a vector per example, got {z['shape']}")
        if label["integer"]:
            if label["shape"] not in ((), (1,)):
                raise ModelFileError(f"{paths[0]}: an integer class input must be one index per example")
            condition, k = "index", (len(class_names) if class_names else None)
            if k is None:
                raise GenrobustError(f"{paths[0]}: give the class names (--class-names): an index input does "
                                     "not say how many classes there are")  # fmt: skip
            modules[0] = _SqueezeIndex(modules[0]) if label["shape"] == (1,) else modules[0]
        else:
            condition, k = "onehot", label["shape"][0]
        fam = GeneratorFamily(conditional=modules[0], latent_dim=z["shape"][0], num_classes=k, condition=condition,
                              class_names=class_names, output_range=output_range)  # fmt: skip
    else:
        for p, m in zip(paths, modules, strict=True):
            if len(m.onnx_inputs) != 1 or len(m.onnx_inputs[0]["shape"]) != 1:
                raise ModelFileError(f"{p}: a per-class generator takes one input, a latent vector per example; "
                                     f"this one takes {[i['shape'] for i in m.onnx_inputs]}")  # fmt: skip
        fam = GeneratorFamily(per_class=modules, latent_dim=first[0]["shape"][0], class_names=class_names,
                              output_range=output_range)  # fmt: skip
    fam.genrobust_meta = meta
    return fam


class _SqueezeIndex(nn.Module):
    """Feeds class indices (N,) to an ONNX generator whose index input has shape (N, 1)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, z, label):
        return self.inner(z, label.reshape(-1, 1))
