"""The job runner and Python's cycle collector: Qt objects are only ever destroyed on the UI thread.

Automatic cycle collection runs in whichever thread allocates when a generation fills up; a job that
allocates a lot (a model's deep copy) would otherwise destroy the UI thread's unreachable Qt objects
on its pool thread (explorer.qt.workers.UiThreadCollector).
"""

import gc
import threading

import pytest
from PySide6.QtCore import QObject

from explorer.qt.workers import Job, JobRunner, UiThreadCollector

TIMEOUT_MS = 30_000


class Recorder(QObject):
    """A Qt object that notes the thread its Python wrapper is finalised on."""

    threads: list[str] = []

    def __del__(self):
        Recorder.threads.append(threading.current_thread().name)


def orphan_cycle() -> None:
    """A Qt object reachable only through a reference cycle: only the cycle collector frees it."""
    obj = Recorder()
    obj.me = obj


def allocate(n: int) -> int:
    """Many container objects: enough to fill the youngest generation many times over."""
    kept = [[i] for i in range(n)]
    return len(kept)


def until_idle(qtbot) -> None:
    qtbot.waitUntil(lambda: not UiThreadCollector.instance().timer.isActive(), timeout=TIMEOUT_MS)


@pytest.fixture
def runner(qtbot):
    r = JobRunner(None).lanes("test", threads=2)
    yield r
    r.cancel_all()
    assert r.wait(TIMEOUT_MS)
    until_idle(qtbot)


@pytest.fixture(autouse=True)
def _gc_enabled(qtbot):
    until_idle(qtbot)  # the jobs of earlier tests have returned
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_cycles_made_on_the_ui_thread_are_collected_there_while_a_job_allocates(runner, qtbot):
    gc.collect()
    Recorder.threads = []
    orphan_cycle()
    # Without the collector, the job's first few hundred allocations start a collection on its thread.
    job = runner.start("work", Job(allocate, 200_000))
    qtbot.waitUntil(job.done.is_set, timeout=TIMEOUT_MS)
    until_idle(qtbot)
    allocate(10_000)  # automatic collection is back: this thread's allocations collect the cycle
    assert Recorder.threads == [threading.main_thread().name]


def test_collection_turned_on_while_a_job_runs_is_off_again_for_the_next(runner, qtbot):
    """Something turns automatic collection on while a job runs; the next job still allocates without
    collecting on its thread (in the full suite a test's own set-up did, and a cycle was collected on a
    pool thread)."""
    gate = threading.Event()
    first = runner.start("a", Job(gate.wait, 30))
    gc.enable()
    gc.collect()
    Recorder.threads = []
    orphan_cycle()
    second = runner.start("b", Job(allocate, 200_000))
    qtbot.waitUntil(lambda: second.returned, timeout=TIMEOUT_MS)
    gate.set()
    qtbot.waitUntil(lambda: first.returned, timeout=TIMEOUT_MS)
    until_idle(qtbot)
    allocate(10_000)
    assert Recorder.threads == [threading.main_thread().name]


def test_automatic_collection_is_off_only_while_jobs_run(runner, qtbot):
    seen = []
    gate = threading.Event()

    def report():
        seen.append(gc.isenabled())
        gate.wait(10)

    first = runner.start("a", Job(report))
    second = runner.start("b", Job(report))
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=TIMEOUT_MS)
    assert seen == [False, False]
    assert not gc.isenabled()
    gate.set()
    qtbot.waitUntil(lambda: first.returned and second.returned, timeout=TIMEOUT_MS)
    until_idle(qtbot)
    assert gc.isenabled()


def test_collection_turned_off_by_someone_else_stays_off(runner, qtbot):
    gc.disable()
    job = runner.start("a", Job(allocate, 1000))
    qtbot.waitUntil(lambda: job.returned, timeout=TIMEOUT_MS)
    until_idle(qtbot)
    assert not gc.isenabled()


def test_a_long_job_does_not_keep_garbage_from_being_collected(runner, qtbot):
    """The UI thread collects on its timer while the job is still running."""
    gc.collect()
    Recorder.threads = []
    gate = threading.Event()
    job = runner.start("a", Job(gate.wait, 30))
    orphan_cycle()
    junk = [[i] for i in range(5_000)]  # kept: the youngest generation is due
    qtbot.waitUntil(lambda: bool(Recorder.threads), timeout=TIMEOUT_MS)
    assert Recorder.threads == [threading.main_thread().name]
    assert not job.returned
    gate.set()
    del junk


def test_a_window_that_has_settled_hands_collection_back_to_python(make_window, qtbot):
    """After start-up (graph, weights, the sample classified) no job is left running: the collector's
    timer has stopped (no wake-ups while idle) and automatic collection is on again."""
    w = make_window(classify_sample=True)
    qtbot.waitUntil(lambda: w.images is not None and w.state.shown_image is not None
                    and not w.images.classify.busy, timeout=180_000)
    until_idle(qtbot)
    assert gc.isenabled()
    assert UiThreadCollector.instance().active == 0
