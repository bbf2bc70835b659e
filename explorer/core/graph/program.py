"""A shape program: a model's torch.fx graph compiled into pure-Python shape rules.

Tracing a model's forward once (on the meta device, so nothing is allocated) gives its data flow.
Each fx node becomes a `Step` whose rule maps input shapes to an output shape with integer
arithmetic — the same formulas PyTorch uses for convolution and pooling — so retracing for a new
input size costs a few hundred tuple operations instead of a forward pass. Operations without a
rule here are run on meta tensors, so any model still traces correctly, only less quickly.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import fx

from explorer.core.text import first_line, fmt_shape


class TShape(tuple):
    """The shape of a tensor flowing through the program (a tuple, marked as a tensor's)."""

    __slots__ = ()


class LayerFailed(Exception):
    """A step cannot run at this input size; `reason` says why in the user's terms."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


FAILED = object()  # the value of a step that could not run (only ever in training-only heads)

_IDENTITY_MODULES = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU,
    nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softmax,
    nn.LogSoftmax, nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.Dropout3d, nn.AlphaDropout, nn.Identity,
    nn.LocalResponseNorm, nn.GroupNorm, nn.InstanceNorm2d, nn.CrossMapLRN2d,
)
_IDENTITY_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.hardswish, F.sigmoid, F.tanh, F.dropout,
    F.dropout2d, F.softmax, F.log_softmax, F.local_response_norm, F.batch_norm,
    torch.relu, torch.sigmoid, torch.tanh, torch.dropout, torch.softmax, torch.clone,
}
_IDENTITY_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "float", "softmax"}
_BROADCAST_FUNCTIONS = {
    operator.add, operator.mul, operator.sub, operator.truediv, operator.iadd, operator.imul,
    torch.add, torch.mul, torch.sub, torch.div,
}
_BROADCAST_METHODS = {"add", "add_", "mul", "mul_", "sub", "div"}
_CAT_FUNCTIONS = {torch.cat, torch.concat}
# The same, as the aten ops of a torch.export graph (by overload packet name).
_ATEN_IDENTITY = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "elu", "elu_", "gelu", "gelu_",
    "silu", "silu_", "mish", "mish_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "sigmoid",
    "sigmoid_", "tanh", "tanh_", "batch_norm", "dropout", "dropout_", "feature_dropout", "alpha_dropout", "clone",
    "contiguous", "softmax", "_softmax", "log_softmax", "_log_softmax", "group_norm", "instance_norm", "layer_norm",
}
_ATEN_BROADCAST = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_"}
_FLATTEN_FUNCTIONS = {torch.flatten}

# Positional parameters of the functional pooling calls (after the input).
_POOL_SIGNATURES = {
    "max_pool2d": ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "avg_pool2d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
}


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1])) if len(v) else (0, 0)
    return (int(v), int(v))


def pool_output_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling_output_shape: floor (or ceil) division, the last window starting inside."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


@dataclass
class Step:
    """One fx node of the program."""

    index: int
    node: str  # fx node name
    layer: str  # what a user calls it: the module's qualified name, or "block: function"
    unit: str | None  # the block-graph node owning it (None for glue between blocks)
    kind: str  # input, conv, pool, adaptive_pool, linear, identity, cat, flatten, broadcast, other, output
    inputs: tuple[int, ...]  # indices of the steps whose values it reads (tensor or not)
    attrs: dict[str, Any] = field(default_factory=dict)
    training_only: bool = False
    run: Callable[[list], Any] | None = None  # compiled rule: values -> value
    macs: Callable[[TShape, TShape], int] | None = None  # (input shape, output shape) -> MACs

    @property
    def is_layer(self) -> bool:
        return self.kind in ("conv", "pool", "adaptive_pool", "linear")


def _node_inputs(node: fx.Node) -> list[fx.Node]:
    return list(dict.fromkeys(node.all_input_nodes))


_CONTAINER_NAMES = {f"torch.nn.modules.container.{c}" for c in ("Sequential", "ModuleList", "ModuleDict")}


def _unit_of(node: fx.Node, root: nn.Module) -> str | None:
    """The block-graph node a fx node belongs to: the outermost module that is not a plain container.

    The module types come from the trace's record of the original modules (a GraphModule keeps only
    the called leaves, its intermediate modules are bare nn.Module).
    """
    stack = list(node.meta.get("nn_module_stack", {}).values())
    if node.op == "call_module" and not stack:
        stack = [(node.target, type(root.get_submodule(node.target)))]
    for qualname, typ in stack:
        # torch.export records the type as its qualified name, symbolic_trace as the class.
        if not qualname or typ in (nn.Sequential, nn.ModuleList, nn.ModuleDict) or typ in _CONTAINER_NAMES:
            continue  # the root (torch.export lists it) or a plain container
        return qualname
    return None


def _type_name(typ) -> str:
    """A module type's class name, from the class (symbolic_trace) or its qualified name (torch.export)."""
    return typ.rsplit(".", 1)[-1] if isinstance(typ, str) else getattr(typ, "__name__", str(typ))


