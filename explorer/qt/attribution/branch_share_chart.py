"""Per-branch attribution shares: how much of the target's evidence passes through each branch of a block,
for one block (a bar per branch) and for the whole network (stacked bars by depth).

The shares come from explorer.core.attribution.methods.branch_shares (gradient × activation on every branch
output, one forward and one backward), computed on a worker thread that reports progress block by
block and stops at the next block when Cancel is pressed.

Signals
-------
BranchShareChart: none.
NetworkShareChart.block_clicked(str)     a stacked bar was clicked
BranchSharePanel.shares_ready(object)    {block: [share per branch]}
BranchSharePanel.shares_failed(str)      an error message for the window's status bar
BranchSharePanel.shares_cancelled()      a computation stopped at the user's request
BranchSharePanel.block_selected(str)     the block shown in the per-block chart changed
BranchSharePanel.export_failed(str)      an export could not be written
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QStackedLayout,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from explorer.core.session.attributions import SHARES
from explorer.core.session.session import Session
from explorer.core.session.state import ExplorerState
from explorer.core.text import branch_number, fmt_branch
from explorer.qt.attribution.knockout_chart import KnockoutChart
from explorer.qt.result_view import short_label
from explorer.qt.workers import Lanes

#: Okabe–Ito colours (distinguishable with colour-vision deficiencies), one per branch position.
BRANCH_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#555555")


def branch_color(k: int) -> str:
    return BRANCH_COLORS[k % len(BRANCH_COLORS)]


def short_block_names(blocks: list[str]) -> list[str]:
    """Block names without their common prefix ("inception3a" -> "3a") for axis ticks."""
    prefix = os.path.commonprefix(blocks) if len(blocks) > 1 else ""
    return [b[len(prefix):] or b for b in blocks]


#: At most this many block names on the network chart's axis (deep networks label every n-th block).
MAX_TICKS = 16


def _plot(title: str) -> pg.PlotWidget:
    w = pg.PlotWidget(background=None)
    _configure(w.getPlotItem(), title)
    return w


def _placeholder_stack(parent: QWidget, text: str, chart: QWidget) -> tuple[QStackedLayout, QLabel]:
    """`chart` behind a line of text shown while there is nothing to plot: an empty plot would
    show a numbered 0.1–0.9 axis that means nothing."""
    label = QLabel(text, parent)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(True)
    label.setEnabled(False)  # drawn in the palette's disabled (grey) text colour
    stack = QStackedLayout(parent)
    stack.setContentsMargins(0, 0, 0, 0)
    stack.addWidget(label)
    stack.addWidget(chart)
    return stack, label


def _configure(w: pg.PlotItem, title: str) -> None:
    w.setMenuEnabled(False)
    w.setMouseEnabled(x=False, y=False)
    w.hideButtons()
    w.setTitle(title)
    w.setLabel("left", "share")
    w.setYRange(0, 1, padding=0.02)
    w.showGrid(y=True, alpha=0.25)
    w.getAxis("left").enableAutoSIPrefix(False)


class BranchShareChart(QWidget):
    """One block: a bar per branch, labelled by the branch's label, heights summing to 1."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = _plot("Branch shares")
        self.bars: pg.BarGraphItem | None = None
        self.block: str | None = None
        self.shares: list[float] = []
        self.stack, self.placeholder = _placeholder_stack(
            self, "One block's branch shares appear here once they are computed.", self.plot)

    def set_block(self, block: str, shares: list[float], labels: list[str]) -> None:
        self.block, self.shares = block, list(shares)
        if self.bars is not None:
            self.plot.removeItem(self.bars)
        x = np.arange(len(shares))
        self.bars = pg.BarGraphItem(x=x, height=np.asarray(shares, float), width=0.7,
                                    brushes=[pg.mkBrush(branch_color(k)) for k in x], pen=None)
        self.plot.addItem(self.bars)
        ticks = [(k, f"{branch_number(k)} · {short_label(lab)}") for k, lab in enumerate(labels)]
        self.plot.getAxis("bottom").setTicks([ticks])
        self.plot.setXRange(-0.6, len(shares) - 0.4, padding=0)
        self.plot.setYRange(0, max(shares, default=1) * 1.1, padding=0)
        self.plot.setTitle(f"Branch shares of {block}")
        self.stack.setCurrentWidget(self.plot)

    def clear(self) -> None:
        if self.bars is not None:
            self.plot.removeItem(self.bars)
        self.bars, self.block, self.shares = None, None, []
        self.stack.setCurrentWidget(self.placeholder)

    def export_png(self, path: str | Path, width: int = 900) -> Path:
        from explorer.qt.result_view import export_layout_png

        return export_layout_png(self.plot.getPlotItem(), path, width)


