"""Event-loop stalls while the classification panel runs a CPU batch, and the batch's throughput.

A 5 ms QTimer ticks on the UI thread while the panel classifies a folder of synthetic JPEGs; the
longest gap between ticks is the longest time the window could not respond (target ≤ 50 ms). The
anchor is the engine alone (`Classifier.classify` on the same files, no UI): the ratio shows what
the panel's workers and table updates cost in throughput. Then the same for single-image drops.

Then Integrated Gradients in the real window: a MainWindow classifies a sample photo, and its
attribution panel runs IG (50 steps) on it from `AttributionPanel.run()`; the same timer measures
the stalls, and the job's `progressed` signal is counted (the progress bar's updates). The anchor is
`attribute()` alone on a thread of its own, same model object and input, no UI. Then the deletion and
insertion curves of that map from `AttributionPanel.run_faithfulness()`, twice (the second map of an
image reuses the random-order references), against `faithfulness_curves` alone on a thread.

    .venv/bin/python bench/bench_ui_stall.py [--n 40] [--size 400] [--model googlenet] [--runs 2]
                                             [--ig-steps 50] [--curve-steps 50]
                                             [--cases batch,single,ig,curves] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

TICK_MS = 5
STALL_TARGET_MS = 50.0


def make_images(folder: Path, n: int, size: int) -> list[Path]:
    """n smooth random colour images (JPEG, quality 90), size × size."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        low = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC)
        noise = rng.integers(-20, 21, (size, size, 3))
        arr = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        path = folder / f"img{i:03d}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        paths.append(path)
    return paths


class TickRecorder:
    """Records the time of every tick of a 5 ms timer on the UI thread."""

    def __init__(self):
        from PySide6.QtCore import Qt, QTimer

        self.times: list[float] = []
        self.cpu: list[float] = []  # the UI thread's own CPU time at each tick
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        self.times.append(time.perf_counter())
        self.cpu.append(time.thread_time())

    def start(self) -> None:
        self.times, self.cpu = [], []
        self._tick()
        self.timer.start()

    def stop(self) -> tuple[list[float], list[float]]:
        """(gaps between ticks, UI-thread CPU time spent within each gap), in ms."""
        self.timer.stop()
        self._tick()
        gaps = [(b - a) * 1e3 for a, b in zip(self.times, self.times[1:])]
        busy = [(b - a) * 1e3 for a, b in zip(self.cpu, self.cpu[1:])]
        return gaps, busy


