"""One block's knock-outs: a bar per branch, how much the target's probability changes when that branch alone is
switched off (its output zeros, or its per-channel mean), with the branches whose loss changes the top-1 marked.

The numbers are the session's (`state.knockouts`, explorer.core.attribution.knockout.BranchEffects)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QStackedLayout, QWidget

from explorer.core.text import branch_number, fmt_fraction
from explorer.qt.result_view import short_label

#: Bars of knock-outs that lower the probability, and of those that raise it.
DOWN, UP = "#D55E00", "#0072B2"


class KnockoutChart(QWidget):
    """Δ p(target) per branch of one block, from the image's BranchEffects."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = pg.PlotWidget(background=None)
        item = self.plot.getPlotItem()
        item.setMenuEnabled(False)
        item.setMouseEnabled(x=False, y=False)
        item.hideButtons()
        item.showGrid(y=True, alpha=0.25)
        item.setLabel("left", "Δ p(target)")
        item.getAxis("left").enableAutoSIPrefix(False)
        self.bars: pg.BarGraphItem | None = None
        self.block: str | None = None
        self.deltas: list[float] = []
        self.placeholder = QLabel("Each branch's knock-out appears here once computed (Knock out each).", self)
        self.placeholder.setWordWrap(True)
        self.placeholder.setEnabled(False)
        self.stack = QStackedLayout(self)
        self.stack.setContentsMargins(0, 0, 0, 0)
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.plot)

    def set_block(self, block: str, effects, labels: list[str]) -> bool:
        """Show `block`'s knock-outs from `effects` (BranchEffects); False (and the placeholder) when it has none."""
        mine = sorted((e for e in effects.effects if e.block == block), key=lambda e: e.branch_index)
        if not mine:
            self.clear()
            return False
        if self.bars is not None:
            self.plot.removeItem(self.bars)
        self.block, self.deltas = block, [e.delta_prob for e in mine]
        x = np.array([e.branch_index for e in mine])
        self.bars = pg.BarGraphItem(x=x, height=np.asarray(self.deltas, float), width=0.7, pen=None,
                                    brushes=[pg.mkBrush(DOWN if d < 0 else UP) for d in self.deltas])
        self.plot.addItem(self.bars)
        ticks = []
        for e in mine:
            label = labels[e.branch_index] if e.branch_index < len(labels) else ""
            mark = " ⟲ top-1" if e.top1_changed else ""
            ticks.append((e.branch_index, f"{branch_number(e.branch_index)} · {short_label(label)}{mark}"))
        self.plot.getAxis("bottom").setTicks([ticks])
        lo, hi = min(0.0, *self.deltas), max(0.0, *self.deltas)
        pad = 0.1 * max(hi - lo, 1e-6)
        self.plot.setYRange(lo - pad, hi + pad, padding=0)
        self.plot.setXRange(-0.6, max(x) + 0.4, padding=0)
        self.plot.setTitle(f"{block}: a branch off")
        self.plot.setToolTip(f"Each branch of {block} switched off on its own ({effects.mode}): the change in the "
                             f"probability of class {effects.target}, which was {fmt_fraction(effects.prob)}; "
                             "⟲ marks a knock-out that changes the top-1 class")
        self.stack.setCurrentWidget(self.plot)
        return True

    def clear(self) -> None:
        if self.bars is not None:
            self.plot.removeItem(self.bars)
        self.bars, self.block, self.deltas = None, None, []
        self.stack.setCurrentWidget(self.placeholder)
