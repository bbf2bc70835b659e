"""The single-image view of the classify panel: the picture, the top-5 chart and the time split.

Signals: none; the panel calls `show_pending`, `show_result`, `show_image` and `clear`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFontMetrics, QImage, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from explorer.core.session.tasks import TOP, display_name
from explorer.core.text import fmt_fraction, fmt_ms
from explorer.qt.theme import WARNING_COLOR


def array_to_qimage(rgb: np.ndarray) -> QImage:
    """An (h, w, 3) uint8 array as a QImage that owns its pixels."""
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = a.shape
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


@lru_cache(maxsize=8)
def _lookup_table(colormap: str) -> np.ndarray:
    return pg.colormap.get(colormap).getLookupTable(0.0, 1.0, 256, alpha=False).astype(np.uint8)


def coloured(values01: np.ndarray, colormap: str) -> np.ndarray:
    """Values in 0..1 (any shape) as uint8 RGB through pyqtgraph's `colormap` (shape + (3,))."""
    idx = np.clip(np.rint(np.asarray(values01, dtype=np.float64) * 255), 0, 255).astype(np.intp)
    return _lookup_table(colormap)[idx]


def qimage_to_pil(image: QImage):
    """A QImage as a PIL image: RGBA when it has alpha (the engine composites it onto white), else RGB."""
    from PIL import Image

    alpha = image.hasAlphaChannel()
    fmt = QImage.Format.Format_RGBA8888 if alpha else QImage.Format.Format_RGB888
    channels = 4 if alpha else 3
    img = image.convertToFormat(fmt)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    a = np.frombuffer(img.constBits(), dtype=np.uint8, count=bpl * h).reshape(h, bpl)
    a = a[:, : w * channels].reshape(h, w, channels).copy()
    return Image.fromarray(a, "RGBA" if alpha else "RGB")


class TopKChart(pg.PlotWidget):
    """Horizontal bars of the top-k probabilities, best at the top, labels on the left axis."""

    def __init__(self, parent=None):
        super().__init__(parent)
        pal = self.palette()
        text = pal.color(QPalette.ColorRole.WindowText)
        self.setBackground(pal.color(QPalette.ColorRole.Base))
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        item = self.getPlotItem()
        item.invertY(True)
        item.setXRange(0, 1.16, padding=0)  # room right of a 100 % bar for its label
        item.setYRange(-0.5, TOP - 0.5, padding=0.02)
        for side in ("left", "bottom"):
            axis = item.getAxis(side)
            axis.setTextPen(text)
            axis.setPen(pal.color(QPalette.ColorRole.Mid))
        bottom = item.getAxis("bottom")
        bottom.setTicks([[(v, fmt_fraction(v, 0)) for v in (0, 0.25, 0.5, 0.75, 1.0)]])
        bottom.setStyle(hideOverlappingLabels=False)  # else 0 % and 100 % vanish at the plot's edges
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.65, width=[], brush=pg.mkBrush(70, 130, 200),
                                    pen=pg.mkPen(None))
        self.addItem(self.bars)
        # Made once and reused: creating pyqtgraph items costs milliseconds on the UI thread.
        self._texts = [pg.TextItem("", color=text, anchor=(0, 0.5)) for _ in range(TOP)]
        for t in self._texts:
            self.addItem(t)
        self._label_width = 0
        #: (label, probability) pairs now drawn, best first.
        self.predictions: list[tuple[str, float]] = []
        self.setMinimumHeight(120)
        self.set_predictions([])

    def set_predictions(self, predictions: Sequence) -> None:
        """Draw `predictions` (objects with .label and .prob, best first, at most TOP); [] clears."""
        self.predictions = [(p.label, float(p.prob)) for p in predictions][:TOP]
        n = len(self.predictions)
        ys = list(range(n))
        self.bars.setOpts(x0=[0.0] * n, y=ys, width=[p for _, p in self.predictions], height=0.65)
        for i, t in enumerate(self._texts):
            if i < n:
                p = self.predictions[i][1]
                t.setText(fmt_fraction(p))
                t.setPos(p + 0.01, i)
            t.setVisible(i < n)
        fm = QFontMetrics(self.font())
        labels = [fm.elidedText(label, Qt.TextElideMode.ElideRight, 190) for label, _ in self.predictions]
        left = self.getPlotItem().getAxis("left")
        left.setTicks([list(zip(ys, labels))])
        width = max([fm.horizontalAdvance(s) for s in labels] + [40]) + 12
        if width > self._label_width:  # grow only: the bars do not jump left and right between images
            self._label_width = width
            left.setWidth(width)


