"""Shape tracing: our compiled shape program against torchinfo.summary, same model, same sizes
(GoogLeNet and Inception v3, and Inception-ResNet-v2, the largest of the family).

Run: .venv/bin/python bench/bench_trace.py [--quick]   (CPU only; one line per model and size;
--quick: GoogLeNet at 224 only, few repeats, a smoke test)

torchinfo runs a real forward with hooks on every module; we run the analytic program. Targets:
≥ 20× faster at 224, ≥ 300× at 1024, and ≤ 5 ms per retrace at any size up to 4096.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchinfo import summary

from explorer.core.graph.blockgraph import build_block_graph
from explorer.core.shapes.trace import trace_shapes
from explorer.core.model.zoo import get_spec


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: GoogLeNet at 224, few repeats")
    quick = ap.parse_args().quick
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'model':14s} {'size':>6s} {'ours ms':>9s} {'torchinfo ms':>13s} {'ratio':>8s}  check")
    for name in ("googlenet",) if quick else ("googlenet", "inception_v3", "inception_resnet_v2"):
        spec = get_spec(name)
        t = time.perf_counter()
        graph = build_block_graph(spec)
        trace_shapes(graph, spec.native_size)
        first = time.perf_counter() - t
        model = spec.build()
        for size in (224,) if quick else (224, 1024):
            ours = median_time(lambda: trace_shapes(graph, size), 5 if quick else 200)
            if not quick:
                summary(model, input_size=(1, 3, size, size), verbose=0, device="cpu")  # warm-up
            theirs = median_time(lambda: summary(model, input_size=(1, 3, size, size), verbose=0,
                                                 device="cpu"), 1 if quick else 3 if size == 224 else 2)
            # Same answer: torchinfo's total multiply-adds equals ours.
            info = summary(model, input_size=(1, 3, size, size), verbose=0, device="cpu")
            ours_macs = trace_shapes(graph, size).total_macs
            diff = info.total_mult_adds - ours_macs
            ok = f"MACs: ours {ours_macs:,}, torchinfo {diff:+,} ({diff / ours_macs:+.4%}, it counts more than conv+linear)"
            print(f"{name:14s} {size:>6d} {ours * 1e3:9.3f} {theirs * 1e3:13.1f} {theirs / ours:7.0f}×  {ok}")
        worst = max(median_time(lambda s=s: trace_shapes(graph, s), 2 if quick else 50)
                    for s in (75, 299, 777, 2048, 4096, (4096, 96)))
        print(f"{name:14s} first trace (fx trace + compile) {first * 1e3:.0f} ms; slowest retrace over sizes up to "
              f"4096: {worst * 1e3:.3f} ms (target ≤ 5 ms)")


if __name__ == "__main__":
    main()
