"""One job runner: the window makes it, every widget runs its jobs in a lane group of it, one pool.

A group's slots are its own (a new request cancels only its own slot's job); a group runs at most its own
number of jobs at once (the image panels one at a time), and no group waits behind another's work.
"""

import threading

import pytest
from PySide6.QtCore import QObject, QThreadPool

from explorer.qt.workers import Job

TIMEOUT_MS = 30_000


def blocker(started: threading.Event, release: threading.Event, *, progress=None, cancel=None) -> str:
    """Says it started, then waits for `release` (or its cancellation)."""
    started.set()
    while not release.wait(0.01):
        cancel.raise_if_cancelled()
    return "done"


class Probe:
    """A job that blocks until released, and what its callbacks saw."""

    def __init__(self, lanes, slot: str):
        self.started, self.release = threading.Event(), threading.Event()
        self.outcome: list[str] = []
        self.job = lanes.start(slot, Job(blocker, self.started, self.release, wants_progress=True),
                               on_success=self.outcome.append, on_cancel=lambda: self.outcome.append("cancelled"))


@pytest.fixture
def release_all():
    probes: list[Probe] = []
    yield probes
    for p in probes:
        p.release.set()


def probe(release_all, lanes, slot: str) -> Probe:
    p = Probe(lanes, slot)
    release_all.append(p)
    return p


def test_a_window_and_its_docks_use_one_runner_and_one_pool(make_window, qtbot, release_all):
    w = make_window()
    qtbot.waitUntil(lambda: w.images is not None, timeout=TIMEOUT_MS)
    w.session.model_names = ("torchvision:resnet18",)  # listed already: no worker
    w.models.open_model_dialog()
    compare = w.compare.open()
    im = w.images
    groups = [w.runner, im.runner, im.classify.runner, im.attribution.runner, im.shares.runner, im.channel.runner]
    assert all(g.runner is w.jobs for g in groups)
    # The session runs every job, the Open-model dialog's and the Compare window's too, on that runner.
    assert w.session.runner is w.jobs and compare.session is w.session and w.models.open_dialog.session is w.session
    assert len(w.findChildren(QThreadPool)) == 1 and w.findChildren(QThreadPool)[0] is w.jobs.pool
    # The image panels share one group (one job at a time among them); the others have their own.
    assert im.attribution.runner is im.runner and im.shares.runner is im.runner and im.channel.runner is im.runner
    qtbot.waitUntil(lambda: compare.comparison is not None, timeout=TIMEOUT_MS)
    compare_group = next(g for g in w.jobs._groups if g.prefix == "compare")
    own = [w.runner, im.runner, im.classify.runner, compare_group]
    assert len({g.prefix for g in own}) == 4
    assert [g.threads for g in own] == [2, 1, 3, 1]

    # The same slot name in two widgets' groups: neither request cancels the other.
    window_job, classify_job = probe(release_all, w.runner, "probe"), probe(release_all, im.classify.runner, "probe")
    assert window_job.started.wait(10) and classify_job.started.wait(10)
    assert w.runner.running("probe") is window_job.job and im.classify.runner.running("probe") is classify_job.job
    for p in (window_job, classify_job):
        p.release.set()
    qtbot.waitUntil(lambda: window_job.outcome == ["done"] and classify_job.outcome == ["done"], timeout=TIMEOUT_MS)
    compare.shutdown()


def test_a_group_runs_its_jobs_one_at_a_time_in_order(job_runner, qtbot, release_all):
    images = job_runner.lanes("images", threads=1)
    first, second, third = (probe(release_all, images, slot) for slot in ("capture_model", "attribution", "examples"))
    assert first.started.wait(10)
    assert not second.started.wait(0.3) and not third.started.is_set()
    first.release.set()
    assert second.started.wait(10)
    assert not third.started.wait(0.3)
    second.release.set()
    assert third.started.wait(10)
    third.release.set()
    qtbot.waitUntil(lambda: [p.outcome for p in (first, second, third)] == [["done"]] * 3, timeout=TIMEOUT_MS)


