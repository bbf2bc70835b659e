"""The window's exports: the graph as SVG or PNG (pyqtgraph's way: exporters are objects, not view methods)
and the class handout as PDF, each with its File-menu dialog."""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QInputDialog


class WindowExports:
    """File → Export graph / Export handout of `window`: what is drawn, named after the model on screen."""

    def __init__(self, window):
        self.window = window
        self.handout_export = None  #: the handout's writer, made on first use

    def export_svg(self, path: str | Path) -> Path:
        from explorer.qt.graph.exporters import SvgExporter

        w = self.window
        lw = w.view.legend_widget  # the overlay's legend, when one is on
        return SvgExporter(w.view.scene(), f"{w.spec_title()} block graph", lw.legend, lw.font()).export(path)

    def export_png(self, path: str | Path, scale: float = 2.0) -> Path:
        from explorer.qt.graph.exporters import PngExporter

        lw = self.window.view.legend_widget
        return PngExporter(self.window.view.scene(), lw.legend, lw.font()).export(path, scale)

    def export_svg_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.window, "Export graph as SVG", f"{self.file_stem()}.svg",
                                              "SVG (*.svg)")
        if path:
            self._export(lambda: self.export_svg(path))

    def export_png_dialog(self) -> None:
        scale, ok = QInputDialog.getDouble(self.window, "Export graph as PNG", "Scale (1 = as drawn at 100 %):", 2.0,
                                           0.25, 8.0, 2)
        if not ok:
            return
        path, _ = QFileDialog.getSaveFileName(self.window, "Export graph as PNG", f"{self.file_stem()}.png",
                                              "PNG (*.png)")
        if path:
            self._export(lambda: self.export_png(path, scale))

    def export_handout_dialog(self) -> None:
        """File → Export handout…: a PDF of the model (and the image on screen), written in a worker."""
        path, _ = QFileDialog.getSaveFileName(self.window, "Export handout", f"{self.file_stem()}_handout.pdf",
                                              "PDF (*.pdf)")
        if path:
            self.export_handout(path)

    def export_handout(self, path: str | Path, blocks: list[str] | None = None):
        """Start writing the handout to `path` (see explorer.qt.lecture.handout_export); whether it started."""
        from explorer.qt.lecture.handout_export import HandoutExport

        if self.handout_export is None:
            self.handout_export = HandoutExport(self.window)
        return self.handout_export.start(path, blocks)

    def file_stem(self) -> str:
        """The model's name as a file name ("torchvision:resnet18" → "torchvision_resnet18")."""
        w = self.window
        name = w.model_name or "graph"
        return re.sub(r"[^\w.-]+", "_", Path(name).stem if w.model_ref else name)

    def _export(self, fn) -> None:
        try:
            path = fn()
        except OSError as e:
            self.window.show_error(f"export failed: {e}")
        else:
            self.window.show_status(f"exported {path}", 6000)
