"""The paper's architecture table, recomputed from the loaded model at the current input size.

Two layouts, after the papers' Table 1s:

- "googlenet" (Szegedy et al. 2014): type, patch size/stride, output size, depth, #1×1, #3×3 reduce,
  #3×3, #5×5 reduce, #5×5, pool proj, params, ops. Used when every Inception block has GoogLeNet's
  four branches (1×1 ‖ 1×1→k×k ‖ 1×1→k×k ‖ pool→1×1).
- "inception_v3" (Szegedy et al. 2015): type, patch size/stride or remarks, input size, output size,
  depth, one column per branch (compact description), params, ops. Fits any block.

Every number is read from the block graph's layers and the shape trace, never from the paper; where
the paper says something else (zoo's `PaperReference`), the cell carries a note. That includes the
params and ops the paper prints: where they do not add up from the layers, the cell says by how much.

One unit convention for cells, notes and exports, stated once in the notes: K = 10³, M = 10⁶,
G = 10⁹ (`explorer.core.text`). GoogLeNet's Table 1 prints its params with K = 1024; the notes quote
the paper's figure and say what it comes to in weights, never write a K of 1024 of their own.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from explorer.core.graph.blockgraph import BlockGraph, BlockNode, BranchSpec, LayerSpec
from explorer.core.text import COUNT_UNITS, branch_number, fmt_branch, fmt_fraction, fmt_hwc, fmt_int, fmt_kernel, fmt_paper_ops, fmt_paper_params

if TYPE_CHECKING:  # shapes imports torch; the window imports this module before torch is needed
    from explorer.core.shapes.trace import ShapeTrace

GOOGLENET = "googlenet"
INCEPTION_V3 = "inception_v3"
LAYOUTS = (GOOGLENET, INCEPTION_V3)
FORMATS = ("csv", "markdown", "latex")
#: A printed params / ops number agrees with the layers when it is within this many units of its last
#: printed digit (1K for "159K", 0.1K for "2.7K"): rounding either way, or truncation.
PRINTED_TOLERANCE_UNITS = 1
#: The one unit convention of the table's cells, notes and exports, stated once in its notes.
UNITS_NOTE = f"Params and ops in {COUNT_UNITS} (the tool's units everywhere)."


@dataclass(frozen=True)
class PaperColumn:
    """One column of the table: a stable key and the paper's heading."""

    key: str
    title: str
    numeric: bool = False  # right-aligned; `PaperCell.value` holds the number


@dataclass(frozen=True)
class PaperCell:
    """One cell: the text as the paper would print it, the number behind it, and a note where the
    model departs from the paper (e.g. torchvision's 3×3 kernel in GoogLeNet's "5×5" branch)."""

    text: str = ""
    value: Any = None  # int for channels/params/ops/depth; the trace's (C, H, W) for sizes
    note: str | None = None

    @property
    def deviates(self) -> bool:
        return self.note is not None


EMPTY = PaperCell()


@dataclass(frozen=True)
class PaperRow:
    """One row; `nodes` are the block-graph nodes it stands for (two when the paper folds a 1×1
    reduction into the convolution after it, as GoogLeNet's Table 1 does with conv2 + conv3)."""

    nodes: tuple[str, ...]
    kind: str
    cells: dict[str, PaperCell] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return " + ".join(self.nodes)

    def __getitem__(self, key: str) -> PaperCell:
        return self.cells.get(key, EMPTY)


