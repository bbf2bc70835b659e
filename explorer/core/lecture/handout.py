"""A handout of one model as plain data: sections of text, tables, pictures and feature maps.

`build_handout` gathers what a lecturer hands out: the block graph (drawn by the Qt renderer from the
`GraphDrawing`s named here), the paper table with its printed-vs-computed notes, the shape trace at a
chosen size, and, with an image, its top-5, the chosen blocks' per-branch feature maps and a Grad-CAM
overlay. Every string comes from the engine's own formats (explorer.core.text, export, papertable),
so the PDF says what the window and the exports say. explorer.qt.lecture.handout_pdf turns it into a PDF.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explorer.core.cancel import CancelToken

if TYPE_CHECKING:
    import numpy as np

    from explorer.core.graph.blockgraph import BlockGraph
    from explorer.core.shapes.trace import ShapeTrace

#: Feature maps shown per branch: its most active channels (highest mean activation first).
MAPS_PER_BRANCH = 6
#: Classes listed for the image.
TOP = 5


@dataclass(frozen=True)
class Table:
    """A table as text: headings, rows, right-aligned columns, cells marked as departing from the paper."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: frozenset[int] = frozenset()
    marked: frozenset[tuple[int, int]] = frozenset()  # (row, column) of cells with a note
    notes: tuple[str, ...] = ()  # footnotes under the table


@dataclass(frozen=True)
class Picture:
    """An RGB picture with its caption."""

    caption: str
    rgb: np.ndarray  # (H, W, 3) uint8


@dataclass(frozen=True)
class BranchMaps:
    """One branch of a block for the image: its label, output shape and most active channels."""

    label: str
    shape: str  # "C×H×W" of the branch's output
    maps: np.ndarray  # (k, h, w) float32 in 0..1, one scale for the branch
    channels: tuple[int, ...]  # channel index of each map


@dataclass(frozen=True)
class GraphDrawing:
    """The block graph drawn with `expanded` blocks opened; `focus`: only that block's frame is shown."""

    key: str
    expanded: frozenset[str] = frozenset()
    focus: str | None = None


@dataclass(frozen=True)
class Section:
    """One part of the handout; it starts a page. `parts`: GraphDrawing, Table, Picture, a tuple of
    Pictures (side by side) or a tuple of BranchMaps (a grid), in reading order."""

    title: str
    text: tuple[str, ...] = ()
    parts: tuple[Any, ...] = ()


#: What every page over the image says when the network's weights are random (the writer says it once a page, under
#: the heading, continuation pages too): its classes, maps and attribution mean nothing.
IMAGE_CAVEAT = ("⚠ Random weights: these numbers mean nothing for a network that has not learned: the classes, "
                "feature maps and attribution on this page come from weights that were never trained.")


@dataclass(frozen=True)
class Handout:
    """Everything one handout shows; `graph` and `trace` are what its drawings are made from."""

    title: str
    graph: BlockGraph
    trace: ShapeTrace
    sections: tuple[Section, ...]
    drawings: tuple[GraphDrawing, ...] = field(default=())
    #: Said once on every page that shows the image (IMAGE_CAVEAT with random weights), '' for none.
    image_caveat: str = ""


def default_blocks(graph: BlockGraph) -> list[str]:
    """The block a handout opens when none is named: the first Inception block, else the first block."""
    blocks = graph.blocks()
    first = next((b for b in blocks if b.kind == "inception"), blocks[0] if blocks else None)
    return [] if first is None else [first.name]


def check_blocks(graph: BlockGraph, names: list[str] | None) -> list[str]:
    """`names` checked against the graph's blocks (None: the default); ValueError names the known ones."""
    if not names:
        return default_blocks(graph)
    known = [b.name for b in graph.blocks()]
    unknown = [n for n in names if n not in known]
    if unknown:
        listed = ", ".join(known) if known else "none: this model has no blocks with branches"
        raise ValueError(f"no block {', '.join(unknown)} in {graph.name}; blocks: {listed}")
    return list(dict.fromkeys(names))


def drawings(blocks: list[str]) -> tuple[GraphDrawing, ...]:
    """The graph drawings a handout of `blocks` shows: the whole graph, then each block opened."""
    return (GraphDrawing("graph"),) + tuple(GraphDrawing(f"block:{b}", frozenset({b}), b) for b in blocks)


