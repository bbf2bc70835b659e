"""The one job runner: engine tasks run on a thread pool; their events reach the UI thread through signals.

A `Job` runs either a generator task `fn(*args, cancel=token)` from explorer.core.session.tasks, whose typed
events (dataclasses; `Progress` among them) are handed to the UI thread one by one, or a plain function
`fn(*args, progress=…, cancel=…)` whose return value is the result.

The window constructs the one `JobRunner` (one QThreadPool) and hands it to its widgets; each takes a lane
group of it (`runner.lanes("classify", threads=3)`): one job per slot (one per purpose: "graph",
"weights", "classify", …), a new request cancelling its slot's running job, whatever a cancelled or
superseded job still says dropped; the groups' slots are their own, so widgets never cancel each other.
A group runs at most its own number of jobs at once (the image panels' one at a time: they share one
network per device), and the pool has a thread for every job started, so no group waits behind another.

Signals (JobSignals, emitted on the pool thread, received queued on the UI thread)
--------------------------------------------------------------------------------
event(object)        a typed event of a generator task (throttled Progress included)
succeeded(object)    the function's return value (None for a generator task)
failed(str)          the exception as a message for the window
cancelled()          the job stopped at a cancel check

Lanes.busy_changed(bool)   whether any of its group's jobs is running

While any job runs, Python's cycle collector runs on the UI thread only (UiThreadCollector): a
collection started by a worker's allocations would destroy the UI thread's unreachable Qt objects on
the worker's thread.
"""

from __future__ import annotations

import gc
import inspect
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QRunnable, QThread, QThreadPool, QTimer, Signal, Slot

from explorer.core.cancel import Cancelled, CancelToken
from explorer.core.session.runner import Progress

#: Linux nice increment of low-priority worker threads over the process (see `lower_thread_priority`).
WORKER_NICE = 10
#: Finished jobs kept referenced (see JobRunner._finished).
KEEP_FINISHED = 16
#: Progress events reach the UI at most this often (seconds), apart from the last one.
PROGRESS_INTERVAL = 0.05
#: While jobs run, the UI thread collects Python's reference cycles this often (see UiThreadCollector).
GC_INTERVAL_MS = 250


def lower_thread_priority() -> None:
    """Let the UI thread win a core from the workers: on a 2-core machine torch's threads took both
    and the event loop stalled >100 ms several times per batch; at nice +10 the longest stall fell
    under 50 ms with unchanged throughput (bench/bench_ui_stall.py). Per thread: torch's OpenMP
    helpers, started by this thread's first parallel op, inherit it. Elsewhere Qt's LowPriority."""
    if sys.platform.startswith("linux"):
        try:
            target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + WORKER_NICE)
            tid = threading.get_native_id()
            if os.getpriority(os.PRIO_PROCESS, tid) < target:
                os.setpriority(os.PRIO_PROCESS, tid, target)
        except OSError:
            pass
    else:
        QThread.currentThread().setPriority(QThread.Priority.LowPriority)


def _is_user_error(e: Exception) -> bool:
    """A bad file, name or value the user gave (reported in the window), not a bug of ours (also printed)."""
    from explorer.core.classify.images import ImageLoadError  # imported with the first error: not before the first paint

    return isinstance(e, (ValueError, OSError, ImageLoadError))


