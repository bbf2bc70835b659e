"""The attribution map: the heatmap over the input image with its title and colour bar, and the row that
says how it is shown (signed or absolute, its opacity) with the PNG export. A drag on the map draws a box
around the object (the ground truth the map is measured against); Esc clears it.

Signals (AttributionMapView)
----------------------------
box_drawn(object)      (x0, y0, x1, y1) in the image's pixels: a person dragged a box on the map
box_cleared()          Esc on the map

Signals (MapDisplayRow)
-----------------------
display_chosen(str)    "signed" or "absolute"
opacity_chosen(float)  0–1
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (QComboBox, QGraphicsRectItem, QHBoxLayout, QLabel, QPushButton, QSlider, QSplitter,
                               QWidget)

from explorer.core.text import fmt_fraction
from explorer.core.attribution.catalogue import METHOD_NAMES, category_label
from explorer.qt.theme import WARNING_COLOR
from explorer.qt.result_view import overlay_lut

SIGNED_COLORMAP = "CET-D1"  # diverging blue–white–red: negative evidence blue, positive red
ABSOLUTE_COLORMAP = "inferno"
#: Pixel-level maps (IG, saliency) have a few extreme pixels: their colour scale ends at this percentile
#: of |value| so that the rest stays visible (values beyond it are drawn at full colour).
CLIP_PERCENTILE = 99.5
CLIPPED_METHODS = ("integrated_gradients", "saliency", "smoothgrad_integrated_gradients", "smoothgrad_saliency")
RULE_NAMES = {"gausslegendre": "Gauss–Legendre", "riemann_trapezoid": "trapezoid rule"}
#: The drawn box: a bright dashed outline that reads over every colour map.
BOX_COLOR = "#00e676"
#: A drag shorter than this (image pixels) on either side is a click, not a box.
MIN_BOX = 2
#: How to give the map its ground truth, on the map itself.
DRAG_TIP = "Drag on the map to draw a box around the object: the map is then measured against it. Esc clears it."


#: Width the evidence tabs get beside the map, at least, until the person moves the handle: the curves' plot with
#: its axes and two-column legend, and the verdict under it, readable.
EVIDENCE_WIDTH = 320


class MapFirstSplitter(QSplitter):
    """The map (widget 0, whose AttributionMapView is `view`) beside the evidence tabs (widget 1): until the person
    moves the handle, the map gets the widest square the splitter's height allows, the tabs the rest but at least
    EVIDENCE_WIDTH (under the map, as before, the tabs left a laptop's 339 px dock a map 94 px tall)."""

    def __init__(self, view: AttributionMapView, parent=None):
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.view = view
        self.automatic = True
        self.splitterMoved.connect(lambda *_: setattr(self, "automatic", False))

    def addWidget(self, widget) -> None:  # noqa: N802 - Qt override
        super().addWidget(widget)
        widget.installEventFilter(self)  # the tabs appear with the first evidence: the map makes room then

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt override
        if event.type() in (QEvent.Type.Show, QEvent.Type.Hide):
            QTimer.singleShot(0, self.fit)
        return super().eventFilter(watched, event)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.fit()

    def fit(self) -> None:
        """The automatic split: the map square as tall as it can be drawn, the rest to the evidence."""
        if not self.automatic or self.count() != 2 or not self.widget(1).isVisibleTo(self):
            return
        total = self.width() - self.handleWidth()
        map_box, box = self.widget(0), self.view.box.geometry()
        # What the map's column needs besides the square: the colour bar and margins across, the title and the
        # lines under the map down.
        across = max(0, map_box.width() - round(box.width()))
        down = max(0, map_box.height() - round(box.height()))
        side = max(0, self.height() - down)
        left = min(side + across, total - EVIDENCE_WIDTH)
        left = max(left, map_box.minimumSizeHint().width())
        self.setSizes([left, total - left])


class AttributionMapView(pg.GraphicsLayoutWidget):
    """The heatmap (`heat_item`) over the image (`image_item`) in `box`, its `title` and `colorbar`; the box a
    person drew around the object (`object_item`)."""

    box_drawn = Signal(object)
    box_cleared = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # Esc reaches the map once it was clicked
        self._drag_from: QPointF | None = None
        self.setBackground(None)
        self.ci.setContentsMargins(2, 2, 2, 2)  # a laptop's dock has no pixels to spare around the map
        self.title = self.addLabel("", row=0, col=0, colspan=2)
        self.title.item.document().setDocumentMargin(1)
        self.setToolTip(DRAG_TIP)
        self.box = self.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMouse=False)
        self.box.setMenuEnabled(False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.heat_item = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.image_item)
        self.box.addItem(self.heat_item)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=ABSOLUTE_COLORMAP, interactive=False, width=12)
        self.addItem(self.colorbar, row=1, col=1)
        self.colorbar.hide()
        self.object_item = QGraphicsRectItem()
        pen = QPen(QColor(BOX_COLOR), 2, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.object_item.setPen(pen)
        self.object_item.setZValue(10)
        self.object_item.hide()
        self.box.addItem(self.object_item, ignoreBounds=True)

    def set_image(self, image_rgb: np.ndarray | None) -> None:
        """The image under the heatmap (H, W, 3 uint8); None clears it."""
        if image_rgb is not None:
            self.image_item.setImage(image_rgb, autoLevels=False, levels=(0, 255))
        else:
            self.image_item.clear()
        self.box.autoRange(padding=0.01)

    def set_opacity(self, opacity: float) -> None:
        self.heat_item.setOpacity(opacity)

    def show_result(self, r, display: str, opacity: float, categories: list[str]) -> bool:
        """Draw the map `r` (None: the empty state) as `display` asks; returns whether it is drawn signed."""
        if r is None:
            self.heat_item.clear()
            self.colorbar.hide()
            self.title.setText("Run a method to see which pixels carry the evidence.")
            self._wrap_title()
            return False
        signed = r.signed and display == "signed"
        heat = r.heatmap.astype(np.float32)
        mag = np.abs(heat)
        clipped = r.method in CLIPPED_METHODS
        m = float(np.percentile(mag, CLIP_PERCENTILE) if clipped else mag.max()) or float(mag.max()) or 1.0
        if signed:
            levels, cmap = (-m, m), SIGNED_COLORMAP
        else:
            heat = mag
            levels, cmap = (0.0, m), ABSOLUTE_COLORMAP
        self.heat_item.setImage(heat, autoLevels=False, levels=levels)
        self.heat_item.setLookupTable(overlay_lut(cmap, signed))
        self.heat_item.setOpacity(opacity)
        self.colorbar.setColorMap(pg.colormap.get(cmap))
        self.colorbar.setLevels(levels)
        self.colorbar.show()
        where = f" · {r.layer}" if r.layer else ""
        # Its parts kept whole so that a narrow map wraps the title between them, not inside a class name
        # ("cowboy boot / (514)").
        whole = lambda text: f"<span style='white-space:nowrap'>{text}</span>"  # noqa: E731
        self.title.setText(f"<b>{whole(METHOD_NAMES[r.method] + where)}</b> — "
                           + whole(category_label(categories, r.target) + (" (signed)" if signed else ""))
                           + (f" · scale clipped at the {CLIP_PERCENTILE:g}th percentile" if clipped else ""))
        self._wrap_title()
        self.box.autoRange(padding=0.01)
        return signed

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._wrap_title()

    def _wrap_title(self) -> None:
        """The title on as many lines as the view's width needs (a label as wide as its text was cut: "cowboy
        bo…"); on one line when it fits."""
        if not hasattr(self, "title"):  # pyqtgraph resizes the view before __init__ has made it
            return
        item = self.title.item
        item.setTextWidth(-1)
        room = self.width() - 6
        if room > 0 and item.boundingRect().width() > room:
            item.setTextWidth(room)
        self.title.updateMin()
        self.title.resizeEvent(None)

    # -- the box around the object

    def show_box(self, box: tuple[int, int, int, int] | None) -> None:
        """Outline `box` (x0, y0, x1, y1) in the image's pixels; None: no box."""
        if box is None:
            self.object_item.hide()
            return
        x0, y0, x1, y1 = box
        self.object_item.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        self.object_item.show()

    def image_point(self, pos) -> QPointF:
        """A point of the widget (QPoint) in the image's pixels."""
        return self.box.mapSceneToView(self.mapToScene(pos))

    def _image_shape(self) -> tuple[int, int] | None:
        image = self.image_item.image
        return None if image is None else image.shape[:2]

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        shape = self._image_shape()
        point = self.image_point(event.position().toPoint())
        if (event.button() == Qt.MouseButton.LeftButton and shape is not None
                and 0 <= point.x() <= shape[1] and 0 <= point.y() <= shape[0]):
            self._drag_from = point
            self.setFocus(Qt.FocusReason.MouseFocusReason)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self._drag_from is None:
            super().mouseMoveEvent(event)
            return
        box = self._box_to(self.image_point(event.position().toPoint()))
        if box is not None:
            self.show_box(box)
        event.accept()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self._drag_from is None or event.button() != Qt.MouseButton.LeftButton:
            super().mouseReleaseEvent(event)
            return
        box = self._box_to(self.image_point(event.position().toPoint()))
        self._drag_from = None
        event.accept()
        if box is not None and box[2] - box[0] >= MIN_BOX and box[3] - box[1] >= MIN_BOX:
            self.box_drawn.emit(box)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.key() == Qt.Key.Key_Escape and self.object_item.isVisible():
            self.box_cleared.emit()
            event.accept()
            return
        super().keyPressEvent(event)

    def _box_to(self, point: QPointF) -> tuple[int, int, int, int] | None:
        """The box from where the drag began to `point`: whole pixels that cover both, inside the image."""
        shape = self._image_shape()
        if shape is None or self._drag_from is None:
            return None
        h, w = shape
        a, b = self._drag_from, point
        x0, x1 = sorted((a.x(), b.x()))
        y0, y1 = sorted((a.y(), b.y()))
        clip = lambda v, hi: int(min(max(v, 0), hi))  # noqa: E731
        return clip(math.floor(x0), w), clip(math.floor(y0), h), clip(math.ceil(x1), w), clip(math.ceil(y1), h)

    def export_png(self, path: str | Path, width: int = 900) -> Path:
        """The heatmap over the image with its title and colour bar."""
        from explorer.qt.result_view import export_layout_png

        return export_layout_png(self.ci, path, width)


def delta_text(r) -> str:
    """Integrated Gradients' convergence delta of the map `r` (rich text; a warning when large), or ""."""
    if r is None or r.delta is None:
        return ""
    rule = RULE_NAMES.get(r.ig_method, r.ig_method)
    text = (f"Convergence delta {r.delta:.3g} ({fmt_fraction(r.delta_relative)} of f(x) − f(baseline)"
            + (f"; {rule}" if rule else "") + ")")
    if r.delta_flagged:
        text = f"<span style='color:{WARNING_COLOR}'><b>⚠ {text}: large — increase the steps</b></span>"
    return text


class MapDisplayRow(QWidget):
    """Show (signed or absolute), Opacity and Export PNG…: how the map is shown, under the map."""

    display_chosen = Signal(str)
    opacity_chosen = Signal(float)

    def __init__(self, opacity: float, parent=None):
        super().__init__(parent)
        self.display_combo = QComboBox(toolTip="How the map is shown. Signed: positive evidence red, negative blue; "
                                       "absolute: magnitude")
        self.display_combo.addItem("Signed", "signed")
        self.display_combo.addItem("Absolute", "absolute")
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(opacity * 100))
        self.opacity_slider.setToolTip("Opacity of the heatmap over the image")
        self.opacity_slider.setMinimumWidth(50)  # under the map the row is narrow: it left the slider 15 px
        self.export_button = QPushButton("Export PNG…")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.display_combo)  # its items say what it is: a "Show" label made the row wider than the map
        row.addWidget(QLabel("Opacity"))
        row.addWidget(self.opacity_slider, 1)
        row.addWidget(self.export_button)
        self.display_combo.currentIndexChanged.connect(
            lambda: self.display_chosen.emit(self.display_combo.currentData()))
        self.opacity_slider.valueChanged.connect(lambda v: self.opacity_chosen.emit(v / 100))

    def show_display(self, display: str) -> None:
        """Select `display` without announcing it (the map on screen decides how it is labelled)."""
        self.display_combo.blockSignals(True)
        self.display_combo.setCurrentIndex(self.display_combo.findData(display))
        self.display_combo.blockSignals(False)

    def show_opacity(self, opacity: float) -> None:
        """Move the slider to `opacity` without announcing it."""
        self.opacity_slider.blockSignals(True)
        self.opacity_slider.setValue(round(opacity * 100))
        self.opacity_slider.blockSignals(False)