def heat_overlay(rgb: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """A map over the picture (pytorch-grad-cam's overlay: JET colours, 50 % blend), as (H, W, 3) uint8;
    signed maps are drawn by magnitude, scaled to their 99.5th percentile."""
    import numpy as np
    from pytorch_grad_cam.utils.image import show_cam_on_image

    mag = np.abs(np.nan_to_num(heat.astype(np.float64)))
    top = np.percentile(mag, 99.5) if mag.size else 0.0
    mask = np.clip(mag / top, 0, 1) if top > 0 else np.zeros_like(mag)
    return show_cam_on_image(rgb.astype(np.float32) / 255, mask.astype(np.float32), use_rgb=True, image_weight=0.5)


# -- sections ---------------------------------------------------------------------------------


def _graph_section(graph: BlockGraph, trace: ShapeTrace, weights: str) -> Section:
    from explorer.core.shapes.export import trace_totals

    text = (f"Model: {graph.name}. Weights: {weights}.",) + tuple(trace_totals(trace))
    return Section("Block graph", text, (GraphDrawing("graph"),))


def _paper_section(graph: BlockGraph, trace: ShapeTrace) -> Section:
    from explorer.core.shapes.papertable import paper_table

    try:
        table = paper_table(graph, trace)
    except (ValueError, KeyError) as e:
        return Section("Paper table", (f"No paper-style table for {graph.name}: {e}",))
    marked = frozenset((i, j) for i, r in enumerate(table.rows) for j, c in enumerate(table.columns)
                       if r[c.key].deviates)
    numeric = frozenset(j for j, c in enumerate(table.columns) if c.numeric)
    rows = tuple((r.label, *cells) for r, cells in zip(table.rows, table.text_rows()))
    # Column 0 is the row's node(s); the marks shift by one.
    marked = frozenset((i, j + 1) for i, j in marked)
    t = Table(("node", *(c.title for c in table.columns)), rows, frozenset(j + 1 for j in numeric), marked,
              table.notes)
    if table.citation:
        text = (f"The architecture table computed from the model. Layout after {table.citation}. Marked cells"
                " differ from the paper; the notes say how.")
    else:  # no paper of this model: nothing to differ from
        text = ("The model's layers in the layout of the Inception papers' Table 1, computed from the model; this"
                " model has no paper table to compare with.")
    return Section(f"Paper table: {table.title}", (text,), (t,))


def _trace_section(graph: BlockGraph, trace: ShapeTrace) -> Section:
    from explorer.core.shapes.export import TRACE_COLUMNS, trace_rows, trace_totals

    h, w = trace.input_shape[2:]
    t = Table(TRACE_COLUMNS, tuple(tuple(r) for r in trace_rows(graph, trace)), frozenset({4, 5}),
              notes=tuple(trace_totals(trace)))
    return Section(f"Shape trace at {h}×{w}", ("Every node's output shape (C×H×W), parameters, multiply-adds"
                                               " and receptive field (RF) at this input size.",), (t,))


def _block_section(graph: BlockGraph, trace: ShapeTrace, block: str, captured, top: str | None,
                   knockouts: dict | None = None) -> Section:
    """`knockouts`: {branch_index: BranchEffect} of the image's top-1 with each branch of the block off."""
    from explorer.core.microscope.activations import branch_stats, feature_maps
    from explorer.core.shapes.export import compact_branch
    from explorer.core.text import branch_number, fmt_fraction, fmt_shape

    node = graph.node(block)
    out = trace.nodes[block].output_shape
    kind = node.kind if node.kind.lower() == node.module_type.lower() else f"{node.kind}, {node.module_type}"
    text = [f"{block} ({kind}): {len(node.branches)} branches"
            + (f", output {fmt_shape(out)} at the traced size." if out is not None else ".")]
    parts: list[Any] = [GraphDrawing(f"block:{block}", frozenset({block}), block)]
    if captured is None:
        rows = tuple((str(branch_number(i)), b.label, compact_branch(b), str(b.out_channels))
                     for i, b in enumerate(node.branches))
        parts.append(Table(("#", "branch", "layers", "channels"), rows, frozenset({3})))
        return Section(f"Block {block}", tuple(text), tuple(parts))
    cap = captured.capture
    stats = {s.index: s for s in branch_stats(cap, graph, block)}
    rows, strips = [], []
    for i, b in enumerate(node.branches):
        t = cap.branches[block][i]
        s = stats.get(i)
        shape = fmt_shape(tuple(t.shape[1:])) if t is not None else "—"
        e = (knockouts or {}).get(i)
        off = "—" if e is None else fmt_fraction(e.delta_prob, signed=True) + (" ⟲" if e.top1_changed else "")
        rows.append((str(branch_number(i)), b.label, shape, fmt_fraction(s.energy_share) if s else "—",
                     fmt_fraction(s.zero_fraction) if s else "—", off))
        if t is not None:
            fm = feature_maps(t, order="mean", limit=MAPS_PER_BRANCH)
            strips.append(BranchMaps(f"{branch_number(i)}. {b.label}", fmt_shape(tuple(t.shape[1:])), fm.normalised("shared"),
                                     tuple(int(c) for c in fm.channels)))
    text.append(f"Feature maps of {top}: each branch's {MAPS_PER_BRANCH} most active channels (highest mean"
                " first), one scale per branch, yellow high and dark blue low (viridis, as in the window)."
                " Energy: the branch's share of the block output's sum of squares; zeros: its share of zero"
                " activations; off: the change in the top-1 class's probability with that branch alone switched"
                " off (its output zeros), ⟲ where the top-1 class then changes.")
    parts.append(Table(("#", "branch", "output", "energy", "zeros", "off"), tuple(rows), frozenset({3, 4, 5})))
    parts.append(tuple(strips))
    return Section(f"Block {block}: feature maps", tuple(text), tuple(parts))


def _classification_section(name: str, captured, clf, weights: str) -> Section:
    from explorer.core.text import fmt_fraction

    r = captured.result
    rows = tuple((str(k), p.label, str(p.index), fmt_fraction(p.prob)) for k, p in enumerate(r.top, 1))
    w, h = r.image_size
    crop = clf.crop_size
    text = (f"{name} ({w}×{h}), resized to {clf.resize_size} and cropped to {crop}×{crop} as the model's"
            f" weights expect; weights: {weights}.",)
    if r.notice:
        text += (r.notice,)
    pic = Picture(f"{name} as the network sees it ({crop}×{crop})", captured.rgb)
    return Section(f"Top-{len(rows)} of {name}", text,
                   (pic, Table(("rank", "class", "index", "probability"), rows, frozenset({2, 3}))))


def _attribution_section(name: str, captured, clf, graph: BlockGraph, cm) -> Section:
    from explorer.core.attribution.methods import attribute

    target = captured.result.top[0].index
    label = captured.result.top[0].label
    blocks = [b.name for b in graph.blocks()]
    if blocks:
        r = attribute(cm, captured.x.float().contiguous(), "grad_cam", target, node=blocks[-1])
        how = (f"Grad-CAM at {blocks[-1]}, the last block (its features are the most class-specific and it still"
               " has a spatial map), upsampled to the input.")
        method = "Grad-CAM"
    else:
        r = attribute(cm, captured.x.float().contiguous(), "saliency", target)
        how, method = "Saliency: the gradient's magnitude at each pixel (the model has no blocks for Grad-CAM).", \
            "Saliency"
    text = (f"What in {name} the model used for its top class, {label} ({target}). {how}",
            "Red: strong evidence; blue: little.")
    pics = (Picture(f"{name}", captured.rgb), Picture(f"{method} for {label}", heat_overlay(captured.rgb, r.heatmap)))
    if r.notice:
        text += (r.notice,)
    return Section(f"Attribution: {method} of {name}", text, (pics,))


# -- the whole handout ------------------------------------------------------------------------


def build_handout(loaded, graph: BlockGraph, size: tuple[int, int], *, image: str | Path | None = None,
                  image_name: str | None = None, blocks: list[str] | None = None,
                  progress: Callable[[int, int | None], None] | None = None,
                  cancel: CancelToken | None = None) -> Handout:
    """The handout of `loaded` (a LoadedModel) with its `graph` at input `size`; with `image` (a file, or a
    PIL image named `image_name`) also its top-5, feature maps of `blocks` (default: the first Inception
    block) and an attribution; with random weights, `image_caveat` is IMAGE_CAVEAT, which the writer says on
    each page over the image. ValueError for an unknown block or a size the network refuses;
    ImageLoadError for an image that cannot be read."""
    from explorer.core.model.loading import has_learned_weights
    from explorer.core.shapes.trace import trace_shapes

    blocks = check_blocks(graph, blocks)
    steps = 3 + (3 if image is not None else 0)
    done = 0

    def step() -> None:
        nonlocal done
        if cancel is not None:
            cancel.raise_if_cancelled()
        done += 1
        if progress is not None:
            progress(done, steps)

    trace = trace_shapes(graph, size)
    weights = loaded.weights.describe()
    sections = [_graph_section(graph, trace, weights), _paper_section(graph, trace)]
    step()
    sections.append(_trace_section(graph, trace))
    step()
    captured = clf = cm = None
    name = None
    learned = has_learned_weights(loaded)
    if image is not None:
        from explorer.core.classify.images import ImageLoadError
        from explorer.core.classify.inference import Classifier

        name = image_name or Path(str(image)).name
        clf = Classifier(loaded, "cpu", optimize=False, graph=graph)
        cm = clf.capture_model("cpu")
        captured = clf.classify_captured(image, name=name, top=TOP, cancel=cancel)
        if captured.result.error is not None:
            raise ImageLoadError(name, captured.result.error)
        step()
        # With random weights the page's caveat warns: the weights are named plainly here, not warned of twice.
        reason = getattr(loaded.weights, "reason", "")
        named = weights if learned else "none, random" + (f" ({reason})" if reason else "")
        sections.append(_classification_section(name, captured, clf, named))
    knockouts: dict[str, dict] = {}
    if captured is not None:
        from explorer.core.attribution.knockout import branch_effects

        branches = [(b, k) for b in blocks for k in range(len(graph.node(b).branches))]
        if branches:
            for e in branch_effects(cm, graph, captured.x.float().contiguous(), branches=branches).effects:
                knockouts.setdefault(e.block, {})[e.branch_index] = e
    for b in blocks:
        sections.append(_block_section(graph, trace, b, captured, name, knockouts.get(b)))
    step()
    if captured is not None:
        sections.append(_attribution_section(name, captured, clf, graph, cm))
        step()
    title = f"{graph.name}" + (f" and {name}" if name else "")
    step()
    return Handout(f"Inception Explorer handout: {title}", graph, trace, tuple(sections), drawings(blocks),
                   "" if learned else IMAGE_CAVEAT)
