"""The graph view: a QGraphicsScene drawing of a laid-out `Diagram`, with zoom, pan and selection.

Signals
-------
box_selected(str)      key of the selected box ("" when the selection is cleared)
box_activated(str)     key of a double-clicked box or frame (expand / collapse)
context_requested(str, QPoint)  key of a right-clicked box (a frame: its node) and where, for its menu

An overlay (`set_overlay`) fills the boxes of graph nodes with a colour of explorer.core.overlay.quantities's
palette and shows its legend in the view's top-right corner. Thumbnails (`set_thumbnails`) put a small
feature map beside each node's box, on its left.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, QSizeF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontInfo,
    QFontMetricsF,
    QImage,
    QLinearGradient,
    QPainter,
    QPainterPath,
    QPen,
    QPolygonF,
)
from PySide6.QtWidgets import QGraphicsItem, QGraphicsScene, QGraphicsView, QStyleOptionGraphicsItem, QWidget

from explorer.core.overlay.quantities import PALETTE, Legend
from explorer.core.text import fmt_branches_off
from explorer.diagram.layout import Box, Diagram, Edge, Frame
from explorer.qt.theme import Theme

MIN_ZOOM, MAX_ZOOM = 0.05, 8.0
#: Below this on-screen text height (pixels) boxes are drawn without their text.
MIN_TEXT_PX = 4.5
#: Fit to window and zoom-to-box never shrink box text below this pixel size (the font's em):
#: a fitted GoogLeNet at 1280×860 was 1.7 px, drawn as bare rectangles.
READABLE_TEXT_PX = 7.0
#: Zoom-to-box enlarges to the drawing's natural size (zoom 1) when text on screen is smaller.
NATURAL_ZOOM = 1.0
#: Height (scene units, before scaling) over which an edge between two columns changes column.
BEND = 22.0


class TextMeasure:
    """measure(text, bold) for the layout, from the theme's fonts (cached: labels repeat a lot)."""

    def __init__(self, theme: Theme):
        self._fm = {False: QFontMetricsF(theme.font), True: QFontMetricsF(theme.bold)}
        self._cache: dict[tuple[str, bool], tuple[float, float]] = {}

    def __call__(self, text: str, bold: bool) -> tuple[float, float]:
        k = (text, bold)
        r = self._cache.get(k)
        if r is None:
            fm = self._fm[bold]
            r = self._cache[k] = (math.ceil(fm.horizontalAdvance(text)) + 2.0, math.ceil(fm.height()))
        return r