def test_no_group_waits_behind_another_groups_work(job_runner, qtbot, release_all):
    """Every group full of long jobs: the window's two jobs (a download and a graph) still start at once."""
    images, classify = job_runner.lanes("images", threads=1), job_runner.lanes("classify", threads=3)
    busy = [probe(release_all, images, "attribution"), probe(release_all, images, "branch_shares")]
    busy += [probe(release_all, classify, slot) for slot in ("preview", "prepare", "classify")]
    window = job_runner.lanes("window", threads=2)
    download, graph = probe(release_all, window, "weights"), probe(release_all, window, "graph")
    assert download.started.wait(10) and graph.started.wait(10)
    assert all(p.started.wait(10) for p in busy[2:])
    assert not busy[1].started.is_set()  # behind its own group's job only
    third = probe(release_all, window, "overlay")
    assert not third.started.wait(0.3)  # the window's group keeps its two at once
    graph.release.set()
    assert third.started.wait(10)


def test_a_request_cancels_its_own_slots_job_and_a_waiting_job_leaves_at_once(job_runner, qtbot, release_all):
    images = job_runner.lanes("images", threads=1)
    running = probe(release_all, images, "attribution")
    assert running.started.wait(10)
    waiting = probe(release_all, images, "examples")
    superseding = probe(release_all, images, "examples")  # the same slot: the waiting one is cancelled
    qtbot.waitUntil(lambda: waiting.outcome == ["cancelled"], timeout=TIMEOUT_MS)
    assert not waiting.started.is_set() and images.running("examples") is superseding.job
    assert not superseding.started.is_set() and running.outcome == []  # still behind the running one
    running.release.set()
    assert superseding.started.wait(10)
    superseding.release.set()
    qtbot.waitUntil(lambda: superseding.outcome == ["done"], timeout=TIMEOUT_MS)


def test_cancel_all_and_wait_stop_every_group(job_runner, qtbot, release_all):
    groups = [job_runner.lanes(name, threads=n) for name, n in (("window", 2), ("images", 1), ("classify", 3))]
    probes = [probe(release_all, g, slot) for g in groups for slot in ("a", "b")]
    job_runner.cancel_all()
    assert job_runner.wait(TIMEOUT_MS)
    qtbot.waitUntil(lambda: all(p.outcome == ["cancelled"] for p in probes), timeout=TIMEOUT_MS)
    assert all(g.running("a") is None and g.running("b") is None for g in groups)


def test_a_groups_own_cancel_and_wait_leave_the_others_running(job_runner, qtbot, release_all):
    compare, window = job_runner.lanes("compare", threads=1), job_runner.lanes("window", threads=2)
    comparing, loading = probe(release_all, compare, "compare"), probe(release_all, window, "graph")
    assert comparing.started.wait(10) and loading.started.wait(10)
    compare.cancel_all()
    assert compare.wait(TIMEOUT_MS)
    qtbot.waitUntil(lambda: comparing.outcome == ["cancelled"], timeout=TIMEOUT_MS)
    assert window.running("graph") is loading.job and not loading.job.done.is_set()


def test_a_group_gone_with_its_widget_calls_back_no_more(job_runner, qtbot, release_all):
    owner = QObject()
    group = job_runner.lanes("compare", threads=1, parent=owner)
    gone = probe(release_all, group, "compare")
    assert gone.started.wait(10)
    owner.deleteLater()
    qtbot.waitUntil(lambda: gone.job.token.cancelled, timeout=TIMEOUT_MS)
    assert job_runner.wait(TIMEOUT_MS)
    qtbot.wait(50)
    assert gone.outcome == []
    again = job_runner.lanes("compare", threads=1)
    assert again.prefix == "compare-2"  # a name is never reused: no stale job answers to it
