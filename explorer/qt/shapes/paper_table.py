"""The paper table view: GoogLeNet's (or Inception v3's) Table 1 recomputed from the loaded model.

Cells where the model departs from the paper are tinted and carry the reason as a tooltip; the
table exports as CSV, Markdown and LaTeX. The table itself is built by `explorer.core.shapes.papertable`.

Signals
-------
PaperTableWidget.node_selected(str)           a row was clicked: the block-graph node it shows (its last node)
PaperTableWidget.table_exported(str, str)     a file was written: path, format ('csv', 'markdown', 'latex')
PaperTableWidget.export_failed(str)           writing an export failed: the message for the window
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTextBrowser,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from explorer.core.text import COUNT_UNITS, fmt_count, fmt_int

if TYPE_CHECKING:
    from explorer.core.graph.blockgraph import BlockGraph
    from explorer.core.shapes.papertable import PaperTable
    from explorer.core.shapes.trace import ShapeTrace

#: Item data role holding a deviating cell's note (None elsewhere).
NOTE_ROLE = Qt.ItemDataRole.UserRole + 1
#: A translucent amber that reads on light and dark palettes alike.
DEVIATION_COLOUR = QColor(255, 179, 0, 110)

#: format → (button text, file-dialog filter, suffix)
EXPORT_FORMATS = {
    "csv": ("Export CSV…", "CSV (*.csv)", ".csv"),
    "markdown": ("Export Markdown…", "Markdown (*.md)", ".md"),
    "latex": ("Export LaTeX…", "LaTeX (*.tex)", ".tex"),
}

_LAYOUT_CHOICES = (("Layout: automatic", None), ("Layout: GoogLeNet Table 1", "googlenet"),
                   ("Layout: Inception v3 Table 1", "inception_v3"))


class _NotesView(QTextBrowser):
    """The table's notes: rich text that scrolls; `text()` is its plain text."""

    def __init__(self):
        super().__init__()
        self.setOpenLinks(False)
        self.setMinimumHeight(60)

    def setText(self, text: str) -> None:  # noqa: N802 - the QLabel name the table used
        self.setHtml(text)

    def text(self) -> str:
        return self.toPlainText()

    def sizeHint(self):  # noqa: N802 - Qt override
        hint = super().sizeHint()
        hint.setHeight(120)
        return hint


