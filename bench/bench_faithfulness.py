"""Faithfulness metrics: batched deletion + insertion curves against a per-step loop of single forwards,
and the cost of the model-randomisation sanity check against one map.

Run: .venv/bin/python bench/bench_faithfulness.py [--size 224] [--steps 50] [--repeat N] [--device cpu|cuda|all]
     [--threads N] [--quick]   (--quick, a smoke test: 96×96, 10 steps, IG with 4 steps, one repeat, the CPU only)

For each device (the CPU, and CUDA when available), GoogLeNet with calibrated random weights
(tests/netutil.py: plain random weights let the activations decay into denormal floats, which are
very slow on CPUs and make every curve flat) and one Grad-CAM map of a synthetic picture:
1. deletion + insertion, each with its random-order reference (4 curves of steps + 1 points), as a loop
   of single-image forwards of the plain network (each step's image made from the previous one by
   changing that step's pixels: the naive way, issue 13's reference) against `faithfulness_curves`
   (all curves' images one sequence, shared first/last images once, inference_mode; on a CPU with
   more than one thread two forwards of 9 images at once, each on half of the threads, else 17 per forward)
   on the plain network and on the network the window and the classifier use (`curve_network`: batch
   norms folded, channels-last). The same loop on that network is printed too, so that the share of
   batching and of the network in the ratio can be told apart. So is a further map of the same image,
   whose curves reuse the first map's random-order references (the window and the command line do):
   about half the images; not the target's ratio, which is the first map's. Target on the CPU at 224,
   50 steps: ≥ 5× (naive/ours). These compare like with like: one random order, as the loop; the app reads a
   map against RANDOM_ORDERS of them, whose time is printed beside (the first map of an image classifies
   (1 + RANDOM_ORDERS) / 2 times the images). Every curve is compared with the naive loop's; the largest difference is printed.
2. the sanity check with 5 cascade steps (`sanity_check`: a copy of the model, 5 blocks randomised in
   turn, a map each) vs one map, for Grad-CAM and for Integrated Gradients (16 steps). Target: ≤ 6×.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from explorer.core.attribution.methods import AttributionParams, attribute, baseline_for
from explorer.core.graph.blockgraph import build_block_graph
from explorer.core.graph.capture import CaptureModel
from explorer.core.attribution.faithfulness import (
    CURVE_KINDS,
    RANDOM_ORDERS,
    _random_cells,
    _rank_correlation,
    _centred_ranks,
    cell_order,
    curve_images,
    curve_network,
    curve_layout,
    default_cell,
    faithfulness_curves,
    randomisable_copy,
    randomise_block,
    sanity_blocks,
    sanity_check,
    step_counts,
)
from explorer.core.classify.inference import resolve_device
from explorer.core.model.zoo import get_spec

MODEL = "googlenet"
CAM_BLOCK = "inception5b"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed_side_by_side(fns: dict, device: str, repeat: int) -> tuple[dict[str, float], dict]:
    """Median seconds of each of `fns`, their runs interleaved (one warm-up each first, whose results are
    returned), so that a load that comes and goes on a shared machine weighs on every path alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    first = {}
    for k, fn in fns.items():
        first[k] = fn()
        sync(device)
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}, first


