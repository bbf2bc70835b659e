"""The classify panel's batch view: a batch's progress, status line and sortable results table, with its export
(CSV, JSON or JSON Lines: the command line's record schema, with the batch's provenance), and the bar that offers
the files of a batch cleared by a model switch again.

The views show what the panel tells them; the panel decides what to classify and puts the state's `batch`
(a BatchRun) in place, which the batch view keeps up to date as the batch's events arrive.

Signals
-------
BatchView.result_selected(object)   the ClassificationResult of the row that became current
BatchView.export_failed(str)        the export could not be written
PreviousBatchBar.requested()        "Classify them again" was clicked
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from explorer.core.session.state import BatchRun
from explorer.qt.results_table import (
    COL_FILE,
    COL_INDEX,
    COL_PROB,
    COL_TOP1,
    COL_TOP5,
    RESULT_ROLE,
    SORT_ROLE,
    ResultsTableModel,
    display_name,
)

#: The colour of a batch's line when every image got the same class from random weights.
SAME_TOP1_COLOR = "#c62828"
#: The export's formats by file suffix (anything else: CSV), and the save dialog's filters.
EXPORT_FORMATS = {".json": "json", ".jsonl": "jsonl"}
EXPORT_FILTER = "CSV, a row per class (*.csv);;JSON, one array (*.json);;JSON Lines, an object a line (*.jsonl)"


class BatchView(QWidget):
    """A batch's progress and results table, filled batch by batch (see module docstring)."""

    result_selected = Signal(object)
    export_failed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        #: Throughput of the last finished batch, images per second (None before any).
        self.throughput: float | None = None
        #: Folders of the running batch that held no image file.
        self.empty_folders: tuple[str, ...] = ()
        self._started = 0.0
        bl = QVBoxLayout(self)
        bl.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.progress = QProgressBar(self)
        self.progress.setFormat("%v / %m")
        self.status = QLabel(self)
        row.addWidget(self.progress, 1)
        row.addWidget(self.status, 2)
        bl.addLayout(row)
        self.model = ResultsTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView(self)
        self._build_table()
        bl.addWidget(self.table, 1)

    def _build_table(self) -> None:
        """Rows selected whole, sortable, read-only, with fixed starting column widths."""
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSortIndicator(COL_INDEX, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        # Fixed starting widths (user-resizable): ResizeToContents would measure every row on each
        # batch, on the UI thread.
        fm = QFontMetrics(self.table.font())
        widths = {COL_INDEX: fm.horizontalAdvance("00000") + 12, COL_FILE: 150, COL_TOP1: 140,
                  COL_PROB: fm.horizontalAdvance("Probability") + 24, COL_TOP5: 300}
        header.setStretchLastSection(True)
        for col, width in widths.items():
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(col, width)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(fm.height() + 6)
        self.table.selectionModel().currentRowChanged.connect(self._on_row_changed)

    @property
    def results(self) -> list:
        """The table's results, in input order."""
        return self.model.results

    def begin(self) -> None:
        """A new batch: an empty table in input order and a busy bar while its folders are listed."""
        self.model.clear_results()
        self.status.setStyleSheet("")
        self.table.sortByColumn(COL_INDEX, Qt.SortOrder.AscendingOrder)
        self.empty_folders = ()
        self.throughput = None
        self.progress.setRange(0, 0)  # busy indicator while folders are listed
        self.status.setText("Listing files…")
        self.show()
        self._started = time.perf_counter()

    def set_files(self, run: BatchRun | None, files: Sequence[str], empty: tuple[str, ...]) -> None:
        """The files of `run` (the state's batch) are listed (`empty`: the folders that held none)."""
        self.empty_folders = empty
        self.progress.setRange(0, max(len(files), 1))
        self.progress.setValue(0)
        self.status.setText(f"Classifying {len(files)} images…" if files else "No images")

    def append(self, run: BatchRun | None, results: list) -> None:
        """Add results of `run`; the first row becomes current when none is."""
        self.model.append(results)
        done = self.model.rowCount()
        self.progress.setValue(done)
        self.status.setText(f"Classifying… {done} / {run.total if run is not None else done}")
        if self.table.currentIndex().row() < 0 and self.proxy.rowCount() > 0:
            self.table.selectRow(0)

    def stop(self, run: BatchRun | None, text: str) -> None:
        """`run` stopped before its end (the session says how); the status line says `text`."""
        self.progress.setRange(0, max(run.total or 0 if run is not None else 0, 1))
        self.status.setText(text)

    def finish(self, run: BatchRun | None) -> list[str]:
        """`run` ran to its end (the session timed it): its throughput; returns what went wrong (a message per kind)."""
        n = len(self.model.results)
        elapsed = run.seconds if run is not None and run.seconds is not None else time.perf_counter() - self._started
        self.throughput = n / elapsed if n and elapsed > 0 else None
        self.progress.setRange(0, max(n, 1))
        self.progress.setValue(n)
        if n:
            rate = f" — {self.throughput:.1f} images/s" if self.throughput else ""
            same = same_top1_text(self.model.results, run)
            self.status.setText(f"{n} images in {elapsed:.1f} s{rate}" + (f". {same}" if same else ""))
            random = run is not None and getattr(run.provenance, "is_random", False)
            self.status.setStyleSheet(f"color: {SAME_TOP1_COLOR};" if same and random else "")
        messages = []
        failures = self.model.failure_count()
        if failures:
            messages.append(f"{failures} of {n} files could not be classified (see the Error column)")
        if self.empty_folders:
            messages.append(f"No image files in {', '.join(display_name(p) for p in self.empty_folders)}")
        if not n and not self.empty_folders:
            messages.append("Nothing to classify")
        return messages

    def clear(self) -> None:
        """No batch: an empty table, hidden."""
        self.model.clear_results()
        self.hide()

    def export(self, path: str | os.PathLike, run: BatchRun | None) -> Path:
        """Write the table (input order) to `path`, whole or not at all: JSON for .json, JSON Lines for .jsonl,
        else CSV; each record as the command line writes it, with `run`'s provenance (the model, weights,
        device, input size and preprocessing that made it). Unlike the command line's, it lists the files that
        could not be classified too, with their error."""
        from explorer.core.classify.results import CSV_COLUMNS, csv_rows
        from explorer.core.outputs import write_file
        from explorer.core.records import records_text

        provenance = run.provenance if run is not None else None
        fmt = EXPORT_FORMATS.get(Path(path).suffix.lower(), "csv")
        text = records_text(fmt, (r.to_dict(provenance) for r in self.model.results), CSV_COLUMNS, csv_rows)
        return write_file(path, text.encode("utf-8"))

    def export_dialog(self, parent: QWidget, run: BatchRun | None) -> None:
        """Ask where to save the table (a dialog over `parent`), and save it there (see `export`)."""
        path, _ = QFileDialog.getSaveFileName(parent, "Export the results", "classification.csv", EXPORT_FILTER)
        if path:
            try:
                self.export(path, run)
            except OSError as e:
                self.export_failed.emit(f"Cannot write {path}: {e.strerror or e}")

    def release_current(self) -> None:
        """No row is the image on screen any more (another image is): none stays highlighted; the batch stays."""
        model = self.table.selectionModel()
        model.blockSignals(True)
        model.clearSelection()
        model.setCurrentIndex(QModelIndex(), QItemSelectionModel.SelectionFlag.NoUpdate)
        model.blockSignals(False)
        self.table.viewport().update()

    def _on_row_changed(self, current, _previous) -> None:
        if not current.isValid():
            return
        result = self.proxy.data(current.siblingAtColumn(0), RESULT_ROLE)
        if result is not None:
            self.result_selected.emit(result)


def same_top1_text(results: Sequence, run: BatchRun | None) -> str:
    """What a batch whose every classified image got the same top-1 class says ('' otherwise, or for fewer than
    two images). With random weights (the batch's provenance says so) that is a network telling nothing apart,
    and the line says the predictions mean nothing; with learned weights it is a fact worth seeing (the images
    may all show that class)."""
    ok = [r for r in results if r.ok and r.top]
    if len(ok) < 2 or len({r.top[0].index for r in ok}) != 1:
        return ""
    text = f"Every image got the same top-1 class, {ok[0].top[0].label}"
    random = run is not None and getattr(run.provenance, "is_random", False)
    return text + (": random weights, the predictions mean nothing for a network that has not learned" if random
                   else ".")


class PreviousBatchBar(QWidget):
    """A batch cleared by a model switch: its files can be classified again with the new model."""

    requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        pl = QHBoxLayout(self)
        pl.setContentsMargins(0, 0, 0, 0)
        self.previous_label = QLabel(self)
        self.previous_button = QPushButton("Classify them again", self)
        self.previous_button.setToolTip("Classify the same files and folders with the model now loaded")
        self.previous_button.clicked.connect(lambda: self.requested.emit())
        pl.addWidget(self.previous_label, 1)
        pl.addWidget(self.previous_button)
        self.hide()

    def show_previous(self, previous) -> None:
        """Offer `previous` (the state's BatchRun a model switch cleared; None: hide)."""
        if previous is None:
            self.hide()
            return
        n = len(previous.results)
        self.previous_label.setText(
            f"The batch table held {n} result{'s' if n != 1 else ''} of {previous.model}; they were cleared"
            " when the model changed.")
        self.show()
