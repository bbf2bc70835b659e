"""The drawing of a block graph, without Qt: boxes, edges and frames, and where they go.

`build_diagram` turns a BlockGraph (plus a shape trace and the set of expanded blocks) into a
`Diagram`; `layout_diagram` places it: a layered top-to-bottom drawing in which the main data path
runs down one centre line, side paths (auxiliary heads) sit to its right, and an expanded block is
a frame holding its branches side by side, like the paper's module figure. Text is measured by a
callable the caller supplies, so this module runs (and is benchmarked) without a display.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from explorer.core.text import fmt_shape

if TYPE_CHECKING:
    from explorer.core.graph.blockgraph import BlockGraph, BlockNode, BranchSpec, LayerSpec
    from explorer.core.shapes.trace import ShapeTrace

#: measure(text, bold) -> (width, height) in scene units.
Measure = Callable[[str, bool], tuple[float, float]]


@dataclass
class Box:
    """One drawn box: a graph node, or a layer / caption / concat inside an expanded block."""

    key: str  # unique in the diagram: a node name, or "<node>/b<i>/…" inside a block
    role: str  # node, header, branch, layer, concat
    kind: str  # colour class: input, conv, pool, inception, residual, linear, dropout, aux, op, concat, branch
    lines: tuple[str, ...]  # lines[0] is the title, drawn bold
    node: str  # the block-graph node the box belongs to
    training_only: bool = False
    tooltip: str = ""
    bold_lines: int = 1  # how many leading lines are drawn (and measured) bold
    w: float = 0.0
    h: float = 0.0
    x: float = 0.0  # top-left corner
    y: float = 0.0

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def bottom(self) -> float:
        return self.y + self.h


@dataclass
class Frame:
    """The outline of an expanded block, around its header, branches and concat."""

    key: str
    node: str
    title: str
    training_only: bool = False
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0


@dataclass
class Edge:
    """Data flowing from box `src` (bottom centre) to box `dst` (top centre); `label` is drawn by it."""

    src: str
    dst: str
    label: str = ""
    top_level: bool = False  # between two graph nodes (rather than inside a block)


@dataclass
class Style:
    """Sizes of the drawing, in scene units (scaled up for presentation mode)."""

    pad_x: float = 10.0
    pad_y: float = 6.0
    line_gap: float = 2.0
    min_node_w: float = 150.0
    min_layer_w: float = 96.0
    layer_gap: float = 34.0  # vertical gap between layers of the graph (holds an edge label)
    inner_gap: float = 22.0  # vertical gap between boxes inside a block
    column_gap: float = 18.0  # horizontal gap between branches
    side_gap: float = 60.0  # gap between the main path and a side node
    frame_pad: float = 12.0
    frame_title: float = 22.0
    branch_wrap: float = 170.0  # branch captions wrap at this width

    def scaled(self, f: float) -> Style:
        return Style(**{k: v * f for k, v in self.__dict__.items()})


@dataclass
class Diagram:
    boxes: dict[str, Box] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    frames: dict[str, Frame] = field(default_factory=dict)
    #: per graph node: the box its incoming edges enter and the box its outgoing edges leave
    entry: dict[str, str] = field(default_factory=dict)
    exit: dict[str, str] = field(default_factory=dict)
    width: float = 0.0
    height: float = 0.0
    #: the layout tree of each graph node (a Leaf or a FrameTree), in data-flow order
    units: dict[str, object] = field(default_factory=dict)
    unit_edges: list[tuple[str, str]] = field(default_factory=list)

    def branch_boxes(self, node: str) -> list[Box]:
        """The caption boxes of an expanded block's branches, in concatenation order."""
        return [b for b in self.boxes.values() if b.node == node and b.role == "branch"]


# -- layout tree -----------------------------------------------------------------------------


class Leaf:
    __slots__ = ("box", "w", "h")

    def __init__(self, box: Box):
        self.box, self.w, self.h = box, box.w, box.h

    def measure(self, style: Style) -> None:
        pass

    def place(self, x: float, y: float, style: Style) -> None:
        self.box.x, self.box.y = x + (self.w - self.box.w) / 2, y


