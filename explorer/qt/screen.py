"""Windows and dialogs that fit the screen they open on (a 1280×800 laptop included)."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QWidget

#: At most this share of the screen's free area, so that a title bar and the edges stay in reach.
SCREEN_SHARE = 0.9


def fit_to_screen(widget: QWidget, width: int, height: int) -> QSize:
    """Resize `widget` to width × height, or less where its screen's free area is smaller; the size given."""
    screen = widget.screen() or (widget.parentWidget().screen() if widget.parentWidget() else None)
    if screen is not None:
        free = screen.availableGeometry()
        width = min(width, int(free.width() * SCREEN_SHARE))
        height = min(height, int(free.height() * SCREEN_SHARE))
    widget.resize(width, height)
    return QSize(width, height)