class BoxItem(QGraphicsItem):
    """A node, layer, caption or concat box; paints its own text so SVG export keeps it as text."""

    def __init__(self, box: Box, theme: Theme):
        super().__init__()
        self.box, self.theme = box, theme
        self.failed = False
        self.highlighted = False
        self.overlay_fill: QColor | None = None  # the overlay's colour for this box, None: the kind's
        #: A switched-off branch's mark ("off", "branch 2 off"): the box greyed and dashed with the tag on its top
        #: edge; "" for a box of a switched-off branch without a tag (its layers); None: on.
        self.off_tag: str | None = None
        self.setPos(box.x, box.y)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable, True)
        self.setAcceptHoverEvents(False)
        self.setToolTip(box.tooltip)
        if box.training_only:
            self.setOpacity(0.55)
        self.setZValue(2)
        # No item cache: a device-coordinate cache is redrawn at every zoom step, which made zooming
        # a fully expanded Inception-ResNet-v2 at fit-to-window 21 ms a frame against 10 ms without
        # (bench/bench_window.py); zoomed out, paint() draws bare rectangles (see MIN_TEXT_PX).

    def boundingRect(self) -> QRectF:
        m = 4.0
        top = m + (self.theme.line_height(True) if self.off_tag else 0.0)  # the tag sits on the top edge
        return QRectF(-m, -top, self.box.w + 2 * m, self.box.h + m + top)

    def set_off(self, tag: str | None) -> None:
        """Mark the box as part of a switched-off branch (see `off_tag`); None: on."""
        if tag != self.off_tag:
            self.prepareGeometryChange()
            self.off_tag = tag
            self.update()

    def set_failed(self, failed: bool) -> None:
        if failed != self.failed:
            self.failed = failed
            self.update()

    def set_highlighted(self, on: bool) -> None:
        if on != self.highlighted:
            self.highlighted = on
            self.update()

    def set_overlay(self, fill: QColor | None, text: str = "") -> None:
        """Fill with the overlay's colour (None: the kind's own) and say the value in the tooltip."""
        self.overlay_fill = fill
        self.setToolTip(self.box.tooltip + (f"\n{text}" if text else ""))
        self.update()

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        b, t = self.box, self.theme
        rect = QRectF(0, 0, b.w, b.h)
        fill = QColor(t.fill(b.kind)) if self.overlay_fill is None else self.overlay_fill
        pen = QPen(t.border(b.kind), t.line_width)
        if b.training_only:
            pen.setStyle(Qt.PenStyle.DashLine)
        if self.failed:
            fill = QColor(110, 30, 30) if t.dark else QColor(255, 205, 205)
            pen = QPen(t.error, 3 * t.line_width)
        if self.off_tag is not None:  # greyed and dashed: the branch is switched off
            fill = QColor(fill)
            fill.setHsl(fill.hslHue(), 0, (fill.lightness() + 2 * t.background.lightness()) // 3)
            pen = QPen(t.error, 1.5 * t.line_width, Qt.PenStyle.DashLine)
        if self.isSelected() or self.highlighted:
            pen = QPen(t.highlight, (2 if t.high_contrast else 3) * t.line_width)
        painter.setPen(pen)
        painter.setBrush(QBrush(fill))
        radius = 3.0 if b.role == "layer" else 6.0
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        line_h = t.line_height(False)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, lod * line_h >= MIN_TEXT_PX)
        if lod * line_h < MIN_TEXT_PX:
            # Zoomed far out: text would be unreadable and costs most of the frame; boxes only.
            painter.drawRect(rect)
            return
        painter.drawRoundedRect(rect, radius, radius)
        painter.setPen(t.text if self.overlay_fill is None else _text_on(self.overlay_fill))
        total = sum(t.line_height(i < b.bold_lines) for i in range(len(b.lines)))
        total += 2.0 * (len(b.lines) - 1)
        y = (b.h - total) / 2
        for i, line in enumerate(b.lines):
            bold = i < b.bold_lines
            painter.setFont(t.bold if bold else t.font)
            h = t.line_height(bold)
            painter.drawText(QRectF(0, y, b.w, h), Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, line)
            y += h + 2.0
        if self.off_tag:
            self._paint_off_tag(painter)

    def _paint_off_tag(self, painter: QPainter) -> None:
        """The tag of a switched-off branch, white on the error colour, across the box's top edge on the right."""
        t = self.theme
        h = t.line_height(True)
        w = QFontMetricsF(t.bold).horizontalAdvance(self.off_tag) + h
        rect = QRectF(max(0.0, self.box.w - w - 6.0), -h / 2, w, h)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QBrush(t.error))
        painter.drawRoundedRect(rect, h / 2, h / 2)
        painter.setPen(QColor(255, 255, 255))
        painter.setFont(t.bold)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, self.off_tag)


def _text_on(fill: QColor) -> QColor:
    """Black text on a light fill, white on a dark one (the palette runs from pale yellow to dark red)."""
    lum = 0.299 * fill.red() + 0.587 * fill.green() + 0.114 * fill.blue()
    return QColor(0, 0, 0) if lum > 140 else QColor(255, 255, 255)


