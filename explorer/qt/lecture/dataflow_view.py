"""The data-flow slide on screen: one `explorer.core.lecture.dataflow.Slide` painted for a lecture hall.

A block slide draws the block's input at the top, its branches as large columns side by side — each
with the image's most active feature maps, its layers, its share of the block's output energy and of
the attribution — and the join (concatenation or add) below, with the tensor shape on every edge.
In flow mode one step is lit: a branch (the ones still to come are dimmed), then the join. Text is
never smaller than `MIN_POINTS` at any window size; the slide scales with the widget.

`paint_slide` paints into any QPainter (the widget, an offscreen QImage for benchmarks and screenshots).
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from explorer.core.lecture.dataflow import Slide
from explorer.core.text import fmt_fraction, fmt_shape
from explorer.qt.result_view import short_label
from explorer.qt.attribution.branch_share_chart import branch_color
from explorer.qt.result_view import array_to_qimage, coloured

#: No text on a slide is smaller than this (points): readable from the back of a lecture hall.
MIN_POINTS = 18.0
#: Branches narrower than this many average characters go into rows instead of one row of columns.
MIN_COLUMN_EMS = 14
FEATURE_COLORMAP = "inferno"
BACKGROUND = QColor(12, 12, 14)
TEXT = QColor(240, 240, 240)
MUTED = QColor(170, 170, 175)
LIT = QColor(255, 214, 64)
EDGE = QColor(150, 150, 160)
#: The line that says the slide's numbers come from random weights.
CAVEAT = QColor(255, 128, 96)


def elide_lines(fm: QFontMetricsF, text: str, width: float, height: float, flags: int) -> str:
    """`text`, word-wrapped at `width`, cut at a word and ended with "…" so it fits `height`: a branch's
    long chain of layers (Inception v3's nested ones) says it goes on instead of stopping mid-line."""
    def fits(t: str) -> bool:
        return fm.boundingRect(QRectF(0, 0, width, 100 * height + 100), flags, t).height() <= height + 0.5

    if fits(text):
        return text
    words = text.split(" ")
    while len(words) > 1 and not fits(" ".join(words) + " …"):
        words.pop()
    return " ".join(words) + " …"


class SlideFonts:
    """The slide's fonts for a widget height: 18 pt at 720 px, growing with the screen."""

    def __init__(self, height: int, base: QFont | None = None):
        points = max(MIN_POINTS, MIN_POINTS * height / 720)
        self.body = QFont(base or QFont())
        self.body.setPointSizeF(points)
        self.bold = QFont(self.body)
        self.bold.setBold(True)
        self.title = QFont(self.bold)
        self.title.setPointSizeF(points * 1.45)

    def all(self) -> list[QFont]:
        return [self.body, self.bold, self.title]


class DataflowView(QWidget):
    """Shows one slide (`set_slide`); keys are handled by the presentation that owns it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.slide: Slide | None = None
        self.lit: tuple | None = None
        self.flow = False
        self.footer = ""
        #: Said in CAVEAT's colour above the footer: what the slide's numbers are worth (random weights).
        self.caveat = ""
        self._images: dict[int, QImage] = {}  # id of a maps array (or picture) -> its coloured QImage
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAutoFillBackground(False)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def set_slide(self, slide: Slide | None, lit: tuple | None = None, *, flow: bool = False, footer: str = "",
                  caveat: str = "") -> None:
        if slide is not self.slide:
            keep = {id(b.maps) for b in (slide.branches if slide else ()) if b.maps is not None}
            self._images = {k: v for k, v in self._images.items() if k in keep}
        self.slide, self.lit, self.flow, self.footer, self.caveat = slide, lit, flow, footer, caveat
        self.update()

    def fonts(self) -> SlideFonts:
        return SlideFonts(self.height(), self.font())

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        try:
            self.paint_slide(p, QRectF(self.rect()))
        finally:
            p.end()

    def render_image(self, width: int, height: int) -> QImage:
        """The slide as it looks at `width`×`height` (benchmarks, screenshots)."""
        img = QImage(width, height, QImage.Format.Format_RGB32)
        p = QPainter(img)
        try:
            self.paint_slide(p, QRectF(0, 0, width, height), SlideFonts(height, self.font()))
        finally:
            p.end()
        return img

    # -- painting ------------------------------------------------------------------------------

    def paint_slide(self, p: QPainter, rect: QRectF, fonts: SlideFonts | None = None) -> None:
        f = fonts or self.fonts()
        p.fillRect(rect, BACKGROUND)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        s = self.slide
        m = max(10.0, rect.width() * 0.015)
        inner = rect.adjusted(m, m * 0.6, -m, -m * 0.6)
        if s is None:
            self._text(p, inner, f.body, MUTED, "Classify an image to walk it through the network",
                       Qt.AlignmentFlag.AlignCenter)
            return
        body = self._header(p, inner, f, s)
        for line, font, colour in ((self.footer, f.body, MUTED), (self.caveat, f.bold, CAVEAT)):
            if line:
                fh = QFontMetricsF(font).height()
                self._text(p, QRectF(body.left(), body.bottom() - fh, body.width(), fh), font, colour, line,
                           Qt.AlignmentFlag.AlignCenter)
                body.setBottom(body.bottom() - fh - 4)
        if s.kind == "input":
            self._input(p, body, f, s)
        elif s.kind == "top5":
            self._top5(p, body, f, s)
        else:
            self._block(p, body, f, s)

    def _header(self, p: QPainter, r: QRectF, f: SlideFonts, s: Slide) -> QRectF:
        h = QFontMetricsF(f.title).height() * 1.15
        top = QRectF(r.left(), r.top(), r.width(), h)
        right = s.source
        if self.flow and s.kind == "block":
            right = ("flow · " + right) if right else "flow"
        rw = QFontMetricsF(f.body).horizontalAdvance(right) + 8 if right else 0
        self._text(p, top.adjusted(0, 0, -rw - 10, 0), f.title, TEXT, s.title, Qt.AlignmentFlag.AlignVCenter)
        if right:
            self._text(p, top, f.body, LIT if self.flow and s.kind == "block" else MUTED, right,
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return QRectF(r.left(), top.bottom() + 4, r.width(), r.bottom() - top.bottom() - 4)

    def _input(self, p: QPainter, r: QRectF, f: SlideFonts, s: Slide) -> None:
        lh = QFontMetricsF(f.body).height()
        side = min(r.height() - 3 * lh, r.width() * 0.6)
        img = QRectF(r.left() + (r.width() - side) / 2, r.top(), side, side)
        if s.image is not None:
            p.drawImage(img, self._picture(s.image))
        c, hh, ww = s.out_shape
        lines = [f"{fmt_shape(s.out_shape)}: {c} channels of {hh}×{ww} pixels",
                 "resized, cropped and normalised as the network's weights expect (shown de-normalised)"]
        y = img.bottom() + lh * 0.3
        for i, line in enumerate(lines):
            self._text(p, QRectF(r.left(), y, r.width(), lh), f.bold if i == 0 else f.body, TEXT if i == 0 else MUTED,
                       line, Qt.AlignmentFlag.AlignHCenter)
            y += lh * 1.1

    def _top5(self, p: QPainter, r: QRectF, f: SlideFonts, s: Slide) -> None:
        """The input picture on the left, the five classes as bars on the right."""
        fm, fb = QFontMetricsF(f.body), QFontMetricsF(f.bold)
        lh = fm.height()
        if s.image is not None:
            side = min(r.height() * 0.85, r.width() * 0.3)
            p.drawImage(QRectF(r.left(), r.top() + (r.height() - side) / 2, side, side), self._picture(s.image))
            r = r.adjusted(side + lh, 0, 0, 0)
        n = max(1, len(s.top))
        row = min(lh * 2.4, r.height() / (n + 0.5))
        pct_w = fm.horizontalAdvance("100.0 %") + 12
        label_w = min(r.width() * 0.5, max((fb.horizontalAdvance(lab) for lab, _ in s.top), default=0) + 16)
        bar_w = r.width() - label_w - pct_w
        y = r.top() + (r.height() - row * n) / 2
        for i, (label, prob) in enumerate(s.top):
            self._text(p, QRectF(r.left(), y, label_w - 12, row), f.bold if i == 0 else f.body, TEXT, label,
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            bar = QRectF(r.left() + label_w, y + row * 0.2, max(3.0, bar_w * max(0.0, min(1.0, prob))), row * 0.6)
            p.fillRect(bar, LIT if i == 0 else QColor(branch_color(0)))
            self._text(p, QRectF(bar.right() + 8, y, pct_w, row), f.body, TEXT, fmt_fraction(prob),
                       Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            y += row

    def _block(self, p: QPainter, r: QRectF, f: SlideFonts, s: Slide) -> None:
        fm, fb = QFontMetricsF(f.body), QFontMetricsF(f.bold)
        lh = fm.height()
        lit = self.lit
        box_h = lh * 1.35
        n = max(1, len(s.branches))
        # The input, its edges to each branch, the branches, their output shapes and edges, the join.
        in_text = f"input {fmt_shape(s.in_shape)}"
        in_box = self._centred_box(r.center().x(), r.top(), f, in_text, box_h)
        panels_top = in_box.bottom() + lh * 1.2
        join_box_top = r.bottom() - box_h
        gap = max(10.0, r.width() * 0.012)
        # More branches than fit side by side at a readable width (DenseNet's 6 to 32 layers): rows of
        # them, each branch's shape inside its panel, one edge in and one out of the whole grid.
        cols = max(1, min(n, int((r.width() + gap) // (MIN_COLUMN_EMS * fm.averageCharWidth() + gap))))
        rows = math.ceil(n / cols)
        cols = math.ceil(n / rows)
        grid = rows > 1
        panels_bottom = join_box_top - (lh * 1.2 if grid else lh * 2.3)  # room for the shapes under the branches
        col_w = (r.width() - gap * (cols - 1)) / cols
        row_h = (panels_bottom - panels_top - gap * (rows - 1)) / rows
        panels = [QRectF(r.left() + (k % cols) * (col_w + gap), panels_top + (k // cols) * (row_h + gap), col_w, row_h)
                  for k in range(n)]
        word = {"cat": "concatenate", "add": "add"}.get(s.merge or "", s.merge or "join")
        channels = " + ".join(str(b.out_shape[0]) if b.out_shape else "?" for b in s.branches)
        join_text = f"{word}  {channels}  →  {fmt_shape(s.out_shape)}" if s.merge == "cat" else \
            f"{word}  →  {fmt_shape(s.out_shape)}"
        if fb.horizontalAdvance(join_text) > r.width() - 40:
            join_text = f"{word}  →  {fmt_shape(s.out_shape)}"
        join_box = self._centred_box(r.center().x(), join_box_top, f, join_text, box_h, bold=True)
        merge_lit = lit is not None and lit[0] == "merge"
        lit_k = lit[1] if lit is not None and lit[0] == "branch" else None
        # Edges first, under the boxes.
        if grid:
            self._edge(p, QPointF(in_box.center().x(), in_box.bottom()), QPointF(r.center().x(), panels_top),
                       LIT if lit_k is not None else EDGE, 4 if lit_k is not None else 2)
            self._edge(p, QPointF(r.center().x(), panels_bottom), QPointF(join_box.center().x(), join_box.top()),
                       LIT if merge_lit else EDGE, 4 if merge_lit else 2)
        for k, (b, pr) in enumerate(zip(s.branches, panels) if not grid else ()):
            on_in = lit_k == k
            self._edge(p, QPointF(in_box.center().x(), in_box.bottom()), QPointF(pr.center().x(), pr.top()),
                       LIT if on_in else EDGE, 4 if on_in else 2)
            label_r = QRectF(pr.left(), pr.bottom() + 2, pr.width(), lh)
            self._text(p, label_r, f.body, LIT if merge_lit else TEXT, fmt_shape(b.out_shape),
                       Qt.AlignmentFlag.AlignCenter)
            self._edge(p, QPointF(pr.center().x(), label_r.bottom() + 2), QPointF(join_box.center().x(), join_box.top()),
                       LIT if merge_lit else EDGE, 4 if merge_lit else 2)
        self._box(p, in_box, f.bold, in_text, lit_k is not None)
        self._box(p, join_box, f.bold, join_text, merge_lit)
        if grid:
            legend = "each branch: shape · energy" + (" · attribution" if any(
                b.attribution_share is not None for b in s.branches) else "") + (" · off" if any(
                b.knockout_delta is not None for b in s.branches) else "")
            self._text(p, QRectF(r.left(), join_box.top(), join_box.left() - r.left() - 10, join_box.height()), f.body,
                       MUTED, legend, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        for k, (b, pr) in enumerate(zip(s.branches, panels)):
            state = "lit" if lit_k == k else ("dim" if lit_k is not None and k > lit_k else "normal")
            self._branch(p, pr, f, b, state, s.merge, shape_inside=grid)

    def _branch(self, p: QPainter, r: QRectF, f: SlideFonts, b, state: str, merge: str | None = None,
                shape_inside: bool = False) -> None:
        fm = QFontMetricsF(f.body)
        lh = fm.height()
        colour = QColor(branch_color(b.index))
        p.setPen(QPen(LIT if state == "lit" else colour, 5 if state == "lit" else 3))
        p.setBrush(QColor(28, 28, 32))
        p.drawRoundedRect(r, 10, 10)
        pad = 8.0
        inner = r.adjusted(pad, pad * 0.6, -pad, -pad * 0.6)
        # The label's last part names the branch ("#3×3"); its layers say the rest, wrapped.
        self._text(p, QRectF(inner.left(), inner.top(), inner.width(), lh), f.bold, TEXT, short_label(b.label),
                   Qt.AlignmentFlag.AlignHCenter)
        layers = " → ".join(b.layers) if b.layers else "the block's input, unchanged"
        p.setFont(f.body)
        flags = int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop) | int(Qt.TextFlag.TextWordWrap)
        need = fm.boundingRect(QRectF(0, 0, inner.width(), 10 * lh), flags, layers).height()
        layers_h = min(need, 3 * lh) if r.height() >= 7 * lh else 0.0  # a small panel keeps its maps
        if 0 < layers_h < need:
            layers = elide_lines(fm, layers, inner.width(), layers_h, flags)
        p.setPen(MUTED)
        p.save()
        p.setClipRect(QRectF(inner.left(), inner.top() + lh, inner.width(), layers_h))
        p.drawText(QRectF(inner.left(), inner.top() + lh, inner.width(), layers_h), flags, layers)
        p.restore()
        # Added branches can cancel (and a ReLU may follow the add): each one's energy can exceed the output's.
        shares = [f"energy {fmt_fraction(b.energy_share)}" + (" of output" if merge == "add" else "")]
        if shape_inside:  # a small panel: the legend beside the join says what the two numbers are
            shares = [f"{fmt_shape(b.out_shape)} · {fmt_fraction(b.energy_share)}"]
            if b.attribution_share is not None:
                shares[0] += f" · {fmt_fraction(b.attribution_share)}"
            if b.knockout_delta is not None:
                shares[0] += f" · {fmt_fraction(b.knockout_delta, signed=True)}"
        if b.attribution_share is not None:
            shares.append(f"attribution {fmt_fraction(b.attribution_share)}")
        if b.knockout_delta is not None and not shape_inside:  # what the top-1 loses without this branch
            shares.append(f"off: top-1 {fmt_fraction(b.knockout_delta, signed=True)}")
        share_h = lh * len(shares)
        top = inner.top() + lh + layers_h + 6
        maps_rect = QRectF(inner.left(), top, inner.width(), inner.bottom() - share_h - 4 - top)
        if b.maps is not None and len(b.maps):
            self._maps(p, maps_rect, b.maps)
        y = inner.bottom() - share_h
        for line in shares:
            self._text(p, QRectF(inner.left(), y, inner.width(), lh), f.body, TEXT, line, Qt.AlignmentFlag.AlignHCenter)
            y += lh
        if state == "dim":
            p.fillRect(r.adjusted(-3, -3, 3, 3), QColor(12, 12, 14, 170))

    def _maps(self, p: QPainter, r: QRectF, maps: np.ndarray) -> None:
        """The maps in a grid whose cells are as large as `r` allows (square, nearest-neighbour pixels)."""
        k = len(maps)
        h, w = maps.shape[-2:]
        best = (0.0, 1)
        for cols in range(1, k + 1):
            rows = math.ceil(k / cols)
            cell = min((r.width() - 4 * (cols - 1)) / cols / w, (r.height() - 4 * (rows - 1)) / rows / h)
            if cell > best[0]:
                best = (cell, cols)
        scale, cols = best
        if scale <= 0:
            return
        cw, ch = w * scale, h * scale
        rows = math.ceil(k / cols)
        x0 = r.left() + (r.width() - (cols * cw + 4 * (cols - 1))) / 2
        y0 = r.top() + (r.height() - (rows * ch + 4 * (rows - 1))) / 2
        img = self._mosaic(maps)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        for i in range(k):
            row, col = divmod(i, cols)
            p.drawImage(QRectF(x0 + col * (cw + 4), y0 + row * (ch + 4), cw, ch), img, QRectF(0, i * h, w, h))

    def _mosaic(self, maps: np.ndarray) -> QImage:
        """The maps stacked vertically, each scaled to its own 0..1 and coloured, as one QImage (cached)."""
        key = id(maps)
        img = self._images.get(key)
        if img is None:
            lo = maps.min(axis=(1, 2), keepdims=True)
            hi = maps.max(axis=(1, 2), keepdims=True)
            norm = (maps - lo) / np.where(hi > lo, hi - lo, 1.0)
            rgb = coloured(norm, FEATURE_COLORMAP)
            img = self._images[key] = array_to_qimage(rgb.reshape(-1, rgb.shape[-2], 3))
        return img

    def _picture(self, rgb: np.ndarray) -> QImage:
        key = id(rgb)
        img = self._images.get(key)
        if img is None:
            img = self._images[key] = array_to_qimage(rgb)
        return img

    # -- small pieces --------------------------------------------------------------------------

    @staticmethod
    def _text(p: QPainter, r: QRectF, font: QFont, colour: QColor, text: str, align) -> None:
        p.setFont(font)
        p.setPen(colour)
        elided = QFontMetricsF(font).elidedText(text, Qt.TextElideMode.ElideRight, max(0.0, r.width()))
        p.drawText(r, align, elided)

    @staticmethod
    def _centred_box(cx: float, top: float, f: SlideFonts, text: str, h: float, bold: bool = True) -> QRectF:
        w = QFontMetricsF(f.bold if bold else f.body).horizontalAdvance(text) + 40
        return QRectF(cx - w / 2, top, w, h)

    def _box(self, p: QPainter, r: QRectF, font: QFont, text: str, lit: bool) -> None:
        p.setPen(QPen(LIT if lit else EDGE, 4 if lit else 2))
        p.setBrush(QColor(40, 40, 46))
        p.drawRoundedRect(r, 8, 8)
        self._text(p, r, font, LIT if lit else TEXT, text, Qt.AlignmentFlag.AlignCenter)

    @staticmethod
    def _edge(p: QPainter, a: QPointF, b: QPointF, colour: QColor, width: float) -> None:
        path = QPainterPath(a)
        mid = (a.y() + b.y()) / 2
        path.cubicTo(QPointF(a.x(), mid), QPointF(b.x(), mid), b)
        p.setPen(QPen(colour, width))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPath(path)
        head = 6 + width
        p.setBrush(colour)
        p.setPen(Qt.PenStyle.NoPen)
        p.drawPolygon(QPolygonF([b, QPointF(b.x() - head, b.y() - head * 1.4), QPointF(b.x() + head, b.y() - head * 1.4)]))
