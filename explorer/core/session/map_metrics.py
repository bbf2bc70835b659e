"""The job that measures the map on screen with issue 27's metrics (explorer.core.attribution.metrics): SRG, ROAD
with noisy linear imputation, smooth MPRT and efficient MPRT, each over its noise seeds and against its reference,
with the counts `attribute --metrics` uses. The session runs it in the lane "images/attribution"
(`Attributions.metrics`); it ends in one `MetricsComputed` for the map's record.

The window keeps the command line's counts (the same seeds and steps). Cost on the 2 shared CPU cores
(load 3.4): the demo model (64 × 64) 3–4 s for Saliency or Grad-CAM, about 15 s for Integrated Gradients, whose smooth
MPRT explains 3 seeds × 3 denoisings × SMOOTH_SAMPLES images (90 maps of 50 steps each); GoogLeNet at 224 × 224 164 s
for Saliency (SRG 36 s, ROAD 7 s, smooth MPRT 115 s, efficient MPRT 6 s) and 99 s for Grad-CAM — with progress, and
Cancel stops it between forwards or maps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from explorer.core.session import events as ev

#: The four metrics' share of the progress bar, in the order they run.
STAGES = ("srg", "road", "smooth_mprt", "efficient_mprt")
UNITS = 100  # progress units per stage


def measure_map(curve_model, gradient_model, x, result, map_kwargs: dict, *, steps: int,
                percentages: Sequence[float] | None = None, samples: int | None = None,
                seeds: Sequence[int] | None = None, progress: Callable | None = None,
                cancel=None) -> ev.MetricsComputed:
    """`result`'s map (an AttributionResult of `x`, made with `map_kwargs`) measured: SRG (`steps` removal steps)
    and ROAD (`percentages`, default ROAD_PERCENTILES) on `curve_model`; smooth MPRT (`samples` noisy copies,
    default SMOOTH_SAMPLES) and efficient MPRT re-explaining with the map's own method on fully randomised copies of
    `gradient_model`; `seeds`: the noise seeds (default NOISE_SEEDS). Progress: UNITS per metric."""
    from explorer.core.attribution import faithfulness as f
    from explorer.core.attribution import metrics as m

    started = time.monotonic()
    seeds = tuple(m.NOISE_SEEDS if seeds is None else seeds)
    percentages = tuple(f.ROAD_PERCENTILES if percentages is None else percentages)
    samples = m.SMOOTH_SAMPLES if samples is None else samples
    heat, target = result.heatmap, result.target

    def stage(name: str, total_calls: int | None = None):
        """progress(done, total) within stage `name`, on the job's scale."""
        base = STAGES.index(name) * UNITS

        def report(done, total=total_calls) -> None:
            if progress is not None:
                progress(base + int(UNITS * done / max(total or 1, 1)), UNITS * len(STAGES))

        return report

    explain = m.method_explainer(result.method, target, **map_kwargs)

    def counted(report) -> m.Explainer:
        """`explain` that reports each call and stops between calls when cancelled."""
        calls = [0]

        def run(model, images):
            if cancel is not None:
                cancel.raise_if_cancelled()
            out = explain(model, images)
            calls[0] += 1
            report(calls[0])
            return out

        return run

    scores = {"srg": m.srg(curve_model, x, heat, target, steps=steps, deletion_substrate=f.DELETION_SUBSTRATE,
                           progress=stage("srg"), cancel=cancel)}
    scores["road"] = m.road(curve_model, x, heat, target, percentages=percentages, seeds=seeds,
                            progress=stage("road"), cancel=cancel)
    scores["smooth_mprt"] = m.smooth_mprt(gradient_model, x, counted(stage("smooth_mprt", 3 * len(seeds))),
                                          samples=samples, seeds=seeds, cancel=cancel)
    scores["efficient_mprt"] = m.efficient_mprt(gradient_model, x, counted(stage("efficient_mprt", 1 + len(seeds))),
                                                seeds=seeds, cancel=cancel)
    key = (result.method, result.layer, result.target)
    return ev.MetricsComputed(key, result, scores, time.monotonic() - started)
