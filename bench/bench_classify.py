"""Drop-to-top-5 on a 12-megapixel JPEG: our path against the naive one, same image, same weights.

    python bench/bench_classify.py [--model googlenet|inception_v3|all] [--repeats N] [--device cpu|cuda|all]
                                   [--quick]   (smoke test: GoogLeNet, one repeat, a 1 MP JPEG)

naive: PIL open → RGB → weights.transforms() → eager forward of the loaded model → softmax top-5
       (on CUDA: the transformed tensor is copied to the GPU for the forward).
ours:  explorer.core.inference.Classifier.classify([path]) — on the CPU, JPEG draft decode + exact
       resize + batch-norm-folded channels-last forward; on CUDA, nvjpeg decode, on-device transforms
       and a CUDA-graph forward.
The two are timed alternately (contention hits both alike); medians are printed with the ratio. Then
the agreement: top-5 equality and logit difference of ours against naive on a few images, with the
mean input difference in 8-bit grey levels (draft decoding is the only inexact step on the CPU).
Weights: the published ones when they are in the torch hub cache, else calibrated random weights
(tests/netutil.py), which are far more sensitive to tiny input changes than a trained network.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_jpeg(path: Path, size=(4000, 3000), seed=0, quality=90) -> Path:
    """Smooth noise, gradients and mild texture: a photo-like file size (~2-3 MB at quality 90)."""
    rng = np.random.default_rng(seed)
    w, h = size
    low = rng.integers(0, 256, (h // 60 + 1, w // 60 + 1, 3), dtype=np.uint8)
    a = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), dtype=np.int16)
    ramp = (np.arange(w, dtype=np.int16) * 60 // w)[None, :]
    a[..., 0] += ramp
    a[..., 2] -= ramp
    a += rng.integers(-6, 7, (h, w, 1), dtype=np.int16)
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=quality)
    return path


def get_loaded(name: str):
    from explorer.core.loading import LoadedModel, load_model
    from explorer.core.weights import WeightsState

    loaded = load_model(name, weights="auto", allow_download=False)
    if not loaded.weights.is_random:
        return loaded, "published (hub cache)"
    sys.path.insert(0, str(ROOT))
    from tests.netutil import calibrated_model

    spec = loaded.spec
    return LoadedModel(spec, calibrated_model(name), WeightsState("file", "calibrated"), spec.categories()), (
        "calibrated random (no published weights in the hub cache)"
    )


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def naive_top5(path, tf, model, device):
    with torch.no_grad():
        x = tf(Image.open(path).convert("RGB"))[None].to(device)
        probs = model(x).softmax(1)
        values, indices = probs.topk(5)
        return indices[0].tolist(), values[0].tolist()


def bench_model(name: str, device: str, jpeg: Path, extra: list[Path], repeats: int, quick: bool = False) -> None:
    from explorer.core.inference import ClassificationResult, Classifier

    loaded, weights = get_loaded(name)
    tf = loaded.transforms()
    model = loaded.module.to(device).eval()
    clf = Classifier(loaded, device)
    t0 = time.perf_counter()
    clf.warm_up()
    warm = time.perf_counter() - t0
    print(f"\n== {name} on {device} — weights: {weights}; warm-up {warm:.2f} s"
          + (f", CUDA graph {'ready' if clf.graph_ready else 'not captured'}" if device != "cpu" else ""))

    # On the CPU also time our path without draft decoding (bit-exact preprocessing), for reference.
    exact = Classifier(loaded, device, jpeg_draft=False) if device == "cpu" and not quick else None
    if exact is not None:
        exact._modules = clf._modules  # same optimised network
    for _ in range(0 if quick else 2):  # first-call costs out of the way
        naive_top5(jpeg, tf, model, device)
        clf.classify([jpeg])
    naive_t, ours_t, exact_t, stages, exact_stages = [], [], [], [], []
    naive_cpu, ours_cpu = [], []  # process CPU time: what the work costs, whatever else runs
    for _ in range(repeats):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        naive_top5(jpeg, tf, model, device)
        sync(device)
        naive_t.append(time.perf_counter() - t0)
        naive_cpu.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        r = clf.classify([jpeg])[0]
        sync(device)
        ours_t.append(time.perf_counter() - t0)
        ours_cpu.append(time.process_time() - c0)
        stages.append(r.timings_ms)
        if exact is not None:
            t0 = time.perf_counter()
            exact_stages.append(exact.classify([jpeg])[0].timings_ms)
            exact_t.append(time.perf_counter() - t0)

    def split(st):
        return ", ".join(f"{k} {statistics.median(s[k] for s in st):.1f}" for k in ("decode", "preprocess", "forward"))

    med_naive, med_ours = statistics.median(naive_t) * 1e3, statistics.median(ours_t) * 1e3
    print(f"naive  drop→top-5  median {med_naive:8.1f} ms  (min {min(naive_t) * 1e3:.1f}, n={repeats})")
    print(f"ours   drop→top-5  median {med_ours:8.1f} ms  (min {min(ours_t) * 1e3:.1f}, n={repeats})  {split(stages)}")
    if exact_t:
        print(f"ours without draft median {statistics.median(exact_t) * 1e3:8.1f} ms  (min {min(exact_t) * 1e3:.1f})  "
              f"{split(exact_stages)}  → ratio {med_naive / (statistics.median(exact_t) * 1e3):.2f}×")
    print(f"ratio  naive/ours  {med_naive / med_ours:.2f}× wall-clock")
    if device == "cpu":
        nc, oc = statistics.median(naive_cpu) * 1e3, statistics.median(ours_cpu) * 1e3
        print(f"CPU time (all threads) naive {nc:.1f} ms, ours {oc:.1f} ms → {nc / oc:.2f}× "
              "(less sensitive to other processes on the machine; with 1 thread, a proxy for wall time)")

    # Batch-1 forward alone: eager plain model vs ours (folded + channels-last, CUDA graph on GPU).
    x = tf(Image.open(jpeg).convert("RGB"))[None].to(device)
    eager, fast = [], []
    with torch.inference_mode():
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            model(x)
            sync(device)
            eager.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            clf._forward_and_fill([x[0]], [ClassificationResult("bench")], 5, clf.device)
            sync(device)
            fast.append(time.perf_counter() - t0)
    print(f"forward batch-1    eager {statistics.median(eager) * 1e3:.2f} ms, ours {statistics.median(fast) * 1e3:.2f} ms "
          "(ours includes softmax + top-5)")

    # Throughput of a folder-sized batch.
    n = 2 if quick else 64 if device != "cpu" else 8
    batch = [jpeg] * n
    t0 = time.perf_counter()
    clf.classify(batch)
    sync(device)
    ours_rate = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for p in batch[: max(2, n // 4)]:
        naive_top5(p, tf, model, device)
    sync(device)
    naive_rate = max(2, n // 4) / (time.perf_counter() - t0)
    print(f"throughput         ours {ours_rate:.1f} images/s (batches of {clf.batch_size or n}), "
          f"naive {naive_rate:.1f} images/s (one by one)")

    # Agreement with the naive path.
    tf_cpu = loaded.transforms()
    rows = []
    for p in extra if quick else [jpeg, *extra]:
        with torch.no_grad():
            ref = model(tf_cpu(Image.open(p).convert("RGB"))[None].to(device)).float().cpu()[0]
        ours = clf.logits([p])[0]
        diff = (ours - ref).abs().max().item() / ref.abs().max().item()
        same = ours.topk(5).indices.tolist() == ref.topk(5).indices.tolist()
        levels = ""
        if device == "cpu":
            x_ours = clf.preprocess(p)
            x_ref = tf_cpu(Image.open(p).convert("RGB"))
            delta = ((x_ours - x_ref).abs() * 0.226 * 255).mean().item()
            levels = f", input Δ {delta:.2f} grey levels (mean)"
            if delta > 0:
                # How much uniform noise of the same mean size moves this network: its noise floor.
                g = torch.Generator().manual_seed(0)
                noise = (torch.rand(x_ref.shape, generator=g) * 2 - 1) * (2 * delta / (0.226 * 255))
                with torch.no_grad():
                    noisy = model((x_ref + noise)[None]).float()[0]
                levels += (f"; same-size noise on the naive input: max |Δlogit| = "
                           f"{(noisy - ref).abs().max().item() / ref.abs().max().item():.1e}, top-5 "
                           f"{'same' if noisy.topk(5).indices.tolist() == ref.topk(5).indices.tolist() else 'DIFFERENT'}")
        with Image.open(p) as im:
            size = f"{im.size[0]}×{im.size[1]}"
        rows.append(same)
        print(f"agreement {size:>10}: top-5 {'same' if same else 'DIFFERENT'}, top-1 "
              f"{'same' if ours.argmax() == ref.argmax() else 'DIFFERENT'}, max |Δlogit| = {diff:.1e} × logit scale{levels}")
    model.cpu()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all", choices=("all", "googlenet", "inception_v3"))
    ap.add_argument("--device", default="all", choices=("all", "cpu", "cuda"))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: GoogLeNet, one repeat, a 1 MP JPEG, batches of 2 (numbers mean nothing)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.model = 1, "googlenet"
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            print("CUDA is not available", file=sys.stderr)
            return 1
        devices.remove("cuda")
    names = ["googlenet", "inception_v3"] if args.model == "all" else [args.model]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.quick:
            jpeg, extra = make_jpeg(tmp / "photo1mp.jpg", (1200, 900)), [make_jpeg(tmp / "small.jpg", (400, 300), seed=3)]
        else:
            jpeg = make_jpeg(tmp / "photo12mp.jpg")
            extra = [make_jpeg(tmp / "photo2mp.jpg", (1600, 1200), seed=1),
                     make_jpeg(tmp / "portrait.jpg", (1080, 1920), seed=2),
                     make_jpeg(tmp / "small.jpg", (400, 300), seed=3)]
        cpu = (open("/proc/cpuinfo").read().count("processor\t:") if Path("/proc/cpuinfo").exists() else "?")
        with Image.open(jpeg) as im:
            mp = im.width * im.height / 1e6
        print(f"{mp:.0f} MP JPEG {jpeg.stat().st_size / 1e6:.2f} MB; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, {cpu} CPUs"
              + (f", GPU {torch.cuda.get_device_name()}" if "cuda" in devices else ", no CUDA"))
        for device in devices:
            for name in names:
                bench_model(name, device, jpeg, extra, args.repeats, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
