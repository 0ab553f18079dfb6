"""ONNX files as PyTorch modules, without ``onnx2torch`` (it needs torchvision) and without unpickling anything.

:func:`import_onnx` reads a model with the ``onnx`` package (protocol buffers, no code runs) and rebuilds it as a
``torch.fx.GraphModule`` whose steps are the ordinary modules of the bound engine's operator table: Gemm and
MatMul become ``nn.Linear``, Conv ``nn.Conv2d``, BatchNormalization ``nn.BatchNorm1d/2d``, pooling
``nn.MaxPool2d``/``nn.AvgPool2d``, Reshape/Flatten :class:`BatchReshape`, arithmetic with constants stays
arithmetic (the capture folds it). So an imported model runs forward and backward like any module (attacks need
gradients) and the verifier bounds it through the same table as a PyTorch model: one set of bound rules, two ways
in (:data:`CONVERTERS` lists the ONNX operators; ``genrobust.bounds.capture.MODULE_BUILDERS`` the modules).

Shapes are followed by running every step on a small example batch while the graph is built, so shape
arithmetic (``Shape → Gather → Concat → Reshape``, as exporters write ``x.view(x.size(0), -1)``) is evaluated
at import time; the first dimension is the batch and must stay the batch.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx
from torch import nn

from ..errors import GenrobustError
from .io import ModelFileError
from .layers import BatchReshape

#: A stand-in for the batch size in shape arithmetic done at import time.
BATCH = -(2**40) - 7
#: The example batch run beside the conversion (two rows, so a batch dimension of 1 cannot pass for a feature).
_EXAMPLE_BATCH = 2


class UnsupportedOnnxError(GenrobustError):
    """An ONNX operator (or attribute) genrobust cannot import."""


def _require_onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:  # pragma: no cover - the extra is installed in the tests
        raise GenrobustError("reading .onnx files needs the onnx package: pip install 'genrobust[onnx]'") from None
    return onnx, numpy_helper


def _load_checked(path: Path):
    """The ONNX model at ``path``, parsed and checked (protocol buffers only: nothing in the file runs)."""
    onnx, _ = _require_onnx()
    if not path.is_file():
        raise ModelFileError(f"{path}: ONNX file not found")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf's DecodeError, onnx's ValidationError, ...
        raise ModelFileError(f"{path}: not a valid ONNX model ({str(exc).splitlines()[0][:200]})") from None
    return model


class _Value:
    """A tensor while converting: ``node`` in the graph with an ``example`` value, or a ``static`` constant."""

    def __init__(self, node: torch.fx.Node | None = None, example: torch.Tensor | None = None, static=None):
        self.node, self.example, self.static = node, example, static

    @property
    def is_static(self) -> bool:
        return self.node is None


class _Builder:
    def __init__(self, name: str) -> None:
        self.root = nn.Module()
        self.graph = torch.fx.Graph()
        self.name = name
        self.count = 0

    def module(self, m: nn.Module, x: _Value, *more: _Value) -> _Value:
        self.count += 1
        key = f"{type(m).__name__.lower()}_{self.count}"
        self.root.add_module(key, m)
        node = self.graph.call_module(key, (x.node, *[v.node for v in more]))
        with torch.no_grad():
            example = m.eval()(x.example, *[v.example for v in more])
        return _Value(node, example)

    def constant(self, t: torch.Tensor) -> torch.fx.Node:
        self.count += 1
        key = f"const_{self.count}"
        self.root.register_buffer(key, t, persistent=False)
        return self.graph.get_attr(key)

    def function(self, fn: Callable, *args: Any) -> _Value:
        """``fn`` on values (graph nodes or constants) and plain Python arguments."""
        fx_args, ex_args = [], []
        for a in args:
            if isinstance(a, _Value):
                if a.is_static:
                    t = torch.as_tensor(a.static)
                    fx_args.append(self.constant(t) if t.ndim else float(t))
                    ex_args.append(t if t.ndim else float(t))
                else:
                    fx_args.append(a.node)
                    ex_args.append(a.example)
            elif isinstance(a, (list, tuple)) and any(isinstance(v, _Value) for v in a):
                fx_args.append([v.node if not v.is_static else self.constant(torch.as_tensor(v.static)) for v in a])
                ex_args.append([v.example if not v.is_static else torch.as_tensor(v.static) for v in a])
            else:
                fx_args.append(a)
                ex_args.append(a)
        node = self.graph.call_function(fn, tuple(fx_args))
        with torch.no_grad():
            example = fn(*ex_args)
        return _Value(node, example)


def _attrs(node) -> dict[str, Any]:
    onnx, numpy_helper = _require_onnx()
    out: dict[str, Any] = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif a.type == onnx.AttributeProto.TENSOR:
            v = numpy_helper.to_array(v)
        out[a.name] = v
    return out


def _f32(a) -> torch.Tensor:
    return torch.as_tensor(np.array(a, dtype=np.float32))


def _static(v: _Value, what: str) -> np.ndarray:
    if not v.is_static:
        raise UnsupportedOnnxError(f"{what} must be a constant (an initializer or Constant), not computed from input")
    return np.asarray(v.static)


def _pads2d(attrs: dict, op: str) -> tuple[int, int]:
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise UnsupportedOnnxError(f"{op} with auto_pad={attrs['auto_pad']}: export with explicit pads")
    p = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(p) != 4 or p[0] != p[2] or p[1] != p[3]:
        raise UnsupportedOnnxError(f"{op} with asymmetric or non-2-D pads {p}")
    return int(p[0]), int(p[1])


# ----------------------------------------------------------------------------------------------- converters
def _gemm(b: _Builder, ins: list[_Value], a: dict) -> _Value:
    if a.get("transA", 0):
        raise UnsupportedOnnxError("Gemm with transA=1")
    w = _static(ins[1], "Gemm's B")
    w = w if a.get("transB", 0) else w.T
    w = w * a.get("alpha", 1.0)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=len(ins) > 2)
    lin.weight.data = _f32(w)
    if len(ins) > 2:
        lin.bias.data = _f32(np.broadcast_to(_static(ins[2], "Gemm's C") * a.get("beta", 1.0), (w.shape[0],)))
    return b.module(lin, ins[0])


def _matmul(b: _Builder, ins: list[_Value], a: dict) -> _Value:
    if ins[0].is_static or not ins[1].is_static or np.ndim(ins[1].static) != 2 or ins[0].example.ndim != 2:
        raise UnsupportedOnnxError("MatMul other than (batch, features) × a constant matrix")
    w = _static(ins[1], "MatMul's second input")
    lin = nn.Linear(w.shape[0], w.shape[1], bias=False)
    lin.weight.data = _f32(w.T)
    return b.module(lin, ins[0])


def _conv(b: _Builder, ins: list[_Value], a: dict) -> _Value:
    w = _static(ins[1], "Conv's weights")
    if w.ndim != 4:
        raise UnsupportedOnnxError(f"Conv with {w.ndim - 2}-D kernels (only 2-D)")
    g = int(a.get("group", 1))
    conv = nn.Conv2d(w.shape[1] * g, w.shape[0], tuple(w.shape[2:]), stride=tuple(a.get("strides", [1, 1])),
                     padding=_pads2d(a, "Conv"), dilation=tuple(a.get("dilations", [1, 1])), groups=g,
                     bias=len(ins) > 2)  # fmt: skip
    conv.weight.data = _f32(w)
    if len(ins) > 2:
        conv.bias.data = _f32(_static(ins[2], "Conv's bias"))
    return b.module(conv, ins[0])


def _batchnorm(b: _Builder, ins: list[_Value], a: dict) -> _Value:
    scale, bias, mean, var = (_static(v, "BatchNormalization's parameters") for v in ins[1:5])
    rank = ins[0].example.ndim
    bn = (nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d)(len(scale), eps=float(a.get("epsilon", 1e-5)))
    if rank not in (2, 4):
        raise UnsupportedOnnxError(f"BatchNormalization on {rank}-D tensors")
    bn.weight.data, bn.bias.data = _f32(scale), _f32(bias)
    bn.running_mean.data, bn.running_var.data = _f32(mean), _f32(var)
    return b.module(bn.eval(), ins[0])


def _pool(kind: str):
    def convert(b: _Builder, ins: list[_Value], a: dict) -> _Value:
        k = tuple(a["kernel_shape"])
        if len(k) != 2:
            raise UnsupportedOnnxError(f"{kind} over {len(k)} dimensions (only 2-D)")
        s = tuple(a.get("strides", k))
        pad = _pads2d(a, kind)
        ceil = bool(a.get("ceil_mode", 0))
        if kind == "MaxPool":
            if tuple(a.get("dilations", [1, 1])) != (1, 1):
                raise UnsupportedOnnxError("MaxPool with dilations")
            return b.module(nn.MaxPool2d(k, s, pad, ceil_mode=ceil), ins[0])
        return b.module(nn.AvgPool2d(k, s, pad, ceil_mode=ceil, count_include_pad=bool(a.get("count_include_pad", 0))
                                     or not any(pad)), ins[0])  # fmt: skip

    return convert


def _global_avgpool(b: _Builder, ins: list[_Value], a: dict) -> _Value:
    h, w = ins[0].example.shape[2:]
    return b.module(nn.AvgPool2d((h, w)), ins[0])


def _flatten(b: _Builder, ins: list[_Value], a: dict) -> _Value:
    if a.get("axis", 1) != 1:
        raise UnsupportedOnnxError(f"Flatten with axis={a['axis']} (only 1: keep the batch)")
    if ins[0].is_static:
        return _Value(static=np.asarray(ins[0].static).reshape(np.shape(ins[0].static)[0], -1))
    return b.module(nn.Flatten(1), ins[0])


def _reshape(b: _Builder, ins: list[_Value], a: dict) -> _Value:
    target = [int(v) for v in _static(ins[1], "Reshape's shape")]
    x = ins[0]
    if x.is_static:
        return _Value(static=np.reshape(x.static, target))
    if not target or target[0] not in (BATCH, -1, 0, 1, x.example.shape[0]):
        raise UnsupportedOnnxError(f"Reshape to {target}: the first dimension must stay the batch")
    rest = [x.example.shape[i + 1] if (v == 0 and not a.get("allowzero", 0)) else v for i, v in enumerate(target[1:])]
    if target[0] in (-1, 1) and -1 in rest:
        raise UnsupportedOnnxError(f"Reshape to {target}: write the batch dimension as x.size(0) or 0, not {target[0]}")
    return b.module(BatchReshape(tuple(rest)), x)


def _arith(fn: Callable):
    def convert(b: _Builder, ins: list[_Value], a: dict) -> _Value:
        x, y = ins
        if x.is_static and y.is_static:  # shape arithmetic: integer division stays integer, as in ONNX
            u, v = np.asarray(x.static), np.asarray(y.static)
            if fn is operator.truediv and u.dtype.kind in "iu" and v.dtype.kind in "iu":
                return _Value(static=np.trunc(u / v).astype(u.dtype))
            return _Value(static=fn(u, v))
        return b.function(fn, x, y)

    return convert


def _activation(make: Callable[[dict], nn.Module]):
    def convert(b: _Builder, ins: list[_Value], a: dict) -> _Value:
        return b.module(make(a), ins[0])

    return convert


def _identity(b: _Builder, ins: list[_Value], a: dict) -> _Value:
    return ins[0]  # Identity, and Dropout at inference (its optional mask output is never used by a classifier)


def _concat(b: _Builder, ins: list[_Value], a: dict) -> _Value:
    axis = int(a["axis"])
    if all(v.is_static for v in ins):
        return _Value(static=np.concatenate([np.atleast_1d(v.static) for v in ins], axis))
    return b.function(torch.cat, list(ins), axis)


def _shape(b: _Builder, ins: list[_Value], a: dict) -> _Value:
    shape = list(np.shape(ins[0].static)) if ins[0].is_static else [BATCH, *ins[0].example.shape[1:]]
    start, end = a.get("start", 0), a.get("end")
    return _Value(static=np.array(shape[start:end], dtype=np.int64))


def _static_only(name: str, fn: Callable[[list[np.ndarray], dict], np.ndarray]):
    def convert(b: _Builder, ins: list[_Value], a: dict) -> _Value:
        return _Value(static=fn([_static(v, f"{name}'s input") for v in ins], a))

    return convert


def _gather(v: list[np.ndarray], a: dict) -> np.ndarray:
    return np.take(v[0], v[1], axis=int(a.get("axis", 0)))


def _lookup(b: _Builder, ins: list[_Value], a: dict) -> _Value:
    """Gather rows of a constant table by a computed index: an embedding (a conditional generator's label)."""
    table = np.asarray(ins[0].static)
    if int(a.get("axis", 0)) != 0 or table.ndim != 2:
        raise UnsupportedOnnxError("Gather from a constant other than an embedding table (rows, axis 0)")
    emb = nn.Embedding(*table.shape)
    emb.weight.data = _f32(table)
    return b.module(emb, ins[1])


def _unsqueeze(v: list[np.ndarray], a: dict) -> np.ndarray:
    axes = a["axes"] if "axes" in a else v[1].tolist()
    out = v[0]
    for ax in sorted(int(x) for x in axes):
        out = np.expand_dims(out, ax)
    return out


def _squeeze(v: list[np.ndarray], a: dict) -> np.ndarray:
    axes = a.get("axes", v[1].tolist() if len(v) > 1 else None)
    return np.squeeze(v[0], axis=tuple(axes) if axes is not None else None)


def _slice(v: list[np.ndarray], a: dict) -> np.ndarray:
    starts, ends = v[1], v[2]
    axes = v[3] if len(v) > 3 else np.arange(len(starts))
    steps = v[4] if len(v) > 4 else np.ones(len(starts), dtype=np.int64)
    idx = [slice(None)] * v[0].ndim
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        idx[int(ax)] = slice(int(s), int(e), int(st))
    return v[0][tuple(idx)]


def _constant(b: _Builder, ins: list[_Value], a: dict) -> _Value:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in a:
            return _Value(static=np.array(a[key]))
    raise UnsupportedOnnxError(f"Constant with {sorted(a)} (only numeric values)")


#: ONNX operator → converter. Each yields modules of the bound engine's operator table (or folds constants).
CONVERTERS: dict[str, Callable[[_Builder, list[_Value], dict], _Value]] = {
    "Gemm": _gemm, "MatMul": _matmul, "Conv": _conv, "BatchNormalization": _batchnorm,
    "Relu": _activation(lambda a: nn.ReLU()), "LeakyRelu": _activation(lambda a: nn.LeakyReLU(a.get("alpha", 0.01))),
    "Tanh": _activation(lambda a: nn.Tanh()), "Sigmoid": _activation(lambda a: nn.Sigmoid()),
    "Softplus": _activation(lambda a: nn.Softplus()),
    "MaxPool": _pool("MaxPool"), "AveragePool": _pool("AveragePool"), "GlobalAveragePool": _global_avgpool,
    "Flatten": _flatten, "Reshape": _reshape, "Identity": _identity, "Dropout": _identity,
    "Add": _arith(operator.add), "Sub": _arith(operator.sub), "Mul": _arith(operator.mul),
    "Div": _arith(operator.truediv), "Concat": _concat, "Constant": _constant, "Shape": _shape,
    "Gather": lambda b, ins, a: _lookup(b, ins, a) if ins[0].is_static and not ins[1].is_static
    else _static_only("Gather", _gather)(b, ins, a), "Unsqueeze": _static_only("Unsqueeze", _unsqueeze),
    "Squeeze": _static_only("Squeeze", _squeeze), "Slice": _static_only("Slice", _slice),
    "Cast": _static_only("Cast", lambda v, a: v[0]),
    "Mod": _static_only("Mod", lambda v, a: np.fmod(v[0], v[1]) if a.get("fmod", 0) else np.mod(v[0], v[1])),
    "Equal": _static_only("Equal", lambda v, a: np.equal(v[0], v[1])),
    "Where": _static_only("Where", lambda v, a: np.where(v[0], v[1], v[2])),
    "Range": _static_only("Range", lambda v, a: np.arange(v[0], v[1], v[2])),
    "ConstantOfShape": _static_only("ConstantOfShape", lambda v, a: np.full(
        v[0].astype(np.int64), a["value"].reshape(-1)[0] if "value" in a else 0.0)),
}  # fmt: skip


def import_onnx(path: str | os.PathLike[str]) -> torch.fx.GraphModule:
    """The ONNX model at ``path`` as a PyTorch module (float32, eval mode); inputs keep their order.

    Every input but the batch dimension must have a fixed shape. The module carries ``onnx_inputs``: per input its
    name, per-example shape and whether it holds integers (a conditional generator's class index).
    """
    onnx, numpy_helper = _require_onnx()
    path = Path(path)
    model = _load_checked(path)
    g = model.graph
    values: dict[str, _Value] = {}
    for init in g.initializer:
        values[init.name] = _Value(static=np.array(numpy_helper.to_array(init)))
    b = _Builder(path.stem)
    inputs = []
    for inp in g.input:
        if inp.name in values:
            continue
        t = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if len(dims) < 1 or any(d is None or d <= 0 for d in dims[1:]):
            raise ModelFileError(f"{path}: input {inp.name!r} needs a fixed shape beyond the batch, got {dims}")
        integer = t.elem_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
        shape = tuple(dims[1:])
        example = (torch.zeros(_EXAMPLE_BATCH, *shape, dtype=torch.int64) if integer
                   else torch.rand(_EXAMPLE_BATCH, *shape))  # fmt: skip
        values[inp.name] = _Value(b.graph.placeholder(f"input_{len(inputs)}"), example)
        inputs.append({"name": inp.name, "shape": shape, "integer": integer})
    if not inputs:
        raise ModelFileError(f"{path}: the model has no inputs")
    for node in g.node:
        convert = CONVERTERS.get(node.op_type)
        if convert is None:
            raise UnsupportedOnnxError(f"{path}: ONNX operator {node.op_type!r} (node {node.name!r}) is not supported; "
                                       f"supported: {', '.join(sorted(CONVERTERS))}")  # fmt: skip
        ins = [values[n] for n in node.input if n]
        try:
            out = convert(b, ins, _attrs(node))
        except UnsupportedOnnxError as exc:
            raise UnsupportedOnnxError(f"{path}: node {node.name!r}: {exc}") from None
        except (RuntimeError, ValueError, IndexError, KeyError) as exc:
            raise ModelFileError(f"{path}: node {node.name!r} ({node.op_type}) cannot be converted: {exc}") from None
        values[node.output[0]] = out
    if len(g.output) != 1:
        raise UnsupportedOnnxError(f"{path}: the model has {len(g.output)} outputs; genrobust needs one")
    result = values[g.output[0].name]
    if result.is_static:
        raise ModelFileError(f"{path}: the output does not depend on the input")
    b.graph.output(result.node)
    gm = torch.fx.GraphModule(b.root, b.graph, class_name=f"Onnx_{_identifier(path.stem)}")
    gm.onnx_inputs = inputs
    gm.onnx_path = str(path)
    for t in gm.parameters():
        t.requires_grad_(False)
    return gm.eval()


def onnx_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``genrobust models info`` shows for an ONNX file: its inputs, outputs, opset, operators and size, and
    which operators genrobust cannot import, read from the file alone (nothing is converted or run), so a user
    learns what to change in their export before a run fails on it."""
    onnx, _ = _require_onnx()
    path = Path(path)
    model = _load_checked(path)
    g = model.graph
    initialized = {init.name for init in g.initializer}

    def tensor(v) -> dict[str, Any]:
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        return {"name": v.name, "shape": dims, "dtype": onnx.TensorProto.DataType.Name(t.elem_type).lower()}

    ops: dict[str, int] = {}
    for node in g.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {
        "format": "onnx",
        "file": str(path),
        "ir_version": model.ir_version,
        "opset": {imp.domain or "ai.onnx": imp.version for imp in model.opset_import},
        "producer": " ".join(x for x in (model.producer_name, model.producer_version) if x) or None,
        "inputs": [tensor(v) for v in g.input if v.name not in initialized],
        "outputs": [tensor(v) for v in g.output],
        "operators": dict(sorted(ops.items())),
        "unsupported_operators": sorted(op for op in ops if op not in CONVERTERS),
        "parameters": int(sum(math.prod(init.dims) for init in g.initializer)),
        "metadata": {p.key: p.value for p in model.metadata_props},
    }


def _identifier(text: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in text)
    return out if out and not out[0].isdigit() else f"m_{out}"


def onnx_input_numel(module: nn.Module) -> int:
    """The per-example size of an imported model's first input (a generator's latent dimension)."""
    inputs = getattr(module, "onnx_inputs", None)
    if not inputs:
        raise GenrobustError("not a module imported from ONNX")
    return math.prod(inputs[0]["shape"])