class UiThreadCollector(QObject):
    """Keeps Python's cycle collector on the UI thread while jobs run.

    Automatic collection runs in whichever thread happens to allocate when a generation fills up. On a
    pool thread it destroys unreachable Qt objects there, off the thread that owns them: a closed panel
    caught in a reference cycle, still waiting for its deferred deletion on the UI thread. Observed: a
    cycle made on the UI thread collected on a pool thread while a job allocated (tests/qt/
    test_workers.py), and a widget destroyed that way waiting for the UI thread forever (its window's
    close flushes the UI thread's events). An abort seen once in the UI thread's event loop, while a
    worker deep-copied a model, is what freeing such an object on both threads would give.

    So from the moment a job is started until every started job has returned from its run(), automatic
    collection is off (turned off again at each job's start and at each tick, should something turn it
    on), and this timer collects on the UI thread, generation by generation as the automatic collector
    would (pyqtgraph's GarbageCollector does the same, always). Then it turns automatic collection back
    on (unless it was off before the first job) and stops: no timer while idle.
    """

    _instance: UiThreadCollector | None = None

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._jobs: list[Job] = []
        self._restore = False  # turn automatic collection back on when the last job returns
        self.timer = QTimer(self)
        self.timer.setInterval(GC_INTERVAL_MS)
        self.timer.timeout.connect(self.collect)

    @classmethod
    def instance(cls) -> UiThreadCollector:
        """The process's collector (created on the UI thread, owned by the application)."""
        if cls._instance is None:
            cls._instance = cls(QCoreApplication.instance())
            cls._instance.destroyed.connect(cls._forget)
        return cls._instance

    @classmethod
    def _forget(cls, *_) -> None:
        cls._instance = None

    def job_starting(self, job: Job) -> None:
        """Call on the UI thread before `job` is handed to a pool."""
        self._keep_off()
        self._jobs.append(job)
        if not self.timer.isActive():
            self.timer.start()

    @property
    def active(self) -> int:
        """Started jobs that have not returned from run() yet."""
        return sum(not j.returned for j in self._jobs)

    @Slot()
    def collect(self) -> None:
        """Collect the generations that are due; once no job is running, hand collection back."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        for generation in (2, 1, 0):
            if thresholds[generation] and counts[generation] > thresholds[generation]:
                gc.collect(generation)
                break
        self._jobs = [j for j in self._jobs if not j.returned]
        if self._jobs:
            self._keep_off()
        else:
            self.timer.stop()
            if self._restore:
                self._restore = False
                gc.enable()

    def _keep_off(self) -> None:
        """Automatic collection off, whoever turned it on (it is turned back on when the jobs are done)."""
        if gc.isenabled():
            gc.disable()
            self._restore = True


class JobSignals(QObject):
    event = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()


class Job(QRunnable):
    """One run of a task on a pool thread (see the module docstring)."""

    def __init__(self, fn: Callable[..., Any], *args, wants_progress: bool = False, **kwargs):
        super().__init__()
        self.setAutoDelete(False)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.wants_progress = wants_progress
        self.token = CancelToken()
        self.gate: _Gate | None = None  # its lane group's (set when started)
        self.signals = JobSignals()
        self.done = threading.Event()
        # Set as run()'s very last statement (no allocation after it, so no cycle collection can start
        # on the pool thread once the UI thread has turned automatic collection back on).
        self.returned = False
        self._last_progress = 0.0

    def cancel(self) -> None:
        self.token.cancel()
        if self.gate is not None:
            self.gate.wake()

    def _progress(self, done: int, total: int | None) -> None:
        self._emit(Progress(done, total))

    def _emit(self, event) -> None:
        if isinstance(event, Progress):
            now = time.monotonic()
            last = event.total is not None and event.done >= event.total
            if now - self._last_progress < PROGRESS_INTERVAL and not last:
                return
            self._last_progress = now
        if not self.token.cancelled:
            self.signals.event.emit(event)

    def run(self) -> None:
        # Every worker yields to the UI thread. The lowered priority sticks to the pool thread and to the torch
        # helpers it starts, and the one pool's threads serve every lane group: a thread must never have run
        # (and started its helpers) at full priority before a classification lands on it.
        lower_thread_priority()
        entered = False
        try:
            if self.gate is not None:
                self.gate.enter(self)
                entered = True
            if inspect.isgeneratorfunction(self.fn):
                for event in self.fn(*self.args, cancel=self.token, **self.kwargs):
                    self.token.raise_if_cancelled()
                    self._emit(event)
                result = None
            else:
                kwargs = dict(self.kwargs)
                if self.wants_progress:
                    kwargs.update(progress=self._progress, cancel=self.token)
                result = self.fn(*self.args, **kwargs)
            self.token.raise_if_cancelled()
        except Cancelled:
            self.signals.cancelled.emit()
        except Exception as e:  # every worker error reaches the window's one error handler
            msg = str(e) or type(e).__name__
            if not _is_user_error(e):
                traceback.print_exc()
            if self.token.cancelled:
                self.signals.cancelled.emit()
            else:
                self.signals.failed.emit(msg)
        else:
            self.signals.succeeded.emit(result)
        finally:
            if entered:
                self.gate.leave()
            self.done.set()
            self.returned = True


class _Gate:
    """At most `threads` jobs of one lane group run at once, in the order they were started.

    A job waits here on its pool thread (the pool has a thread for every job not yet returned, see
    JobRunner), so a group that is full holds back only its own jobs; a job cancelled while it waits
    leaves at once."""

    def __init__(self, threads: int):
        self.threads = threads
        self._running = 0
        self._waiting: list[Job] = []  # in start order
        self._cond = threading.Condition()

    def enqueue(self, job: Job) -> None:
        """On the UI thread, when the job is handed to the pool: its place in the queue."""
        with self._cond:
            self._waiting.append(job)

    def enter(self, job: Job) -> None:
        """On the job's pool thread: wait for a free place and the job's turn (Cancelled if cancelled)."""
        with self._cond:
            while not job.token.cancelled and not (
                    self._running < self.threads
                    and next(j for j in self._waiting if not j.token.cancelled) is job):
                self._cond.wait()
            self._waiting.remove(job)
            self._cond.notify_all()
            job.token.raise_if_cancelled()
            self._running += 1

    def leave(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def wake(self) -> None:
        """A job was cancelled: the one waiting for it to leave the queue may now go on."""
        with self._cond:
            self._cond.notify_all()


class JobRunner(QObject):
    """The application's one pool; widgets run their jobs in lane groups of it (`lanes`).

    Each group's slots are its own (a new request cancels only its own slot's job) and runs at most its
    own number of jobs at once. The pool itself never holds a job back: it has a thread for every job
    not yet returned, so a full group never keeps another group's job waiting. `cancel_all` and `wait`
    cover every group (the window's close)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._jobs: dict[str, Job] = {}  # "group/slot" -> its current job
        self._held: list[Job] = []  # every started job until it has returned
        self._retired: list[Job] = []
        self._groups: list[Lanes] = []
        self._names: set[str] = set()

    def lanes(self, name: str, threads: int = 1, parent: QObject | None = None) -> Lanes:
        """A lane group named after its owner (another name if taken), running at most `threads` jobs at
        once; it lives as long as `parent` (default: the runner), and its jobs' callbacks no longer."""
        prefix, n = name, 1
        while prefix in self._names:
            n += 1
            prefix = f"{name}-{n}"
        self._names.add(prefix)
        group = Lanes(self, prefix, threads, parent if parent is not None else self)
        self._groups.append(group)
        group.destroyed.connect(lambda *_, life=group.life: self._group_gone(life))
        return group

    def _group_gone(self, life: _Life) -> None:
        """A lane group went with its widget: its jobs are cancelled and call back no more."""
        life.alive = False
        self._groups = [g for g in self._groups if g.life.alive]
        for key, job in self._jobs.items():
            if key.startswith(life.prefix + "/"):
                job.cancel()

    def _start(self, key: str, job: Job, gate: _Gate, relay: _Relay) -> None:
        old = self._jobs.get(key)
        if old is not None:
            old.cancel()
        self._jobs[key] = job
        job.gate = gate
        gate.enqueue(job)
        # The relay lives in the UI thread, so these connections are queued: callbacks run there.
        job.signals.event.connect(relay.on_event)
        job.signals.succeeded.connect(relay.on_success)
        job.signals.failed.connect(relay.on_failure)
        job.signals.cancelled.connect(relay.on_cancel)
        self._held = [j for j in self._held if not j.done.is_set()] + [job]
        if len(self._held) > self.pool.maxThreadCount():
            self.pool.setMaxThreadCount(len(self._held))
        UiThreadCollector.instance().job_starting(job)
        self.pool.start(job)
        self._update_busy()

    def _finished(self, key: str, job: Job) -> None:
        # The pool still touches a runnable just after its run() has returned, on its own thread: a job is
        # kept referenced until KEEP_FINISHED later ones have finished too (dropping one the moment its
        # `done` was set freed a runnable the pool thread was still using: an abort under load).
        self._retired.append(job)
        finished = [j for j in self._retired if j.done.is_set()]
        drop = set(map(id, finished[:-KEEP_FINISHED])) if len(finished) > KEEP_FINISHED else set()
        self._retired = [j for j in self._retired if id(j) not in drop]
        if self._jobs.get(key) is job:
            del self._jobs[key]
        self._update_busy()

    def _update_busy(self) -> None:
        for group in self._groups:
            group._update_busy()

    def is_current(self, key: str, job: Job) -> bool:
        return self._jobs.get(key) is job and not job.token.cancelled

    # -- the session's Runner protocol (explorer.core.session.runner): lanes are "group/slot" ----------------

    def submit(self, lane: str, fn: Callable[..., Any], *args, callbacks, wants_progress: bool = False,
               **kwargs) -> Job:
        """Run `fn` in `lane` ("group/slot") of the group of that name (made with one thread if none is open);
        `callbacks` (a session Callbacks) hear its events, its return value as an event, and how it ended."""
        group_name, _, slot = lane.partition("/")
        group = next((g for g in self._groups if g.prefix == group_name and g.life.alive), None)
        if group is None:
            group = self.lanes(group_name)

        def succeeded(result) -> None:
            if result is not None:
                callbacks.event(result)
            callbacks.done()

        job = Job(fn, *args, wants_progress=wants_progress, **kwargs)
        return group.start(slot, job, on_success=succeeded, on_failure=callbacks.error, on_cancel=callbacks.cancelled,
                           on_event=callbacks.event, on_progress=lambda done, total: callbacks.event(Progress(done, total)))

    def cancel(self, lane: str) -> bool:
        """Cancel the job of `lane` ("group/slot"); whether one was running."""
        job = self._jobs.get(lane)
        if job is None or job.token.cancelled:
            return False
        job.cancel()
        self._update_busy()
        return True

    def running(self, lane: str) -> Job | None:
        job = self._jobs.get(lane)
        return job if job is not None and not job.token.cancelled else None

    def cancel_all(self) -> None:
        """Cancel every job of every group."""
        for job in self._jobs.values():
            job.cancel()
        self._update_busy()

    def wait(self, msecs: int = 30000) -> bool:
        """Wait for every job to return (after cancelling them, a download stops within a chunk)."""
        return self.pool.waitForDone(msecs)


class Lanes(QObject):
    """One widget's lane group of the application's JobRunner: one job per slot (one per purpose:
    "graph", "weights", "classify", …), a new request cancelling its slot's running job, and at most
    `threads` of the group's jobs running at once (later ones wait, in order)."""

    busy_changed = Signal(bool)

    def __init__(self, runner: JobRunner, prefix: str, threads: int, parent: QObject):
        super().__init__(parent)
        self.runner, self.prefix = runner, prefix
        self.gate = _Gate(threads)
        self._started: list[Job] = []  # not yet done, superseded ones included (see wait)
        self._busy = False
        self.life = _Life(prefix)

    @property
    def threads(self) -> int:
        return self.gate.threads

    def _key(self, slot: str) -> str:
        return f"{self.prefix}/{slot}"

    def start(self, slot: str, job: Job, on_success=None, on_failure=None, on_progress=None,
              on_cancel=None, on_event=None) -> Job:
        """Run `job` in `slot`. Callbacks run on the UI thread while the job is the slot's current one
        (on_cancel always): on_event(event) for typed events, on_progress(done, total) for Progress."""
        key = self._key(slot)
        relay = _Relay(self.runner, key, job, dict(success=on_success, failure=on_failure, progress=on_progress,
                                                    cancel=on_cancel, event=on_event), self)
        self._started = [j for j in self._started if not j.done.is_set()] + [job]
        self.runner._start(key, job, self.gate, relay)
        return job

    def _update_busy(self) -> None:
        busy = any(not j.token.cancelled for k, j in self.runner._jobs.items() if k.startswith(self.prefix + "/"))
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)

    def is_current(self, slot: str, job: Job) -> bool:
        return self.runner.is_current(self._key(slot), job)

    def running(self, slot: str) -> Job | None:
        """The slot's current job, unless it was cancelled."""
        job = self.runner._jobs.get(self._key(slot))
        return job if job is not None and not job.token.cancelled else None

    def cancel(self, slot: str) -> bool:
        """Cancel the slot's job; whether one was running."""
        job = self.runner._jobs.get(self._key(slot))
        if job is None or job.token.cancelled:
            return False
        job.cancel()
        self._update_busy()
        return True

    def cancel_all(self) -> None:
        """Cancel this group's jobs (the other groups' run on)."""
        for key in [k for k in self.runner._jobs if k.startswith(self.prefix + "/")]:
            self.runner._jobs[key].cancel()
        self._update_busy()

    def wait(self, msecs: int = 30000) -> bool:
        """Wait for this group's jobs to return, superseded ones included; False if some still run."""
        deadline = None if msecs < 0 else time.monotonic() + msecs / 1000
        for job in self._started:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not job.done.wait(left):
                return False
        self._started = []
        return True


