"""The command line's `classify` against the window's classify panel: the same folder of distinct JPEGs, the
same model and random weights, each in a fresh process, run alternately.

    python bench/bench_cli_classify.py [--model googlenet|inception_v3] [--n 200] [--size 640x480] [--runs 3]
                                       [--busy 0,1] [--quick]   (smoke test: GoogLeNet, 8 small JPEGs, one round)

command line: `python -m explorer classify --model M --weights none FOLDER`, as a user types it; its rate is the
       one it prints (images over the time from the first batch to the last result, after the model loaded).
window: the anchor. A `ClassifyPanel` (headless Qt) on the window's `JobRunner`, given the folder as a drop gives
       it (`classify_paths`), in a process that starts as the window's does (`prepare_torch_runtime`, then
       Qt); its rate is the one its status line shows (the panel's `throughput`).
as before: each of the two with `explorer.core.runtime.prepare_torch_runtime` skipped: torch on OpenMP's and
       glibc malloc's defaults, as both ran before it.
Each condition of --busy runs every side beside that many busy processes (a Python loop each): the slowness
came where cores were shared (the issue's machine: two cores, three people), which a quiet machine hides.
The ratio is command line / window (target ≥ 1). The ceiling: the network's FLOPs per image against a large
matrix product's rate on this machine's threads, the most images per second any path could classify.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The command line's closing line: "200 image(s) in 9.52 s (21.0 images/s) on cpu, 0 failed".
CLI_RATE = re.compile(r"^(\d+) image\(s\) in [\d.]+ s \(([\d.]+) images/s\)", re.M)
#: The command line as it ran before `prepare_torch_runtime`: the same entry point with that step skipped.
CLI_AS_BEFORE = ("import sys, explorer.core.runtime as runtime; runtime.prepare_torch_runtime = lambda: []; "
                 "from explorer.launcher import main; sys.exit(main(sys.argv[1:]))")


def make_jpegs(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """n distinct photo-like JPEGs (smooth colour fields, a ramp, grain; quality 90), none alike."""
    import numpy as np
    from PIL import Image

    w, h = size
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        low = rng.integers(0, 256, (rng.integers(3, 12), rng.integers(3, 12), 3), dtype=np.uint8)
        a = np.asarray(Image.fromarray(low).resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
        a += (np.arange(w, dtype=np.int16) * rng.integers(10, 80) // w)[None, :, None]
        a += rng.integers(-12, 13, (h, w, 1), dtype=np.int16)
        path = folder / f"photo{i:03d}.jpg"
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def child_env(tmp: Path) -> dict[str, str]:
    """This environment without the settings `prepare_torch_runtime` would leave alone, for a child."""
    from explorer.core.runtime import USER_MALLOC_SETTINGS, USER_WAIT_SETTINGS

    env = {k: v for k, v in os.environ.items() if k not in USER_WAIT_SETTINGS + USER_MALLOC_SETTINGS}
    env.update(QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp), PYTHONFAULTHANDLER="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return env


def run_cli(model: str, folder: Path, tmp: Path, as_before: bool = False) -> float:
    """The command line's own rate (images/s) on `folder`."""
    start = ["-c", CLI_AS_BEFORE] if as_before else ["-m", "explorer"]
    cmd = [sys.executable, *start, "classify", "--model", model, "--weights", "none", str(folder)]
    out = subprocess.run(cmd, env=child_env(tmp), cwd=tmp, capture_output=True, text=True, timeout=1800)
    found = CLI_RATE.search(out.stdout)
    if out.returncode != 0 or found is None:
        raise SystemExit(f"classify exited {out.returncode}:\n{out.stdout[-1500:]}\n{out.stderr[-3000:]}")
    return float(found.group(2))


def run_window(model: str, folder: Path, tmp: Path, as_before: bool = False) -> float:
    """The classify panel's rate (images/s) on `folder`, in a process of its own (`--window-side`)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--window-side", str(folder), "--model", model,
           *(["--as-before"] if as_before else [])]
    out = subprocess.run(cmd, env=child_env(tmp), cwd=tmp, capture_output=True, text=True, timeout=1800)
    found = re.search(r"^window_rate ([\d.]+)", out.stdout, re.M)
    if out.returncode != 0 or found is None:
        raise SystemExit(f"the window side exited {out.returncode}:\n{out.stdout[-1500:]}\n{out.stderr[-3000:]}")
    return float(found.group(1))


def window_side(folder: Path, model: str, as_before: bool) -> int:
    """Classify `folder` in a headless ClassifyPanel, as a drop on the window would; print its rate."""
    from explorer.core.runtime import prepare_torch_runtime

    if not as_before:
        prepare_torch_runtime()  # what explorer.qt.app.main does first
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from explorer.core.model.loading import load_model
    from explorer.qt.classify.classify_panel import ClassifyPanel
    from explorer.qt.workers import JobRunner

    app = QApplication.instance() or QApplication([])
    panel = ClassifyPanel(runner=JobRunner(None), samples=[])
    panel.resize(1000, 750)
    panel.show()
    panel.set_model(load_model(model, weights="none"), device="cpu")
    finished: list = []
    panel.batch_finished.connect(finished.append)
    deadline = time.monotonic() + 1800

    def wait(done) -> None:
        while not done():
            if time.monotonic() > deadline:
                raise SystemExit("the panel did not finish in 30 minutes")
            loop = QEventLoop()
            QTimer.singleShot(20, loop.quit)
            loop.exec()

    wait(lambda: panel.classifier is not None and not panel.busy)
    panel.classify_paths([folder])
    wait(lambda: bool(finished))
    print(f"window_rate {panel.throughput:.3f} ({len(finished[0])} images)", flush=True)
    panel.shutdown()
    app.processEvents()
    return 0


def matmul_rate(quick: bool) -> float:
    """FLOP/s of a large float32 matrix product on this process's threads: the best of three."""
    import torch

    n = 512 if quick else 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(3 if quick else 10):
            a @ b
        best = max(best, 2 * n ** 3 * (3 if quick else 10) / (time.perf_counter() - t0))
    return best