class Seq:
    """Children stacked top to bottom, centred on one vertical line."""

    __slots__ = ("children", "gap", "w", "h")

    def __init__(self, children: list, gap: float):
        self.children, self.gap, self.w, self.h = children, gap, 0.0, 0.0

    def measure(self, style: Style) -> None:
        for c in self.children:
            c.measure(style)
        self.w = max((c.w for c in self.children), default=0.0)
        self.h = sum(c.h for c in self.children) + self.gap * max(0, len(self.children) - 1)

    def place(self, x: float, y: float, style: Style) -> None:
        for c in self.children:
            c.place(x + (self.w - c.w) / 2, y, style)
            y += c.h + self.gap


class Par:
    """Children side by side, top-aligned."""

    __slots__ = ("children", "gap", "w", "h")

    def __init__(self, children: list, gap: float):
        self.children, self.gap, self.w, self.h = children, gap, 0.0, 0.0

    def measure(self, style: Style) -> None:
        for c in self.children:
            c.measure(style)
        self.w = sum(c.w for c in self.children) + self.gap * max(0, len(self.children) - 1)
        self.h = max((c.h for c in self.children), default=0.0)

    def place(self, x: float, y: float, style: Style) -> None:
        for c in self.children:
            c.place(x, y, style)
            x += c.w + self.gap


class FrameTree:
    """An expanded block: a frame with a title strip around a sequence."""

    __slots__ = ("frame", "child", "w", "h")

    def __init__(self, frame: Frame, child):
        self.frame, self.child, self.w, self.h = frame, child, 0.0, 0.0

    def measure(self, style: Style) -> None:
        self.child.measure(style)
        self.w = self.child.w + 2 * style.frame_pad
        self.h = self.child.h + style.frame_title + style.frame_pad

    def place(self, x: float, y: float, style: Style) -> None:
        f = self.frame
        f.x, f.y, f.w, f.h = x, y, self.w, self.h
        self.child.place(x + style.frame_pad, y + style.frame_title, style)


# -- building --------------------------------------------------------------------------------


def node_detail(node: BlockNode) -> str:
    """The second line of a collapsed node's box: what the node does, in the paper's words."""
    if node.kind == "input":
        return "input image"
    if node.kind == "aux":
        return "auxiliary head · training only"
    if node.branches:
        word = "concat" if node.merge == "cat" else "sum"
        return f"{len(node.branches)} branches, {word} " + " + ".join(str(b.out_channels) for b in node.branches)
    if node.layers:
        return " · ".join(dict.fromkeys(l.describe() for l in node.layers))
    return node.module_type.lower()


def wrap_text(text: str, width: float, measure: Measure, bold: bool = False) -> list[str]:
    """Greedy wrap of `text` to lines no wider than `width`, breaking before arrows ('→ #3×3')."""
    parts = text.split(" → ")
    words = parts[:1] + ["→ " + p for p in parts[1:]]
    lines: list[str] = []
    cur = ""
    for w in words:
        cand = f"{cur} {w}" if cur else w
        if cur and measure(cand, bold)[0] > width:
            lines.append(cur)
            cur = w
        else:
            cur = cand
    if cur:
        lines.append(cur)
    return lines