@dataclass(frozen=True)
class PaperTable:
    """A model's architecture table at one input size."""

    model: str
    layout: str  # GOOGLENET or INCEPTION_V3
    citation: str | None  # the paper whose Table 1 layout this follows
    input_shape: tuple[int, int, int, int]  # N, C, H, W of the trace
    columns: tuple[PaperColumn, ...]
    rows: tuple[PaperRow, ...]
    notes: tuple[str, ...] = ()  # footnotes: what is left out, what is folded, where the model deviates

    @property
    def title(self) -> str:
        _, _, h, w = self.input_shape
        return f"{self.model} at {h}×{w}"

    def column_index(self, key: str) -> int:
        for i, c in enumerate(self.columns):
            if c.key == key:
                return i
        raise KeyError(f"no column {key!r}; columns: {', '.join(c.key for c in self.columns)}")

    def row(self, node: str) -> PaperRow:
        """The row that shows block-graph node `node`."""
        for r in self.rows:
            if node in r.nodes:
                return r
        raise KeyError(f"node {node!r} has no row in the {self.model} table")

    def cell(self, node: str, key: str) -> PaperCell:
        self.column_index(key)
        return self.row(node)[key]

    def column(self, key: str) -> list[PaperCell]:
        self.column_index(key)
        return [r[key] for r in self.rows]

    def deviations(self) -> list[tuple[PaperRow, PaperColumn, PaperCell]]:
        return [(r, c, r[c.key]) for r in self.rows for c in self.columns if r[c.key].deviates]

    @property
    def total_params(self) -> int:
        return sum(r["params"].value or 0 for r in self.rows)

    @property
    def total_ops(self) -> int:
        """Multiply-adds per image of the rows shown (the whole inference path)."""
        return sum(r["ops"].value or 0 for r in self.rows)

    def text_rows(self) -> list[list[str]]:
        return [[r[c.key].text for c in self.columns] for r in self.rows]

    def to_csv(self, raw: bool = False) -> str:
        """Heading line, then one line per row; `raw` writes the numbers instead of '2.7K'/'34M'. A last
        'notes' column holds the notes of the row's cells that differ from the paper."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([c.title for c in self.columns] + ["notes"])
        for r in self.rows:
            notes = "; ".join(dict.fromkeys(r[c.key].note for c in self.columns if r[c.key].note))
            w.writerow([_raw(r[c.key]) if raw and c.numeric else r[c.key].text for c in self.columns] + [notes])
        return buf.getvalue()

    def to_markdown(self) -> str:
        """A pipe table (one line per row) followed by the footnotes."""

        def esc(s: str) -> str:
            return s.replace("\\", "\\\\").replace("|", "\\|")

        lines = ["| " + " | ".join(esc(c.title) for c in self.columns) + " |",
                 "|" + "|".join("---:" if c.numeric else "---" for c in self.columns) + "|"]
        lines += ["| " + " | ".join(esc(r[c.key].text) for c in self.columns) + " |" for r in self.rows]
        foot = [f"- {n}" for n in self.notes]
        return "\n".join(lines + ([""] + foot if foot else [])) + "\n"

    def to_latex(self) -> str:
        """A `tabular` (booktabs-free, plain \\hline) with every special character escaped; ASCII only
        for the characters the table uses (× → $\\times$, → → $\\rightarrow$, ‖ → $\\parallel$)."""
        spec = "".join("r" if c.numeric else "l" for c in self.columns)
        lines = [f"% {latex_escape(self.title)}"]
        lines += [f"% {latex_escape(n)}" for n in self.notes]
        lines += [f"\\begin{{tabular}}{{{spec}}}", "\\hline",
                  " & ".join(latex_escape(c.title) for c in self.columns) + " \\\\", "\\hline"]
        lines += [" & ".join(latex_escape(r[c.key].text) for c in self.columns) + " \\\\" for r in self.rows]
        lines += ["\\hline", "\\end{tabular}"]
        return "\n".join(lines) + "\n"

    def export(self, fmt: str) -> str:
        """The table as text in `fmt` ('csv', 'markdown' or 'latex')."""
        if fmt == "csv":
            return self.to_csv()
        if fmt == "markdown":
            return self.to_markdown()
        if fmt == "latex":
            return self.to_latex()
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def _raw(cell: PaperCell) -> str:
    return "" if cell.value is None else str(cell.value)


_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "×": r"$\times$", "→": r"$\rightarrow$",
    "‖": r"$\parallel$", "–": "--", "—": "---", "≠": r"$\neq$", "<": r"\textless{}", ">": r"\textgreater{}",
    "·": r"$\cdot$", **{d: f"$^{i}$" for i, d in enumerate("⁰¹²³⁴⁵⁶⁷⁸⁹")},
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


# -- number formats, as the paper prints them ---------------------------------------------------


def parse_printed(text: str, k: int = 1000) -> tuple[float, float]:
    """A number as a paper prints it ('2.7K', '1072K', '34M') and one unit of its last digit, both as
    plain numbers: K = k, M = k², G = k³."""
    m = re.fullmatch(r"\s*(\d+)(?:\.(\d+))?\s*([KMG]?)\s*", text)
    if m is None:
        raise ValueError(f"not a printed number: {text!r}")
    whole, frac, suffix = m.groups()
    scale = k ** {"": 0, "K": 1, "M": 2, "G": 3}[suffix]
    return float(f"{whole}.{frac or 0}") * scale, scale / 10 ** len(frac or "")


def format_patch(kernel: tuple[int, int] | None, stride: tuple[int, int] | None) -> str:
    """'7×7/2', '3×3/1', '1×7/1'; a non-square stride as '/2×1'."""
    if kernel is None:
        return ""
    s = stride or (1, 1)
    return f"{fmt_kernel(kernel)}/{s[0] if s[0] == s[1] else fmt_kernel(s)}"


# -- building -----------------------------------------------------------------------------------

_GOOGLENET_COLUMNS = (
    PaperColumn("type", "type"),
    PaperColumn("patch", "patch size/stride"),
    PaperColumn("output", "output size"),
    PaperColumn("depth", "depth", True),
    PaperColumn("n1x1", "#1×1", True),
    PaperColumn("n3x3red", "#3×3 reduce", True),
    PaperColumn("n3x3", "#3×3", True),
    PaperColumn("n5x5red", "#5×5 reduce", True),
    PaperColumn("n5x5", "#5×5", True),
    PaperColumn("pool_proj", "pool proj", True),
    PaperColumn("params", "params", True),
    PaperColumn("ops", "ops", True),
)

#: GoogLeNet's columns for a branch by its kernel: (reduce column, kernel column).
_KERNEL_COLUMNS = {(1, 1): (None, "n1x1"), (3, 3): ("n3x3red", "n3x3"), (5, 5): ("n5x5red", "n5x5")}

_DEPTH_TYPES = ("conv", "linear")


def paper_table(graph: BlockGraph, trace: ShapeTrace, layout: str | None = None, *, paper: Any = None,
                fold_reductions: bool = True) -> PaperTable:
    """The architecture table of `graph` at the input size of `trace`.

    layout: GOOGLENET, INCEPTION_V3 or None (GOOGLENET when the network has Inception blocks, all
    fitting its columns, and no residual block).
    paper: the `PaperReference` to compare with; by default the zoo's for `graph.name`.
    fold_reductions: in the GoogLeNet layout, show a lone 1×1 convolution feeding a larger one as
    that row's "reduce", as the paper does (conv2 + conv3 → one "convolution 3×3/1" row, depth 2).
    """
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if paper is None:
        paper = _zoo_paper(graph.name)
    nodes = [n for n in graph.nodes() if _shown(n, trace)]
    kernels = getattr(paper, "branch_kernels", None) or {}
    blocks = [n for n in nodes if n.kind == "inception"]
    fits = all(_googlenet_branch_cells(n, kernels.get(n.module_type)) is not None for n in blocks)
    if layout is None:
        # Residual blocks (and a network without any block) read better with a branch per column.
        residual = any(n.kind == "residual" for n in nodes)
        layout = GOOGLENET if fits and blocks and not residual else INCEPTION_V3
    elif layout == GOOGLENET and not fits:
        bad = next(n.name for n in blocks if _googlenet_branch_cells(n, kernels.get(n.module_type)) is None)
        raise ValueError(f"{graph.name}: block {bad} does not fit GoogLeNet's four branch columns;"
                         f" use the {INCEPTION_V3!r} layout")
    batch = trace.input_shape[0]
    notes: list[str] = []
    if layout == GOOGLENET:
        rows = _googlenet_rows(graph, trace, nodes, kernels, batch, paper, fold_reductions, notes)
        columns = _GOOGLENET_COLUMNS
    else:
        rows, columns = _v3_rows(graph, trace, nodes, batch, paper)
    citation = getattr(paper, "citation", None)
    _, _, h, w = trace.input_shape
    batch_norm = any("BatchNorm" in type(m).__name__ for m in graph.model.modules())
    head = [f"Layout after {citation}." if citation else "Layout after the Inception papers' Table 1.",
            f"Computed from the model's layers at input {h}×{w}: ops are multiply-adds per image"
            + ("; params include batch-norm parameters." if batch_norm else "."), UNITS_NOTE]
    skipped = [n.name for n in graph.nodes() if n.training_only]
    if skipped:
        head.append(f"Training-only heads left out: {', '.join(skipped)}.")
    if nodes and nodes[-1].kind == "linear":
        head.append("The model ends in logits; softmax is applied outside it and has no row.")
    deviations = list(dict.fromkeys(c.note for r in rows for c in r.cells.values() if c.note))
    return PaperTable(model=graph.name, layout=layout, citation=citation, input_shape=tuple(trace.input_shape),
                      columns=columns, rows=tuple(rows), notes=tuple(head + notes + deviations))


def _zoo_paper(name: str):
    from explorer.core.model.zoo import get_spec

    try:
        return get_spec(name).paper
    except KeyError:
        return None


def _shown(node: BlockNode, trace: ShapeTrace) -> bool:
    """Inference-path nodes that do something: the input and training-only heads are left out, as is
    a parameter-free op node with no multiply-adds (a stray activation module)."""
    if node.kind == "input" or node.training_only:
        return False
    if node.kind == "op":
        t = trace.nodes[node.name]
        return bool(t.params or t.macs)
    return True


def _depth_of_layers(layers) -> int:
    return sum(1 for l in layers if l.type in _DEPTH_TYPES)


def branch_depth(b: BranchSpec) -> int:
    """Convolution / fully connected layers along the branch's longest path."""
    return (_depth_of_layers(b.layers) + max((branch_depth(p) for p in b.parallel), default=0)
            + _depth_of_layers(b.tail))


