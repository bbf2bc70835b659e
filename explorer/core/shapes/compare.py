"""Two models side by side: their block graphs aligned stage by stage, with the differences named.

Rows pair nodes of the same name where both models have it (torchvision's GoogLeNet and the
paper's share every name). Otherwise nodes pair by stage: a stage is a run of consecutive nodes at
one effective stride (the input-to-output downsampling, hence one output resolution per input
size), so GoogLeNet's 28×28 blocks meet Inception v3's 35×35 ones at any input size; inside a stage
blocks pair with blocks in order and whatever is left over stands against an empty cell. Every
number comes from each model's own `trace_shapes`; kernels are read from the layers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from explorer.core.graph.blockgraph import BlockNode, BranchSpec, LayerSpec
from explorer.core.shapes.trace import InputTooSmallError, NodeShape, ShapeTrace
from explorer.core.text import MULT_ADDS, MULTIPLY_ADDS, fmt_branch, fmt_count, fmt_fraction, fmt_int, fmt_kernel, fmt_shape

if TYPE_CHECKING:
    from explorer.core.graph.blockgraph import BlockGraph

#: Which model a model is naturally compared with: the step before it in the v1 → v4 story.
PARTNERS = {
    "googlenet": "googlenet_paper",
    "googlenet_paper": "googlenet",
    "bn_inception": "googlenet_paper",
    "inception_v3": "googlenet",
    "inception_v4": "inception_v3",
    "inception_resnet_v1": "inception_v4",
    "inception_resnet_v2": "inception_v4",
}

#: Names of the differences a row can carry, in the order the table's columns show them.
DIFFERENCE_FIELDS = ("node", "kind", "shape", "params", "macs", "branches", "kernels", "channels")


def natural_partner(name: str, names: Sequence[str] | None = None) -> str:
    """The model `name` is best compared with (another model of `names` when it has no partner)."""
    partner = PARTNERS.get(name)
    if partner is not None and (names is None or partner in names):
        return partner
    others = [n for n in (names or PARTNERS) if n != name]
    return others[0] if others else name


def _stride(s: tuple[int, int] | None) -> str:
    if not s or max(s) <= 1:
        return ""
    return f"/{s[0]}" if s[0] == s[1] else f"/{fmt_kernel(s)}"


def layer_kernel(layer: LayerSpec) -> str:
    """'7×7/2', 'pool 3×3/2' (max), 'avg pool 3×3', 'adaptive avg pool', 'fc'."""
    if layer.type == "conv":
        return fmt_kernel(layer.kernel) + _stride(layer.stride)
    if layer.type == "linear":
        return "fc"
    if layer.type.startswith("adaptive"):  # to a fixed output size: global in the heads, 4×4 in GoogLeNet's aux
        return f"adaptive {'avg' if 'avg' in layer.type else 'max'} pool"
    prefix = "avg pool" if layer.type == "avg_pool" else "pool"
    return f"{prefix} {fmt_kernel(layer.kernel)}{_stride(layer.stride)}"


def branch_kernels(branch: BranchSpec) -> str:
    """The kernels a branch really applies: '3×3', '3×3→3×3', '1×7→7×1', '(1×3 ‖ 3×1)', 'pool 3×3'.

    A 1×1 that only reduces channels before a larger kernel, or projects after a pooling, is left
    out (as the paper's figures draw it); a branch of 1×1 alone is '1×1'.
    """
    items: list[LayerSpec | tuple[BranchSpec, ...]] = list(branch.layers)
    if branch.parallel:
        items.append(branch.parallel)
    items += list(branch.tail)
    if not items:
        return "identity"
    parts = []
    for i, it in enumerate(items):
        if isinstance(it, tuple):
            parts.append("(" + " ‖ ".join(branch_kernels(b) for b in it) + ")")
            continue
        prev = items[i - 1] if i else None
        nxt = items[i + 1] if i + 1 < len(items) else None
        if it.type == "conv" and it.kernel == (1, 1) and len(items) > 1:
            reduces = isinstance(nxt, tuple) or (isinstance(nxt, LayerSpec) and nxt.type == "conv")
            projects = isinstance(prev, LayerSpec) and prev.type in ("max_pool", "avg_pool")
            if reduces or projects:
                continue
        parts.append(layer_kernel(it))
    return "→".join(parts) or "1×1"


@dataclass(frozen=True)
class SideCell:
    """One model's node in a row: what the table shows for it."""

    name: str
    kind: str
    output_shape: tuple[int, ...] | None  # None: the input is too small for this model
    params: int
    macs: int | None  # per image; None when the input is too small
    kernels: str  # blocks: branch kernels joined by ' | '; other nodes: their layers' kernels
    branch_kernels: tuple[str, ...]
    branch_channels: tuple[int, ...]
    training_only: bool = False

    @property
    def is_block(self) -> bool:
        return self.kind in ("inception", "residual")

    @property
    def channels(self) -> str:
        """Each branch's output channels, '64 | 128 | 32 | 32' ('' for a plain node)."""
        return " | ".join(str(c) for c in self.branch_channels)


@dataclass(frozen=True)
class Difference:
    """One named way two paired nodes differ; `field` is one of DIFFERENCE_FIELDS."""

    field: str
    text: str


@dataclass(frozen=True)
class CompareStage:
    """A group of rows at one effective stride (None: after global pooling, the head)."""

    stride: tuple[int, int] | None
    sizes_a: tuple[tuple[int, int], ...]
    sizes_b: tuple[tuple[int, int], ...]

    @property
    def label(self) -> str:
        def sizes(s):
            return ", ".join(f"{h}×{w}" for h, w in s) or "—"

        if self.stride is None:
            return "head (after global pooling)"
        st = self.stride[0] if self.stride[0] == self.stride[1] else fmt_kernel(self.stride)
        return f"stride {st}: {sizes(self.sizes_a)} vs {sizes(self.sizes_b)}"


@dataclass(frozen=True)
class CompareRow:
    """A pair of aligned nodes (either side may be missing) and how they differ."""

    stage: int  # index into Comparison.stages
    a: SideCell | None
    b: SideCell | None
    differences: tuple[Difference, ...]

    def difference(self, field: str) -> Difference | None:
        return next((d for d in self.differences if d.field == field), None)

    def differs(self, field: str) -> bool:
        return self.difference(field) is not None


@dataclass(frozen=True)
class SideSummary:
    """One model's totals at the compared input size, or why it cannot run at that size."""

    model: str
    total_params: int  # inference path
    total_macs: int | None  # inference path, per image; None when the input is too small
    error: str | None = None
    failing_layer: str | None = None
    failing_node: str | None = None
    min_input: tuple[int | None, int | None] | None = None


@dataclass(frozen=True)
class Comparison:
    """The aligned table of two models at one input size."""

    size: tuple[int, int]
    a: SideSummary
    b: SideSummary
    stages: tuple[CompareStage, ...]
    rows: tuple[CompareRow, ...]

    def params_ratio(self) -> float:
        """B's inference parameters over A's."""
        return self.b.total_params / self.a.total_params if self.a.total_params else float("nan")

    def macs_ratio(self) -> float | None:
        """B's multiply-adds over A's (None when either side cannot run)."""
        if not self.a.total_macs or self.b.total_macs is None:
            return None
        return self.b.total_macs / self.a.total_macs

    def summary(self) -> str:
        """'googlenet 6.62 M params, 1.50 G mult-adds · … · B/A 1.06× params, 1.06× mult-adds'."""
        def side(s: SideSummary) -> str:
            macs = f"{fmt_count(s.total_macs)} {MULT_ADDS}" if s.total_macs is not None else "does not run"
            return f"{s.model}: {fmt_count(s.total_params)} params, {macs}"

        h, w = self.size
        text = f"{side(self.a)} · {side(self.b)} · at {h}×{w}: {self.b.model}/{self.a.model} = " \
               f"{self.params_ratio():.2f}× params"
        r = self.macs_ratio()
        return text + (f", {r:.2f}× {MULT_ADDS}" if r is not None else "")

    def to_csv(self) -> str:
        """The table as CSV: stage, each side's columns, the named differences; then the totals."""
        out = io.StringIO()
        wr = csv.writer(out, lineterminator="\n")
        cols = ("node", "kind", "output", "params", "mult_adds", "kernels", "branch_channels")
        wr.writerow(["stage", *(f"{self.a.model}:{c}" for c in cols), *(f"{self.b.model}:{c}" for c in cols),
                     "differences"])

        def cells(c: SideCell | None) -> list:
            if c is None:
                return [""] * len(cols)
            return [c.name, c.kind + (" (training only)" if c.training_only else ""), fmt_shape(c.output_shape),
                    c.params, "" if c.macs is None else c.macs, c.kernels, c.channels]

        for r in self.rows:
            wr.writerow([self.stages[r.stage].label, *cells(r.a), *cells(r.b),
                         "; ".join(f"{d.field}: {d.text}" for d in r.differences)])

        def total(s: SideSummary) -> list:
            return ["total", "", "", s.total_params, "" if s.total_macs is None else s.total_macs, "", ""]

        errors = "; ".join(s.error for s in (self.a, self.b) if s.error)
        wr.writerow(["", *total(self.a), *total(self.b), errors])
        return out.getvalue()


# -- building ------------------------------------------------------------------------------------


def _cell(node: BlockNode, shape: NodeShape | None) -> SideCell:
    if node.is_block:
        kernels = tuple(branch_kernels(b) for b in node.branches)
        channels = tuple(b.out_channels for b in node.branches)
        text = " | ".join(kernels)
    else:
        kernels, channels = (), ()
        text = "→".join(layer_kernel(l) for l in node.layers)
    return SideCell(node.name, node.kind, shape.output_shape if shape else None, node.params,
                    shape.macs if shape else None, text, kernels, channels, node.training_only)


def _pct(a: int, b: int) -> str:
    return f" ({fmt_fraction((b - a) / a, 0, signed=True)})" if a else ""


def _differences(a: SideCell | None, b: SideCell | None, model_a: str, model_b: str) -> tuple[Difference, ...]:
    if a is None or b is None:
        present = a or b
        return (Difference("node", f"{present.name} only in {model_a if a else model_b}"),)
    out = []
    if a.kind != b.kind:
        out.append(Difference("kind", f"{a.kind} vs {b.kind}"))
    if a.output_shape is not None and b.output_shape is not None and a.output_shape != b.output_shape:
        out.append(Difference("shape", f"output {fmt_shape(a.output_shape)} vs {fmt_shape(b.output_shape)}"))
    if a.params != b.params:
        out.append(Difference("params", f"{fmt_int(a.params)} vs {fmt_int(b.params)} parameters{_pct(a.params, b.params)}"))
    if a.macs is not None and b.macs is not None and a.macs != b.macs:
        out.append(Difference("macs", f"{fmt_int(a.macs)} vs {fmt_int(b.macs)} {MULTIPLY_ADDS}{_pct(a.macs, b.macs)}"))
    if a.is_block and b.is_block and len(a.branch_kernels) != len(b.branch_kernels):
        out.append(Difference("branches", f"{len(a.branch_kernels)} vs {len(b.branch_kernels)} branches"))
    if a.kernels != b.kernels:
        if a.is_block and b.is_block and len(a.branch_kernels) == len(b.branch_kernels):
            text = "; ".join(f"{fmt_branch(i)}: {ka} vs {kb}" for i, (ka, kb)
                             in enumerate(zip(a.branch_kernels, b.branch_kernels)) if ka != kb)
        else:
            text = f"{a.kernels or a.kind} vs {b.kernels or b.kind}"
        out.append(Difference("kernels", text))
    if a.is_block and b.is_block and a.branch_channels != b.branch_channels:
        if len(a.branch_channels) == len(b.branch_channels):
            text = "; ".join(f"{fmt_branch(i)}: {ca} vs {cb} channels" for i, (ca, cb)
                             in enumerate(zip(a.branch_channels, b.branch_channels)) if ca != cb)
        else:
            text = f"branch channels {a.channels} vs {b.channels}"
        out.append(Difference("channels", text))
    return tuple(out)


def align(xs: Sequence, ys: Sequence, score: Callable[[object, object], float | None]
          ) -> list[tuple[int | None, int | None]]:
    """Pairs (i, j) of the best-scoring order-keeping alignment; (i, None) / (None, j) for the unpaired.

    `score(x, y)` is None where x and y must not pair. Among equal alignments the earliest pairs win,
    so leftovers come last.
    """
    n, m = len(xs), len(ys)
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    scores = [[score(x, y) for y in ys] for x in xs]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            s = scores[i][j]
            v = max(best[i + 1][j], best[i][j + 1])
            if s is not None:
                v = max(v, s + best[i + 1][j + 1])
            best[i][j] = v
    out: list[tuple[int | None, int | None]] = []
    i = j = 0
    while i < n and j < m:
        s = scores[i][j]
        if s is not None and best[i][j] == s + best[i + 1][j + 1]:
            out.append((i, j))
            i, j = i + 1, j + 1
        elif best[i][j] == best[i + 1][j]:
            out.append((i, None))
            i += 1
        else:
            out.append((None, j))
            j += 1
    out += [(k, None) for k in range(i, n)] + [(None, k) for k in range(j, m)]
    return out


def _stages(graph: BlockGraph) -> list[tuple[tuple[int, int] | None, list[BlockNode]]]:
    """Runs of consecutive nodes at one effective stride; a training-only head stays where it branches off."""
    out: list[tuple[tuple[int, int] | None, list[BlockNode]]] = []
    for node in graph.nodes():
        key = node.effective_stride if node.kind != "input" else (1, 1)
        if node.training_only and out:
            key = out[-1][0]  # a side head stays in the stage it branches off
        if out and out[-1][0] == key:
            out[-1][1].append(node)
        else:
            out.append((key, [node]))
    return out


_CATEGORY = {"inception": "block", "residual": "block"}


def _node_score(a: BlockNode, b: BlockNode) -> float | None:
    if a.name == b.name:
        return 3.0  # the same module in both: the strongest evidence
    if _CATEGORY.get(a.kind, a.kind) == _CATEGORY.get(b.kind, b.kind):
        return 1.0
    return None


def _trace(graph: BlockGraph, size: tuple[int, int]) -> tuple[ShapeTrace | None, InputTooSmallError | None]:
    from explorer.core.shapes.trace import trace_shapes

    try:
        return trace_shapes(graph, size), None
    except InputTooSmallError as e:
        return None, e


def _summary(graph: BlockGraph, trace: ShapeTrace | None, error: InputTooSmallError | None) -> SideSummary:
    params = sum(n.params for n in graph.nodes() if not n.training_only)
    if trace is None:
        return SideSummary(graph.name, params, None, str(error), error.layer, error.node, error.min_input)
    macs = sum(s.macs for s in trace if not s.training_only)
    return SideSummary(graph.name, params, macs, min_input=trace.min_input)


def compare_models(graph_a: BlockGraph, graph_b: BlockGraph, size: int | tuple[int, int]) -> Comparison:
    """Align `graph_a` and `graph_b` stage by stage at input `size` (H×W), one image.

    An input too small for one model gives that side's error (naming the failing layer) and
    leaves its shapes and multiply-adds empty; the other side is compared as usual.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"input size must be positive, got {size[0]}×{size[1]}")
    trace_a, err_a = _trace(graph_a, size)
    trace_b, err_b = _trace(graph_b, size)
    stages_a, stages_b = _stages(graph_a), _stages(graph_b)

    def sizes(nodes: list[BlockNode], trace: ShapeTrace | None) -> tuple[tuple[int, int], ...]:
        if trace is None:
            return ()
        seen: list[tuple[int, int]] = []
        for n in nodes:
            s = trace.nodes[n.name].output_shape
            if s is not None and len(s) == 3 and not n.training_only and s[1:] not in seen:
                seen.append(s[1:])
        return tuple(seen)

    stages: list[CompareStage] = []
    rows: list[CompareRow] = []
    for ia, ib in align(stages_a, stages_b, lambda x, y: 1.0 if x[0] == y[0] else None):
        nodes_a = stages_a[ia][1] if ia is not None else []
        nodes_b = stages_b[ib][1] if ib is not None else []
        stride = (stages_a[ia] if ia is not None else stages_b[ib])[0]
        stages.append(CompareStage(stride, sizes(nodes_a, trace_a), sizes(nodes_b, trace_b)))
        for ja, jb in align(nodes_a, nodes_b, _node_score):
            ca = _cell(nodes_a[ja], trace_a.nodes[nodes_a[ja].name] if trace_a else None) if ja is not None else None
            cb = _cell(nodes_b[jb], trace_b.nodes[nodes_b[jb].name] if trace_b else None) if jb is not None else None
            rows.append(CompareRow(len(stages) - 1, ca, cb, _differences(ca, cb, graph_a.name, graph_b.name)))
    return Comparison(size, _summary(graph_a, trace_a, err_a), _summary(graph_b, trace_b, err_b),
                      tuple(stages), tuple(rows))
