"""Evidence that an attribution map means something: deletion and insertion curves (Petsiuk et al.,
"RISE", 2018) with a random-order baseline, and the model-randomisation sanity check (Adebayo et al.,
"Sanity Checks for Saliency Maps", 2018).

Deletion removes pixels in the map's order (most important first; they become the image blurred, see
DELETION_SUBSTRATE) and follows the target class's probability: a faithful map makes it fall fast (low area
under the curve). Insertion adds pixels to a blurred image in the same order: the probability should rise fast (high area). The same pixels
taken in several random orders (RANDOM_ORDERS seeded permutations) give the reference each area is read
against: a map is better than random only when its area lies beyond every random order's, by more than
VERDICT_MARGIN (`Curve.better_than_random`); a tie or an overlap is no better than random. Every step of a
curve is one image of a batch, so a 50-step curve costs a few batched forwards instead of 50 single ones; the
random orders' images go through the same batches, once per image (a second map of the image reuses them).

The sanity check re-computes a map on a copy of the model whose top blocks are randomised one after
another (cascade, from the output down) and rank-correlates each map with the original: a map that
stays the same whatever the weights describes the image, not the model, and is flagged.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from explorer.core.cancel import CancelToken, ProgressCallback

if TYPE_CHECKING:
    import torch

    from explorer.core.graph.capture import CaptureModel

#: Curve steps by default: 50 removals (or insertions) of 2 % of the pixels each.
DEFAULT_STEPS = 50
#: Images per forward when computing a curve with one forward at a time (a GPU; a one-thread CPU).
DEFAULT_BATCH = 17
#: On a CPU with more than one thread: CPU_STREAMS forwards at once of CPU_STREAM_BATCH images each, each on
#: an equal share of torch's threads. On 2 cores this took 3.9 s against 4.3 s for one forward of 17 on
#: both (bench/bench_faithfulness.py --layouts): one forward on all threads leaves a core idle in the
#: small late layers and between operations.
CPU_STREAMS = 2
CPU_STREAM_BATCH = 9
#: What replaces deleted pixels by default, in the window and the command line alike: the image blurred, what
#: insertion starts from. RISE's code deletes to zeros after normalisation (the mean colour), but a flat colour
#: keeps the outline of what was removed (the shape of the removed region tells the class: Rong et al., "ROAD",
#: 2022): on the demo's drawn shapes, 30 images of seed 2426 at 50 steps, the object's own mask as the map beat
#: every random order on 13 % of them deleting to the mean colour and 93 % to the image blurred; Grad-CAM at the
#: last block 23 % and 97 %, Integrated Gradients (black baseline) 30 % and 60 % (bench/demo_substrates.py).
DELETION_SUBSTRATE = "blur"
INSERTION_SUBSTRATE = "blur"
#: What deletion can replace pixels with (`faithfulness_curves`' deletion_substrate): "zero", the mean colour
#: (RISE's), or "blur", the image blurred (insertion's start), which takes the removed object's outline with it.
DELETION_SUBSTRATES = ("zero", "blur")
#: The substrates in words, for people: what deleted pixels became, what insertion started from.
SUBSTRATE_NAMES = {"zero": "the mean colour", "blur": "the image blurred"}
#: Random orders a map's curves are read against: seeded permutations of the squares (see cell_order). For one
#: curve, a map whose order says nothing (any order as likely as another) beats all of them with probability
#: 1 / (RANDOM_ORDERS + 1), so a ✓ is a rank test at that level; five make the first map of an image cost three
#: times the forwards of one map and one random order (the next maps reuse them).
RANDOM_ORDERS = 5
#: How far beyond every random order's area a map's must lie to be better than random: the last digit the window
#: shows (areas at three decimals), so that two areas that read the same are never a ✓ (random weights give
#: areas like 0.001 against 0.001).
VERDICT_MARGIN = 1e-3
#: A sanity-check map whose rank correlation with the original stays at or above this after the last
#: randomisation step does not depend on the model's weights enough to be trusted.
SANITY_UNCHANGED = 0.9
CURVE_KINDS = ("deletion", "insertion")


def _auc(fractions: np.ndarray, scores: np.ndarray) -> float:
    """Area under a curve by the trapezoid rule over fractions 0…1."""
    return float(np.sum((scores[1:] + scores[:-1]) * np.diff(fractions)) / 2)


@dataclass(frozen=True)
class Curve:
    """One deletion or insertion curve and its reference: the same pixels in several random orders."""

    kind: str  # "deletion" or "insertion"
    fractions: np.ndarray  # (steps + 1,) share of the pixels removed (deletion) or inserted (insertion)
    scores: np.ndarray  # the target's probability at each fraction, pixels in the map's order
    #: (orders, steps + 1): the same with pixels in each random order (one order may be given as (steps + 1,))
    random_runs: np.ndarray
    #: What deleted pixels became (deletion) or what insertion started from (insertion): a DELETION_SUBSTRATES name
    substrate: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "random_runs", np.atleast_2d(np.asarray(self.random_runs, dtype=np.float64)))

    @property
    def auc(self) -> float:
        return _auc(self.fractions, self.scores)

    @property
    def random_scores(self) -> np.ndarray:
        """The random orders' mean curve (what the window draws as the reference)."""
        return self.random_runs.mean(0)

    @property
    def random_aucs(self) -> np.ndarray:
        """The area of each random order's curve."""
        return np.array([_auc(self.fractions, run) for run in self.random_runs])

    @property
    def random_auc(self) -> float:
        """The random orders' mean area (the area of their mean curve)."""
        return float(self.random_aucs.mean())

    @property
    def random_spread(self) -> tuple[float, float]:
        """The smallest and largest area of the random orders."""
        aucs = self.random_aucs
        return float(aucs.min()), float(aucs.max())

    @property
    def better_than_random(self) -> bool:
        """Deletion: the area lies below every random order's, insertion: above every one, by more than
        VERDICT_MARGIN. A tie, or an area among the random orders', is no better than random."""
        low, high = self.random_spread
        if self.kind == "deletion":
            return self.auc < low - VERDICT_MARGIN
        return self.auc > high + VERDICT_MARGIN

    def to_dict(self) -> dict[str, Any]:
        """`auc`, `random_auc` (the random orders' mean), `curve` and `random_curve` (their mean curve) as before
        several random orders; `random_aucs`, `random_spread` [smallest, largest], the verdict and the substrate
        beside them."""
        low, high = self.random_spread
        return {"auc": round(self.auc, 6), "random_auc": round(self.random_auc, 6), "substrate": self.substrate,
                "random_aucs": [round(float(a), 6) for a in self.random_aucs],
                "random_spread": [round(low, 6), round(high, 6)],
                "better_than_random": self.better_than_random,
                "curve": [round(float(s), 6) for s in self.scores],
                "random_curve": [round(float(s), 6) for s in self.random_scores]}


