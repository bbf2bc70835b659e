"""Exporters of the graph drawing as shown (expanded blocks included): SVG with real text, PNG at a scale.

With an overlay's `Legend`, the file is widened on the right and the legend drawn there: the boxes carry
the overlay's colours already (they are scene items), the legend is a widget over the view and would
otherwise be left out.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

from PySide6.QtCore import QRectF, QSize, QSizeF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import QApplication, QGraphicsItem, QGraphicsScene

from explorer.core.overlay.quantities import Legend

#: Gap (scene units) between the drawing and the legend beside it.
LEGEND_GAP = 16.0


@contextmanager
def uncached(scene: QGraphicsScene):
    """Items paint themselves while exporting: a cached item would land in the file as a bitmap."""
    items = [(it, it.cacheMode()) for it in scene.items() if it.cacheMode() != QGraphicsItem.CacheMode.NoCache]
    for it, _ in items:
        it.setCacheMode(QGraphicsItem.CacheMode.NoCache)
    try:
        yield
    finally:
        for it, mode in items:
            it.setCacheMode(mode)


class _Drawing:
    """The scene, and the legend beside it when there is one: the canvas both take, and how to paint them."""

    def __init__(self, scene: QGraphicsScene, legend: Legend | None, font: QFont | None):
        from explorer.qt.graph.graph_view import legend_size

        self.scene, self.legend = scene, legend
        self.font = QFont(font) if font is not None else QApplication.font()
        rect = scene.sceneRect()
        self.legend_rect = QRectF()
        w, h = rect.width(), rect.height()
        if legend is not None:
            size = legend_size(legend, self.font)
            self.legend_rect = QRectF(w + LEGEND_GAP, LEGEND_GAP, size.width(), size.height())
            w = self.legend_rect.right() + LEGEND_GAP
            h = max(h, self.legend_rect.bottom() + LEGEND_GAP)
        self.size = QSizeF(w, h)

    def background(self) -> QColor:
        brush = self.scene.backgroundBrush()
        return brush.color() if brush.style() != Qt.BrushStyle.NoBrush else QColor(Qt.GlobalColor.white)

    def paint(self, painter: QPainter, scale: float = 1.0) -> None:
        """Background, scene and legend, at `scale` device units per scene unit."""
        from explorer.qt.graph.graph_view import paint_legend

        rect = self.scene.sceneRect()
        painter.fillRect(QRectF(0, 0, self.size.width() * scale, self.size.height() * scale), self.background())
        with uncached(self.scene):
            self.scene.render(painter, QRectF(0, 0, rect.width() * scale, rect.height() * scale), rect,
                              Qt.AspectRatioMode.IgnoreAspectRatio)
        if self.legend is not None:
            painter.save()
            painter.scale(scale, scale)
            bg = self.background()
            dark = bg.lightness() < 128
            text = QColor("white") if dark else QColor("black")
            muted = QColor(170, 170, 170) if dark else QColor(95, 95, 95)
            paint_legend(painter, self.legend_rect, self.legend, self.font, bg, text, muted, muted)
            painter.restore()


class SvgExporter:
    """Writes a scene as SVG through QSvgGenerator; items draw text with drawText, so it stays <text>."""

    def __init__(self, scene: QGraphicsScene, title: str = "Inception Explorer graph", legend: Legend | None = None,
                 font: QFont | None = None):
        self.scene, self.title = scene, title
        self.legend, self.font = legend, font

    def export(self, path: str | Path) -> Path:
        from PySide6.QtSvg import QSvgGenerator

        path = Path(path)
        drawing = _Drawing(self.scene, self.legend, self.font)
        w, h = drawing.size.width(), drawing.size.height()
        gen = QSvgGenerator()
        gen.setFileName(str(path))
        gen.setSize(QSize(math.ceil(w), math.ceil(h)))
        gen.setViewBox(QRectF(0, 0, w, h))
        gen.setTitle(self.title)
        gen.setDescription("Block graph drawn by Inception Explorer")
        painter = QPainter()
        if not painter.begin(gen):
            raise OSError(f"cannot write {path}")
        try:
            drawing.paint(painter)
        finally:
            painter.end()
        return path


class PngExporter:
    """Renders a scene into an image `scale` times its scene size and saves it as PNG."""

    def __init__(self, scene: QGraphicsScene, legend: Legend | None = None, font: QFont | None = None):
        self.scene, self.legend, self.font = scene, legend, font

    def image_size(self, scale: float) -> QSize:
        size = _Drawing(self.scene, self.legend, self.font).size
        return QSize(max(1, math.ceil(size.width() * scale)), max(1, math.ceil(size.height() * scale)))

    def render(self, scale: float = 1.0) -> QImage:
        drawing = _Drawing(self.scene, self.legend, self.font)
        size = self.image_size(scale)
        image = QImage(size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(drawing.background())
        painter = QPainter(image)
        painter.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        drawing.paint(painter, scale)
        painter.end()
        return image

    def export(self, path: str | Path, scale: float = 1.0) -> Path:
        path = Path(path)
        if not self.render(scale).save(str(path), "PNG"):
            raise OSError(f"cannot write {path}")
        return path
