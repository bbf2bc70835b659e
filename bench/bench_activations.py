"""Per-branch activations and Integrated Gradients: ours against the plain approach, same model, same run.

Run: .venv/bin/python bench/bench_activations.py [--size 224] [--device cpu|cuda|all] [--ig-repeat N] [--quick]
(--quick, a smoke test: CPU, 96×96, one repeat, IG with 4 steps.)

For each device (CPU, and CUDA when available) and GoogLeNet:
1. forward at --size: the classifier's network (BN-folded, channels-last) run plainly vs through the
   `CaptureModel` traced over it (the same forward, keeping every branch output);
2. activations ready, from a sample photo's file to the top-5 and one block's maps on the CPU: ours
   (`Classifier.classify_captured`: one decode, ONE forward that classifies and captures, then the
   displayed block's branches copied to the CPU as feature maps with their statistics) vs the plain
   approach (the same decode and preprocessing, then the loaded model's forward with a hook on every
   module copying each output to the CPU, and its top-5). Also shown: the window's path before issue 5
   (`classify`, then a second decode and a capture forward on the CPU). Issue 5's target on an H100:
   ours ≤ 15 ms;
3. Integrated Gradients with 50 steps: our `attribute_on_device()` on the classifier's network and
   device (progress, cancel, internal batches of 16) vs captum's default call
   (`IntegratedGradients(model).attribute(x, baselines, target, n_steps=50)`).
   Issue 5's target on an H100: ≤ 20 ms.
Ratios are theirs / ours (> 1: ours is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from PIL import Image

from explorer.core.microscope.activations import branch_stats, feature_maps
from explorer.core.attribution.methods import CUDA_IG_BATCH, AttributionParams, attribute_on_device, baseline_for
from explorer.core.graph.blockgraph import build_block_graph
from explorer.core.graph.capture import CaptureModel
from explorer.core.classify.inference import Classifier
from explorer.core.model.loading import LoadedModel
from explorer.core.model.samples import sample_images
from explorer.core.model.weights import WeightsState
from explorer.core.model.zoo import get_spec

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


def display_block(cap, graph) -> None:
    """What the activation view copies to the CPU for the block on screen: its maps and statistics."""
    for t in cap.branches[DISPLAY_BLOCK]:
        feature_maps(t)
    branch_stats(cap, graph, DISPLAY_BLOCK)


def bench_device(device: str, size: int, repeat: int, ig_repeat: int, graph, ig_steps: int = 50) -> None:
    from captum.attr import IntegratedGradients

    spec = get_spec(MODEL)
    torch.manual_seed(0)
    model = spec.build().eval()
    loaded = LoadedModel(spec, model, WeightsState("random", "seed 0"), spec.categories())
    clf = Classifier(loaded, device, graph=graph)
    clf.warm_up()
    model = model.to(device)
    x = torch.randn(1, 3, size, size, device=device)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n== {device} ({name}), {MODEL} at {size}×{size}, batch 1")

    xc = x.contiguous(memory_format=torch.channels_last)
    folded, folded_cm = clf.module, clf.capture_model()

    def plain():
        with torch.no_grad():
            folded(xc)

    t_plain, t_capture = median_times([plain, lambda: folded_cm.capture(xc)], repeat, device)
    print(f"forward            plain {t_plain * 1e3:8.2f} ms   capture {t_capture * 1e3:8.2f} ms   "
          f"capture/plain {t_capture / t_plain:5.2f}×   (the classifier's folded network)")

    photo = sample_images()[0].path
    cpu_model = spec.build().eval()  # the window before issue 5 captured through a CPU copy
    cpu_model.load_state_dict(model.state_dict())
    cpu_cm = CaptureModel(cpu_model, graph)

    def ours():
        out = clf.classify_captured(photo)
        display_block(out.capture, graph)

    def theirs():
        xp = clf.preprocess(photo)[None].to(device)
        kept = plain_hooks_forward(model, xp)
        kept["fc"].softmax(1).topk(5)  # the top-5 from that forward's logits (copied like the rest)
        return kept

    def two_passes():
        clf.classify([photo])
        xp = clf.preprocess(photo)[None]
        display_block(cpu_cm.capture(xp), graph)

    t_ours, t_theirs, t_two = median_times([ours, theirs, two_passes], repeat, device)
    with Image.open(photo) as im:
        photo_size = f"{im.width}×{im.height}"
    print(f"activations ready  ours {t_ours * 1e3:8.2f} ms   hooks+copy-all {t_theirs * 1e3:8.2f} ms "
          f"({len(theirs())} tensors)   ratio {t_theirs / t_ours:5.2f}×   "
          f"[before issue 5, classify + 2nd decode & CPU capture: {t_two * 1e3:.2f} ms, ratio {t_two / t_ours:5.2f}×]"
          f"   ({photo.name} {photo_size} → top-5 and {DISPLAY_BLOCK}'s maps & stats on the CPU)")

    with torch.no_grad():
        target = int(model(x).argmax(1))
    baseline = baseline_for(x, "black")
    params = AttributionParams(ig_steps=ig_steps, internal_batch_size=16)

    def ours_ig():  # the window's path: the classifier's network, on its device
        attribute_on_device(clf.capture_model, x, "integrated_gradients", target, device=device, params=params)

    def captum_ig():
        IntegratedGradients(model).attribute(x, baselines=baseline, target=target, n_steps=ig_steps)

    t_ours, t_captum = median_times([ours_ig, captum_ig], ig_repeat, device, warmup=0 if device == "cpu" else 1)
    r = attribute_on_device(clf.capture_model, x, "integrated_gradients", target, device=device, params=params)
    print(f"IG-{ig_steps:<2d}              ours {t_ours * 1e3:8.1f} ms   captum default {t_captum * 1e3:8.1f} ms   "
          f"ratio {t_captum / t_ours:5.2f}×   (ours: batches of "
          f"{16 if device == 'cpu' else min(ig_steps, CUDA_IG_BATCH)} with progress and cancel; "
          f"delta {r.delta_relative:.1%} of f(x) − f(baseline))")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    ap.add_argument("--repeat", type=int, default=10, help="timed runs of the forward measurements")
    ap.add_argument("--ig-repeat", type=int, default=None, help="timed IG runs (default: 1 on CPU, 10 on CUDA)")
    ap.add_argument("--quick", action="store_true", help="smoke test: CPU, 96×96, one repeat, IG with 4 steps")
    args = ap.parse_args()
    if args.quick:
        args.size, args.device, args.repeat, args.ig_repeat = 96, "cpu", 1, 1
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
        bench_device(device, args.size, args.repeat if device == "cuda" else min(args.repeat, 5), ig_repeat, graph,
                     ig_steps=4 if args.quick else 50)


if __name__ == "__main__":
    main()
