"""The factorisation panel: what replacing an n×n convolution saves, and where each model does it.

The numbers come from `explorer.core.shapes.factorisation.factorisations` for the channels, n and feature-map
size in the spin boxes; a combo of the models' real branch convolutions fills those from a layer.
Below, one table per compared model lists its blocks' kernels (`kernel_usage`) and the
factorisation each block applies, tinted in the colour of that factorisation's row above.

Signals
-------
FactorisationPanel.numbers_changed()   the factorisation table was recomputed
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from explorer.core.shapes.factorisation import (
    SEQUENTIAL,
    SIDE_BY_SIDE,
    STACKED,
    UNFACTORISED,
    applied_factorisations,
    branch_convs,
    factorisations,
    kernel_usage,
)
from explorer.core.text import MULT_ADDS, MULTIPLY_ADDS, fmt_branch, fmt_count, fmt_fraction, fmt_int, fmt_kernel

if TYPE_CHECKING:
    from explorer.core.graph.blockgraph import BlockGraph
    from explorer.core.shapes.factorisation import BranchConv, Factorisation

#: Translucent tints (readable over light and dark bases), one per kind of factorisation.
FAMILY_COLOURS = {
    STACKED: QColor(66, 133, 244, 90),
    SEQUENTIAL: QColor(52, 168, 83, 90),
    SIDE_BY_SIDE: QColor(171, 71, 188, 90),
    UNFACTORISED: QColor(255, 179, 0, 110),
}
#: Item data role holding the factorisation families a usage cell shows (tuple of str).
FAMILY_ROLE = Qt.ItemDataRole.UserRole + 1

TABLE_COLUMNS = ("Original", "Factorised", "Saving", "Params", "Params factorised", MULT_ADDS.capitalize(),
                 f"{MULT_ADDS.capitalize()} factorised")
USAGE_COLUMNS = ("Block", "Kernels used", "Factorisation applied")


def _kernels_used(counter) -> str:
    """Counter({(1, 1): 4, (5, 5): 1}) → '1×1 ×4, 5×5' (largest kernels first)."""
    items = sorted(counter.items(), key=lambda kv: (-kv[0][0] * kv[0][1], kv[0]))
    return ", ".join(fmt_kernel(k) + (f" ×{c}" if c > 1 else "") for k, c in items)


def _row_family(row: int) -> str:
    """The first row of `factorisations()` stacks two 3×3, the others put 1×n and n×1 in sequence."""
    return STACKED if row == 0 else SEQUENTIAL


class FactorisationPanel(QWidget):
    """Spin boxes for the channels, n and the feature map; the savings table; per-model usage tables."""

    numbers_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._graphs: list[BlockGraph] = []
        self._convs: list[BranchConv] = []
        self._conv_models: list[str] = []
        self._input_size = (224, 224)
        self._factorisations: list[Factorisation] = []
        self._touched = False  # a layer was chosen or a number edited: set_graphs keeps what the person chose

        self.cin_box = self._spin(1, 8192, 192, "input channels of the convolution")
        self.cout_box = self._spin(1, 8192, 192, "output channels (the factorised pair keeps this width)")
        self.n_box = self._spin(2, 15, 7, "n of the n×n kernel factorised into 1×n + n×1")
        self.h_box = self._spin(1, 4096, 224, "height of the feature map the convolution runs on")
        self.w_box = self._spin(1, 4096, 224, "width of the feature map the convolution runs on")
        self.layer_combo = QComboBox(self)
        self.layer_combo.setToolTip("Take the channels, n and feature-map size from a real convolution of the"
                                    " compared models' blocks")
        self.layer_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.layer_combo.setMinimumContentsLength(40)
        self.layer_combo.activated.connect(self.pick_layer)

        controls = QFormLayout()
        channels = QHBoxLayout()
        channels.addWidget(self.cin_box)
        channels.addWidget(QLabel("→"))
        channels.addWidget(self.cout_box)
        channels.addStretch(1)
        controls.addRow("Channels in → out", channels)
        n_row = QHBoxLayout()
        n_row.addWidget(self.n_box)
        n_row.addStretch(1)
        controls.addRow("n (for n×n)", n_row)
        fmap = QHBoxLayout()
        fmap.addWidget(self.h_box)
        fmap.addWidget(QLabel("×"))
        fmap.addWidget(self.w_box)
        fmap.addStretch(1)
        controls.addRow("Feature map H × W", fmap)
        controls.addRow("From a real layer", self.layer_combo)

        self.table = QTableWidget(0, len(TABLE_COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(TABLE_COLUMNS))
        self._setup_table(self.table)
        self.caption = QLabel(self)
        self.caption.setWordWrap(True)

        top = QVBoxLayout()
        top.addLayout(controls)
        top.addWidget(self.caption)
        top.addWidget(self.table)

        self.usage_box = QGroupBox("Where each model uses which", self)
        usage = QVBoxLayout(self.usage_box)
        legend = QHBoxLayout()
        for family, text in ((STACKED, "5×5 → two 3×3"), (SEQUENTIAL, "n×n → 1×n + n×1"),
                             (SIDE_BY_SIDE, "n×n → 1×n ‖ n×1 (side by side)"),
                             (UNFACTORISED, "5×5 or larger kept")):
            c = FAMILY_COLOURS[family]
            chip = QLabel(text, self.usage_box)
            chip.setStyleSheet(f"QLabel {{ background: rgba({c.red()}, {c.green()}, {c.blue()}, {c.alpha()});"
                               " padding: 2px 6px; border-radius: 3px; }")
            legend.addWidget(chip)
        legend.addStretch(1)
        usage.addLayout(legend)
        self.usage_layout = QHBoxLayout()
        usage.addLayout(self.usage_layout, 1)
        self.usage_tables: dict[str, QTableWidget] = {}

        box = QVBoxLayout(self)
        box.addLayout(top)
        box.addWidget(self.usage_box, 1)
        for b in (self.cin_box, self.cout_box, self.n_box, self.h_box, self.w_box):
            b.valueChanged.connect(self._on_edited)
        self._recompute()

    def _spin(self, lo: int, hi: int, value: int, tip: str) -> QSpinBox:
        box = QSpinBox(self)
        box.setRange(lo, hi)
        box.setValue(value)
        box.setToolTip(tip)
        box.setKeyboardTracking(False)
        return box

    @staticmethod
    def _setup_table(t: QTableWidget) -> None:
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setWordWrap(False)
        t.verticalHeader().hide()
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)

    # -- state -----------------------------------------------------------------------------------

    def values(self) -> tuple[int, int, int, tuple[int, int]]:
        """(cin, cout, n, (h, w)) as set in the spin boxes."""
        return (self.cin_box.value(), self.cout_box.value(), self.n_box.value(),
                (self.h_box.value(), self.w_box.value()))

    def set_values(self, cin: int | None = None, cout: int | None = None, n: int | None = None,
                   size: tuple[int, int] | None = None) -> None:
        """Set any of the spin boxes at once (one recomputation)."""
        boxes = (self.cin_box, self.cout_box, self.n_box, self.h_box, self.w_box)
        for b in boxes:
            b.blockSignals(True)
        for box, v in ((self.cin_box, cin), (self.cout_box, cout), (self.n_box, n),
                       (self.h_box, size and size[0]), (self.w_box, size and size[1])):
            if v is not None:
                box.setValue(v)
        for b in boxes:
            b.blockSignals(False)
        self._recompute()

    def convs(self) -> list[BranchConv]:
        """The real layers the combo offers (index i + 1 in the combo)."""
        return list(self._convs)

    def set_graphs(self, graphs: list[BlockGraph], input_size: tuple[int, int]) -> None:
        """The compared models' graphs and the network's input size (the default feature map).

        A layer chosen before stays chosen, its feature map following the new input size.
        """
        current = self.layer_combo.currentIndex()
        chosen = self._conv_key(current - 1) if current > 0 else None
        self._graphs = list(graphs)
        self._input_size = tuple(input_size)
        self._convs, self._conv_models = [], []
        for g in dict.fromkeys(graphs):
            convs = branch_convs(g, self._input_size)
            self._convs += convs
            self._conv_models += [g.name] * len(convs)
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItem("(choose a layer)")
        for c, model in zip(self._convs, self._conv_models):
            self.layer_combo.addItem(f"{model} · {c.describe()}", c.layer)
        self.layer_combo.blockSignals(False)
        again = next((i for i in range(len(self._convs)) if self._conv_key(i) == chosen), None)
        if again is None and not self._touched and self._convs:
            again = 0  # at first, a real layer of the first model (its map), not a convolution on the input image
        if again is not None:
            self.pick_layer(again + 1, touched=self._touched)
        else:
            self.set_values(size=self._input_size)
        self._fill_usage()

    def _conv_key(self, i: int) -> tuple[str, str]:
        return self._conv_models[i], self._convs[i].layer

    def pick_layer(self, index: int, touched: bool = True) -> None:
        """Fill cin, cout, n and the feature map from the combo's layer `index` (0: none)."""
        self._touched = touched
        self.layer_combo.setCurrentIndex(index)
        if index <= 0 or index > len(self._convs):
            return
        c = self._convs[index - 1]
        self.set_values(c.in_channels, c.out_channels, c.n, c.map_size or self._input_size)
        self.layer_combo.setCurrentIndex(index)

    def _on_edited(self, *_) -> None:
        self._touched = True
        self.layer_combo.setCurrentIndex(0)  # the numbers no longer are the chosen layer's
        self._recompute()

    # -- tables ----------------------------------------------------------------------------------

    def _recompute(self) -> None:
        cin, cout, n, size = self.values()
        self._factorisations = factorisations(cin, cout, size, n)
        t = self.table
        t.setRowCount(len(self._factorisations))
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        for row, f in enumerate(self._factorisations):
            orig = " + ".join(fmt_kernel(k) for k in f.original)
            repl = " + ".join(fmt_kernel(k) for k in f.replacement)
            texts = (orig, repl, fmt_fraction(f.saving), fmt_count(f.params_original),
                     fmt_count(f.params_replacement), fmt_count(f.macs_original),
                     fmt_count(f.macs_replacement))
            tint = FAMILY_COLOURS[_row_family(row)]
            for col, text in enumerate(texts):
                item = QTableWidgetItem(text)
                if col >= 2:
                    item.setTextAlignment(right)
                if col == 1:
                    item.setBackground(tint)
                    item.setToolTip(f.name)
                elif col >= 3:
                    exact = (f.params_original, f.params_replacement, f.macs_original, f.macs_replacement)[col - 3]
                    item.setToolTip(fmt_int(exact))
                t.setItem(row, col, item)
        t.resizeRowsToContents()
        # Exactly as tall as its rows: the usage tables below get the rest of the panel.
        t.setFixedHeight(t.horizontalHeader().sizeHint().height() + sum(t.rowHeight(r) for r in range(t.rowCount()))
                         + 2 * t.frameWidth())
        h, w = size
        self.caption.setText(
            f"A {cin}→{cout} convolution on a {h}×{w} feature map (stride 1, “same” padding, no bias) against"
            f" its factorisation, whose first layer maps {cin}→{cout} and the next {cout}→{cout};"
            f" {MULTIPLY_ADDS} per image. The paper's 28 % and 33 % hold at equal width (in = out).")
        self.numbers_changed.emit()

    def _fill_usage(self) -> None:
        for t in self.usage_tables.values():
            self.usage_layout.removeWidget(t.parentWidget())
            t.parentWidget().deleteLater()
        self.usage_tables = {}
        for g in self._graphs:
            if g.name in self.usage_tables:
                continue
            holder = QWidget(self.usage_box)
            lay = QVBoxLayout(holder)
            lay.setContentsMargins(0, 0, 0, 0)
            title = QLabel(g.name, holder)
            bold = QFont(title.font())
            bold.setBold(True)
            title.setFont(bold)
            t = QTableWidget(0, len(USAGE_COLUMNS), holder)
            t.setHorizontalHeaderLabels(list(USAGE_COLUMNS))
            self._setup_table(t)
            t.horizontalHeader().setStretchLastSection(True)
            usage = kernel_usage(g)
            blocks = [b for b in g.blocks() if not b.training_only]
            t.setRowCount(len(blocks))
            for row, node in enumerate(blocks):
                applied = applied_factorisations(node)
                t.setItem(row, 0, QTableWidgetItem(node.name))
                t.setItem(row, 1, QTableWidgetItem(_kernels_used(usage[node.name])))
                labels: list[str] = []
                for f in applied:
                    if f.label not in labels:
                        labels.append(f.label)
                item = QTableWidgetItem(", ".join(labels) or "—")
                families = tuple(dict.fromkeys(f.family for f in applied))
                item.setData(FAMILY_ROLE, families)
                if families:
                    # A block that factorises one branch and keeps a 5×5 in another shows the former.
                    main = next((f for f in families if f != UNFACTORISED), families[0])
                    item.setBackground(FAMILY_COLOURS[main])
                    item.setToolTip("\n".join(f"{fmt_branch(f.branch_index)}: {f.label}" for f in applied))
                t.setItem(row, 2, item)
            lay.addWidget(title)
            lay.addWidget(t)
            self.usage_layout.addWidget(holder)
            self.usage_tables[g.name] = t