class _Builder:
    def __init__(self, measure: Measure, style: Style):
        self.measure, self.style = measure, style
        self.d = Diagram()

    def box(self, key: str, role: str, kind: str, lines: Iterable[str], node: str, *, min_w: float,
            training_only: bool = False, tooltip: str = "", bold_lines: int = 1) -> Box:
        lines = tuple(lines)
        st = self.style
        w = h = 0.0
        for i, line in enumerate(lines):
            lw, lh = self.measure(line, i < bold_lines)
            w = max(w, lw)
            h += lh + (st.line_gap if i else 0.0)
        b = Box(key, role, kind, lines, node, training_only, tooltip, bold_lines,
                w=max(min_w, w + 2 * st.pad_x), h=h + 2 * st.pad_y)
        self.d.boxes[key] = b
        return b

    def edge(self, src: str, dst: str, label: str = "", top_level: bool = False) -> None:
        self.d.edges.append(Edge(src, dst, label, top_level))

    # A chain of layers, possibly splitting into parallel sub-branches; returns (tree, exits).
    def branch_chain(self, branch: BranchSpec, key: str, node: BlockNode, prev: list[str], caption: bool):
        st = self.style
        children: list = []
        if caption:
            text = wrap_text(branch.label, st.branch_wrap, self.measure, True)
            lines = [*text, f"→ {branch.out_channels} channels"]
            tip = branch.note or ""
            b = self.box(key, "branch", "branch", lines, node.name, min_w=st.min_layer_w,
                         training_only=node.training_only, tooltip=tip, bold_lines=len(text))
            for p in prev:
                self.edge(p, b.key)
            prev = [b.key]
            children.append(Leaf(b))
        for i, layer in enumerate(branch.layers):
            prev = self.layer(layer, f"{key}/l{i}", node, prev, children)
        if branch.parallel:
            subs = []
            exits: list[str] = []
            for j, sub in enumerate(branch.parallel):
                tree, ex = self.branch_chain(sub, f"{key}/p{j}", node, prev, caption=False)
                subs.append(tree)
                exits += ex
            children.append(Par(subs, st.column_gap))
            word = "concat" if branch.merge == "cat" else "add"
            parts = " + ".join(str(s.out_channels) for s in branch.parallel)
            total = sum(s.out_channels for s in branch.parallel) if branch.merge == "cat" else \
                max(s.out_channels for s in branch.parallel)
            detail = f"{parts} = {total}" if branch.merge == "cat" else f"{len(branch.parallel)} × {total}"
            c = self.box(f"{key}/join", "concat", "concat", [word, detail], node.name,
                         min_w=st.min_layer_w, training_only=node.training_only)
            for ex, sub in zip(exits, branch.parallel):
                self.edge(ex, c.key, str(sub.out_channels))
            children.append(Leaf(c))
            prev = [c.key]
        for i, layer in enumerate(branch.tail):
            prev = self.layer(layer, f"{key}/t{i}", node, prev, children)
        return Seq(children, st.inner_gap), prev

    def layer(self, layer: LayerSpec, key: str, node: BlockNode, prev: list[str], children: list) -> list[str]:
        kind = "pool" if layer.type.endswith("pool") else "linear" if layer.type == "linear" else "conv"
        b = self.box(key, "layer", kind, [layer.describe()], node.name, min_w=self.style.min_layer_w,
                     training_only=node.training_only, tooltip=layer.name, bold_lines=0)
        for p in prev:
            self.edge(p, b.key)
        children.append(Leaf(b))
        return [b.key]

    def expanded(self, node: BlockNode, shape: str, in_shape: str):
        st = self.style
        d = self.d
        header = self.box(node.name, "header", node.kind, [node.name, f"input {in_shape}"], node.name,
                          min_w=st.min_node_w, training_only=node.training_only,
                          tooltip="double-click to collapse")
        columns, exits = [], []
        for i, br in enumerate(node.branches):
            tree, ex = self.branch_chain(br, f"{node.name}/b{i}", node, [header.key], caption=True)
            columns.append(tree)
            exits.append(ex)
        word = "concat" if node.merge == "cat" else "add"
        parts = " + ".join(str(b.out_channels) for b in node.branches)
        total = node.out_channels if node.out_channels is not None else sum(b.out_channels for b in node.branches)
        if node.merge == "cat":
            join_lines = ["filter concatenation", f"{parts} = {total}", shape]
        else:  # a sum keeps the channel count: say what is added rather than adding the numbers
            join_lines = ["add (residual sum)", f"{len(node.branches)} tensors of {total} channels", shape]
        join = self.box(f"{node.name}/join", "concat", "concat", join_lines,
                        node.name, min_w=st.min_node_w, training_only=node.training_only)
        for ex, br in zip(exits, node.branches):
            for e in ex:
                self.edge(e, join.key, str(br.out_channels))
            if not ex:  # an identity shortcut: straight from the block's input
                self.edge(header.key, join.key, str(br.out_channels))
        frame = Frame(f"{node.name}/frame", node.name, f"{node.name} — {word} of {len(node.branches)} branches",
                      node.training_only)
        d.frames[node.name] = frame
        d.entry[node.name], d.exit[node.name] = header.key, join.key
        return FrameTree(frame, Seq([Leaf(header), Par(columns, st.column_gap), Leaf(join)], st.inner_gap))