def node_depth(node: BlockNode) -> int:
    """The paper's 'depth': layers with weights along the node's longest path (pool and dropout: 0)."""
    if node.branches:
        return max(branch_depth(b) for b in node.branches)
    return _depth_of_layers(node.layers)


def _main_layer(node: BlockNode) -> LayerSpec | None:
    """The layer a conv / pool node is named after (the last convolution, or the pooling)."""
    for l in reversed(node.layers):
        if l.type == "conv" or node.kind != "conv":
            return l
    return None


def _input_shape(graph: BlockGraph, trace: ShapeTrace, node: BlockNode) -> tuple[int, ...] | None:
    for p in graph.predecessors(node.name):
        if not graph.node(p).training_only:
            return trace.nodes[p].output_shape
    return None


def _patch(graph: BlockGraph, trace: ShapeTrace, node: BlockNode) -> str:
    layer = _main_layer(node)
    if layer is None or layer.type == "linear":
        return ""
    if layer.type.startswith("adaptive"):
        # A global pool covers its whole input: the paper writes GoogLeNet's as "7×7/1".
        shape = _input_shape(graph, trace, node)
        if shape is not None and len(shape) == 3:
            return format_patch((shape[1], shape[2]), (1, 1))
        return "global"
    return format_patch(layer.kernel, layer.stride)


