"""What a channel looks for: its feature visualisation, its top dataset crops and its map on the image.

`ChannelPanel` follows the activation view: a clicked channel is shown three ways side by side; "Branch
grid" shows the first channels of the selected branch as a grid of visualisations. Work runs on the
image docks' one job runner (slots "featurevis" and "examples"), with progress, Cancel, and errors in
the panel. Results are cached on disk by the engine (explorer.core.microscope.featurevis, explorer.core.microscope.examples).

The chosen channel is the window's `ExplorerState.channel`: the state drops it with the model or weights
that had it, and the panel follows (its jobs stop, its title and pictures go).

Signals
-------
failed(str)   a job failed; the message is for the window's status line
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QSpinBox, QVBoxLayout, QWidget)

from explorer.core.session import events as ev
from explorer.core.session.microscope import GRID_CHANNELS
from explorer.core.session.session import Session
from explorer.core.session.state import ChannelChoice, ExplorerState
from explorer.core.text import fmt_branch
from explorer.qt.result_view import array_to_qimage, coloured
from explorer.qt.workers import Lanes

__all__ = ["GRID_CHANNELS", "ChannelPanel", "ChannelPanelState"]
TILE = 160
#: The title while no channel is chosen.
PROMPT = "Click a channel in Activations to see what it looks for."


@dataclass
class ChannelPanelState:
    """What the panel shows: the selected channel and the optimisation settings."""

    block: str | None = None
    branch: int | None = None  # 0-based
    channel: int | None = None
    steps: int = 128
    size: int = 128


def to_pixmap(rgb: np.ndarray, side: int = TILE) -> QPixmap:
    """An (h, w, 3) uint8 array as a pixmap scaled to fit side × side (nearest: crops stay sharp)."""
    return QPixmap.fromImage(array_to_qimage(rgb[..., :3])).scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                         Qt.TransformationMode.SmoothTransformation)


def grid(images: list[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
    """Equal-sized RGB images on a white grid, row by row."""
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = im
    return out


def heat_rgb(m: np.ndarray) -> np.ndarray:
    """A feature map as an RGB picture (pyqtgraph's viridis, scaled to the map's range)."""
    m = np.nan_to_num(np.asarray(m, dtype=np.float64))
    lo, hi = float(m.min()), float(m.max())
    return coloured((m - lo) / (hi - lo) if hi > lo else np.zeros_like(m), "viridis")


class ChannelPanel(QWidget):
    """The selected channel's feature visualisation, dataset examples and map, side by side."""

    failed = Signal(str)

    def __init__(self, parent=None, *, runner: Lanes, session: Session | None = None,
                 explorer_state: ExplorerState | None = None):
        super().__init__(parent)
        self.state = ChannelPanelState()
        #: Runs the visualisations and example look-ups, holds the chosen channel (the window's session when
        #: given; a panel on its own makes one on its runner).
        self.session = session if session is not None else Session(
            explorer_state if explorer_state is not None else ExplorerState(), runner.runner, prepares_classifier=False)
        self.explorer_state = self.session.state
        self.microscope = self.session.microscope
        self.runner = runner
        self._ready = False  # a model to look through is there
        self._waiting = False  # a channel was chosen while the panel was hidden: run it when shown
        self.on_screen = True  # False while its dock is a tab behind another (ImageDocks says so)
        self.folder: str | None = None

        self.title = QLabel(PROMPT)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #8a6d00")
        self.vis_label, self.examples_label, self.map_label = QLabel(), QLabel(), QLabel()
        boxes = QHBoxLayout()
        for caption, label in (("Feature visualisation", self.vis_label), ("Top dataset crops", self.examples_label),
                               ("Map on this image", self.map_label)):
            col = QVBoxLayout()
            col.addWidget(QLabel(f"<b>{caption}</b>"))
            label.setMinimumSize(TILE, TILE)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            col.addWidget(label, 1)
            boxes.addLayout(col)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(8, 2048)
        self.steps_spin.setValue(self.state.steps)
        self.steps_spin.setPrefix("steps ")
        self.steps_spin.valueChanged.connect(lambda v: setattr(self.state, "steps", v))
        self.index_button = QPushButton("Index folder…")
        self.index_button.clicked.connect(self._choose_folder)
        self.grid_button = QPushButton("Branch grid")
        self.grid_button.clicked.connect(self.show_branch_grid)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(200)
        self.status = QLabel("")
        bar = QHBoxLayout()
        for w in (self.steps_spin, self.grid_button, self.index_button, self.progress, self.cancel_button):
            bar.addWidget(w)
        bar.addWidget(self.status, 1)
        self.grid_label = QLabel()
        self.grid_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.note)
        layout.addLayout(bar)
        layout.addLayout(boxes, 1)
        layout.addWidget(self.grid_label)
        self._busy(False)
        self.explorer_state.connect("channel", self._follow_channel)
        self.session.on(ev.ChannelVisualised, self._on_visualised)
        self.session.on(ev.ExamplesFound, self._on_examples)

    # -- model and selection ---------------------------------------------------------------

    def set_model(self, capture_model, graph, loaded) -> None:
        """A model is ready (`loaded`, a LoadedModel, with its block graph): the session's, or `capture_model` (its
        CPU CaptureModel) when given."""
        from explorer.core.microscope.featurevis import BN_NOTE, is_batch_normalised

        self.cancel()
        self.microscope.use(capture_model, graph, loaded)
        self._ready = loaded is not None
        self.note.setText(f"Note: {BN_NOTE}." if is_batch_normalised(loaded.module) else "")
        for label in (self.vis_label, self.examples_label, self.map_label, self.grid_label):
            label.clear()

    def show_channel(self, block: str, branch: int, channel: int, feature_map: np.ndarray | None = None) -> None:
        """Show `channel` of `block`'s branch (0-based): its map now, its visualisation and examples when ready."""
        self.explorer_state.channel = ChannelChoice(block, branch, channel)  # → _follow_channel
        if feature_map is not None:
            self.map_label.setPixmap(to_pixmap(heat_rgb(feature_map)))
        self._run_channel()

    def _follow_channel(self, choice: ChannelChoice | None) -> None:
        """The state's channel changed: show its title; None (dropped with the model or weights that had it):
        stop its jobs and show nothing of it."""
        if choice is None:
            self.cancel()
            self._waiting = False
            self.state.block = self.state.branch = self.state.channel = None
            self.title.setText(PROMPT)
            self.status.setText("")
            for label in (self.vis_label, self.examples_label, self.map_label, self.grid_label):
                label.clear()
            return
        self.state.block, self.state.branch, self.state.channel = choice.block, choice.branch_index, choice.channel
        self.title.setText(f"<b>{choice.block}</b> {fmt_branch(choice.branch_index)}, channel {choice.channel}")

    def _run_channel(self) -> None:
        """Visualise the chosen channel and look up its examples, once the panel is on screen: a channel
        clicked while the Channel tab is hidden must not keep the image panels' one worker busy."""
        if not self._ready or self.state.block is None:
            return
        if not (self.on_screen and self.isVisible()):
            self._waiting = True
            return
        self._waiting = False
        self._run_visualisation([self.state.channel])
        self._run_examples(None)

    def set_on_screen(self, on_screen: bool) -> None:
        """Whether the panel can be seen (its dock's tab raised); a channel chosen meanwhile runs now."""
        self.on_screen = on_screen
        if on_screen and self._waiting:
            self._run_channel()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if self._waiting:
            self._run_channel()

    def show_branch_grid(self) -> None:
        """The selected branch's first GRID_CHANNELS channels as a grid of visualisations."""
        if self.state.block is None or not self._ready:
            self.status.setText("Click a channel first.")
            return
        self._run_visualisation(None)

    def index_folder(self, folder: str) -> None:
        """Index `folder` for dataset examples (known files are skipped), then show the channel's."""
        self.folder = folder
        self._run_examples(folder)

    def cancel(self) -> None:
        self.microscope.cancel()
        self._busy(False)

    # -- jobs --------------------------------------------------------------------------------

    def _run_visualisation(self, channels) -> None:
        self._busy(True, "Optimising…")
        self._ask(self.microscope.visualise, self.state.block, self.state.branch, channels, self.state.steps,
                  self.state.size, on_progress=self._on_progress)

    def _run_examples(self, folder) -> None:
        if self.state.block is None and folder is None:
            return
        if folder:
            self._busy(True, f"Indexing {folder}…")
        self._ask(self.microscope.examples, self.state.block, self.state.branch if self.state.branch is not None else 0,
                  self.state.channel or 0, folder, on_progress=self._on_progress if folder else None)

    def _ask(self, request, *args, on_progress) -> None:
        try:
            request(*args, on_progress=on_progress, on_end=self._on_end)
        except ValueError as e:
            self._on_failed(str(e))

    def _on_end(self, outcome: str) -> None:
        if outcome == "failed":
            problem = self.explorer_state.problem
            self._on_failed(problem.message if problem is not None else "unknown error")
        elif outcome == "cancelled":
            self._busy(False)

    def _on_visualised(self, event: ev.ChannelVisualised) -> None:
        if event.grid:
            self._on_grid(list(event.visualisations))
            return
        self._show_visualisation(list(event.visualisations))

    def _show_visualisation(self, visualisations) -> None:
        self._busy(False)
        v = visualisations[0]
        self.vis_label.setPixmap(to_pixmap(v.image))
        self.status.setText(f"objective {v.objective:.3g}" + (" (cached)" if v.cached else ""))

    def _on_grid(self, visualisations) -> None:
        self._busy(False)
        pic = grid([v.image for v in visualisations], columns=8)
        pm = to_pixmap(pic, side=8 * 96)
        self.grid_label.setPixmap(pm)
        self.grid_label.setMinimumHeight(pm.height())  # the dock scrolls rather than overlap the boxes above
        self.status.setText(f"{self.state.block} {fmt_branch(self.state.branch or 0)}: channels 0–{len(visualisations) - 1}")

    def _on_examples(self, event: ev.ExamplesFound) -> None:
        report, crops = event.report, event.crops
        self._busy(False)
        if report is not None:
            text = f"{report.indexed} indexed, {report.skipped} already indexed"
            if report.failed:
                text += f", {len(report.failed)} unreadable (first: {report.failed[0][0]}: {report.failed[0][1]})"
            self.status.setText(text)
        shown = [c for c in crops if c is not None]
        if not shown:
            self.examples_label.setText("No dataset examples yet:\nIndex folder… to find them.")
            return
        side = 64
        tiles = [np.asarray(_resize(c, side)) for c in shown]
        self.examples_label.setPixmap(to_pixmap(grid(tiles, columns=3, gap=2), side=TILE + 40))

    def _on_progress(self, done, total) -> None:
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)

    def _on_failed(self, message: str) -> None:
        self._busy(False)
        self.status.setText(message)
        self.failed.emit(message)

    def _busy(self, busy: bool, text: str = "") -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setEnabled(busy)
        if busy:
            self.progress.setRange(0, 0)
            self.status.setText(text)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Index a folder of images")
        if folder:
            self.index_folder(folder)


def _resize(rgb: np.ndarray, side: int):
    from PIL import Image

    return Image.fromarray(rgb).resize((side, side), Image.Resampling.BILINEAR)
