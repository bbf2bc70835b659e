"""Start-up time of the window: cold process start to window shown, graph drawn, engine ready.

The graph is drawn from the shipped preview (resources/graphs) before torch has imported; the
engine is ready when the live block graph has replaced it (then any input size retraces).

Each run is a fresh `python -c "from explorer.qt.app import main; main()"` process (offscreen
unless DISPLAY is set), which prints both times and quits once the graph is drawn. The first run
is "cold" (files not in the OS cache yet, unless something else just read them), the next ones
"warm". Targets on a 2-core machine: window ≤ 1 s, graph ≤ 4 s. Then, in this process, the time
to repaint the largest zoo model with every block expanded (60 fps = 16.7 ms a frame).

    .venv/bin/python bench/bench_window.py [--runs 3] [--quick]

--quick (a smoke test): one run, then two frames of GoogLeNet instead of the largest model.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

CODE = "from explorer.qt.app import main; raise SystemExit(main(weights='none', allow_download=False))"


def run_once(env: dict[str, str]) -> tuple[float, float, float]:
    env = dict(env, INCEPTION_EXPLORER_BENCH="1", INCEPTION_EXPLORER_T0=repr(time.time()))
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=300)
    keys = ("window_shown_s", "graph_drawn_s", "engine_ready_s")
    times = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key in keys:
            times[key] = float(value)
    if out.returncode != 0 or len(times) != len(keys):
        raise SystemExit(f"run failed (exit {out.returncode}):\n{out.stdout}\n{out.stderr[-2000:]}")
    return tuple(times[k] for k in keys)


def paint_benchmark(frames: int = 30, model: str | None = None) -> None:
    """Milliseconds to repaint a 1600×1000 view of `model` (default: the largest zoo model), every
    block expanded."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from explorer.core.model.zoo import model_names
    from explorer.qt.window.main_window import MainWindow
    from explorer.core.model.graphs import zoo_block_graph as load_block_graph

    app = QApplication.instance() or QApplication([])
    largest = model or max(model_names(), key=lambda n: len(load_block_graph(n).nodes()))
    settings = QSettings(os.path.join(tempfile.mkdtemp(), "bench.ini"), QSettings.Format.IniFormat)
    # No sample classification: its worker threads would compete with the painting measured here.
    w = MainWindow(largest, weights="none", allow_download=False, settings=settings, classify_sample=False)
    w.resize(1600 + 400, 1000)
    w.show()
    loop = QEventLoop()
    w.graph_ready.connect(loop.quit)
    QTimer.singleShot(120_000, loop.quit)
    loop.exec()
    # Let the start-up workers (weights, classifier, capture model) finish: measure painting alone.
    if w.loaded is None:
        w.model_loaded.connect(loop.quit)
        loop.exec()
    end = time.perf_counter() + 5
    while time.perf_counter() < end or (w.images is not None and not w.images.runner.wait(0)):
        app.processEvents()
        time.sleep(0.01)
    w.graph_page.expand_all()
    view = w.view
    for label, zoom in (("fit", None), ("30 %", 0.3), ("100 %", 1.0)):
        # "fit": the whole drawing on screen, the most items per frame (Fit to window itself stops
        # zooming out where text would become unreadable).
        view.fit(min_zoom=0) if zoom is None else view.set_zoom(zoom)
        view.viewport().repaint()  # the first frame at a zoom fills the item caches
        times = []
        for i in range(frames):
            # Panning: scroll a little, repaint synchronously, as a drag does.
            view.verticalScrollBar().setValue(view.verticalScrollBar().value() + (13 if i % 2 else -13))
            t = time.perf_counter()
            view.viewport().repaint()
            times.append(time.perf_counter() - t)
        ms = 1000 * statistics.median(times)
        print(f"pan {largest} all expanded ({len(view.boxes)} boxes), zoom {label}: {ms:.1f} ms/frame"
              f" ({1000 / ms:.0f} fps)")
    # Zooming re-renders every visible item at the new scale.
    view.fit(min_zoom=0)
    times = []
    for i in range(frames):
        view.zoom_by(1.1 if i % 2 else 1 / 1.1)
        t = time.perf_counter()
        view.viewport().repaint()
        times.append(time.perf_counter() - t)
    print(f"zoom step at fit: {1000 * statistics.median(times):.1f} ms/frame")
    w.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-paint", action="store_true", help="skip the repaint benchmark")
    ap.add_argument("--quick", action="store_true", help="smoke test: one run, two frames of GoogLeNet")
    args = ap.parse_args()
    if args.quick:
        args.runs = 1
    env = dict(os.environ)
    if not env.get("DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    # Settings of the benchmark runs stay out of the user's.
    env["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="bench-window-")
    results = []
    for i in range(args.runs):
        shown, drawn, ready = run_once(env)
        label = "cold" if i == 0 else "warm"
        print(f"run {i + 1} ({label}): window shown {shown:.2f} s, graph drawn {drawn:.2f} s,"
              f" engine ready {ready:.2f} s")
        results.append((shown, drawn, ready))
    if len(results) > 1:
        warm = results[1:]
        print(f"warm median: window shown {statistics.median(r[0] for r in warm):.2f} s (target ≤ 1),"
              f" graph drawn {statistics.median(r[1] for r in warm):.2f} s (target ≤ 4),"
              f" engine ready (torch imported, any size) {statistics.median(r[2] for r in warm):.2f} s")
    if not args.no_paint:
        paint_benchmark(2, "googlenet") if args.quick else paint_benchmark()


if __name__ == "__main__":
    main()
