"""Graph overlays: one number per block-graph node, to colour the graph's boxes by, with its legend.

The static quantities (parameters, multiply-adds, activation memory, receptive field) are read from
the shape trace; the image's quantities (activation energy, fraction of zero activations) from the
`Capture` of the image on screen; the measured time per block from `time_blocks`, which times every
node's module over a few forwards after a warm-up (perf_counter around each module on the CPU, CUDA
events on a GPU) and keeps the median and the spread. Plain data: the Qt view only maps
`Legend.position(value)` to a colour of `PALETTE`.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from explorer.core.text import MISSING, MULTIPLY_ADDS, fmt_bytes, fmt_count, fmt_fraction, fmt_range, fmt_seconds

if TYPE_CHECKING:
    from explorer.core.graph.blockgraph import BlockGraph
    from explorer.core.cancel import CancelToken
    from explorer.core.shapes.trace import ShapeTrace

#: The quantities a graph can be coloured by, with their menu text ("none" first).
QUANTITIES: dict[str, str] = {
    "none": "None",
    "params": "Parameters",
    "macs": MULTIPLY_ADDS.capitalize(),
    "memory": "Activation memory",
    "receptive_field": "Receptive field",
    "time": "Measured time",
    "energy": "Activation energy (image)",
    "zeros": "Zero activations (image)",
    "attribution": "Attribution share (image)",
    "knockout": "Knock-out effect (image)",
}
STATIC = ("params", "macs", "memory", "receptive_field")
LOG_SCALE = ("params", "macs")
IMAGE = ("energy", "zeros")

#: A sequential palette, light (low) to dark (high): ColorBrewer's YlOrRd, 9 classes.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 255, 204), (255, 237, 160), (254, 217, 118), (254, 178, 76), (253, 141, 60),
    (252, 78, 42), (227, 26, 28), (189, 0, 38), (128, 0, 38),
)


def colour_at(t: float) -> tuple[int, int, int]:
    """The palette's colour at position t in [0, 1], interpolated between its stops."""
    t = min(1.0, max(0.0, t)) * (len(PALETTE) - 1)
    i = min(int(t), len(PALETTE) - 2)
    f = t - i
    a, b = PALETTE[i], PALETTE[i + 1]
    return tuple(round(x + (y - x) * f) for x, y in zip(a, b))  # type: ignore[return-value]


def _fmt_px(v: float | None) -> str:
    return MISSING if v is None else f"{round(v)} px"


def _fmt_energy(v: float | None) -> str:
    """A sum of squares: three significant digits, in the SI units of the counts from 1000 up."""
    if v is None:
        return MISSING
    return fmt_count(v) if abs(v) >= 1000 else f"{v:.3g}"


#: How each quantity's values read (explorer.core.text formats).
FORMATS: dict[str, Callable[[Any], str]] = {
    "params": fmt_count, "macs": fmt_count, "memory": fmt_bytes, "receptive_field": _fmt_px,
    "time": fmt_seconds, "energy": _fmt_energy, "zeros": fmt_fraction, "attribution": fmt_fraction,
    "knockout": fmt_fraction,
}


@dataclass(frozen=True)
class Legend:
    """How values map to the palette: `low`..`high`, on a log scale when the values span decades."""

    title: str
    low: float
    high: float
    log: bool = False
    note: str = ""  # where the numbers come from ("median of 5 forwards on cpu at 224×224")
    quantity: str = ""

    def position(self, value: float) -> float:
        """Where `value` sits on the colour scale, 0 (lightest) to 1 (darkest)."""
        lo, hi, v = self.low, self.high, value
        if self.log:
            floor = hi / 1e4 if hi > 0 else 1e-12  # zero and tiny values share the lightest colour
            lo, hi, v = (math.log10(max(x, floor)) for x in (max(lo, floor), max(hi, floor), v))
        if hi <= lo:
            return 1.0
        return min(1.0, max(0.0, (v - lo) / (hi - lo)))

    def colour(self, value: float) -> tuple[int, int, int]:
        return colour_at(self.position(value))

    def text(self, value: float | None) -> str:
        return FORMATS.get(self.quantity, _fmt_energy)(value)

    @property
    def range_texts(self) -> tuple[str, str]:
        """The scale's two ends, its unit said once: ('0', '8.68 ms'), not '0 s … 8.68 ms'."""
        return fmt_range(self.low, self.high, FORMATS.get(self.quantity, _fmt_energy))

    @property
    def low_text(self) -> str:
        return self.range_texts[0]

    @property
    def high_text(self) -> str:
        return self.range_texts[1]


