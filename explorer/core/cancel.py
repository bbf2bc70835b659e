"""Cooperative cancellation for long engine tasks (downloads, batches, attributions)."""

from __future__ import annotations

import threading
from collections.abc import Callable

#: progress(done, total) — total is None when unknown.
ProgressCallback = Callable[[int, "int | None"], None]


class Cancelled(Exception):
    """Raised inside an engine task when its CancelToken was cancelled."""


class CancelToken:
    """A flag a caller sets to ask a running task to stop at its next check."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")