def wait_for(signal, timeout_ms: int = 600_000):
    """Run the event loop until `signal` fires; returns its arguments."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    got: list = []

    def done(*args):
        got.append(args)
        loop.quit()

    signal.connect(done)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()
    signal.disconnect(done)
    if not got:
        raise SystemExit(f"timed out after {timeout_ms / 1000:.0f} s waiting for a signal")
    return got[0]


def describe(gaps: list[float], busy: list[float]) -> str:
    """The longest gap, its percentiles, and the most UI-thread CPU time spent inside one gap (a
    stall with little CPU time of our own is the thread waiting: for the GIL or for a core)."""
    order = sorted(gaps)
    p99 = order[min(len(order) - 1, int(0.99 * len(order)))]
    over = sum(1 for g in order if g > STALL_TARGET_MS)
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    return (f"longest stall {order[-1]:6.1f} ms (UI thread busy {busy[worst]:.1f} ms of it) · "
            f"p99 gap {p99:5.1f} ms · median {statistics.median(order):4.1f} ms · "
            f"{over} gaps > {STALL_TARGET_MS:.0f} ms of {len(order)} · most UI-thread CPU in one gap "
            f"{max(busy):.1f} ms")


def classify_cases(args, cases: set[str], app, loaded, recorder: TickRecorder) -> list[float]:
    """The batch and single-drop cases in a ClassifyPanel; returns their tick gaps (ms)."""
    from explorer.core.classify.inference import Classifier
    from explorer.qt.classify.classify_panel import ClassifyPanel
    from explorer.qt.workers import JobRunner

    if not cases & {"batch", "single"}:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = make_images(folder, args.n, args.size)
        print(f"{args.n} JPEGs of {args.size}×{args.size} px")

        # The anchor: the engine alone, no UI, same files (first call warms up). It runs on a
        # thread of its own, as the panel's worker does: on this machine torch's CPU kernels ran
        # several times slower from the main thread than from another one under load.
        engine = Classifier(loaded, device="cpu")
        engine.classify(files[:2])
        engine_rates: list[float] = []

        def run_engine():
            t0 = time.perf_counter()
            engine.classify(files)
            engine_rates.append(args.n / (time.perf_counter() - t0))

        for _ in range(args.runs):
            t = threading.Thread(target=run_engine)
            t.start()
            t.join()
        engine_rate = max(engine_rates)

        panel = ClassifyPanel(runner=JobRunner(None), samples=[])
        panel.resize(1000, 750)
        panel.show()
        panel.set_model(loaded, device="cpu")
        while panel.classifier is None:
            wait_for(panel.busy_changed)
        app.processEvents()

        # Baseline: the same timer with nothing running, for as long as a batch takes. On a shared
        # machine it shows the stalls that come from the OS scheduling other processes.
        from PySide6.QtCore import QEventLoop, QTimer

        recorder.start()
        idle = QEventLoop()
        QTimer.singleShot(int(1000 * args.n / engine_rate), idle.quit)
        idle.exec()
        print(f"idle   (no work): {describe(*recorder.stop())}")
        all_gaps: list[float] = []
        all_busy: list[float] = []
        rates = []
        for _ in range(args.runs if "batch" in cases else 0):
            recorder.start()
            panel.classify_paths([folder])
            wait_for(panel.batch_finished)
            gaps, busy = recorder.stop()
            all_gaps += gaps
            all_busy += busy
            rates.append(panel.throughput)
        if rates:
            panel_rate = max(rates)
            print(f"batch  (panel):  {describe(all_gaps, all_busy)}")
            print(f"throughput (best of runs): panel {panel_rate:.1f} images/s · engine alone {engine_rate:.1f} "
                  f"images/s · ratio {panel_rate / engine_rate:.2f}")

        # Single drops, one after the other: stall and drop-to-top-5 latency.
        single_gaps: list[float] = []
        single_busy: list[float] = []
        latencies = []
        for path in files[:10] if "single" in cases else []:
            recorder.start()
            t0 = time.perf_counter()
            panel.classify_paths([path])
            wait_for(panel.image_classified)
            latencies.append((time.perf_counter() - t0) * 1e3)
            wait_for(panel.image_shown)
            gaps, busy = recorder.stop()
            single_gaps += gaps
            single_busy += busy
        if latencies:
            print(f"single (panel):  {describe(single_gaps, single_busy)}")
            print(f"single drop → top-5 shown: median {statistics.median(latencies):.1f} ms, "
                  f"max {max(latencies):.1f} ms")
        panel.shutdown()
    return all_gaps + single_gaps


def wait_until(predicate, timeout_s: float = 600) -> None:
    """Run the event loop until `predicate()` holds (polled every 20 ms)."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for the window")
        loop = QEventLoop()
        QTimer.singleShot(20, loop.quit)
        loop.exec()


def ig_case(args, recorder: TickRecorder) -> list[float]:
    """Integrated Gradients from the attribution panel of a real MainWindow; returns its tick gaps (ms)."""
    from PySide6.QtCore import QEventLoop, QSettings, QTimer

    from explorer.core.attribution.methods import attribute
    from explorer.qt.window.main_window import MainWindow

    with tempfile.TemporaryDirectory() as tmp:
        settings = QSettings(str(Path(tmp) / "bench.ini"), QSettings.Format.IniFormat)
        window = MainWindow(args.model, weights="none", allow_download=False, settings=settings, restore=False,
                            classify_sample=True)
        window.resize(1600, 1000)
        window.show()
        # The window classifies a sample photo and hands its network input to the attribution panel.
        wait_until(lambda: window.images is not None and window.images.attribution.x is not None
                   and window.session.captures is not None)
        panel = window.images.attribution
        window.images.attribution_dock.raise_()
        panel.set_method("integrated_gradients")
        panel.ig_steps.setValue(args.ig_steps)
        wait_until(lambda: window.images.classify.classifier is not None and not window.images.runner.running(
            "capture_model"))
        settle = QEventLoop()
        QTimer.singleShot(500, settle.quit)
        settle.exec()
        model, x, params, target = panel.attributions.networks_on("cpu"), panel.x, panel.params(), panel.target()
        print(f"Integrated Gradients, {params.ig_steps} steps, internal batch {params.internal_batch_size}, "
              f"input {tuple(x.shape)}, in the main window's attribution panel")

        # The anchor: attribute() alone on a thread of its own, same model object and input, no UI.
        engine_s: list[float] = []

        def run_engine():
            t0 = time.perf_counter()
            attribute(model, x, "integrated_gradients", target, params=params)
            engine_s.append(time.perf_counter() - t0)

        for _ in range(args.runs):
            t = threading.Thread(target=run_engine)
            t.start()
            t.join()

        recorder.start()
        idle = QEventLoop()
        QTimer.singleShot(int(1000 * min(engine_s)), idle.quit)
        idle.exec()
        print(f"idle   (no work): {describe(*recorder.stop())}")

        all_gaps: list[float] = []
        all_busy: list[float] = []
        window_s: list[float] = []
        updates: list[int] = []
        for _ in range(args.runs):
            seen: list[tuple[int, int]] = []  # (value, maximum) of the progress bar at each update

            def on_value(v, seen=seen):
                if panel.progress.maximum() > 0:
                    seen.append((v, panel.progress.maximum()))

            panel.progress.valueChanged.connect(on_value)
            recorder.start()
            t0 = time.perf_counter()
            panel.run()
            wait_for(panel.attribution_finished)
            window_s.append(time.perf_counter() - t0)
            gaps, busy = recorder.stop()
            panel.progress.valueChanged.disconnect(on_value)
            all_gaps += gaps
            all_busy += busy
            updates.append(len(seen))
            last = f"{seen[-1][0]}/{seen[-1][1]}" if seen else "none"
            print(f"  run: {window_s[-1]:.1f} s, {len(seen)} progress-bar updates (last {last}), "
                  f"status: {panel.status.text()}")
        print(f"IG     (window): {describe(all_gaps, all_busy)}")
        print(f"IG time (best of runs): window {min(window_s):.2f} s · engine alone {min(engine_s):.2f} s · "
              f"ratio {min(engine_s) / min(window_s):.2f} (throughput, window / engine) · "
              f"progress-bar updates per run {updates}")
        if "curves" in args.cases:
            all_gaps += curves_case(args, recorder, panel)
        window.close()
        # Let the window's workers finish and its widgets go before the interpreter tears Qt down:
        # a pool thread still running then can crash the process at exit.
        window.images.runner.wait(60_000)
        window.deleteLater()
        settle = QEventLoop()
        QTimer.singleShot(100, settle.quit)
        settle.exec()
    return all_gaps