def build_diagram(graph: BlockGraph, trace: ShapeTrace | None, expanded: Iterable[str], measure: Measure,
                  style: Style | None = None) -> Diagram:
    """The boxes, frames and edges of `graph` at `trace`'s shapes, with the blocks in `expanded` opened."""
    nodes = graph.nodes()
    order = [n.name for n in nodes]
    preds = {n: graph.predecessors(n) for n in order}
    succs = {n: graph.successors(n) for n in order}
    return build_diagram_from(nodes, preds, succs, trace, expanded, measure, style)


def build_diagram_from(nodes: list, preds: dict[str, list[str]], succs: dict[str, list[str]], trace,
                       expanded: Iterable[str], measure: Measure, style: Style | None = None) -> Diagram:
    """`build_diagram` over plain data (nodes in data-flow order and their adjacency)."""
    style = style or Style()
    b = _Builder(measure, style)
    d = b.d
    expanded = set(expanded)
    shapes = {}
    for n in nodes:
        ns = trace.nodes.get(n.name) if trace is not None else None
        shapes[n.name] = fmt_shape(ns.output_shape) if ns is not None else "?"
    for n in nodes:
        if n.name in expanded and n.branches:
            p = preds[n.name]
            in_shape = shapes[p[0]] if p else "?"
            d.units[n.name] = b.expanded(n, shapes[n.name], in_shape)
        else:
            lines = [n.name, node_detail(n), shapes[n.name]]
            tip = "double-click to expand" if n.branches else ""
            box = b.box(n.name, "node", n.kind, lines, n.name, min_w=style.min_node_w,
                        training_only=n.training_only, tooltip=tip)
            d.entry[n.name] = d.exit[n.name] = box.key
            d.units[n.name] = Leaf(box)
    training_only = {n.name for n in nodes if n.training_only}
    for n in nodes:
        out = succs[n.name]
        # One label per tensor (every consumer sees the same shape), on the inference path's edge.
        labelled = next((s for s in out if s not in training_only), out[0] if out else None)
        for s in out:
            d.unit_edges.append((n.name, s))
            b.edge(d.exit[n.name], d.entry[s], shapes[n.name] if s == labelled else "", top_level=True)
    return d


# -- placing ---------------------------------------------------------------------------------


def layout_diagram(d: Diagram, style: Style | None = None) -> Diagram:
    """Place every unit: layered by longest path from the input, main path centred at x = 0."""
    style = style or Style()
    order = list(d.units)
    index = {n: i for i, n in enumerate(order)}
    preds: dict[str, list[str]] = {n: [] for n in order}
    succs: dict[str, list[str]] = {n: [] for n in order}
    for a, b in d.unit_edges:
        preds[b].append(a)
        succs[a].append(b)
    # Layers: longest path from a source (data-flow order is a topological order).
    depth: dict[str, int] = {}
    for n in order:
        depth[n] = max((depth[p] + 1 for p in preds[n]), default=0)
    # Main path: the longest chain ending at the deepest node, preferring nodes that run at inference.
    tail = max(order, key=lambda n: (depth[n], not _training_only(d, n), -index[n]))
    main = {tail}
    cur = tail
    while preds[cur]:
        cur = max(preds[cur], key=lambda p: (depth[p], not _training_only(d, p), -index[p]))
        main.add(cur)

    layers: dict[int, list[str]] = {}
    for n in order:
        layers.setdefault(depth[n], []).append(n)
    for t in d.units.values():
        t.measure(style)

    y = 0.0
    min_x = max_x = 0.0
    for k in sorted(layers):
        row = sorted(layers[k], key=lambda n: (n not in main, index[n]))
        h = max(d.units[n].h for n in row)
        x = None
        for n in row:
            t = d.units[n]
            if x is None:
                # The main-path node (or the first side node) is centred on the centre line.
                x0 = -t.w / 2 if n in main else style.side_gap
            else:
                x0 = x + style.side_gap
            t.place(x0, y, style)
            x = x0 + t.w
            min_x, max_x = min(min_x, x0), max(max_x, x)
        y += h + style.layer_gap
    # Shift so the drawing starts at (0, 0).
    for box in d.boxes.values():
        box.x -= min_x
    for f in d.frames.values():
        f.x -= min_x
    d.width, d.height = max_x - min_x, max(0.0, y - style.layer_gap)
    return d


def _training_only(d: Diagram, n: str) -> bool:
    return d.boxes[d.entry[n]].training_only
