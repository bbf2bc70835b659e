"""The Compare window: two models side by side, stage by stage, and the factorisation panel.

The block graphs are built and compared in the window's `JobRunner` (`explorer.core.shapes.compare`); a new
choice of models or input size cancels the comparison still running. Cells where the paired nodes
differ are tinted and name the difference in their tooltip. The last pair is kept in the settings.

Signals
-------
CompareWindow.comparison_ready(object)   a Comparison is on screen
CompareWindow.comparison_failed(str)     building or comparing failed: the message shown
CompareWindow.csv_exported(str)          the table was written to this path
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QColor, QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from explorer.core.session import events as ev
from explorer.core.shapes.compare import natural_partner
from explorer.core.text import MULT_ADDS, MULTIPLY_ADDS, fmt_count, fmt_int, fmt_shape
from explorer.core.model.zoo import get_spec, model_names
from explorer.qt.shapes.factorisation_panel import FactorisationPanel
from explorer.qt.panels import MAX_SIDE, Banner
from explorer.qt.screen import fit_to_screen

if TYPE_CHECKING:
    from explorer.core.session.session import Session
    from explorer.core.shapes.compare import Comparison, SideCell

#: The same translucent amber as the paper table's deviations: readable on light and dark palettes.
DIFF_COLOUR = QColor(255, 179, 0, 110)
#: Item data role: the difference fields a tinted cell shows (tuple of str; empty elsewhere).
DIFF_ROLE = Qt.ItemDataRole.UserRole + 1

#: Per side: (column title, the difference fields its cell shows).
SIDE_COLUMNS = (
    ("node", ("node", "kind")),
    ("output", ("shape",)),
    ("params", ("params",)),
    (MULT_ADDS, ("macs",)),
    ("kernels", ("kernels", "branches")),
    ("branch channels", ("channels",)),
)
TAB_COMPARE, TAB_FACTORISATION = 0, 1


class CompareWindow(QWidget):
    """A non-modal window: model pickers, a shared input size, the aligned table and the factorisation tab."""

    comparison_ready = Signal(object)
    comparison_failed = Signal(str)
    csv_exported = Signal(str)

    def __init__(self, settings: QSettings, model: str | None = None, size: tuple[int, int] = (224, 224),
                 parent: QWidget | None = None, opened: list[str] | None = None, *, session: Session):
        """opened: references of models opened in the main window (any CNN), offered after the zoo's."""
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Compare models")
        self.settings = settings
        self.session = session  # compares on a worker (explorer.core.session.compare)
        self._asked: tuple | None = None  # (model A, model B, size) of this window's last request
        compared, problem = self._on_compared, self._on_problem
        session.on(ev.Compared, compared)
        session.state.connect("problem", problem)
        self.destroyed.connect(lambda *_: (session.off(ev.Compared, compared),
                                           session.state.disconnect("problem", problem)))
        self.comparison: Comparison | None = None
        self.graphs: tuple = ()
        self._rows: list[int | None] = []  # table row → comparison row (None: a stage heading)

        top = self._build_pickers(opened)
        page = self._build_compare_page()
        self._arrange(top, page)
        a, b = self._initial_pair(model)
        self._set_combo(self.combo_a, a)
        self._set_combo(self.combo_b, b)
        self.h_box.setValue(size[0])
        self.w_box.setValue(size[1])
        self._connect()
        fit_to_screen(self, 1500, 820)
        self.compare()

    def _build_pickers(self, opened: list[str] | None) -> QHBoxLayout:
        """The row of the two model pickers, the swap button, the shared input size and the busy bar."""
        names = model_names()
        self.combo_a, self.combo_b = QComboBox(self), QComboBox(self)
        for combo, tip in ((self.combo_a, "Model A (left)"), (self.combo_b, "Model B (right)")):
            for name in names:
                combo.addItem(get_spec(name).title, name)
            combo.setToolTip(tip)
        self.add_models(opened or [])
        self.swap_button = QToolButton(self)
        self.swap_button.setText("⇄")
        self.swap_button.setToolTip("Swap the two models")
        self.h_box, self.w_box = QSpinBox(self), QSpinBox(self)
        for box, prefix in ((self.h_box, "H "), (self.w_box, "W ")):
            box.setRange(1, MAX_SIDE)
            box.setPrefix(prefix)
            box.setKeyboardTracking(False)  # one comparison per edit, not one per digit typed
            box.setToolTip("Input size shared by both models")
        self.busy = QProgressBar(self)
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(120)
        self.busy.hide()

        top = QHBoxLayout()
        top.addWidget(QLabel("A"))
        top.addWidget(self.combo_a, 1)
        top.addWidget(self.swap_button)
        top.addWidget(QLabel("B"))
        top.addWidget(self.combo_b, 1)
        top.addSpacing(12)
        top.addWidget(QLabel("Input"))
        top.addWidget(self.h_box)
        top.addWidget(QLabel("×"))
        top.addWidget(self.w_box)
        top.addWidget(self.busy)
        return top

    def _build_compare_page(self) -> QWidget:
        """The error banner; the comparison's page: its summary, the aligned table, the legend and Export."""
        self.banner = Banner("error", self)
        self.summary = QLabel("Comparing…", self)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = QTableWidget(0, 2 * len(SIDE_COLUMNS), self)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.legend = QLabel(self)
        self.legend.setText("Tinted cells differ between the two models; hover over one for how.")
        self.legend.setStyleSheet("QLabel { background: rgba(255, 179, 0, 110); padding: 2px 6px; }")
        self.export_button = QPushButton("Export CSV…", self)
        self.export_button.setEnabled(False)
        bottom = QHBoxLayout()
        bottom.addWidget(self.legend)
        bottom.addStretch(1)
        bottom.addWidget(self.export_button)

        page = QWidget(self)
        lay = QVBoxLayout(page)
        lay.addWidget(self.summary)
        lay.addWidget(self.table, 1)
        lay.addLayout(bottom)
        return page

    def _arrange(self, top: QHBoxLayout, page: QWidget) -> None:
        """The pickers above the banner and the tabs (comparison, factorisation); the Close shortcut."""
        self.factorisation = FactorisationPanel(self)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(page, "Compare")
        self.tabs.addTab(self.factorisation, "Factorisation")

        # In a scroll area: the two models' columns need more width than a laptop's screen has.
        content = QWidget(self)
        box = QVBoxLayout(content)
        box.addLayout(top)
        box.addWidget(self.banner)
        box.addWidget(self.tabs, 1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        QShortcut(QKeySequence.StandardKey.Close, self, self.close)

    def _connect(self) -> None:
        """A new choice of models or size compares again; Swap and Export."""
        self.combo_a.currentIndexChanged.connect(self.compare)
        self.combo_b.currentIndexChanged.connect(self.compare)
        self.h_box.valueChanged.connect(self.compare)
        self.w_box.valueChanged.connect(self.compare)
        self.swap_button.clicked.connect(self.swap)
        self.export_button.clicked.connect(self.choose_and_export)

    def add_models(self, refs: list[str]) -> None:
        """Offer models opened in the main window (torchvision:/timm: names, files) after the zoo's."""
        for ref in refs:
            for combo in (self.combo_a, self.combo_b):
                if combo.findData(ref) < 0:
                    combo.blockSignals(True)
                    if combo.count() == len(model_names()):
                        combo.insertSeparator(combo.count())
                    combo.addItem(f"{ref} (opened)", ref)
                    combo.blockSignals(False)

    def _offered(self) -> list[str]:
        return [self.combo_a.itemData(i) for i in range(self.combo_a.count()) if self.combo_a.itemData(i)]

    def _initial_pair(self, model: str | None) -> tuple[str, str]:
        """The last pair when it includes the window's model (or there is none), else model vs its partner."""
        names, offered = model_names(), self._offered()
        a, b = self.settings.value("compare/model_a"), self.settings.value("compare/model_b")
        if a in offered and b in offered and (model is None or model in (a, b)):
            return a, b
        model = model if model in offered else names[0]
        return model, natural_partner(model, names)

    @staticmethod
    def _set_combo(combo: QComboBox, name: str) -> None:
        combo.setCurrentIndex(max(0, combo.findData(name)))

    # -- state -----------------------------------------------------------------------------------

    def models(self) -> tuple[str, str]:
        return self.combo_a.currentData(), self.combo_b.currentData()

    def input_size(self) -> tuple[int, int]:
        return self.h_box.value(), self.w_box.value()

    def set_models(self, a: str, b: str) -> None:
        """Choose both models at once (one comparison)."""
        for combo in (self.combo_a, self.combo_b):
            combo.blockSignals(True)
        self._set_combo(self.combo_a, a)
        self._set_combo(self.combo_b, b)
        for combo in (self.combo_a, self.combo_b):
            combo.blockSignals(False)
        self.compare()

    def set_input_size(self, h: int, w: int | None = None) -> None:
        """Set the shared input size (one comparison)."""
        w = h if w is None else w
        for box in (self.h_box, self.w_box):
            box.blockSignals(True)
        self.h_box.setValue(h)
        self.w_box.setValue(w)
        for box in (self.h_box, self.w_box):
            box.blockSignals(False)
        self.compare()

    def swap(self) -> None:
        a, b = self.models()
        self.set_models(b, a)

    def show_tab(self, tab: int) -> None:
        self.tabs.setCurrentIndex(tab)

    # -- comparing -------------------------------------------------------------------------------

    def compare(self, *_) -> None:
        """Compare the chosen models at the chosen size in a worker (cancelling one still running)."""
        a, b = self.models()
        self.settings.setValue("compare/model_a", a)
        self.settings.setValue("compare/model_b", b)
        self.busy.show()
        self.summary.setText(f"Comparing {a} and {b} at {self.h_box.value()}×{self.w_box.value()}…")
        self._asked = (a, b, tuple(self.input_size()))
        self.session.comparisons.compare(a, b, self.input_size())

    def _on_problem(self, problem) -> None:
        if problem is not None and problem.topic == "compare":
            self._on_failed(problem.message)

    def _on_compared(self, event: ev.Compared) -> None:
        if (*event.names, event.size) != self._asked:  # another Compare window's
            return
        (graph_a, graph_b), comparison = event.graphs, event.comparison
        self.busy.hide()
        self.graphs = (graph_a, graph_b)
        self.comparison = comparison
        errors = [s.error for s in (comparison.a, comparison.b) if s.error]
        self.banner.set_message("\n".join(errors) or None)
        self.summary.setText(comparison.summary())
        self._fill(comparison)
        self.export_button.setEnabled(True)
        try:
            self.factorisation.set_graphs([graph_a, graph_b], comparison.size)
        except Exception as e:  # a guest panel: its failure must not take the comparison down
            self.banner.set_message(f"factorisation panel: {e}")
        self.setWindowTitle(f"Compare — {comparison.a.model} vs {comparison.b.model}")
        self.comparison_ready.emit(comparison)

    def _on_failed(self, message: str) -> None:
        self.busy.hide()
        self.banner.set_message(message)
        self.summary.setText("No comparison.")
        self.comparison_failed.emit(message)

    # -- table -----------------------------------------------------------------------------------

    def _fill(self, c: Comparison) -> None:
        t = self.table
        t.setUpdatesEnabled(False)
        t.clearSpans()
        t.clearContents()
        titles = []
        for letter, model in (("A", c.a.model), ("B", c.b.model)):
            titles += [f"{letter}: {model}" if title == "node" else title for title, _ in SIDE_COLUMNS]
        t.setColumnCount(len(titles))
        t.setHorizontalHeaderLabels(titles)
        self._rows = []
        for i, row in enumerate(c.rows):
            if i == 0 or c.rows[i - 1].stage != row.stage:
                self._rows.append(None)
            self._rows.append(i)
        t.setRowCount(len(self._rows))
        bold = QFont(t.font())
        bold.setBold(True)
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        n = len(SIDE_COLUMNS)
        for r, index in enumerate(self._rows):
            if index is None:
                stage = c.stages[c.rows[self._rows[r + 1]].stage]
                item = QTableWidgetItem(stage.label)
                item.setFont(bold)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled)
                t.setItem(r, 0, item)
                t.setSpan(r, 0, 1, 2 * n)
                continue
            row = c.rows[index]
            for side, cell in enumerate((row.a, row.b)):
                for col, text in enumerate(self._texts(cell)):
                    item = QTableWidgetItem(text)
                    if col == 0:
                        item.setFont(bold)
                    if col in (2, 3):
                        item.setTextAlignment(right)
                    fields = tuple(f for f in SIDE_COLUMNS[col][1] if row.differs(f)) if cell is not None else ()
                    item.setData(DIFF_ROLE, fields)
                    if fields:
                        item.setBackground(DIFF_COLOUR)
                        item.setToolTip("\n".join(row.difference(f).text for f in fields))
                    elif cell is not None and col in (2, 3):
                        value = cell.params if col == 2 else cell.macs
                        if value is not None:
                            item.setToolTip(f"{fmt_int(value)} {'parameters' if col == 2 else MULTIPLY_ADDS + ' per image'}")
                    if cell is not None and col == 0 and cell.training_only:
                        item.setToolTip((item.toolTip() + "\n" if item.toolTip() else "")
                                        + "runs in training only")
                    t.setItem(r, side * n + col, item)
        t.setUpdatesEnabled(True)

    @staticmethod
    def _texts(cell: SideCell | None) -> list[str]:
        if cell is None:
            return [""] * len(SIDE_COLUMNS)
        name = cell.name + (" (aux)" if cell.training_only and cell.kind != "aux" else "")
        return [name, fmt_shape(cell.output_shape), fmt_count(cell.params) if cell.params else "",
                fmt_count(cell.macs) if cell.macs != 0 else "", cell.kernels, cell.channels]

    def table_row(self, node: str, side: str = "a") -> int:
        """The table row showing `node` on side 'a' or 'b'; ValueError if none."""
        for r, index in enumerate(self._rows):
            if index is not None:
                cell = getattr(self.comparison.rows[index], side)
                if cell is not None and cell.name == node:
                    return r
        raise ValueError(f"{node} is not on side {side}")

    def item(self, node: str, column: str, side: str = "a") -> QTableWidgetItem:
        """The table cell of `node`'s `column` ('node', 'output', 'params', 'mult-adds', 'kernels', …)."""
        col = [title for title, _ in SIDE_COLUMNS].index(column)
        return self.table.item(self.table_row(node, side), (0 if side == "a" else len(SIDE_COLUMNS)) + col)

    # -- export ----------------------------------------------------------------------------------

    def export_csv(self, path: str | Path) -> Path:
        """Write the comparison on screen as CSV; raises OSError, RuntimeError."""
        if self.comparison is None:
            raise RuntimeError("nothing to export yet: the comparison is still running")
        path = Path(path)
        path.write_text(self.comparison.to_csv(), encoding="utf-8")
        self.csv_exported.emit(str(path))
        return path

    def choose_and_export(self) -> Path | None:
        if self.comparison is None:
            return None
        c = self.comparison
        default = f"compare_{c.a.model}_{c.b.model}_{c.size[0]}x{c.size[1]}.csv"
        name, _ = QFileDialog.getSaveFileName(self, "Export comparison", default, "CSV (*.csv)")
        if not name:
            return None
        if not Path(name).suffix:
            name += ".csv"
        try:
            return self.export_csv(name)
        except (OSError, RuntimeError) as e:
            self.banner.set_message(f"Could not export the comparison to {name}: {e}")
            return None

    def closeEvent(self, event) -> None:
        self.session.comparisons.cancel()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop comparing (before the application quits, which waits for every job)."""
        self.session.comparisons.cancel()
