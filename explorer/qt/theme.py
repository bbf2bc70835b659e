"""Colours and fonts of the graph drawing, derived from the application palette.

Each kind of node has a hue; fill and border lightness come from whether the palette is dark, so
the drawing follows the system's light or dark theme. Presentation mode uses a high-contrast theme.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPalette
from PySide6.QtWidgets import QApplication

KIND_HUES = {
    "input": 210,
    "conv": 205,
    "pool": 32,
    "inception": 135,
    "residual": 275,
    "linear": 345,
    "dropout": 55,
    "aux": 0,
    "op": 0,
    "concat": 170,
    "branch": 135,
}
#: Kinds drawn without saturation (grey).
GREY_KINDS = {"op", "aux"}


@dataclass
class Theme:
    """What the graph items paint with."""

    dark: bool
    background: QColor
    text: QColor
    muted: QColor  # edge lines and labels
    highlight: QColor  # selection / presentation focus
    error: QColor
    font: QFont
    bold: QFont
    small: QFont
    high_contrast: bool = False
    line_width: float = 1.2
    scale: float = 1.0  # of fonts and gaps relative to the normal drawing

    def __post_init__(self) -> None:
        # Metrics once per theme: building QFontMetricsF in every paint() is measurable.
        self._heights = {False: QFontMetricsF(self.font).height(), True: QFontMetricsF(self.bold).height()}
        self.small_height = QFontMetricsF(self.small).height()

    def line_height(self, bold: bool) -> float:
        return self._heights[bold]

    def fill(self, kind: str) -> QColor:
        hue = KIND_HUES.get(kind, 0)
        sat = 0 if kind in GREY_KINDS else (200 if self.high_contrast else 120)
        if kind == "branch":
            sat = 60
        light = (50 if self.high_contrast else 70) if self.dark else 225
        if kind == "branch":
            light = 40 if self.dark else 240
        return QColor.fromHsl(hue, sat, light)

    def border(self, kind: str) -> QColor:
        hue = KIND_HUES.get(kind, 0)
        sat = 0 if kind in GREY_KINDS else (255 if self.high_contrast else 150)
        light = (190 if self.high_contrast else 160) if self.dark else 95
        return QColor.fromHsl(hue, sat, light)


def palette_is_dark(palette: QPalette | None = None) -> bool:
    palette = palette or QApplication.palette()
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def make_theme(scale: float = 1.0, presentation: bool = False) -> Theme:
    """The theme for the current palette; `presentation`: black background, white text, bold lines."""
    base = QApplication.font()
    size = base.pointSizeF() if base.pointSizeF() > 0 else 10.0
    font = QFont(base)
    font.setPointSizeF(size * scale)
    bold = QFont(font)
    bold.setBold(True)
    small = QFont(font)
    small.setPointSizeF(size * scale * 0.85)
    if presentation:
        return Theme(True, QColor("black"), QColor("white"), QColor(215, 215, 215), QColor(255, 210, 0),
                     QColor(255, 80, 80), font, bold, small, high_contrast=True, line_width=2.2 * scale,
                     scale=scale)
    pal = QApplication.palette()
    dark = palette_is_dark(pal)
    return Theme(
        dark,
        pal.color(QPalette.ColorRole.Base),
        pal.color(QPalette.ColorRole.Text),
        pal.color(QPalette.ColorRole.PlaceholderText) if dark else QColor(95, 95, 95),
        pal.color(QPalette.ColorRole.Highlight),
        QColor(230, 60, 60) if dark else QColor(200, 0, 0),
        font, bold, small, line_width=1.2 * scale, scale=scale,
    )

#: Text that warns (a map that means nothing, a verdict that fails), on light and dark palettes.
WARNING_COLOR = "#c62828"
