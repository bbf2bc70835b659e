"""The evidence that an attribution map means something (explorer.core.attribution.faithfulness), as views:
its deletion and insertion curves with their random-order references, its metrics with their intervals
(metrics_panel.py), the strip of maps of the model-randomisation sanity check, and the table of every method
computed for the image with its ranking line — four tabs beside the map (`EvidenceTabs`).

Each view draws an `AttributionRecord` (or the records) it is given; none holds a model or starts a job.

Signals (MethodsTable)
----------------------
row_chosen(int)   the row a person picked
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QFrame,
    QLabel,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from explorer.core.attribution.catalogue import METHOD_NAMES, category_label
from explorer.core.attribution.faithfulness import SANITY_UNCHANGED, SUBSTRATE_NAMES, AttributionRecord
from explorer.qt.theme import WARNING_COLOR
from explorer.qt.attribution.ground_truth import inside_text, pointing_text
from explorer.qt.attribution.metrics_panel import METRIC_COLUMNS, MetricsPanel, ranking_text, show_metric_columns
from explorer.qt.panels import UNLEARNED

#: Curve colours: deletion red, insertion blue; the random-order references dashed in the same colour.
CURVE_COLORS = {"deletion": "#d62728", "insertion": "#1f77b4"}
#: The metrics of issue 27 first after the map's name: the ones the literature trusts.
TABLE_COLUMNS = ("Method", "Layer", *METRIC_COLUMNS, "Deletion AUC (random)", "Insertion AUC (random)", "Pointing",
                 "Inside share", "Sanity", "Time")
COL_DELETION, COL_INSERTION, COL_POINTING, COL_INSIDE, COL_SANITY = (TABLE_COLUMNS.index(c) for c in (
    "Deletion AUC (random)", "Insertion AUC (random)", "Pointing", "Inside share", "Sanity"))
COL_METRICS = TABLE_COLUMNS.index(METRIC_COLUMNS[0])
STRIP_COLORMAP = "inferno"
#: Why the curves name their substrate (the tooltip of the line that does).
SUBSTRATE_TIP = ("Deleted pixels become the image blurred, not a flat colour: a flat colour keeps the outline of "
                 "what was removed, and a network that reads shapes still sees it (on the demo's drawn shapes even "
                 "the object's own mask then deletes no faster than a random order).")


#: The curves' plot is never drawn shorter than this (pixels, axes and legend included): at 68 px in a laptop's
#: dock the y label was cut and the data area was a few pixels across.
CURVE_PLOT_MIN_HEIGHT = 150


class FaithfulnessCurves(QWidget):
    """The deletion and insertion curves of a map (`curve_plot`, `curve_items`), their legend under the plot and
    the verdict under that (`curve_caption`, in a scroll area: in a short dock it scrolls, never cut mid-line).

    The Curves tab of `EvidenceTabs`, shown once a record has curves.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.curve_plot = pg.PlotWidget(background=None)
        self.curve_plot.setMinimumSize(220, CURVE_PLOT_MIN_HEIGHT)
        self.curve_plot.setMouseEnabled(False, False)
        self.curve_plot.setMenuEnabled(False)
        self.curve_plot.hideButtons()
        self.curve_plot.setLabel("bottom", "share of pixels removed / inserted")
        self.curve_plot.setLabel("left", "p(target)")
        self.curve_plot.getAxis("left").enableAutoSIPrefix(False)  # "p(target) (x1e-08)" was cut in a short plot
        self.curve_plot.setXRange(0, 1, padding=0.02)
        self.curve_plot.setYRange(0, 1, padding=0.02)
        # The legend under the axes, two entries a row (deletion, insertion), in the palette's text colour: over
        # the curves it covered them; beside them, in a 220 px plot, it left the data 8 px wide.
        text = self.palette().color(QPalette.ColorRole.WindowText)
        self.curve_legend = pg.LegendItem(labelTextSize="8pt", verSpacing=-6, horSpacing=6, colCount=2,
                                          labelTextColor=text)
        self.curve_plot.getPlotItem().layout.addItem(self.curve_legend, 4, 0, 1, 3)
        #: One PlotDataItem per curve: "deletion", "deletion_random", "insertion", "insertion_random".
        self.curve_items: dict[str, pg.PlotDataItem] = {}
        for kind, color in CURVE_COLORS.items():
            self.curve_items[kind] = self.curve_plot.plot([], [], pen=pg.mkPen(color, width=2))
            self.curve_items[f"{kind}_random"] = self.curve_plot.plot(
                [], [], pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine))
            self.curve_legend.addItem(self.curve_items[kind], kind)
            self.curve_legend.addItem(self.curve_items[f"{kind}_random"], f"{kind}, random")
        for _, label in self.curve_legend.items:  # rows as tall as their text, not 27 px
            label.item.document().setDocumentMargin(0)
            label.updateMin()
        self.curve_caption = QLabel()
        self.curve_caption.setWordWrap(True)
        self.curve_caption.setTextFormat(Qt.TextFormat.RichText)
        self.curve_caption.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.caption_scroll = CaptionScroll(self.curve_caption)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        # The plot and the verdict share a short dock 3:2; the verdict never takes more than its text needs.
        column.addWidget(self.curve_plot, 3)
        column.addWidget(self.caption_scroll, 2)

    def show_curves(self, record: AttributionRecord | None, categories: list[str], has_map: bool,
                    truth: str = "", unlearned: bool = False) -> None:
        """Plot `record`'s curves and their random references (empty: None or none yet; the caption then
        explains the curves when there is a map to measure); `truth`: the map's localisation, said after them;
        `unlearned`: the network has random weights, and the caption says what that makes of the numbers."""
        curves = None if record is None else record.curves
        if not curves:
            for item in self.curve_items.values():
                item.setData([], [])
            for kind in CURVE_COLORS:
                self._set_legend(kind, kind)
                self._set_legend(f"{kind}_random", f"{kind}, random")
            self.curve_caption.setText("Faithfulness: deletion should fall fast (low area), insertion rise fast "
                                       "(high area), compared with pixels in a random order." if has_map else "")
            self.caption_scroll.fit()
            return
        for kind, c in curves.items():
            self.curve_items[kind].setData(c.fractions, c.scores)
            self.curve_items[f"{kind}_random"].setData(c.fractions, c.random_scores)
            self._set_legend(kind, f"{kind} AUC {c.auc:.3f}")
            self._set_legend(f"{kind}_random", f"random order {c.random_auc:.3f}")
        top = max(float(max(c.scores.max(), c.random_scores.max())) for c in curves.values())
        self.curve_plot.setYRange(0, max(top, 1e-3), padding=0.05)
        parts = []
        for kind, c in curves.items():
            good = c.better_than_random
            mark = "✓" if good else f"<span style='color:{WARNING_COLOR}'>✗ no better than random</span>"
            parts.append(f"{kind} {c.auc:.3f} vs {c.random_auc:.3f} {mark}")
        caveat = f"<br><span style='color:{WARNING_COLOR}'><b>⚠ {UNLEARNED[:1].upper()}{UNLEARNED[1:]}.</b></span>"
        self.curve_caption.setText(f"<b>{METHOD_NAMES[record.result.method]}</b> for "
                                   f"{category_label(categories, record.result.target)}: " + "; ".join(parts)
                                   + (f"; {truth}" if truth else "") + f"<br><small>{substrate_text(curves)}</small>"
                                   + (caveat if unlearned else ""))
        self.curve_caption.setToolTip(SUBSTRATE_TIP)
        self.caption_scroll.fit()

    def _set_legend(self, key: str, text: str) -> None:
        item = self.curve_items[key]
        for sample, label in self.curve_legend.items:
            if sample.item is item:
                label.setText(text)


