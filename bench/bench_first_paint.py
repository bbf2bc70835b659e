"""Cold start on a real X server under load: when does the screen first show the window's content?

Starts Xvfb with its framebuffer in a file (`-fbdir`), keeps the CPU busy with `--load` spinning
processes (a machine doing other work), starts the app and reads the framebuffer every 50 ms. "Content"
is the moment the window's area stops being one flat colour (black, or the bare background): the
shipped preview of the graph drawn. The anchor is a bare QMainWindow with a text label started the
same way: what Qt alone needs to put pixels on screen. The window's own report of the graph drawn
(INCEPTION_EXPLORER_BENCH) is printed beside it.

    .venv/bin/python bench/bench_first_paint.py [--runs 3] [--load 2] [--quick]

Needs Xvfb (apt-get install xvfb); without it the benchmark says so and exits 0.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

APP = "from explorer.qt.app import main; raise SystemExit(main(weights='none', allow_download=False))"
ANCHOR = """
import sys
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow
app = QApplication(sys.argv)
w = QMainWindow(); w.setCentralWidget(QLabel("Inception Explorer " * 20)); w.resize(1280, 860); w.show()
app.exec()
"""


def read_xwd(path: str) -> np.ndarray:
    """The framebuffer Xvfb keeps in an XWD file, as an (h, w) array of 32-bit pixels."""
    with open(path, "rb") as f:
        data = f.read()
    header = struct.unpack(">25I", data[:100])
    header_size, width, height, bpp, bytes_per_line, ncolors = (header[0], header[4], header[5], header[11],
                                                               header[12], header[19])
    if bpp != 32:
        raise SystemExit(f"unexpected framebuffer depth {bpp}")
    start = header_size + 12 * ncolors
    pixels = np.frombuffer(data, dtype=">u4", count=height * bytes_per_line // 4, offset=start)
    return pixels.reshape(height, bytes_per_line // 4)[:, :width]


def has_content(frame: np.ndarray) -> bool:
    """More than a flat area: many distinct colours in the top-left 1200×800 (the window's place)."""
    region = frame[:800, :1200]
    return len(np.unique(region[::4, ::4])) > 40


def spin(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def run_once(code: str, display: str, fbfile: str, bench_env: bool) -> tuple[float | None, dict]:
    env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb", HOME=tempfile.mkdtemp())
    if bench_env:
        env.update(INCEPTION_EXPLORER_BENCH="1", INCEPTION_EXPLORER_T0=repr(time.time()))
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    first = None
    while time.monotonic() - t0 < 60:
        if first is None and has_content(read_xwd(fbfile)):
            first = time.monotonic() - t0
            if not bench_env:
                break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None and not bench_env:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    times = {}
    for line in (out or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            times[key] = float(value)
        except ValueError:
            pass
    return first, times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--load", type=int, default=2, help="busy processes beside the app")
    p.add_argument("--quick", action="store_true", help="one run without load (smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.load = 1, 0
    if shutil.which("Xvfb") is None:
        print("first paint: skipped, Xvfb is not installed (apt-get install xvfb)")
        return 0
    fbdir = tempfile.mkdtemp()
    display = f":{120 + os.getpid() % 50}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1600x1000x24", "-fbdir", fbdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=spin, args=(stop,), daemon=True) for _ in range(args.load)]
    try:
        fbfile = os.path.join(fbdir, "Xvfb_screen0")
        for _ in range(100):
            if os.path.exists(fbfile):
                break
            time.sleep(0.05)
        for h in hogs:
            h.start()
        ours, anchor = [], []
        for i in range(args.runs):
            a, _ = run_once(ANCHOR, display, fbfile, bench_env=False)
            time.sleep(0.5)
            o, times = run_once(APP, display, fbfile, bench_env=True)
            time.sleep(0.5)
            anchor.append(a if a is not None else float("nan"))
            ours.append(o if o is not None else float("nan"))
            print(f"run {i + 1}: content on screen {ours[-1]:.2f} s (bare Qt window {anchor[-1]:.2f} s);"
                  f" the app reports window shown {times.get('window_shown_s', float('nan')):.2f} s,"
                  f" graph drawn {times.get('graph_drawn_s', float('nan')):.2f} s,"
                  f" engine ready {times.get('engine_ready_s', float('nan')):.2f} s", flush=True)
        o, a = statistics.median(ours), statistics.median(anchor)
        print(f"first paint, median, {args.load} busy processes beside it: content on screen {o:.2f} s vs bare Qt window"
              f" {a:.2f} s, ratio {o / a:.2f}× (target: content within 1 s)")
    finally:
        stop.set()
        for h in hogs:
            h.join(timeout=5)
        xvfb.terminate()
        xvfb.wait(timeout=10)
        shutil.rmtree(fbdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