class OverlayLegend(QWidget):
    """The overlay's legend: its title, the colour scale from low to high with their values, and a note."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.legend: Legend | None = None
        #: Whether the legend is said elsewhere (a slide's caption) instead of over the drawing.
        self.elsewhere = False
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.hide()

    def set_elsewhere(self, elsewhere: bool) -> None:
        self.elsewhere = elsewhere
        self.setVisible(self.legend is not None and not elsewhere)

    def caption(self) -> str:
        """The legend in a line: its title and range ('' without one)."""
        if self.legend is None:
            return ""
        low, high = self.texts()
        return f"{self.title()}: {low} (pale) … {high} (dark)"

    def set_legend(self, legend: Legend | None) -> None:
        self.legend = legend
        self.setVisible(legend is not None and not self.elsewhere)
        if legend is not None:
            size = legend_size(legend, self.font())
            self.resize(int(size.width()), int(size.height()))
        self.update()

    def title(self) -> str:
        return "" if self.legend is None else legend_title(self.legend)

    def texts(self) -> tuple[str, str]:
        """The range as shown: (low, high), in explorer.core.text formats."""
        return (self.legend.low_text, self.legend.high_text) if self.legend else ("", "")

    def paintEvent(self, event) -> None:
        if self.legend is None:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        paint_legend(p, QRectF(self.rect()), self.legend, self.font(), pal.color(pal.ColorRole.Base),
                     pal.color(pal.ColorRole.Text), pal.color(pal.ColorRole.Mid),
                     pal.color(pal.ColorRole.PlaceholderText))
        p.end()


def legend_title(legend: Legend) -> str:
    return legend.title + ("  (log scale)" if legend.log else "")


def legend_size(legend: Legend, font: QFont) -> QSizeF:
    """The size `paint_legend` needs for `legend` in `font`."""
    fm = QFontMetricsF(font)
    bold = QFont(font)
    bold.setBold(True)
    widths = [QFontMetricsF(bold).horizontalAdvance(legend_title(legend)), fm.horizontalAdvance(legend.note),
              fm.horizontalAdvance(f"{legend.low_text}    {legend.high_text}"), 120.0]
    return QSizeF(math.ceil(max(widths)) + 24, math.ceil(fm.height() * 4 + 26))


def paint_legend(p: QPainter, rect: QRectF, legend: Legend, font: QFont, base: QColor, text: QColor,
                 frame: QColor, muted: QColor) -> None:
    """The legend in `rect`: its title, the palette from low to high with their values, and its note.
    The view's corner widget and the exporters (SVG, PNG, handout) all draw it here."""
    p.setPen(QPen(frame, 1))
    p.setBrush(base)
    p.drawRoundedRect(rect.adjusted(0.5, 0.5, -0.5, -0.5), 6, 6)
    fm = QFontMetricsF(font)
    lh = fm.height()
    x, w, top = rect.left() + 10.0, rect.width() - 20.0, rect.top()
    p.setPen(text)
    bold = QFont(font)
    bold.setBold(True)
    p.setFont(bold)
    p.drawText(QRectF(x, top + 6, w, lh), Qt.AlignmentFlag.AlignLeft, legend_title(legend))
    p.setFont(font)
    bar = QRectF(x, top + 8 + lh, w, lh * 0.9)
    grad = QLinearGradient(bar.topLeft(), bar.topRight())
    for i, c in enumerate(PALETTE):
        grad.setColorAt(i / (len(PALETTE) - 1), QColor(*c))
    p.setBrush(grad)
    p.drawRect(bar)
    y = bar.bottom() + 2
    p.drawText(QRectF(x, y, w, lh), Qt.AlignmentFlag.AlignLeft, legend.low_text)
    p.drawText(QRectF(x, y, w, lh), Qt.AlignmentFlag.AlignRight, legend.high_text)
    if legend.note:
        p.setPen(muted)
        p.drawText(QRectF(x, y + lh + 2, w, lh), Qt.AlignmentFlag.AlignLeft, legend.note)


class FrameItem(QGraphicsItem):
    """The outline of an expanded block with its title; double-click collapses the block."""

    def __init__(self, frame: Frame, theme: Theme, kind: str = "inception"):
        super().__init__()
        self.frame, self.theme, self.kind = frame, theme, kind
        self.highlighted = False
        self.setPos(frame.x, frame.y)
        self.setZValue(0)
        self.setToolTip("double-click to collapse")
        if frame.training_only:
            self.setOpacity(0.55)

    def boundingRect(self) -> QRectF:
        return QRectF(-3, -3, self.frame.w + 6, self.frame.h + 6)

    def set_highlighted(self, on: bool) -> None:
        if on != self.highlighted:
            self.highlighted = on
            self.update()

    def paint(self, painter: QPainter, option, widget=None) -> None:
        f, t = self.frame, self.theme
        fill = QColor(t.fill(self.kind))
        fill.setAlpha(70 if not t.high_contrast else 110)
        pen = QPen(t.highlight if self.highlighted else t.border(self.kind),
                   (2 if self.highlighted else 1.2) * t.line_width, Qt.PenStyle.DashLine)
        detailed = option.levelOfDetailFromTransform(painter.worldTransform()) * t.line_height(False) >= MIN_TEXT_PX
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, detailed)
        painter.setPen(pen)
        painter.setBrush(fill)
        painter.drawRoundedRect(QRectF(0, 0, f.w, f.h), 10, 10)
        if not detailed:
            return
        painter.setPen(t.text)
        painter.setFont(t.small)
        painter.drawText(QRectF(10, 3, f.w - 20, t.small_height + 2),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, f.title)


