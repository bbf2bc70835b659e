"""How torch runs: OpenMP threads that sleep when idle, set before torch loads by the command line (the window:
tests/qt/test_app.py), and a user's own setting kept. libgomp itself says what it read (OMP_DISPLAY_ENV)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from explorer.core.runtime import USER_MALLOC_SETTINGS, USER_WAIT_SETTINGS, prepare_torch_runtime


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


def test_once_torch_is_loaded_the_openmp_environment_is_left_alone(monkeypatch):
    import torch  # noqa: F401 - loaded, as in this test process

    for name in USER_WAIT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert "openmp" not in prepare_torch_runtime()
    assert not any(name in os.environ for name in USER_WAIT_SETTINGS)


MAPPED_GROWTH = textwrap.dedent("""
    import ctypes, sys
    from explorer.core.runtime import prepare_torch_runtime
    done = prepare_torch_runtime() if sys.argv[1] == "prepared" else []
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        raise SystemExit("no mallinfo2")
    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                         "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(24 << 20)
    print(" ".join(done), libc.mallinfo2().hblkhd - before)
""")


def mapped_growth(prepared: bool) -> tuple[list[str], int]:
    """(what prepare_torch_runtime set, bytes newly mapped for a 24 MiB malloc) in a fresh process."""
    clean = {k: v for k, v in os.environ.items() if k not in USER_MALLOC_SETTINGS}
    out = subprocess.run([sys.executable, "-c", MAPPED_GROWTH, "prepared" if prepared else "plain"], env=clean,
                         capture_output=True, text=True, timeout=60)
    if "no mallinfo2" in out.stderr:
        pytest.skip("not glibc ≥ 2.33: no mallinfo2 to read its mapped memory")
    assert out.returncode == 0, out.stderr[-3000:]
    *done, growth = out.stdout.split()
    return done, int(growth)


def test_blocks_up_to_32_mib_come_from_the_heap_and_stay_for_reuse():
    """glibc's public mallinfo2: with the thresholds set, a 24 MiB block is not a fresh mapping (which free()
    hands back to the system, to be faulted in again by the next forward); without them it is."""
    done, growth = mapped_growth(prepared=True)
    if "malloc" not in done:
        pytest.skip("not glibc: its malloc thresholds cannot be set here")
    assert growth == 0
    assert mapped_growth(prepared=False)[1] >= 24 << 20


MAIN_AGAINST_WORKER = textwrap.dedent("""
    import resource, sys, threading
    from pathlib import Path
    from explorer.core.runtime import prepare_torch_runtime
    done = prepare_torch_runtime()
    from explorer.core.classify.inference import Classifier
    from explorer.core.model.loading import load_model

    files = sorted(Path(sys.argv[1]).glob("*.jpg"))
    classifier = Classifier(load_model("googlenet", weights="none"), "cpu")
    classifier.classify(files)  # first-call costs out of the way

    def faults(out):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            classifier.classify(files)
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    main, worker = [], []
    faults(main)
    thread = threading.Thread(target=faults, args=(worker,))
    thread.start()
    thread.join()
    print(" ".join(done), main[0], worker[0])
""")


def test_classifying_on_the_main_thread_faults_no_more_pages_than_on_a_worker(tmp_path):
    """The command line classifies on its main thread, the window on a worker. With glibc's default thresholds
    the main thread's count depends on what was freed before (a large block freed raises them): in some runs
    it was ~5× the worker's, in others not; with them set it was below the worker's in every run."""
    for i in range(16):
        Image.effect_noise((320, 240), 40 + i).convert("RGB").save(tmp_path / f"noise{i}.jpg")
    clean = {k: v for k, v in os.environ.items() if k not in USER_MALLOC_SETTINGS}
    out = subprocess.run([sys.executable, "-c", MAIN_AGAINST_WORKER, str(tmp_path)], env=clean,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    *done, main, worker = out.stdout.split()
    if "malloc" not in done:
        pytest.skip("not glibc: its malloc thresholds cannot be set here")
    assert int(main) <= int(worker), (main, worker)
