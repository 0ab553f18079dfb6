"""Capture a network as a chain of bound operators (``ops``), through a ``torch.fx`` trace.

The trace goes through containers and user code, and stops at the module types of the operator table
(:data:`MODULE_BUILDERS`); shapes come from running the traced graph once on a dummy batch. The network must be
a chain: every step takes the previous step's output (plus constants). Anything else, a module outside the table,
a residual connection or data-dependent Python, is refused with an error that names it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import GenrobustError
from ..models.layers import Affine, BatchReshape, ChannelsLast, ConcatConstant, ImageAdapter
from ..runtime import eval_mode
from .ops import (
    SUPPORTED_MODULES,
    Activation,
    ConcatConst,
    Conv,
    Dense,
    LeakyReLU,
    MaxPool,
    Op,
    ReLU,
    Reshape,
    Scale,
    Sigmoid,
    Softplus,
    Tanh,
)


class UnsupportedLayerError(GenrobustError):
    """A layer or operation the bound engine cannot bound."""


class OperatorNetwork(nn.Module):
    """A network given as the engine's operators, such as a captured chain cut before one of its nonlinearities:
    its forward applies them in order (in float64, the operators' precision, and back to the input's dtype) and
    flattens the result; :func:`capture` returns them as they are instead of tracing. Checking a property of one
    hidden layer's neurons (:func:`genrobust.verify.vnnlib.stabilise`) needs the network up to that layer, and
    cutting the operators works for every network the engine can bound, where cutting a traced graph would not."""

    def __init__(self, ops: list[Op]) -> None:
        super().__init__()
        if not ops:
            raise GenrobustError("an operator network needs at least one operator")
        self.ops = list(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.to(torch.float64)
        for op in self.ops:
            out = op.forward(out)
        return out.flatten(1).to(x.dtype)

    def to(self, *args, **kwargs) -> OperatorNetwork:
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is not None:
            for op in self.ops:
                op.to(device)
        return self


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


def _softplus(m: nn.Softplus, shape) -> Op:
    if m.beta != 1:
        raise UnsupportedLayerError(f"Softplus with beta={m.beta}: only beta=1 (scale the layers around it instead)")
    return Softplus(shape, m.threshold)


#: Elementwise nonlinearities: module type → builder(module, input shape). Each operator class owns its bound
#: rules (``ops.Activation``); the property tests run over every row of this table.
ACTIVATION_BUILDERS: dict[type, Callable[[nn.Module, tuple], Activation]] = {
    nn.ReLU: lambda m, s: ReLU(s),
    nn.LeakyReLU: lambda m, s: LeakyReLU(s, m.negative_slope),
    nn.Tanh: lambda m, s: Tanh(s),
    nn.Sigmoid: lambda m, s: Sigmoid(s),
    nn.Softplus: _softplus,
}

#: Module type → builder(module, input shape) of its operator; ``None`` for identities in eval mode.
MODULE_BUILDERS: dict[type, Callable[[nn.Module, tuple], Op | None]] = {
    nn.Linear: lambda m, s: Dense(m.weight, m.bias, s),
    nn.Conv2d: _conv,
    **ACTIVATION_BUILDERS,
    nn.BatchNorm1d: _batchnorm,
    nn.BatchNorm2d: _batchnorm,
    nn.AvgPool2d: _avgpool,
    nn.MaxPool2d: _maxpool,
    nn.Flatten: None,  # reshapes: their shapes come from the shape propagation
    nn.Unflatten: None,
    BatchReshape: None,
    nn.Dropout: None,
    nn.Identity: None,
    Affine: lambda m, s: Scale(m.scale, m.shift, s, name="Affine"),
    ConcatConstant: lambda m, s: ConcatConst(m.constant, s),
    ImageAdapter: lambda m, s: Scale(
        m.scale.double().reshape(-1), m.shift.double().reshape(-1), s, name="ImageAdapter"
    ),
}
_RESHAPES = (nn.Flatten, nn.Unflatten, BatchReshape)
_ELEMENTWISE: dict[str, Callable[[tuple], Activation]] = {"ReLU": ReLU, "Tanh": Tanh, "Sigmoid": Sigmoid}
_FUNCTIONS: dict[object, str] = {
    torch.relu: "ReLU", F.relu: "ReLU", torch.tanh: "Tanh", torch.sigmoid: "Sigmoid", F.leaky_relu: "LeakyReLU",
    torch.flatten: "reshape", torch.reshape: "reshape", torch.cat: "cat", torch.concat: "cat",
    F.max_pool2d: "maxpool", F.avg_pool2d: "avgpool", torch.max_pool2d: "maxpool",
    torch.mul: "mul", torch.add: "add", torch.sub: "sub", torch.div: "div",
    operator.mul: "mul", operator.add: "add", operator.sub: "sub", operator.truediv: "div", F.dropout: "dropout",
}  # fmt: skip
_METHODS = {
    "relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "view": "reshape", "reshape": "reshape",
    "flatten": "reshape", "contiguous": "identity", "float": "identity", "mul": "mul", "add": "add",
    "sub": "sub", "div": "div",
}  # fmt: skip
_SHAPE_ONLY = {"size", "dim"}
_POOL_ARGS = {
    "maxpool": ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "avgpool": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
}


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


class _Recorder(torch.fx.Interpreter):
    """Runs the graph once and keeps the values of the ``wanted`` nodes (the constants)."""

    def __init__(self, gm: torch.fx.GraphModule, wanted: set[torch.fx.Node]) -> None:
        super().__init__(gm)
        self.wanted = wanted
        self.values: dict[torch.fx.Node, object] = {}

    def run_node(self, n: torch.fx.Node):
        out = super().run_node(n)
        if n in self.wanted:
            self.values[n] = out
        return out


_META_ATTRS = {"shape", "dtype", "device", "ndim"}


def _shape_only(node: torch.fx.Node) -> bool:
    """A step that reads only the input's shape, dtype or device (constant for a given batch size)."""
    if node.op == "call_method" and node.target in _SHAPE_ONLY:
        return True
    return node.op == "call_function" and node.target is getattr and node.args[1] in _META_ATTRS