class PaperTableWidget(QWidget):
    """The architecture table of the loaded model at the current input size, with exports."""

    node_selected = Signal(str)
    table_exported = Signal(str, str)
    export_failed = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._graph: BlockGraph | None = None
        self._trace: ShapeTrace | None = None
        self._table: PaperTable | None = None
        self._layout_choice: str | None = None
        self._warning: str | None = None  # why the chosen layout could not be used

        self.caption = QLabel("No model loaded.")
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.layout_box = QComboBox()
        for text, value in _LAYOUT_CHOICES:
            self.layout_box.addItem(text, value)
        self.layout_box.setToolTip("Which paper's Table 1 layout to follow; automatic picks GoogLeNet's when"
                                   " every block has its four branches")
        self.layout_box.currentIndexChanged.connect(self._on_layout_chosen)

        self.view = QTableWidget(0, 0)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setAlternatingRowColors(True)
        self.view.setWordWrap(False)
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.view.itemSelectionChanged.connect(self._on_selection)

        # The notes scroll on their own below the table, which keeps most of the height.
        self.notes = _NotesView()

        self.export_buttons: dict[str, QPushButton] = {}
        buttons = QHBoxLayout()
        buttons.addWidget(self.layout_box)
        buttons.addStretch(1)
        for fmt, (text, _, _) in EXPORT_FORMATS.items():
            b = QPushButton(text)
            b.setEnabled(False)
            b.setProperty("export_format", fmt)
            b.clicked.connect(self._on_export_clicked)
            self.export_buttons[fmt] = b
            buttons.addWidget(b)

        box = QVBoxLayout(self)
        box.addWidget(self.caption)
        split = QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.view)
        split.addWidget(self.notes)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        box.addWidget(split, 1)
        box.addLayout(buttons)

    # -- model ---------------------------------------------------------------------------------

    def set_model(self, graph: BlockGraph, trace: ShapeTrace) -> None:
        """Show `graph`'s table at the input size of `trace` (call again on every retrace)."""
        self._graph, self._trace = graph, trace
        self._rebuild()

    def set_table(self, table: PaperTable | None) -> None:
        """Show a table built elsewhere (None clears the view)."""
        self._warning = None
        self._show(table)

    def _show(self, table: PaperTable | None) -> None:
        self._table = table
        self._fill()

    def table(self) -> PaperTable | None:
        return self._table

    def clear(self) -> None:
        self._graph = self._trace = None
        self.set_table(None)

    def _on_layout_chosen(self, index: int) -> None:
        self._layout_choice = self.layout_box.itemData(index)
        self._rebuild()

    def _rebuild(self) -> None:
        if self._graph is None or self._trace is None:
            return
        from explorer.core.shapes.papertable import paper_table

        self._warning = None
        try:
            table = paper_table(self._graph, self._trace, self._layout_choice)
        except ValueError as e:  # the chosen layout does not fit this model: fall back, say why
            self._warning = str(e)
            table = paper_table(self._graph, self._trace)
        self._show(table)

    def _fill(self) -> None:
        t = self._table
        view = self.view
        view.blockSignals(True)
        view.clear()
        for b in self.export_buttons.values():
            b.setEnabled(t is not None)
        if t is None:
            view.setRowCount(0)
            view.setColumnCount(0)
            self.caption.setText("No model loaded.")
            self.notes.setText("")
            view.blockSignals(False)
            return
        view.setColumnCount(len(t.columns))
        view.setRowCount(len(t.rows))
        view.setHorizontalHeaderLabels([c.title for c in t.columns])
        view.setVerticalHeaderLabels([r.label for r in t.rows])
        for i, row in enumerate(t.rows):
            for j, col in enumerate(t.columns):
                cell = row[col.key]
                item = QTableWidgetItem(cell.text)
                align = Qt.AlignmentFlag.AlignRight if col.numeric else Qt.AlignmentFlag.AlignLeft
                item.setTextAlignment(align | Qt.AlignmentFlag.AlignVCenter)
                if cell.deviates:
                    item.setBackground(DEVIATION_COLOUR)
                    item.setToolTip(cell.note)
                    item.setData(NOTE_ROLE, cell.note)
                elif col.key == "ops" and cell.value:
                    item.setToolTip(f"{fmt_int(cell.value)} multiply-adds per image")
                elif col.key == "params" and cell.value:
                    item.setToolTip(f"{fmt_int(cell.value)} parameters")
                view.setItem(i, j, item)
        n, c, h, w = t.input_shape
        self.caption.setText(
            f"<b>{t.model}</b> at {h}×{w}: {len(t.rows)} rows, {fmt_int(t.total_params)} parameters,"
            f" {fmt_count(t.total_ops)} multiply-adds per image · {COUNT_UNITS}")
        notes = list(t.notes)
        if t.deviations():
            notes.append(f"{len(t.deviations())} highlighted cells differ from the paper (hover for why).")
        if self._warning:
            notes.insert(0, self._warning)
        self.notes.setText("<ul style='margin:0'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
                           + "</ul>")
        view.blockSignals(False)

    def _on_selection(self) -> None:
        rows = {i.row() for i in self.view.selectedIndexes()}
        if self._table is not None and len(rows) == 1:
            self.node_selected.emit(self._table.rows[rows.pop()].nodes[-1])

    # -- export --------------------------------------------------------------------------------

    def export(self, path: str | Path, fmt: str) -> Path:
        """Write the table shown as `fmt` ('csv', 'markdown', 'latex') to `path`; raises on failure."""
        if self._table is None:
            raise RuntimeError("no table to export: load a model first")
        text = self._table.export(fmt)
        path = Path(path)
        path.write_text(text, encoding="utf-8")
        self.table_exported.emit(str(path), fmt)
        return path

    def _on_export_clicked(self) -> None:
        # One bound slot reading the button's property rather than a lambda per button: a lambda
        # holding `self` makes a reference cycle that the cycle collector frees at an arbitrary
        # later point, which crashed the interpreter at exit about one run in three.
        self.choose_and_export(self.sender().property("export_format"))

    def choose_and_export(self, fmt: str) -> Path | None:
        """Ask for a file name, then export; a failure goes out as `export_failed`."""
        if self._table is None:
            return None
        _, filt, suffix = EXPORT_FORMATS[fmt]
        default = f"{self._table.model}_{self._table.input_shape[2]}x{self._table.input_shape[3]}_table{suffix}"
        name, _ = QFileDialog.getSaveFileName(self, "Export paper table", default, filt)
        if not name:
            return None
        if not Path(name).suffix:
            name += suffix
        try:
            return self.export(name, fmt)
        except (OSError, ValueError, RuntimeError) as e:
            self.export_failed.emit(f"Could not export the paper table to {name}: {e}")
            return None