def _pool_type(layer: LayerSpec | None) -> str:
    if layer is None:
        return "pool"
    return "avg pool" if "avg" in layer.type else "max pool"


def _dropout_rate(graph: BlockGraph, node: BlockNode) -> float | None:
    try:
        return float(graph.model.get_submodule(node.name).p)
    except (AttributeError, TypeError, ValueError):
        return None


def _block_suffix(name: str) -> str:
    m = re.fullmatch(r"inception_?(\w+)", name, flags=re.IGNORECASE)
    return m.group(1) if m else name


def _numbers(trace: ShapeTrace, names: list[str], batch: int) -> dict[str, PaperCell]:
    params = sum(trace.nodes[n].params for n in names)
    ops = sum(trace.nodes[n].macs for n in names) // batch
    return {"params": PaperCell(fmt_paper_params(params), params), "ops": PaperCell(fmt_paper_ops(ops), ops)}


def _paper_patch_note(paper, node: BlockNode, text: str) -> str | None:
    """Optional `paper.layer_patches` {node: "3×3/2"}: a pool or conv whose patch the paper gives."""
    expected = (getattr(paper, "layer_patches", None) or {}).get(node.name)
    if expected and text and expected != text:
        return f"{node.name} is {text} where the paper has {expected}"
    return None