@dataclass(frozen=True)
class Overlay:
    """One value per node (nodes without one are drawn plain), its spread where measured, and the legend."""

    quantity: str
    values: dict[str, float]
    legend: Legend
    spread: dict[str, float] = field(default_factory=dict)  # time: the interquartile range, seconds

    def text(self, node: str) -> str:
        v = self.values.get(node)
        s = self.legend.text(v)
        if v is not None and node in self.spread:
            s += f" ± {self.legend.text(self.spread[node] / 2)}"
        return s


def make_legend(quantity: str, values: dict[str, float], note: str = "") -> Legend:
    """A legend over `values`: linear from 0; for counts, log when the largest is over 100× the smallest
    non-zero."""
    vs = [v for v in values.values() if v is not None and math.isfinite(v)]
    hi = max(vs, default=0.0)
    lo = min(vs, default=0.0)
    positive = [v for v in vs if v > 0]
    # Counts span decades (a 1×1 reduce beside a 5×5 block): log there; times, bytes and fractions read
    # better linear (on a log scale nearly every block of a timed GoogLeNet came out dark).
    log = quantity in LOG_SCALE and bool(positive) and max(positive) > 100 * min(positive)
    if log:
        lo = min(positive)
    elif quantity != "receptive_field":
        lo = min(lo, 0.0)
    return Legend(QUANTITIES[quantity], lo, hi, log, note, quantity)


def _inference_nodes(graph: BlockGraph) -> list:
    return [n for n in graph.nodes() if not n.training_only and n.kind != "input"]


def static_overlay(quantity: str, graph: BlockGraph, trace: ShapeTrace) -> Overlay:
    """Parameters, multiply-adds, activation memory or receptive field of every node, from the trace."""
    if quantity not in STATIC:
        raise ValueError(f"{quantity!r} is not read from the shape trace")
    h, w = trace.input_shape[2:]
    values: dict[str, float] = {}
    for n in _inference_nodes(graph):
        s = trace.nodes.get(n.name)
        if s is None or s.output_shape is None:
            continue
        if quantity == "params":
            values[n.name] = s.params
        elif quantity == "macs":
            values[n.name] = s.macs
        elif quantity == "memory":
            values[n.name] = s.activation_bytes
        else:  # the larger side of the receptive field; a node after global pooling sees the whole input
            rf = s.receptive_field
            values[n.name] = max(h, w) if rf is None else max(rf)
    return Overlay(quantity, values, make_legend(quantity, values, f"at {h}×{w}"))


def image_overlay(quantity: str, capture) -> Overlay:
    """The image's activation energy (sum of squares of the node's output) or fraction of zeros per node."""
    import torch

    if quantity not in IMAGE:
        raise ValueError(f"{quantity!r} is not read from an image's capture")
    values: dict[str, float] = {}
    with torch.no_grad():
        for name, t in capture.outputs.items():
            t = t.float()
            if quantity == "energy":
                values[name] = float(t.square().sum())
            else:
                values[name] = float((t == 0).sum()) / max(1, t.numel())
    return Overlay(quantity, values, make_legend(quantity, values, "the image on screen"))


def attribution_overlay(evidence, categories: Sequence[str] | None = None) -> Overlay:
    """Each block's share of the target's evidence (|gradient × activation| at its branches' outputs,
    summed over all blocks), from the image's `BranchEvidence`; `categories`: the model's class names."""
    from explorer.core.classify.results import category

    values = evidence.block_shares()
    note = f"|gradient × activation| for {category(categories or (), evidence.target)}"
    return Overlay("attribution", values, make_legend("attribution", values, note))


def knockout_overlay(effects, categories: Sequence[str] | None = None) -> Overlay:
    """Each block's largest drop in the target's probability when one of its branches is knocked out on its own
    (0 where no branch's loss lowers it), from the image's `BranchEffects`; `categories`: the class names."""
    from explorer.core.classify.results import category

    values: dict[str, float] = {}
    for e in effects.effects:
        values[e.block] = max(values.get(e.block, 0.0), -e.delta_prob)
    note = f"largest drop in p({category(categories or (), effects.target)}) with one branch off ({effects.mode})"
    return Overlay("knockout", values, make_legend("knockout", values, note))


# -- measured time per block ----------------------------------------------------------------


@dataclass(frozen=True)
class BlockTimes:
    """Seconds per node over `repeats` timed forwards: the samples, their medians and interquartile ranges."""

    model: str
    device: str
    input_shape: tuple[int, ...]
    samples: dict[str, list[float]]
    warmup: int
    repeats: int
    forward_seconds: list[float]  # each timed forward, whole

    @property
    def median(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.samples.items()}

    @property
    def spread(self) -> dict[str, float]:
        """The interquartile range of each node's samples (0 with fewer than two)."""
        out = {}
        for k, v in self.samples.items():
            if len(v) < 2:
                out[k] = 0.0
            else:
                q = statistics.quantiles(v, n=4, method="inclusive")
                out[k] = q[2] - q[0]
        return out

    def overlay(self) -> Overlay:
        med = self.median
        h, w = self.input_shape[-2:]
        note = f"median of {self.repeats} forwards on {self.device} at {h}×{w}"
        return Overlay("time", med, make_legend("time", med, note), self.spread)


