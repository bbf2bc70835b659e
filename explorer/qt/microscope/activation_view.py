"""Per-branch activations of one Inception block: every branch side by side, each a mosaic of its
channels' feature maps, with per-branch statistics and an enlarged, overlaid channel.

Everything shown comes from a `Capture` (the tensors of the forward that classified the image):
switching blocks, sort order or scale never runs the network again. Only the branches of the
block on screen are copied to the CPU.

Signals
-------
block_changed(str)                    the block now shown
channel_selected(str, int, int)       block, branch index, channel index (the tensor's own index)
export_failed(str)                    an export could not be written
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from explorer.core.text import KNOCKOUT_MODE_WORDS, branch_number, fmt_branch, fmt_fraction
from explorer.qt.microscope.branch_mosaics import BranchMosaics
from explorer.qt.microscope.channel_detail import ChannelDetail
from explorer.qt.result_view import export_layout_png

_NEXT_KEYS = (Qt.Key.Key_Right, Qt.Key.Key_PageDown)
_PREVIOUS_KEYS = (Qt.Key.Key_Left, Qt.Key.Key_PageUp)


@dataclass
class ActivationViewState:
    """What the view shows; every control binds one attribute."""

    block: str | None = None  #: the block on screen
    scale: str = "shared"  #: "shared" (one scale per branch) or "channel" (each map stretched to 0..1)
    order: str = "index"  #: "index" (tensor order) or "mean" (highest mean activation first)
    selected: tuple[int, int] | None = None  #: (branch, channel) enlarged in the detail area
    opacity: float = 0.8  #: of the enlarged map over the input image


class ActivationView(QWidget):
    """The branches of one block side by side; click a channel to enlarge it over the image.

    Call `set_capture(graph, capture, image_rgb)` after each classification and `show_block(name)`
    when the user selects a block; Right/PgDn and Left/PgUp step through the blocks.
    """

    block_changed = Signal(str)
    channel_selected = Signal(str, int, int)
    export_failed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.state = ActivationViewState()
        self.graph = None
        self.capture = None
        self.off = None  # the branches switched off in the network of `capture` (a ResultKey's `off`)
        self.image_rgb: np.ndarray | None = None
        self._maps: list = []  # FeatureMaps per branch of the block on screen (None: not captured)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        bar = self._build_controls()
        self.grid = BranchMosaics()
        self.message = QLabel("Classify an image to see what each branch computes.")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.detail_panel = ChannelDetail(self.state.opacity)
        # The detail's parts, under the names the window and the tests use.
        self.detail, self.detail_title = self.detail_panel.detail, self.detail_panel.detail_title
        self.detail_item, self.overlay_item = self.detail_panel.detail_item, self.detail_panel.overlay_item
        self.image_item, self.opacity_slider = self.detail_panel.image_item, self.detail_panel.opacity_slider
        self._arrange(bar, self.detail_panel)
        self._connect()
        self._update_enabled()

    # ------------------------------------------------------------------ construction

    def _build_controls(self) -> QHBoxLayout:
        """The row of controls: block, previous and next, scale, order and the export menu."""
        self.block_combo = QComboBox()
        self.block_combo.setToolTip("Block to show (Left/Right or PgUp/PgDn step through the blocks)")
        self.block_combo.setMinimumContentsLength(12)
        self.prev_button = QToolButton(text="◀", toolTip="Previous block (Left / PgUp)")
        self.next_button = QToolButton(text="▶", toolTip="Next block (Right / PgDn)")
        self.scale_combo = QComboBox()
        self.scale_combo.addItem("Shared scale", "shared")
        self.scale_combo.addItem("Per-channel scale", "channel")
        self.scale_combo.setToolTip("Shared: one colour scale for all channels of a branch (compare them); "
                                    "per channel: each map stretched to its own range (see its pattern)")
        self.order_combo = QComboBox()
        self.order_combo.addItem("Channel order", "index")
        self.order_combo.addItem("Sort by mean", "mean")
        self.order_combo.setToolTip("Order of the maps in each branch: tensor order or highest mean first")
        self.export_button = QToolButton(text="Export", toolTip="Save the maps as PNG or the statistics as CSV")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        menu.addAction("Activation grid (PNG)…", lambda: self._export_dialog("grid"))
        menu.addAction("Enlarged map (PNG)…", lambda: self._export_dialog("map"))
        menu.addAction("Branch statistics (CSV)…", lambda: self._export_dialog("csv"))
        self.export_button.setMenu(menu)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        for w in (QLabel("Block"), self.block_combo, self.prev_button, self.next_button, self.scale_combo,
                  self.order_combo):
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(self.export_button)
        return bar

    def _arrange(self, bar: QHBoxLayout, detail_panel: QWidget) -> None:
        """The controls above the mosaics, which sit beside the detail in a splitter: a dock across the bottom
        of the window is wide and short, and side by side both get its whole height (stacked, a 1280×800
        laptop drew the mosaics ~75 px tall and the enlarged channel ~30 px)."""
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.message)
        tl.addWidget(self.grid, 1)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(top)
        self.splitter.addWidget(detail_panel)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.splitter, 1)

    def _connect(self) -> None:
        """The controls to the view's setters; the arrow keys of the graphics views to the blocks."""
        # Graphics views scroll on arrow keys; the view steps through blocks instead.
        for view in (self.grid, self.detail):
            view.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
            view.installEventFilter(self)
        self.block_combo.currentIndexChanged.connect(self._on_block_combo)
        self.prev_button.clicked.connect(self.previous_block)
        self.next_button.clicked.connect(self.next_block)
        self.scale_combo.currentIndexChanged.connect(lambda: self.set_scale(self.scale_combo.currentData()))
        self.order_combo.currentIndexChanged.connect(lambda: self.set_order(self.order_combo.currentData()))
        self.detail_panel.opacity_changed.connect(self.set_opacity)
        self.grid.tile_clicked.connect(self._on_tile)

    # ------------------------------------------------------------------ public API

    def set_capture(self, graph, capture, image_rgb: np.ndarray | None = None, off: tuple | None = None) -> None:
        """Show the activations of a new forward; keeps the block on screen if the graph has it. `off`: the
        branches switched off in the network that made it and the mode (a ResultKey's `off`), said in their titles."""
        self.graph, self.capture, self.off = graph, capture, off
        self.image_rgb = None if image_rgb is None else np.ascontiguousarray(image_rgb)
        blocks = self.blocks()
        self.block_combo.blockSignals(True)
        self.block_combo.clear()
        for name in blocks:
            self.block_combo.addItem(name)
        self.block_combo.blockSignals(False)
        self.detail_panel.set_image(self.image_rgb)
        block = self.state.block if self.state.block in blocks else (blocks[0] if blocks else None)
        self.state.block = None
        self.state.selected = None
        if block is not None:
            self.show_block(block)
        self._update_enabled()

    def clear(self) -> None:
        """Forget the capture (a new model was loaded, say)."""
        self.graph = self.capture = self.image_rgb = self.off = None
        self.state.block = self.state.selected = None
        self.block_combo.clear()
        self.grid.clear_columns()
        self.detail_panel.clear_map()
        self.message.setText("Classify an image to see what each branch computes.")
        self.message.show()
        self._update_enabled()

    def blocks(self) -> list[str]:
        """Blocks with captured branches, in data-flow order."""
        if self.graph is None or self.capture is None:
            return []
        return [b.name for b in self.graph.blocks() if b.name in self.capture.branches]

    def show_block(self, name: str) -> None:
        """Show block `name`'s branches (no forward: from the captured tensors)."""
        if self.capture is None or name not in self.capture.branches:
            raise KeyError(f"no captured activations for {name!r}")
        changed = name != self.state.block
        self.state.block = name
        if changed:
            self.state.selected = None
        self.block_combo.blockSignals(True)
        self.block_combo.setCurrentIndex(self.block_combo.findText(name))
        self.block_combo.blockSignals(False)
        self._render_block()
        self._update_enabled()
        if changed:
            self.block_changed.emit(name)

    def next_block(self) -> None:
        self._step(+1)

    def previous_block(self) -> None:
        self._step(-1)

    def set_scale(self, scale: str) -> None:
        """"shared" or "channel" colour scale for the mosaics."""
        if scale not in ("shared", "channel"):
            raise ValueError(f"unknown scale {scale!r}")
        self.state.scale = scale
        self._sync_combo(self.scale_combo, scale)
        self.grid.show_maps(self._maps, self.state.scale, self.state.selected)

    def set_order(self, order: str) -> None:
        """"index" or "mean" order of the maps in each branch."""
        if order not in ("index", "mean"):
            raise ValueError(f"unknown order {order!r}")
        if order == self.state.order:
            return
        self.state.order = order
        self._sync_combo(self.order_combo, order)
        if self.state.block is not None:
            self._render_block()

    def set_opacity(self, opacity: float) -> None:
        self.state.opacity = min(max(float(opacity), 0.0), 1.0)
        self.detail_panel.set_opacity(self.state.opacity)

    def select_channel(self, branch: int, channel: int) -> None:
        """Enlarge `channel` (the tensor's index) of `branch` and overlay it on the image."""
        if self.state.block is None:
            raise RuntimeError("no block shown")
        fm = self._maps[branch] if 0 <= branch < len(self._maps) else None
        if fm is None:
            raise KeyError(f"{self.state.block} has no captured branch_index {branch}")
        hits = np.flatnonzero(fm.channels == channel)
        if not len(hits):
            raise KeyError(f"branch_index {branch} has no channel {channel}")
        self.state.selected = (branch, int(channel))
        self._render_detail()
        self.channel_selected.emit(self.state.block, branch, int(channel))

    # -- read-only views of what is on screen (for the window)

    def detail_map(self) -> np.ndarray | None:
        """The raw (unscaled) map in the detail area, at the branch's resolution."""
        return None if self.detail_item.image is None else np.array(self.detail_item.image)

    # -- exports

    def export_grid_png(self, path: str | Path, width: int = 1600) -> Path:
        """The branch mosaics with their titles and statistics, `width` pixels wide."""
        return export_layout_png(self.grid.ci, path, width)

    def export_map_png(self, path: str | Path, width: int = 1000) -> Path:
        """The enlarged map beside its overlay on the image."""
        if self.state.selected is None:
            raise ValueError("no channel selected: click a map first")
        return export_layout_png(self.detail.ci, path, width)

    def export_stats_csv(self, path: str | Path) -> Path:
        """Per-branch statistics of every captured block."""
        from explorer.core.microscope.activations import branch_stats, stats_csv

        if self.capture is None:
            raise ValueError("nothing captured yet")
        path = Path(path)
        path.write_text(stats_csv({b: branch_stats(self.capture, self.graph, b) for b in self.blocks()}),
                        encoding="utf-8")
        return path

    # ------------------------------------------------------------------ rendering

    def _render_block(self) -> None:
        from explorer.core.microscope.activations import branch_stats, feature_maps

        block = self.state.block
        node = self.graph.node(block)
        tensors = self.capture.branches[block]
        stats = {s.index: s for s in branch_stats(self.capture, self.graph, block)}
        self._maps = [None if t is None else feature_maps(t, order=self.state.order) for t in tensors]
        self.message.hide()
        titles, lines = [], []
        for k, (branch, fm) in enumerate(zip(node.branches, self._maps)):
            off = self.off
            switched = f" · OFF ({KNOCKOUT_MODE_WORDS[off[1]]})" if off and (block, k) in off[0] else ""
            titles.append(f"{branch_number(k)} · {branch.label} · {branch.out_channels} ch{switched}")
            if fm is None:
                lines.append("not captured")
            else:
                s = stats[k]
                lines.append(f"mean {s.mean:.3g} · max {s.max:.3g} · zeros {fmt_fraction(s.zero_fraction, 0)} · "
                             f"energy {fmt_fraction(s.energy_share, 0)}")
        self.grid.set_branches(titles, lines)
        self.grid.show_maps(self._maps, self.state.scale, self.state.selected)
        if self.state.selected is not None:
            self._render_detail()
        else:
            self.detail_panel.clear_map()

    def _render_detail(self) -> None:
        branch, channel = self.state.selected
        fm = self._maps[branch]
        m = fm.maps[int(np.flatnonzero(fm.channels == channel)[0])]
        label = self.graph.node(self.state.block).branches[branch].label
        heading = f"{self.state.block} · {fmt_branch(branch, label)} · channel {channel}"
        self.detail_panel.show_map(m, heading, self.image_rgb, self.state.opacity)
        self.grid.mark_selection(self._maps, self.state.selected)

    # ------------------------------------------------------------------ events

    def _on_tile(self, branch: int, position: int) -> None:
        self.select_channel(branch, int(self._maps[branch].channels[position]))

    def _on_block_combo(self, index: int) -> None:
        if index >= 0:
            self.show_block(self.block_combo.itemText(index))

    def _step(self, delta: int) -> None:
        blocks = self.blocks()
        if not blocks:
            return
        i = blocks.index(self.state.block) if self.state.block in blocks else -delta
        j = min(max(i + delta, 0), len(blocks) - 1)
        if blocks[j] != self.state.block:
            self.show_block(blocks[j])

    def keyPressEvent(self, ev):
        if self._step_key(ev.key()):
            ev.accept()
        else:
            super().keyPressEvent(ev)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        if ev.type() == QEvent.Type.KeyPress and self._step_key(ev.key()):
            return True
        return super().eventFilter(obj, ev)

    def _step_key(self, key) -> bool:
        if key in _NEXT_KEYS:
            self.next_block()
        elif key in _PREVIOUS_KEYS:
            self.previous_block()
        else:
            return False
        return True

    def _update_enabled(self) -> None:
        blocks = self.blocks()
        i = blocks.index(self.state.block) if self.state.block in blocks else -1
        self.prev_button.setEnabled(i > 0)
        self.next_button.setEnabled(0 <= i < len(blocks) - 1)
        self.block_combo.setEnabled(bool(blocks))
        self.export_button.setEnabled(bool(blocks))

    @staticmethod
    def _sync_combo(combo: QComboBox, value: str) -> None:
        combo.blockSignals(True)
        combo.setCurrentIndex(combo.findData(value))
        combo.blockSignals(False)

    def _export_dialog(self, what: str) -> None:
        block = self.state.block or "activations"
        name, filt = {
            "grid": (f"activations_{block}.png", "PNG image (*.png)"),
            "map": (f"activations_{block}_map.png", "PNG image (*.png)"),
            "csv": ("branch_stats.csv", "CSV (*.csv)"),
        }[what]
        path, _ = QFileDialog.getSaveFileName(self, "Export", name, filt)
        if not path:
            return
        try:
            {"grid": self.export_grid_png, "map": self.export_map_png, "csv": self.export_stats_csv}[what](path)
        except (OSError, ValueError) as e:
            self.export_failed.emit(str(e))