def default_cell(h: int, w: int) -> int:
    """The side of the square removed as one unit: 1/28 of the shorter side (8 px at 224)."""
    return max(1, round(min(h, w) / 28))


def cell_order(heatmap: np.ndarray, cell: int = 1) -> np.ndarray:
    """Flat pixel indices from the most to the least important, in units of `cell`×`cell` squares
    ranked by their mean value (pixels of one square stay together; ties in reading order).

    Squares, not single pixels: removing single pixels at random riddles the whole image with holes
    after a few steps, which destroys any CNN's evidence faster than removing the most important
    region does, so a pixel-level random order is no reference (observed: random deletion areas
    below the map's for Grad-CAM, whose squares hold contiguous regions)."""
    heat = np.asarray(heatmap, dtype=np.float64)
    heat = np.where(np.isfinite(heat), heat, -np.inf)  # NaN / inf last
    h, w = heat.shape
    ys, xs = np.arange(h) // cell, np.arange(w) // cell
    cells_x = xs[-1] + 1
    cell_of = (ys[:, None] * cells_x + xs[None, :]).ravel()
    n_cells = int(cell_of.max()) + 1
    finite = np.where(np.isfinite(heat), heat, 0.0).ravel()
    sums = np.bincount(cell_of, finite, n_cells)
    counts = np.bincount(cell_of, None, n_cells)
    bad = np.bincount(cell_of, (~np.isfinite(heat)).ravel().astype(np.float64), n_cells) > 0
    means = np.where(bad, -np.inf, sums / counts)
    cell_rank = np.empty(n_cells, dtype=np.int64)
    cell_rank[np.argsort(-means, kind="stable")] = np.arange(n_cells)
    return np.lexsort((np.arange(h * w), cell_rank[cell_of]))


