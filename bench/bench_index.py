"""`index FOLDER` (dataset examples) on photos: its images per second and where the time goes, with the
decode pool against decoding on the calling thread, same folder, same model, same weights.

    python bench/bench_index.py [--n 96] [--size 1600x1200] [--batch 16] [--workers N] [--threads N] [--rounds 3]
                                [--quick]   (a smoke test: 6 images of 320×240, batches of 3, one round)

ours:   `examples.index_folder` as `index FOLDER` runs it: the classifier's exact CPU preprocessing
        (`Classifier.preprocess`, a `CpuPreprocess`: its PIL half on the decode pool, the next batch's while
        this one's examples are stored, its tensor half on the calling thread), one captured forward per batch (every branch of every block), the top-9
        merge per channel and the SQLite writes. Its report's seconds say where the calling thread's time went.
serial: the anchor, indexing as it ran before issue 28: the same `index_folder` given the same preprocessing
        as a plain function on a pool of one thread that the caller waits on batch by batch, so that
        decoding never overlaps the forward (`SerialDecode` below).
plain:  the floor of the work: decode inline, then a plain forward with forward hooks on every branch module.
GoogLeNet at 224 with calibrated random weights (speed does not depend on what the weights learned), CPU, torch
set up as the command line sets it (`prepare_torch_runtime`: without it, OpenMP's spinning threads made every
side's forward two to three times slower beside other threads on this 2-core machine).
The ratio is serial/ours (> 1: the pool pays). The ceiling: the network's forward alone over the folder, which
no indexing can beat while it runs on the same cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.core.runtime import prepare_torch_runtime  # noqa: E402

prepare_torch_runtime()  # as `index FOLDER` runs: before torch loads (OpenMP's idle threads sleep)

import torch  # noqa: E402

from bench.bench_classify import make_jpeg  # noqa: E402

MODEL = "googlenet"


class SerialDecode:
    """The preprocessing as one function, with no halves: on a pool of one thread, waited for batch by
    batch, it decodes while nothing else runs (the calling thread waits for it), as indexing did before."""

    def __init__(self, preprocess):
        self.preprocess = preprocess

    def __call__(self, path):
        return self.preprocess(path)


def build(n_threads: int | None):
    from explorer.core.classify.inference import Classifier
    from explorer.core.model.graphs import zoo_block_graph
    from explorer.core.model.loading import LoadedModel
    from explorer.core.model.weights import WeightsState
    from explorer.core.model.zoo import get_spec
    from tests.netutil import calibrated_model

    if n_threads:
        torch.set_num_threads(n_threads)
    spec = get_spec(MODEL)
    loaded = LoadedModel(spec, calibrated_model(MODEL), WeightsState("file", "calibrated"), spec.categories())
    graph = zoo_block_graph(MODEL)
    clf = Classifier(loaded, "cpu", optimize=False, graph=graph)  # as `index FOLDER` makes it
    return loaded, graph, clf, clf.capture_model("cpu")


def run_index(folder, cm, graph, preprocess, db, batch, workers):
    from explorer.core.microscope.examples import ExampleIndex, index_folder

    with ExampleIndex(db) as index:
        t0 = time.perf_counter()
        r = index_folder(folder, cm, graph, preprocess, model=MODEL, weights="bench", index=index,
                         batch_size=batch, decode_workers=workers)
        return time.perf_counter() - t0, r


def run_serial(folder, cm, graph, preprocess, db, batch):
    """index_folder with the decode waited for before each forward: one decode thread, and each batch's
    images read only when that batch starts (a look-ahead of nothing)."""
    from explorer.core.classify import batching

    ahead = batching.DecodeAhead
    take, queue = ahead.take, ahead.queue

    def no_look_ahead(self, work, start, stop, _ahead):
        queue(self, work, start, stop)
        futures = [self._queued.pop(i)[1] for i in range(start, stop)]
        for f in futures:  # finished before the forward: nothing overlaps
            try:
                f.result()
            except Exception:  # noqa: BLE001 - the index reports it from the future
                pass
        return futures

    ahead.take, ahead.queue = no_look_ahead, lambda self, work, start, stop: None
    try:
        return run_index(folder, cm, graph, SerialDecode(preprocess), db, batch, 1)
    finally:
        ahead.take, ahead.queue = take, queue


def run_plain(model, files, preprocess, batch) -> float:
    branches = [m for name, m in model.named_modules() if ".branch" in name and name.count(".") == 1]
    kept = []
    hooks = [b.register_forward_hook(lambda m, i, o: kept.append(o.detach())) for b in branches]
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            for k in range(0, len(files), batch):
                kept.clear()
                model(torch.stack([preprocess(f) for f in files[k : k + batch]]))
    finally:
        for h in hooks:
            h.remove()
    return time.perf_counter() - t0


def forward_only(model, n: int, batch: int) -> float:
    x = torch.randn(batch, 3, 224, 224)
    t0 = time.perf_counter()
    with torch.no_grad():
        for k in range(0, n, batch):
            model(x[: min(batch, n - k)])
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--size", default="1600x1200", help="photo size, WxH (1600x1200: 2 MP)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=None, help="decode threads (default: index FOLDER's)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--rounds", type=int, default=3, help="alternate runs of serial and ours (median)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.size, args.batch, args.rounds = 6, "320x240", 3, 1
    w, h = (int(v) for v in args.size.split("x"))
    from explorer.core.classify.batching import decode_worker_count

    loaded, graph, clf, cm = build(args.threads)
    workers = decode_worker_count(False, args.workers)
    load = f"load average {os.getloadavg()[0]:.1f} at start" if hasattr(os, "getloadavg") else ""
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} {torch.get_num_threads()} threads, {load}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "photos"
        folder.mkdir()
        for i in range(args.n):
            make_jpeg(folder / f"{i:04d}.jpg", (w, h), seed=i)
        files = sorted(folder.iterdir())
        mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"{args.n} JPEGs of {w}×{h} ({mb / args.n:.2f} MB each), {MODEL} at 224, every branch of "
              f"{len(graph.blocks())} blocks, batches of {args.batch}")
        preprocess = clf.preprocess
        # first-call costs out of the way, for each side
        run_index(folder, cm, graph, preprocess, tmp / "warm.sqlite", args.batch, workers)
        run_plain(loaded.module, files[: args.batch], preprocess, args.batch)
        forward_only(loaded.module, args.batch, args.batch)
        plain = run_plain(loaded.module, files, preprocess, args.batch)
        ceiling = forward_only(loaded.module, args.n, args.batch)
        serial_runs, ours_runs = [], []
        for k in range(args.rounds):  # alternately, the order swapped each round: contention hits both
            sides = [("serial", serial_runs), ("ours", ours_runs)]
            for name, runs in sides if k % 2 == 0 else sides[::-1]:
                db = tmp / f"{name}{k}.sqlite"
                if name == "serial":
                    runs.append(run_serial(folder, cm, graph, preprocess, db, args.batch))
                else:
                    runs.append(run_index(folder, cm, graph, preprocess, db, args.batch, workers))
        for _, rep in serial_runs + ours_runs:
            assert rep.indexed == args.n and not rep.failed
    n = args.n
    serial, rs = sorted(serial_runs, key=lambda t: t[0])[len(serial_runs) // 2]
    ours, r = sorted(ours_runs, key=lambda t: t[0])[len(ours_runs) // 2]
    print(f"{'':56s} {'seconds':>8s} {'images/s':>9s}   (index_folder: median of {args.rounds} alternate runs)")
    print(f"{'plain: decode inline, forward with hooks on every branch':56s} {plain:8.2f} {n / plain:9.2f}")
    print(f"{'serial: index_folder, decode waited for (before issue 28)':56s} {serial:8.2f} {n / serial:9.2f}   "
          f"runs {', '.join(f'{t:.2f}' for t, _ in serial_runs)}")
    print(f"{f'ours: index_folder, {workers} decode threads, next batch ahead':56s} {ours:8.2f} {n / ours:9.2f}   "
          f"runs {', '.join(f'{t:.2f}' for t, _ in ours_runs)}")
    print(f"{'ceiling: the forward alone (no decode, no capture)':56s} {ceiling:8.2f} {n / ceiling:9.2f}")
    for name, rep, total in (("serial", rs, serial), ("ours", r, ours)):
        s = rep.seconds
        parts = ", ".join(f"{k} {s[k]:.2f} s ({s[k] / total:.0%})" for k in ("decode", "forward", "top-k", "sqlite"))
        print(f"where {name}'s time goes (calling thread): {parts}; decode threads' total {s['decode threads']:.2f} s")
    if hasattr(os, "getloadavg"):
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"ratio  serial/ours  {serial / ours:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
