"""Issue 27's metrics of a map as a person reads them (explorer.core.attribution.metrics): the Metrics tab beside
the map — per metric its value with the interval over noise seeds, beside its reference's interval, and a verdict
only where the interval clears the reference — with the map's localisation against the object where it is known;
and the methods table's metric cells and its ranking line, which ranks methods only where the metrics agree.

Nothing here holds a model or starts a job: the views draw the `AttributionRecord`s they are given.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout,
                               QWidget)

from explorer.core.attribution.catalogue import METHOD_NAMES, category_label
from explorer.core.attribution.faithfulness import AttributionRecord
from explorer.core.attribution.metrics import (METRIC_LABELS, METRIC_NAMES, REFERENCE_NAMES, interval_text,
                                               rank_methods, score_text, verdict_text)
from explorer.qt.attribution.ground_truth import inside_text, pointing_text
from explorer.qt.panels import UNLEARNED
from explorer.qt.theme import WARNING_COLOR

PANEL_COLUMNS = ("Metric", "Map: mean [interval]", "Reference", "Verdict")
#: The methods table's metric columns, in METRIC_NAMES' order.
METRIC_COLUMNS = ("SRG", "ROAD", "Smooth MPRT", "Efficient MPRT")
#: What each metric is, as its row's tooltip.
METRIC_TIPS = {
    "srg": "Symmetric relevance gain (Blücher et al. 2024): area between the least- and most-relevant-first removal "
           "curves; higher is better. Reference: random orders of squares (and their reverses).",
    "road": "ROAD (Rong et al. 2022): change of p(target) with the least minus the most relevant pixels filled by "
            "noisy linear imputation, halved; higher is better. Interval over noise seeds; reference: random orders.",
    "smooth_mprt": "Smooth MPRT (Hedström et al. 2024): rank correlation of the denoised map with the map of the "
                   "fully randomised network; lower is better. Reference: two denoisings of the trained network's map.",
    "efficient_mprt": "Efficient MPRT (Hedström et al. 2024): relative rise of the map's histogram entropy when the "
                      "network is fully randomised; higher is better. Reference: 0, a map that ignores the weights.",
}
MEANINGLESS = "meaningless: random weights"


def metric_cell(rec: AttributionRecord, name: str) -> tuple[str, str, bool]:
    """(the methods table's cell of metric `name`, its tooltip, whether it is said in the warning colour): the
    interval over seeds, "[0.380, 0.470]" (one number where they agree), ✗ when it does not clear the reference;
    the tooltip adds the mean, the reference and the verdict. '—' before the metrics ran."""
    score = (rec.metrics or {}).get(name)
    if score is None:
        return "—", METRIC_TIPS[name], False
    tip = (f"{score_text(score)} against {interval_text(*score.reference_interval)} ({REFERENCE_NAMES[name]}): "
           f"{verdict_text(score)}")
    cell = interval_text(*score.interval) + ("" if score.clears_reference else " ✗")
    return cell, tip, not score.clears_reference


def row_label(rec: AttributionRecord, records) -> str:
    """A record's name in the ranking line: its method, with its layer where it has one (and its target where the
    records explain more than one class)."""
    r = rec.result
    label = METHOD_NAMES[r.method] + (f" ({r.layer})" if r.layer else "")
    if len({x.result.target for x in records}) > 1:
        label += f" → {r.target}"
    return label


def ranking_text(records, unlearned: bool = False) -> str:
    """The methods table's ranking line: the records with metrics ranked where every metric orders them alike with
    intervals apart (metrics.rank_methods), else why not; '' while fewer than two maps have metrics."""
    measured = [rec for rec in records if rec.metrics]
    if len(measured) < 2:
        return ""
    if unlearned:
        return f"No ranking: {UNLEARNED}."
    return rank_methods({row_label(rec, records): rec.metrics for rec in measured}).text()


class MetricsPanel(QWidget):
    """The Metrics tab: a caption (the map, the seeds, what a verdict needs), a table of the four metrics with their
    intervals, references and verdicts, then the localisation rows where the object is known."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        self.table = QTableWidget(0, len(PANEL_COLUMNS))
        self.table.setHorizontalHeaderLabels(PANEL_COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        # Narrow in a laptop's dock: the columns share its width and the texts wrap, rows as tall as they need.
        self.table.setWordWrap(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.caption)
        column.addWidget(self.table, 1)

    def show_metrics(self, record: AttributionRecord | None, categories: list[str], localisation=None,
                     unlearned: bool = False) -> None:
        """`record`'s metrics (None, or none yet: an empty table); `localisation`: the map against the object (a
        Localisation, or None where it is not known); `unlearned`: the network has random weights, and every verdict
        says the numbers mean nothing."""
        scores = None if record is None else record.metrics
        rows: list[tuple[str, str, str, str, bool, str]] = []
        for name in METRIC_NAMES if scores else ():
            s = scores.get(name)
            if s is None:
                continue
            verdict = MEANINGLESS if unlearned else verdict_text(s)
            ref = f"{interval_text(*s.reference_interval)} {REFERENCE_NAMES[name]}"
            rows.append((METRIC_LABELS[name], score_text(s), ref, verdict, unlearned or not s.clears_reference,
                         METRIC_TIPS[name]))
        if scores and localisation is not None:
            rows.append(("Pointing game", pointing_text(localisation), "", "", not localisation.pointing,
                         "Whether the map's highest positive value lies on the object."))
            rows.append(("Inside share", inside_text(localisation), "", "", False,
                         "The share of the map's positive attribution on the object."))
        self.table.setRowCount(len(rows))
        for row, (*cells, warn, tip) in enumerate(rows):
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                if warn and col == 3:
                    item.setForeground(pg.mkColor(WARNING_COLOR))
                self.table.setItem(row, col, item)
        self.caption.setText(self._caption(record, categories, unlearned) if scores else "")

    @staticmethod
    def _caption(record: AttributionRecord, categories: list[str], unlearned: bool) -> str:
        r = record.result
        road = record.metrics.get("road")
        seeds = len(road.values) if road is not None else len(next(iter(record.metrics.values())).values)
        text = (f"<b>{METHOD_NAMES[r.method]}</b> for {category_label(categories, r.target)}: each value is the mean "
                f"over {seeds} noise seeds with its smallest and largest in brackets; a verdict only where the whole "
                "interval clears the whole reference.")
        if unlearned:
            text += (f"<br><span style='color:{WARNING_COLOR}'><b>⚠ {UNLEARNED[:1].upper()}{UNLEARNED[1:]}.</b>"
                     "</span>")
        return text


def show_metric_columns(table: QTableWidget, first: int, rec: AttributionRecord, row: int) -> None:
    """`rec`'s metric cells in `table`'s row `row`, from column `first` on (METRIC_COLUMNS' order)."""
    for i, name in enumerate(METRIC_NAMES):
        text, tip, warn = metric_cell(rec, name)
        item = QTableWidgetItem(text)
        item.setToolTip(tip)
        if warn:
            item.setForeground(pg.mkColor(WARNING_COLOR))
        table.setItem(row, first + i, item)