class _Life:
    """Whether a lane group's widget is still there (read by its jobs' relays, which outlive it)."""

    def __init__(self, prefix: str):
        self.prefix, self.alive = prefix, True


class _Relay(QObject):
    """Receives one job's signals in the UI thread and calls its callbacks if the job is still current
    (none once its lane group is gone with the widget that owned it)."""

    def __init__(self, runner: JobRunner, key: str, job: Job, callbacks: dict, group: Lanes):
        super().__init__(runner)
        self.runner, self.key, self.job, self.cb, self.life = runner, key, job, callbacks, group.life

    def _call(self, name: str, *args) -> None:
        fn = self.cb[name]
        if fn is not None and self.life.alive:
            fn(*args)

    @Slot(object)
    def on_event(self, event) -> None:
        if not self.runner.is_current(self.key, self.job):
            return
        if isinstance(event, Progress):
            self._call("progress", event.done, event.total)
        else:
            self._call("event", event)

    @Slot(object)
    def on_success(self, result) -> None:
        current = self.runner.is_current(self.key, self.job)
        self._done()
        if current:
            self._call("success", result)

    @Slot(str)
    def on_failure(self, message: str) -> None:
        current = self.runner.is_current(self.key, self.job)
        self._done()
        if current:
            self._call("failure", message)

    @Slot()
    def on_cancel(self) -> None:
        self._done()
        self._call("cancel")

    def _done(self) -> None:
        self.runner._finished(self.key, self.job)
        self.deleteLater()
