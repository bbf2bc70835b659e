"""What every window room's widgets share: the banner strip (an error or a warning above a view), the words a
view of random weights says, and the size boxes' bound."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QWidget

from explorer.core.shapes.trace import MAX_INPUT_SIDE

#: The size boxes stop at the engine's bounds (one number each, in explorer.core.shapes.trace).
MAX_SIDE = MAX_INPUT_SIDE


def banner_palette(widget: QWidget, kind: str) -> None:
    dark = widget.palette().color(QPalette.ColorRole.Window).lightness() < 128
    colors = {
        "warning": (QColor(120, 90, 0), QColor(255, 235, 160)) if dark else (QColor(255, 240, 180), QColor(60, 40, 0)),
        "error": (QColor(120, 25, 25), QColor(255, 220, 220)) if dark else (QColor(255, 215, 215), QColor(110, 0, 0)),
    }[kind]
    pal = widget.palette()
    pal.setColor(QPalette.ColorRole.Window, colors[0])
    pal.setColor(QPalette.ColorRole.WindowText, colors[1])
    widget.setPalette(pal)
    widget.setAutoFillBackground(True)


class Suppressible:
    """A strip that presentation mode can keep hidden while it still tracks whether it should show."""

    suppressed = False
    wanted = False

    def setVisible(self, visible: bool) -> None:  # noqa: N802 - Qt override
        self.wanted = visible
        super().setVisible(visible and not self.suppressed)

    def set_suppressed(self, on: bool) -> None:
        self.suppressed = on
        super().setVisible(self.wanted and not on)


class Banner(Suppressible, QFrame):
    """A coloured strip above the graph with one message (hidden when empty)."""

    def __init__(self, kind: str = "error", parent=None):
        super().__init__(parent)
        self.kind = kind
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.label, 1)
        banner_palette(self, kind)
        self.hide()

    def set_message(self, text: str | None) -> None:
        self.label.setText(text or "")
        self.setVisible(bool(text))

    def text(self) -> str:
        return self.label.text() if self.wanted else ""


#: What a view of numbers computed by a network with random weights says beside them (issue 24): its maps, curves,
#: correlations and probabilities describe no learned function.
UNLEARNED = "random weights: these numbers mean nothing for a network that has not learned"


def unlearned(loaded) -> bool:
    """Whether `loaded` (a LoadedModel, or None: unknown) runs random weights."""
    return bool(getattr(getattr(loaded, "weights", None), "is_random", False))