class EdgeItem(QGraphicsItem):
    """An arrow from the bottom of one box to the top of another, with its tensor label."""

    def __init__(self, edge: Edge, src: Box, dst: Box, theme: Theme):
        super().__init__()
        self.edge, self.theme = edge, theme
        self.p1 = QPointF(src.cx, src.bottom)
        self.p2 = QPointF(dst.cx, dst.y)
        path = QPainterPath(self.p1)
        if abs(self.p1.x() - self.p2.x()) < 0.5:
            path.lineTo(self.p2)
        else:
            # Straight down the source's own column, bending only in the last gap above the target,
            # so that a short branch's edge into the concat does not cut across its neighbours.
            dy = self.p2.y() - self.p1.y()
            bend = min(dy, BEND * theme.scale)
            x1, x2, y2 = self.p1.x(), self.p2.x(), self.p2.y()
            if bend < dy:
                path.lineTo(x1, y2 - bend)
            path.cubicTo(x1, y2 - bend / 2, x2, y2 - bend / 2, x2, y2)
        self.path = path
        self.label_rect = QRectF()
        if edge.label:
            fm = QFontMetricsF(theme.small)
            w, h = fm.horizontalAdvance(edge.label) + 4, fm.height()
            if edge.top_level:
                mid_y = (self.p1.y() + self.p2.y()) / 2 if abs(self.p1.x() - self.p2.x()) < 0.5 else self.p1.y() + h / 2 + 2
                # Left of the line: side edges (auxiliary heads) leave to the right.
                self.label_rect = QRectF(self.p1.x() - 6 - w, mid_y - h / 2, w, h)
            else:
                self.label_rect = QRectF(self.p1.x() + 4, self.p1.y() + 1, w, h)
        self._bounds = path.boundingRect().united(self.label_rect).adjusted(-8, -8, 8, 8)
        self.setZValue(1)
        if src.training_only or dst.training_only:
            self.setOpacity(0.55)

    def boundingRect(self) -> QRectF:
        return self._bounds

    def paint(self, painter: QPainter, option, widget=None) -> None:
        t = self.theme
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        detailed = lod * t.line_height(False) >= MIN_TEXT_PX
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, detailed)
        painter.setPen(QPen(t.muted, t.line_width))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(self.path)
        if not detailed:
            return
        # Arrow head along the path's final direction.
        a = 3.0 + 1.5 * t.line_width
        angle = math.radians(self.path.angleAtPercent(1.0))
        tip = self.p2
        back = QPointF(math.cos(angle), -math.sin(angle))
        normal = QPointF(-back.y(), back.x())
        head = QPolygonF([tip, tip - back * (2 * a) + normal * a, tip - back * (2 * a) - normal * a])
        painter.setBrush(t.muted)
        painter.drawPolygon(head)
        if self.edge.label:
            painter.setFont(t.small)
            painter.setPen(t.muted)
            align = Qt.AlignmentFlag.AlignRight if self.edge.top_level else Qt.AlignmentFlag.AlignLeft
            painter.drawText(self.label_rect, align | Qt.AlignmentFlag.AlignVCenter, self.edge.label)


#: Colormap of the thumbnails (the data-flow slides' too).
THUMBNAIL_COLORMAP = "inferno"
#: Gap between a box and its thumbnail, scene units.
THUMBNAIL_GAP = 6.0


class ThumbnailItem(QGraphicsItem):
    """A feature map beside a box, on its left (auxiliary heads branch off to the right), square and as
    tall as the box, drawn with visible pixels."""

    def __init__(self, image: QImage, box: Box):
        super().__init__()
        self.image, self.side = image, box.h
        self.setPos(box.x - THUMBNAIL_GAP - self.side, box.y)
        self.setZValue(2)

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self.side, self.side)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.drawImage(self.boundingRect(), self.image)


def thumbnail_image(map01) -> QImage:
    """A (H, W) map scaled to 0..1 as a coloured QImage."""
    from explorer.qt.result_view import array_to_qimage, coloured  # pyqtgraph: not at the window's start-up

    return array_to_qimage(coloured(map01, THUMBNAIL_COLORMAP))


