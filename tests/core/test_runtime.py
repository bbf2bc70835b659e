"""How torch runs: OpenMP threads that sleep when idle, set before torch loads by the command line (the window:
tests/qt/test_app.py), and a user's own setting kept. libgomp itself says what it read (OMP_DISPLAY_ENV)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from explorer.core.runtime import USER_WAIT_SETTINGS, prepare_torch_runtime


def openmp_settings(stderr: str) -> dict[str, str]:
    """The `NAME = 'value'` lines libgomp prints when it loads with OMP_DISPLAY_ENV=VERBOSE."""
    lines = (line.strip().split(" = ", 1) for line in stderr.splitlines() if " = '" in line)
    return {name: value.strip("'") for name, value in lines}


def classify_with_openmp_shown(tmp_path, **env: str) -> dict[str, str]:
    """What libgomp read in `inception-explorer classify` on one small JPEG; skips where torch runs on
    another OpenMP (which prints no GOMP_SPINCOUNT)."""
    image = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), (90, 140, 200)).save(image)
    clean = {k: v for k, v in os.environ.items() if k not in USER_WAIT_SETTINGS}
    out = subprocess.run(
        [sys.executable, "-m", "explorer", "classify", "--model", "googlenet", "--weights", "none", str(image)],
        env=dict(clean, OMP_DISPLAY_ENV="VERBOSE", **env), capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    shown = openmp_settings(out.stderr)
    if "GOMP_SPINCOUNT" not in shown:
        pytest.skip("torch does not run on GNU libgomp here")
    return shown


def test_the_command_line_runs_torch_with_threads_that_sleep_when_idle(tmp_path):
    # Without it libgomp spins 300,000 times between parallel regions (its default when no policy is set),
    # which made `classify` 2-4x slower than the window on a machine whose cores are shared.
    shown = classify_with_openmp_shown(tmp_path)
    assert shown["GOMP_SPINCOUNT"] == "0"


def test_a_wait_setting_of_the_users_own_is_kept(tmp_path):
    assert classify_with_openmp_shown(tmp_path, GOMP_SPINCOUNT="300000")["GOMP_SPINCOUNT"] == "300000"
    assert classify_with_openmp_shown(tmp_path, OMP_WAIT_POLICY="ACTIVE")["OMP_WAIT_POLICY"] == "ACTIVE"


def test_once_torch_is_loaded_the_environment_is_left_alone(monkeypatch):
    import torch  # noqa: F401 - loaded, as in this test process

    for name in USER_WAIT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert prepare_torch_runtime() is False
    assert not any(name in os.environ for name in USER_WAIT_SETTINGS)
