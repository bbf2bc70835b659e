"""One channel's feature map enlarged, beside its overlay on the input image, with the overlay's opacity.

Signals
-------
opacity_changed(float)   the opacity slider moved (0..1)
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from explorer.qt.microscope.branch_mosaics import image_box
from explorer.qt.result_view import FEATURE_COLORMAP, overlay_lut

#: What the detail area says while no channel is selected.
NO_CHANNEL_TEXT = "Click a channel to enlarge it and overlay it on the image."


class ChannelDetail(QWidget):
    """The enlarged map and its overlay on the image (see module docstring)."""

    opacity_changed = Signal(float)

    def __init__(self, opacity: float, parent=None):
        super().__init__(parent)
        self.detail = pg.GraphicsLayoutWidget()
        self.detail.setBackground(None)
        self.detail_title = self.detail.addLabel("", row=0, col=0, colspan=2)
        self.detail_box = image_box(self.detail.ci, 1, 0)
        self.overlay_box = image_box(self.detail.ci, 1, 1)
        self.detail_item = pg.ImageItem(axisOrder="row-major")
        self.detail_item.setColorMap(pg.colormap.get(FEATURE_COLORMAP))
        self.detail_box.addItem(self.detail_item)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item.setLookupTable(overlay_lut(FEATURE_COLORMAP))
        self.overlay_box.addItem(self.image_item)
        self.overlay_box.addItem(self.overlay_item)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(opacity * 100))
        self.opacity_slider.setToolTip("Opacity of the map over the input image (weak values are more transparent)")
        self.opacity_slider.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100))
        dl = QVBoxLayout(self)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addWidget(self.detail, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Overlay opacity"))
        row.addWidget(self.opacity_slider, 1)
        dl.addLayout(row)

    def set_image(self, image_rgb: np.ndarray | None) -> None:
        """The input image under the overlay (None: none)."""
        if image_rgb is not None:
            self.image_item.setImage(image_rgb, autoLevels=False, levels=(0, 255))
        else:
            self.image_item.clear()

    def set_opacity(self, opacity: float) -> None:
        """Show `opacity` on the slider (without echoing it back) and draw the overlay with it."""
        self.opacity_slider.blockSignals(True)
        self.opacity_slider.setValue(round(opacity * 100))
        self.opacity_slider.blockSignals(False)
        self.overlay_item.setOpacity(opacity)

    def show_map(self, m: np.ndarray, heading: str, image_rgb: np.ndarray | None, opacity: float) -> None:
        """Enlarge map `m` under `heading` and overlay it, upsampled, on `image_rgb` (alone without one)."""
        from explorer.core.microscope.activations import upsample

        lo, hi = float(m.min()), float(m.max())
        levels = (lo, hi if hi > lo else lo + 1e-6)
        self.detail_item.setImage(m, autoLevels=False, levels=levels)
        self.detail_title.setText(
            f"<b>{heading}</b> — {m.shape[0]}×{m.shape[1]}, mean {float(m.mean()):.3g}, max {hi:.3g}")
        overlay = m if image_rgb is None else upsample(m, image_rgb.shape[:2])
        self.overlay_item.setImage(overlay, autoLevels=False, levels=levels)
        self.overlay_item.setOpacity(opacity)
        self.detail_box.autoRange(padding=0.01)
        self.overlay_box.autoRange(padding=0.01)

    def clear_map(self) -> None:
        """No channel selected: no map, no overlay, a line saying how to choose one."""
        self.detail_item.clear()
        self.overlay_item.clear()
        self.detail_title.setText(NO_CHANNEL_TEXT)
