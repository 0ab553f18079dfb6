"""Capture a network as a chain of bound operators (``ops``), through a ``torch.fx`` trace.

The trace goes through containers and user code, and stops at the module types of the operator table
(:data:`MODULE_BUILDERS`); shapes come from running the traced graph once on a dummy batch. The network must be
a chain: every step takes the previous step's output (plus constants). Anything else, a module outside the table,
a residual connection or data-dependent Python, is refused with an error that names it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import GenrobustError
from ..models.layers import Affine, ChannelsLast, ConcatConstant
from .ops import (
    SUPPORTED_MODULES,
    Activation,
    ConcatConst,
    Conv,
    Dense,
    MaxPool,
    Op,
    Reshape,
    Scale,
)


class UnsupportedLayerError(GenrobustError):
    """A layer or operation the bound engine cannot bound."""


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv(m: nn.Conv2d, shape) -> Op:
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise UnsupportedLayerError(
            f"Conv2d with padding={m.padding!r}, padding_mode={m.padding_mode!r}: give explicit zero padding"
        )
    return Conv(m.weight, m.bias, shape, stride=_pair(m.stride), padding=_pair(m.padding),
                dilation=_pair(m.dilation), groups=m.groups)  # fmt: skip


def _batchnorm(m: nn.modules.batchnorm._BatchNorm, shape) -> Op:
    if m.running_mean is None or m.running_var is None:
        raise UnsupportedLayerError(f"{type(m).__name__} without running statistics (track_running_stats=False)")
    scale = (m.weight.detach().double() if m.weight is not None else 1.0) / torch.sqrt(m.running_var.double() + m.eps)
    shift = (m.bias.detach().double() if m.bias is not None else 0.0) - m.running_mean.double() * scale
    return Scale(scale, shift, shape, name=type(m).__name__)


def _avgpool(m: nn.AvgPool2d, shape) -> Op:
    k, s, p = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
    if m.ceil_mode or (any(p) and not m.count_include_pad) or m.divisor_override:
        raise UnsupportedLayerError("AvgPool2d with ceil_mode, divisor_override or count_include_pad=False")
    C = shape[0]
    w = torch.full((C, 1, *k), 1.0 / (k[0] * k[1]), dtype=torch.float64)
    return Conv(w, None, shape, stride=s, padding=p, dilation=(1, 1), groups=C, name="AvgPool2d")


def _maxpool(m: nn.MaxPool2d, shape) -> Op:
    k, s, p, d = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding), _pair(m.dilation)
    if k[0] != k[1] or s != k or any(p) or d != (1, 1) or m.ceil_mode:
        raise UnsupportedLayerError(f"MaxPool2d(kernel={m.kernel_size}, stride={m.stride}, padding={m.padding}): "
                                    "only square kernels with stride = kernel and no padding")  # fmt: skip
    return MaxPool(k[0], shape)


#: Module type → builder(module, input shape) of its operator; ``None`` for identities in eval mode.
MODULE_BUILDERS: dict[type, Callable[[nn.Module, tuple], Op | None]] = {
    nn.Linear: lambda m, s: Dense(m.weight, m.bias, s),
    nn.Conv2d: _conv,
    nn.ReLU: lambda m, s: Activation("ReLU", s),
    nn.LeakyReLU: lambda m, s: Activation("LeakyReLU", s, m.negative_slope),
    nn.Tanh: lambda m, s: Activation("Tanh", s),
    nn.Sigmoid: lambda m, s: Activation("Sigmoid", s),
    nn.BatchNorm1d: _batchnorm,
    nn.BatchNorm2d: _batchnorm,
    nn.AvgPool2d: _avgpool,
    nn.MaxPool2d: _maxpool,
    nn.Flatten: None,  # reshapes: their shapes come from the shape propagation
    nn.Unflatten: None,
    nn.Dropout: None,
    nn.Identity: None,
    Affine: lambda m, s: Scale(m.scale, m.shift, s, name="Affine"),
    ConcatConstant: lambda m, s: ConcatConst(m.constant, s),
}
_RESHAPES = (nn.Flatten, nn.Unflatten)
_FUNCTIONS: dict[object, str] = {
    torch.relu: "ReLU", F.relu: "ReLU", torch.tanh: "Tanh", torch.sigmoid: "Sigmoid", F.leaky_relu: "LeakyReLU",
    torch.flatten: "reshape", torch.reshape: "reshape",
    operator.mul: "mul", operator.add: "add", operator.sub: "sub", operator.truediv: "div", F.dropout: "identity",
}  # fmt: skip
_METHODS = {
    "relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "view": "reshape", "reshape": "reshape",
    "flatten": "reshape", "contiguous": "identity", "float": "identity", "mul": "mul", "add": "add",
    "sub": "sub", "div": "div",
}  # fmt: skip
_SHAPE_ONLY = {"size", "dim"}


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m) in MODULE_BUILDERS or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        if isinstance(m, ChannelsLast):  # a memory layout, not a layer: look through it
            return super().call_module(m.module, m.module.forward, args, kwargs)
        return super().call_module(m, forward, args, kwargs)


def _unsupported(what: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(f"cannot bound {what}; supported layers: {', '.join(SUPPORTED_MODULES)} "
                                 "(and relu/tanh/sigmoid/flatten/view/scalar arithmetic in forward)")  # fmt: skip


def capture(module: nn.Module, input_shape: tuple[int, ...]) -> list[Op]:
    """The chain of operators computing ``module`` on inputs of shape (N, *input_shape), in eval mode."""
    module = module.eval()
    try:
        graph = _Tracer().trace(module)
    except Exception as exc:
        raise UnsupportedLayerError(f"cannot trace {type(module).__name__} into a graph: {exc}") from None
    gm = torch.fx.GraphModule(module, graph)
    ref = next(iter(module.parameters()), torch.zeros(()))
    try:
        ShapeProp(gm).propagate(torch.zeros(2, *input_shape, device=ref.device, dtype=ref.dtype))
    except Exception as exc:
        raise GenrobustError(f"the network does not run on inputs of shape {tuple(input_shape)}: {exc}") from None
    ops: list[Op] = []
    prev: torch.fx.Node | None = None
    shape = tuple(input_shape)

    def out_shape(node: torch.fx.Node) -> tuple[int, ...]:
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            raise _unsupported(f"{node.format_node()} (it does not return one tensor)")
        return tuple(meta.shape[1:])

    for node in graph.nodes:
        if node.op == "placeholder":
            if not node.users:  # an optional argument left at its default (e.g. a generator's unused class)
                continue
            if prev is not None:
                raise _unsupported("a network with several inputs")
            prev = node
            continue
        if node.op == "get_attr":
            continue
        if node.op == "output":
            if node.args[0] is not prev:
                raise _unsupported("a network whose output is not its last step")
            break
        if (node.op == "call_method" and node.target in _SHAPE_ONLY) or (
            node.op == "call_function" and node.target is getattr
        ):
            continue
        if node.op == "call_function" and node.target is operator.getitem and node.meta.get("tensor_meta") is None:
            continue
        tensor_args = [a for a in node.all_input_nodes if a.meta.get("tensor_meta") is not None and a.op != "get_attr"]
        if tensor_args != [prev]:
            raise _unsupported(f"step {node.name!r} ({node.format_node()}): the network is not a chain of layers")
        new_shape = out_shape(node)
        op: Op | None
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            builder = MODULE_BUILDERS.get(type(m))
            if builder is None and type(m) not in MODULE_BUILDERS:
                raise _unsupported(f"layer {node.target!r} of type {type(m).__name__}")
            if isinstance(m, _RESHAPES):
                op = Reshape(shape, new_shape, name=type(m).__name__)
            else:
                op = builder(m, shape) if builder is not None else None
        else:
            kind = _FUNCTIONS.get(node.target) if node.op == "call_function" else _METHODS.get(node.target)
            if kind is None:
                raise _unsupported(f"the operation {node.format_node()}")
            op = _function_op(kind, node, prev, shape, new_shape)
        if op is not None:
            if op.out_shape != new_shape:
                raise GenrobustError(f"internal: {op!r} computes shape {op.out_shape}, the network {new_shape}")
            ops.append(op)
        shape = new_shape
        prev = node
    return ops


def _function_op(kind: str, node: torch.fx.Node, prev: torch.fx.Node, shape, new_shape) -> Op | None:
    if kind in ("ReLU", "Tanh", "Sigmoid"):
        return Activation(kind, shape)
    if kind == "LeakyReLU":
        slope = node.args[1] if len(node.args) > 1 else node.kwargs.get("negative_slope", 0.01)
        return Activation("LeakyReLU", shape, float(slope))
    if kind == "reshape":
        return Reshape(shape, new_shape)
    if kind == "identity":
        return None
    args = [a for a in node.args if a is not prev]
    if len(args) != 1 or not isinstance(args[0], (int, float)):
        raise _unsupported(f"the operation {node.format_node()} (only arithmetic with a scalar constant)")
    c = float(args[0])
    if kind == "mul":
        return Scale(c, 0.0, shape, name="mul")
    if kind == "div":
        if node.args[0] is not prev:
            raise _unsupported(f"the operation {node.format_node()} (a constant divided by the input)")
        return Scale(1.0 / c, 0.0, shape, name="div")
    if kind == "add":
        return Scale(1.0, c, shape, name="add")
    # sub: x − c, or c − x
    return Scale(1.0, -c, shape, name="sub") if node.args[0] is prev else Scale(-1.0, c, shape, name="sub")