class GraphView(QGraphicsView):
    """Draws a Diagram; wheel or Ctrl+=/- zooms, dragging pans, double-click expands or collapses."""

    box_selected = Signal(str)
    box_activated = Signal(str)
    zoom_changed = Signal(float)
    context_requested = Signal(str, QPoint)  # the key of the box right-clicked (a frame: its node), global position

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.BoundingRectViewportUpdate)
        # Every item sets the pen, brush and font it paints with, and keeps a margin around its
        # shape: the view need not save the painter's state or widen the items' rectangles.
        self.setOptimizationFlags(QGraphicsView.OptimizationFlag.DontSavePainterState
                                  | QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing)
        self.viewport().grabGesture(Qt.GestureType.PinchGesture)
        self.diagram: Diagram | None = None
        self.theme: Theme | None = None
        self.boxes: dict[str, BoxItem] = {}
        self.frames: dict[str, FrameItem] = {}
        self.edges: list[EdgeItem] = []
        self._placeholder = None
        self.overlay_values: dict[str, float] | None = None
        self.thumbnail_images: dict[str, QImage] = {}  # node -> its coloured map
        self.thumbnails: dict[str, ThumbnailItem] = {}
        self.legend_widget = OverlayLegend(self)
        self.branches_off: frozenset[tuple[str, int]] = frozenset()  # (block, branch_index) drawn switched off
        self.scene().selectionChanged.connect(self._on_selection)

    def set_chrome(self, on: bool) -> None:
        """Scroll bars and frame on (normal) or off (presentation)."""
        policy = Qt.ScrollBarPolicy.ScrollBarAsNeeded if on else Qt.ScrollBarPolicy.ScrollBarAlwaysOff
        self.setHorizontalScrollBarPolicy(policy)
        self.setVerticalScrollBarPolicy(policy)
        self.setFrameShape(QGraphicsView.Shape.StyledPanel if on else QGraphicsView.Shape.NoFrame)

    # -- content ---------------------------------------------------------------------------

    def show_message(self, text: str) -> None:
        """Replace the drawing by a line of text (while the model loads)."""
        self.clear()
        item = self.scene().addText(text)
        item.setDefaultTextColor(self.palette().color(self.foregroundRole()))
        self._placeholder = item
        self.scene().setSceneRect(item.boundingRect().adjusted(-40, -40, 40, 40))

    def clear(self) -> None:
        self.scene().blockSignals(True)
        self.scene().clear()
        self.scene().blockSignals(False)
        self.boxes, self.frames, self.edges, self._placeholder = {}, {}, [], None
        self.thumbnails = {}
        self.diagram = None

    def set_diagram(self, diagram: Diagram, theme: Theme, kinds: dict[str, str] | None = None,
                    selected: str | None = None) -> None:
        """Draw `diagram` (already laid out); `kinds` maps a node name to its kind for frame colours."""
        self.clear()
        self.diagram, self.theme = diagram, theme
        scene = self.scene()
        scene.setBackgroundBrush(theme.background)
        for name, f in diagram.frames.items():
            item = FrameItem(f, theme, (kinds or {}).get(name, "inception"))
            scene.addItem(item)
            self.frames[name] = item
        for b in diagram.boxes.values():
            item = BoxItem(b, theme)
            scene.addItem(item)
            self.boxes[b.key] = item
        for e in diagram.edges:
            item = EdgeItem(e, diagram.boxes[e.src], diagram.boxes[e.dst], theme)
            scene.addItem(item)
            self.edges.append(item)
        self._apply_overlay()
        self._apply_thumbnails()
        self._apply_branches_off()
        if selected and selected in self.boxes:
            scene.blockSignals(True)
            self.boxes[selected].setSelected(True)
            scene.blockSignals(False)

    def set_overlay(self, values_by_node: dict[str, float] | None, legend: Legend | None = None) -> None:
        """Colour the boxes of graph nodes by `values_by_node` on `legend`'s scale, the legend in the
        corner; None: the kinds' own colours again. Kept across redraws until changed."""
        self.overlay_values = values_by_node if legend is not None else None
        self.legend_widget.set_legend(legend if values_by_node is not None else None)
        self._place_legend()
        self._apply_overlay()

    def _apply_overlay(self) -> None:
        values, legend = self.overlay_values, self.legend_widget.legend
        for item in self.boxes.values():
            v = None if values is None or item.box.role not in ("node", "header") else values.get(item.box.node)
            if v is None:
                item.set_overlay(None) if item.overlay_fill is not None else None
            else:
                item.set_overlay(QColor(*legend.colour(v)), f"{legend.title}: {legend.text(v)}")

    def set_branches_off(self, branches) -> None:
        """Draw the (block, branch_index) pairs switched off: an opened block's branch greyed and dashed, its caption
        tagged "off"; a closed block tagged with its branches' numbers. Kept across redraws until changed."""
        self.branches_off = frozenset(branches)
        self._apply_branches_off()

    def _apply_branches_off(self) -> None:
        by_block: dict[str, list[int]] = {}
        for block, k in sorted(self.branches_off):
            by_block.setdefault(block, []).append(k)
        for item in self.boxes.values():
            b = item.box
            ks = by_block.get(b.node)
            tag = None
            if ks and b.role == "node":  # a closed block: which of its branches are off
                tag = fmt_branches_off((b.node, k) for k in ks).removeprefix(f"{b.node} ")
            elif ks and b.key.startswith(f"{b.node}/b"):
                k = b.key[len(b.node) + 2:].split("/", 1)[0]
                if k.isdigit() and int(k) in ks:
                    tag = "off" if b.role == "branch" else ""
            item.set_off(tag)

    def set_thumbnails(self, maps: dict | None) -> None:
        """Show each node's map (H, W scaled to 0..1) beside its box; None removes them. Kept across redraws."""
        self.thumbnail_images = {} if maps is None else {n: thumbnail_image(m) for n, m in maps.items()}
        self._apply_thumbnails()

    def _apply_thumbnails(self) -> None:
        for item in self.thumbnails.values():
            self.scene().removeItem(item)
        self.thumbnails = {}
        for item in self.boxes.values():
            b = item.box
            image = self.thumbnail_images.get(b.node) if b.role in ("node", "header") else None
            if image is not None:
                thumb = ThumbnailItem(image, b)
                thumb.setToolTip(f"{b.node}: the strongest feature map of the image on screen")
                self.scene().addItem(thumb)
                self.thumbnails[b.node] = thumb
        self._fit_scene_rect()

    def _fit_scene_rect(self) -> None:
        """The diagram with a margin, widened to the thumbnails: those beside the widest boxes stick out
        past the margin, and the scroll area and the exports would cut them off."""
        if self.diagram is None:
            return
        m = 40.0
        rect = QRectF(-m, -m, self.diagram.width + 2 * m, self.diagram.height + 2 * m)
        for thumb in self.thumbnails.values():
            rect = rect.united(thumb.sceneBoundingRect().adjusted(-m / 2, 0, 0, 0))
        self.scene().setSceneRect(rect)

    def _place_legend(self) -> None:
        lw = self.legend_widget
        vp = self.viewport().geometry()
        lw.move(vp.right() - lw.width() - 10, vp.top() + 10)
        lw.raise_()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._place_legend()

    def set_failed(self, node: str | None) -> None:
        """Mark the boxes of `node` as failing (red); None clears the mark."""
        for item in self.boxes.values():
            item.set_failed(node is not None and item.box.node == node and item.box.role in ("node", "header"))

    def set_highlighted(self, node: str | None) -> None:
        for item in self.boxes.values():
            item.set_highlighted(node is not None and item.box.key == node)
        for name, item in self.frames.items():
            item.set_highlighted(name == node)

    # -- selection -------------------------------------------------------------------------

    def selected_key(self) -> str:
        items = [i for i in self.scene().selectedItems() if isinstance(i, BoxItem)]
        return items[0].box.key if items else ""

    def select(self, key: str, center: bool = True) -> bool:
        item = self.boxes.get(key)
        if item is None:
            return False
        self.scene().clearSelection()
        item.setSelected(True)
        if center:
            self.centerOn(item)
        return True

    def _on_selection(self) -> None:
        self.box_selected.emit(self.selected_key())

    def node_rect(self, node: str) -> QRectF | None:
        """Scene rectangle of a node: its frame when expanded, else its box."""
        if node in self.frames:
            return self.frames[node].sceneBoundingRect()
        item = self.boxes.get(node)
        return item.sceneBoundingRect() if item else None

    # -- zoom ------------------------------------------------------------------------------

    def zoom(self) -> float:
        return self.transform().m11()

    def zoom_by(self, factor: float) -> None:
        z = self.zoom()
        factor = max(MIN_ZOOM / z, min(MAX_ZOOM / z, factor))
        self.scale(factor, factor)
        self.zoom_changed.emit(self.zoom())

    def set_zoom(self, z: float) -> None:
        self.zoom_by(z / self.zoom())

    def zoom_in(self) -> None:
        self.zoom_by(1.25)

    def zoom_out(self) -> None:
        self.zoom_by(0.8)

    def readable_zoom(self) -> float:
        """The least zoom at which box text is READABLE_TEXT_PX pixels on screen."""
        if self.theme is None:
            return MIN_ZOOM
        return max(MIN_ZOOM, min(MAX_ZOOM, READABLE_TEXT_PX / QFontInfo(self.theme.font).pixelSize()))

    def fit(self, rect: QRectF | None = None, max_zoom: float = MAX_ZOOM, min_zoom: float | None = None) -> None:
        """Fit `rect` (default: the whole drawing) in the window, zooming no further in than `max_zoom`.

        Never zooms out below `min_zoom` (default `readable_zoom()`, so that text stays readable): a
        drawing too tall for that is shown from its top, centred across, the rest a scroll away."""
        rect = rect or self.scene().sceneRect()
        if rect.isEmpty():
            return
        floor = self.readable_zoom() if min_zoom is None else max(MIN_ZOOM, min_zoom)
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        self.set_zoom(max(floor, min(max_zoom, self.zoom())))
        self._show_rect(rect)
        self.zoom_changed.emit(self.zoom())

    def zoom_to_box(self, key: str) -> bool:
        """Centre on box `key` (or the frame of expanded block `key`) at a zoom where its text reads.

        Zooms in to the natural size (or to the whole frame, if smaller, but never below
        `readable_zoom()`) only when the text is smaller than that; never zooms out."""
        item = self.frames.get(key) or self.boxes.get(key)
        if item is None:
            return False
        rect = item.sceneBoundingRect()
        if self.zoom() < NATURAL_ZOOM:
            view = self.viewport().rect()
            fitting = min(view.width() / max(rect.width(), 1.0), view.height() / max(rect.height(), 1.0))
            self.set_zoom(max(self.zoom(), self.readable_zoom(), min(NATURAL_ZOOM, fitting)))
        self._show_rect(rect)
        return True

    def _show_rect(self, rect: QRectF) -> None:
        """Centre on `rect`, or on its top when it is taller than the window."""
        height = self.viewport().height() / self.zoom()
        if rect.height() <= height:
            self.centerOn(rect.center())
        else:
            self.centerOn(rect.center().x(), rect.top() + height / 2)

    def wheelEvent(self, event) -> None:
        delta = event.angleDelta().y()
        if delta:
            self.zoom_by(1.0015 ** delta)
        event.accept()

    def viewportEvent(self, event) -> bool:
        if event.type() == QEvent.Type.Gesture:
            pinch = event.gesture(Qt.GestureType.PinchGesture)
            if pinch is not None:
                self.zoom_by(pinch.scaleFactor())
                return True
        if event.type() == QEvent.Type.NativeGesture and event.gestureType() == Qt.NativeGestureType.ZoomNativeGesture:
            self.zoom_by(1.0 + event.value())
            return True
        return super().viewportEvent(event)

    def contextMenuEvent(self, event) -> None:
        """A right-click on a box or a frame asks for its menu (the graph page builds it)."""
        item = self.itemAt(event.pos())
        while item is not None and not isinstance(item, (BoxItem, FrameItem)):
            item = item.parentItem()
        key = item.box.key if isinstance(item, BoxItem) else item.frame.node if isinstance(item, FrameItem) else None
        if key is None:
            super().contextMenuEvent(event)
            return
        self.context_requested.emit(key, event.globalPos())
        event.accept()

    def mouseDoubleClickEvent(self, event) -> None:
        item = self.itemAt(event.position().toPoint())
        while item is not None and not isinstance(item, (BoxItem, FrameItem)):
            item = item.parentItem()
        key = item.box.key if isinstance(item, BoxItem) else item.frame.node if isinstance(item, FrameItem) else None
        if key is not None:
            self._activated = key
            self.box_activated.emit(key)
        event.accept()

    def mouseReleaseEvent(self, event) -> None:
        super().mouseReleaseEvent(event)
        # The double-click's release lands on the redrawn graph, where it would clear the selection: the box
        # opened or folded stays selected (and described).
        key, self._activated = getattr(self, "_activated", None), None
        if key is not None and key in self.boxes and self.selected_key() != key:
            self.select(key, center=False)