def curves_case(args, recorder: TickRecorder, panel) -> list[float]:
    """Deletion and insertion curves of the panel's map (the IG map just made) from `run_faithfulness`:
    the first run classifies every image, the second reuses the random-order references. The anchor is
    `faithfulness_curves` alone on a thread of its own, same network, map and input, no UI."""
    from explorer.core.attribution.faithfulness import curve_layout, faithfulness_curves

    panel.curve_steps.setValue(args.curve_steps)
    model, _ = panel.attributions.evidence_model(True)  # the network the panel's curves run on
    x, heat, target = panel.x, panel.result.heatmap, panel.result.target
    engine_s: list[float] = []

    def run_engine():
        t0 = time.perf_counter()
        faithfulness_curves(model, x, heat, target, steps=args.curve_steps)
        engine_s.append(time.perf_counter() - t0)

    t = threading.Thread(target=run_engine)
    t.start()
    t.join()
    streams, batch = curve_layout("cpu")
    print(f"Faithfulness curves, {args.curve_steps} steps, {streams} forward(s) of {batch} images at once, "
          f"in the main window's attribution panel")
    gaps_all: list[float] = []
    busy_all: list[float] = []
    for label in ("first map", "a further map (random references reused)"):
        recorder.start()
        t0 = time.perf_counter()
        panel.run_faithfulness()
        wait_for(panel.faithfulness_finished)
        seconds = time.perf_counter() - t0
        gaps, busy = recorder.stop()
        gaps_all += gaps
        busy_all += busy
        print(f"  {label}: {seconds:.1f} s · {describe(gaps, busy)}")
    print(f"curves (window): {describe(gaps_all, busy_all)} · engine alone, first map {engine_s[0]:.2f} s")
    return gaps_all


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="images in the batch")
    ap.add_argument("--size", type=int, default=400, help="side of each image in pixels")
    ap.add_argument("--model", default="googlenet")
    ap.add_argument("--runs", type=int, default=2, help="batch runs (the longest stall of all is reported)")
    ap.add_argument("--ig-steps", type=int, default=50, help="Integrated Gradients steps")
    ap.add_argument("--curve-steps", type=int, default=50, help="faithfulness curve steps")
    ap.add_argument("--cases", default="batch,single,ig,curves",
                    help="which cases to run, comma-separated (curves runs after ig, on its map)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 3 images of 64 px, one run, IG with 2 steps (numbers mean nothing)")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.size, args.runs, args.ig_steps, args.curve_steps = 3, 64, 1, 2, 4
    cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    if not cases <= {"batch", "single", "ig", "curves"}:
        ap.error(f"unknown case in --cases {args.cases!r}: batch, single, ig, curves")

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])

    import torch

    from explorer.core.model.loading import load_model

    loaded = load_model(args.model, weights="none", allow_download=False)
    print(f"model {args.model} (random weights), CPU, torch {torch.__version__}, "
          f"{torch.get_num_threads()} intra-op threads, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    recorder = TickRecorder()
    gaps = classify_cases(args, cases, app, loaded, recorder)
    if "ig" in cases:
        gaps += ig_case(args, recorder)
    longest = max(gaps)
    verdict = "PASS" if longest <= STALL_TARGET_MS else "FAIL"
    print(f"longest event-loop stall {longest:.1f} ms (target ≤ {STALL_TARGET_MS:.0f} ms): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
