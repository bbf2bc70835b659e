"""The window's smaller widgets: weights badge, error banner, details panel.

Signals
-------
WeightsBar.retry_requested()                  "Retry download" clicked
WeightsBar.open_requested()                   "Open weights file…" clicked
WeightsBar.cancel_requested()                 the running download's Cancel clicked
WeightsBar.demo_requested()                   "Open the demo model…" clicked
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTextBrowser,
    QWidget,
)

from explorer.core.shapes.trace import MAX_INPUT_SIDE
from explorer.core.shapes.layers import selected_layer
from explorer.core.text import MISSING, MULTIPLY_ADDS, fmt_bytes, fmt_count, fmt_int, fmt_kernel, fmt_shape

#: The size boxes stop at the engine's bounds (one number each, in explorer.core.shapes.trace).
MAX_SIDE = MAX_INPUT_SIDE


def _banner_palette(widget: QWidget, kind: str) -> None:
    dark = widget.palette().color(QPalette.ColorRole.Window).lightness() < 128
    colors = {
        "warning": (QColor(120, 90, 0), QColor(255, 235, 160)) if dark else (QColor(255, 240, 180), QColor(60, 40, 0)),
        "error": (QColor(120, 25, 25), QColor(255, 220, 220)) if dark else (QColor(255, 215, 215), QColor(110, 0, 0)),
    }[kind]
    pal = widget.palette()
    pal.setColor(QPalette.ColorRole.Window, colors[0])
    pal.setColor(QPalette.ColorRole.WindowText, colors[1])
    widget.setPalette(pal)
    widget.setAutoFillBackground(True)


class _Suppressible:
    """A strip that presentation mode can keep hidden while it still tracks whether it should show."""

    suppressed = False
    wanted = False

    def setVisible(self, visible: bool) -> None:  # noqa: N802 - Qt override
        self.wanted = visible
        super().setVisible(visible and not self.suppressed)

    def set_suppressed(self, on: bool) -> None:
        self.suppressed = on
        super().setVisible(self.wanted and not on)


class Banner(_Suppressible, QFrame):
    """A coloured strip above the graph with one message (hidden when empty)."""

    def __init__(self, kind: str = "error", parent=None):
        super().__init__(parent)
        self.kind = kind
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.label, 1)
        _banner_palette(self, kind)
        self.hide()

    def set_message(self, text: str | None) -> None:
        self.label.setText(text or "")
        self.setVisible(bool(text))

    def text(self) -> str:
        return self.label.text() if self.wanted else ""


#: What a view of numbers computed by a network with random weights says beside them (issue 24): its maps, curves,
#: correlations and probabilities describe no learned function.
UNLEARNED = "random weights: these numbers mean nothing for a network that has not learned"


def unlearned(loaded) -> bool:
    """Whether `loaded` (a LoadedModel, or None: unknown) runs random weights."""
    return bool(getattr(getattr(loaded, "weights", None), "is_random", False))


#: The weights bar's offer of a network that works offline (issue 24).
DEMO_OFFER = "Open the demo model (trained on shapes, works offline)"


class WeightsBar(_Suppressible, QFrame):
    """Shows where the weights come from; while random, a warning with retry/open (and, when offered, the demo
    model); while downloading, progress."""

    retry_requested = Signal()
    open_requested = Signal()
    cancel_requested = Signal()
    demo_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.progress = QProgressBar(self)
        self.progress.setMaximumWidth(260)
        self.progress.setTextVisible(True)
        self.retry = QPushButton("Retry download", self)
        self.open = QPushButton("Open weights file…", self)
        self.cancel = QPushButton("Cancel", self)
        self.demo = QPushButton(DEMO_OFFER, self)
        self.demo.setToolTip("A small Inception trained on drawn shapes: its weights ship with the app, so its\n"
                             "classifications, maps and curves mean something without a download")
        self.demo.hide()
        #: Whether random weights come with the demo model's button (not for the demo model itself).
        self.demo_offered = False
        for w in (self.label,):
            lay.addWidget(w, 1)
        for w in (self.progress, self.cancel, self.demo, self.retry, self.open):
            lay.addWidget(w)
        self.retry.clicked.connect(self.retry_requested)
        self.open.clicked.connect(self.open_requested)
        self.cancel.clicked.connect(self.cancel_requested)
        self.demo.clicked.connect(self.demo_requested)
        _banner_palette(self, "warning")
        self.hide()

    def show_random(self, reason: str | None, can_download: bool = True) -> None:
        from explorer.core.model.weights import RANDOM_WARNING

        text = f"<b>{RANDOM_WARNING}</b>"
        if reason:
            text += f" — {html.escape(reason)}"
        self.label.setText(text)
        self.retry.setVisible(can_download)
        self.open.show()
        self.demo.setVisible(self.demo_offered)
        for w in (self.progress, self.cancel):
            w.hide()
        self.show()

    def offer_demo(self, on: bool) -> None:
        """Whether random weights come with the demo model's button from now on."""
        self.demo_offered = on
        if not on:
            self.demo.hide()

    def show_loading(self, text: str) -> None:
        self.label.setText(html.escape(text))
        self.progress.setRange(0, 0)
        for w in (self.retry, self.open, self.demo):
            w.hide()
        self.progress.show()
        self.cancel.show()
        self.show()

    def show_progress(self, done: int, total: int | None) -> None:
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * done / total))
            self.progress.setFormat(f"{fmt_bytes(done)} / {fmt_bytes(total)}")
            self.label.setText("Downloading pretrained weights…")
        else:
            self.progress.setRange(0, 0)
            self.progress.setFormat(fmt_bytes(done))

    def hide_all(self) -> None:
        self.hide()

    def text(self) -> str:
        return self.label.text() if self.wanted else ""