def _googlenet_branch_cells(node: BlockNode, expected: tuple | None) -> dict[str, PaperCell] | None:
    """The #1×1 … pool proj cells of an Inception block, or None when it does not have GoogLeNet's
    four-branch shape. Columns follow the paper's kernel for the branch; a different real kernel is
    noted in the cell."""
    if len(node.branches) != 4 or (expected is not None and len(expected) != 4):
        return None
    cells: dict[str, PaperCell] = {}
    for i, b in enumerate(node.branches):
        if b.parallel or b.tail:
            return None
        convs = [l for l in b.layers if l.type == "conv"]
        want = expected[i] if expected is not None else (None if b.pool is not None else b.kernel)
        if b.pool is not None or want is None:
            if b.pool is None or want is not None or b.pool_proj is None or len(b.layers) != 2:
                return None
            if "pool_proj" in cells:
                return None
            cells["pool_proj"] = PaperCell(str(b.pool_proj), b.pool_proj)
            continue
        if want not in _KERNEL_COLUMNS or len(convs) != len(b.layers):
            return None
        red_key, key = _KERNEL_COLUMNS[want]
        if key in cells:
            return None
        real = convs[-1].kernel
        if red_key is None:
            if len(convs) != 1:
                return None
        elif len(convs) != 2 or b.reduce_channels is None:
            return None
        note = None
        if real != want:
            note = b.note or f"{fmt_branch(i)} uses a {fmt_kernel(real)} kernel where the paper has {fmt_kernel(want)}"
        text = f"{b.out_channels} ({fmt_kernel(real)})" if note else str(b.out_channels)
        cells[key] = PaperCell(text, b.out_channels, note)
        if red_key is not None:
            cells[red_key] = PaperCell(str(b.reduce_channels), b.reduce_channels, note)
    return cells


def _single_conv(node: BlockNode) -> LayerSpec | None:
    convs = [l for l in node.layers if l.type == "conv"]
    return convs[0] if node.kind == "conv" and len(convs) == 1 else None


def _layer_weights(graph: BlockGraph, names: list[str]) -> tuple[int, list[str]]:
    """Weights of the nodes' convolutions and linear layers, biases left out, and each layer's product
    ('7·7·3·64'), read from the shape program's layer attributes."""
    total, terms = 0, []
    for name in names:
        for i in graph.node(name).steps:
            step = graph.program.steps[i]
            a = step.attrs
            if step.kind == "conv":
                (kh, kw), cin, cout = a["kernel"], a["in_channels"] // a["groups"], a["out_channels"]
                total += kh * kw * cin * cout
                terms.append(f"{kh}·{kw}·{cin}·{cout}")
            elif step.kind == "linear":
                total += a["in_features"] * a["out_features"]
                terms.append(f"{a['in_features']}·{a['out_features']}")
    return total, terms


