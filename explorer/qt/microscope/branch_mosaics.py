"""The branches of one block side by side, each a mosaic of its channels' feature maps.

`BranchMosaics` draws what the activation view gives it (feature maps per branch, their titles and
statistics lines, the scale, the selected channel); it keeps no capture of its own.

Signals
-------
tile_clicked(int, int)   branch index, display position of the tile clicked (row by row in its mosaic)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QGraphicsRectItem, QSizePolicy

from explorer.qt.result_view import FEATURE_COLORMAP

#: Gap between tiles of a mosaic, in map pixels (drawn transparent: NaN in the float image).
GAP = 1


def mosaic(maps: np.ndarray, columns: int | None = None, gap: int = GAP) -> tuple[np.ndarray, int]:
    """Tile (C, h, w) maps row by row into one (rows·(h+gap)−gap, cols·(w+gap)−gap) image; gaps are NaN.

    Returns the image and the number of columns.
    """
    c, h, w = maps.shape
    cols = columns or max(1, math.ceil(math.sqrt(c)))
    rows = max(1, math.ceil(c / cols))
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan, dtype=np.float32)
    for i in range(c):
        r, q = divmod(i, cols)
        out[r * (h + gap): r * (h + gap) + h, q * (w + gap): q * (w + gap) + w] = maps[i]
    return out, cols


def _title_lines(title: str) -> str:
    """"2 · #3×3 reduce → #3×3 · 208 ch" as "<b>2 · 208 ch</b><br>#3×3 reduce →<br>#3×3"."""
    parts = title.split(" · ")
    if len(parts) < 3:
        return f"<b>{title}</b>"
    return f"<b>{parts[0]} · {parts[-1]}</b><br>{' · '.join(parts[1:-1]).replace(' → ', ' →<br>')}"


def _narrow(label) -> None:
    """A label that takes its column's width instead of widening the column to its text."""
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)


def image_box(layout: pg.GraphicsLayout, row: int, col: int) -> pg.ViewBox:
    """A view box for an image: aspect locked, y down, no mouse panning or context menu."""
    box = layout.addViewBox(row=row, col=col, lockAspect=True, invertY=True, enableMouse=False)
    box.setMenuEnabled(False)
    return box


class MosaicItem(pg.ImageItem):
    """One branch's mosaic; a click reports which tile (display position) was hit."""

    tile_clicked = Signal(int)

    def __init__(self):
        super().__init__(axisOrder="row-major")
        self.tile = (1, 1)
        self.columns = 1
        self.count = 0

    def tile_at(self, pos: QPointF) -> int | None:
        """The display position of the tile under `pos` (item coordinates), None on a gap or outside."""
        h, w = self.tile
        col, fx = divmod(pos.x(), w + GAP)
        row, fy = divmod(pos.y(), h + GAP)
        if pos.x() < 0 or pos.y() < 0 or fx >= w or fy >= h or col >= self.columns:
            return None
        i = int(row) * self.columns + int(col)
        return i if i < self.count else None

    def tile_center(self, i: int) -> QPointF:
        h, w = self.tile
        r, q = divmod(i, self.columns)
        return QPointF(q * (w + GAP) + w / 2, r * (h + GAP) + h / 2)

    def mouseClickEvent(self, ev):
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        i = self.tile_at(ev.pos())
        if i is not None:
            ev.accept()
            self.tile_clicked.emit(i)


@dataclass
class _Column:
    title: pg.LabelItem
    box: pg.ViewBox
    item: MosaicItem
    mark: QGraphicsRectItem  # outline of the selected channel
    stats: pg.LabelItem


class BranchMosaics(pg.GraphicsLayoutWidget):
    """One column per branch: its title, the mosaic of its channels and a statistics line (see module docstring)."""

    tile_clicked = Signal(int, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground(None)
        self.ci.setSpacing(4)
        self._cmap = pg.colormap.get(FEATURE_COLORMAP)
        self.columns: list[_Column] = []
        #: The branches' mosaics, titles and statistics lines on screen, in branch order.
        self.items: list[MosaicItem] = []
        self.titles: list[str] = []
        self.stat_lines: list[str] = []

    def set_branches(self, titles: Sequence[str], stat_lines: Sequence[str]) -> None:
        """Label the columns (made or reused to match the number of branches)."""
        self._ensure_columns(len(titles))
        self.titles, self.stat_lines = list(titles), list(stat_lines)
        for col, title, line in zip(self.columns, self.titles, self.stat_lines):
            # A column is as wide as its widest line: on one line each, four columns' labels were wider than
            # a laptop's dock and pushed the last branches out of sight; on two, still wider than the dock
            # beside the Details column (1280×800).
            col.title.setText(_title_lines(title))
            col.stats.setText(line.replace(" · ", "<br>"), size="8pt")

    def show_maps(self, maps: Sequence, scale: str, selected: tuple[int, int] | None) -> None:
        """Draw each branch's FeatureMaps (None: not captured) at `scale`, outlining `selected`."""
        for fm, item in zip(maps, self.items):
            if fm is None:
                item.clear()
                item.count = 0
                continue
            img, cols = mosaic(fm.normalised(scale))
            item.tile, item.columns, item.count = fm.maps.shape[1:], cols, len(fm.channels)
            item.setImage(img, autoLevels=False, levels=(0.0, 1.0))
            item.getViewBox().autoRange(padding=0.01)
        self.mark_selection(maps, selected)

    def mark_selection(self, maps: Sequence, selected: tuple[int, int] | None) -> None:
        """Outline the tile of `selected` (branch, channel), hiding every other outline."""
        for k, col in enumerate(self.columns):
            fm = maps[k] if k < len(maps) else None
            if selected is None or selected[0] != k or fm is None:
                col.mark.hide()
                continue
            i = int(np.flatnonzero(fm.channels == selected[1])[0])
            h, w = col.item.tile
            c = col.item.tile_center(i)
            col.mark.setRect(c.x() - w / 2 - 0.5, c.y() - h / 2 - 0.5, w + 1, h + 1)
            col.mark.show()

    def clear_columns(self) -> None:
        """Remove every column."""
        self.ci.clear()
        self.columns, self.items, self.titles, self.stat_lines = [], [], [], []

    def _ensure_columns(self, n: int) -> None:
        """One column per branch (title, mosaic, statistics); reused while the branch count stays."""
        if len(self.columns) == n:
            return
        self.clear_columns()
        for k in range(n):
            title = self.addLabel("", row=0, col=k)
            _narrow(title)
            box = image_box(self.ci, 1, k)
            item = MosaicItem()
            item.setColorMap(self._cmap)
            item.tile_clicked.connect(lambda i, k=k: self.tile_clicked.emit(k, i))
            box.addItem(item)
            mark = QGraphicsRectItem()
            mark.setPen(pg.mkPen("#ff3030", width=2, cosmetic=True))
            mark.setZValue(10)
            mark.hide()
            box.addItem(mark)
            stats = self.addLabel("", row=2, col=k, size="8pt")
            _narrow(stats)
            self.columns.append(_Column(title, box, item, mark, stats))
        self.items = [c.item for c in self.columns]
