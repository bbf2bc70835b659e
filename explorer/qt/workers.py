"""Workers: engine tasks run on a thread pool; results reach the UI thread only through signals.

A `Job` wraps a plain function `fn(*args, progress=…, cancel=…)`. Its `JobSignals` object lives
in the UI thread, so connections to widgets are queued and slots run on the UI thread.
`JobRunner` keeps one job per purpose: a new request cancels the one running before it, and the
results of a cancelled or superseded job are dropped.

Signals (JobSignals)
--------------------
progressed(object, object)   done, total (total None when unknown)
succeeded(object)            the function's return value
failed(str)                  the exception as a message for the status bar
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from explorer.core.cancel import Cancelled, CancelToken


class JobSignals(QObject):
    progressed = Signal(object, object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()


class Job(QRunnable):
    """One run of `fn` on a pool thread; progress is throttled to about 20 updates a second."""

    def __init__(self, fn: Callable[..., Any], *args, wants_progress: bool = False, **kwargs):
        super().__init__()
        self.setAutoDelete(False)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.wants_progress = wants_progress
        self.token = CancelToken()
        self.signals = JobSignals()
        self.done = threading.Event()
        self._last_progress = 0.0

    def cancel(self) -> None:
        self.token.cancel()

    def _progress(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self._last_progress >= 0.05 or (total is not None and done >= total):
            self._last_progress = now
            if not self.token.cancelled:
                self.signals.progressed.emit(done, total)

    def run(self) -> None:
        kwargs = dict(self.kwargs)
        if self.wants_progress:
            kwargs.update(progress=self._progress, cancel=self.token)
        try:
            result = self.fn(*self.args, **kwargs)
        except Cancelled:
            self.signals.cancelled.emit()
        except Exception as e:  # every worker error reaches the window's one error handler
            msg = str(e) or type(e).__name__
            if not isinstance(e, (ValueError, OSError)):  # those are the user's input, not our bug
                traceback.print_exc()
            if not self.token.cancelled:
                self.signals.failed.emit(msg)
        else:
            if self.token.cancelled:
                self.signals.cancelled.emit()
            else:
                self.signals.succeeded.emit(result)
        finally:
            self.done.set()


class JobRunner(QObject):
    """Runs jobs on a private pool, one at a time per `slot`; starting a job cancels its slot's previous one."""

    def __init__(self, parent=None, threads: int = 1):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._jobs: dict[str, Job] = {}
        self._all: dict[Job, _Relay] = {}
        self._retired: list[Job] = []

    def start(self, slot: str, job: Job, on_success=None, on_failure=None, on_progress=None,
              on_cancel=None) -> Job:
        old = self._jobs.get(slot)
        if old is not None:
            old.cancel()
        self._jobs[slot] = job
        relay = _Relay(self, slot, job, on_success, on_failure, on_progress, on_cancel)
        self._all[job] = relay
        # The relay lives in the UI thread, so these connections are queued: callbacks run there.
        job.signals.progressed.connect(relay.on_progress)
        job.signals.succeeded.connect(relay.on_success)
        job.signals.failed.connect(relay.on_failure)
        job.signals.cancelled.connect(relay.on_cancel)
        self.pool.start(job)
        return job

    def _finished(self, slot: str, job: Job) -> None:
        self._all.pop(job, None)
        # The pool still touches the runnable just after run() returns: keep it referenced a while.
        self._retired = [j for j in self._retired if not j.done.is_set()] + [job]
        if self._jobs.get(slot) is job:
            del self._jobs[slot]

    def is_current(self, slot: str, job: Job) -> bool:
        return self._jobs.get(slot) is job and not job.token.cancelled

    def running(self, slot: str) -> Job | None:
        return self._jobs.get(slot)

    def cancel(self, slot: str) -> None:
        job = self._jobs.get(slot)
        if job is not None:
            job.cancel()

    def cancel_all(self) -> None:
        for job in list(self._jobs.values()):
            job.cancel()

    def wait(self, msecs: int = 30000) -> bool:
        """Wait for every job to return (after cancelling them, a download stops within a chunk)."""
        return self.pool.waitForDone(msecs)


class _Relay(QObject):
    """Receives one job's signals in the UI thread and calls its callbacks if the job is still current."""

    def __init__(self, runner: JobRunner, slot: str, job: Job, on_success, on_failure, on_progress, on_cancel):
        super().__init__(runner)
        self.runner, self.slot, self.job = runner, slot, job
        self.cb = dict(success=on_success, failure=on_failure, progress=on_progress, cancel=on_cancel)

    def _call(self, name: str, *args) -> None:
        fn = self.cb[name]
        if fn is not None:
            fn(*args)

    @Slot(object, object)
    def on_progress(self, done, total) -> None:
        if self.runner.is_current(self.slot, self.job):
            self._call("progress", done, total)

    @Slot(object)
    def on_success(self, result) -> None:
        current = self.runner.is_current(self.slot, self.job)
        self._done()
        if current:
            self._call("success", result)

    @Slot(str)
    def on_failure(self, message: str) -> None:
        current = self.runner.is_current(self.slot, self.job)
        self._done()
        if current:
            self._call("failure", message)

    @Slot()
    def on_cancel(self) -> None:
        self._done()
        self._call("cancel")

    def _done(self) -> None:
        self.runner._finished(self.slot, self.job)
        self.deleteLater()


# -- engine tasks (run on pool threads) --------------------------------------------------------

_graph_cache: dict[str, Any] = {}
_graph_lock = threading.Lock()


def load_block_graph(name: str):
    """The model's BlockGraph (built once per process on the meta device) and its min input size."""
    from explorer.core.blockgraph import build_block_graph
    from explorer.core.shapes import min_input_size
    from explorer.core.zoo import get_spec

    with _graph_lock:
        graph = _graph_cache.get(name)
        if graph is None:
            graph = _graph_cache[name] = build_block_graph(get_spec(name))
        min_input_size(graph)  # cached on the graph; computing it here keeps it off the UI thread
    return graph


_opened_cache: dict[tuple, Any] = {}


def open_any_model(ref: str):
    """(ModelSpec, BlockGraph) of any CNN reference (torchvision:/timm: name, a file), built once per
    process; a file is opened again when it changed on disk."""
    import os

    from explorer.core.anycnn import open_block_graph

    key = (ref, os.path.getmtime(ref) if os.path.isfile(ref) else None)
    with _graph_lock:
        opened = _opened_cache.get(key)
        if opened is None:
            opened = _opened_cache[key] = open_block_graph(ref)
    return opened


def load_any_block_graph(ref: str):
    """The BlockGraph of a zoo model or of any CNN reference (see `open_any_model`)."""
    from explorer.core.zoo import model_names

    return load_block_graph(ref) if ref in model_names() else open_any_model(ref)[1]


def load_weights(name: str, weights: str, allow_download: bool, *, progress=None, cancel=None):
    """The model on the CPU with weights ("auto", "none" or a file path), as a LoadedModel."""
    from explorer.core.loading import load_model

    if cancel is not None:
        cancel.raise_if_cancelled()
    return load_model(name, weights=weights, allow_download=allow_download, progress=progress, cancel=cancel)
