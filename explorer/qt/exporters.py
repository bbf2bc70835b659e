"""Exporters of the graph drawing as shown (expanded blocks included): SVG with real text, PNG at a scale."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QGraphicsScene


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


class SvgExporter:
    """Writes a scene as SVG through QSvgGenerator; items draw text with drawText, so it stays <text>."""

    def __init__(self, scene: QGraphicsScene, title: str = "Inception Explorer graph"):
        self.scene, self.title = scene, title

    def export(self, path: str | Path) -> Path:
        from PySide6.QtSvg import QSvgGenerator

        path = Path(path)
        rect = self.scene.sceneRect()
        gen = QSvgGenerator()
        gen.setFileName(str(path))
        gen.setSize(QSize(math.ceil(rect.width()), math.ceil(rect.height())))
        gen.setViewBox(QRectF(0, 0, rect.width(), rect.height()))
        gen.setTitle(self.title)
        gen.setDescription("Block graph drawn by Inception Explorer")
        painter = QPainter()
        if not painter.begin(gen):
            raise OSError(f"cannot write {path}")
        try:
            painter.fillRect(QRectF(0, 0, rect.width(), rect.height()), self.scene.backgroundBrush())
            with uncached(self.scene):
                self.scene.render(painter, QRectF(0, 0, rect.width(), rect.height()), rect)
        finally:
            painter.end()
        return path


class PngExporter:
    """Renders a scene into an image `scale` times its scene size and saves it as PNG."""

    def __init__(self, scene: QGraphicsScene):
        self.scene = scene

    def image_size(self, scale: float) -> QSize:
        rect = self.scene.sceneRect()
        return QSize(max(1, math.ceil(rect.width() * scale)), max(1, math.ceil(rect.height() * scale)))

    def render(self, scale: float = 1.0) -> QImage:
        size = self.image_size(scale)
        image = QImage(size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(self.scene.backgroundBrush().color() if self.scene.backgroundBrush().style()
                   != Qt.BrushStyle.NoBrush else Qt.GlobalColor.white)
        painter = QPainter(image)
        painter.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        with uncached(self.scene):
            self.scene.render(painter, QRectF(0, 0, size.width(), size.height()), self.scene.sceneRect(),
                              Qt.AspectRatioMode.IgnoreAspectRatio)
        painter.end()
        return image

    def export(self, path: str | Path, scale: float = 1.0) -> Path:
        path = Path(path)
        if not self.render(scale).save(str(path), "PNG"):
            raise OSError(f"cannot write {path}")
        return path
