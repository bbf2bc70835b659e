"""Data-flow slides: the image on screen walked through the network stage by stage, for a lecture.

A `SlideDeck` holds the slides of one image: first the input as the network sees it (after
preprocessing, de-normalised), then one slide per block — its branches, the image's most active
channels inside each, the shape on every edge, each branch's share of the block's output energy and,
when computed, of the attribution — and last the top-5. Everything comes from the tensors of the one
capture forward that classified the image: building a slide runs no network. Slides are built when
first asked for and kept, so a step costs one block's copy to the CPU.

Flow mode lights the path the data takes through a block one step at a time: each branch in turn,
then the join (concatenation or residual add); `next_position` / `previous_position` walk those steps
before moving to the neighbouring slide.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported when a deck is built, not when the window imports this module
    import numpy as np

    from explorer.core.graph.blockgraph import BlockGraph
    from explorer.core.graph.capture import Capture

#: Feature maps drawn inside each branch unless the user asks for another number.
DEFAULT_MAPS = 4
MIN_MAPS, MAX_MAPS = 1, 16


def clamp_maps(n: int) -> int:
    """The number of maps per branch, kept within what a slide can show."""
    return max(MIN_MAPS, min(MAX_MAPS, int(n)))


@dataclass(frozen=True)
class BranchSlide:
    """One branch of a block as a slide shows it."""

    index: int
    label: str  # the block graph's branch label ("#3×3 reduce → 3×3")
    layers: tuple[str, ...]  # its layers in order, described ("3×3 conv, 128"); a split as "(1×3 … ‖ 3×1 …)"
    out_shape: tuple[int, ...] | None  # (C, H, W) of its output, from the engine's shape program
    maps: np.ndarray | None  # (k, H, W) float32: the image's k most active channels (highest mean first)
    channels: np.ndarray | None  # the original channel index of each map
    energy_share: float | None  # its sum of squares over the block output's
    attribution_share: float | None = None  # its share of the attribution, when computed
    knockout_delta: float | None = None  # Δ p(top-1) with this branch alone off, when computed


@dataclass(frozen=True)
class Slide:
    """One stage: kind "input" (the network input), "block" (one block's branches) or "top5"."""

    kind: str
    index: int
    title: str
    name: str = ""  # the block's name (block slides)
    in_shape: tuple[int, ...] | None = None  # (C, H, W) entering the stage
    out_shape: tuple[int, ...] | None = None  # (C, H, W) leaving it
    merge: str | None = None  # "cat" or "add" (block slides)
    branches: tuple[BranchSlide, ...] = ()
    image: np.ndarray | None = None  # (H, W, 3) uint8: the network input (input and top-5 slides)
    top: tuple[tuple[str, float], ...] = ()  # (label, probability), best first (top-5 slide)
    source: str = ""  # the image's name

    @property
    def flow_steps(self) -> int:
        """Lit steps in flow mode: each branch, then the join; 1 for slides without branches."""
        return len(self.branches) + 1 if self.kind == "block" else 1

    def lit(self, step: int | None) -> tuple[str, int | None] | None:
        """What flow-mode step `step` lights: ("branch", k), ("merge", None), or None (nothing)."""
        if step is None or self.kind != "block":
            return None
        if step < len(self.branches):
            return ("branch", step)
        return ("merge", None)


@dataclass(frozen=True)
class Position:
    """Where a talk is: the slide, and the lit step within it (flow mode)."""

    slide: int = 0
    step: int = 0


def _at(values: dict[str, list[float]], block: str, k: int) -> float | None:
    row = values.get(block)
    return float(row[k]) if row is not None and k < len(row) else None


def knockout_deltas(effects) -> dict[str, list[float]]:
    """{block: [Δ p per branch, by branch_index]} of a BranchEffects (a branch not knocked out: NaN)."""
    out: dict[str, list[float]] = {}
    for e in effects.effects:
        row = out.setdefault(e.block, [])
        row.extend([float("nan")] * (e.branch_index + 1 - len(row)))
        row[e.branch_index] = e.delta_prob
    return out


class SlideDeck:
    """The slides of one captured image (see the module docstring); built lazily, no forward."""

    def __init__(self, graph: BlockGraph, capture: Capture, rgb: np.ndarray, *, result: Any = None,
                 categories: list[str] | None = None, maps_per_branch: int = DEFAULT_MAPS,
                 attribution: dict[str, list[float]] | None = None, source: str = "",
                 knockouts: dict[str, list[float]] | None = None):
        self.graph, self.capture, self.rgb = graph, capture, rgb
        self.result, self.categories = result, categories
        self.maps_per_branch = clamp_maps(maps_per_branch)
        self.attribution = dict(attribution or {})
        self.knockouts = dict(knockouts or {})
        self.source = source
        #: The blocks with captured branches, in data-flow order (training-only heads left out).
        self.blocks = [n.name for n in graph.blocks() if not n.training_only and n.name in capture.branches]
        self._slides: dict[int, Slide] = {}
        self._shapes: list | None = None

    def __len__(self) -> int:
        return len(self.blocks) + 2

    def names(self) -> list[str]:
        """A name per slide: "input", the blocks, "top-5"."""
        return ["input", *self.blocks, "top-5"]

    def index_of(self, block: str) -> int:
        return self.blocks.index(block) + 1

    def flow_steps(self, index: int) -> int:
        """Lit steps of slide `index` without building it."""
        if 1 <= index <= len(self.blocks):
            return len(self.graph.node(self.blocks[index - 1]).branches) + 1
        return 1

    def slide(self, index: int) -> Slide:
        """Slide `index` (0: input, 1..: blocks, last: top-5), built on first use."""
        if not 0 <= index < len(self):
            raise IndexError(f"slide {index} of {len(self)}")
        s = self._slides.get(index)
        if s is None:
            s = self._slides[index] = self._build(index)
        return s

    # -- settings that change slides ------------------------------------------------------------

    def set_maps_per_branch(self, n: int) -> None:
        n = clamp_maps(n)
        if n != self.maps_per_branch:
            self.maps_per_branch = n
            self._slides = {i: s for i, s in self._slides.items() if s.kind != "block"}

    def set_attribution(self, shares: dict[str, list[float]] | None) -> None:
        """Per-branch attribution shares of this image ({block: [share per branch]}); None: not computed."""
        self.attribution = dict(shares or {})
        for i, s in list(self._slides.items()):
            if s.kind == "block":
                self._slides[i] = replace(s, branches=tuple(
                    replace(b, attribution_share=self._attribution_share(s.name, b.index)) for b in s.branches))

    def set_knockouts(self, deltas: dict[str, list[float]] | None) -> None:
        """Per-branch knock-out effects of this image ({block: [Δ p per branch]}); None: not computed."""
        self.knockouts = dict(deltas or {})
        for i, s in list(self._slides.items()):
            if s.kind == "block":
                self._slides[i] = replace(s, branches=tuple(
                    replace(b, knockout_delta=_at(self.knockouts, s.name, b.index)) for b in s.branches))

    # -- building ------------------------------------------------------------------------------

    def _attribution_share(self, block: str, k: int) -> float | None:
        shares = self.attribution.get(block)
        return float(shares[k]) if shares is not None and k < len(shares) else None

    def _input_shape(self) -> tuple[int, int, int, int]:
        h, w = self.rgb.shape[:2]
        return (1, self.graph.in_channels, int(h), int(w))

    def _step_shapes(self) -> list:
        """Every step's shape at the captured input size, from the engine's shape program (no forward)."""
        if self._shapes is None:
            vals, _ = self.graph.program.run(self._input_shape())
            self._shapes = vals
        return self._shapes

    def _shape(self, step: int | None) -> tuple[int, ...] | None:
        from explorer.core.graph.program import TShape

        if step is None or step < 0:
            return None
        v = self._step_shapes()[step]
        return tuple(int(d) for d in v[1:]) if isinstance(v, TShape) else None

    def _block_input_shape(self, name: str) -> tuple[int, ...] | None:
        preds = [p for p in self.graph.predecessors(name) if not self.graph.node(p).training_only]
        return self._shape(self.graph.node(preds[0]).output_step) if len(preds) == 1 else None

    def _build(self, index: int) -> Slide:
        from explorer.core.microscope.activations import branch_stats, feature_maps

        if index == 0:
            h, w = self.rgb.shape[:2]
            return Slide(kind="input", index=0, title="The input as the network sees it", name="input",
                         out_shape=(self.graph.in_channels, int(h), int(w)), image=self.rgb, source=self.source)
        if index == len(self) - 1:
            return Slide(kind="top5", index=index, title="Top-5", name="top-5", top=self._top5(), image=self.rgb,
                         in_shape=self._shape(self.graph.node(self.blocks[-1]).output_step) if self.blocks else None,
                         source=self.source)
        name = self.blocks[index - 1]
        node = self.graph.node(name)
        stats = {s.index: s for s in branch_stats(self.capture, self.graph, name)}
        branches = []
        for k, spec in enumerate(node.branches):
            t = self.capture.branches[name][k] if k < len(self.capture.branches[name]) else None
            fm = feature_maps(t, order="mean", limit=self.maps_per_branch) if t is not None and t.dim() == 4 else None
            step = node.branch_steps[k] if k < len(node.branch_steps) else None
            branches.append(BranchSlide(
                index=k, label=spec.label, layers=describe_layers(spec),
                out_shape=self._shape(step),
                maps=None if fm is None else fm.maps, channels=None if fm is None else fm.channels,
                energy_share=stats[k].energy_share if k in stats else None,
                attribution_share=self._attribution_share(name, k),
                knockout_delta=_at(self.knockouts, name, k),
            ))
        return Slide(kind="block", index=index, title=name, name=name, in_shape=self._block_input_shape(name),
                     out_shape=self._shape(node.output_step), merge=node.merge, branches=tuple(branches),
                     source=self.source)

    def _top5(self) -> tuple[tuple[str, float], ...]:
        top = getattr(self.result, "top", None)
        if top:
            return tuple((p.label, float(p.prob)) for p in top[:5])
        probs = self.capture.logits[0].float().softmax(0)
        values, indices = probs.topk(min(5, probs.shape[0]))
        cats = self.categories or []
        return tuple((cats[i] if i < len(cats) else f"class {i}", float(v))
                     for v, i in zip(values.tolist(), indices.tolist()))


def describe_layers(branch) -> tuple[str, ...]:
    """A branch's layers in order; where it splits again (Inception v3's 1×3 ‖ 3×1) the parallel paths
    are one item, "(1×3 conv, 384 ‖ 3×1 conv, 384)", so that a chain never reads as if they were in series."""
    parts = [layer.describe() for layer in branch.layers]
    if branch.parallel:
        parts.append("(" + " ‖ ".join(" → ".join(describe_layers(b)) for b in branch.parallel) + ")")
    return tuple(parts + [layer.describe() for layer in branch.tail])


def next_position(deck: SlideDeck, pos: Position, flow: bool) -> Position:
    """The position after `pos`: the next lit step in flow mode, else (or after the join) the next slide."""
    if flow and pos.step < deck.flow_steps(pos.slide) - 1:
        return Position(pos.slide, pos.step + 1)
    if pos.slide >= len(deck) - 1:
        return pos
    return Position(pos.slide + 1, 0)


def previous_position(deck: SlideDeck, pos: Position, flow: bool) -> Position:
    """The position before `pos`: the previous lit step in flow mode, else the previous slide (at its join)."""
    if flow and pos.step > 0:
        return Position(pos.slide, pos.step - 1)
    if pos.slide <= 0:
        return Position(0, 0)
    return Position(pos.slide - 1, deck.flow_steps(pos.slide - 1) - 1 if flow else 0)


def strongest_maps(capture: Capture, graph: BlockGraph) -> dict[str, np.ndarray]:
    """For each node with a spatial output: the image's strongest channel (highest mean) there, scaled to
    0..1 as (H, W) float32 — the block graph's thumbnails. From the capture; no forward."""
    import torch

    out: dict[str, np.ndarray] = {}
    for node in graph.nodes():
        t = capture.outputs.get(node.name)
        if t is None or t.dim() != 4 or min(t.shape[-2:]) < 2:
            continue
        x = t[0].detach()
        m = x[x.mean(dim=(1, 2)).argmax()].float()
        lo, hi = m.min(), m.max()
        m = (m - lo) / (hi - lo) if bool(hi > lo) else torch.zeros_like(m)
        out[node.name] = m.contiguous().cpu().numpy()
    return out