def _random_cells(shape: tuple[int, int], cell: int, rng: np.random.Generator) -> np.ndarray:
    """A map whose `cell`×`cell` squares hold a random permutation: their random order."""
    h, w = shape
    ny, nx = -(-h // cell), -(-w // cell)
    values = rng.permutation(ny * nx).reshape(ny, nx).astype(np.float64)
    return np.repeat(np.repeat(values, cell, 0), cell, 1)[:h, :w]


def step_counts(pixels: int, steps: int) -> np.ndarray:
    """How many pixels are removed (or inserted) at each of the steps + 1 points, 0 to all."""
    return np.round(np.linspace(0, pixels, steps + 1)).astype(np.int64)


def _substrate(x: torch.Tensor, kind: str, deletion: str = DELETION_SUBSTRATE) -> torch.Tensor:
    from explorer.core.attribution.methods import baseline_for

    if deletion not in DELETION_SUBSTRATES:
        raise ValueError(f"unknown deletion substrate {deletion!r}: {' or '.join(DELETION_SUBSTRATES)}")
    return baseline_for(x, deletion if kind == "deletion" else INSERTION_SUBSTRATE)


def curve_scores(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    order: np.ndarray,
    target: int,
    kind: str,
    *,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH,
    substrate: torch.Tensor | None = None,
    tick: Callable[[], None] | None = None,
) -> np.ndarray:
    """The target's probability at each step of a deletion or insertion in pixel `order`.

    Step i's image is built from a mask (pixel rank < count_i) in one `where`, so the images of a
    chunk of `batch_size` steps are made and classified together. `tick` runs before each forward
    (progress and cancellation).
    """
    import torch

    if kind not in CURVE_KINDS:
        raise ValueError(f"unknown curve {kind!r}: deletion or insertion")
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError("one image at a time: x must be (1, 3, H, W)")
    h, w = x.shape[-2:]
    if len(order) != h * w:
        raise ValueError(f"the pixel order has {len(order)} pixels, the image {h}×{w}")
    x = x.detach()
    other = (_substrate(x, kind) if substrate is None else substrate).detach()
    # Deletion turns pixels of x into the substrate; insertion turns pixels of the substrate into x.
    start, end = (x, other) if kind == "deletion" else (other, x)
    rank = torch.empty(h * w, dtype=torch.int64, device=x.device)
    rank[torch.as_tensor(order, device=x.device)] = torch.arange(h * w, device=x.device)
    rank = rank.view(1, 1, h, w)
    counts = torch.as_tensor(step_counts(h * w, steps), device=x.device).view(-1, 1, 1, 1)
    scores = []
    with torch.no_grad():
        for i in range(0, len(counts), batch_size):
            if tick is not None:
                tick()
            changed = rank < counts[i : i + batch_size]  # (b, 1, H, W)
            images = torch.where(changed, end, start)
            probs = torch.softmax(model(images).float(), dim=1)[:, target]
            scores.append(probs.cpu())
    return torch.cat(scores).numpy().astype(np.float64)


def curve_images(steps: int = DEFAULT_STEPS, kinds: Sequence[str] = CURVE_KINDS,
                 random_orders: int = RANDOM_ORDERS) -> int:
    """Distinct images the curves of `kinds` (each with `random_orders` random references) classify: the orders
    of a curve share their first and last image, and deletion's first image (the picture itself) is
    insertion's last."""
    ends = {"deletion": ("image", "deletion"), "insertion": ("insertion", "image")}
    return (1 + random_orders) * len(kinds) * (steps - 1) + len({e for k in kinds for e in ends[k]})


def curve_forwards(steps: int = DEFAULT_STEPS, batch_size: int = DEFAULT_BATCH,
                   kinds: Sequence[str] = CURVE_KINDS, random_orders: int = RANDOM_ORDERS) -> int:
    """Batched forwards `faithfulness_curves` takes for `kinds`."""
    return math.ceil(curve_images(steps, kinds, random_orders) / batch_size)


def curve_network(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of `module` for the curves' forwards, as the classifier optimises its own: batch norms folded
    into the convolutions and channels-last weights. The curves need no gradients, and on the CPU these
    forwards take about half the time of the plain network's (bench/bench_faithfulness.py)."""
    import torch

    from explorer.core.classify.inference import fold_batch_norms

    return fold_batch_norms(copy.deepcopy(module).eval()).to(memory_format=torch.channels_last)


def curve_layout(device) -> tuple[int, int]:
    """(forwards at once, images per forward) for the curves on `device` (see CPU_STREAMS)."""
    import torch

    if torch.device(device).type == "cpu" and torch.get_num_threads() > 1:
        return CPU_STREAMS, CPU_STREAM_BATCH
    return 1, DEFAULT_BATCH


def _in_streams(work: Callable[[int], None], total: int, streams: int) -> None:
    """work(0) … work(total - 1) on `streams` threads, each with an equal share of torch's CPU threads;
    the first exception (a cancel among them) is raised here once every thread has stopped.

    torch.set_num_threads sets the calling thread's OpenMP team and torch's default for threads that
    run their first operation later. Each stream sets its share, then the default goes back to the full
    count before any stream starts work: a thread first used meanwhile (another job's) gets all of them.
    """
    import torch

    threads = torch.get_num_threads()
    per = max(1, threads // streams)
    queue = iter(range(total))
    lock = threading.Lock()
    errors: list[BaseException] = []
    ready = threading.Barrier(streams + 1)
    go = threading.Event()

    def run() -> None:
        torch.get_num_threads()  # torch's once-per-thread set-up, from the default: before setting ours
        torch.set_num_threads(per)  # this thread's own OpenMP team
        ready.wait()
        go.wait()
        while not errors:
            with lock:
                i = next(queue, None)
            if i is None:
                return
            try:
                work(i)
            except BaseException as e:  # noqa: BLE001 - re-raised by the caller's thread
                errors.append(e)

    workers = [threading.Thread(target=run, name=f"curves-{k}", daemon=True) for k in range(streams)]
    try:
        for t in workers:
            t.start()
        ready.wait()
    finally:
        torch.set_num_threads(threads)  # the default for threads started later, as it was
        go.set()
    for t in workers:
        t.join()
    if errors:
        raise errors[0]


def faithfulness_curves(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    heatmap: np.ndarray,
    target: int,
    *,
    kinds: Sequence[str] = CURVE_KINDS,
    steps: int = DEFAULT_STEPS,
    batch_size: int | None = None,
    cell: int | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    streams: int | None = None,
    random_scores: Mapping[str, np.ndarray] | None = None,
    random_orders: int = RANDOM_ORDERS,
    deletion_substrate: str = DELETION_SUBSTRATE,
) -> dict[str, Curve]:
    """Deletion and/or insertion curves of `heatmap` (H, W, at x's size) for class `target`, each
    with `random_orders` random-order references (seeded permutations, drawn one after another from
    `seed`, shared by both curves). Pixels go in `cell`-sized squares (default_cell: 8 px at 224; see
    cell_order). Deleted pixels become `deletion_substrate`'s (see DELETION_SUBSTRATES).

    All curves' step images form one sequence, cut into batches of `batch_size`; an image two curves
    share (their first and last ones: see curve_images) is classified once. `streams` batches are
    classified at once, each on its own thread with an equal share of torch's CPU threads; both default
    to curve_layout's choice for x's device. Progress counts batched forwards; `cancel` is checked
    before each.

    `random_scores`: random-order references of an earlier call for the same image, model, target,
    steps, cell, seed and deletion substrate (its Curve.random_runs by kind: (orders, steps + 1), or one
    order's (steps + 1,)), used in place of `random_orders` new ones. The random orders do not depend on
    the map, so they are the same for every map of the image: reused, their images are not classified again
    (a second map's curves take 1 / (1 + random_orders) of the forwards).
    """
    import torch

    for kind in kinds:
        if kind not in CURVE_KINDS:
            raise ValueError(f"unknown curve {kind!r}: deletion or insertion")
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError("one image at a time: x must be (1, 3, H, W)")
    heatmap = np.asarray(heatmap)
    if heatmap.shape != tuple(x.shape[-2:]):
        raise ValueError(f"the map is {heatmap.shape}, the image {tuple(x.shape[-2:])}")
    if random_orders < 1:
        raise ValueError("a curve needs at least one random order to be read against")
    cell = default_cell(*heatmap.shape) if cell is None else cell
    known = _known_references(random_scores, kinds, steps)
    _substrate(x, "deletion", deletion_substrate)  # a substrate that cannot be made: before any work
    rng = np.random.default_rng(seed)
    orders = [cell_order(heatmap, cell)]
    if any(kind not in known for kind in kinds):
        orders += [cell_order(_random_cells(heatmap.shape, cell, rng), cell) for _ in range(random_orders)]
    if cancel is not None:
        cancel.raise_if_cancelled()
    if isinstance(model, torch.nn.Module):
        model.eval()
    x = x.detach()
    entries, where = _curve_stream(x, kinds, orders, steps, known, deletion_substrate)
    default_streams, default_batch = curve_layout(x.device)
    batch_size = default_batch if batch_size is None else max(1, batch_size)
    streams = default_streams if streams is None else max(1, streams)
    flat = _classify_stream(model, entries, target, batch_size, streams, progress, cancel)
    fractions = np.linspace(0.0, 1.0, steps + 1)

    def points(kind: str, o: int) -> np.ndarray:
        return flat[[where[(kind, o, i)] for i in range(steps + 1)]]

    def runs(kind: str) -> np.ndarray:
        if kind in known:
            return known[kind].copy()
        return np.stack([points(kind, o) for o in range(1, len(orders))])

    substrates = {"deletion": deletion_substrate, "insertion": INSERTION_SUBSTRATE}
    return {kind: Curve(kind, fractions, points(kind, 0), runs(kind), substrates[kind]) for kind in kinds}


def _known_references(random_scores: Mapping[str, np.ndarray] | None, kinds: Sequence[str],
                      steps: int) -> dict[str, np.ndarray]:
    """The given random-order references of the curves asked for, (orders, steps + 1) each, checked against the
    curves' length."""
    known = {k: np.atleast_2d(np.asarray(v, dtype=np.float64)) for k, v in (random_scores or {}).items()
             if k in kinds}
    for kind, given in known.items():
        if given.ndim != 2 or given.shape[1] != steps + 1 or given.shape[0] < 1:
            raise ValueError(f"the {kind} reference has {given.shape[-1]} points, the curve {steps + 1}")
    return known


def _curve_stream(x: torch.Tensor, kinds: Sequence[str], orders: Sequence[np.ndarray], steps: int,
                  known: Mapping[str, np.ndarray], deletion_substrate: str = DELETION_SUBSTRATE
                  ) -> tuple[list, dict[tuple[str, int, int], int]]:
    """The images every curve needs, each once: (entries, where).

    An entry is an image to classify, described as (start, end, rank, count) (pixels of rank below
    count taken from `end`, the rest from `start`) or, for the shared ends, the whole image itself;
    `where[(curve, order, step)]` is its place in the stream. Order 0 is the map's, the others the random
    ones, left out for a curve whose references are `known`."""
    import torch

    h, w = x.shape[-2:]
    counts = step_counts(h * w, steps)
    ends = {"image": x}
    entries: list = []
    where: dict[tuple[str, int, int], int] = {}
    named: dict[str, int] = {}

    def place(name: str) -> int:
        if name not in named:
            named[name] = len(entries)
            entries.append(ends[name])
        return named[name]

    for kind in kinds:
        ends[kind] = _substrate(x, kind, deletion_substrate)
        start, end = ("image", kind) if kind == "deletion" else (kind, "image")
        for o, order in enumerate(orders):
            if o >= 1 and kind in known:
                continue
            rank = torch.empty(h * w, dtype=torch.int64, device=x.device)
            rank[torch.as_tensor(order, device=x.device)] = torch.arange(h * w, device=x.device)
            rank = rank.view(1, 1, h, w)
            where[(kind, o, 0)] = place(start)
            for i in range(1, steps):
                where[(kind, o, i)] = len(entries)
                entries.append((ends[start], ends[end], rank, int(counts[i])))
            where[(kind, o, steps)] = place(end)
    return entries, where


def _classify_stream(model: Callable[[torch.Tensor], torch.Tensor], entries: list, target: int, batch_size: int,
                     streams: int, progress: ProgressCallback | None, cancel: CancelToken | None) -> np.ndarray:
    """The target's probability for every entry of a curve stream (see _curve_stream), in batches of
    `batch_size` classified `streams` at a time. Progress counts batches; a cancel (checked before each
    batch and once after the last) leaves no result."""
    import torch

    batches = [entries[i : i + batch_size] for i in range(0, len(entries), batch_size)]
    total = len(batches)
    scores: list = [None] * total
    lock = threading.Lock()
    done = 0

    def classify(i: int) -> None:
        nonlocal done
        with lock:  # one count and one cancel check at a time: nothing is reported after a cancel
            if cancel is not None:
                cancel.raise_if_cancelled()
            done += 1
            if progress is not None:
                progress(done, total)
        with torch.inference_mode():
            images = torch.cat([e if isinstance(e, torch.Tensor) else torch.where(e[2] < e[3], e[1], e[0])
                                for e in batches[i]])
            scores[i] = torch.softmax(model(images).float(), dim=1)[:, target].cpu()

    if streams == 1 or total == 1:
        for i in range(total):
            classify(i)
    else:
        _in_streams(classify, total, streams)
    if cancel is not None:  # asked during the last forward: no curves
        cancel.raise_if_cancelled()
    return torch.cat(scores).numpy().astype(np.float64)


# ---------------------------------------------------------------- sanity check


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1…n of `values` (flattened), ties sharing their average rank (as scipy's rankdata)."""
    a = np.asarray(values, dtype=np.float64).ravel()
    sorter = np.argsort(a)  # any order among equal values: they share one rank
    s = a[sorter]
    first = np.empty(a.size, dtype=bool)  # where each run of equal values starts
    first[:1] = True
    np.not_equal(s[1:], s[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], a.size]
    # A run covering sorted positions [lo, hi) has ranks lo+1 … hi: its average is (lo + hi + 1) / 2.
    ranks = np.empty(a.size)
    ranks[sorter] = np.repeat(0.5 * (starts + ends + 1), ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (Pearson's of their ranks); NaN if one is constant."""
    return _rank_correlation(_centred_ranks(a), b)


def _centred_ranks(a: np.ndarray) -> np.ndarray:
    r = rankdata(a)
    return r - r.mean()


def _rank_correlation(ra: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ of a map whose centred ranks are `ra` (ranked once for a whole sanity check) and `b`."""
    rb = _centred_ranks(b)
    if ra.size != rb.size:
        raise ValueError("the maps differ in size")
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denom if denom > 0 else math.nan


@dataclass(frozen=True)
class SanityCheck:
    """Maps with the top blocks randomised in cascade, and their rank correlation with the original."""

    blocks: list[str]  # randomised in this order: after step i, blocks[0..i] are all random
    correlations: list[float]  # Spearman's ρ of |map| with the original's, one per step
    maps: list[np.ndarray] = field(repr=False)  # the map at each step

    @property
    def flagged(self) -> bool:
        """The map barely changed with the weights: it does not show what the model learned."""
        last = self.correlations[-1] if self.correlations else math.nan
        return math.isfinite(last) and last >= SANITY_UNCHANGED

    def to_dict(self) -> dict[str, Any]:
        return {"blocks": self.blocks,
                "correlations": [None if not math.isfinite(c) else round(c, 6) for c in self.correlations],
                "flagged": self.flagged}


def _rho_text(check: SanityCheck) -> str:
    last = check.correlations[-1] if check.correlations else math.nan
    return "ρ undefined" if not math.isfinite(last) else f"ρ {last:.2f}"


def sanity_verdict(check: SanityCheck, learned: bool) -> str:
    """The sanity check in a sentence. Only a network with `learned` weights can pass it: with random weights a map
    that changes as blocks are randomised again depends on nothing learned, and is never said to."""
    rho = _rho_text(check)
    if check.flagged:
        return (f"unchanged ({rho} after {len(check.blocks)} blocks randomised): the map shows the image, not what "
                "the model learned")
    if learned:
        return f"passes ({rho} after {len(check.blocks)} blocks randomised): the map depends on the learned weights"
    return (f"changes ({rho} after {len(check.blocks)} blocks randomised), but the weights were random to begin "
            "with: there is nothing learned for the map to depend on")


def randomisable_copy(model: CaptureModel) -> CaptureModel:
    """A copy of a capture model for the sanity check to randomise while the original goes on serving
    other views (another thread may be running it). Its modules, probes and hooks are its own; its
    weights are new Parameter objects over the original's storage (no copy: `randomise_block`
    replaces a block's tensors, never writes into them, and gradients gather on the copy's own
    Parameters), and the buffers are shared (read only in eval mode)."""
    import threading

    import torch

    # A thread-local cannot be copied: the copy gets a fresh one (the memo maps the original's to it).
    memo: dict[int, Any] = {id(model._local): threading.local()}
    for p in model.parameters():
        memo[id(p)] = torch.nn.Parameter(p.detach(), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = b
    clone = copy.deepcopy(model, memo=memo)
    # The probes' capture hooks were copied by reference to the original's closures: drop them (the
    # copy only attributes; captum and pytorch-grad-cam add their own hooks when they run).
    for probe in clone.probes.values():
        probe._forward_hooks.clear()
    return clone


def block_parameters(model: CaptureModel, block: str) -> list:
    """The parameters of `block` in the traced network (its submodule of the same name)."""
    try:
        sub = model.gm.get_submodule(block)
    except AttributeError:
        raise ValueError(f"no weights found for block {block}") from None
    params = list(sub.parameters())
    if not params:
        raise ValueError(f"block {block} has no weights to randomise")
    return params


def randomise_block(model: CaptureModel, block: str, generator: torch.Generator) -> None:
    """Replace every weight of `block` with Gaussian noise of that tensor's own mean and standard
    deviation (batch-norm statistics are kept): what was learned is gone while the activations keep
    their scale, so later layers neither saturate nor go silent. The block's Parameters are replaced
    by new ones, not written into: a `randomisable_copy` shares its weights' storage with the
    original."""
    import torch

    block_parameters(model, block)  # a clear error when the block has none
    sub = model.gm.get_submodule(block)
    with torch.no_grad():
        for name, p in list(sub.named_parameters()):
            mean, std = float(p.mean()), float(p.std()) if p.numel() > 1 else 0.0  # std_mean is slower
            new = torch.empty(p.shape, dtype=p.dtype, device=generator.device).normal_(
                mean, std if std > 0 else 1.0, generator=generator).to(p.device)
            if p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous():
                new = new.contiguous(memory_format=torch.channels_last)
            owner, _, leaf = name.rpartition(".")
            setattr(sub.get_submodule(owner) if owner else sub, leaf,
                    torch.nn.Parameter(new, requires_grad=p.requires_grad))


def sanity_blocks(model: CaptureModel, k: int) -> list[str]:
    """The top `k` blocks, nearest the output first (the cascade's order)."""
    blocks = list(model.block_branches)
    if not blocks:
        raise ValueError("this model has no blocks to randomise")
    return blocks[::-1][: max(1, k)]


def sanity_check(
    model: CaptureModel,
    explain: Callable[[CaptureModel], np.ndarray],
    *,
    k: int = 5,
    original: np.ndarray | None = None,
    blocks: list[str] | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> SanityCheck:
    """Cascade randomisation: `explain(m)` (a map for the image, as computed on model `m`) on a copy of
    `model` whose top `k` blocks (or `blocks`) are randomised one more at each step.

    `original` is the map on the trained model (computed here when not given). Correlations are
    on absolute values, as Adebayo et al. report them: a map whose sign flips still shows the same
    places. Progress counts maps; `cancel` is checked between them.
    """
    import torch

    blocks = blocks if blocks is not None else sanity_blocks(model, k)
    total = len(blocks) + (original is None)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    if cancel is not None:
        cancel.raise_if_cancelled()
    if original is None:
        original = explain(model)
        step()
    for b in blocks:  # fail before any work when a block's weights cannot be found
        block_parameters(model, b)
    clone = randomisable_copy(model)
    clone.eval()
    # The noise is drawn where the weights are (a GPU draws millions of numbers in microseconds).
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    ref = _centred_ranks(np.abs(np.asarray(original, dtype=np.float64)))
    maps, correlations = [], []
    for b in blocks:
        if cancel is not None:
            cancel.raise_if_cancelled()
        randomise_block(clone, b, g)
        m = np.asarray(explain(clone))
        maps.append(m)
        correlations.append(_rank_correlation(ref, np.abs(m.astype(np.float64))))
        step()
    return SanityCheck(list(blocks), correlations, maps)


# ---------------------------------------------------------------- ROAD

#: Percentiles of ROAD's thresholds (pytorch-grad-cam's default: 10 … 90).
ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


@dataclass(frozen=True)
class RoadScore:
    """ROAD (Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods",
    2022): the change of the target's probability when the most (MoRF) or least (LeRF) relevant
    pixels are removed by noisy linear imputation, which leaks no shape of the removed region to
    the model; averaged over the removal percentiles."""

    morf: float  # mean probability change removing the most relevant first (more negative: better)
    lerf: float  # the same removing the least relevant first (nearer 0: better)

    @property
    def combined(self) -> float:
        """(LeRF − MoRF) / 2, pytorch-grad-cam's ROADCombined: higher is better."""
        return (self.lerf - self.morf) / 2

    def to_dict(self) -> dict[str, float]:
        return {"morf": round(self.morf, 6), "lerf": round(self.lerf, 6), "combined": round(self.combined, 6)}


def road_score(model, x: torch.Tensor, heatmap: np.ndarray, target: int, *,
               percentiles: Sequence[int] = ROAD_PERCENTILES, seed: int = 0) -> RoadScore:
    """ROAD with pytorch-grad-cam's implementation (`pytorch_grad_cam.metrics.road`) on the target's
    softmax probability. Its imputer solves a sparse system per percentile on the CPU (scipy) and
    adds seeded noise, so one score costs 2 × len(percentiles) solves and twice as many forwards."""
    import torch
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    cams = np.asarray(heatmap, dtype=np.float32)[None]
    targets = [ClassifierOutputSoftmaxTarget(target)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        morf = ROADMostRelevantFirstAverage(list(percentiles))(x.detach(), cams, targets, model)
        lerf = ROADLeastRelevantFirstAverage(list(percentiles))(x.detach(), cams, targets, model)
    return RoadScore(float(np.ravel(morf)[0]), float(np.ravel(lerf)[0]))


# ---------------------------------------------------------------- the window's record of a map


@dataclass(frozen=True)
class AttributionRecord:
    """One map computed for the image on screen and the evidence gathered for it so far: a row of the
    window's methods table (the window keeps them in `ExplorerState.attributions`)."""

    result: Any = field(repr=False)  # the AttributionResult
    seconds: float  # the map's computing time
    curves: dict[str, Curve] | None = None  # deletion and insertion, once computed
    curves_seconds: float | None = None
    sanity: SanityCheck | None = None  # the cascade randomisation, once computed
    sanity_seconds: float | None = None
    metrics: dict[str, Any] | None = None  # issue 27's metrics (metrics.MetricScore by name), once computed
    metrics_seconds: float | None = None

    @property
    def key(self) -> tuple:
        """What makes two maps the same row: method, layer (block or branch) and target class."""
        return (self.result.method, self.result.layer, self.result.target)

    def verdict(self, learned: bool = True) -> str:
        """The sanity check in a few words ('' before it ran); `learned`: the network's weights were learned (a
        map of random weights that changes with them "changes", it does not pass: see sanity_verdict)."""
        if self.sanity is None:
            return ""
        rho = _rho_text(self.sanity)
        if self.sanity.flagged:
            return f"unchanged ({rho})"
        return f"passes ({rho})" if learned else f"changes ({rho}), random weights"


def with_record(records: Sequence[AttributionRecord], record: AttributionRecord) -> tuple[AttributionRecord, ...]:
    """`records` with `record` in place of the one with its key (or added at the end)."""
    out = list(records)
    for i, r in enumerate(out):
        if r.key == record.key:
            out[i] = record
            return tuple(out)
    return (*out, record)


def random_references(records, result, steps: int, deletion_substrate: str = DELETION_SUBSTRATE) -> dict | None:
    """The random orders' curves already computed for the image and `result`'s target (every map of the image
    shares them; the records go with the image and the model), if any with `steps` steps and deletion to
    `deletion_substrate`: Curve.random_runs by kind, for faithfulness_curves' `random_scores`."""
    substrates = {"deletion": deletion_substrate, "insertion": INSERTION_SUBSTRATE}
    for rec in records:
        curves = rec.curves or {}
        if (curves and rec.result.target == result.target
                and rec.result.heatmap.shape == result.heatmap.shape
                and all(c.random_runs.shape[1] == steps + 1 and c.substrate == substrates[kind]
                        for kind, c in curves.items())):
            return {kind: c.random_runs for kind, c in curves.items()}
    return None


def map_explainer(x: torch.Tensor, method: str, target: int, **kwargs) -> Callable[[CaptureModel], np.ndarray]:
    """`explain(model)` for `sanity_check`: the map of `method` for `x` on `model` (`attribute`'s kwargs)."""
    from explorer.core.attribution.methods import attribute

    def explain(model: CaptureModel) -> np.ndarray:
        return attribute(model, x, method, target, **kwargs).heatmap

    return explain
