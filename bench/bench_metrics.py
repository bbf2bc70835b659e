"""Issue 27's metrics, ours against Quantus 0.6's in the same run, at the same number of steps.

Run: .venv/bin/python bench/bench_metrics.py [--size 224] [--steps 48] [--repeat N] [--quick]
     [--parts srg,road,mprt] [--road-percentages 20,50,80]
     (--quick, a smoke test: 64×64, 12 steps, 3 ROAD percentages, 4 smoothing copies, one repeat)

GoogLeNet with calibrated random weights (tests/netutil.py) on the CPU, one synthetic picture and its gradient map:
1. SRG: ours (`metrics.srg`: the most- and least-relevant-first curves' images in one stream of batched forwards,
   as the deletion curves are) against Quantus's PixelFlipping run twice (most relevant first on the map, least
   relevant first on its reverse: Quantus has no SRG), both `steps` steps of equal shares into the image blurred.
   Like with like: ours without its random orders, which are timed beside (RANDOM_ORDERS of them). Target ≥ 5×.
2. ROAD: ours (`metrics.road`, one noise seed, no random orders: imputations from index arrays and SuperLU with a
   symmetric ordering, then batched forwards) against Quantus's ROAD, most- and least-relevant first, at the same
   percentages (its colour-image bug worked around as in tests/core/test_metrics.py). Target ≥ 5×.
3. Smooth MPRT (one seed, `samples` copies, original and fully randomised model) and efficient MPRT (one seed)
   against Quantus's SmoothMPRT and EfficientMPRT with skip_layers, both explaining with the gradient (ours one batch
   of the copies, Quantus's captum's one copy at a time). Not curve metrics: no target, the ratio printed.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.core.attribution import metrics as M  # noqa: E402
from explorer.core.attribution.faithfulness import RANDOM_ORDERS, ROAD_PERCENTILES  # noqa: E402
from explorer.core.attribution.methods import baseline_for  # noqa: E402
from bench.bench_cli_classify import matmul_rate  # noqa: E402


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def gradient_batch(model, images: torch.Tensor, target: int) -> np.ndarray:
    """The gradient of the target's logit, summed over the channels, for a batch in one backward (Quantus's
    "Gradient": captum's Saliency without abs)."""
    images = images.detach().clone().requires_grad_(True)
    model(images)[:, target].sum().backward()
    return images.grad.sum(1).detach().numpy()


def main() -> None:
    from tests.netutil import calibrated_model, synthetic_batch

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", default="srg,road,mprt", help="which to measure: srg, road, mprt (default all)")
    ap.add_argument("--road-percentages", dest="road_percentages", default="",
                    help="ROAD's percentages, comma-separated (default the metric's own)")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    percentages = [int(p) for p in a.road_percentages.split(",")] if a.road_percentages else list(ROAD_PERCENTILES)
    if a.quick:
        a.size, a.steps, a.samples, a.repeat, percentages = 64, 12, 4, 1, [25, 50, 75]
    warnings.filterwarnings("ignore")
    model = calibrated_model("googlenet")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (synthetic_batch(4, a.size, torch.Generator().manual_seed(3))[3:4] - mean) / std
    with torch.no_grad():
        target = int(model(x).argmax(1))
    heat = np.abs(gradient_batch(model, x, target)[0])
    heat = heat + 1e-6 * heat.std() * np.random.default_rng(0).random(heat.shape)
    print(f"GoogLeNet (calibrated random weights), {a.size}×{a.size}, CPU, {torch.get_num_threads()} threads, "
          f"best of {a.repeat}")

    if "srg" in parts:
        srg_part(a, model, x, heat, target)
    if "road" in parts:
        road_part(a, model, x, heat, target, percentages)
    if "mprt" in parts:
        mprt_part(a, model, x, target)


def window_copy(model):
    """The network as the window's Metrics job runs it: the classifier's copy, batch norms folded, channels-last."""
    import copy

    from explorer.core.classify.device import fold_batch_norms

    return fold_batch_norms(copy.deepcopy(model)).to(memory_format=torch.channels_last)


def macs_per_image(size: int) -> float:
    """GoogLeNet's multiply-adds for one image of `size`² (the shape trace)."""
    from explorer.core.model.graphs import zoo_block_graph
    from explorer.core.shapes.trace import trace_shapes

    return float(trace_shapes(zoo_block_graph("googlenet"), (size, size)).total_macs)


