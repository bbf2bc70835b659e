"""The attribution map: the heatmap over the input image with its title and colour bar, and the row that
says how it is shown (signed or absolute, its opacity) with the PNG export.

Signals (MapDisplayRow)
-----------------------
display_chosen(str)    "signed" or "absolute"
opacity_chosen(float)  0–1
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

from explorer.core.text import fmt_fraction
from explorer.qt.attribution.catalogue import METHOD_NAMES, WARNING_COLOR, category_label
from explorer.qt.result_view import overlay_lut

SIGNED_COLORMAP = "CET-D1"  # diverging blue–white–red: negative evidence blue, positive red
ABSOLUTE_COLORMAP = "inferno"
#: Pixel-level maps (IG, saliency) have a few extreme pixels: their colour scale ends at this percentile
#: of |value| so that the rest stays visible (values beyond it are drawn at full colour).
CLIP_PERCENTILE = 99.5
CLIPPED_METHODS = ("integrated_gradients", "saliency", "smoothgrad_integrated_gradients", "smoothgrad_saliency")
RULE_NAMES = {"gausslegendre": "Gauss–Legendre", "riemann_trapezoid": "trapezoid rule"}


class AttributionMapView(pg.GraphicsLayoutWidget):
    """The heatmap (`heat_item`) over the image (`image_item`) in `box`, its `title` and `colorbar`."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground(None)
        self.title = self.addLabel("", row=0, col=0, colspan=2)
        self.box = self.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMouse=False)
        self.box.setMenuEnabled(False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.heat_item = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.image_item)
        self.box.addItem(self.heat_item)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=ABSOLUTE_COLORMAP, interactive=False, width=12)
        self.addItem(self.colorbar, row=1, col=1)
        self.colorbar.hide()

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
        self.title.setText(f"<b>{METHOD_NAMES[r.method]}{where}</b> — {category_label(categories, r.target)}"
                           + (" (signed)" if signed else "")
                           + (f" · scale clipped at the {CLIP_PERCENTILE:g}th percentile" if clipped else ""))
        self.box.autoRange(padding=0.01)
        return signed

    def heatmap_levels(self) -> tuple[float, float] | None:
        return None if self.heat_item.image is None else tuple(self.heat_item.getLevels())

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
    """Show (signed or absolute), Opacity and Export PNG…: how the map is shown, in the column of controls."""

    display_chosen = Signal(str)
    opacity_chosen = Signal(float)

    def __init__(self, opacity: float, parent=None):
        super().__init__(parent)
        self.display_combo = QComboBox(toolTip="Signed: positive evidence red, negative blue; absolute: magnitude")
        self.display_combo.addItem("Signed", "signed")
        self.display_combo.addItem("Absolute", "absolute")
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(opacity * 100))
        self.opacity_slider.setToolTip("Opacity of the heatmap over the image")
        self.export_button = QPushButton("Export PNG…")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Show"))
        row.addWidget(self.display_combo)
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
