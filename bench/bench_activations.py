"""Per-branch activations and Integrated Gradients: ours against the plain approach, same model, same run.

Run: .venv/bin/python bench/bench_activations.py [--size 224] [--device cpu|cuda|all] [--ig-repeat N]

For each device (CPU, and CUDA when available) and GoogLeNet at one input size:
1. forward: plain `model(x)` vs `CaptureModel.capture(x)` (the same forward, keeping every branch output);
2. activations ready for display after the forward: ours (the capture's overhead over a plain forward,
   plus one block's branches copied to the CPU as feature maps with their statistics) vs the plain
   approach (forward hooks on every module, every output copied to the CPU; its overhead over a plain
   forward). Issue 5's target on an H100: ours ≤ 15 ms;
3. Integrated Gradients with 50 steps: our `attribute()` (progress, cancel, internal batches of 16)
   vs captum's default call (`IntegratedGradients(model).attribute(x, baselines, target, n_steps=50)`).
   Issue 5's target on an H100: ≤ 20 ms.
Ratios are theirs / ours (> 1: ours is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from explorer.core.activations import branch_stats, feature_maps
from explorer.core.attribution import AttributionParams, attribute, baseline_for
from explorer.core.blockgraph import build_block_graph
from explorer.core.capture import CaptureModel
from explorer.core.zoo import get_spec

MODEL = "googlenet"
DISPLAY_BLOCK = "inception4a"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_times(fns, repeat: int, device: str, warmup: int = 1) -> list[float]:
    """Median time of each function; runs are interleaved so that a busy machine slows all alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    sync(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, times):
            t = time.perf_counter()
            fn()
            sync(device)
            out.append(time.perf_counter() - t)
    return [statistics.median(t) for t in times]


def plain_hooks_forward(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The usual way: a forward hook on every module, each output copied to the CPU."""
    kept: dict[str, torch.Tensor] = {}
    handles = []
    for name, mod in model.named_modules():
        if name:
            handles.append(mod.register_forward_hook(
                lambda m, i, o, name=name: kept.__setitem__(name, o.detach().to("cpu", copy=True))
                if isinstance(o, torch.Tensor) else None))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return kept


def bench_device(device: str, size: int, repeat: int, ig_repeat: int, graph) -> None:
    from captum.attr import IntegratedGradients

    spec = get_spec(MODEL)
    torch.manual_seed(0)
    model = spec.build().eval().to(device)
    cm = CaptureModel(model, graph).to(device).eval()
    x = torch.randn(1, 3, size, size, device=device)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n== {device} ({name}), {MODEL} at {size}×{size}, batch 1")

    def plain():
        with torch.no_grad():
            model(x)

    cap = cm.capture(x)

    def display_block():
        for t in cap.branches[DISPLAY_BLOCK]:
            feature_maps(t)
        branch_stats(cap, graph, DISPLAY_BLOCK)

    t_plain, t_capture, t_display, t_hooks = median_times(
        [plain, lambda: cm.capture(x), display_block, lambda: plain_hooks_forward(model, x)], repeat, device)
    print(f"forward            plain {t_plain * 1e3:8.2f} ms   capture {t_capture * 1e3:8.2f} ms   "
          f"capture/plain {t_capture / t_plain:5.2f}×")

    ours = max(t_capture - t_plain, 0.0) + t_display
    theirs = max(t_hooks - t_plain, 0.0)
    kept = plain_hooks_forward(model, x)
    print(f"ready for display  ours {ours * 1e3:8.2f} ms (capture overhead {max(t_capture - t_plain, 0) * 1e3:.2f} "
          f"+ {DISPLAY_BLOCK} maps & stats to CPU {t_display * 1e3:.2f})   "
          f"hooks+copy-all {theirs * 1e3:8.2f} ms over the forward ({len(kept)} tensors)   "
          f"ratio {theirs / ours if ours else float('inf'):6.1f}×")

    with torch.no_grad():
        target = int(model(x).argmax(1))
    baseline = baseline_for(x, "black")
    params = AttributionParams(ig_steps=50, internal_batch_size=16)

    def ours_ig():
        attribute(cm, x, "integrated_gradients", target, params=params)

    def captum_ig():
        IntegratedGradients(model).attribute(x, baselines=baseline, target=target, n_steps=50)

    t_ours, t_captum = median_times([ours_ig, captum_ig], ig_repeat, device, warmup=0 if device == "cpu" else 1)
    r = attribute(cm, x, "integrated_gradients", target, params=params)
    print(f"IG-50              ours {t_ours * 1e3:8.1f} ms   captum default {t_captum * 1e3:8.1f} ms   "
          f"ratio {t_captum / t_ours:5.2f}×   (ours: batches of 16 with progress and cancel; "
          f"delta {r.delta_relative:.1%} of f(x) − f(baseline))")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    ap.add_argument("--repeat", type=int, default=10, help="timed runs of the forward measurements")
    ap.add_argument("--ig-repeat", type=int, default=None, help="timed IG runs (default: 1 on CPU, 10 on CUDA)")
    args = ap.parse_args()
    # Random weights let activations decay into denormal floats, which are very slow on CPUs.
    torch.set_flush_denormal(True)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs{load}")
    graph = build_block_graph(get_spec(MODEL))
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("\n== cuda: not available, skipped")
            continue
        ig_repeat = args.ig_repeat or (10 if device == "cuda" else 1)
        bench_device(device, args.size, args.repeat if device == "cuda" else min(args.repeat, 5), ig_repeat, graph)


if __name__ == "__main__":
    main()
