"""The attribution metrics the field trusts since measuring its metrics, each given as an interval and read
against a reference, with a verdict only when the interval clears it (Tomsett et al., AAAI 2020: single numbers
mislead).

- SRG, the symmetric relevance gain (Blücher et al., TMLR 2024): the area between the least-relevant-first and the
  most-relevant-first removal curves, which ranks maps consistently whatever fills the removed pixels. Removal as
  the deletion curve's (faithfulness.py: `cell` squares, DELETION_SUBSTRATE), batched as the curves are; the
  reference is the same SRG of random orders (each order and its reverse), where it has mean 0.
- ROAD (Rong et al., ICML 2022): the target's probability change when the most (MoRF) or least (LeRF) relevant
  pixels are filled by noisy linear imputation, which leaks no shape of the hole; over a few noise seeds, against
  random orders of `cell` squares.
- Smooth MPRT and efficient MPRT (Hedström et al., 2024), next to the cascade: the model fully randomised as Quantus
  randomises it (every layer's own `reset_parameters`). Smooth MPRT: Spearman's ρ of the denoised maps (averaged
  over noisy copies of the image) before and after, read against ρ of two denoisings of the trained model's map (the
  noise alone); efficient MPRT: the relative rise of the map's histogram entropy, read against 0 (a map that
  ignores the weights does not change).
"""

from __future__ import annotations

import copy
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from explorer.core.attribution.faithfulness import (DEFAULT_STEPS, DELETION_SUBSTRATE, RANDOM_ORDERS, ROAD_PERCENTILES,
                                                    _auc, _centred_ranks, _classify_stream, _curve_stream,
                                                    _random_cells, _rank_correlation, cell_order, curve_layout,
                                                    default_cell)
from explorer.core.cancel import CancelToken, ProgressCallback

if TYPE_CHECKING:
    import torch

#: The metrics by name, as `attribute --metrics` takes them.
METRIC_NAMES = ("srg", "road", "smooth_mprt", "efficient_mprt")
#: Noise seeds each noisy metric is computed over: its interval is their smallest to largest value.
NOISE_SEEDS = (0, 1, 2)
#: ROAD's imputation noise (Rong et al.'s, Quantus's and pytorch-grad-cam's 0.01, in network-input units).
ROAD_NOISE = 0.01
#: Random orders ROAD's reference is read against (each costs 2 × len(percentiles) imputations).
ROAD_RANDOM_ORDERS = 3
#: Smooth MPRT's noisy copies per denoised map (the last one the image itself, as Quantus's) and their noise, a
#: share of the image's value range (Hedström et al.'s 0.1; they use 50 copies on ImageNet).
SMOOTH_SAMPLES = 10
SMOOTH_NOISE = 0.1
#: Efficient MPRT's histogram bins (Quantus's default n_bins).
EMPRT_BINS = 100
#: How far an interval must lie beyond its reference for a verdict: the last of the three decimals shown.
MARGIN = 1e-3


@dataclass(frozen=True)
class MetricScore:
    """A metric over seeds (or orders) as an interval, and its reference over random orders (or the noise alone)."""

    name: str
    values: np.ndarray  # the map's score per noise seed
    reference: np.ndarray  # the reference's score per random order or seed
    higher_is_better: bool
    #: What else the metric measured (curves, the parts of a combined score): plain JSON-able values
    detail: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", np.atleast_1d(np.asarray(self.values, dtype=np.float64)))
        object.__setattr__(self, "reference", np.atleast_1d(np.asarray(self.reference, dtype=np.float64)))

    @property
    def interval(self) -> tuple[float, float]:
        return float(self.values.min()), float(self.values.max())

    @property
    def reference_interval(self) -> tuple[float, float]:
        """(nan, nan) when computed without a reference (a benchmark's like-for-like run): then no verdict."""
        if self.reference.size == 0:
            return math.nan, math.nan
        return float(self.reference.min()), float(self.reference.max())

    @property
    def clears_reference(self) -> bool:
        """The whole interval lies beyond the whole reference by more than MARGIN (higher or lower as the metric
        prefers). False says only that the metric did not show the map better than its reference."""
        if self.reference.size == 0 or not (np.isfinite(self.values).all() and np.isfinite(self.reference).all()):
            return False
        if self.higher_is_better:
            return self.interval[0] > self.reference_interval[1] + MARGIN
        return self.interval[1] < self.reference_interval[0] - MARGIN

    def to_dict(self) -> dict[str, Any]:
        def r(v) -> float | None:
            return round(float(v), 6) if math.isfinite(v) else None

        return {"value": r(self.values.mean()), "interval": [r(v) for v in self.interval],
                "values": [r(v) for v in self.values], "reference_interval": [r(v) for v in self.reference_interval],
                "reference": [r(v) for v in self.reference], "higher_is_better": self.higher_is_better,
                "clears_reference": self.clears_reference, **self.detail}


