"""The batch-classification table: a Qt model over `ClassificationResult`s (its export is the one record schema of
explorer.core.classify.results, written by the batch view).

The model keeps results in input order (column "#"); a `QSortFilterProxyModel` sorting on
`SORT_ROLE` gives the view numeric sorting of probabilities and indexes. Rows are appended as each
batch finishes, so the table fills while a folder runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel

from explorer.core.session.tasks import display_name  # noqa: F401 - the table's cells and the panel's titles
from explorer.core.text import fmt_fraction

#: Role whose value the proxy sorts on (numbers for numeric columns).
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
#: Role giving the row's ClassificationResult (on the "#" column).
RESULT_ROLE = Qt.ItemDataRole.UserRole + 2

COLUMNS = ("#", "File", "Top-1", "Probability", "Top-5", "Error")
COL_INDEX, COL_FILE, COL_TOP1, COL_PROB, COL_TOP5, COL_ERROR = range(len(COLUMNS))


def top5_summary(result) -> str:
    """'tabby 41.2 % · tiger cat 20.3 % · …' — every prediction of the result."""
    return " · ".join(f"{p.label} {fmt_fraction(p.prob)}" for p in result.top)


class ResultsTableModel(QStandardItemModel):
    """One row per classified input, in input order; error rows are drawn in the error colour.

    A QStandardItemModel, each row's items made once when it arrives: every repaint then reads
    them in C++, whereas a Python `data()` is called for each visible cell and role (≈3× the paint
    time of the table, on the UI thread, while a batch runs).
    """

    def __init__(self, parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self._results: list = []
        self._error_brush = QBrush(QColor(200, 30, 30))
        self._right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter

    @property
    def results(self) -> list:
        """The results in input order (a copy)."""
        return list(self._results)

    def clear_results(self) -> None:
        self.removeRows(0, self.rowCount())
        self._results = []

    def append(self, results: Sequence) -> None:
        for r in results:
            row = len(self._results)
            self._results.append(r)
            items = []
            for col, text in enumerate(_row_texts(row, r)):
                item = QStandardItem(text)
                item.setEditable(False)
                if col == COL_INDEX:
                    item.setData(row, SORT_ROLE)
                    item.setData(r, RESULT_ROLE)
                elif col == COL_PROB:
                    item.setData(r.top[0].prob if r.top else -1.0, SORT_ROLE)
                else:
                    item.setData(text.lower(), SORT_ROLE)
                if col in (COL_INDEX, COL_PROB):
                    item.setTextAlignment(self._right)
                if not r.ok:
                    item.setForeground(self._error_brush)
                items.append(item)
            items[COL_FILE].setToolTip(r.source)
            if r.error:
                items[COL_ERROR].setToolTip(r.error)
            if r.top:
                items[COL_TOP5].setToolTip("\n".join(f"{fmt_fraction(p.prob):>7}  {p.label}" for p in r.top))
            self.appendRow(items)

    def failure_count(self) -> int:
        return sum(1 for r in self._results if not r.ok)


def _row_texts(row: int, r) -> tuple[str, ...]:
    """The displayed text of each column of a result's row."""
    return (
        str(row + 1),
        display_name(r.source),
        r.top[0].label if r.top else "—",
        fmt_fraction(r.top[0].prob) if r.top else "",
        top5_summary(r),
        r.error or "",
    )
