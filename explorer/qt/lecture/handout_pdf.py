"""The handout as a PDF, written with Qt's own PDF writer (QPdfWriter + QPainter): text is drawn as text,
so the file is searchable, and the block graph is the window's own scene rendered as vectors.

Two steps, because a QGraphicsScene belongs to the UI thread: `record_drawings` draws each of the
handout's `GraphDrawing`s into a QPicture there (fast); `write_pdf` lays out the pages and plays the
pictures back, and may run on a worker thread (QPainter on a QPdfWriter, a QImage or a QPicture is
thread-safe). The PDF is drawn in memory and written next to its destination, checked and renamed into
place (explorer.core.outputs), so a failed or cancelled handout leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QBuffer, QIODevice, QMarginsF, QPointF, QRectF, QSizeF, Qt
from PySide6.QtGui import (QColor, QFont, QFontMetricsF, QImage, QPageLayout, QPageSize, QPainter, QPdfWriter, QPen,
                           QPicture)
from PySide6.QtWidgets import QApplication

from explorer.core.cancel import CancelToken
from explorer.core.lecture.handout import BranchMaps, GraphDrawing, Handout, Picture, Section, Table
from explorer.core.outputs import Inputs, OutputError, write_file
from explorer.qt.result_view import array_to_qimage, coloured

#: Device units per inch of the PDF: the screen's 96, so that a recorded QPicture plays back at its size.
DPI = 96
MARGIN_MM = 14.0
#: Type sizes (points) of the page heading, body text and tables.
TITLE_PT, BODY_PT, TABLE_PT, SMALL_PT = 15.0, 9.5, 7.5, 7.0
#: The smallest scale the graph is drawn at before it is split across pages.
MIN_GRAPH_SCALE = 0.5
#: The colour of the line that says an image page's numbers come from random weights.
CAVEAT_COLOUR = QColor(190, 30, 30)


def ensure_app() -> QApplication:
    """The QApplication a scene needs (the command line has none): offscreen when there is no display."""
    app = QApplication.instance()
    if app is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        app = QApplication(["inception-explorer"])
    return app


def print_theme(scale: float = 1.0):
    """The graph's light theme for paper, whatever the window's palette."""
    from explorer.qt.theme import Theme

    base = QFont(QApplication.font())
    base.setPointSizeF(9.0 * scale)
    bold = QFont(base)
    bold.setBold(True)
    small = QFont(base)
    small.setPointSizeF(9.0 * scale * 0.85)
    return Theme(False, QColor("white"), QColor("black"), QColor(95, 95, 95), QColor(0, 90, 200), QColor(200, 0, 0),
                 base, bold, small, line_width=1.2, scale=1.0)


def _cuts(view, source: QRectF) -> tuple[float, ...]:
    """Heights (from the drawing's top) where a horizontal cut crosses no box, frame or edge label: where a
    tall drawing may be split into columns or pages."""
    spans = [it.sceneBoundingRect() for it in (*view.boxes.values(), *view.frames.values())]
    spans += [e.mapRectToScene(e.label_rect) for e in view.edges if not e.label_rect.isEmpty()]
    spans = sorted((r.top() - source.top(), r.bottom() - source.top()) for r in spans)
    cuts, end = [], None
    for top, bottom in spans:
        if end is not None and top > end + 2:
            cuts.append((end + top) / 2)
        end = bottom if end is None else max(end, bottom)
    return tuple(cuts)


def record_drawings(graph, trace, drawings: tuple[GraphDrawing, ...], overlay=None
                    ) -> dict[str, tuple[QPicture, QSizeF, tuple[float, ...]]]:
    """Each of `drawings` of `graph` (shapes from `trace`) as a QPicture, its size and where it may be cut,
    drawn by the graph view's own items (UI thread). overlay: (values by node, Legend) the whole graph's
    boxes are coloured by."""
    from explorer.diagram.layout import Style, build_diagram, layout_diagram
    from explorer.qt.graph.exporters import uncached
    from explorer.qt.graph.graph_view import GraphView, TextMeasure

    theme = print_theme()
    style = Style()
    kinds = {n.name: n.kind for n in graph.nodes()}
    view = GraphView()
    out: dict[str, tuple[QPicture, QSizeF]] = {}
    try:
        for d in drawings:
            diagram = build_diagram(graph, trace, set(d.expanded), TextMeasure(theme), style)
            layout_diagram(diagram, style)
            view.set_diagram(diagram, theme, kinds)
            if overlay is not None and d.focus is None:
                view.set_overlay(*overlay)
            else:
                view.set_overlay(None)
            scene = view.scene()
            source = scene.itemsBoundingRect().adjusted(-6, -6, 6, 6)  # the scene's own margin is wasted on paper
            if d.focus is not None and d.focus in view.frames:
                source = view.frames[d.focus].sceneBoundingRect().adjusted(-12, -12, 12, 12)
            pic = QPicture()
            p = QPainter(pic)
            p.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
            with uncached(scene):
                scene.render(p, QRectF(0, 0, source.width(), source.height()), source)
            if overlay is not None and d.focus is None:
                from explorer.qt.graph.graph_view import legend_size, paint_legend

                size = legend_size(overlay[1], theme.font)
                paint_legend(p, QRectF(QPointF(source.width() - size.width() - 8, 8), size), overlay[1],
                             theme.font, QColor("white"), QColor("black"), QColor(95, 95, 95), QColor(95, 95, 95))
            p.end()
            out[d.key] = (pic, QSizeF(source.width(), source.height()), _cuts(view, source))
    finally:
        view.deleteLater()
    return out


def _colour_maps(maps: np.ndarray) -> list[QImage]:
    """Feature maps (k, h, w) in 0..1 as images in the activation view's colour map."""
    from explorer.qt.result_view import FEATURE_COLORMAP

    return [array_to_qimage(rgb) for rgb in coloured(maps, FEATURE_COLORMAP)]


def _font(pt: float, bold: bool = False) -> QFont:
    f = QFont(QApplication.font())
    f.setPointSizeF(pt)
    f.setBold(bold)
    return f


class _Pages:
    """A cursor over the PDF's pages: room left, new pages with the section's heading and a footer."""

    def __init__(self, writer: QPdfWriter, painter: QPainter, title: str, image_caveat: str = ""):
        self.writer, self.p, self.title = writer, painter, title
        #: Said on every page of a section that shows the image (random weights), '' for none.
        self.image_caveat = image_caveat
        rect = writer.pageLayout().paintRectPixels(DPI)
        self.width, self.height = float(rect.width()), float(rect.height())
        self.page = 0
        self.y = 0.0
        self.section = ""
        #: Said under the heading of every page of the current section ('' for none).
        self.caveat = ""

    @property
    def bottom(self) -> float:
        return self.height - QFontMetricsF(_font(SMALL_PT)).height() - 8

    def room(self) -> float:
        return self.bottom - self.y

    def new_page(self, section: str | None = None, continued: bool = False) -> None:
        if self.page > 0:
            self.writer.newPage()
        self.page += 1
        if section is not None:
            self.section = section
        p = self.p
        small = _font(SMALL_PT)
        p.setFont(small)
        p.setPen(QColor(110, 110, 110))
        fh = QFontMetricsF(small).height()
        p.drawText(QRectF(0, self.height - fh, self.width, fh), Qt.AlignmentFlag.AlignLeft, self.title)
        p.drawText(QRectF(0, self.height - fh, self.width, fh), Qt.AlignmentFlag.AlignRight, f"page {self.page}")
        head = _font(TITLE_PT, True)
        p.setFont(head)
        p.setPen(QColor("black"))
        text = self.section + ("  (continued)" if continued else "")
        h = QFontMetricsF(head).height()
        p.drawText(QRectF(0, 0, self.width, h), Qt.AlignmentFlag.AlignLeft, text)
        p.setPen(QPen(QColor(150, 150, 150), 0.8))
        p.drawLine(QPointF(0, h + 3), QPointF(self.width, h + 3))
        self.y = h + 10
        if self.caveat:
            self.paragraph(self.caveat, colour=CAVEAT_COLOUR, gap=6.0)

    def need(self, height: float) -> None:
        """Start a continuation page unless `height` fits below the cursor (or the page is still empty)."""
        if height > self.room() and self.y > 60:
            self.new_page(continued=True)

    def paragraph_height(self, text: str, pt: float = BODY_PT) -> float:
        flags = int(Qt.AlignmentFlag.AlignLeft) | int(Qt.TextFlag.TextWordWrap)
        return QFontMetricsF(_font(pt)).boundingRect(QRectF(0, 0, self.width, 10_000), flags, text).height()

    def paragraph(self, text: str, pt: float = BODY_PT, colour: QColor | None = None, gap: float = 4.0) -> None:
        font = _font(pt)
        flags = int(Qt.AlignmentFlag.AlignLeft) | int(Qt.TextFlag.TextWordWrap)
        r = QFontMetricsF(font).boundingRect(QRectF(0, 0, self.width, 10_000), flags, text)
        self.need(r.height())
        self.p.setFont(font)
        self.p.setPen(colour or QColor("black"))
        self.p.drawText(QRectF(0, self.y, self.width, r.height() + 2), flags, text)
        self.y += r.height() + gap


#: Rows of a table that go onto the next page with its notes when the notes do not fit under the table.
KEEP_WITH_NOTES = 4


def _column_widths(natural: list[float], least: list[float], avail: float) -> list[float]:
    """Natural widths, the widest capped at one level (water-filling) so that they add up to `avail`; never
    below `least` (a column's longest word: words wrap, they are not cut)."""
    if sum(natural) <= avail:
        return natural
    lo, hi = 0.0, max(natural)
    for _ in range(40):
        cap = (lo + hi) / 2
        if sum(max(m, min(w, cap)) for w, m in zip(natural, least)) > avail:
            hi = cap
        else:
            lo = cap
    return [max(m, min(w, lo)) for w, m in zip(natural, least)]


def _table(pg: _Pages, t: Table) -> None:
    p = pg.p
    n = len(t.columns)
    pad = 4.0
    for pt in (TABLE_PT, TABLE_PT - 0.5, TABLE_PT - 1, TABLE_PT - 1.5):  # smaller type before cut words
        font, bold = _font(pt), _font(pt, True)
        fm, fmb = QFontMetricsF(font), QFontMetricsF(bold)
        cells = [[(fmb, t.columns[j])] + [(fm, r[j]) for r in t.rows if j < len(r)] for j in range(n)]
        natural = [max(m.horizontalAdvance(c) for m, c in col) + 2 * pad + 1 for col in cells]
        least = [max(m.horizontalAdvance(w) for m, c in col for w in (c.split() or [""])) + 2 * pad + 1
                 for col in cells]
        if sum(least) <= pg.width:
            break
    widths = _column_widths(natural, least, pg.width)
    xs = [sum(widths[:j]) for j in range(n)]
    wrap = int(Qt.TextFlag.TextWordWrap)

    def align(j: int) -> int:
        return int(Qt.AlignmentFlag.AlignRight if j in t.numeric else Qt.AlignmentFlag.AlignLeft) | wrap

    def height(cells, metrics) -> float:
        return max(metrics.boundingRect(QRectF(0, 0, widths[j] - 2 * pad, 10_000), align(j), c).height()
                   for j, c in enumerate(cells)) + 3

    def header() -> None:
        h = height(t.columns, fmb)
        p.setFont(bold)
        p.setPen(QColor("black"))
        p.fillRect(QRectF(0, pg.y, sum(widths), h), QColor(232, 232, 232))
        for j, c in enumerate(t.columns):
            p.drawText(QRectF(xs[j] + pad, pg.y + 1.5, widths[j] - 2 * pad, h), align(j), c)
        pg.y += h

    pg.need(height(t.columns, fmb) + (height(t.rows[0], fm) if t.rows else 0))
    header()
    rows_h = [height(row, fm) for row in t.rows]
    notes_h = 12 + sum(pg.paragraph_height(note, SMALL_PT) + 2 for note in t.notes)
    for i, row in enumerate(t.rows):
        h = rows_h[i]
        rest = sum(rows_h[i:])
        # The notes keep the table's last rows with them: a page of notes alone was a page of two lines.
        widow = len(t.rows) - i == KEEP_WITH_NOTES and rest <= pg.room() < rest + notes_h and i > 0
        if h > pg.room() or widow:
            pg.new_page(continued=True)
            header()
        if (i, 0) in t.marked or any((i, j) in t.marked for j in range(n)):
            for j in range(n):
                if (i, j) in t.marked:
                    p.fillRect(QRectF(xs[j], pg.y, widths[j], h), QColor(255, 236, 160))
        elif i % 2:
            p.fillRect(QRectF(0, pg.y, sum(widths), h), QColor(246, 246, 246))
        p.setFont(font)
        p.setPen(QColor("black"))
        for j, c in enumerate(row):
            p.drawText(QRectF(xs[j] + pad, pg.y + 1.5, widths[j] - 2 * pad, h), align(j), c)
        pg.y += h
    pg.y += 6
    for note in t.notes:
        pg.paragraph(note, SMALL_PT, QColor(60, 60, 60), gap=2)
    pg.y += 6


def _slices(height: float, cuts: tuple[float, ...], n: int) -> list[tuple[float, float]]:
    """`n` vertical slices of a drawing `height` tall, cut at the allowed heights nearest equal parts."""
    bounds = [0.0]
    for k in range(1, n):
        target = height * k / n
        later = [c for c in cuts if c > bounds[-1] + 1]
        if not later:
            break
        bounds.append(min(later, key=lambda c: abs(c - target)))
    bounds.append(height)
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _play(pg: _Pages, picture: QPicture, x: float, y: float, scale: float, top: float, bottom: float,
          width: float) -> None:
    """Draw rows `top`..`bottom` of the recorded drawing at (x, y) on the page, `scale` page units per unit."""
    p = pg.p
    p.save()
    p.setClipRect(QRectF(x, y, width * scale, (bottom - top) * scale))
    p.translate(x, y - top * scale)
    p.scale(scale, scale)
    picture.play(p)
    p.restore()


def _drawing(pg: _Pages, picture: QPicture, size: QSizeF, cuts: tuple[float, ...]) -> None:
    """The recorded graph as large as fits (never enlarged): in one column, else in up to four side by side
    (cut only between boxes); too tall even so, it runs on over further pages at MIN_GRAPH_SCALE."""
    gap = 18.0
    best = None
    for n in range(1, 5):
        slices = _slices(size.height(), cuts, n)
        tallest = max(b - a for a, b in slices)
        scale = min(1.0, (pg.width - gap * (len(slices) - 1)) / (len(slices) * size.width()), pg.room() / tallest)
        if best is None or scale > best[0] * 1.05:
            best = (scale, slices)
    scale, slices = best
    if scale >= MIN_GRAPH_SCALE or len(cuts) == 0:
        col = size.width() * scale
        x0 = (pg.width - len(slices) * col - gap * (len(slices) - 1)) / 2
        for k, (a, b) in enumerate(slices):
            x = x0 + k * (col + gap)
            _play(pg, picture, x, pg.y, scale, a, b, size.width())
            if k:
                pg.p.setPen(QPen(QColor(190, 190, 190), 0.8, Qt.PenStyle.DashLine))
                pg.p.drawLine(QPointF(x - gap / 2, pg.y), QPointF(x - gap / 2, pg.y + (b - a) * scale))
        pg.y += max(b - a for a, b in slices) * scale + 8
        return
    # Page after page, one column each, cut between boxes.
    scale = min(1.0, pg.width / size.width(), max(MIN_GRAPH_SCALE, scale))
    x0 = (pg.width - size.width() * scale) / 2
    top = 0.0
    while top < size.height():
        limit = top + pg.room() / scale
        fits = [c for c in cuts if top < c <= limit]
        bottom = size.height() if limit >= size.height() else (fits[-1] if fits else limit)
        _play(pg, picture, x0, pg.y, scale, top, bottom, size.width())
        pg.y += (bottom - top) * scale + 8
        top = bottom
        if top < size.height():
            pg.new_page(continued=True)


def _pictures(pg: _Pages, pics: tuple[Picture, ...], max_height: float = 300.0) -> None:
    p = pg.p
    gap = 12.0
    w = (pg.width - gap * (len(pics) - 1)) / len(pics)
    cap_font = _font(SMALL_PT)
    ch = QFontMetricsF(cap_font).height() * 2 + 4
    side = min(w, max_height)
    pg.need(side + ch)
    for k, pic in enumerate(pics):
        img = array_to_qimage(pic.rgb)
        s = min(side / img.width(), side / img.height())
        dw, dh = img.width() * s, img.height() * s
        x = k * (w + gap) + (w - dw) / 2
        p.drawImage(QRectF(x, pg.y, dw, dh), img)
        p.setFont(cap_font)
        p.setPen(QColor(40, 40, 40))
        p.drawText(QRectF(k * (w + gap), pg.y + dh + 2, w, ch), int(Qt.AlignmentFlag.AlignHCenter)
                   | int(Qt.TextFlag.TextWordWrap), pic.caption)
    pg.y += side + ch + 6


def _maps(pg: _Pages, strips: tuple[BranchMaps, ...]) -> None:
    """One row per branch: its label and shape, then its most active channels, each with its index."""
    p = pg.p
    label_w = pg.width * 0.3
    font, small = _font(TABLE_PT), _font(SMALL_PT - 1)
    fs = QFontMetricsF(small).height()
    for b in strips:
        k = max(1, len(b.maps))
        cell = min(70.0, (pg.width - label_w - 4 * k) / k)
        flags = int(Qt.AlignmentFlag.AlignLeft) | int(Qt.TextFlag.TextWordWrap)
        text = f"{b.label}\n{b.shape}"
        th = QFontMetricsF(font).boundingRect(QRectF(0, 0, label_w - 6, 10_000), flags, text).height()
        h = max(cell + fs + 2, th)
        pg.need(h + 6)
        p.setFont(font)
        p.setPen(QColor("black"))
        p.drawText(QRectF(0, pg.y, label_w - 6, h), flags, text)
        for i, (img, ch) in enumerate(zip(_colour_maps(b.maps), b.channels)):
            x = label_w + i * (cell + 4)
            p.drawImage(QRectF(x, pg.y, cell, cell), img)
            p.setFont(small)
            p.setPen(QColor(70, 70, 70))
            p.drawText(QRectF(x, pg.y + cell + 1, cell, fs), int(Qt.AlignmentFlag.AlignHCenter), f"ch {ch}")
        pg.y += h + 6


def shows_image(s: Section) -> bool:
    """Whether a section shows what the network made of the image: pictures or feature maps."""
    return any(isinstance(part, Picture) or (isinstance(part, tuple) and part and isinstance(part[0], (Picture,
               BranchMaps))) for part in s.parts)


def _section(pg: _Pages, s: Section, drawings: dict[str, tuple[QPicture, QSizeF]]) -> None:
    pg.caveat = pg.image_caveat if shows_image(s) else ""
    pg.new_page(s.title)
    for line in s.text:
        pg.paragraph(line)
    pg.y += 4
    for part in s.parts:
        if isinstance(part, GraphDrawing):
            _drawing(pg, *drawings[part.key])
        elif isinstance(part, Table):
            _table(pg, part)
        elif isinstance(part, Picture):
            _pictures(pg, (part,))
        elif isinstance(part, tuple) and part and isinstance(part[0], Picture):
            _pictures(pg, part)
        elif isinstance(part, tuple) and part and isinstance(part[0], BranchMaps):
            _maps(pg, part)


def render_pdf(handout: Handout, drawings: dict[str, tuple[QPicture, QSizeF]],
               progress: Callable[[int, int | None], None] | None = None, cancel: CancelToken | None = None) -> bytes:
    """`handout` as the bytes of a PDF (A4, one section per page or more), drawn in memory: Qt's writer
    does not report a failed write, so the file itself is written by Python, which does. The handout's
    `image_caveat` (random weights) is said once on every page that shows the image, under its heading."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buffer)
    writer.setResolution(DPI)
    writer.setTitle(handout.title)
    writer.setCreator("Inception Explorer")
    writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
                                     QMarginsF(MARGIN_MM, MARGIN_MM, MARGIN_MM, MARGIN_MM),
                                     QPageLayout.Unit.Millimeter))
    painter = QPainter()
    if not painter.begin(writer):
        raise RuntimeError("Qt's PDF writer could not start")
    try:
        painter.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing
                               | QPainter.RenderHint.SmoothPixmapTransform)
        pages = _Pages(writer, painter, handout.title, handout.image_caveat)
        total = len(handout.sections)
        for i, s in enumerate(handout.sections):
            if cancel is not None:
                cancel.raise_if_cancelled()
            _section(pages, s, drawings)
            if progress is not None:
                progress(i + 1, total)
    finally:
        painter.end()
    data = bytes(buffer.data())
    buffer.close()
    if not data.startswith(b"%PDF-") or not data.rstrip().endswith(b"%%EOF"):
        raise RuntimeError("Qt's PDF writer produced an incomplete file")
    return data


def write_pdf(handout: Handout, drawings: dict[str, tuple[QPicture, QSizeF]], path: str | Path,
              progress: Callable[[int, int | None], None] | None = None, cancel: CancelToken | None = None,
              inputs: Inputs | None = None, report: Callable[[], None] | None = None) -> Path:
    """Write `handout` to `path` whole or not at all (explorer.core.outputs): a failure, a cancel or Ctrl-C
    leaves no file and any older one as it was; OutputError (one line) when it cannot be written, or when
    `path` is one of `inputs`. `report` runs as the file lands (see write_files)."""
    path = Path(path)
    if os.path.isdir(path):
        raise OutputError(path, "it is a folder")
    if not os.path.isdir(path.parent):
        raise OutputError(path, f"no folder {path.parent}")
    return write_file(path, render_pdf(handout, drawings, progress, cancel), inputs=inputs, report=report)