# ---------------------------------------------------------------- SRG


def srg_orders(heatmap: np.ndarray, cell: int, seed: int, random_orders: int) -> list[np.ndarray]:
    """The pixel orders SRG removes in: the map's most-relevant-first and its reverse, then each random order of
    `cell` squares (seeded as the curves' are) and its reverse."""
    rng = np.random.default_rng(seed)
    first = [cell_order(heatmap, cell)]
    first += [cell_order(_random_cells(heatmap.shape, cell, rng), cell) for _ in range(random_orders)]
    return [o for order in first for o in (order, order[::-1].copy())]


def srg(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    heatmap: np.ndarray,
    target: int,
    *,
    steps: int = DEFAULT_STEPS,
    cell: int | None = None,
    seed: int = 0,
    random_orders: int = RANDOM_ORDERS,
    deletion_substrate: str = DELETION_SUBSTRATE,
    batch_size: int | None = None,
    streams: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> MetricScore:
    """SRG of `heatmap` (H, W) for class `target`: AUC(least relevant first) − AUC(most relevant first) of the
    target's probability as `steps` equal shares of the pixels are removed (as the deletion curve removes them);
    higher is better. Its reference: the same for `random_orders` random orders. Every curve's step images go
    through one stream of batched forwards (faithfulness._classify_stream), shared ends classified once."""
    import torch

    heatmap = np.asarray(heatmap)
    if x.dim() != 4 or x.shape[0] != 1 or heatmap.shape != tuple(x.shape[-2:]):
        raise ValueError("one image (1, 3, H, W) and its (H, W) map")
    cell = default_cell(*heatmap.shape) if cell is None else cell
    orders = srg_orders(heatmap, cell, seed, random_orders)
    if isinstance(model, torch.nn.Module):
        model.eval()
    x = x.detach()
    entries, where = _curve_stream(x, ("deletion",), orders, steps, {}, deletion_substrate)
    default_streams, default_batch = curve_layout(x.device)
    flat = _classify_stream(model, entries, target, batch_size or default_batch, streams or default_streams,
                            progress, cancel)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    curves = [flat[[where[("deletion", o, i)] for i in range(steps + 1)]] for o in range(len(orders))]
    gains = [_auc(fractions, curves[2 * k + 1]) - _auc(fractions, curves[2 * k]) for k in range(len(orders) // 2)]
    detail = {"morf_curve": [round(float(v), 6) for v in curves[0]],
              "lerf_curve": [round(float(v), 6) for v in curves[1]], "steps": steps, "substrate": deletion_substrate}
    return MetricScore("srg", [gains[0]], gains[1:], True, detail)


# ---------------------------------------------------------------- ROAD

#: Neighbour weights of the linear imputation (Rong et al.'s; pytorch-grad-cam's and Quantus's alike).
IMPUTATION_WEIGHTS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((0, -1), 1 / 6),
                      ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))


#: Threads the ROAD imputations' sparse solves run on: the cores, at most four.
IMPUTATION_THREADS = min(4, os.cpu_count() or 1)


def linear_imputation(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """`image` (C, H, W) with the pixels outside `known` (H, W) filled so that each is the weighted mean of its
    neighbours (IMPUTATION_WEIGHTS, the image's edge cut off): one sparse linear system for all channels.

    pytorch-grad-cam's NoisyLinearImputer (and Quantus's noisy_linear_imputation) set up the same system, but by
    assigning into a lil_matrix: at 224 × 224 with 90 % removed that took 0.36 s against 0.015 s built here from
    index arrays. The solve keeps SuperLU's default ordering, COLAMD (0.26–0.33 s at 224 × 224 with 90 % removed,
    whatever the map): MMD_AT_PLUS_A, 0.24 s where the removed pixels form blobs, took 367 s where they are scattered
    (a saliency map's pixel order), which held the window's Metrics job for minutes. tests/core/test_metrics.py
    checks the result against both."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    image = np.asarray(image, dtype=np.float64)
    known = np.asarray(known, dtype=bool)
    c, h, w = image.shape
    out = image.copy()
    unknown = np.flatnonzero(~known.ravel())
    if unknown.size == 0:
        return out
    var = np.full(h * w, -1, dtype=np.int64)
    var[unknown] = np.arange(unknown.size)
    r, col = np.divmod(unknown, w)
    flat = image.reshape(c, -1)
    known_flat = known.ravel()
    diag = np.zeros(unknown.size)
    rhs = np.zeros((unknown.size, c))
    rows, cols, vals = [], [], []
    for (dy, dx), weight in IMPUTATION_WEIGHTS:
        rr, cc = r + dy, col + dx
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        diag[inside] += weight
        i = np.flatnonzero(inside)
        j = rr[inside] * w + cc[inside]
        given = known_flat[j]
        np.subtract.at(rhs, i[given], weight * flat[:, j[given]].T)
        rows.append(i[~given])
        cols.append(var[j[~given]])
        vals.append(np.full(int((~given).sum()), weight))
    n = unknown.size
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(-diag)
    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
    solution = splu(a).solve(rhs)
    out.reshape(c, -1)[:, unknown] = solution.T
    return out


def _removal_masks(order: np.ndarray, shape: tuple[int, int], percentages: Sequence[float]) -> list[np.ndarray]:
    """Per percentage p, the pixels kept when the first ⌊H·W·p/100⌋ of `order` are removed (Quantus's count)."""
    h, w = shape
    rank = np.empty(h * w, dtype=np.int64)
    rank[order] = np.arange(h * w)
    rank = rank.reshape(h, w)
    return [rank >= int(h * w * p / 100) for p in percentages]


@dataclass(frozen=True)
class _Imputed:
    """One imputation's noise-free image (C, H, W) and the pixels it filled (its noise goes there)."""

    image: np.ndarray
    filled: np.ndarray


def _road_imputations(image: np.ndarray, orders: list, shape, percentages, progress, cancel) -> dict:
    """(order's index, direction) → the imputed images per percentage; index 0 the map's order, 1… the random
    orders'. The solves run on IMPUTATION_THREADS threads (SuperLU lets go of the GIL: two threads did four solves
    at 224 × 224 in 0.74 s against 1.25 s one after another). Progress counts the imputations."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    plans = [(k, d, known) for k, o in enumerate(orders) for d in ("morf", "lerf")
             for known in _removal_masks(o if d == "morf" else o[::-1].copy(), shape, percentages)]
    results: list[_Imputed | None] = [None] * len(plans)
    with ThreadPoolExecutor(max(1, IMPUTATION_THREADS)) as pool:
        pending = {pool.submit(linear_imputation, image, known): i for i, (_, _, known) in enumerate(plans)}
        try:
            while pending:
                done, _ = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                if cancel is not None:
                    cancel.raise_if_cancelled()
                for f in done:
                    i = pending.pop(f)
                    results[i] = _Imputed(f.result(), ~plans[i][2])
                    if progress is not None:
                        progress(len(plans) - len(pending), len(plans))
        finally:
            for f in pending:
                f.cancel()
    imputed: dict[tuple[int, str], list[_Imputed]] = {}
    for (k, d, _), item in zip(plans, results):
        imputed.setdefault((k, d), []).append(item)
    return imputed


def road(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    heatmap: np.ndarray,
    target: int,
    *,
    percentages: Sequence[float] = ROAD_PERCENTILES,
    noise: float = ROAD_NOISE,
    seeds: Sequence[int] = NOISE_SEEDS,
    random_orders: int = ROAD_RANDOM_ORDERS,
    cell: int | None = None,
    batch_size: int | None = None,
    streams: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> MetricScore:
    """ROAD of `heatmap` for class `target`: the change of the target's probability with the most (MoRF) and the
    least (LeRF) relevant `percentages` of the pixels (one at a time, ranked by the map) filled by noisy linear
    imputation, each averaged over the percentages; combined as pytorch-grad-cam's ROADCombined, (LeRF − MoRF) / 2,
    higher is better. Over `seeds` of the imputation's noise (one solve per mask, its noise drawn per seed), against
    `random_orders` random orders of `cell` squares (order k's noise from seed k). Every image goes through one
    stream of batched forwards; progress counts the imputations, then the forwards."""
    import torch

    heatmap = np.asarray(heatmap)
    if x.dim() != 4 or x.shape[0] != 1 or heatmap.shape != tuple(x.shape[-2:]):
        raise ValueError("one image (1, 3, H, W) and its (H, W) map")
    if not seeds:
        raise ValueError("ROAD needs at least one noise seed")
    cell = default_cell(*heatmap.shape) if cell is None else cell
    image = x.detach()[0].cpu().double().numpy()
    shape = heatmap.shape
    order = cell_order(heatmap, 1)
    rng = np.random.default_rng(seed_of_orders := 10_000 + int(seeds[0]))
    random = [cell_order(_random_cells(shape, cell, rng), cell) for _ in range(random_orders)]
    imputed = _road_imputations(image, [order, *random], shape, percentages, progress, cancel)

    def noisy(item: _Imputed, gen: np.random.Generator) -> torch.Tensor:
        out = item.image.copy()
        out[:, item.filled] += noise * gen.standard_normal((out.shape[0], int(item.filled.sum())))
        return torch.from_numpy(out).to(x.dtype)[None]

    entries = [x.detach().cpu()]
    slots: dict[tuple[int, str, int], list[int]] = {}
    for s in seeds:  # the map's, once per seed
        gen = np.random.default_rng(int(s))
        for d in ("morf", "lerf"):
            slots[(0, d, s)] = [len(entries) + i for i in range(len(percentages))]
            entries += [noisy(item, gen) for item in imputed[(0, d)]]
    for k in range(1, random_orders + 1):
        gen = np.random.default_rng(seed_of_orders + k)
        for d in ("morf", "lerf"):
            slots[(k, d, -1)] = [len(entries) + i for i in range(len(percentages))]
            entries += [noisy(item, gen) for item in imputed[(k, d)]]
    device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else x.device
    entries = [e.to(device) for e in entries]
    if isinstance(model, torch.nn.Module):
        model.eval()
    default_streams, default_batch = curve_layout(device)
    probs = _classify_stream(model, entries, target, batch_size or default_batch, streams or default_streams,
                             None, cancel)
    base = probs[0]

    def change(k: int, d: str, s: int) -> float:
        return float(np.mean(probs[slots[(k, d, s)]] - base))

    morf = np.array([change(0, "morf", s) for s in seeds])
    lerf = np.array([change(0, "lerf", s) for s in seeds])
    ref = np.array([(change(k, "lerf", -1) - change(k, "morf", -1)) / 2 for k in range(1, random_orders + 1)])
    r6 = lambda v: round(float(v), 6)  # noqa: E731
    detail = {"morf": r6(morf.mean()), "lerf": r6(lerf.mean()), "combined": r6(((lerf - morf) / 2).mean()),
              "morf_interval": [r6(morf.min()), r6(morf.max())], "lerf_interval": [r6(lerf.min()), r6(lerf.max())],
              "percentages": [float(p) for p in percentages], "noise": noise,
              "morf_probabilities": [r6(v) for v in probs[slots[(0, "morf", seeds[0])]]],
              "lerf_probabilities": [r6(v) for v in probs[slots[(0, "lerf", seeds[0])]]]}
    return MetricScore("road", (lerf - morf) / 2, ref, True, detail)


# ---------------------------------------------------------------- MPRT

#: explain(model, images (B, 3, H, W)) → maps (B, H, W): what the randomisation metrics re-explain.
Explainer = Callable[[Any, "torch.Tensor"], np.ndarray]


def fully_randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of `model` with every layer that has a `reset_parameters` (convolutions, linear layers, batch norms
    with their statistics) reset, each right after torch.manual_seed(seed + 1): Quantus's randomisation
    (PyTorchModel.get_random_layer_generator), so that the layers end as they do there whatever their order. The
    global generator is restored afterwards; the original is untouched (its weights are copied)."""
    import torch

    memo: dict[int, Any] = {}
    local = getattr(model, "_local", None)
    if local is not None:  # a CaptureModel: a thread-local cannot be copied
        memo[id(local)] = threading.local()
    clone = copy.deepcopy(model, memo)
    for probe in getattr(clone, "probes", {}).values():  # the copied capture hooks point at the original
        probe._forward_hooks.clear()
    with torch.random.fork_rng(devices=[]):
        for _, module in clone.named_modules():
            if hasattr(module, "reset_parameters"):
                torch.manual_seed(seed + 1)
                module.reset_parameters()
    return clone.eval()


def smoothed_map(model, x: torch.Tensor, explain: Explainer, samples: int, noise: float,
                 rs: np.random.RandomState) -> np.ndarray:
    """|mean map| over `samples` copies of `x`: samples − 1 with Gaussian noise of noise × the image's value range
    (drawn from `rs` in Quantus's order), the image itself last; all explained in one batch."""
    import torch

    x64 = x.detach().cpu().double().numpy()
    std = noise * (x64.max() - x64.min())
    eps = rs.randn(samples - 1, *x64.shape[1:]) * std
    batch = np.concatenate([x64 + eps, x64])
    maps = np.asarray(explain(model, torch.from_numpy(batch).to(x.dtype).to(x.device)), dtype=np.float64)
    return np.abs(maps.mean(0))


def smooth_mprt(model, x: torch.Tensor, explain: Explainer, *, samples: int = SMOOTH_SAMPLES,
                noise: float = SMOOTH_NOISE, seeds: Sequence[int] = NOISE_SEEDS,
                cancel: CancelToken | None = None) -> MetricScore:
    """Smooth MPRT: per seed s, Spearman's ρ of the denoised map on `model` with the denoised map on
    fully_randomised(model, s), lower is better; the reference, ρ of two denoisings on `model` (what the noise
    alone leaves). The noise of seed s comes from RandomState(s): the first denoising, the second, the randomised
    one, as Quantus's SmoothMPRT draws them (np.random.seed(s), seed=s, skip_layers=True)."""
    values, reference, flat = [], [], 0
    for s in seeds:
        if cancel is not None:
            cancel.raise_if_cancelled()
        rs = np.random.RandomState(int(s))
        first = _centred_ranks(smoothed_map(model, x, explain, samples, noise, rs))
        again = smoothed_map(model, x, explain, samples, noise, rs)
        random = smoothed_map(fully_randomised(model, int(s)), x, explain, samples, noise, rs)
        reference.append(_rank_correlation(first, again))
        rho = _rank_correlation(first, random)
        if math.isnan(rho) and np.ptp(random) == 0 and first.any():
            # The randomised network's map is flat (a CAM whose every value the ReLU cut): ρ is undefined (Quantus
            # gives NaN), but nothing of the map is left; counted as no correlation.
            rho, flat = 0.0, flat + 1
        values.append(rho)
    return MetricScore("smooth_mprt", values, reference, False,
                       {"samples": samples, "noise": noise, "flat_random_maps": flat})


def discrete_entropy(a: np.ndarray, bins: int = EMPRT_BINS) -> float:
    """The entropy (nats) of `a`'s histogram in `bins` equal bins over its range (Quantus's discrete_entropy)."""
    counts, _ = np.histogram(np.asarray(a, dtype=np.float64).ravel(), bins=bins)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def efficient_mprt(model, x: torch.Tensor, explain: Explainer, *, seeds: Sequence[int] = NOISE_SEEDS,
                   bins: int = EMPRT_BINS, cancel: CancelToken | None = None) -> MetricScore:
    """Efficient MPRT: per randomisation seed s, the relative rise of the map's histogram entropy from `model` to
    fully_randomised(model, s), (H_random − H) / H, higher is better (the map grows more complex without what was
    learned); read against 0, what a map that ignores the weights gives."""
    original = discrete_entropy(np.asarray(explain(model, x))[0], bins)
    values = []
    for s in seeds:
        if cancel is not None:
            cancel.raise_if_cancelled()
        random = discrete_entropy(np.asarray(explain(fully_randomised(model, int(s)), x))[0], bins)
        values.append((random - original) / original if original > 0 else math.nan)
    return MetricScore("efficient_mprt", values, [0.0], True, {"entropy": round(original, 6), "bins": bins})


# ---------------------------------------------------------------- explainers


def method_explainer(method: str, target: int, **kwargs) -> Explainer:
    """explain(model, images) for the randomisation metrics: attribution.methods.attribute's map of `method` for
    each image in turn (`attribute`'s keywords; its methods take one image at a time)."""
    from explorer.core.attribution.methods import attribute

    def explain(model, images: torch.Tensor) -> np.ndarray:
        return np.stack([attribute(model, images[i : i + 1], method, target, **kwargs).heatmap
                         for i in range(images.shape[0])])

    return explain


def edge_control(model, images: torch.Tensor) -> np.ndarray:
    """A control that ignores the model: the Sobel gradient magnitude of each image, summed over its channels. A
    randomisation metric must fail it."""
    import torch

    kx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], dtype=images.dtype,
                      device=images.device)
    kernels = torch.stack([kx, kx.T])[:, None]  # (2, 1, 3, 3)
    c = images.shape[1]
    with torch.no_grad():
        g = torch.nn.functional.conv2d(images.detach().reshape(-1, 1, *images.shape[-2:]), kernels, padding=1)
        mag = g.pow(2).sum(1).sqrt().reshape(images.shape[0], c, *images.shape[-2:]).sum(1)
    return mag.cpu().numpy()


# ---------------------------------------------------------------- verdicts and ranking

#: The metrics as people read their names.
METRIC_LABELS = {"srg": "SRG", "road": "ROAD", "smooth_mprt": "smooth MPRT", "efficient_mprt": "efficient MPRT"}
#: What each metric's reference is, in a few words.
REFERENCE_NAMES = {"srg": "random orders", "road": "random orders", "smooth_mprt": "the noise alone",
                   "efficient_mprt": "a map that ignores the weights"}


def interval_text(lo: float, hi: float) -> str:
    """An interval in three decimals: "[0.380, 0.470]"; one number when both ends show the same ("0.443")."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "—"
    a, b = f"{lo:.3f}", f"{hi:.3f}"
    return a if a == b else f"[{a}, {b}]"


def score_text(score: MetricScore) -> str:
    """The score's mean and its interval over seeds: "0.420 [0.380, 0.470]" ("0.443" when the seeds agree)."""
    lo, hi = score.interval
    mean = float(np.mean(score.values))
    if not math.isfinite(mean):
        return "undefined"
    inside = interval_text(lo, hi)
    return inside if "[" not in inside else f"{mean:.3f} {inside}"


def verdict_text(score: MetricScore) -> str:
    """A verdict only when the interval clears the reference: "✓ beats random" (SRG, ROAD) or "✓ changes with the
    weights" (the MPRTs). Otherwise no verdict, only what was seen: "not distinguishable" where the intervals overlap
    (or there is no reference); where the map's interval lies wholly on the wrong side, "no better than random"
    (SRG, ROAD), "changes less than the noise" (smooth MPRT), "entropy does not rise" (efficient MPRT)."""
    if score.clears_reference:
        return "✓ changes with the weights" if score.name in ("smooth_mprt", "efficient_mprt") else "✓ beats random"
    r_lo, r_hi = score.reference_interval
    lo, hi = score.interval
    if not all(map(math.isfinite, (lo, hi, r_lo, r_hi))):
        return "not distinguishable"
    if (hi < r_lo) if score.higher_is_better else (lo > r_hi):
        return {"smooth_mprt": "changes less than the noise",
                "efficient_mprt": "entropy does not rise"}.get(score.name, "no better than random")
    return "not distinguishable"


def _above(a: MetricScore, b: MetricScore) -> bool | None:
    """Whether `a`'s interval lies wholly beyond `b`'s in the metric's better direction (True), wholly behind it
    (False), or they overlap (None)."""
    (a_lo, a_hi), (b_lo, b_hi) = a.interval, b.interval
    if not all(map(math.isfinite, (a_lo, a_hi, b_lo, b_hi))):
        return None
    if a_lo > b_hi + MARGIN:
        return a.higher_is_better
    if a_hi < b_lo - MARGIN:
        return not a.higher_is_better
    return None


@dataclass(frozen=True)
class Ranking:
    """Methods ranked by the metrics they were all measured on, only where every metric orders them the same way
    with intervals apart; otherwise no order and the reason (`reason`), and where some of the metrics (two or more)
    still order every method alike with intervals apart, that order and those metrics (`agreed`, `agreeing`)."""

    order: tuple[str, ...]  # best first; () when no ranking
    metrics: tuple[str, ...]  # the metrics the ranking (or its refusal) rests on
    reason: str = ""
    agreed: tuple[str, ...] = ()  # without a ranking: the order the `agreeing` metrics share, best first
    agreeing: tuple[str, ...] = ()

    def text(self) -> str:
        if not self.order:
            text = f"No ranking: {self.reason}."
            if self.agreed:
                text += f" {_names(self.agreeing)} alone agree: " + " > ".join(self.agreed) + "."
            return text
        return f"Ranking ({_names(self.metrics)} agree, intervals apart): " + " > ".join(self.order) + "."


def _names(metrics) -> str:
    labels = [METRIC_LABELS.get(m, m) for m in metrics]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def _strict_order(metric: str, labels, verdicts, pairs) -> tuple[str, ...] | None:
    """The labels best first by `metric`, when every pair's intervals are apart on it; else None."""
    if any(verdicts[metric][p] is None for p in pairs):
        return None
    wins = {label: sum(verdicts[metric][(a, b)] == (label == a) for a, b in pairs if label in (a, b))
            for label in labels}
    return tuple(sorted(labels, key=lambda label: -wins[label]))


def rank_methods(scores: dict[str, dict[str, MetricScore]]) -> Ranking:
    """Rank the methods (labels → their scores by metric name) on the metrics every one of them has: a ranking only
    when each metric orders every pair with intervals apart and all metrics give the same order. Otherwise the
    reason, a disagreement first ("SRG puts A first, ROAD puts B first"), else the first overlap; and the largest
    group of two or more metrics that still share one strict order, with it."""
    labels = list(scores)
    if len(labels) < 2:
        return Ranking((), (), "measure the metrics of two maps or more to compare them")
    common = [m for m in METRIC_NAMES if all(m in scores[label] for label in labels)]
    common += sorted(set.intersection(*(set(s) for s in scores.values())) - set(common))
    if not common:
        return Ranking((), (), "the maps share no metric")
    pairs = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1:]]
    verdicts = {m: {(a, b): _above(scores[a][m], scores[b][m]) for a, b in pairs} for m in common}
    orders = {m: _strict_order(m, labels, verdicts, pairs) for m in common}
    if all(o is not None for o in orders.values()) and len(set(orders.values())) == 1:
        return Ranking(orders[common[0]], tuple(common))
    groups: dict[tuple[str, ...], list[str]] = {}
    for m in common:
        if orders[m] is not None:
            groups.setdefault(orders[m], []).append(m)
    agreed, agreeing = max(groups.items(), key=lambda g: len(g[1]), default=((), []))
    partial = dict(agreed=agreed, agreeing=tuple(agreeing)) if len(agreeing) >= 2 else {}
    reason = _disagreement(common, verdicts, scores, pairs) or next(
        f"the intervals of {a} and {b} overlap on {METRIC_LABELS.get(m, m)}"
        for m in common for a, b in pairs if verdicts[m][(a, b)] is None)
    return Ranking((), tuple(common), reason, **partial)


def _best(metric: str, scores: dict[str, dict[str, MetricScore]]) -> str:
    """The label whose interval's middle is best on `metric`."""
    s = {label: float(np.mean(scores[label][metric].interval)) for label in scores}
    higher = next(iter(scores.values()))[metric].higher_is_better
    return (max if higher else min)(s, key=s.get)


def _disagreement(common, verdicts, scores, pairs) -> str:
    """How two metrics contradict each other on a pair whose intervals are apart on both, or ''."""
    for i, m in enumerate(common):
        for n in common[i + 1:]:
            for a, b in pairs:
                x, y = verdicts[m][(a, b)], verdicts[n][(a, b)]
                if x is None or y is None or x == y:
                    continue
                lm, ln = METRIC_LABELS.get(m, m), METRIC_LABELS.get(n, n)
                first_m, first_n = _best(m, scores), _best(n, scores)
                if first_m != first_n:
                    return f"{lm} puts {first_m} first, {ln} puts {first_n} first"
                hi_m, lo_m = (a, b) if x else (b, a)
                return f"{lm} puts {hi_m} above {lo_m}, {ln} puts {lo_m} above {hi_m}"
    return ""