def ceiling(model: str, rate: float) -> str:
    """The most images per second any float32 path could reach here: FLOPs per image over the best matrix
    product rate measured (before and after the runs: a shared machine's load comes and goes)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from explorer.core.model.loading import load_model

    loaded = load_model(model, weights="none")
    h, w = loaded.spec.native_size
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        loaded.module(torch.zeros(1, 3, h, w))
    flops = fc.get_total_flops()
    return (f"ceiling: {flops / 1e9:.2f} GFLOP per image at {h}×{w}, matrix product {rate / 1e9:.0f} GFLOP/s on "
            f"{torch.get_num_threads()} threads (best before and after the runs) → at most {rate / flops:.1f} "
            "images/s (the forward alone, decoding not counted)")


@contextlib.contextmanager
def busy_processes(n: int):
    """n processes that each keep a core busy (a Python loop), as other programs on a shared machine do."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def run_rounds(sides: dict, rounds: int, busy: int) -> dict[str, list[float]]:
    """Every side once per round, in turn, beside `busy` busy processes; the rates (images/s) per side."""
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(rounds):
        with busy_processes(busy):
            for name, run in sides.items():
                rates[name].append(run())
        load = f" (load average {os.getloadavg()[0]:.1f})" if hasattr(os, "getloadavg") else ""
        print(f"  round {r + 1}: " + " · ".join(f"{name} {v[-1]:.1f}" for name, v in rates.items())
              + f" images/s{load}", flush=True)
    return rates


def report(rates: dict[str, list[float]]) -> None:
    for name, v in rates.items():
        print(f"{name:22s} best {max(v):6.1f} images/s · median {statistics.median(v):6.1f} · runs "
              + ", ".join(f"{x:.1f}" for x in v))

    def ratio(a: str, b: str) -> str:
        best, median = max(rates[a]) / max(rates[b]), statistics.median(rates[a]) / statistics.median(rates[b])
        return f"{best:.2f} best of runs, {median:.2f} median"

    print(f"ratio  cli/window  {ratio('command line', 'window')} (target ≥ 1); before the change: "
          f"{ratio('command line as before', 'window as before')}; the window now/before "
          f"{ratio('window', 'window as before')}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="googlenet", choices=("googlenet", "inception_v3"))
    ap.add_argument("--n", type=int, default=200, help="distinct JPEGs in the folder")
    ap.add_argument("--size", default="640x480", help="their size, W×H")
    ap.add_argument("--runs", type=int, default=3, help="alternating rounds (each side once per round)")
    ap.add_argument("--busy", default="0,1", help="busy processes beside the runs, one condition each (0,1)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 8 JPEGs of 320×240, one round")
    ap.add_argument("--window-side", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--as-before", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.window_side is not None:
        return window_side(args.window_side, args.model, args.as_before)
    if args.quick:
        args.n, args.size, args.runs, args.model = 8, "320x240", 1, "googlenet"
    size = tuple(int(v) for v in args.size.lower().replace("×", "x").split("x"))
    load = f", load average {os.getloadavg()[0]:.1f} at start" if hasattr(os, "getloadavg") else ""
    print(f"model {args.model} (random weights), CPU, {os.cpu_count()} cores{load}")
    sides = {"command line": lambda: run_cli(args.model, folder, tmp),
             "window": lambda: run_window(args.model, folder, tmp),
             "command line as before": lambda: run_cli(args.model, folder, tmp, as_before=True),
             "window as before": lambda: run_window(args.model, folder, tmp, as_before=True)}
    from explorer.core.runtime import prepare_torch_runtime

    prepare_torch_runtime()  # this process measures the matrix product, as the window and the command line run
    rate = matmul_rate(args.quick)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        folder = tmp / "photos"
        folder.mkdir()
        make_jpegs(folder, args.n, size)
        print(f"{args.n} distinct JPEGs of {size[0]}×{size[1]} px; {args.runs} round(s), the sides alternating")
        for busy in (int(b) for b in args.busy.split(",")):
            print(f"== beside {busy} busy process(es) started by the bench (a Python loop each, as another "
                  "program on a shared core)" if busy else "== nothing else started by the bench")
            report(run_rounds(sides, args.runs, busy))
    print(ceiling(args.model, max(rate, matmul_rate(args.quick))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
