"""How the session runs its jobs, without Qt: the `Runner` protocol, and the `InlineRunner` of headless use.

A job is an engine task: a generator function that takes `cancel` (a CancelToken) and yields typed events
(explorer.core.session.events), or a plain function that returns one (with `wants_progress`, it also takes
`progress(done, total)` and `cancel`). Every job runs in a lane ("model", "classify", "images", …): a new job
in a lane cancels the lane's running one, whose later events are never delivered.

What the caller hears, on its own thread (the UI thread under the window): `on_event(event)` for each event
(a `Progress` among them, and a plain function's return value when it is not None), then exactly one of
`on_done()`, `on_error(message)` (one line) or `on_cancel()`.

The window's runner (explorer.qt.workers.Lanes) runs jobs on its thread pool; `InlineRunner` runs them at
once on the calling thread, so a headless session does everything a window's does, in order.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from explorer.core.cancel import Cancelled, CancelToken
from explorer.core.text import first_line


@dataclass(frozen=True)
class Progress:
    """`done` of `total` steps (total None when unknown)."""

    done: int
    total: int | None = None


@dataclass
class Callbacks:
    """What a job's caller hears (see the module docstring); any may be None."""

    on_event: Callable[[Any], None] | None = None
    on_done: Callable[[], None] | None = None
    on_error: Callable[[str], None] | None = None
    on_cancel: Callable[[], None] | None = None

    def event(self, event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def done(self) -> None:
        if self.on_done is not None:
            self.on_done()

    def error(self, message: str) -> None:
        if self.on_error is not None:
            self.on_error(message)

    def cancelled(self) -> None:
        if self.on_cancel is not None:
            self.on_cancel()


class Runner(Protocol):
    """Runs engine tasks in lanes (see the module docstring)."""

    def submit(self, lane: str, fn: Callable[..., Any], *args, callbacks: Callbacks,
               wants_progress: bool = False, **kwargs) -> Any:
        """Run `fn(*args, **kwargs)` in `lane`, cancelling the lane's running job; returns a handle."""

    def cancel(self, lane: str) -> bool:
        """Cancel the lane's running job; whether there was one."""

    def running(self, lane: str) -> Any:
        """The lane's running job, or None."""


def run_task(fn: Callable[..., Any], args: tuple, kwargs: dict, token: CancelToken, emit: Callable[[Any], None],
             wants_progress: bool = False) -> Any:
    """Run one task to its end on this thread, handing each event to `emit` (a plain function's return value
    too); Cancelled and the task's own errors propagate."""
    if inspect.isgeneratorfunction(fn):
        for event in fn(*args, cancel=token, **kwargs):
            token.raise_if_cancelled()
            emit(event)
        token.raise_if_cancelled()
        return None
    if wants_progress:
        kwargs = dict(kwargs, progress=lambda done, total: emit(Progress(done, total)), cancel=token)
    result = fn(*args, **kwargs)
    token.raise_if_cancelled()
    if result is not None:
        emit(result)
    return result


@dataclass
class InlineJob:
    """One job of an InlineRunner: its cancel token, and how it ended ("done", "failed", "cancelled")."""

    lane: str
    token: CancelToken = field(default_factory=CancelToken)
    outcome: str = "running"
    message: str = ""

    def cancel(self) -> None:
        self.token.cancel()


class InlineRunner:
    """Runs every job at once on the calling thread (headless sessions and tests): `submit` returns when the job
    has ended and its callbacks have run. A job submitted from a callback runs then, inside it."""

    def __init__(self):
        self._running: dict[str, InlineJob] = {}
        self.history: list[InlineJob] = []  #: every job run, in order

    def submit(self, lane: str, fn: Callable[..., Any], *args, callbacks: Callbacks,
               wants_progress: bool = False, **kwargs) -> InlineJob:
        self.cancel(lane)
        job = InlineJob(lane)
        self._running[lane] = job
        self.history.append(job)

        def emit(event) -> None:
            if self._running.get(lane) is job and not job.token.cancelled:
                callbacks.event(event)

        try:
            run_task(fn, args, kwargs, job.token, emit, wants_progress)
        except Cancelled:
            job.outcome = "cancelled"
            self._end(lane, job)
            callbacks.cancelled()
        except Exception as e:  # the one error route: a line for the caller
            job.outcome, job.message = "failed", first_line(e)
            current = self._end(lane, job)
            if current:
                callbacks.error(job.message)
        else:
            job.outcome = "done"
            if self._end(lane, job):
                callbacks.done()
        return job

    def _end(self, lane: str, job: InlineJob) -> bool:
        """Whether `job` was still its lane's current one (a job submitted from its callbacks replaces it)."""
        current = self._running.get(lane) is job and not job.token.cancelled
        if self._running.get(lane) is job:
            del self._running[lane]
        return current

    def cancel(self, lane: str) -> bool:
        job = self._running.pop(lane, None)
        if job is None:
            return False
        job.cancel()
        return True

    def running(self, lane: str) -> InlineJob | None:
        return self._running.get(lane)