class NetworkShareChart(QWidget):
    """Every block: stacked bars of branch shares by depth, a legend entry per branch position."""

    block_clicked = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setBackground(None)
        self.plot = self.canvas.addPlot(row=0, col=0)
        _configure(self.plot, "Where the evidence flows, block by block")
        self.plot.setLabel("bottom", "block (input → output)")
        # The legend sits in a right margin of the plot (sized to it), so that it never hides a bar.
        self.legend = pg.LegendItem(colCount=1, labelTextSize="8pt")
        self.legend.setParentItem(self.plot)
        self.legend.anchor(itemPos=(1, 0), parentPos=(1, 0), offset=(-4, 30))
        self.bars: list[pg.BarGraphItem] = []
        self.blocks: list[str] = []
        self.current = QGraphicsRectItem()  # outline of the block shown in the per-block chart
        self.current.setPen(pg.mkPen("#d62728", width=2, cosmetic=True))
        self.current.setZValue(10)
        self.current.hide()
        self.plot.addItem(self.current, ignoreBounds=True)
        self.canvas.scene().sigMouseClicked.connect(self._on_click)
        self.stack, self.placeholder = _placeholder_stack(
            self, "Every block's branch shares appear here once they are computed.", self.canvas)

    def set_shares(self, shares: dict[str, list[float]], labels: dict[str, list[str]]) -> None:
        """shares and labels per block, in depth order."""
        self.clear()
        if not shares:
            return
        self.blocks = list(shares)
        n = max((len(v) for v in shares.values()), default=0)
        x = np.arange(len(self.blocks))
        bottom = np.zeros(len(self.blocks))
        for k in range(n):
            h = np.array([shares[b][k] if k < len(shares[b]) else 0.0 for b in self.blocks])
            names = Counter(short_label(labels[b][k]) for b in self.blocks if k < len(labels.get(b, [])))
            role = " / ".join(name for name, _ in names.most_common(2))
            item = pg.BarGraphItem(x=x, y0=bottom.copy(), height=h, width=0.75, brush=pg.mkBrush(branch_color(k)),
                                   pen=pg.mkPen("w", width=0.5), name=f"{fmt_branch(k)} · {role}")
            self.plot.addItem(item)
            self.legend.addItem(item, item.opts["name"])
            self.bars.append(item)
            bottom += h
        self.plot.layout.setContentsMargins(0, 0, self.legend.boundingRect().width() + 12, 0)
        names = short_block_names(self.blocks)
        # As many names as fit side by side (about 7 px a character at the axis font).
        room = max(self.plot.getViewBox().width(), 600)
        fit = max(4, min(MAX_TICKS, int(room // (7 * max(map(len, names), default=1) + 14))))
        every = -(-len(self.blocks) // fit)
        self.plot.getAxis("bottom").setTicks([[(i, names[i]) for i in range(0, len(names), every)]])
        self.plot.setXRange(-0.6, len(self.blocks) - 0.4, padding=0)
        self.plot.setYRange(0, 1, padding=0.02)
        self.stack.setCurrentWidget(self.canvas)

    def set_current(self, block: str | None) -> None:
        """Outline `block`'s bar (None: no outline)."""
        if block not in self.blocks:
            self.current.hide()
            return
        i = self.blocks.index(block)
        self.current.setRect(i - 0.44, -0.005, 0.88, float(self.totals()[i]) + 0.01)
        self.current.show()

    def totals(self) -> np.ndarray:
        """Height of each stacked bar (1 per block when shares are normalised)."""
        if not self.bars:
            return np.array([])
        return np.sum([np.asarray(b.opts["height"], float) for b in self.bars], axis=0)

    def clear(self) -> None:
        for b in self.bars:
            self.plot.removeItem(b)
        self.current.hide()
        self.legend.clear()
        self.bars, self.blocks = [], []
        self.stack.setCurrentWidget(self.placeholder)

    def export_png(self, path: str | Path, width: int = 1200) -> Path:
        from explorer.qt.result_view import export_layout_png

        return export_layout_png(self.canvas.ci, path, width)

    def _on_click(self, ev) -> None:
        vb = self.plot.getViewBox()
        if not self.blocks or not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        p = vb.mapSceneToView(ev.scenePos())
        i = int(round(p.x()))
        if 0 <= i < len(self.blocks) and abs(p.x() - i) <= 0.4 and 0 <= p.y() <= 1:
            self.block_clicked.emit(self.blocks[i])


def conductance_text(result) -> str:
    """A block's decomposition for people: each branch's part of the logit, their sum, and what it should be."""
    from explorer.core.text import fmt_fraction

    parts = " · ".join(f"{fmt_branch(k)} {v:+.3g}" for k, v in enumerate(result.contributions))
    error = fmt_fraction(result.relative_error()) if result.difference else "—"
    return (f"<b>Layer conductance at {result.block}</b> to class {result.target}'s logit, from the "
            f"{result.baseline} baseline: {parts}. Sum {result.total:.4g}; f(x) − f(baseline) = "
            f"{result.output:.4g} − {result.baseline_output:.4g} = {result.difference:.4g} (two plain forwards); "
            f"error {result.error:+.2g} ({error}).")


class BranchSharePanel(QWidget):
    """Compute branch shares for the image on screen; show the network chart and one block's bars.

    Call `set_model(capture_model, graph)` when a model is loaded (capture_model None: the session's
    networks), `set_image(x)` when an image is classified, then `compute(target)` (None: top-1).
    `show_block(name)` follows the selected block. The computation is the session's job; what it found is the
    state's `branch_evidence`, which the charts follow (it goes with the image or the model).
    """

    shares_ready = Signal(object)
    evidence_ready = Signal(object)  # the BranchEvidence the shares were read from
    shares_failed = Signal(str)
    shares_cancelled = Signal()
    block_selected = Signal(str)
    export_failed = Signal(str)

    def __init__(self, parent=None, *, runner: Lanes, session: Session | None = None):
        super().__init__(parent)
        self.runner = runner  # the image panels' lane group: one job at a time among them
        self.session = session if session is not None else Session(ExplorerState(), runner.runner,
                                                                    prepares_classifier=False)
        self.attributions = self.session.attributions
        self.graph = None
        self.target: int | None = None
        self.shares: dict[str, list[float]] = {}
        self.block: str | None = None
        self._job: int | None = None  # the serial of the running computation
        self._serial = 0

        self.compute_button = QPushButton("Compute branch shares")
        self.compute_button.setToolTip("Gradient × activation on every branch output, summed per branch "
                                       "and normalised per block")
        self.decompose_button = QPushButton("Decompose block")
        self.decompose_button.setToolTip(
            "Each branch's layer conductance to the target's logit (Integrated Gradients through the block's "
            "concatenated output, from the Attributions tab's baseline): the branches' parts add up to f(x) − "
            "f(baseline), computed by two plain forwards; the difference left is the integral's error")
        self.knockout_button = QPushButton("Knock out each")
        self.knockout_button.setToolTip(
            "Every branch of every block switched off on its own (its output replaced), and what the target's "
            "probability and the top-1 then are: the activations up to a block are computed once, and its "
            "knock-outs run only the rest of the network")
        self.knockout_mode = QComboBox()
        self.knockout_mode.addItem("zeros", "zero")
        self.knockout_mode.addItem("channel means", "mean")
        self.knockout_mode.setToolTip("What a switched-off branch outputs: zeros, or each channel's mean over the "
                                      "image (which keeps the block's statistics)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the computation at the next block")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setMaximumWidth(180)
        self.status = QLabel()
        self.status.setWordWrap(True)  # a long line wraps: it never widens the panel past its dock
        self.export_button = QToolButton(text="Export")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        menu.addAction("Network chart (PNG)…", lambda: self._export_dialog("network"))
        menu.addAction("Block chart (PNG)…", lambda: self._export_dialog("block"))
        menu.addAction("Shares (CSV)…", lambda: self._export_dialog("csv"))
        self.export_button.setMenu(menu)
        self.network_chart = NetworkShareChart()
        self.block_chart = BranchShareChart()
        self.knockout_chart = KnockoutChart()
        #: The selected block's decomposition, when computed: each branch's part and what they add up to.
        self.conductance_label = QLabel()
        self.conductance_label.setWordWrap(True)
        self.conductance_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bar = QHBoxLayout()
        bar.addWidget(self.compute_button)
        bar.addWidget(self.decompose_button)
        bar.addWidget(self.knockout_button)
        bar.addWidget(self.knockout_mode)
        bar.addWidget(self.cancel_button)
        bar.addWidget(self.progress)
        bar.addWidget(self.status, 1)
        bar.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.network_chart, 3)
        charts = QHBoxLayout()
        charts.addWidget(self.block_chart, 1)
        charts.addWidget(self.knockout_chart, 1)
        layout.addLayout(charts, 2)
        layout.addWidget(self.conductance_label)
        self.compute_button.clicked.connect(lambda: self.compute(self.target))
        self.decompose_button.clicked.connect(lambda: self.decompose(self.target))
        self.knockout_button.clicked.connect(lambda: self.knock_out_each(self.target))
        self.cancel_button.clicked.connect(self.cancel)
        self.network_chart.block_clicked.connect(self.show_block)
        self.session.state.connect("branch_evidence", self._on_evidence)
        self.session.state.connect("conductance", self._on_conductance)
        self.session.state.connect("knockouts", self._on_knockouts)
        self._update_enabled()

    @property
    def x(self):
        """The network input the shares are computed for (on the CPU), or None."""
        return self.attributions.input_x

    def set_model(self, capture_model, graph) -> None:
        """The graph of the network explained: the session's capture networks, or `capture_model` when given."""
        if capture_model is not None:
            self.attributions.use(lambda _device: capture_model)
        self.graph = graph
        self._clear(None)

    def set_image(self, x, target: int | None = None) -> None:
        """A new preprocessed image (1, 3, H, W): the old shares no longer apply."""
        if x is not None and x is not self.x:
            self.attributions.set_input(x)
        self._clear(x, target)

    def _clear(self, x, target: int | None = None) -> None:
        self.session.runner.cancel(SHARES)
        self._job = None
        self.target = target
        self.shares = {}
        self.network_chart.clear()
        self.block_chart.clear()
        self.status.setText("" if x is None else "Compute to see which branches carry the evidence.")
        self._update_enabled()

    def labels(self) -> dict[str, list[str]]:
        return {b.name: [br.label for br in b.branches] for b in self.graph.blocks()} if self.graph else {}

    def compute(self, target: int | None = None) -> None:
        """Ask the session for every branch's evidence for `target` (None: the top-1 class), on a worker."""
        self.target = target
        self._serial += 1
        serial = self._job = self._serial
        try:
            self.attributions.branch_evidence(target, on_progress=lambda done, total: self._on_progress(serial, done,
                                                                                                        total),
                                              on_end=lambda outcome: self._on_end(serial, outcome))
        except ValueError:
            self._job = None
            self.status.setText("Load a model and classify an image first.")
            self.shares_failed.emit("no image to attribute")
            return
        if self._job == serial:
            self.status.setText("Computing branch shares…")
            self.progress.setRange(0, 0)
        self._update_enabled()

    def decompose(self, target: int | None = None) -> None:
        """Ask the session for the shown block's branches' conductance to `target` (None: the top-1), on a worker."""
        block = self.block or (next((b.name for b in self.graph.blocks()), None) if self.graph else None)

        def submit(serial: int) -> None:
            if block is None:
                raise ValueError("Load a model and classify an image first.")
            self.attributions.decompose(block, target, graph=self.graph,
                                        on_progress=lambda d, t: self._on_progress(serial, d, t),
                                        on_end=lambda outcome: self._on_end(serial, outcome))

        self._start(f"Decomposing {block}…", submit)

    def knock_out_each(self, target: int | None = None) -> None:
        """Ask the session to knock out every branch on its own for `target` (None: the top-1), on a worker."""
        self._start(f"Knocking out every branch ({self.knockout_mode.currentText()})…", lambda serial: (
            self.attributions.knock_out_each(target, self.knockout_mode.currentData(), graph=self.graph,
                                             on_progress=lambda d, t: self._on_progress(serial, d, t),
                                             on_end=lambda outcome: self._on_end(serial, outcome))))

    def _start(self, text: str, submit) -> None:
        self._serial += 1
        serial = self._job = self._serial
        try:
            submit(serial)
        except ValueError as e:
            self._job = None
            self.status.setText(str(e))
            self.shares_failed.emit(str(e))
            self._update_enabled()
            return
        if self._job == serial:
            self.status.setText(text)
            self.progress.setRange(0, 0)
        self._update_enabled()

    def cancel(self) -> None:
        """Ask the running computation to stop; the panel returns to idle when it has."""
        if self._job is not None:
            self.session.runner.cancel(SHARES)
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling…")

    def set_shares(self, shares: dict[str, list[float]]) -> None:
        """Show precomputed shares (also what a finished worker calls)."""
        order = [b.name for b in self.graph.blocks()] if self.graph else list(shares)
        self.shares = {b: list(shares[b]) for b in order if b in shares}
        self.network_chart.set_shares(self.shares, self.labels())
        block = self.block if self.block in self.shares else (next(iter(self.shares), None))
        self.block = None
        if block is not None:
            self.show_block(block)
        self._update_enabled()

    def show_block(self, name: str) -> None:
        """Show `name`'s bars (if shares were computed); the window calls this when a block is selected."""
        if name == self.block:
            return
        self.block = name
        self.network_chart.set_current(name)
        if name in self.shares:
            self.block_chart.set_block(name, self.shares[name], self.labels()[name])
        effects = self.session.state.knockouts
        if effects is not None:
            self.knockout_chart.set_block(name, effects, self.labels().get(name, []))
        self.block_selected.emit(name)

    def shutdown(self, msecs: int = 30000) -> bool:
        self.session.runner.cancel(SHARES)
        return self.runner.wait(msecs)

    # -- exports

    def export_network_png(self, path: str | Path) -> Path:
        if not self.shares:
            raise ValueError("no shares computed yet")
        return self.network_chart.export_png(path)

    def export_block_png(self, path: str | Path) -> Path:
        if self.block_chart.bars is None:
            raise ValueError("no block chart to export")
        return self.block_chart.export_png(path)

    def export_csv(self, path: str | Path) -> Path:
        from explorer.core.attribution.methods import shares_csv

        if not self.shares:
            raise ValueError("no shares computed yet")
        path = Path(path)
        path.write_text(shares_csv(self.shares, self.labels()), encoding="utf-8")
        return path

    # -- the session's news

    def _on_evidence(self, evidence) -> None:
        """The state's branch evidence changed: computed for the image on screen, or gone with it."""
        if evidence is None:
            if self.shares:
                self._clear(self.x, self.target)
            return
        self.status.setText("Share of the target's evidence (|gradient × activation|) per branch.")
        self.set_shares(evidence.shares())
        self.evidence_ready.emit(evidence)
        self.shares_ready.emit(self.shares)

    def _on_knockouts(self, effects) -> None:
        """The state's knock-outs changed: computed for the image on screen, or gone with it."""
        if effects is None:
            self.knockout_chart.clear()
            return
        changed = sum(e.top1_changed for e in effects.effects)
        self.status.setText(f"{len(effects.effects)} branches knocked out one at a time; {changed} change the top-1.")
        if self.block is not None:
            self.knockout_chart.set_block(self.block, effects, self.labels().get(self.block, []))

    def _on_conductance(self, result) -> None:
        """The state's decomposition changed: computed for the image on screen, or gone with it."""
        self.conductance_label.setText("" if result is None else conductance_text(result))
        if result is not None:
            self.status.setText(f"{result.block}'s branches decomposed.")

    def _on_end(self, serial: int, outcome: str) -> None:
        if serial != self._job:
            self._update_enabled()
            return
        self._job = None
        if outcome == "failed":
            problem = self.session.state.problem
            message = problem.message if problem is not None else "unknown error"
            self.status.setText(f"Branch shares failed: {message}")
            self.shares_failed.emit(message)
        elif outcome == "cancelled":
            self.status.setText("Branch shares cancelled.")
            self.shares_cancelled.emit()
        self._update_enabled()

    def _on_progress(self, serial: int, done, total) -> None:
        if serial == self._job and total:
            self.progress.setRange(0, int(total))
            self.progress.setValue(int(done))

    def _update_enabled(self) -> None:
        running = self._job is not None
        self.compute_button.setEnabled(not running and self.x is not None)
        self.decompose_button.setEnabled(not running and self.x is not None)
        self.knockout_button.setEnabled(not running and self.x is not None)
        self.cancel_button.setEnabled(running and self.session.runner.running(SHARES) is not None)
        self.progress.setVisible(running)
        self.export_button.setEnabled(bool(self.shares))

    def _export_dialog(self, what: str) -> None:
        name, filt = {"network": ("branch_shares_network.png", "PNG image (*.png)"),
                      "block": (f"branch_shares_{self.block}.png", "PNG image (*.png)"),
                      "csv": ("branch_shares.csv", "CSV (*.csv)")}[what]
        path, _ = QFileDialog.getSaveFileName(self, "Export branch shares", name, filt)
        if not path:
            return
        try:
            {"network": self.export_network_png, "block": self.export_block_png, "csv": self.export_csv}[what](path)
        except (OSError, ValueError) as e:
            self.export_failed.emit(str(e))