def loop_curves(model, x, heat, target, steps: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The plain way: one forward per step, the image updated in place step by step."""
    h, w = x.shape[-2:]
    cell = default_cell(h, w)
    orders = [cell_order(heat, cell), cell_order(_random_cells((h, w), cell, np.random.default_rng(0)), cell)]
    counts = step_counts(h * w, steps)
    out = {}
    for kind in CURVE_KINDS:
        sub = baseline_for(x, "zero" if kind == "deletion" else "blur")
        start, end = (x, sub) if kind == "deletion" else (sub, x)
        curves = []
        for order in orders:
            img = start.clone()
            flat_img, flat_end = img.view(1, 3, -1), end.reshape(1, 3, -1)
            idx = torch.as_tensor(order, device=x.device)
            scores, done = [], 0
            for n in counts:
                part = idx[done:n]
                flat_img[..., part] = flat_end[..., part]
                done = int(n)
                with torch.no_grad():
                    scores.append(float(torch.softmax(model(img).float(), 1)[0, target]))
            curves.append(np.array(scores))
        out[kind] = (curves[0], curves[1])
    return out


def bench_device(device: str, size: int, steps: int, repeat: int, ig_steps: int = 16,
                 layouts: tuple[tuple[int, int], ...] = ()) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests/ (run as a script)
    from tests.netutil import calibrated_model, synthetic_batch

    resolve_device(device)  # as the app: full float32 on a GPU (TF32 off)
    spec = get_spec(MODEL)
    model = calibrated_model(MODEL).eval().to(device)
    cm = CaptureModel(model, build_block_graph(spec)).to(device)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = ((synthetic_batch(4, size, torch.Generator().manual_seed(3))[3:4] - mean) / std).to(device)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n== {device} ({name}), {MODEL} at {size}×{size}, {steps} steps per curve")
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)[0]
    target = int(probs.argmax())
    print(f"target class {target}, probability {float(probs[target]):.3f}")
    cam = attribute(cm, x, "grad_cam", target, node=CAM_BLOCK).heatmap

    fast = curve_network(model)
    ref = loop_curves(model, x, cam, target, steps)

    def worst(curves) -> float:
        """Largest difference of any point of the four curves from the naive loop's."""
        if isinstance(next(iter(curves.values())), tuple):
            pairs = [(curves[k][o], ref[k][o]) for k in CURVE_KINDS for o in (0, 1)]
        else:
            pairs = [(c, ref[k][o]) for k in CURVE_KINDS
                     for o, c in enumerate((curves[k].scores, curves[k].random_scores))]
        return max(float(np.abs(a - b).max()) for a, b in pairs)

    paths = {
        "loop": lambda: loop_curves(model, x, cam, target, steps),
        "loop_fast": lambda: loop_curves(fast, x, cam, target, steps),
        "ours_plain": lambda: faithfulness_curves(model, x, cam, target, steps=steps, random_orders=1),
        "ours": lambda: faithfulness_curves(fast, x, cam, target, steps=steps, random_orders=1),
        "ours_again": lambda: faithfulness_curves(fast, x, cam, target, steps=steps, random_scores=references),
    }
    references = {k: c.random_runs for k, c in faithfulness_curves(fast, x, cam, target, steps=steps,
                                                                   random_orders=1).items()}
    t, first = timed_side_by_side(paths, device, repeat)
    t_app, _ = timed_side_by_side({"app": lambda: faithfulness_curves(fast, x, cam, target, steps=steps)}, device,
                                  repeat)
    diff = {k: worst(v) for k, v in first.items()}
    images = curve_images(steps, random_orders=1)
    layout = curve_layout(device)
    print(f"deletion+insertion, 4 curves × {steps + 1} points (random references included); median of {repeat}")
    print(f"  naive: per-step loop of single forwards, plain network    {t['loop'] * 1e3:9.1f} ms  "
          f"({4 * (steps + 1)} forwards)")
    print(f"  ours:  batched, folded channels-last network (the app's)  {t['ours'] * 1e3:9.1f} ms  "
          f"({images} images, {layout[1]}/forward, {layout[0]} at once)   ratio  naive/ours {t['loop'] / t['ours']:5.2f}×   (target ≥ 5×)")
    print(f"  ours on the plain network                                 {t['ours_plain'] * 1e3:9.1f} ms  "
          f"naive/this {t['loop'] / t['ours_plain']:5.2f}×")
    print(f"  ours, a further map of the image (random references reused) {t['ours_again'] * 1e3:9.1f} ms  "
          f"({images - len(CURVE_KINDS) * (steps - 1)} images)   naive/this {t['loop'] / t['ours_again']:5.2f}×")
    print(f"  ours with the app's {RANDOM_ORDERS} random orders (first map of an image)   {t_app['app'] * 1e3:9.1f} ms  "
          f"({curve_images(steps)} images)")
    print(f"  the loop on the folded network                            {t['loop_fast'] * 1e3:9.1f} ms  "
          f"batching alone on that network: {t['loop_fast'] / t['ours']:5.2f}×")
    print(f"  largest difference from the naive loop's curves: ours {diff['ours']:.1e}, ours on the plain network "
          f"{diff['ours_plain']:.1e}, loop on the folded network {diff['loop_fast']:.1e} (probabilities; tolerance 1e-3)")
    if max(diff.values()) > 1e-3:
        print("  WARNING: the curves differ from the naive loop's by more than the tolerance")
    if layouts:
        t_b, _ = timed_side_by_side({(n, b): (lambda n=n, b=b: faithfulness_curves(
            fast, x, cam, target, steps=steps, batch_size=b, streams=n)) for n, b in layouts}, device, repeat)
        print("  ours by streams × images per forward: " + ", ".join(
            f"{n}×{b}: {v * 1e3:.0f} ms ({t['loop'] / v:.2f}×)" for (n, b), v in t_b.items()))
    if device == "cpu":
        # The most any path could gain on this CPU: the network's floating-point work at the speed of
        # a large matrix product (the best these cores do), against the naive loop's time.
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(x)
        flops = fc.get_total_flops()
        ceiling = gemm_flops_per_second()
        best = images * flops / ceiling
        print(f"  ceiling: {flops / 1e9:.2f} GFLOP per image, matrix product {ceiling / 1e9:.0f} GFLOP/s on "
              f"{torch.get_num_threads()} threads → {images} images in ≥ {best * 1e3:.0f} ms: naive/best ≤ "
              f"{t['loop'] / best:4.2f}×; ours runs at {images * flops / t['ours'] / 1e9:.0f} GFLOP/s "
              f"({images * flops / t['ours'] / ceiling:.0%} of it)")

    for method, params in (("grad_cam", AttributionParams()),
                           ("integrated_gradients", AttributionParams(ig_steps=ig_steps))):
        kw = dict(node=CAM_BLOCK) if method == "grad_cam" else {}

        def one_map():
            return attribute(cm, x, method, target, params=params, **kw).heatmap

        original = one_map()
        # Interleaved, as the curves: one map and the five of the check under the same load.
        t_pair, _ = timed_side_by_side({
            "map": one_map,
            "sanity": lambda: sanity_check(cm, lambda m: attribute(m, x, method, target, params=params, **kw).heatmap,
                                           k=5, original=original)}, device, repeat)
        t_map, t_sanity = t_pair["map"], t_pair["sanity"]
        name = f"{method} ({params.ig_steps} steps)" if method == "integrated_gradients" else method
        print(f"sanity check, 5 cascade steps, {name}: one map {t_map * 1e3:8.1f} ms   sanity {t_sanity * 1e3:8.1f} ms   "
              f"sanity/map {t_sanity / t_map:5.2f}×   (target ≤ 6×)")
    # What the check adds to its five maps: the copy, the randomisation and the rank correlations.
    parts = {"copy": 0.0, "randomise": 0.0, "correlations": 0.0}
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        clone = randomisable_copy(cm)
        sync(device)
        t1 = time.perf_counter()
        g = torch.Generator(device=device).manual_seed(0)
        for b in sanity_blocks(cm, 5):
            randomise_block(clone, b, g)
        sync(device)
        t2 = time.perf_counter()
        ref = _centred_ranks(np.abs(original))
        for _ in range(5):
            _rank_correlation(ref, np.abs(original))
        t3 = time.perf_counter()
        for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
            parts[k] += v / max(1, repeat)
    print("sanity check's own work (5 steps): " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in parts.items()))


