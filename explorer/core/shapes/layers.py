"""What one box inside an expanded block is, in words, with its own numbers: the rows Details shows for a
selected layer.

The diagram keys the boxes of an expanded block by position (`inception3a/b1/l0`: branch index 1, layer 0);
a person reads "branch 2 of 4 (#3×3 reduce → #3×3), layer 1 of 2: 1×1 conv, 96" instead, with the layer's
parameters, output shape and multiply-adds at the traced input size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from explorer.core.text import MISSING, MULTIPLY_ADDS, fmt_branch, fmt_count, fmt_int, fmt_shape

if TYPE_CHECKING:
    from explorer.core.graph.blockgraph import BlockGraph, BranchSpec, LayerSpec
    from explorer.core.shapes.trace import ShapeTrace

_PART = re.compile(r"([blpt])(\d+)|join")


@dataclass(frozen=True)
class SelectedLayer:
    """A box inside an expanded block: where it is, in words, and its facts as (name, value) rows."""

    title: str  #: "branch 2 of 4 (#3×3 reduce → #3×3), layer 1 of 2"
    rows: tuple[tuple[str, str], ...]


def selected_layer(graph: BlockGraph, trace: ShapeTrace | None, key: str) -> SelectedLayer | None:
    """The box `key` of the diagram (`node/b1/l0`, `node/b2/p0/l1`, `node/b1/t0`, `node/b1/join`, `node/b0`)
    in words; None for a key that is not inside an expanded block's branch."""
    node_name, _, rest = key.partition("/")
    if not rest or node_name not in graph.graph:
        return None
    node = graph.node(node_name)
    if rest == "join" and node.branches:  # the block's own concatenation (or sum) of its branches
        word = "concatenation" if node.merge == "cat" else "sum"
        ns = trace.nodes.get(node_name) if trace is not None else None
        return SelectedLayer(f"the {word} of its {len(node.branches)} branches",
                             (("output", fmt_shape(ns.output_shape) if ns is not None else MISSING),))
    parts = rest.split("/")
    first = re.fullmatch(r"b(\d+)", parts[0])
    if first is None or int(first.group(1)) >= len(node.branches):
        return None
    index = int(first.group(1))
    branch = node.branches[index]
    words = [f"{fmt_branch(index)} of {len(node.branches)} ({branch.label})"]
    layer = _walk(branch, parts[1:], words)
    if layer is False:
        return None
    rows: list[tuple[str, str]] = []
    if layer is not None:
        rows = [("layer", f"{layer.describe()} ({layer.name})"), *_layer_rows(graph, trace, layer)]
    else:
        rows = [("branch", branch.label), ("output channels", str(branch.out_channels))]
    return SelectedLayer(", ".join(words), tuple(rows))


def _walk(branch: BranchSpec, parts: list[str], words: list[str]):
    """The LayerSpec the rest of a key names inside `branch` (None: the branch itself or a join), each step
    said in `words`; False for a key that does not fit the branch."""
    if not parts:
        return None
    m = _PART.fullmatch(parts[0])
    if m is None:
        return False
    if parts[0] == "join":
        words.append("the concatenation of its parallel paths" if branch.merge == "cat" else "the sum of its paths")
        return None
    kind, i = m.group(1), int(m.group(2))
    if kind == "l" and i < len(branch.layers):
        words.append(f"layer {i + 1} of {len(branch.layers)}")
        return branch.layers[i] if len(parts) == 1 else False
    if kind == "t" and i < len(branch.tail):
        words.append(f"after the join, layer {i + 1} of {len(branch.tail)}")
        return branch.tail[i] if len(parts) == 1 else False
    if kind == "p" and i < len(branch.parallel):
        words.append(f"parallel path {i + 1} of {len(branch.parallel)}")
        return _walk(branch.parallel[i], parts[1:], words)
    return False


def _layer_rows(graph: BlockGraph, trace: ShapeTrace | None, layer: LayerSpec) -> list[tuple[str, str]]:
    """The layer's own parameters, and its output shape and multiply-adds at `trace`'s input size ('—' where
    the graph has no shape program, as a shipped preview, or the layer cannot run at that size)."""
    params = macs = shape = None
    program = getattr(graph, "program", None)
    if program is not None:
        try:
            module = program.gm.get_submodule(layer.name)
            params = sum(p.numel() for p in module.parameters())
        except (AttributeError, TypeError):  # not a module of the graph (a torch.export function)
            params = None
        if trace is not None:
            shape, macs = _traced(program, trace.input_shape, layer.name)
    batch = trace.input_shape[0] if trace is not None else 1
    per_batch = f", batch {batch}" if batch > 1 and macs is not None else ""
    return [
        ("parameters", fmt_int(params)),
        ("output", fmt_shape(shape)),
        (MULTIPLY_ADDS, MISSING if macs is None else f"{fmt_count(macs)} ({fmt_int(macs)}){per_batch}"),
    ]


def _traced(program, input_shape, name: str) -> tuple[tuple[int, ...] | None, int | None]:
    """(output shape without the batch, multiply-adds of the whole batch) of the program's layer `name`."""
    from explorer.core.graph.program import FAILED, StepFailed, TShape

    step = next((s for s in program.steps if s.is_layer and s.layer == name), None)
    if step is None:
        return None, None
    try:
        vals, _ = program.run(tuple(input_shape))
    except StepFailed:
        return None, None
    out = vals[step.index]
    if out is FAILED or not isinstance(out, TShape):
        return None, None
    macs = step.macs(vals[step.inputs[0]], out) if step.macs is not None else 0
    return tuple(out[1:]), macs
