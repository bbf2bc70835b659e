"""Faithfulness metrics: batched deletion + insertion curves against a per-step loop of single forwards,
and the cost of the model-randomisation sanity check against one map.

Run: .venv/bin/python bench/bench_faithfulness.py [--size 224] [--steps 50] [--repeat N] [--device cpu|cuda|all]
     [--quick]   (--quick, a smoke test: 96×96, 10 steps, one repeat, the CPU only)

For each device (the CPU, and CUDA when available), GoogLeNet with random weights (the cost does not
depend on them) and one Grad-CAM map:
1. deletion + insertion, each with its random-order reference (4 curves of steps + 1 points): ours
   (`faithfulness_curves`: every step an image of a batch, 17 per forward) vs the same curves as a loop
   of single-image forwards, each step's image made from the previous one by changing the pixels of
   that step. Issue 13's target on the CPU at 224, 50 steps: ≥ 5× (naive/ours).
2. the sanity check with 5 cascade steps (`sanity_check`: a copy of the model, 5 blocks randomised in
   turn, a map each) vs one map, for Grad-CAM and for Integrated Gradients (16 steps). Target: ≤ 6×.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from explorer.core.attribution import AttributionParams, attribute, baseline_for
from explorer.core.blockgraph import build_block_graph
from explorer.core.capture import CaptureModel
from explorer.core.faithfulness import (
    CURVE_KINDS,
    DEFAULT_BATCH,
    _random_cells,
    cell_order,
    default_cell,
    faithfulness_curves,
    sanity_check,
    step_counts,
)
from explorer.core.zoo import get_spec

MODEL = "googlenet"
CAM_BLOCK = "inception5b"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, repeat: int) -> float:
    """Median seconds of `repeat` runs after one warm-up run."""
    fn()
    sync(device)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


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
                    scores.append(float(torch.softmax(model(img), 1)[0, target]))
            curves.append(np.array(scores))
        out[kind] = (curves[0], curves[1])
    return out


def bench_device(device: str, size: int, steps: int, repeat: int) -> None:
    spec = get_spec(MODEL)
    torch.manual_seed(0)
    model = spec.build().eval().to(device)
    cm = CaptureModel(model, build_block_graph(spec)).to(device)
    x = torch.randn(1, 3, size, size, device=device)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n== {device} ({name}), {MODEL} at {size}×{size}, {steps} steps per curve")
    with torch.no_grad():
        target = int(model(x).argmax(1))
    cam = attribute(cm, x, "grad_cam", target, node=CAM_BLOCK).heatmap

    ours = faithfulness_curves(model, x, cam, target, steps=steps)
    ref = loop_curves(model, x, cam, target, steps)
    worst = max(float(np.abs(ours[k].scores - ref[k][0]).max()) for k in CURVE_KINDS)
    t_ours = timed(lambda: faithfulness_curves(model, x, cam, target, steps=steps), device, repeat)
    t_loop = timed(lambda: loop_curves(model, x, cam, target, steps), device, repeat)
    print(f"deletion+insertion (4 curves × {steps + 1} images, random references included)")
    print(f"  per-step loop {t_loop * 1e3:9.1f} ms   ours (batched, {DEFAULT_BATCH}/forward) {t_ours * 1e3:9.1f} ms   "
          f"ratio  naive/ours {t_loop / t_ours:5.2f}×   (target ≥ 5×; curves agree within {worst:.1e})")

    for method, params in (("grad_cam", AttributionParams()), ("integrated_gradients", AttributionParams(ig_steps=16))):
        kw = dict(node=CAM_BLOCK) if method == "grad_cam" else {}

        def one_map():
            return attribute(cm, x, method, target, params=params, **kw).heatmap

        original = one_map()
        t_map = timed(one_map, device, repeat)
        t_sanity = timed(lambda: sanity_check(cm, lambda m: attribute(m, x, method, target, params=params, **kw).heatmap,
                                              k=5, original=original), device, repeat)
        print(f"sanity check, 5 cascade steps, {method}: one map {t_map * 1e3:8.1f} ms   sanity {t_sanity * 1e3:8.1f} ms   "
              f"sanity/map {t_sanity / t_map:5.2f}×   (target ≤ 6×)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    p.add_argument("--quick", action="store_true", help="smoke test: 96×96, 10 steps, one repeat, CPU")
    args = p.parse_args()
    if args.quick:
        args.size, args.steps, args.repeat, args.device = 96, 10, 1, "cpu"
    devices = ["cpu"] if args.device == "cpu" else ["cuda"] if args.device == "cuda" else ["cpu"]
    if args.device == "all" and torch.cuda.is_available():
        devices.append("cuda")
    for device in devices:
        bench_device(device, args.size, args.steps, args.repeat)


if __name__ == "__main__":
    main()