class ScaledImageLabel(QWidget):
    """A picture scaled to fit, keeping its aspect ratio, or a placeholder text.

    It paints the picture itself: its size hint never depends on the picture, so showing one cannot
    change the layout around it (a QLabel's pixmap did: the panel's layout then flipped between two
    sizes forever, at 65–99 % of a core while idle).
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self._scaled: QPixmap | None = None
        self._text = ""
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(320, 240)

    def set_image(self, image: QImage | None) -> None:
        """Show `image`; None or a null image clears the view."""
        self._pixmap = QPixmap.fromImage(image) if image is not None and not image.isNull() else None
        self._scaled = None
        if self._pixmap is not None:
            self._text = ""
        self.update()

    def set_placeholder(self, text: str) -> None:
        self._pixmap = self._scaled = None
        self._text = text
        self.update()

    def clear(self) -> None:
        self.set_placeholder("")

    def text(self) -> str:
        return self._text

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._scaled = None
        super().resizeEvent(event)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        rect = self.contentsRect()
        if self._pixmap is not None:
            if self._scaled is None or self._scaled.size() != self._pixmap.size().scaled(
                    rect.size(), Qt.AspectRatioMode.KeepAspectRatio):
                self._scaled = self._pixmap.scaled(rect.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                                   Qt.TransformationMode.SmoothTransformation)
            x = rect.x() + (rect.width() - self._scaled.width()) // 2
            y = rect.y() + (rect.height() - self._scaled.height()) // 2
            p.drawPixmap(x, y, self._scaled)
        elif self._text:
            p.setPen(self.palette().color(QPalette.ColorRole.WindowText))
            p.drawText(rect.adjusted(8, 8, -8, -8), int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap),
                       self._text)
        p.end()


class ElidedLabel(QLabel):
    """One line of text, elided on the right to the label's width; `text()` is the whole text."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt override
        self._full = text
        super().setText(text)
        self.update()

    def text(self) -> str:
        return self._full

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(20, super().minimumSizeHint().height())

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setFont(self.font())
        p.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        rect = self.contentsRect()
        text = QFontMetrics(self.font()).elidedText(self._full, Qt.TextElideMode.ElideMiddle, rect.width())
        p.drawText(rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
        p.end()


class ResultView(QWidget):
    """The single-image view: picture | title, top-5 chart, time split."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.image = ScaledImageLabel(self)
        lay.addWidget(self.image, 2)
        right = QVBoxLayout()
        # One line, elided; the timings break only where they say so: a label that wraps to its width
        # asks its layout for a new height on every resize (a loop with the dock's scroll bar).
        self.title = ElidedLabel(self)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        # Whose answer this is when it is not the plain network's ("modified network: inception4a branch 2 off").
        self.modified = QLabel(self)
        self.modified.setWordWrap(True)
        self.modified.setStyleSheet(f"QLabel {{ color: {WARNING_COLOR}; font-weight: bold; }}")
        self.modified.hide()
        self.chart = TopKChart(self)
        self.timings = QLabel(self)
        self.timings.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Rows of a sensible height, not stretched: the picture gets the rest of the space.
        self.chart.setMaximumHeight(44 * TOP + 40)
        right.addWidget(self.title)
        right.addWidget(self.modified)
        right.addWidget(self.chart, 1)
        right.addWidget(self.timings)
        right.addStretch(0)
        lay.addLayout(right, 3)
        self.result = None
        self.clear()

    def clear(self, text: str | None = None) -> None:
        """Empty the view, showing `text` (by default, how to classify an image)."""
        self.result = None
        self.image.set_placeholder(text or "Drop an image or a folder here, paste one (Ctrl+V), or open files.")
        self.title.setText("")
        self.chart.set_predictions([])
        self.timings.setText("")

    def set_modified(self, text: str) -> None:
        """Say above the top-5 that it is a modified network's ("" : the plain network's, nothing said)."""
        self.modified.setText(text)
        self.modified.setVisible(bool(text))

    def show_pending(self, name: str) -> None:
        self.clear(f"Classifying {name}…")
        self.title.setText(name)

    def show_result(self, result) -> None:
        self.result = result
        size = f"  ({result.image_size[0]}×{result.image_size[1]})" if result.image_size else ""
        self.title.setText(display_name(result.source) + size)
        self.title.setToolTip(result.source)
        self.chart.set_predictions(result.top)
        if not result.ok:
            self.image.set_placeholder(f"Cannot classify {display_name(result.source)}:\n{result.error}")
        self.timings.setText(fmt_timings(result))

    def show_image(self, image: QImage | None) -> None:
        self.image.set_image(image)


def fmt_timings(result) -> str:
    """A result's timings (explorer.core.text.fmt_ms), where it ran and its notice."""
    text = fmt_ms(result.timings_ms)
    if result.ok:
        text += f" · on {result.device}"
    if result.notice:
        text += f"\n{result.notice}"
    return text


#: The colour map of feature maps (perceptually uniform, readable in grey).
FEATURE_COLORMAP = "viridis"


def overlay_lut(name: str, signed: bool = False, points: int = 256) -> np.ndarray:
    """A colormap's lookup table whose alpha grows with the value (|value| for diverging maps), so that
    weak values leave the image underneath visible in an overlay."""
    lut = pg.colormap.get(name).getLookupTable(0.0, 1.0, points, alpha=True).copy()
    ramp = np.abs(np.linspace(-1, 1, points)) if signed else np.linspace(0, 1, points)
    lut[:, 3] = np.round(255 * np.sqrt(ramp)).astype(np.uint8)
    return lut


def short_label(label: str) -> str:
    """The part of a branch label that names its output ("#3×3 reduce → #3×3" -> "#3×3")."""
    return label.split("→")[-1].strip() or label


def export_layout_png(item, path: str | Path, width: int) -> Path:
    """Render a pyqtgraph layout item to PNG with pyqtgraph's ImageExporter, on a white background."""
    from pyqtgraph.exporters import ImageExporter

    path = Path(path)
    exporter = ImageExporter(item)
    exporter.parameters()["width"] = int(width)
    exporter.parameters()["background"] = pg.mkColor("w")
    exporter.export(str(path))
    if not path.exists() or path.stat().st_size == 0:
        raise OSError(f"cannot write {path}")
    return path