def _timed_modules(module, graph: BlockGraph) -> dict[str, Any]:
    """Each inference node's module (nodes that are functions, not modules, are not timed)."""
    out = {}
    for n in _inference_nodes(graph):
        try:
            out[n.name] = module.get_submodule(n.name)
        except AttributeError:
            continue
    return out


def time_blocks(module, graph: BlockGraph, x, *, warmup: int = 2, repeats: int = 5,
                cancel: CancelToken | None = None, progress: Callable[[int, int | None], None] | None = None,
                clock: Callable[[], float] = time.perf_counter) -> BlockTimes:
    """Time every node's module of `module` (a plain network whose module names the block graph's nodes
    are) on `x`'s device: `warmup` untimed forwards, then `repeats` timed ones. Hooks time only the
    calling thread's forwards, so another thread running the same module is not counted. `clock`: wall
    time by default; `time.thread_time` measures a single-threaded forward's own CPU time, which other
    programs on a busy machine do not inflate."""
    import torch

    mods = _timed_modules(module, graph)
    device = x.device
    cuda = device.type == "cuda"
    me = threading.get_ident()
    state = {"on": False}
    starts: dict[str, list] = {k: [] for k in mods}
    ends: dict[str, list] = {k: [] for k in mods}

    def stamp(into: list) -> None:
        if state["on"] and threading.get_ident() == me:
            if cuda:
                e = torch.cuda.Event(enable_timing=True)
                e.record()
                into.append(e)
            else:
                into.append(clock())

    def pre(name):
        return lambda _m, _inputs: stamp(starts[name])

    def post(name):
        return lambda _m, _inputs, _out: stamp(ends[name])

    handles = []
    for name, m in mods.items():
        handles.append(m.register_forward_pre_hook(pre(name)))
        handles.append(m.register_forward_hook(post(name)))
    samples: dict[str, list[float]] = {k: [] for k in mods}
    forwards: list[float] = []
    total = warmup + repeats
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            for i in range(total):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                timed = i >= warmup
                for k in mods:
                    starts[k].clear()
                    ends[k].clear()
                state["on"] = timed
                if cuda:
                    torch.cuda.synchronize(device)
                t0 = clock()
                module(x)
                if cuda:
                    torch.cuda.synchronize(device)
                t1 = clock()
                state["on"] = False
                if timed:
                    forwards.append(t1 - t0)
                    for k in mods:
                        # a module called more than once per forward (shared) counts every call
                        if cuda:
                            s = sum(a.elapsed_time(b) for a, b in zip(starts[k], ends[k])) / 1e3
                        else:
                            s = sum(b - a for a, b in zip(starts[k], ends[k]))
                        if starts[k]:
                            samples[k].append(s)
                if progress is not None:
                    progress(i + 1, total)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    samples = {k: v for k, v in samples.items() if v}
    return BlockTimes(graph.name, str(device), tuple(x.shape), samples, warmup, repeats, forwards)


def timing_task(module, graph: BlockGraph, size: tuple[int, int], device: str = "cpu", *, warmup: int = 2,
                repeats: int = 5, progress=None, cancel=None) -> BlockTimes:
    """The window's timing job: a private copy of `module` on `device` (hooks never touch the shared
    one), timed at input `size` on a random image."""
    import copy

    import torch

    m = copy.deepcopy(module).to(device)
    x = torch.randn(1, graph.in_channels, *size, device=device)
    return time_blocks(m, graph, x, warmup=warmup, repeats=repeats, cancel=cancel, progress=progress)


@dataclass(frozen=True)
class TimeShare:
    """One row of "where does the time go": a node's measured time and its shares of time and multiply-adds."""

    node: str
    seconds: float
    spread: float
    time_share: float
    macs_share: float


def where_time_goes(times: BlockTimes, trace: ShapeTrace | None) -> list[TimeShare]:
    """Nodes ranked by measured time (slowest first), beside their share of the multiply-adds."""
    med, spr = times.median, times.spread
    total_t = sum(med.values()) or 1.0
    macs = {k: (trace.nodes[k].macs if trace is not None and k in trace.nodes else 0) for k in med}
    total_m = sum(macs.values()) or 1
    rows = [TimeShare(k, v, spr.get(k, 0.0), v / total_t, macs[k] / total_m) for k, v in med.items()]
    return sorted(rows, key=lambda r: -r.seconds)
