"""The real entry point in a fresh process: the window comes up before torch is imported."""

import os
import subprocess
import sys
import time

import pytest

CODE = "from explorer.qt.app import main; raise SystemExit(main(weights='none', allow_download=False))"


@pytest.mark.slow
def test_main_shows_window_then_graph(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path),
               INCEPTION_EXPLORER_BENCH="1", INCEPTION_EXPLORER_T0=repr(time.time()), OMP_DISPLAY_ENV="VERBOSE")
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines["torch_imported_at_window"] == "False"
    shown, drawn, ready = (float(lines[k]) for k in ("window_shown_s", "graph_drawn_s", "engine_ready_s"))
    assert 0 < shown <= ready and 0 < drawn <= ready
    assert "Traceback" not in out.stderr
    # The engine's worker loaded torch with OpenMP's threads sleeping when idle, as the command line does
    # (explorer.core.runtime; libgomp says what it read, where torch runs on it).
    if "GOMP_SPINCOUNT = " in out.stderr:
        assert "GOMP_SPINCOUNT = '0'" in out.stderr
    # The window remembered the model it showed.
    ini = tmp_path / "InceptionExplorer" / "Inception Explorer.ini"
    assert "googlenet" in ini.read_text()
