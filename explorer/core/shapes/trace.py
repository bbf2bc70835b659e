"""Shape tracing: every node's output shape, parameters, multiply-adds, activation memory and
receptive field for any input size, from the block graph's compiled shape program (no forward).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the shape program imports torch; the dataclasses here must not
    from explorer.core.graph.blockgraph import BlockGraph

FLOAT32_BYTES = 4
#: Largest input height or width anywhere (command line and window): 16 times ImageNet's 256.
MAX_INPUT_SIDE = 4096
#: Largest batch size N anywhere (command line and window).
MAX_BATCH = 4096


@dataclass(frozen=True)
class NodeShape:
    """The traced numbers of one block-graph node at one input size."""

    name: str
    kind: str
    output_shape: tuple[int, ...] | None  # without the batch dimension, e.g. (C, H, W); None if it cannot run
    params: int
    macs: int  # multiply-accumulates of its convolutions and linear layers, whole batch; 0 when it cannot run
    activation_bytes: int  # its output tensor, whole batch, float32
    receptive_field: tuple[int, int] | None  # None: the whole input
    effective_stride: tuple[int, int] | None
    training_only: bool = False
    failure: str | None = None  # why a training-only head cannot run at this size


@dataclass(frozen=True)
class ShapeTrace:
    """A whole model traced at one input size."""

    model: str
    input_shape: tuple[int, int, int, int]  # N, C, H, W
    nodes: dict[str, NodeShape]
    total_params: int  # auxiliary heads included
    total_params_inference: int  # what runs at inference
    total_macs: int  # inference path
    total_macs_with_aux: int  # with the training-only heads that run at this size
    total_activation_bytes: int  # outputs of the inference-path nodes
    min_input: tuple[int | None, int | None]

    def __iter__(self):
        return iter(self.nodes.values())

    @property
    def heads(self) -> tuple[list[NodeShape], list[NodeShape]]:
        """The training-only heads (auxiliary classifiers) that run at this size, and those that cannot."""
        heads = [t for t in self.nodes.values() if t.training_only]
        return [t for t in heads if t.failure is None], [t for t in heads if t.failure is not None]


class InputTooSmallError(ValueError):
    """The input size cannot pass through the network; names the first layer that fails."""

    def __init__(self, model: str, size: tuple[int, int], layer: str, node: str | None, reason: str,
                 min_input: tuple[int | None, int | None]):
        self.model, self.size, self.layer, self.node, self.reason, self.min_input = (
            model, size, layer, node, reason, min_input)
        mh, mw = min_input
        minimum = f"{mh}×{mw}" if mh and mw else "unknown"
        super().__init__(
            f"input {size[0]}×{size[1]} is too small for {model}: layer {layer} fails — {reason.split(': ', 1)[-1]};"
            f" the smallest input {model} accepts is {minimum}"
        )


def parse_size(text: str, max_side: int = MAX_INPUT_SIDE) -> tuple[int, int]:
    """'224' → (224, 224); '320x480' / '320×480' / '320,480' → (320, 480). ValueError otherwise,
    also for a side above `max_side` (checked on the digits, so no huge number is ever made)."""
    shown = repr(text if len(text) <= 40 else text[:30] + "…")
    t = text.strip().lower().replace("×", "x").replace(",", "x").replace(" ", "")
    parts = t.split("x") if t else []
    if len(parts) not in (1, 2) or not all(re.fullmatch(r"[+-]?[0-9]+", p) for p in parts):
        raise ValueError(f"size {shown} is not a number or HxW (e.g. 224 or 320x480)")
    if any(p.startswith("-") for p in parts):
        raise ValueError(f"size {shown} must be positive")
    if any(len(p.lstrip("+").lstrip("0")) > len(str(max_side)) for p in parts):
        raise ValueError(f"size {shown} exceeds the limit of {max_side} pixels per side")
    h, w = (int(parts[0]), int(parts[-1]))
    if h <= 0 or w <= 0:
        raise ValueError(f"size {shown} must be positive")
    if h > max_side or w > max_side:
        raise ValueError(f"size {shown} exceeds the limit of {max_side} pixels per side")
    return h, w


def check_batch(n: int, max_batch: int = MAX_BATCH) -> int:
    """`n` if it is a batch size from 1 to `max_batch`; ValueError otherwise."""
    if n < 1:
        raise ValueError(f"batch {n} must be at least 1")
    if n > max_batch:
        raise ValueError(f"batch {n} exceeds the limit of {max_batch}")
    return n


def trace_shapes(graph: BlockGraph, size: tuple[int, int] | int, batch: int = 1) -> ShapeTrace:
    """Trace `graph` at input (batch, C, H, W). Raises InputTooSmallError, ValueError."""
    from explorer.core.graph.program import FAILED, StepFailed, TShape

    h, w = (size, size) if isinstance(size, int) else size
    channels = graph.in_channels
    if h <= 0 or w <= 0 or batch <= 0:
        raise ValueError(f"input size must be positive, got batch {batch}, {h}×{w}")
    program = graph.program
    try:
        vals, failures = program.run((batch, channels, h, w))
    except StepFailed as e:
        raise InputTooSmallError(graph.name, (h, w), e.step.layer, e.step.unit, e.reason, min_input_size(graph)
                                 ) from None
    steps = program.steps
    nodes: dict[str, NodeShape] = {}
    total_macs = total_macs_aux = total_act = 0
    for node in graph.nodes():
        out = vals[node.output_step]
        failure = failures[node.name][1] if node.name in failures else None
        macs = 0
        for i in node.steps if failure is None else ():  # a head that fails half-way does none of its work
            s = steps[i]
            if s.macs is not None and vals[i] is not FAILED:
                macs += s.macs(vals[s.inputs[0]], vals[i])
        if isinstance(out, TShape):
            shape = tuple(out[1:])
            act = math.prod(out) * FLOAT32_BYTES
        else:
            shape, act = None, 0
        nodes[node.name] = NodeShape(node.name, node.kind, shape, node.params, macs, act, node.receptive_field,
                                     node.effective_stride, node.training_only, failure)
        total_macs_aux += macs
        if not node.training_only:
            total_macs += macs
            if node.kind != "input":
                total_act += act
    return ShapeTrace(graph.name, (batch, channels, h, w), nodes, graph.total_params, graph.total_params_inference,
                      total_macs, total_macs_aux, total_act, min_input_size(graph))


def _valid(graph: BlockGraph, h: int, w: int) -> bool:
    from explorer.core.graph.program import StepFailed

    try:
        graph.program.run((1, graph.in_channels, h, w))
    except StepFailed:
        return False
    return True


def min_input_size(graph: BlockGraph, limit: int = 4096) -> tuple[int | None, int | None]:
    """The smallest H (at the native W) and W (at the native H) the inference path accepts.

    Output sizes of convolution and pooling grow with their input, so validity is monotone and a
    binary search is exact; a model that accepts only particular sizes (a flatten into a fixed
    linear layer) gets None.
    """
    if graph._min_input is not None:
        return graph._min_input
    nh, nw = graph.native_size

    def search(valid) -> int | None:
        lo, hi = 1, limit
        if not valid(hi):
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            if valid(mid):
                hi = mid
            else:
                lo = mid + 1
        return lo if valid(lo) and valid(lo + 1) else None

    if not _valid(graph, nh, nw):
        graph._min_input = (None, None)
    else:
        graph._min_input = (search(lambda h: _valid(graph, h, nw)), search(lambda w: _valid(graph, nh, w)))
    return graph._min_input
