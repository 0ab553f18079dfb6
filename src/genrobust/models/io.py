"""Saving and loading models as safetensors with metadata: the file rebuilds its own network.

Metadata (all strings, as safetensors requires) holds ``genrobust`` = a JSON document with the format version,
the role (``classifier`` or ``generators``), the architecture and its config, the dataset, the input range,
the training recipe and command, the test accuracy, and ``weights_sha256``: a hash of every tensor's bytes,
checked on load so a damaged file is caught even when safetensors can still parse it. Weights may be stored in
float16 to save space; they are loaded as float32. No pickle is ever loaded.

A file may also be gzip-compressed (``save_model`` to a name ending in ``.gz``; recognised on load by its magic
bytes, whatever its name). The built-in weights are stored so: float16 weights lose 8% to gzip, which is what fits
the package's two coverage families beside the paper's ones within its 90 MB, without touching a single weight.
``gunzip`` gives back a plain safetensors file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as serialize_safetensors
from torch import nn

from ..errors import GenrobustError
from .classifiers import ConvClassifier, ConvClassifierConfig
from .generators import GeneratorFamily, MLPGANConfig, MLPGenerator
from .variation import VariationConfig, VariationGenerator

FORMAT = "genrobust-model/1"
GZIP_MAGIC = b"\x1f\x8b"


class ModelFileError(GenrobustError):
    """A model file is unreadable, for another architecture, damaged, or holds NaN/inf weights."""


def weights_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over sorted keys, dtypes, shapes and bytes of every tensor."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _describe(module: nn.Module) -> dict[str, Any]:
    if isinstance(module, ConvClassifier):
        return {"role": "classifier", "arch": "conv-classifier", "config": module.config.to_dict()}
    if isinstance(module, GeneratorFamily):
        if not module.builtin:
            raise ModelFileError(
                "genrobust's safetensors format rebuilds only its own MLP GANs (without an adapter); keep a family "
                "of your own modules as ONNX files or a Python factory (see the README, 'Your own models')"
            )
        return {
            "role": "generators",
            "arch": f"mlp-gan/{module.kind}",
            "config": module.config.to_dict(),
            "num_classes": module.num_classes,
            "class_names": list(module.class_names),
        }
    if isinstance(module, VariationGenerator):
        return {"role": "variation", "arch": "cvae/image-conditional", "config": module.config.to_dict()}
    raise ModelFileError(f"cannot save a {type(module).__name__}: save a ConvClassifier, a GeneratorFamily or a "
                         "VariationGenerator")  # fmt: skip


def save_model(
    path: str | os.PathLike[str],
    module: nn.Module,
    *,
    info: dict[str, Any] | None = None,
    half: bool | Collection[str] = False,
) -> dict[str, Any]:
    """Write ``module`` to ``path`` (safetensors) with its architecture and ``info``; return the metadata.

    ``half`` stores every floating tensor (``True``) or the named ones in float16, halving their size.
    """
    sd = {
        k: v.detach().cpu().contiguous()
        for k, v in module.state_dict().items()
        if not k.startswith(("_slices", "_members"))
    }
    half_keys = {k for k, v in sd.items() if v.is_floating_point()} if half is True else set(half or ())
    if half_keys - set(sd):
        raise ModelFileError(f"cannot store unknown tensors in float16: {sorted(half_keys - set(sd))[:3]}")
    sd = {k: v.half() if k in half_keys else v for k, v in sd.items()}
    meta = {"format": FORMAT, **_describe(module), **(info or {})}
    n_half = sum(sd[k].numel() for k in half_keys)
    n_all = sum(v.numel() for v in sd.values() if v.is_floating_point())
    meta["dtype"] = "float16" if n_half == n_all and n_all else ("mixed" if n_half else "float32")
    meta["float16_tensors"] = sorted(half_keys)
    meta["weights_sha256"] = weights_sha256(sd)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    data = serialize_safetensors(sd, metadata={"genrobust": json.dumps(meta, sort_keys=True)})
    if path.suffix == ".gz":  # mtime 0: the same weights give the same bytes, so the zoo's SHA-256 is stable
        data = gzip.compress(data, compresslevel=9, mtime=0)
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return meta


def is_compressed(path: str | os.PathLike[str]) -> bool:
    """Whether a model file is gzip-compressed (by its first two bytes, not its name)."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def _compressed_header(path: Path) -> dict[str, Any]:
    """The safetensors header of a gzip-compressed file: only its first bytes are decompressed."""
    with gzip.open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        if not 0 < size < 100 << 20:
            raise ValueError(f"header length {size}")
        return json.loads(fh.read(size))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The genrobust metadata of a model file, without loading its weights."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        if is_compressed(path):
            raw = (_compressed_header(path).get("__metadata__") or {}).get("genrobust")
        else:
            with safe_open(str(path), framework="pt") as fh:
                raw = (fh.metadata() or {}).get("genrobust")
    except (SafetensorError, OSError, ValueError, EOFError, zlib.error) as exc:
        raise ModelFileError(f"{path}: not a readable safetensors file ({exc})") from None
    if raw is None:
        raise ModelFileError(f"{path}: safetensors file without genrobust metadata (save it with gr.save_model)")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise ModelFileError(f"{path}: corrupt genrobust metadata") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: unsupported model format {meta.get('format')!r} (expected {FORMAT})")
    return meta


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        if is_compressed(path):
            return load_safetensors(gzip.decompress(path.read_bytes()))
        with safe_open(str(path), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError, EOFError, zlib.error) as exc:
        raise ModelFileError(f"{path}: cannot read weights ({exc})") from None