def _dependent(graph: torch.fx.Graph) -> set[torch.fx.Node]:
    """The nodes whose values depend on the input's values; the others are constants (a conditional generator's
    label, its embedding, a one-hot expanded to the batch) and are folded into the operators that use them."""
    dep: set[torch.fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder":
            if node.users:
                dep.add(node)
        elif not _shape_only(node) and any(a in dep for a in node.all_input_nodes):
            dep.add(node)
    return dep


def capture(module: nn.Module, input_shape: tuple[int, ...]) -> list[Op]:
    """The chain of operators computing ``module`` on inputs of shape (N, *input_shape), in eval mode.

    The module is traced in eval mode (dropout off, batch norm on its running statistics) and every submodule's
    own ``training`` flag is given back afterwards: the caller's model is never changed."""
    if isinstance(module, OperatorNetwork):
        ops = list(module.ops)
        if tuple(input_shape) != ops[0].in_shape:
            raise GenrobustError(f"the operators take inputs of shape {ops[0].in_shape}, not {tuple(input_shape)}")
        if len(ops[-1].out_shape) != 1:  # flat at its end, as its forward is
            ops.append(Reshape(ops[-1].out_shape, (math.prod(ops[-1].out_shape),), name="Flatten"))
        return ops
    with eval_mode(module):
        return _capture(module, input_shape)


def _capture(module: nn.Module, input_shape: tuple[int, ...]) -> list[Op]:
    try:
        graph = _Tracer().trace(module)
    except Exception as exc:
        raise UnsupportedLayerError(f"cannot trace {type(module).__name__} into a graph: {exc}") from None
    gm = torch.fx.GraphModule(module, graph)
    ref = next(iter(module.parameters()), None)
    if ref is None:
        ref = next(iter(module.buffers()), torch.zeros(()))
    dummy = torch.zeros(2, *input_shape, device=ref.device, dtype=torch.float32 if ref.dtype not in
                        (torch.float32, torch.float64) else ref.dtype)  # fmt: skip
    try:
        ShapeProp(gm).propagate(dummy)
    except Exception as exc:
        raise GenrobustError(f"the network does not run on inputs of shape {tuple(input_shape)}: {exc}") from None
    dep = _dependent(graph)
    wanted = {n for n in graph.nodes if n not in dep and n.op not in ("placeholder", "output")}
    recorder = _Recorder(gm, wanted)
    with torch.no_grad():
        recorder.run(dummy)
    consts = recorder.values
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
        if node.op == "output":
            if node.args[0] is not prev:
                raise _unsupported("a network whose output is not its last step")
            break
        if node not in dep:  # a constant or a shape: folded into the steps that use it
            continue
        tensor_args = [a for a in node.all_input_nodes if a in dep]
        if tensor_args != [prev]:
            raise _unsupported(f"step {node.name!r} ({node.format_node()}): the network is not a chain of layers")
        new_shape = out_shape(node)
        op: Op | None
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            builder = MODULE_BUILDERS.get(type(m))
            if builder is None and type(m) not in MODULE_BUILDERS:
                raise _unsupported(f"layer {node.target!r} of type {type(m).__name__}")
            if any(a not in dep for a in node.all_input_nodes):
                raise _unsupported(f"layer {node.target!r} called with a constant beside its input")
            if isinstance(m, _RESHAPES):
                op = Reshape(shape, new_shape, name=type(m).__name__)
            else:
                op = builder(m, shape) if builder is not None else None
        else:
            kind = _FUNCTIONS.get(node.target) if node.op == "call_function" else _METHODS.get(node.target)
            if kind is None:
                raise _unsupported(f"the operation {node.format_node()}")
            op = _function_op(kind, node, prev, shape, new_shape, consts)
        if op is not None:
            if op.out_shape != new_shape:
                raise GenrobustError(f"internal: {op!r} computes shape {op.out_shape}, the network {new_shape}")
            ops.append(op)
        shape = new_shape
        prev = node
    return ops


def _batch_constant(value: object, node: torch.fx.Node, shape: tuple[int, ...]) -> torch.Tensor | float:
    """A folded constant as one per-example value: a number, or a tensor broadcastable to ``shape`` that is the
    same for every example of the batch (a constant that differs between examples is not a constant)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise _unsupported(f"the operation {node.format_node()} (with a non-numeric constant)")
    t = value.detach().double()
    if t.ndim > len(shape):  # it has a batch dimension: every example must carry the same constant
        if t.ndim != len(shape) + 1 or not bool((t == t[:1]).all()):
            raise _unsupported(f"the operation {node.format_node()} (its constant differs between examples)")
        t = t[0]
    return t.cpu()


def _function_op(kind: str, node: torch.fx.Node, prev: torch.fx.Node, shape, new_shape, consts) -> Op | None:
    if kind in _ELEMENTWISE:
        return _ELEMENTWISE[kind](shape)
    if kind == "LeakyReLU":
        slope = node.args[1] if len(node.args) > 1 else node.kwargs.get("negative_slope", 0.01)
        return LeakyReLU(shape, float(slope))
    if kind == "reshape":
        return Reshape(shape, new_shape)
    if kind == "identity":
        return None
    if kind == "dropout":  # F.dropout is random unless told training=False (its default is True, even in eval)
        params = dict(zip(("p", "training", "inplace"), node.args[1:], strict=False)) | dict(node.kwargs)
        if params.get("training", True) is not False and params.get("p", 0.5) != 0:
            raise _unsupported(f"the operation {node.format_node()}: F.dropout drops at random even in eval mode "
                               "unless called with training=self.training (or use nn.Dropout)")  # fmt: skip
        return None
    if kind in ("maxpool", "avgpool"):  # the functional forms: read their arguments as the module would
        names = _POOL_ARGS[kind]
        params = dict(zip(names, node.args[1:], strict=False)) | dict(node.kwargs)
        if params.pop("return_indices", False) or set(params) - set(names):
            raise _unsupported(f"the operation {node.format_node()}")
        m = (nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d)(**params)
        return _maxpool(m, shape) if kind == "maxpool" else _avgpool(m, shape)
    if kind == "cat":
        return _concat(node, prev, shape, consts)
    if node.kwargs:
        raise _unsupported(f"the operation {node.format_node()} (with keyword arguments)")
    others = [a for a in node.args if a is not prev]
    if len(node.args) != 2 or len(others) != 1:
        raise _unsupported(f"the operation {node.format_node()} (arithmetic of the input with one constant)")
    other = others[0]
    c = _batch_constant(consts[other] if isinstance(other, torch.fx.Node) else other, node, shape)
    if not isinstance(c, float):
        try:
            full = torch.broadcast_to(c, shape)
        except RuntimeError:
            raise _unsupported(f"the operation {node.format_node()} (a constant of shape {tuple(c.shape)})") from None
        if len(shape) == 3 and bool((full == full[:, :1, :1]).all()):
            c = full[:, 0, 0].clone()  # per channel
        elif bool((full == full.reshape(-1)[0]).all()):
            c = float(full.reshape(-1)[0])
        else:
            c = full.clone()
    x_first = node.args[0] is prev
    one = 1.0 if isinstance(c, float) else torch.ones_like(c)
    zero = 0.0 if isinstance(c, float) else torch.zeros_like(c)
    if kind == "mul":
        return Scale(c, zero, shape, name="mul")
    if kind == "div":
        if not x_first:
            raise _unsupported(f"the operation {node.format_node()} (a constant divided by the input)")
        return Scale(1.0 / c if isinstance(c, float) else c.reciprocal(), zero, shape, name="div")
    if kind == "add":
        return Scale(one, c, shape, name="add")
    # sub: x − c, or c − x
    return Scale(one, -c, shape, name="sub") if x_first else Scale(-one, c, shape, name="sub")


def _concat(node: torch.fx.Node, prev: torch.fx.Node, shape, consts) -> Op:
    """``torch.cat`` of the (flat) input with constants along the features: a conditional generator's label."""
    parts = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if not isinstance(parts, (list, tuple)) or sum(p is prev for p in parts) != 1:
        raise _unsupported(f"the concatenation {node.format_node()} (the input once, with constants)")
    if len(shape) != 1 or dim not in (1, -1):
        raise _unsupported(f"the concatenation {node.format_node()} (only of flat vectors along their features)")
    k = next(i for i, p in enumerate(parts) if p is prev)
    values = []
    for p in parts:
        if p is prev:
            continue
        t = _batch_constant(consts[p] if isinstance(p, torch.fx.Node) else p, node, (1,))
        if isinstance(t, float) or t.ndim != 1:
            raise _unsupported(f"the concatenation {node.format_node()} (a constant that is not a vector)")
        values.append(t)
    before = torch.cat(values[:k]) if k else torch.zeros(0, dtype=torch.float64)
    after = torch.cat(values[k:]) if len(values) > k else torch.zeros(0, dtype=torch.float64)
    return ConcatConst(after, shape, before=before)