class CaptionScroll(QScrollArea):
    """A wrapped label that asks for its whole height at its width and scrolls when the dock cannot give it."""

    def __init__(self, label: QLabel, parent=None):
        super().__init__(parent)
        self.setWidget(label)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMinimumHeight(3 * label.fontMetrics().lineSpacing())

    def sizeHint(self):  # noqa: N802 - Qt override
        hint = super().sizeHint()
        label = self.widget()
        hint.setHeight(label.heightForWidth(max(self.viewport().width(), 100)) + 2)
        return hint

    def fit(self) -> None:
        """No taller than the text at this width: the plot above takes what the verdict does not need."""
        self.setMaximumHeight(max(self.minimumHeight(), self.sizeHint().height()))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if event.oldSize().width() != event.size().width():
            self.fit()


def substrate_text(curves: dict) -> str:
    """What the curves' pixels were replaced with, in a line: "Deleted to the image blurred; inserted into the
    image blurred."."""
    said = {"deletion": "Deleted to", "insertion": "inserted into"}
    parts = [f"{said[kind]} {SUBSTRATE_NAMES.get(c.substrate, c.substrate or 'an unknown substrate')}"
             for kind, c in curves.items()]
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


class SanityStrip(QWidget):
    """The sanity check's strip: the original map, then the map after each randomisation step with its ρ."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.sanity_caption = QLabel("Run a sanity check to see whether the map depends on the learned weights.")
        self.sanity_caption.setWordWrap(True)
        self.sanity_caption.setTextFormat(Qt.TextFormat.RichText)
        self.sanity_view = pg.GraphicsLayoutWidget()
        self.sanity_view.setBackground(None)
        self.sanity_view.setMinimumHeight(120)
        #: The strip's maps (original first) and the labels under them (block and Spearman's ρ).
        self.sanity_items: list[pg.ImageItem] = []
        self.sanity_labels: list = []
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.sanity_caption)
        column.addWidget(self.sanity_view, 1)

    def show_sanity(self, record: AttributionRecord | None, has_map: bool, unlearned: bool = False) -> None:
        """Draw `record`'s sanity check (None, or none yet: a caption that explains it when there is a map);
        `unlearned`: the network has random weights, so there are no learned weights for a map to depend on."""
        self.sanity_view.clear()
        self.sanity_items, self.sanity_labels = [], []
        check = None if record is None else record.sanity
        if check is None:
            self.sanity_caption.setText("Sanity check: the map again with the top blocks' weights randomised one "
                                        "after another; a map that stays the same does not show what the model "
                                        "learned." if has_map else "")
            return
        maps = [record.result.heatmap, *check.maps]
        names = ["original", *(f"+ {b}" for b in check.blocks)]
        rhos = [None, *check.correlations]
        lut = pg.colormap.get(STRIP_COLORMAP).getLookupTable(nPts=256)
        for col, (m, name, rho) in enumerate(zip(maps, names, rhos, strict=True)):
            box = self.sanity_view.addViewBox(row=0, col=col, lockAspect=True, invertY=True, enableMouse=False)
            box.setMenuEnabled(False)
            mag = np.abs(np.asarray(m, dtype=np.float32))
            item = pg.ImageItem(axisOrder="row-major")
            item.setImage(mag, autoLevels=False, levels=(0.0, float(mag.max()) or 1.0))
            item.setLookupTable(lut)
            box.addItem(item)
            box.autoRange(padding=0.02)
            text = "ρ —" if rho is None else ("ρ undefined" if not math.isfinite(rho) else f"ρ {rho:.2f}")
            label = self.sanity_view.addLabel(f"{name}<br>{text}", row=1, col=col, size="8pt",
                                              color=self.palette().color(QPalette.ColorRole.WindowText))
            self.sanity_items.append(item)
            self.sanity_labels.append(label)
        if unlearned:
            self.sanity_caption.setText(
                f"<span style='color:{WARNING_COLOR}'><b>⚠ These weights were never learned</b> (random weights): "
                "randomising them again shows nothing about what the model learned, whatever ρ says "
                f"(last ρ {check.correlations[-1]:.2f}). Load trained weights, or the demo model, to check a "
                "map.</span>")
        elif check.flagged:
            self.sanity_caption.setText(
                f"<span style='color:{WARNING_COLOR}'><b>⚠ The map does not change</b> when the weights are "
                f"randomised (ρ {check.correlations[-1]:.2f} ≥ {SANITY_UNCHANGED:g} after {len(check.blocks)} "
                "blocks): it shows the image, not what the model learned.</span>")
        else:
            self.sanity_caption.setText(
                f"<b>{METHOD_NAMES[record.result.method]}</b>: the map changes as blocks are randomised "
                f"(Spearman ρ of |map| with the original under each): it depends on the learned weights.")


class MethodsTable(QTableWidget):
    """One row per method computed for the image: its layer, curves' areas, metrics with their intervals (✗ where
    one does not clear its reference), localisation against the object (the pointing game and the share of positive
    attribution inside it, where the object is known), sanity verdict and times."""

    row_chosen = Signal(int)

    def __init__(self, parent=None):
        super().__init__(0, len(TABLE_COLUMNS), parent)
        self.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.verticalHeader().hide()
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.itemSelectionChanged.connect(self._on_selection)

    def show_records(self, records, localise: Callable | None = None, unlearned: bool = False) -> None:
        """One row per record (the explorer state's `attributions`); `localise(result)` gives a map's
        Localisation against the object, or None where it is not known (None: nowhere); `unlearned`: the network
        has random weights (a sanity verdict then says so)."""
        self.blockSignals(True)
        self.setRowCount(len(records))
        for row, rec in enumerate(records):
            r = rec.result
            loc = localise(r) if localise is not None else None
            cells = [METHOD_NAMES[r.method], r.layer or "input", *[None] * len(METRIC_COLUMNS),
                     auc_text(rec, "deletion"), auc_text(rec, "insertion"), pointing_text(loc), inside_text(loc),
                     sanity_text(rec, unlearned), times_text(rec)]
            warn = {COL_DELETION: bool(rec.curves) and not rec.curves["deletion"].better_than_random,
                    COL_INSERTION: bool(rec.curves) and not rec.curves["insertion"].better_than_random,
                    COL_POINTING: loc is not None and not loc.pointing,
                    COL_SANITY: rec.sanity is not None and (rec.sanity.flagged or unlearned)}
            show_metric_columns(self, COL_METRICS, rec, row)
            for col, text in enumerate(cells):
                if text is None:
                    continue
                item = QTableWidgetItem(text)
                if warn.get(col):
                    item.setForeground(pg.mkColor(WARNING_COLOR))
                self.setItem(row, col, item)
        self.blockSignals(False)

    def _on_selection(self) -> None:
        rows = self.selectionModel().selectedRows()
        if rows:
            self.row_chosen.emit(rows[0].row())


class EvidenceTabs(QTabWidget):
    """The curves, the metrics, the methods table (with its ranking line under it) and the sanity strip as tabs
    beside the map; hidden until some record has evidence, the Curves and Metrics tabs until the record shown has
    curves or metrics."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.curves = FaithfulnessCurves()
        self.metrics = MetricsPanel()
        self.table = MethodsTable()
        #: Under the table: the methods ranked where the metrics agree, or why they are not.
        self.ranking_label = QLabel()
        self.ranking_label.setWordWrap(True)
        self.methods = QWidget()
        column = QVBoxLayout(self.methods)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.table, 1)
        column.addWidget(self.ranking_label)
        self.strip = SanityStrip()
        self.addTab(self.curves, "Curves")
        self.addTab(self.metrics, "Metrics")
        self.addTab(self.methods, "Methods")
        self.addTab(self.strip, "Sanity check")
        self.setTabVisible(0, False)
        self.setTabVisible(1, False)
        self.hide()

    def show_metrics(self, record: AttributionRecord | None, *args, **kwargs) -> None:
        """`record`'s metrics in the Metrics tab (see MetricsPanel.show_metrics), the tab shown while it has any."""
        self.metrics.show_metrics(record, *args, **kwargs)
        self.setTabVisible(self.indexOf(self.metrics), bool(record is not None and record.metrics))

    def show_curves(self, record: AttributionRecord | None, *args, **kwargs) -> None:
        """`record`'s curves in the Curves tab (see FaithfulnessCurves.show_curves), the tab shown while it has any."""
        self.curves.show_curves(record, *args, **kwargs)
        self.setTabVisible(self.indexOf(self.curves), bool(record is not None and record.curves))

    def show_records(self, records, localise: Callable | None = None, unlearned: bool = False) -> None:
        """The table of `records` (see MethodsTable.show_records); shown once a record has evidence, or a map can
        be measured against the object."""
        located = localise is not None and any(localise(rec.result) is not None for rec in records)
        self.setVisible(located or any(rec.curves or rec.metrics or rec.sanity is not None for rec in records))
        self.table.show_records(records, localise, unlearned)
        text = ranking_text(records, unlearned)
        self.ranking_label.setText(text)
        self.ranking_label.setVisible(bool(text))


