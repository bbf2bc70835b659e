"""Stepping through GoogLeNet's data-flow slides: one step against the capture forward that fed them.

Run: .venv/bin/python bench/bench_slides.py [--size 224] [--width 1920] [--height 1080] [--rounds 3]
     [--threads N] [--quick]
(--quick, a smoke test: 96×96, one round, 1280×720, one thread.)

Ours: one step of presentation mode on a data-flow slide, as the window does it — build the slide from
the capture (a fresh `SlideDeck` each round, so nothing is cached: each block's most active channels and
energy shares, copied to the CPU) and paint it at the screen's size (`DataflowView.render_image`, Qt
offscreen). Every slide is timed; the median and the slowest are printed. The anchor: the capture forward
itself (`CaptureModel.capture`, the one forward the slides come from; random weights, denormals
flushed). Issue 14's target: a step ≤ 100 ms
on the CPU for GoogLeNet.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from explorer.core.graph.capture import CaptureModel  # noqa: E402
from explorer.core.lecture.dataflow import SlideDeck  # noqa: E402
from explorer.core.model.graphs import zoo_block_graph  # noqa: E402
from explorer.core.model.zoo import get_spec  # noqa: E402

MODEL = "googlenet"
TARGET_MS = 100.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--maps", type=int, default=4, help="feature maps per branch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch's CPU threads (0: its default; 1 on a busy machine, where spinning threads stall)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.size, a.rounds, a.width, a.height, a.threads = 96, 1, 1280, 720, 1
    if a.threads:
        torch.set_num_threads(a.threads)

    from PySide6.QtWidgets import QApplication

    from explorer.qt.lecture.dataflow_view import DataflowView

    app = QApplication.instance() or QApplication([])
    graph = zoo_block_graph(MODEL)
    # Random weights without calibration drift to denormal numbers layer after layer, which the CPU
    # computes ~100× slower: flushed to zero, the forward costs what a trained network's does.
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    module = get_spec(MODEL).build(device="cpu").eval()
    cm = CaptureModel(module, graph)
    x = torch.randn(1, 3, a.size, a.size)
    rgb = np.zeros((a.size, a.size, 3), np.uint8)
    categories = [f"class {i}" for i in range(1000)]
    view = DataflowView()
    print(f"{MODEL} at {a.size}×{a.size} on the CPU, {torch.get_num_threads()} threads, slides painted at "
          f"{a.width}×{a.height}, {a.maps} maps per branch, {a.rounds} rounds, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    forwards, steps, builds, paints = [], [], [], []
    # Warm-up: a forward, and one slide painted (the colormap and the fonts load once; the window has
    # painted before a talk starts).
    warm = SlideDeck(graph, cm.capture(x), rgb, categories=categories, maps_per_branch=a.maps)
    view.set_slide(warm.slide(1))
    view.render_image(a.width, a.height)
    del warm
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        cap = cm.capture(x)
        forwards.append(time.perf_counter() - t0)
        deck = SlideDeck(graph, cap, rgb, categories=categories, maps_per_branch=a.maps, source="bench")
        for i in range(len(deck)):
            t0 = time.perf_counter()
            slide = deck.slide(i)
            t1 = time.perf_counter()
            view.set_slide(slide)
            view.render_image(a.width, a.height)
            t2 = time.perf_counter()
            steps.append(t2 - t0)
            builds.append(t1 - t0)
            paints.append(t2 - t1)
        del deck, cap
    app.processEvents()

    ms = lambda v: 1e3 * v  # noqa: E731
    step, worst, fw = statistics.median(steps), max(steps), statistics.median(forwards)
    print(f"slide step  median {ms(step):7.2f} ms  slowest {ms(worst):7.2f} ms  "
          f"(build median {ms(statistics.median(builds)):.2f} ms, paint median {ms(statistics.median(paints)):.2f} ms;"
          f" {len(steps)} steps)")
    print(f"capture forward  median {ms(fw):7.2f} ms  (the anchor: the one forward the slides come from)")
    print(f"ratio  forward/step  {fw / step:.1f}× (median), {fw / worst:.1f}× (slowest step)")
    print(f"slowest step {ms(worst):.1f} ms (target ≤ {TARGET_MS:.0f} ms): {'PASS' if ms(worst) <= TARGET_MS else 'FAIL'}")


if __name__ == "__main__":
    main()