def _torch_leaf(node: fx.Node) -> tuple[str, str] | None:
    """(name, class name) of the torch.nn module a torch.export op runs in (its conv, its pool), if any.

    symbolic_trace keeps those modules as call_module nodes; an exported graph has only their aten
    ops, so this names the op after its module as the trace would."""
    stack = list(node.meta.get("nn_module_stack", {}).values())
    if not stack or not isinstance(node.target, torch._ops.OpOverload):
        return None
    qualname, typ = stack[-1]
    if isinstance(typ, str) and typ.startswith("torch.nn.modules.") and typ not in _CONTAINER_NAMES:
        return qualname, _type_name(typ)
    return None


def _layer_name(node: fx.Node, unit: str | None) -> str:
    if node.op == "call_module":
        return str(node.target)
    leaf = _torch_leaf(node)
    if leaf is not None and leaf[0]:
        return leaf[0]
    stack = list(node.meta.get("nn_module_stack", {}).values())
    owner = stack[-1][0] if stack else unit
    if isinstance(node.target, torch._ops.OpOverload):
        fn = node.target.overloadpacket.__name__  # aten.add_.Tensor -> add_
    else:
        fn = getattr(node.target, "__name__", str(node.target))
    if fn == "fn":  # torch's boolean_dispatch wrapper of max_pool2d
        fn = "max_pool2d"
    return f"{owner}: {fn}" if owner else fn