def _build(meta: dict[str, Any], path: Path) -> nn.Module:
    arch = meta.get("arch")
    try:
        if arch == "conv-classifier":
            return ConvClassifier(ConvClassifierConfig(**meta["config"]))
        if arch in ("mlp-gan/per-class", "mlp-gan/conditional"):
            cfg = MLPGANConfig.from_dict(meta["config"])
            names = tuple(meta.get("class_names") or ())
            if arch == "mlp-gan/per-class":
                gens = [MLPGenerator(cfg) for _ in range(int(meta["num_classes"]))]
                return GeneratorFamily(per_class=gens, class_names=names or None)
            return GeneratorFamily(conditional=MLPGenerator(cfg, conditional=True), class_names=names or None)
        if arch == "cvae/image-conditional":
            return VariationGenerator(VariationConfig.from_dict(meta["config"]))
    except (KeyError, TypeError, ValueError, GenrobustError) as exc:
        raise ModelFileError(f"{path}: architecture description is incomplete ({exc})") from None
    raise ModelFileError(f"{path}: unknown architecture {arch!r}")


def load_model(path: str | os.PathLike[str], *, expect_role: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network a file describes and load its weights (float32, eval mode)."""
    path = Path(path)
    meta = read_metadata(path)
    if expect_role is not None and meta.get("role") != expect_role:
        raise ModelFileError(f"{path}: holds a {meta.get('role')}, expected a {expect_role}")
    tensors = _read_tensors(path)
    digest = weights_sha256(tensors)
    if meta.get("weights_sha256") not in (None, digest):
        raise ModelFileError(
            f"{path}: weights are damaged (hash {digest[:12]}…, recorded {meta['weights_sha256'][:12]}…)"
        )
    for k, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ModelFileError(f"{path}: tensor {k!r} contains NaN or infinity")
    module = _build(meta, path)
    expected = {k: v for k, v in module.state_dict().items() if not k.startswith(("_slices", "_members"))}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            k = wrong[0]
            parts.append(f"{k} has shape {tuple(tensors[k].shape)}, the architecture needs {tuple(expected[k].shape)}")
        raise ModelFileError(f"{path}: weights do not fit architecture {meta.get('arch')}: " + "; ".join(parts))
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, strict=False)
    module.eval()
    return module, meta