def auc_text(rec: AttributionRecord, kind: str) -> str:
    """A curve's area with its random reference's: "0.123 (0.456)", ✗ when no better than random."""
    if not rec.curves or kind not in rec.curves:
        return "—"
    c = rec.curves[kind]
    return f"{c.auc:.3f} ({c.random_auc:.3f})" + ("" if c.better_than_random else " ✗")


def sanity_text(rec: AttributionRecord, unlearned: bool = False) -> str:
    """The sanity check's verdict ("passes (ρ 0.31)"; '—' before it ran), said to mean nothing for random weights."""
    verdict = rec.verdict()
    if not verdict:
        return "—"
    return f"{verdict}: random weights, nothing learned to check" if unlearned else verdict


def times_text(rec: AttributionRecord) -> str:
    """What the map and its evidence took: "map 1.2 s, curves 3.4 s"."""
    parts = [f"map {rec.seconds:.1f} s"]
    if rec.curves_seconds is not None:
        parts.append(f"curves {rec.curves_seconds:.1f} s")
    if rec.sanity_seconds is not None:
        parts.append(f"sanity {rec.sanity_seconds:.1f} s")
    if rec.metrics_seconds is not None:
        parts.append(f"metrics {rec.metrics_seconds:.1f} s")
    return ", ".join(parts)