class DetailsPanel(QTextBrowser):
    """What the selected node does at the current input size; for blocks, a table of its branches."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.node_name: str | None = None
        self.show_nothing()

    def show_nothing(self, text: str = "Select a node to see its shapes, parameters and cost.") -> None:
        self.node_name = None
        self.setHtml(f"<p><i>{html.escape(text)}</i></p>")

    def show_node(self, graph, trace, name: str, layer_key: str | None = None) -> None:
        node = graph.node(name)
        ns = trace.nodes.get(name) if trace is not None else None
        preds = graph.predecessors(name)
        in_shapes = [fmt_shape(trace.nodes[p].output_shape) for p in preds] if trace is not None else []
        batch = trace.input_shape[0] if trace is not None else 1
        rows = [
            ("kind", node.kind + (" (training only)" if node.training_only else "")),
            ("module", node.module_type),
            ("stage", node.stage),
            ("input", ", ".join(in_shapes) or MISSING),
            ("output", fmt_shape(ns.output_shape) if ns else MISSING),
            ("parameters", fmt_int(node.params)),
        ]
        if ns is not None:
            rows += [
                (MULTIPLY_ADDS, f"{fmt_count(ns.macs)} ({fmt_int(ns.macs)})" + (f", batch {batch}" if batch > 1 else "")),
                ("activation memory", fmt_bytes(ns.activation_bytes) + (f", batch {batch}" if batch > 1 else "")
                 + " (float32 output)"),
            ]
        rf = "whole input" if node.receptive_field is None else fmt_kernel(node.receptive_field) + " px"
        stride = MISSING if node.effective_stride is None else fmt_kernel(node.effective_stride)
        rows += [("receptive field", rf), ("effective stride", stride)]
        parts = [f"<h3>{html.escape(name)}</h3>", "<table cellspacing='0' cellpadding='3'>"]
        for k, v in rows:
            parts.append(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(str(v))}</td></tr>")
        parts.append("</table>")
        if node.layers and not node.branches:
            parts.append("<h4>Layers</h4><ul>")
            parts += [f"<li>{html.escape(l.describe())} <small>({html.escape(l.name)})</small></li>" for l in node.layers]
            parts.append("</ul>")
        if node.branches:
            parts.append(f"<h4>Branches ({'concatenated' if node.merge == 'cat' else 'added'})</h4>")
            parts.append("<table border='1' cellspacing='0' cellpadding='3'><tr><th>#</th><th>branch</th>"
                         "<th>layers</th><th>out</th></tr>")
            for i, b in enumerate(node.branches, 1):
                layers = _branch_layers_html(b)
                note = f"<br><small>⚠ {html.escape(b.note)}</small>" if b.note else ""
                parts.append(f"<tr><td>{i}</td><td>{html.escape(b.label)}{note}</td><td>{layers}</td>"
                             f"<td align='right'>{b.out_channels}</td></tr>")
            total = sum(b.out_channels for b in node.branches)
            parts.append(f"<tr><td></td><td><b>{'concat' if node.merge == 'cat' else 'add'}</b></td><td></td>"
                         f"<td align='right'><b>{total if node.merge == 'cat' else node.out_channels}</b></td></tr>")
            parts.append("</table>")
        notes = list(node.notes) + ([ns.failure] if ns is not None and ns.failure else [])
        if notes:
            parts.append("<h4>Notes</h4><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
        if layer_key:
            parts[1:1] = _selected_html(graph, trace, layer_key)
        self.node_name = name
        self.setHtml("".join(parts))


def _selected_html(graph, trace, key: str) -> list[str]:
    """The selected box inside an expanded block, in words, with its own parameters and output shape."""
    sel = selected_layer(graph, trace, key)
    if sel is None:
        return []
    rows = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>" for k, v in sel.rows)
    return [f"<p><b>Selected:</b> {html.escape(sel.title)}</p>",
            f"<table cellspacing='0' cellpadding='3'>{rows}</table><h4>Its block</h4>"]


def _branch_layers_html(branch) -> str:
    items = [html.escape(l.describe()) for l in branch.layers]
    if branch.parallel:
        items.append("( " + " ‖ ".join(_branch_layers_html(b) for b in branch.parallel) + " )")
    items += [html.escape(l.describe()) for l in branch.tail]
    return " → ".join(items) if items else "identity"