def srg_part(a, model, x, heat, target) -> None:
    import quantus

    h, w = heat.shape
    sub = baseline_for(x, "blur").numpy().reshape(1, -1)

    def into_blur(arr, indices, **kwargs):
        out = arr.copy()
        for b in range(arr.shape[0]):
            out[b, indices[b]] = sub[b, indices[b]]
        return out

    def quantus_srg():
        curves = []
        for m in (heat, heat.max() - heat):
            pf = quantus.PixelFlipping(features_in_step=3 * h * w // a.steps, normalise=False, abs=False,
                                       perturb_func=into_blur, disable_warnings=True)
            curves.append(pf(model=model, x_batch=x.numpy(), y_batch=np.array([target]), a_batch=m[None, None],
                             softmax=True, device="cpu", channel_first=True)[0])
        return curves

    t_q, _ = best(quantus_srg, a.repeat)
    fast = window_copy(model)
    t_o, _ = best(lambda: M.srg(fast, x, heat, target, steps=a.steps, cell=1, random_orders=0), a.repeat)
    t_p, _ = best(lambda: M.srg(model, x, heat, target, steps=a.steps, cell=1, random_orders=0), a.repeat)
    t_r, _ = best(lambda: M.srg(fast, x, heat, target, steps=a.steps, random_orders=RANDOM_ORDERS), a.repeat)
    floor = 2 * (a.steps + 1) * macs_per_image(a.size) / (matmul_rate(a.quick) / 2)
    print(f"SRG, {a.steps} steps (MoRF + LeRF)")
    print(f"  quantus PixelFlipping ×2  {t_q * 1000:9.0f} ms")
    print(f"  ours metrics.srg          {t_o * 1000:9.0f} ms   (on the model as loaded: {t_p * 1000:.0f} ms; with "
          f"{RANDOM_ORDERS} random orders: {t_r * 1000:.0f} ms)")
    print(f"  ratio  quantus/ours       {t_q / t_o:9.2f}×   (target ≥ 5×; ceiling on this machine, the forwards' "
          f"mult-adds at its matrix-product rate: {t_q / floor:.2f}×, ours {(t_q / t_o) / (t_q / floor):.0%} of it)")


def road_part(a, model, x, heat, target, percentages) -> None:
    import quantus
    from quantus.functions.perturb_func import noisy_linear_imputation

    h, w = heat.shape

    def quantus_road():
        out = []
        for m in (heat, heat.max() - heat):
            def impute(arr, indices, **kwargs):
                return noisy_linear_imputation(arr, np.unique(np.asarray(indices) % (h * w)), noise=0.01)

            road = quantus.ROAD(percentages=percentages, noise=0.01, normalise=False, perturb_func=impute,
                                disable_warnings=True)
            road.a_size = 3 * h * w  # its colour-image bug, worked around (see tests/core/test_metrics.py)
            out.append(road(model=model, x_batch=x.numpy().astype(np.float64), y_batch=np.array([target]),
                            a_batch=m[None, None], device="cpu", channel_first=True))
        return out

    t_q, _ = best(quantus_road, a.repeat)
    t_o, _ = best(lambda: M.road(window_copy(model), x, heat, target, percentages=percentages, seeds=(0,),
                                 random_orders=0),
                  a.repeat)
    image, order = x[0].double().numpy(), M.cell_order(heat, 1)
    t_i, _ = best(lambda: M._road_imputations(image, [order], heat.shape, percentages, None, None), a.repeat)
    print(f"ROAD, {len(percentages)} percentages (MoRF + LeRF, noisy linear imputation)")
    print(f"  quantus ROAD ×2           {t_q * 1000:9.0f} ms")
    print(f"  ours metrics.road         {t_o * 1000:9.0f} ms   (its {2 * len(percentages)} imputations alone: "
          f"{t_i * 1000:.0f} ms, one sparse solve each)")
    print(f"  ratio  quantus/ours       {t_q / t_o:9.2f}×   (target ≥ 5×; ceiling with the same solves and "
          f"forwards for free: {t_q / t_i:.2f}×)")


def mprt_part(a, model, x, target) -> None:
    import quantus

    def explain(m, images):
        return gradient_batch(m, images, target)

    kwargs = dict(model=model, x_batch=x.numpy(), y_batch=np.array([target]), a_batch=None,
                  explain_func=quantus.explain, explain_func_kwargs={"method": "Gradient"}, device="cpu",
                  channel_first=True)
    t_q, _ = best(lambda: quantus.SmoothMPRT(seed=0, nr_samples=a.samples, skip_layers=True,
                                             disable_warnings=True)(**kwargs), a.repeat)
    t_o, _ = best(lambda: M.smooth_mprt(model, x, explain, samples=a.samples, seeds=(0,)), a.repeat)
    print(f"smooth MPRT, {a.samples} copies, one seed")
    print(f"  quantus SmoothMPRT        {t_q * 1000:9.0f} ms")
    print(f"  ours metrics.smooth_mprt  {t_o * 1000:9.0f} ms")
    print(f"  ratio  quantus/ours       {t_q / t_o:9.2f}×")
    t_q, _ = best(lambda: quantus.EfficientMPRT(seed=0, complexity_func_kwargs={"n_bins": 100}, skip_layers=True,
                                                disable_warnings=True)(**kwargs), a.repeat)
    t_o, _ = best(lambda: M.efficient_mprt(model, x, explain, seeds=(0,)), a.repeat)
    print("efficient MPRT, one seed")
    print(f"  quantus EfficientMPRT     {t_q * 1000:9.0f} ms")
    print(f"  ours metrics.efficient_mprt {t_o * 1000:7.0f} ms")
    print(f"  ratio  quantus/ours       {t_q / t_o:9.2f}×")


if __name__ == "__main__":
    main()
