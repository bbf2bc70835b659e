"""Every benchmark runs, in its quick mode, in a subprocess (as pyqtgraph runs its examples): a
benchmark that crashes fails here, not when the published figures are next regenerated. The
numbers a quick run prints mean nothing; only that it ran to the end and printed its result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Each script with the line its quick run must print (the comparison it exists for).
BENCHES = {
    "bench_trace.py": "torchinfo ms",
    "bench_layout.py": "build_block_graph",
    "bench_window.py": "ms/frame",
    "bench_classify.py": "ratio  naive/ours",
    "bench_cli_classify.py": "ratio  cli/window",
    "bench_ui_stall.py": "longest event-loop stall",
    "bench_activations.py": "IG-4",
    "bench_overlay.py": "ratio  ours/plain",
    "bench_first_paint.py": "first paint",
    "bench_faithfulness.py": "ratio  naive/ours",
    "bench_slides.py": "ratio  forward/step",
    "bench_handout.py": "ratio  ours/anchor",
    "bench_featurevis.py": "ratio  plain/ours",
    "bench_gpu_input.py": "grey levels",
    "bench_knockout.py": "ratio  loop/ours",
    "bench_index.py": "ratio  serial/ours",
    "bench_metrics.py": "ratio  quantus/ours",
}


def test_every_benchmark_is_covered():
    assert sorted(BENCHES) == sorted(p.name for p in (ROOT / "bench").glob("bench_*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(BENCHES))
def test_benchmark_runs_in_quick_mode(script, tmp_path):
    # PYTHONFAULTHANDLER: a crash (a segfault at exit, say) leaves its Python stack in stderr.
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path), PYTHONFAULTHANDLER="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--quick"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{script} exited {out.returncode}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    assert BENCHES[script] in out.stdout, out.stdout[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
