"""The attribution panel's controls: the method, the class to explain, each method's parameters, Run and
Cancel with the progress bar, and the buttons and step counts of the evidence (faithfulness, sanity).

Every control is bound to the session's `AttributionChoices` by name (explorer.qt.bind: both ways, glue's way:
the widgets are a skin over the state), so what runs is read from the state, never back from a widget. Only
the target box is read when asked: its text may be a class typed by hand (explorer.core.attribution.catalogue
`parse_target` finds it).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QCompleter,
    QFormLayout,
    QGridLayout,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from explorer.core.attribution.catalogue import METHOD_NAMES, METHOD_PARAMS, parse_target
from explorer.core.attribution.faithfulness import SANITY_UNCHANGED
from explorer.core.attribution.methods import IG_GAUSS_LEGENDRE_MAX_STEPS, IG_MAX_STEPS
from explorer.core.session.attributions import AttributionChoices
from explorer.core.text import branch_number
from explorer.qt.bind import bind

IG_STEPS_TIP = (f"Integration steps (more: smaller delta). Gauss–Legendre nodes up to {IG_GAUSS_LEGENDRE_MAX_STEPS}"
                " steps, the trapezoid rule above (Gauss–Legendre nodes for thousands of steps take seconds"
                f" to compute, and nothing can be cancelled meanwhile). At most {IG_MAX_STEPS}: every step is"
                " a forward and a backward pass over the image.")


#: Characters a combo box of the form shows when the column is at its narrowest (its list pops up wider).
COMBO_CHARS = 14


class CompactCombo(QComboBox):
    """A combo box that asks for COMBO_CHARS characters of width, not its longest item's, and pops its list up as
    wide as that item (the method names and branch labels made the column of controls 374 px wide)."""

    def __init__(self, parent=None, **kwargs):
        super().__init__(parent, **kwargs)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(COMBO_CHARS)

    def showPopup(self) -> None:  # noqa: N802 - Qt override
        view = self.view()
        view.setMinimumWidth(view.sizeHintForColumn(0) + view.verticalScrollBar().sizeHint().width() + 8)
        super().showPopup()


class AttributionControls(QWidget):
    """Method, target and parameter rows; Run, Cancel and progress; the evidence buttons and step counts.

    The buttons' `clicked` signals are the panel's to connect; every other control writes `state`.
    """

    def __init__(self, state: AttributionChoices, parent=None):
        super().__init__(parent)
        self.state = state
        self.graph = None  # the block graph whose blocks and branches the Grad-CAM rows offer
        self._categories: list[str] = []
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(self._build_form())
        column.addLayout(self._build_buttons())
        self._bind()
        self.populate_targets([])

    def _build_form(self) -> QFormLayout:
        """The method, the target class and every method's parameter rows, in `self.form`."""
        self.method_combo = CompactCombo()
        for m, name in METHOD_NAMES.items():
            self.method_combo.addItem(name, m)
        self.target_combo = CompactCombo()
        self.target_combo.setEditable(True)
        self.target_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.target_combo.setToolTip("Class to explain: the top-1 prediction, or type to search the categories")
        completer = QCompleter(self.target_combo.model(), self.target_combo)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.target_combo.setCompleter(completer)
        p = self.state.params
        self.ig_steps = QSpinBox(minimum=1, maximum=IG_MAX_STEPS, value=p.ig_steps, toolTip=IG_STEPS_TIP)
        self.ig_baseline = CompactCombo(toolTip="Reference image the path starts from")
        for label, key in (("Black image", "black"), ("Zeros (mean colour)", "zero"), ("Blurred image", "blur")):
            self.ig_baseline.addItem(label, key)
        self.internal_batch = QSpinBox(minimum=1, maximum=512, value=p.internal_batch_size,
                                       toolTip="Steps evaluated per forward pass (memory vs. speed)")
        self.occlusion_window = QSpinBox(minimum=2, maximum=512, value=p.occlusion_window, suffix=" px",
                                         toolTip="Side of the square patch that is blanked out")
        self.occlusion_stride = QSpinBox(minimum=1, maximum=512, value=p.occlusion_stride, suffix=" px",
                                         toolTip="Step between patches")
        self.block_combo = CompactCombo(toolTip="Block whose output Grad-CAM weighs")
        self.branch_combo = CompactCombo(toolTip="The whole block's output, or one of its branches")
        self.cam_map = CompactCombo(toolTip="A CAM's positive evidence (as in the papers), or its signed or absolute "
                                 "map: where every weighted activation counts against the class, the positive "
                                 "map is empty")
        for label, key in (("Positive evidence", "positive"), ("Signed", "signed"), ("Absolute", "absolute")):
            self.cam_map.addItem(label, key)
        self.form = QFormLayout()
        self.form.setVerticalSpacing(4)
        self.form.addRow("Method", self.method_combo)
        self.form.addRow("Target", self.target_combo)
        self._rows = {
            "ig_steps": ("Steps", self.ig_steps),
            "ig_baseline": ("Baseline", self.ig_baseline),
            "internal_batch_size": ("Batch", self.internal_batch),
            "occlusion_window": ("Window", self.occlusion_window),
            "occlusion_stride": ("Stride", self.occlusion_stride),
            "block": ("Block", self.block_combo),
            "branch": ("Branch", self.branch_combo),
            "cam_map": ("Map", self.cam_map),
        }
        for label, w in self._rows.values():
            self.form.addRow(label, w)
        return self.form

    def _build_buttons(self) -> QGridLayout:
        """Run and Cancel, the evidence buttons with their step counts, two a row, and the progress bar beside
        Metrics (shown while a job runs)."""
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.faithfulness_button = QPushButton("Faithfulness")
        self.faithfulness_button.setToolTip(
            "Deletion and insertion curves of the map (Petsiuk et al. 2018): the target's probability as its most "
            "important pixels are removed from the image, or added to a blurred copy; pixels in a random order "
            "give the reference")
        self.curve_steps = QSpinBox(minimum=2, maximum=1000, value=self.state.curve_steps, suffix=" steps",
                                    toolTip="Points of each curve after the first: each removes (or adds) "
                                    "1/steps of the pixels")
        self.sanity_button = QPushButton("Sanity check")
        self.sanity_button.setToolTip(
            "Model randomisation (Adebayo et al. 2018): the map again with the top blocks' weights randomised "
            "one after another, and its rank correlation with the original. A map that does not change "
            f"(ρ ≥ {SANITY_UNCHANGED:g}) shows the image, not what the model learned")
        self.sanity_steps = QSpinBox(minimum=1, maximum=20, value=self.state.sanity_steps, suffix=" blocks",
                                     toolTip="Blocks randomised in cascade, from the output down")
        self.metrics_button = QPushButton("Metrics")
        self.metrics_button.setToolTip(
            "SRG, ROAD, smooth MPRT and efficient MPRT of the map, each over noise seeds as an interval beside its "
            "random reference; a verdict only where the interval clears it (SRG takes the curves' steps). The "
            "command line's counts: seconds on the demo model, a minute or more for GoogLeNet at 224 px on a CPU")
        # The progress bar beside Metrics while a job runs. Rows 2 px apart (the form's 4 px): with Metrics' row at
        # the default 6 px the column asked 306 px of a laptop's 290 px dock.
        grid = QGridLayout()
        grid.setVerticalSpacing(2)
        for row, pair in enumerate(((self.run_button, self.cancel_button),
                                    (self.faithfulness_button, self.curve_steps),
                                    (self.sanity_button, self.sanity_steps), (self.metrics_button, self.progress))):
            for col, w in enumerate(pair):
                grid.addWidget(w, row, col)
        return grid

    def _bind(self) -> None:
        """Every control shows its choice and writes the person's edits into the state (explorer.qt.bind)."""
        for name, control in (("params.ig_steps", self.ig_steps), ("params.internal_batch_size", self.internal_batch),
                              ("params.occlusion_window", self.occlusion_window),
                              ("params.occlusion_stride", self.occlusion_stride),
                              ("params.ig_baseline", self.ig_baseline), ("params.cam_map", self.cam_map),
                              ("curve_steps", self.curve_steps), ("sanity_steps", self.sanity_steps),
                              ("method", self.method_combo)):
            bind(control, self.state, name)
        self.state.connect("method", self._show_rows)
        self._show_rows(self.state.method)
        self.block_combo.currentIndexChanged.connect(self._on_block_combo)
        self.branch_combo.currentIndexChanged.connect(self._on_branch_combo)

    # ------------------------------------------------------------------ setters

    def set_method(self, method: str) -> None:
        """The method to run (the combo and its parameter rows follow the state). ValueError for an unknown one."""
        from explorer.core.attribution.methods import METHODS

        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        self.state.method = method

    def _show_rows(self, method: str) -> None:
        """The parameter rows of `method`."""
        for key, (_, w) in self._rows.items():
            self.form.setRowVisible(w, key in METHOD_PARAMS[method])

    def populate_targets(self, categories: list[str]) -> None:
        """The target box: the top-1 class, then every class by index and name."""
        self._categories = list(categories)
        self.target_combo.blockSignals(True)
        self.target_combo.clear()
        self.target_combo.addItem("Top-1 (predicted class)", None)
        for i, name in enumerate(categories):
            self.target_combo.addItem(f"{i}: {name}", i)
        self.target_combo.setCurrentIndex(0)
        self.target_combo.blockSignals(False)

    def set_top1_name(self, name: str) -> None:
        """Name the top-1 entry after the class the image was classified as."""
        self.target_combo.setItemText(0, f"Top-1 ({name})")
        if self.target_combo.currentIndex() == 0:
            self.target_combo.lineEdit().setCursorPosition(0)  # a narrow box shows the start, "Top-1 (…", not its end

    def target(self) -> int | None:
        """The class chosen in the target box (None: top-1). Raises ValueError for unknown text."""
        return parse_target(self.target_combo.currentText(), self._categories)

    def set_graph(self, graph) -> None:
        """The block graph whose blocks Grad-CAM can weigh; chooses its last block."""
        self.graph = graph
        blocks = [b.name for b in graph.blocks()]
        self.block_combo.blockSignals(True)
        self.block_combo.clear()
        self.block_combo.addItems(blocks)
        self.block_combo.blockSignals(False)
        self.set_gradcam_layer(blocks[-1] if blocks else None, None)

    def set_gradcam_layer(self, block: str | None, branch: int | None = None) -> None:
        """Grad-CAM's block and branch (None: the block's output)."""
        self.state.block, self.state.branch = block, branch
        self.block_combo.blockSignals(True)
        self.block_combo.setCurrentIndex(self.block_combo.findText(block) if block else -1)
        self.block_combo.blockSignals(False)
        self.branch_combo.blockSignals(True)
        self.branch_combo.clear()
        self.branch_combo.addItem("Whole block", None)
        if block is not None and self.graph is not None:
            for k, b in enumerate(self.graph.node(block).branches):
                self.branch_combo.addItem(f"{branch_number(k)} · {b.label}", k)
        self.branch_combo.setCurrentIndex(max(0, self.branch_combo.findData(branch)) if branch is not None else 0)
        self.branch_combo.blockSignals(False)

    def _on_block_combo(self, index: int) -> None:
        if index >= 0:
            self.set_gradcam_layer(self.block_combo.itemText(index), None)

    def _on_branch_combo(self, index: int) -> None:
        if index >= 0:
            self.state.branch = self.branch_combo.itemData(index)

    # ------------------------------------------------------------------ running

    def set_running(self, running: bool, has_map: bool) -> None:
        """Run or Cancel, the progress bar, and the evidence buttons (they need a map on screen)."""
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.faithfulness_button.setEnabled(not running and has_map)
        self.sanity_button.setEnabled(not running and has_map)
        self.metrics_button.setEnabled(not running and has_map)
        self.progress.setVisible(running)
        if running:
            self.progress.setRange(0, 0)
            self.progress.setValue(0)
        self.method_combo.setEnabled(not running)

    def show_progress(self, done, total) -> None:
        """A job's progress: `done` of `total` steps; a busy bar when the total is unknown."""
        if total:
            self.progress.setRange(0, int(total))
            self.progress.setValue(int(done))
        else:
            self.progress.setRange(0, 0)