def gemm_flops_per_second(n: int = 2048, repeat: int = 10) -> float:
    """Floating-point operations per second of a large float32 matrix product on the CPU."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n ** 3 * repeat / (time.perf_counter() - t)


def parse_layout(text: str) -> tuple[int, int]:
    """"2x9" → (2, 9): two batches at once of nine images each; "17" → (1, 17)."""
    streams, _, batch = text.lower().replace("×", "x").rpartition("x")
    return int(streams or 1), int(batch)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    p.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: torch's choice)")
    p.add_argument("--layouts", default="", help="also time the curves with these batches at once × images per "
                   "forward (e.g. 1x17,2x9,4x5; B alone means 1xB)")
    p.add_argument("--quick", action="store_true", help="smoke test: 96×96, 10 steps, one repeat, CPU")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.size, args.steps, args.repeat, args.device = 96, 10, 1, "cpu"
    devices = ["cpu"] if args.device == "cpu" else ["cuda"] if args.device == "cuda" else ["cpu"]
    if args.device == "all" and torch.cuda.is_available():
        devices.append("cuda")
    for device in devices:
        bench_device(device, args.size, args.steps, args.repeat, ig_steps=4 if args.quick else 16,
                     layouts=tuple(parse_layout(v) for v in args.layouts.split(",") if v))


if __name__ == "__main__":
    main()
