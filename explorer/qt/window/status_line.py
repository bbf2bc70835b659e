"""The status bar's message line: one elided line that never runs into the permanent texts beside it.

A message may belong to a topic ("size", "model", …): `clear(topic)` takes it away as soon as the value
it spoke of no longer holds, instead of leaving it up for its timeout.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QFontMetrics, QPainter, QPalette
from PySide6.QtWidgets import QSizePolicy, QWidget


class StatusLine(QWidget):
    """A one-line message, elided on the right to the room the status bar gives it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._text = ""
        self.topic: str | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(lambda: self.show_message(""))
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def text(self) -> str:
        return self._text

    def show_message(self, text: str, msecs: int = 0, topic: str | None = None) -> None:
        """Show `text` (for `msecs`, 0: until replaced), as the message of `topic`."""
        self._timer.stop()
        self._text, self.topic = text or "", topic if text else None
        self.setToolTip(self._text)
        if text and msecs > 0:
            self._timer.start(msecs)
        self.update()

    def clear(self, topic: str | None = None) -> None:
        """Remove the message (only if it is `topic`'s, when a topic is given)."""
        if topic is None or self.topic == topic:
            self.show_message("")

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(100, QFontMetrics(self.font()).height() + 4)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        if not self._text:
            return
        p = QPainter(self)
        p.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        rect = self.contentsRect().adjusted(2, 0, -2, 0)
        text = QFontMetrics(self.font()).elidedText(self._text.replace("\n", " "), Qt.TextElideMode.ElideRight,
                                                    rect.width())
        p.drawText(rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
        p.end()
