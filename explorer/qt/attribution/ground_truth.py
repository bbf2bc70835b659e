"""Ground truth for the map on screen: is its maximum on the object (the pointing game), and how much of its
positive attribution lies inside the object (explorer.core.attribution.localisation).

Where the object is comes from the session's state, never from a widget: a box a person drew on the map
(`ExplorerState.object_box`, in the network input's pixels) or else the mask the image came with
(`ImageInput.mask`: a drawn sample's shape, at the image's own size, brought to the network input with the
classifier's own resize and centre crop). A drawn box wins over the mask; clearing it (the button, or Esc on
the map) brings the mask back.

Signals
-------
changed()   the object's pixels changed (a box drawn or cleared): the views that show localisation redraw
"""

from __future__ import annotations

import html
import math

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from explorer.core.text import fmt_fraction
from explorer.qt.theme import WARNING_COLOR
from explorer.qt.panels import UNLEARNED, unlearned

#: What the line says before there is anything to measure against (short: it sits under the map), and its tooltip.
HINT = "Drag a box around the object on the map."
HINT_TIP = ("The map is then measured against the box: whether its maximum lies inside (the pointing game) and how "
            "much of its positive attribution does. Esc on the map, or Clear box, forgets the box.")


def localise_map(heatmap: np.ndarray, mask: np.ndarray):
    """The engine's Localisation (pointing, inside_share) of `heatmap` against `mask`, both (H, W)."""
    from explorer.core.attribution.localisation import localise

    return localise(heatmap, mask)


def pointing_text(loc) -> str:
    """'✓' when the map's maximum lies on the object, else '✗'; '—' without ground truth."""
    return "—" if loc is None else ("✓" if loc.pointing else "✗")


def inside_text(loc) -> str:
    """The share of positive attribution inside the object ('83.4 %'); '—' without ground truth or evidence."""
    if loc is None or not math.isfinite(loc.inside_share):
        return "—"
    return fmt_fraction(loc.inside_share)


class GroundTruth(QWidget):
    """The line under the map that measures it against the object, and the button that clears a drawn box (each
    shown only when there is something to say or to clear).

    It binds the map view's drawn box to `session.state.object_box` and back; `localise(result)` measures any
    map of the image on screen (the methods table asks it for each row)."""

    changed = Signal()

    def __init__(self, session, view, parent=None):
        super().__init__(parent)
        self.session, self.state, self.view = session, session.state, view
        self.result = None  # the map the line measures
        self.line = QLabel(self)
        self.line.setWordWrap(True)
        self.line.setTextFormat(Qt.TextFormat.RichText)
        self.line.setToolTip(HINT_TIP)
        self.clear_button = QPushButton("Clear box", self)
        self.clear_button.setToolTip("Forget the box drawn on the map (Esc on the map does the same)")
        self.clear_button.hide()
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.line, 1)
        row.addWidget(self.clear_button, 0, Qt.AlignmentFlag.AlignTop)
        view.box_drawn.connect(self.set_box)
        view.box_cleared.connect(self.clear_box)
        self.clear_button.clicked.connect(self.clear_box)
        self.state.connect("object_box", self._on_box)
        self.hide()

    def set_box(self, box) -> None:
        """Measure maps against `box` (x0, y0, x1, y1) in the network input's pixels."""
        self.state.object_box = tuple(int(v) for v in box)

    def clear_box(self) -> None:
        self.state.object_box = None

    def _on_box(self, box) -> None:
        self.view.show_box(box)
        self.clear_button.setVisible(box is not None)
        self.show_result(self.result)
        self.changed.emit()

    # -- the object's pixels

    def mask_for(self, shape: tuple[int, int]) -> tuple[np.ndarray | None, str]:
        """The object's pixels at a map's `shape` (H, W) and where they come from, for people ('the box you
        drew'); (None, why not) when there are none ('' when nothing says where the object is)."""
        shape = tuple(shape)
        box = self.state.object_box
        if box is not None:
            from explorer.core.attribution.localisation import box_mask

            x0, y0, x1, y1 = box
            return box_mask(shape, box), f"the box you drew ({x0}, {y0})–({x1}, {y1})"
        given = self.state.image
        mask = getattr(given, "mask", None)
        if mask is None:
            return None, ""
        what = f"the {given.name.strip('<>')}'s pixels"
        if mask.shape == shape:
            return np.asarray(mask, dtype=bool), what
        clf = self.session.classifier
        if clf is not None:
            from explorer.core.attribution.localisation import input_mask

            mapped = input_mask(mask, clf.transforms)
            if mapped.shape == shape:
                return mapped, f"{what}, resized and cropped as the network sees the image"
        return None, f"{what} do not fit this map"

    def localise(self, result):
        """The Localisation of `result`'s map against the object, or None when there is no ground truth."""
        if result is None:
            return None
        mask, _what = self.mask_for(result.heatmap.shape[:2])
        return None if mask is None else localise_map(result.heatmap, mask)

    # -- the line

    def caption(self, result) -> str:
        """A few words for beside the curves: 'pointing ✓ · 83.4 % inside the object' ('' without ground truth)."""
        loc = self.localise(result)
        return "" if loc is None else f"pointing {pointing_text(loc)} · {inside_text(loc)} inside the object"

    def show_result(self, result) -> None:
        """Measure `result` (the map on screen; None: none) and say so, or say how to give ground truth."""
        self.result = result
        self.setVisible(result is not None)
        if result is None:
            self.line.setText("")
            return
        mask, what = self.mask_for(result.heatmap.shape[:2])
        if mask is None:
            self.line.setText(html.escape(what[:1].upper() + what[1:] + ". " if what else "") + HINT)
            return
        loc = localise_map(result.heatmap, mask)
        if loc.pointing:
            point = "✓ the map's maximum lies on the object"
        else:
            point = f"<span style='color:{WARNING_COLOR}'>✗ the map's maximum lies off the object</span>"
        share = ("no positive attribution to share" if not math.isfinite(loc.inside_share) else
                 f"{inside_text(loc)} of the positive attribution inside it ({fmt_fraction(mask.mean())} of the"
                 " pixels)")
        caveat = f" <span style='color:{WARNING_COLOR}'>⚠ {UNLEARNED}.</span>" if unlearned(self.state.loaded) else ""
        self.line.setText(f"<b>Ground truth</b> ({html.escape(what)}): {point}; {share}.{caveat}")
