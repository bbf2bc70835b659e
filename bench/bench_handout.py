"""The handout of GoogLeNet with an image: ours (the whole PDF) beside its classification + capture forward alone.

Run: .venv/bin/python bench/bench_handout.py [--model googlenet] [--image FILE] [--size 224] [--rounds 3]
     [--threads N] [--no-cli] [--quick]
(--quick, a smoke test: one round, no command-line run.)

Ours: what `inception-explorer handout MODEL --image FILE -o out.pdf` does after its imports — build the
model (random weights: the values do not change the work), its block graph, the handout (shape trace, paper
table, classification with capture, feature maps, Grad-CAM), record the drawings and write the PDF. The
anchor: the same image's classification with the capture forward alone (a fresh Classifier, as the handout
makes one). Also, unless --no-cli, the command itself in a fresh process, imports included. Issue 14's
target for GoogLeNet on the CPU: the handout ≤ 10 s. Rounds alternate ours and the anchor; medians printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch  # noqa: E402

from explorer.core.model.graphs import zoo_block_graph  # noqa: E402
from explorer.core.lecture.handout import build_handout  # noqa: E402
from explorer.core.classify.inference import Classifier  # noqa: E402
from explorer.core.model.loading import load_model  # noqa: E402
from explorer.qt.lecture.handout_pdf import ensure_app, record_drawings, write_pdf  # noqa: E402

SAMPLE = ROOT / "resources" / "samples" / "astronaut.jpg"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="googlenet")
    ap.add_argument("--image", default=str(SAMPLE))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch's CPU threads (0: its default)")
    ap.add_argument("--no-cli", action="store_true", help="skip the command-line run in a fresh process")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.quick:
        a.rounds, a.no_cli = 1, True
    ensure_app()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{a.model} at {a.size}×{a.size} with {Path(a.image).name} on the CPU, {torch.get_num_threads()} threads, "
          f"{a.rounds} rounds, load average {load:.1f}")
    out = Path(tempfile.mkdtemp()) / "handout.pdf"
    ours, anchor, parts = [], [], []
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        loaded = load_model(a.model, weights="none")
        graph = zoo_block_graph(a.model)
        t1 = time.perf_counter()
        h = build_handout(loaded, graph, (a.size, a.size), image=a.image)
        t2 = time.perf_counter()
        pdf = write_pdf(h, record_drawings(graph, h.trace, h.drawings), out)
        t3 = time.perf_counter()
        ours.append(t3 - t0)
        parts.append((t1 - t0, t2 - t1, t3 - t2))

        t0 = time.perf_counter()
        clf = Classifier(loaded, "cpu", optimize=False, graph=graph)
        r = clf.classify_captured(a.image)
        anchor.append(time.perf_counter() - t0)
        assert r.result.ok
    o, p = statistics.median(ours), statistics.median(anchor)
    m = [statistics.median(x) for x in zip(*parts)]
    print(f"pages {_pages(pdf)}, {pdf.stat().st_size / 1024:.0f} KiB")
    print(f"handout  ours {o:7.3f} s  (model {m[0]:.3f} s, content {m[1]:.3f} s, drawings + PDF {m[2]:.3f} s)   "
          f"classify + capture forward {p:7.3f} s   ratio  ours/anchor {o / p:6.2f}   "
          f"(target: ours ≤ 10 s on the CPU: {'met' if o <= 10 else 'NOT met'})")
    if not a.no_cli:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        env.pop("DISPLAY", None)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "explorer", "handout", a.model, "--weights", "none", "--image", a.image,
                        "--size", str(a.size), "-o", str(out)], check=True, env=env, capture_output=True)
        print(f"command line in a fresh process, imports included: {time.perf_counter() - t0:7.3f} s")


def _pages(pdf: Path) -> str:
    try:
        import pypdf
    except ImportError:  # a dev extra
        return "?"
    return str(len(pypdf.PdfReader(str(pdf)).pages))


if __name__ == "__main__":
    main()