class ShapeProgram:
    """The compiled program of one model; `run(input_shape)` gives every step's value."""

    def __init__(self, gm: fx.GraphModule, training_only_units: set[str] = frozenset()):
        self.gm = gm
        self.steps: list[Step] = []
        self._compile(training_only_units)

    # -- compilation -------------------------------------------------------------------------

    def _compile(self, training_only_units: set[str]) -> None:
        index: dict[fx.Node, int] = {}
        for node in self.gm.graph.nodes:
            unit = "input" if node.op == "placeholder" else _unit_of(node, self.gm)
            step = Step(
                index=len(self.steps),
                node=node.name,
                layer=_layer_name(node, unit) if node.op != "placeholder" else "input",
                unit=unit,
                kind="other",
                inputs=tuple(index[n] for n in _node_inputs(node)),
                training_only=unit in training_only_units,
            )
            index[node] = step.index
            unit_type = next((t for q, t in node.meta.get("nn_module_stack", {}).values() if q == unit), None)
            if unit_type is not None:  # torch.export's graph module keeps bare modules, not their types
                step.attrs["unit_type"] = _type_name(unit_type)
            self._compile_step(step, node, index)
            self.steps.append(step)
        self.input_index = next(s.index for s in self.steps if s.kind == "input")

    def _compile_step(self, step: Step, node: fx.Node, index: dict[fx.Node, int]) -> None:
        if node.op == "placeholder":
            step.kind = "input"
            step.run = None
            return
        if node.op == "output":
            step.kind = "output"
            step.run = lambda vals: None
            return
        if node.op == "get_attr":
            value = self.gm
            for part in node.target.split("."):  # a parameter, a buffer or a constant
                value = getattr(value, part)
            shape = TShape(value.shape) if isinstance(value, torch.Tensor) else value
            step.run = lambda vals, v=shape: v
            step.attrs["constant"] = True  # not computed from the input (no receptive field)
            return
        first = index[node.args[0]] if node.args and isinstance(node.args[0], fx.Node) else None
        if node.op == "call_module":
            mod = self.gm.get_submodule(node.target)
            step.attrs["module_type"] = type(mod).__name__
            if isinstance(mod, nn.Conv2d) and isinstance(mod.padding, tuple) and first is not None:
                return self._conv(step, first, mod)
            if isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)) and first is not None:
                return self._pool(
                    step, first, "max_pool" if isinstance(mod, nn.MaxPool2d) else "avg_pool", mod.kernel_size,
                    mod.stride, mod.padding, getattr(mod, "dilation", 1), mod.ceil_mode,
                )
            if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and first is not None:
                return self._adaptive(step, first, mod.output_size)
            if isinstance(mod, nn.Linear) and first is not None:
                return self._linear(step, first, mod.in_features, mod.out_features)
            if isinstance(mod, nn.Flatten) and first is not None:
                return self._flatten(step, first, mod.start_dim, mod.end_dim)
            if isinstance(mod, _IDENTITY_MODULES) and first is not None:
                return self._identity(step, first)
            return self._fallback(step, node, mod, index)
        if node.op == "call_function":
            fn = node.target
            if isinstance(fn, torch._ops.OpOverload):  # a torch.export graph
                return self._aten(step, node, index, first)
            name = getattr(fn, "__name__", "")
            if name == "fn" and "max_pool2d" in getattr(fn, "__qualname__", "") or fn is F.max_pool2d:
                name = "max_pool2d"
            if name in _POOL_SIGNATURES and first is not None:
                kw = dict(zip(_POOL_SIGNATURES[name], node.args[1:]))
                kw.update(node.kwargs)
                k = kw["kernel_size"]
                return self._pool(
                    step, first, "max_pool" if name == "max_pool2d" else "avg_pool", k, kw.get("stride") or k,
                    kw.get("padding", 0), kw.get("dilation", 1), kw.get("ceil_mode", False),
                )
            if fn is F.adaptive_avg_pool2d or fn is F.adaptive_max_pool2d:
                out = node.args[1] if len(node.args) > 1 else node.kwargs["output_size"]
                return self._adaptive(step, first, out)
            if fn in _IDENTITY_FUNCTIONS and first is not None:
                return self._identity(step, first)
            if fn in _BROADCAST_FUNCTIONS:
                return self._broadcast(step, node, index)
            if fn in _CAT_FUNCTIONS and isinstance(node.args[0], (list, tuple)):
                dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
                return self._cat(step, [index[n] for n in node.args[0]], dim)
            if fn in _FLATTEN_FUNCTIONS and first is not None:
                start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
                return self._flatten(step, first, start, end)
            if fn is operator.getitem and first is not None:
                return self._getitem(step, node, first)
            return self._fallback(step, node, fn, index)
        if node.op == "call_method":
            if node.target in _IDENTITY_METHODS and first is not None:
                return self._identity(step, first)
            if node.target in _BROADCAST_METHODS:
                return self._broadcast(step, node, index)
            return self._fallback(step, node, None, index)
        raise NotImplementedError(node.op)

    def _aten(self, step: Step, node: fx.Node, index: dict[fx.Node, int], first: int | None) -> None:
        """Rules for the aten ops of a torch.export graph (by their torch.nn names: conv, pool, linear)."""
        op = node.target.overloadpacket.__name__
        args, kwargs = node.args, node.kwargs
        leaf = _torch_leaf(node)
        if leaf is not None:
            step.attrs["module_type"] = leaf[1]

        def arg(i, name, default=None):
            return args[i] if len(args) > i else kwargs.get(name, default)

        if op in ("cat", "concat") and isinstance(args[0], (list, tuple)):
            return self._cat(step, [index[n] for n in args[0]], arg(1, "dim", 0))
        if first is None:
            return self._fallback(step, node, None, index)
        if op in ("conv2d", "convolution"):
            w = self._const_shape(arg(1, "weight"))
            transposed = op == "convolution" and arg(6, "transposed", False)
            groups = arg(8 if op == "convolution" else 6, "groups", 1)
            padding = arg(4, "padding", 0)
            if w is not None and len(w) == 4 and not transposed and not isinstance(padding, str):
                return self._conv_rule(step, first, tuple(w[2:]), _pair(arg(3, "stride", 1)), _pair(padding),
                                       _pair(arg(5, "dilation", 1)), w[1] * groups, w[0], groups)
        if op in ("linear", "mm", "addmm"):
            # linear(x, W[out, in]); mm(x, W.t()); addmm(bias, x, W.t())
            x, w = (args[1], args[2]) if op == "addmm" else (args[0], args[1])
            shape = self._const_shape(w)
            if shape is not None and len(shape) == 2 and isinstance(x, fx.Node):
                fin, fout = (shape[1], shape[0]) if op == "linear" else (shape[0], shape[1])
                return self._linear(step, index[x], fin, fout)
        if op in ("max_pool2d", "avg_pool2d"):
            kw = dict(zip(_POOL_SIGNATURES[op], args[1:]))
            kw.update(kwargs)
            k = kw["kernel_size"]
            return self._pool(
                step, first, "max_pool" if op == "max_pool2d" else "avg_pool", k, kw.get("stride") or k,
                kw.get("padding", 0), kw.get("dilation", 1), kw.get("ceil_mode", False),
            )
        if op in ("adaptive_avg_pool2d", "_adaptive_avg_pool2d"):
            return self._adaptive(step, first, arg(1, "output_size"))
        if op in _ATEN_IDENTITY:
            return self._identity(step, first)
        if op in _ATEN_BROADCAST:
            return self._broadcast(step, node, index, op=op.strip("_"))
        if op == "flatten":
            return self._flatten(step, first, arg(1, "start_dim", 0), arg(2, "end_dim", -1))
        return self._fallback(step, node, None, index)

    def _const_shape(self, node) -> tuple[int, ...] | None:
        """The shape of a parameter node (or of its transpose), known before any input is given."""
        if not isinstance(node, fx.Node):
            return None
        if node.op == "get_attr":
            value = self.gm
            for part in node.target.split("."):
                value = getattr(value, part, None)
            return tuple(value.shape) if isinstance(value, torch.Tensor) else None
        op = node.target.overloadpacket.__name__ if isinstance(node.target, torch._ops.OpOverload) else None
        src = self._const_shape(node.args[0]) if op in ("t", "permute", "transpose") and node.args else None
        if src is None:
            return None
        if op == "t":
            return src[::-1]
        if op == "permute":
            return tuple(src[d] for d in node.args[1])
        d0, d1 = (d % len(src) for d in node.args[1:3])
        out = list(src)
        out[d0], out[d1] = src[d1], src[d0]
        return tuple(out)

    def _conv(self, step: Step, src: int, mod: nn.Conv2d) -> None:
        self._conv_rule(step, src, mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.in_channels,
                        mod.out_channels, mod.groups)

    def _conv_rule(self, step: Step, src: int, kernel, stride, padding, dilation, cin: int, cout: int,
                   groups: int) -> None:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
        ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        step.kind = "conv"
        step.attrs.update(kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw),
                          out_channels=cout, in_channels=cin, groups=groups)
        step.attrs["eff_kernel"] = (ekh, ekw)
        layer = step.layer

        def run(vals):
            n, c, h, w = vals[src]
            if c != cin:
                raise LayerFailed(f"{layer} expects {cin} input channels but gets {c}")
            hp, wp = h + 2 * ph, w + 2 * pw
            if hp < ekh or wp < ekw:
                raise LayerFailed(
                    f"{layer}: its input {h}×{w} (padded {hp}×{wp}) is smaller than its {kh}×{kw} kernel"
                )
            return TShape((n, cout, (hp - ekh) // sh + 1, (wp - ekw) // sw + 1))

        step.run = run
        step.macs = lambda i, o: o[0] * o[1] * o[2] * o[3] * (cin // groups) * kh * kw

    def _pool(self, step, src, kind, k, s, p, d, ceil_mode) -> None:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _pair(k), _pair(s if s else k), _pair(p), _pair(d)
        step.kind = "pool"
        step.attrs.update(pool=kind, kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw),
                          ceil_mode=bool(ceil_mode), eff_kernel=(dh * (kh - 1) + 1, dw * (kw - 1) + 1))
        layer = step.layer

        def run(vals):
            shape = vals[src]
            h, w = shape[-2], shape[-1]
            oh = pool_output_size(h, kh, sh, ph, dh, ceil_mode)
            ow = pool_output_size(w, kw, sw, pw, dw, ceil_mode)
            if oh < 1 or ow < 1:
                raise LayerFailed(
                    f"{layer}: its input {h}×{w} is smaller than its {kh}×{kw} pooling window"
                    f" (output would be {max(oh, 0)}×{max(ow, 0)})"
                )
            return TShape((*shape[:-2], oh, ow))

        step.run = run

    def _adaptive(self, step, src, output_size) -> None:
        oh, ow = (output_size, output_size) if not isinstance(output_size, (tuple, list)) else output_size
        step.kind = "adaptive_pool"
        step.attrs.update(output_size=(oh, ow))
        layer = step.layer

        def run(vals):
            shape = vals[src]
            if shape[-2] < 1 or shape[-1] < 1:
                raise LayerFailed(f"{layer}: its input {shape[-2]}×{shape[-1]} is empty")
            return TShape((*shape[:-2], shape[-2] if oh is None else oh, shape[-1] if ow is None else ow))

        step.run = run

    def _linear(self, step, src, fin, fout) -> None:
        step.kind = "linear"
        step.attrs.update(in_features=fin, out_features=fout, out_channels=fout)
        layer = step.layer

        def run(vals):
            shape = vals[src]
            if shape[-1] != fin:
                raise LayerFailed(f"{layer} expects {fin} input features but gets {shape[-1]}")
            return TShape((*shape[:-1], fout))

        step.run = run
        step.macs = lambda i, o: math.prod(o[:-1]) * fin * fout

    def _flatten(self, step, src, start, end) -> None:
        step.kind = "flatten"

        def run(vals):
            shape = vals[src]
            r = len(shape)
            a, b = start % r, end % r
            return TShape((*shape[:a], math.prod(shape[a:b + 1]), *shape[b + 1:]))

        step.run = run

    def _identity(self, step, src) -> None:
        step.kind = "identity"
        step.run = lambda vals: vals[src]

    def _cat(self, step, srcs, dim) -> None:
        step.kind = "cat"
        step.attrs["dim"] = dim
        layer = step.layer

        def run(vals):
            shapes = [vals[i] for i in srcs]
            first = shapes[0]
            d = dim % len(first)
            for s in shapes[1:]:
                if len(s) != len(first) or any(a != b for j, (a, b) in enumerate(zip(s, first)) if j != d):
                    raise LayerFailed(f"{layer}: branch outputs {', '.join(fmt_shape(x) for x in shapes)} do not line up")
            return TShape((*first[:d], sum(s[d] for s in shapes), *first[d + 1:]))

        step.run = run

    def _broadcast(self, step, node: fx.Node, index, op: str | None = None) -> None:
        step.kind = "broadcast"
        name = op or (node.target if isinstance(node.target, str) else getattr(node.target, "__name__", ""))
        step.attrs["op"] = name.strip("_").replace("iadd", "add").replace("imul", "mul").replace("truediv", "div")
        srcs = [index[a] for a in node.args if isinstance(a, fx.Node)]
        layer = step.layer

        def run(vals):
            shapes = [vals[i] for i in srcs if isinstance(vals[i], TShape)]
            if not shapes:
                return _fallback_call(node, vals, index, None)
            r = max(len(s) for s in shapes)
            out = []
            for j in range(r):
                dims = {s[j - r + len(s)] for s in shapes if j - r + len(s) >= 0} - {1}
                if len(dims) > 1:
                    raise LayerFailed(f"{layer}: shapes {', '.join(fmt_shape(s) for s in shapes)} do not broadcast")
                out.append(dims.pop() if dims else 1)
            return TShape(out)

        step.run = run
        step.attrs["tensor_inputs"] = len(srcs)
        # A constant factor, e.g. the residual scale of an Inception-ResNet block (x + 0.17 * r).
        scalars = [a for a in node.args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if len(srcs) == 1 and len(scalars) == 1:
            step.attrs["scalar"] = float(scalars[0])

    def _getitem(self, step, node, src) -> None:
        step.kind = "getitem"
        idx = node.args[1]
        index_map = {node.args[0]: src}  # the fallback's node -> step map; only the source is a node

        def run(vals):
            container = vals[src]
            if isinstance(container, TShape):
                return _fallback_call(node, vals, index_map, None)
            return container[idx]

        step.run = run

    def _fallback(self, step: Step, node: fx.Node, target, index) -> None:
        local = {n: index[n] for n in node.all_input_nodes}
        step.kind = "other"
        step.run = lambda vals: _fallback_call(node, vals, local, target if node.op == "call_module" else None)

    # -- running -----------------------------------------------------------------------------

    def run(self, input_shape: tuple[int, ...], *, stop_on_training_only: bool = False):
        """Values of all steps for `input_shape`, and the training-only heads that cannot run.

        A step of the inference path that cannot run raises StepFailed naming it.
        """
        vals: list[Any] = [None] * len(self.steps)
        vals[self.input_index] = TShape(input_shape)
        failures: dict[str, tuple[Step, str]] = {}
        for step in self.steps:
            if step.run is None:
                continue
            if failures and any(vals[i] is FAILED for i in step.inputs):
                vals[step.index] = FAILED
                continue
            try:
                vals[step.index] = step.run(vals)
            except LayerFailed as e:
                if step.training_only and not stop_on_training_only:
                    vals[step.index] = FAILED
                    failures.setdefault(step.unit, (step, e.reason))
                    continue
                raise StepFailed(step, e.reason) from None
        return vals, failures


class StepFailed(Exception):
    def __init__(self, step: Step, reason: str):
        super().__init__(reason)
        self.step, self.reason = step, reason


def _to_meta(v):
    if isinstance(v, TShape):
        return torch.empty(v, device="meta")
    if isinstance(v, (list, tuple)) and not isinstance(v, TShape):
        return type(v)(_to_meta(x) for x in v) if not hasattr(v, "_fields") else type(v)(*(_to_meta(x) for x in v))
    return v


def _from_meta(v):
    if isinstance(v, torch.Tensor):
        return TShape(v.shape)
    if isinstance(v, (list, tuple)):
        return type(v)(_from_meta(x) for x in v) if not hasattr(v, "_fields") else type(v)(*(_from_meta(x) for x in v))
    return v


def _fallback_call(node: fx.Node, vals, index, module):
    """Run one fx node on meta tensors of the traced shapes (for ops without a rule)."""

    def load(a):
        return _to_meta(vals[index[a]])

    args = fx.node.map_arg(node.args, load)
    kwargs = fx.node.map_arg(node.kwargs, load)
    try:
        if node.op == "call_module":
            out = module(*args, **kwargs)
        elif node.op == "call_method":
            self_obj, *rest = args
            out = getattr(self_obj, node.target)(*rest, **kwargs)
        else:
            out = node.target(*args, **kwargs)
    except (RuntimeError, ValueError, IndexError) as e:
        msg = first_line(e)
        raise LayerFailed(f"{_layer_name(node, None)}: {msg}") from None
    return _from_meta(out)
