"""Feature visualisation and dataset-example indexing: ours against the plain approach, same model, same run.

Run: .venv/bin/python bench/bench_featurevis.py [--size 128] [--steps 256] [--channels 16] [--images 64] [--quick]
(--quick, a smoke test: 48×48, 3 steps, 2 channels, 4 images.)

GoogLeNet (calibrated random weights: speed does not depend on what the weights learned), CPU:
1. feature visualisation of --channels channels of inception4a at --size for --steps Adam steps:
   ours batched (`featurevis.visualize`, all channels in one batch: the forward stops at the target,
   only the image's gradient is computed), ours one channel at a time (batch=1), and the plain way of
   Lucent's `render_vis` (one channel at a time, the whole network run every step, `loss.backward()`
   filling every weight's gradient too). Channels per second, ratios against the batched run.
2. indexing --images images for dataset examples (`examples.index_folder`: decode, preprocess, one
   captured forward per batch of 16, top-9 merge and SQLite writes) vs a plain forward with forward
   hooks on every branch module of the same model, after the same decode and preprocessing.
   Images per second; the ratio is plain/ours (< 1: indexing costs more than the forward alone).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from explorer.core.graph.capture import CaptureModel
from explorer.core.microscope.examples import ExampleIndex, index_folder
from explorer.core.microscope.featurevis import FourierImage, Target, _transform, visualize
from explorer.core.model.graphs import zoo_block_graph
from explorer.core.classify.images import ImageLoadError
from explorer.core.model.samples import sample_images
from explorer.core.model.zoo import get_spec

MODEL = "googlenet"
BLOCK = "inception4a"


def calibrated():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.netutil import calibrated_model

    return calibrated_model(MODEL)


def lucent_style(model, channels, steps: int, size: int) -> None:
    """Lucent's render_vis loop, one channel at a time: the whole network each step, weights' grads too."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    got = {}
    h = getattr(model, BLOCK).register_forward_hook(lambda m, i, o: got.__setitem__("a", o))
    try:
        for c in channels:
            g = torch.Generator().manual_seed(0)
            param = FourierImage(1, size, g)
            opt = torch.optim.Adam([param.spectrum], lr=0.05)
            for _ in range(steps):
                opt.zero_grad()
                model.zero_grad()
                x, _ = _transform(param(), g)
                model((x - mean) / std)
                loss = -got["a"][0, c].mean()
                loss.backward()
                opt.step()
    finally:
        h.remove()


def bench_featurevis(model, cm, args) -> None:
    channels = list(range(args.channels))
    target = Target(BLOCK, None)
    rows = []
    for name, fn in [
        ("ours, one batch of channels", lambda: visualize(cm, target, channels, steps=args.steps, size=args.size,
                                                          batch=len(channels))),
        ("ours, one channel at a time", lambda: visualize(cm, target, channels, steps=args.steps, size=args.size,
                                                          batch=1)),
        ("plain (Lucent's loop), one at a time", lambda: lucent_style(model, channels, args.steps, args.size)),
    ]:
        t0 = time.perf_counter()
        fn()
        rows.append((name, time.perf_counter() - t0))
    print(f"\nFeature visualisation: {MODEL} {BLOCK}, {args.size}×{args.size}, {args.steps} steps, "
          f"{len(channels)} channels, CPU ({torch.get_num_threads()} threads)")
    best = rows[0][1]
    print(f"{'':40s} {'seconds':>9s} {'channels/s':>11s} {'ratio  theirs/batched':>22s}")
    for name, s in rows:
        print(f"{name:40s} {s:9.2f} {len(channels) / s:11.3f} {s / best:22.2f}")


def bench_index(model, cm, graph, args) -> None:
    tf = get_spec(MODEL).transforms()

    def preprocess(path):
        try:
            with Image.open(path) as im:
                return tf(im.convert("RGB"))
        except OSError as e:
            raise ImageLoadError(str(path), str(e)) from None

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        samples = sample_images()
        for i in range(args.images):  # the sample photos, resized a little differently each time
            s = samples[i % len(samples)]
            with Image.open(s.path) as im:
                im.convert("RGB").resize((320 + i % 7, 240 + i % 5)).save(folder / f"{i:04d}.jpg", quality=90)
        files = sorted(folder.iterdir())

        branches = [m for name, m in model.named_modules() if ".branch" in name and name.count(".") == 1]
        kept = []
        hooks = [b.register_forward_hook(lambda m, i, o: kept.append(o.detach())) for b in branches]
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                for k in range(0, len(files), 16):
                    kept.clear()
                    model(torch.stack([preprocess(f) for f in files[k : k + 16]]))
        finally:
            for h in hooks:
                h.remove()
        plain = time.perf_counter() - t0

        with ExampleIndex(Path(tmp) / "db.sqlite") as index:
            t0 = time.perf_counter()
            r = index_folder(folder, cm, graph, preprocess, model=MODEL, weights="bench", index=index, batch_size=16)
            ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = index_folder(folder, cm, graph, preprocess, model=MODEL, weights="bench", index=index)
            rerun = time.perf_counter() - t0
            t0 = time.perf_counter()
            n = 0
            for c in range(64):
                n += len(index.examples(MODEL, "bench", BLOCK, 1, c))
            query_ms = (time.perf_counter() - t0) * 1000 / 64
        assert r.indexed == len(files) and again.skipped == len(files)
    print(f"\nIndexing {len(files)} JPEGs (~320×240) for dataset examples: {MODEL}, every branch of "
          f"{len(graph.blocks())} blocks, batches of 16, CPU")
    print(f"{'':48s} {'seconds':>9s} {'images/s':>9s}")
    print(f"{'plain forward + hooks on every branch':48s} {plain:9.2f} {len(files) / plain:9.2f}")
    print(f"{'ours: index_folder (capture, top-9, SQLite)':48s} {ours:9.2f} {len(files) / ours:9.2f}")
    print(f"ratio  plain/ours  {plain / ours:.2f}")
    print(f"re-index of the unchanged folder: {rerun * 1000:.1f} ms; one channel's examples: {query_ms:.2f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.size, args.steps, args.channels, args.images = 48, 3, 2, 4
    print(f"load average {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    model = calibrated()
    graph = zoo_block_graph(MODEL)
    cm = CaptureModel(model, graph)
    bench_featurevis(model, cm, args)
    bench_index(model, cm, graph, args)
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")


if __name__ == "__main__":
    main()