def _short(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _paper_k(k: int, value: float) -> str:
    """Where the paper's K is not the table's 1000: what its printed number comes to in weights."""
    return "" if k == 1000 else f" (its K is {k}: {fmt_int(round(value))} weights)"


def _check_printed(paper, graph: BlockGraph, trace: ShapeTrace, names: list[str],
                   cells: dict[str, PaperCell]) -> tuple[int, bool] | None:
    """Note the params / ops cells whose printed number (paper.printed_numbers) does not add up from
    the row's layers. Returns how many were noted and whether ops were compared (only where the output
    size is the printed one); None when the row has no printed numbers or its layers are not the
    paper's (an output depth other than the printed one, or a cell that already deviates)."""
    printed = (getattr(paper, "printed_numbers", None) or {}).get(names[-1])
    if not printed or any(c.deviates for c in cells.values()):
        return None
    output_text, params_text, ops_text = printed
    if output_text.rsplit("×", 1)[-1] != cells["output"].text.rsplit("×", 1)[-1]:
        return None
    compare_ops = output_text == cells["output"].text
    marked = 0
    k = getattr(paper, "params_k", 1000)
    label = " + ".join(names)
    weights, terms = _layer_weights(graph, names)
    if params_text:
        value, unit = parse_printed(params_text, k)
        if abs(value - weights) > PRINTED_TOLERANCE_UNITS * unit:
            how = (f"the layer has {terms[0]} = {fmt_int(weights)} weights" if len(terms) == 1
                   else f"its {len(terms)} layers have {fmt_int(weights)} weights")
            cells["params"] = replace(cells["params"], note=f"{label}: the paper prints {params_text} params"
                                      f"{_paper_k(k, value)}; {how}, {fmt_paper_params(weights)}")
            marked += 1
    macs = cells["ops"].value or 0
    if ops_text and compare_ops:
        value, unit = parse_printed(ops_text, 1000)
        if abs(value - macs) > PRINTED_TOLERANCE_UNITS * unit:
            shape = trace.nodes[names[-1]].output_shape
            how = fmt_int(macs)
            if len(shape) == 3 and weights * shape[1] * shape[2] == macs:
                how = f"{fmt_int(weights)} weights × {shape[1]}·{shape[2]} positions = {fmt_int(macs)}"
            cells["ops"] = replace(cells["ops"], note=f"{label}: the paper prints {ops_text} ops; {how}"
                                   f" multiply-adds, {_short(macs / 1e6)}M")
            marked += 1
    return marked, compare_ops


def _printed_summary(paper, rows: list[PaperRow], compared: list[str], marked: int, ops_skipped: int) -> list[str]:
    printed = getattr(paper, "printed_numbers", None) or {}
    if not printed or not compared:  # not the paper's network
        return []
    k = getattr(paper, "params_k", 1000)
    paper_k = f", read with the paper's own K = {k} (only so do its rows add up; this table's K is 1000)" \
        if k != 1000 else ""
    out = [f"The paper's printed params and ops are checked against the layers: its params count weights"
           f" without biases{paper_k}, its ops multiply-adds; they agree within {PRINTED_TOLERANCE_UNITS} unit of"
           f" the last printed digit, and the {marked} cells where they do not carry a note."]
    skipped = [r.label for r in rows if r.nodes[-1] in printed and r.label not in compared]
    if skipped:
        out.append(f"Not checked, as their layers differ from the paper's: {', '.join(skipped)}.")
    if ops_skipped:
        out.append(f"The printed ops of {ops_skipped} rows whose output size is not the paper's are not checked"
                   " at this input size.")
    return out


def _googlenet_rows(graph, trace, nodes, kernels, batch, paper, fold, notes) -> list[PaperRow]:
    rows: list[PaperRow] = []
    compared: list[str] = []
    marked = ops_skipped = 0
    i = 0
    while i < len(nodes):
        node = nodes[i]
        t = trace.nodes[node.name]
        names = [node.name]
        cells: dict[str, PaperCell] = {}
        conv = _single_conv(node)
        nxt = nodes[i + 1] if i + 1 < len(nodes) else None
        nxt_conv = _single_conv(nxt) if nxt is not None else None
        if (fold and conv is not None and conv.kernel == (1, 1) and nxt_conv is not None
                and nxt_conv.kernel in ((3, 3), (5, 5)) and graph.successors(node.name) == [nxt.name]
                and graph.predecessors(nxt.name) == [node.name]):
            # GoogLeNet's Table 1 shows conv2 (1×1) as the "#3×3 reduce" of conv3's row.
            red_key, key = _KERNEL_COLUMNS[nxt_conv.kernel]
            cells[red_key] = PaperCell(str(conv.out_channels), conv.out_channels)
            cells[key] = PaperCell(str(nxt_conv.out_channels), nxt_conv.out_channels)
            notes.append(f"{node.name} ({fmt_kernel(conv.kernel)} conv) is shown as the reduce of {nxt.name}'s row,"
                         " as in the paper.")
            names.append(nxt.name)
            node, t = nxt, trace.nodes[nxt.name]
            depth = node_depth(nodes[i]) + node_depth(nxt)
            i += 1
        else:
            depth = node_depth(node)
            if conv is not None and conv.kernel in _KERNEL_COLUMNS:
                cells[_KERNEL_COLUMNS[conv.kernel][1]] = PaperCell(str(conv.out_channels), conv.out_channels)
        i += 1
        if node.kind == "inception":
            typ = f"inception ({_block_suffix(node.name)})"
            patch = ""
            cells.update(_googlenet_branch_cells(node, kernels.get(node.module_type)) or {})
        else:
            typ = _type_name(graph, node, GOOGLENET)
            patch = _patch(graph, trace, node)
        cells["type"] = PaperCell(typ)
        cells["patch"] = PaperCell(patch, note=_paper_patch_note(paper, node, patch))
        cells["output"] = PaperCell(fmt_hwc(t.output_shape), t.output_shape)
        cells["depth"] = PaperCell(str(depth), depth)
        cells.update(_numbers(trace, names, batch))
        if node.kind == "dropout":
            cells["type"] = _dropout_cell(graph, node, paper)
        checked = _check_printed(paper, graph, trace, names, cells)
        if checked is not None:
            compared.append(" + ".join(names))
            marked += checked[0]
            ops_skipped += not checked[1]
        rows.append(PaperRow(tuple(names), node.kind, cells))
    notes.extend(_printed_summary(paper, rows, compared, marked, ops_skipped))
    return rows


def _dropout_cell(graph: BlockGraph, node: BlockNode, paper) -> PaperCell:
    rate = _dropout_rate(graph, node)
    if rate is None:
        return PaperCell("dropout")
    text = f"dropout ({fmt_fraction(rate, 0)})"
    expected = getattr(paper, "dropout", None)
    note = None
    if expected is not None and abs(expected - rate) > 1e-9:
        note = f"dropout rate {fmt_fraction(rate, 0)} where the paper has {fmt_fraction(expected, 0)}"
    return PaperCell(text, rate, note)


def _type_name(graph: BlockGraph, node: BlockNode, layout: str) -> str:
    if node.kind == "conv":
        if layout == INCEPTION_V3:
            layer = _main_layer(node)
            padded = layer is not None and layer.padding is not None and any(layer.padding)
            return "conv padded" if padded else "conv"
        return "convolution"
    if node.kind == "pool":
        return _pool_type(_main_layer(node))
    if node.kind == "inception":
        return f"inception ({node.name})" if layout == INCEPTION_V3 else f"inception ({_block_suffix(node.name)})"
    if node.kind == "residual":
        return f"residual ({node.name})"
    if node.kind in ("linear", "dropout"):
        return node.kind
    return node.module_type


def _v3_rows(graph, trace, nodes, batch, paper) -> tuple[list[PaperRow], tuple[PaperColumn, ...]]:
    width = max((len(n.branches) for n in nodes), default=0)
    columns = (
        PaperColumn("type", "type"),
        PaperColumn("patch", "patch size/stride or remarks"),
        PaperColumn("input", "input size"),
        PaperColumn("output", "output size"),
        PaperColumn("depth", "depth", True),
        *(PaperColumn(f"branch{branch_number(k)}", fmt_branch(k)) for k in range(width)),
        PaperColumn("params", "params", True),
        PaperColumn("ops", "ops", True),
    )
    from explorer.core.shapes.export import compact_branch

    rows = []
    for node in nodes:
        t = trace.nodes[node.name]
        shape_in = _input_shape(graph, trace, node)
        cells = {
            "type": PaperCell(_type_name(graph, node, INCEPTION_V3)),
            "input": PaperCell(fmt_hwc(shape_in), shape_in),
            "output": PaperCell(fmt_hwc(t.output_shape), t.output_shape),
            "depth": PaperCell(str(node_depth(node)), node_depth(node)),
        }
        if node.branches:
            merge = "concat" if node.merge == "cat" else "sum"
            remark = f"{merge} of {len(node.branches)} branches"
            if (shape_in and t.output_shape and len(shape_in) == 3 and len(t.output_shape) == 3
                    and shape_in[1:] != t.output_shape[1:]):
                remark += f", grid {shape_in[1]}×{shape_in[2]} → {t.output_shape[1]}×{t.output_shape[2]}"
            cells["patch"] = PaperCell(remark)
            for k, b in enumerate(node.branches, 1):
                cells[f"branch{k}"] = PaperCell(compact_branch(b), b.out_channels, b.note)
        elif node.kind == "linear":
            cells["patch"] = PaperCell("logits" if node is nodes[-1] else "")
        else:
            patch = _patch(graph, trace, node)
            cells["patch"] = PaperCell(patch, note=_paper_patch_note(paper, node, patch))
        if node.kind == "dropout":
            cells["type"] = _dropout_cell(graph, node, paper)
        cells.update(_numbers(trace, [node.name], batch))
        rows.append(PaperRow((node.name,), node.kind, cells))
    return rows, columns
