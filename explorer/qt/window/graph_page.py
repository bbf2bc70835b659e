"""The graph page: the block graph drawn from the state, its input size, node search and details.

The page follows the window's `ExplorerState` and its session: its size boxes write the state's input size, the
session traces it, and the page redraws the graph with that trace and the blocks the state has expanded
(keeping the block in hand where it was on screen), and shows the selected node's details. It owns the graph
tab's widgets (weights bar, banners, view, presentation caption), the toolbar's size and find fields and the
details panel; the window places them and wires the model to them.

A size typed in the window reaches the redrawn graph through five files: this one (the boxes, then the
redraw), core/session/state.py (the input size), core/session/session.py (the trace, by
core/shapes/trace.py), diagram/layout.py (the layout) and qt/graph/graph_view.py (the drawing).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import (QApplication, QCompleter, QHBoxLayout, QLabel, QLineEdit, QSpinBox, QToolButton,
                               QVBoxLayout, QWidget)

from explorer.core.graph.find import find_in_graph
from explorer.core.session import events as ev
from explorer.core.session.state import InputSize
from explorer.core.text import fmt_count
from explorer.diagram.layout import Style, build_diagram, layout_diagram
from explorer.qt.graph.graph_view import GraphView, TextMeasure
from explorer.core.shapes.trace import MAX_BATCH
from explorer.qt.panels import MAX_SIDE, Banner
from explorer.qt.window.details_panel import DetailsPanel
from explorer.qt.window.weights_bar import WeightsBar
from explorer.qt.theme import make_theme

INITIAL_MIN_ZOOM = 0.8
#: Room (scene units) kept around an opened block brought whole into view.
SHOW_WHOLE_MARGIN = 8.0
#: No text the presentation adds to the graph (caption, overlay legend) is smaller than this, in points.
PRESENTATION_MIN_POINTS = 18.0


def classified_at(loaded) -> int | None:
    """The side of the square a loaded model classifies images at (its preprocessing's crop), if it has one."""
    if loaded is None:
        return None
    try:
        return int(loaded.transforms().crop_size[0])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


class InputSizeControl(QWidget):
    """H and W spin boxes (linked by default: editing one sets the other) and the batch N."""

    size_changed = Signal(int, int, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        self.height_box = self._spin("H", "input height in pixels", MAX_SIDE)
        self.width_box = self._spin("W", "input width in pixels", MAX_SIDE)
        self.batch_box = self._spin("N", "batch size", MAX_BATCH)
        self.link = QToolButton(self)
        self.link.setCheckable(True)
        self.link.setChecked(True)
        self.link.setText("H = W")
        self.link.setToolTip("H and W linked: editing one sets the other (click to edit them separately)")
        self.link.toggled.connect(self._on_link)
        lay.addWidget(QLabel("Input"))
        lay.addWidget(self.height_box)
        lay.addWidget(self.link)
        lay.addWidget(self.width_box)
        lay.addSpacing(6)
        lay.addWidget(QLabel("Batch"))
        lay.addWidget(self.batch_box)
        self.height_box.setValue(224)
        self.width_box.setValue(224)
        self.batch_box.setValue(1)
        self.height_box.valueChanged.connect(self._on_height)
        self.width_box.valueChanged.connect(self._on_width)
        self.batch_box.valueChanged.connect(self._emit)

    def _spin(self, prefix: str, tip: str, maximum: int) -> QSpinBox:
        box = QSpinBox(self)
        box.setRange(1, maximum)
        box.setPrefix(f"{prefix} ")
        box.setToolTip(tip)
        box.setAccelerated(True)
        box.setKeyboardTracking(True)
        return box

    @property
    def linked(self) -> bool:
        return self.link.isChecked()

    def set_linked(self, on: bool) -> None:
        self.link.setChecked(on)

    def _on_link(self, on: bool) -> None:
        self.link.setText("H = W" if on else "H ≠ W")
        if on and self.width_box.value() != self.height_box.value():
            self.width_box.blockSignals(True)
            self.width_box.setValue(self.height_box.value())
            self.width_box.blockSignals(False)
            self._emit()

    def _on_height(self, v: int) -> None:
        if self.linked and self.width_box.value() != v:
            self.width_box.blockSignals(True)
            self.width_box.setValue(v)
            self.width_box.blockSignals(False)
        self._emit()

    def _on_width(self, v: int) -> None:
        if self.linked and self.height_box.value() != v:
            self.height_box.blockSignals(True)
            self.height_box.setValue(v)
            self.height_box.blockSignals(False)
        self._emit()

    def _emit(self, *_) -> None:
        self.size_changed.emit(*self.value())

    def value(self) -> tuple[int, int, int]:
        return self.height_box.value(), self.width_box.value(), self.batch_box.value()

    def set_value(self, h: int, w: int, n: int | None = None, emit: bool = True) -> None:
        """Set all three at once (unlinking when H ≠ W) and emit one size_changed."""
        boxes = (self.height_box, self.width_box, self.batch_box, self.link)
        for b in boxes:
            b.blockSignals(True)
        if h != w and self.linked:
            self.link.setChecked(False)
            self.link.setText("H ≠ W")
        self.height_box.setValue(h)
        self.width_box.setValue(w)
        if n is not None:
            self.batch_box.setValue(n)
        for b in boxes:
            b.blockSignals(False)
        if emit:
            self._emit()

    def set_invalid(self, invalid: bool) -> None:
        """Tint the size boxes when the current size cannot pass through the network."""
        for box in (self.height_box, self.width_box):
            pal = QPalette(self.palette())
            if invalid:
                pal.setColor(QPalette.ColorRole.Base, QColor(255, 200, 200) if pal.color(QPalette.ColorRole.Base)
                             .lightness() > 128 else QColor(110, 30, 30))
            box.setPalette(pal)


class GraphPage:
    """The graph tab of `window` and what drives it: tracing, drawing, opening blocks, selection, find."""

    def __init__(self, window):
        self.window = window
        self.state = window.state
        self._presentation_scale: float | None = None
        self.view = GraphView(window)
        self.view.box_selected.connect(self._on_box_selected)
        self.view.box_activated.connect(self._on_box_activated)
        self.state.connect("loaded", self.on_loaded)
        self.weights_bar = WeightsBar(window)
        self.banner = Banner("error", window)
        # Why the graph shows the module tree instead of the data flow (an untraceable forward).
        self.notice = Banner("warning", window)
        self.caption = QLabel(window)
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption.setWordWrap(True)
        self.caption.setStyleSheet("QLabel { background: black; color: white; padding: 10px; }")
        self.caption.hide()
        self.widget = QWidget(window)
        lay = QVBoxLayout(self.widget)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        for w in (self.weights_bar, self.banner, self.notice):
            lay.addWidget(w)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.caption)
        self.size_control = self.find_edit = self.details = None  # built in the window's order, below
        self._drawn = None  # the graph the view shows
        window.session.on(ev.ShapesTraced, self._on_traced)
        self.demo_offer = None  # with bind_weights_bar

    def add_strip(self, strip: QWidget) -> None:
        """Another strip above the graph, below the banners (the branches switched off)."""
        self.widget.layout().insertWidget(self.widget.layout().indexOf(self.view), strip)

    def bind_weights_bar(self, models) -> None:
        """The weights bar's buttons: retry, a weights file and cancel go to `models` (the ModelController); the
        demo model is offered while the weights are random (explorer.qt.window.demo_offer)."""
        from explorer.qt.window.demo_offer import DemoOffer

        bar = self.weights_bar
        bar.retry_requested.connect(models.retry_download)
        bar.open_requested.connect(models.open_weights_dialog)
        bar.cancel_requested.connect(models.cancel_download)
        self.demo_offer = DemoOffer(self.window, bar)

    def build_size_control(self) -> InputSizeControl:
        """The toolbar's input size boxes: an edit goes to the state, which retraces."""
        self.size_control = InputSizeControl(self.window)
        self.size_control.size_changed.connect(self._on_size_edited)
        self.size_control.link.toggled.connect(lambda on: setattr(self.state, "size_linked", on))
        return self.size_control

    def build_find_edit(self) -> QLineEdit:
        """The toolbar's node search (Ctrl+F)."""
        self.find_edit = QLineEdit(self.window)
        self.find_edit.setPlaceholderText("Find node (Ctrl+F)")
        self.find_edit.setClearButtonEnabled(True)
        self.find_edit.setMaximumWidth(220)
        self.find_edit.returnPressed.connect(lambda: self.find(self.find_edit.text()))
        return self.find_edit

    def build_details(self) -> DetailsPanel:
        """The selected node's details (the window docks them)."""
        self.details = DetailsPanel(self.window)
        return self.details

    def complete_names(self, graph) -> None:
        """The find field completes the names of `graph`'s nodes, any part of them, in any case."""
        completer = QCompleter([n.name for n in graph.nodes()], self.find_edit)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.find_edit.setCompleter(completer)

    def fit_to_window(self) -> None:
        self.view.fit(max_zoom=1.5)

    # -- shapes ------------------------------------------------------------------------------

    def _on_size_edited(self, h: int, w: int, n: int) -> None:
        """The size control was edited: the state takes the new size (and retraces)."""
        self.state.input_size = InputSize(h, w, n)

    def on_input_size(self, size: InputSize) -> None:
        """The state's size changed (the session traced it): the boxes show it."""
        if self.size_control.value() != (size.height, size.width, size.batch):
            self.size_control.set_value(size.height, size.width, size.batch, emit=False)
        graph = self.state.graph
        if getattr(graph, "is_preview", False) and self.state.trace is not None \
                and self.state.trace.input_shape[2:] != size.hw:
            # Only the native size is known until the engine has loaded; it retraces then.
            self.window.show_status("shapes for this size follow once the engine has loaded", 5000, topic="size")

    def _on_traced(self, _event: ev.ShapesTraced) -> None:
        """The session traced the graph on screen at a new size: the page shows it (a new graph is drawn by the
        model part, which shows its trace then)."""
        if self.state.graph is not None and self.state.graph is self._drawn:
            self.show_trace()

    def set_input_size(self, h: int, w: int | None = None, batch: int | None = None) -> None:
        """Set the input size as the size boxes would take it (clamped to their bounds); retraces and redraws."""
        w = h if w is None else w
        n = self.state.input_size.batch if batch is None else batch
        self.state.input_size = InputSize(min(max(1, h), MAX_SIDE), min(max(1, w), MAX_SIDE),
                                          min(max(1, n), MAX_BATCH))

    def show_trace(self, redraw: bool = True) -> bool:
        """Show the state's trace (the session traced it): banner, totals, the drawing, the paper table, Details;
        whether the size fits."""
        st = self.state
        ok = st.trace_error is None
        self._show_trace_state()
        if redraw:
            self.redraw()
        if ok:
            self.update_paper_table()
            self.window.trace_updated.emit()
        else:
            self.window.trace_failed.emit(st.failed_node, st.trace_error)
        self.refresh_details()
        return ok

    def _show_trace_state(self) -> None:
        """Banner, size boxes, totals and status after a retrace: an error names the size it is about, and
        the numbers of the last valid size say that they are not for the size asked."""
        st = self.state
        self.size_control.set_invalid(st.trace_error is not None)
        t = st.trace
        totals = "" if t is None else \
            f"{fmt_count(t.total_params_inference)} params · {fmt_count(t.total_macs)} mult-adds"
        if st.trace_error is not None:
            self.window.show_error(st.trace_error, topic="size")
            if t is not None:
                h, w = t.input_shape[2:]
                totals = f"input {st.input_size.text()} does not fit · shapes shown for {h}×{w}"
        else:
            self.window.clear_error("size")
            totals += f" · input {st.input_size.text()}"
        crop = classified_at(st.loaded)
        if crop is not None and (crop, crop) != st.input_size.hw:  # the size traced is not the size classified
            totals += f" · images are classified at {crop}×{crop}"
        self.window.totals_label.setText(totals)

    def on_loaded(self, _loaded) -> None:
        """Weights arrived (or went): the totals say at what size images are classified."""
        if self.size_control is not None:
            self._show_trace_state()

    def update_paper_table(self) -> None:
        if self.window.paper_table is None or self.state.graph is None or self.state.trace is None:
            return
        if getattr(self.state.graph, "is_preview", False):
            return
        try:
            self.window.paper_table.set_model(self.state.graph, self.state.trace)
        except Exception as e:  # the table is a guest widget: its failure must not take the window down
            self.window.show_status(f"paper table: {e}", 10000)

    # -- drawing -----------------------------------------------------------------------------

    def set_presentation_style(self, scale: float | None) -> None:
        """None: the normal theme; a number: presentation theme with fonts that much larger."""
        self._presentation_scale = scale
        font = QFont(self.caption.font())
        points = (QApplication.font().pointSizeF() or 10) * (scale or 1) * 1.1
        font.setPointSizeF(max(PRESENTATION_MIN_POINTS, points) if scale else points)  # the caption wraps
        self.caption.setFont(font)
        # The overlay's legend sits on the slide too: read from the back of the hall, like the slides' text.
        legend_font = QFont()  # no attribute set: the view's own font again
        if scale:
            legend_font = QFont(self.view.font())
            legend_font.setPointSizeF(max(PRESENTATION_MIN_POINTS, (QApplication.font().pointSizeF() or 10) * scale))
        self.view.legend_widget.setFont(legend_font)
        self.view.set_overlay(self.view.overlay_values, self.view.legend_widget.legend)  # resized and placed

    def graph_style(self) -> Style:
        return Style().scaled(self._presentation_scale) if self._presentation_scale else Style()

    def redraw(self, anchor: str | None = None) -> None:
        """Rebuild the drawing from the state, keeping `anchor` (or the selection) where it was on screen."""
        if self.state.graph is None:
            return
        p = self._presentation_scale
        theme = make_theme(p or 1.0, presentation=p is not None)
        style = self.graph_style()
        selected = self.view.selected_key()
        anchor = anchor or (self.view.boxes[selected].box.node if selected in self.view.boxes else None)
        before = self._screen_pos(anchor)
        self._drawn = self.state.graph
        d = build_diagram(self.state.graph, self.state.trace, set(self.state.expanded), TextMeasure(theme), style)
        layout_diagram(d, style)
        kinds = {n.name: n.kind for n in self.state.graph.nodes()}
        self.view.set_diagram(d, theme, kinds, selected=selected if selected in d.boxes else None)
        self.view.set_failed(self.state.failed_node)
        if before is not None:
            after = self._screen_pos(anchor)
            if after is not None:
                delta = after - before
                h, v = self.view.horizontalScrollBar(), self.view.verticalScrollBar()
                h.setValue(h.value() + round(delta.x()))
                v.setValue(v.value() + round(delta.y()))

    def _screen_pos(self, node: str | None) -> QPointF | None:
        if node is None or self.view.diagram is None:
            return None
        rect = self.view.node_rect(node)
        if rect is None:
            return None
        return QPointF(self.view.mapFromScene(QPointF(rect.center().x(), rect.top())))

    def initial_view(self) -> None:
        self.view.fit(max_zoom=1.0)
        if self.view.zoom() < INITIAL_MIN_ZOOM:
            # A tall graph would be unreadable when fitted: start readable, at the input.
            self.view.set_zoom(INITIAL_MIN_ZOOM)
            first = self.view.boxes.get("input")
            if first is not None:
                rect = self.view.viewport().rect()
                top = first.sceneBoundingRect().top() - 20
                self.view.centerOn(first.sceneBoundingRect().center().x(),
                                   top + rect.height() / 2 / self.view.zoom())

    def expand(self, name: str) -> None:
        if self.state.graph is not None and self.state.graph.node(name).branches and name not in self.state.expanded:
            self.state.expanded = self.state.expanded | {name}
            self.redraw(anchor=name)
            self.show_whole(name)

    def show_whole(self, name: str) -> None:
        """Bring the opened block `name` whole into the view: scrolled to, and zoomed out if it is larger than
        the view, never below the zoom at which its text reads (an opened inception4a ran past the bottom
        of the graph on a 1280×800 laptop)."""
        rect = self.view.node_rect(name)
        if rect is None:
            return
        rect = rect.adjusted(-SHOW_WHOLE_MARGIN, -SHOW_WHOLE_MARGIN, SHOW_WHOLE_MARGIN, SHOW_WHOLE_MARGIN)
        if not self.view.mapToScene(self.view.viewport().rect()).boundingRect().contains(rect):
            self.view.fit(rect, max_zoom=self.view.zoom())

    def collapse(self, name: str) -> None:
        if name in self.state.expanded:
            self.state.expanded = self.state.expanded - {name}
            self.redraw(anchor=name)

    def toggle(self, name: str) -> None:
        self.collapse(name) if name in self.state.expanded else self.expand(name)

    def expand_all(self) -> None:
        if self.state.graph is not None:
            self.state.expanded = frozenset(n.name for n in self.state.graph.blocks())
            self.redraw()

    def collapse_all(self) -> None:
        self.state.expanded = frozenset()
        self.redraw()

    def _on_box_activated(self, key: str) -> None:
        if self.state.graph is None:
            return
        box = self.view.boxes.get(key)
        node = box.box.node if box is not None else key
        if node not in self.state.graph.graph:
            return
        if box is None or box.box.role in ("node", "header", "concat"):
            self.toggle(node)

    def _on_box_selected(self, key: str) -> None:
        """The graph's selection is the state's (the image panels follow `state.selection`)."""
        self.state.selection = key or None
        self.refresh_details(key)

    def selected_block(self) -> str | None:
        """The block the graph's selection is in, if any."""
        item = self.view.boxes.get(self.view.selected_key() or "")
        node = item.box.node if item is not None else None
        return node if node and self.state.graph is not None and node in self.state.graph.graph \
            and self.state.graph.node(node).is_block else None

    def follow_block(self, name: str) -> None:
        """An image panel stepped to block `name`: select it in the graph too (no loop: same name)."""
        if self.selected_block() != name and name in self.view.boxes:
            self.view.select(name)

    def refresh_details(self, key: str | None = None) -> None:
        key = self.view.selected_key() if key is None else key
        item = self.view.boxes.get(key)
        if not key or item is None or self.state.graph is None:
            if key == "":
                self.details.show_nothing()
            return
        node = item.box.node
        self.details.show_node(self.state.graph, self.state.trace, node, key if key != node else None)
        st = self.state
        if st.trace_error is not None and st.trace is not None:
            h, w = st.trace.input_shape[2:]
            self.details.setHtml(
                f"<p style='color:#b00'><b>Shapes for {h}×{w}, the last size that fits:</b> input "
                f"{st.input_size.text()} does not pass through the network.</p>" + self.details.toHtml())

    # -- find --------------------------------------------------------------------------------

    def focus_find(self) -> None:
        self.find_edit.setFocus()
        self.find_edit.selectAll()

    def find(self, text: str) -> str | None:
        """Select the node (or layer inside a block) whose name best matches `text`, and zoom to it."""
        match = find_in_graph(self.state.graph, text)
        if match is None:
            if text.strip():
                self.window.show_status(f"no node matches “{text.strip()}”", 4000)
            return None
        if match.layer is None:
            key = match.node if match.node in self.view.boxes else self.view.diagram.entry[match.node]
            self.view.select(key)
            self.view.zoom_to_box(key)
            self.window.show_status(f"found {match.node}", 4000)
            return match.node
        # A layer inside a block: open the block and select the layer's box.
        self.expand(match.node)
        for b in self.view.diagram.boxes.values():
            if b.node == match.node and b.role == "layer" and match.layer.lower() in b.tooltip.lower():
                self.view.select(b.key)
                self.view.zoom_to_box(b.key)
                self.window.show_status(f"found {b.tooltip} in {match.node}", 4000)
                return b.key
        return None

