"""Attributions of the image on screen: which pixels (or which part of a block's map) made the network
choose a class. Integrated Gradients, Saliency, Grad-CAM on a block or one branch, and Occlusion.

The computation runs on a worker thread (in the image panels' lanes of explorer.qt.workers.JobRunner); the
panel shows its progress, can cancel it (captum stops at its next forward), and draws the heatmap over the
input image when the result arrives on the UI thread. One job at a time: running again cancels the previous.

Beside the map, the evidence that it means something (explorer.core.attribution.faithfulness): its deletion and
insertion curves with their random-order references, a table of every method computed for the image,
and the strip of maps of the model-randomisation sanity check. The table's rows live in the window's
`ExplorerState.attributions` (the panel's own state when it has none), cleared with the model or image.

The image, the map and a running job belong to the state's `result_key` when the image was given: when
the key changes (another model, other weights, another image), the job is stopped (what it computes is
never shown) and the line says so; the map, the image and the line of the previous key go.

Signals
-------
attribution_started(str)       method name
attribution_finished(object)   the AttributionResult
faithfulness_finished(object)  the AttributionRecord with its deletion and insertion curves
sanity_finished(object)        the AttributionRecord with its sanity check
attribution_failed(str)        an error message for the window's status bar (a map, curves or a sanity check)
attribution_cancelled()        the running job stopped at the user's request
export_failed(str)             an export could not be written
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QCompleter,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from explorer.core.attribution.methods import IG_GAUSS_LEGENDRE_MAX_STEPS, IG_MAX_STEPS
from explorer.core.attribution.faithfulness import (
    DEFAULT_STEPS,
    SANITY_UNCHANGED,
    AttributionRecord,
    faithfulness_curves,
    map_explainer,
    sanity_blocks,
    sanity_check,
    with_record,
)
from explorer.core.session.state import ExplorerState
from explorer.qt.result_view import overlay_lut
from explorer.qt.workers import Job, Lanes

METHOD_NAMES = {
    "integrated_gradients": "Integrated Gradients",
    "saliency": "Saliency",
    "grad_cam": "Grad-CAM",
    "occlusion": "Occlusion",
    "grad_cam_plus_plus": "Grad-CAM++",
    "score_cam": "Score-CAM",
    "eigen_cam": "EigenCAM",
    "layer_cam": "LayerCAM",
    "hires_cam": "HiResCAM",
    "xgrad_cam": "XGrad-CAM",
    "smoothgrad_integrated_gradients": "Integrated Gradients + SmoothGrad",
    "smoothgrad_saliency": "Saliency + SmoothGrad",
}
#: Which parameter rows each method uses.
METHOD_PARAMS = {
    "integrated_gradients": ("ig_steps", "ig_baseline", "internal_batch_size"),
    "saliency": (),
    "grad_cam": ("block", "branch", "cam_map"),
    "occlusion": ("occlusion_window", "occlusion_stride"),
    **{m: ("block", "branch", "cam_map") for m in ("grad_cam_plus_plus", "score_cam", "eigen_cam", "layer_cam", "hires_cam",
                                        "xgrad_cam")},
    "smoothgrad_integrated_gradients": ("ig_steps", "ig_baseline", "internal_batch_size"),
    "smoothgrad_saliency": (),
}
IG_STEPS_TIP = (f"Integration steps (more: smaller delta). Gauss–Legendre nodes up to {IG_GAUSS_LEGENDRE_MAX_STEPS}"
                " steps, the trapezoid rule above (Gauss–Legendre nodes for thousands of steps take seconds"
                f" to compute, and nothing can be cancelled meanwhile). At most {IG_MAX_STEPS}: every step is"
                " a forward and a backward pass over the image.")
RULE_NAMES = {"gausslegendre": "Gauss–Legendre", "riemann_trapezoid": "trapezoid rule"}
SIGNED_COLORMAP = "CET-D1"  # diverging blue–white–red: negative evidence blue, positive red
ABSOLUTE_COLORMAP = "inferno"
#: Pixel-level maps (IG, saliency) have a few extreme pixels: their colour scale ends at this percentile
#: of |value| so that the rest stays visible (values beyond it are drawn at full colour).
CLIP_PERCENTILE = 99.5
CLIPPED_METHODS = ("integrated_gradients", "saliency", "smoothgrad_integrated_gradients", "smoothgrad_saliency")
WARNING_COLOR = "#c62828"
#: Widest the column of controls grows (pixels): room for the longest baseline and branch names.
CONTROLS_MAX_WIDTH = 420
SLOT = "attribution"
#: Blocks the sanity check randomises by default (Adebayo et al. go down the whole network; 5 show the trend).
SANITY_STEPS = 5
#: Curve colours: deletion red, insertion blue; the random-order references dashed in the same colour.
CURVE_COLORS = {"deletion": "#d62728", "insertion": "#1f77b4"}
TABLE_COLUMNS = ("Method", "Layer", "Deletion AUC (random)", "Insertion AUC (random)", "Sanity", "Time")


@dataclass
class AttributionPanelState:
    """What the panel will run and how it shows the result."""

    method: str = "integrated_gradients"  #: one of explorer.core.attribution.methods.METHODS
    target: int | None = None  #: class index; None = the top-1 class
    block: str | None = None  #: Grad-CAM's block
    branch: int | None = None  #: Grad-CAM's branch of that block; None = the whole block
    display: str = "signed"  #: "signed" (diverging colours) or "absolute" for signed heatmaps
    opacity: float = 0.8  #: of the heatmap over the image


class AttributionPanel(QWidget):
    """Method, target and parameters; Run/Cancel with progress; the heatmap over the input image.

    Call `set_model(capture_model, graph, categories)` when a model is loaded and
    `set_image(x, image_rgb)` when an image is classified; `run()` starts the chosen method.
    """

    attribution_started = Signal(str)
    attribution_finished = Signal(object)
    faithfulness_finished = Signal(object)
    sanity_finished = Signal(object)
    attribution_failed = Signal(str)
    attribution_cancelled = Signal()
    export_failed = Signal(str)

    def __init__(self, parent=None, *, runner: Lanes, explorer_state: ExplorerState | None = None):
        super().__init__(parent)
        self.state = AttributionPanelState()
        #: Holds the records of the maps computed for the image (the window's state when given).
        self.explorer_state = explorer_state if explorer_state is not None else ExplorerState()
        self.runner = runner  # the image panels' lane group: one job at a time among them
        self.capture_model = None
        self.capture_model_for = None  # device -> the network there (gradient methods on the classifier's GPU)
        #: Where the gradient methods run: the classifier's device ("cpu", "cuda:0").
        self.device = "cpu"
        #: device -> the network the curves run on (the classifier's folded one; None: the capture model).
        self.curve_model_for = None
        self.graph = None
        self.categories: list[str] = []
        self.x = None
        self.image_rgb: np.ndarray | None = None
        self._image_key = None  # the state's ResultKey when `x` was given: the map and jobs are for it
        self.result = None
        self.record: AttributionRecord | None = None  # the row of `result` (with its evidence so far)
        self._job: Job | None = None
        self._job_label = "Attribution"
        self._map_kwargs: dict = {}  # how `result` was computed (node, branch, params)
        self._started = 0.0

        self._build_parameters()
        buttons = self._build_run_row()
        evidence = self._build_evidence_row()
        shown = self._build_map_view()
        self._build_curves()
        self._build_evidence_tabs()
        self._arrange(buttons, evidence, shown)
        self._connect()
        self._populate_targets()
        self.set_method(self.state.method)
        self._set_running(False)
        self._show_result()
        self._show_records(self.explorer_state.attributions)

    # ------------------------------------------------------------------ construction

    def _build_parameters(self) -> None:
        """The method, the target class and every method's parameter rows, in `self.form`."""
        self.method_combo = QComboBox()
        for m, name in METHOD_NAMES.items():
            self.method_combo.addItem(name, m)
        self.target_combo = QComboBox()
        self.target_combo.setEditable(True)
        self.target_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.target_combo.setToolTip("Class to explain: the top-1 prediction, or type to search the categories")
        self.target_combo.setMinimumContentsLength(18)
        completer = QCompleter(self.target_combo.model(), self.target_combo)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.target_combo.setCompleter(completer)
        self.ig_steps = QSpinBox(minimum=1, maximum=IG_MAX_STEPS, value=50, toolTip=IG_STEPS_TIP)
        self.ig_baseline = QComboBox(toolTip="Reference image the path starts from")
        for label, key in (("Black image", "black"), ("Zeros (mean colour)", "zero"), ("Blurred image", "blur")):
            self.ig_baseline.addItem(label, key)
        self.internal_batch = QSpinBox(minimum=1, maximum=512, value=16,
                                       toolTip="Steps evaluated per forward pass (memory vs. speed)")
        self.occlusion_window = QSpinBox(minimum=2, maximum=512, value=32, suffix=" px",
                                         toolTip="Side of the square patch that is blanked out")
        self.occlusion_stride = QSpinBox(minimum=1, maximum=512, value=16, suffix=" px",
                                         toolTip="Step between patches")
        self.block_combo = QComboBox(toolTip="Block whose output Grad-CAM weighs")
        self.branch_combo = QComboBox(toolTip="The whole block's output, or one of its branches")
        self.cam_map = QComboBox(toolTip="A CAM's positive evidence (as in the papers), or its signed or absolute "
                                 "map: where every weighted activation counts against the class, the positive "
                                 "map is empty")
        for label, key in (("Positive evidence", "positive"), ("Signed", "signed"), ("Absolute", "absolute")):
            self.cam_map.addItem(label, key)
        self.form = QFormLayout()
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

    def _build_run_row(self) -> QHBoxLayout:
        """Run, Cancel and the progress bar (returned as a row); the status and delta lines."""
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.delta_label = QLabel()
        self.delta_label.setWordWrap(True)
        self.delta_label.setTextFormat(Qt.TextFormat.RichText)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress, 1)
        return buttons

    def _build_evidence_row(self) -> QHBoxLayout:
        """The buttons and step counts of the evidence for the map on screen: faithfulness and sanity."""
        self.faithfulness_button = QPushButton("Faithfulness")
        self.faithfulness_button.setToolTip(
            "Deletion and insertion curves of the map (Petsiuk et al. 2018): the target's probability as its most "
            "important pixels are removed from the image, or added to a blurred copy; pixels in a random order "
            "give the reference")
        self.curve_steps = QSpinBox(minimum=2, maximum=1000, value=DEFAULT_STEPS, suffix=" steps",
                                    toolTip="Points of each curve after the first: each removes (or adds) "
                                    "1/steps of the pixels")
        self.sanity_button = QPushButton("Sanity check")
        self.sanity_button.setToolTip(
            "Model randomisation (Adebayo et al. 2018): the map again with the top blocks' weights randomised "
            "one after another, and its rank correlation with the original. A map that does not change "
            f"(ρ ≥ {SANITY_UNCHANGED:g}) shows the image, not what the model learned")
        self.sanity_steps = QSpinBox(minimum=1, maximum=20, value=SANITY_STEPS, suffix=" blocks",
                                     toolTip="Blocks randomised in cascade, from the output down")
        evidence = QHBoxLayout()
        evidence.addWidget(self.faithfulness_button)
        evidence.addWidget(self.curve_steps)
        evidence.addWidget(self.sanity_button)
        evidence.addWidget(self.sanity_steps)
        return evidence

    def _build_map_view(self) -> QHBoxLayout:
        """The heatmap over the image with its colour bar, and the row that says how it is shown."""
        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground(None)
        self.title = self.view.addLabel("", row=0, col=0, colspan=2)
        self.box = self.view.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMouse=False)
        self.box.setMenuEnabled(False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.heat_item = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.image_item)
        self.box.addItem(self.heat_item)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=ABSOLUTE_COLORMAP, interactive=False, width=12)
        self.view.addItem(self.colorbar, row=1, col=1)
        self.colorbar.hide()
        self.display_combo = QComboBox(toolTip="Signed: positive evidence red, negative blue; absolute: magnitude")
        self.display_combo.addItem("Signed", "signed")
        self.display_combo.addItem("Absolute", "absolute")
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(self.state.opacity * 100))
        self.opacity_slider.setToolTip("Opacity of the heatmap over the image")
        self.export_button = QPushButton("Export PNG…")
        shown = QHBoxLayout()
        shown.addWidget(QLabel("Show"))
        shown.addWidget(self.display_combo)
        shown.addWidget(QLabel("Opacity"))
        shown.addWidget(self.opacity_slider, 1)
        shown.addWidget(self.export_button)
        return shown

    def _build_curves(self) -> None:
        """The deletion and insertion curves beside the overlay, in `self.plot_box` (hidden until used)."""
        self.curve_plot = pg.PlotWidget(background=None)
        self.curve_plot.setMinimumWidth(220)
        self.curve_plot.setMouseEnabled(False, False)
        self.curve_plot.setMenuEnabled(False)
        self.curve_plot.hideButtons()
        self.curve_plot.setLabel("bottom", "share of pixels removed / inserted")
        self.curve_plot.setLabel("left", "p(target)")
        self.curve_plot.setXRange(0, 1, padding=0.02)
        self.curve_plot.setYRange(0, 1, padding=0.02)
        # The legend on a nearly opaque ground in the palette's colours: over the curves, pyqtgraph's default
        # grey text on a transparent ground could not be read.
        text, base = self.palette().color(QPalette.ColorRole.WindowText), self.palette().color(QPalette.ColorRole.Base)
        base.setAlpha(225)
        self.curve_legend = self.curve_plot.addLegend(offset=(-4, 4), labelTextSize="8pt", verSpacing=-6,
                                                      labelTextColor=text, brush=pg.mkBrush(base),
                                                      pen=pg.mkPen(text, width=0.5))
        #: One PlotDataItem per curve: "deletion", "deletion_random", "insertion", "insertion_random".
        self.curve_items: dict[str, pg.PlotDataItem] = {}
        for kind, color in CURVE_COLORS.items():
            self.curve_items[kind] = self.curve_plot.plot([], [], pen=pg.mkPen(color, width=2), name=kind)
            self.curve_items[f"{kind}_random"] = self.curve_plot.plot(
                [], [], pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine), name=f"{kind}, random")
        self.curve_caption = QLabel()
        self.curve_caption.setWordWrap(True)
        self.curve_caption.setTextFormat(Qt.TextFormat.RichText)
        # The plot and the evidence tabs appear once there is evidence: until then the overlay has the
        # dock to itself (a 290 px dock left it under 100 px high beside empty axes and an empty table).
        self.plot_box = plot_box = QWidget()
        plot_box.hide()
        plot_column = QVBoxLayout(plot_box)
        plot_column.setContentsMargins(0, 0, 0, 0)
        plot_column.addWidget(self.curve_plot, 1)
        plot_column.addWidget(self.curve_caption)

    def _build_evidence_tabs(self) -> None:
        """Every method computed for the image and the sanity check's strip of maps, as tabs."""
        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)

        self.sanity_caption = QLabel("Run a sanity check to see whether the map depends on the learned weights.")
        self.sanity_caption.setWordWrap(True)
        self.sanity_caption.setTextFormat(Qt.TextFormat.RichText)
        self.sanity_view = pg.GraphicsLayoutWidget()
        self.sanity_view.setBackground(None)
        self.sanity_view.setMinimumHeight(120)
        #: The strip's maps (original first) and the labels under them (block and Spearman's ρ).
        self.sanity_items: list[pg.ImageItem] = []
        self.sanity_labels: list = []
        strip = QWidget()
        strip_column = QVBoxLayout(strip)
        strip_column.setContentsMargins(0, 0, 0, 0)
        strip_column.addWidget(self.sanity_caption)
        strip_column.addWidget(self.sanity_view, 1)
        self.evidence_tabs = QTabWidget()
        self.evidence_tabs.addTab(self.table, "Methods")
        self.evidence_tabs.addTab(strip, "Sanity check")
        self.evidence_tabs.hide()

    def _arrange(self, buttons: QHBoxLayout, evidence: QHBoxLayout, shown: QHBoxLayout) -> None:
        """The column of controls beside the map and curves, above the evidence tabs."""
        # The controls in a column of bounded width beside the overlay: stacked above it, in a dock
        # across a 1280 px window the fields stretched to the full width and pushed Show, Opacity and
        # Export below a 300 px dock's edge.
        self.controls = QWidget(self)
        self.controls.setMaximumWidth(CONTROLS_MAX_WIDTH)
        column = QVBoxLayout(self.controls)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(self.form)
        column.addLayout(buttons)
        column.addLayout(evidence)
        column.addLayout(shown)
        column.addWidget(self.status)
        column.addWidget(self.delta_label)
        column.addStretch(1)
        # Overlay and curves side by side above the methods table and the sanity strip (a splitter: a
        # short dock gives the overlay the room, a tall one the table).
        self.map_row = QSplitter(Qt.Orientation.Horizontal)
        self.map_row.addWidget(self.view)
        self.map_row.addWidget(self.plot_box)
        self.map_row.setStretchFactor(0, 3)
        self.map_row.setStretchFactor(1, 2)
        self.results_split = QSplitter(Qt.Orientation.Vertical)
        self.results_split.addWidget(self.map_row)
        self.results_split.addWidget(self.evidence_tabs)
        self.results_split.setStretchFactor(0, 3)
        self.results_split.setStretchFactor(1, 2)
        self.results_split.setChildrenCollapsible(False)
        layout = QHBoxLayout(self)
        layout.addWidget(self.controls)
        layout.addWidget(self.results_split, 1)

    def _connect(self) -> None:
        """The controls to the panel's setters and jobs; the window's state to the records and the key."""
        self.method_combo.currentIndexChanged.connect(lambda: self.set_method(self.method_combo.currentData()))
        self.block_combo.currentIndexChanged.connect(self._on_block_combo)
        self.branch_combo.currentIndexChanged.connect(self._on_branch_combo)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.display_combo.currentIndexChanged.connect(lambda: self.set_display(self.display_combo.currentData()))
        self.opacity_slider.valueChanged.connect(lambda v: self.set_opacity(v / 100))
        self.export_button.clicked.connect(self._export_dialog)
        self.faithfulness_button.clicked.connect(self.run_faithfulness)
        self.sanity_button.clicked.connect(self.run_sanity_check)
        self.table.itemSelectionChanged.connect(self._on_table_selection)
        self.explorer_state.connect("attributions", self._show_records)
        self.explorer_state.connect("result_key", self._follow_key)

    # ------------------------------------------------------------------ inputs

    def set_model(self, capture_model, graph, categories: list[str] | None = None, capture_model_for=None) -> None:
        """The network to explain (a CaptureModel on the CPU), its block graph and its class names.
        capture_model_for(device): the same network on another device, for runs on `self.device`."""
        self.cancel()
        self.capture_model, self.graph = capture_model, graph
        self.capture_model_for = capture_model_for
        self.categories = list(categories or [])
        self._populate_targets()
        self.block_combo.blockSignals(True)
        self.block_combo.clear()
        for b in graph.blocks():
            self.block_combo.addItem(b.name)
        self.block_combo.blockSignals(False)
        blocks = [b.name for b in graph.blocks()]
        self.set_gradcam_layer(blocks[-1] if blocks else None, None)
        self._clear_results()

    def set_image(self, x, image_rgb: np.ndarray | None = None, top1: int | None = None) -> None:
        """The preprocessed image (1, 3, H, W) and its display RGB (H, W, 3 uint8); clears the heatmap."""
        self.cancel()
        self.x = x
        self._image_key = self.explorer_state.result_key if x is not None else None
        self.image_rgb = None if image_rgb is None else np.ascontiguousarray(image_rgb)
        if self.image_rgb is not None:
            self.image_item.setImage(self.image_rgb, autoLevels=False, levels=(0, 255))
        else:
            self.image_item.clear()
        name = self._category(top1) if top1 is not None else "predicted class"
        self.target_combo.setItemText(0, f"Top-1 ({name})")
        self._clear_results()
        self.box.autoRange(padding=0.01)

    def _follow_key(self, key) -> None:
        """The model, its weights or the image changed: the image, its map and a running job of the previous
        key go (the job is stopped; whatever it still computes is dropped), and the line says why."""
        if self._image_key is None or self._image_key == key:
            return
        why = self._image_key.change_to(key)
        job, self._job = self._job, None
        if job is not None:
            job.cancel()
        self.set_image(None)
        self.status.setText(f"{self._job_label} stopped: {why}." if job is not None else "")
        self._set_status_warning(False)

    def _clear_results(self) -> None:
        """The map, its curves, its sanity strip and the methods table belong to the model and image that
        made them: they go when either changes."""
        self.result = self.record = None
        self.explorer_state.attributions = ()
        self._show_result()
        self._show_curves(None)
        self._show_sanity(None)
        self._set_running(False)

    # ------------------------------------------------------------------ state setters

    def set_method(self, method: str) -> None:
        from explorer.core.attribution.methods import METHODS

        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        self.state.method = method
        self.method_combo.blockSignals(True)
        self.method_combo.setCurrentIndex(self.method_combo.findData(method))
        self.method_combo.blockSignals(False)
        for key, (_, w) in self._rows.items():
            self.form.setRowVisible(w, key in METHOD_PARAMS[method])

    def visible_parameters(self) -> list[str]:
        """The parameter rows shown for the current method."""
        return [k for k, (_, w) in self._rows.items() if self.form.isRowVisible(w)]

    def set_target(self, target: int | None) -> None:
        """Class index to explain; None for the top-1 class."""
        self.target_combo.setCurrentIndex(0 if target is None else self.target_combo.findData(target))

    def target(self) -> int | None:
        """The class chosen in the target box (None: top-1). Raises ValueError for unknown text."""
        text = self.target_combo.currentText().strip()
        i = self.target_combo.findText(text, Qt.MatchFlag.MatchFixedString)
        if i < 0:
            matches = [k for k in range(1, self.target_combo.count())
                       if text.lower() in self.target_combo.itemText(k).lower()]
            if len(matches) != 1:
                raise ValueError(f"no single class matches {text!r}")
            i = matches[0]
        return self.target_combo.itemData(i)

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
                self.branch_combo.addItem(f"{k + 1} · {b.label}", k)
        self.branch_combo.setCurrentIndex(max(0, self.branch_combo.findData(branch)) if branch is not None else 0)
        self.branch_combo.blockSignals(False)

    def set_display(self, display: str) -> None:
        if display not in ("signed", "absolute"):
            raise ValueError(f"unknown display {display!r}")
        self.state.display = display
        self.display_combo.blockSignals(True)
        self.display_combo.setCurrentIndex(self.display_combo.findData(display))
        self.display_combo.blockSignals(False)
        self._show_result()

    def set_opacity(self, opacity: float) -> None:
        self.state.opacity = min(max(float(opacity), 0.0), 1.0)
        self.opacity_slider.blockSignals(True)
        self.opacity_slider.setValue(round(self.state.opacity * 100))
        self.opacity_slider.blockSignals(False)
        self.heat_item.setOpacity(self.state.opacity)

    def params(self):
        from explorer.core.attribution.methods import AttributionParams

        return AttributionParams(
            ig_steps=self.ig_steps.value(), ig_baseline=self.ig_baseline.currentData(),
            internal_batch_size=self.internal_batch.value(), occlusion_window=self.occlusion_window.value(),
            occlusion_stride=self.occlusion_stride.value(), cam_map=self.cam_map.currentData())

    # ------------------------------------------------------------------ running

    def is_running(self) -> bool:
        return self._job is not None

    def run(self) -> None:
        """Start the chosen method on a worker (cancelling one still running)."""
        from explorer.core.attribution.methods import attribute, attribute_on_device

        self._job_label = "Attribution"
        if self.capture_model is None or self.x is None:
            self._fail("Load a model and classify an image first.")
            return
        try:
            target = self.target()
        except ValueError as e:
            self._fail(str(e))
            return
        self.state.target = target
        method = self.state.method
        kwargs = dict(params=self.params())
        if "block" in METHOD_PARAMS[method]:  # the CAM family
            if self.state.block is None:
                self._fail(f"Choose a block for {METHOD_NAMES[method]}.")
                return
            kwargs.update(node=self.state.block, branch=self.state.branch)
        if self.device != "cpu" and self.capture_model_for is not None:
            # On the classifier's device (a GPU): the CPU computes it instead when the GPU runs out of memory.
            job = Job(attribute_on_device, self.capture_model_for, self.x, method, target, device=self.device,
                      wants_progress=True, **kwargs)
        else:
            job = Job(attribute, self.capture_model, self.x, method, target, wants_progress=True, **kwargs)
        job.map_kwargs = kwargs  # the sanity check recomputes the map with them
        self._start(job, "Attribution", f"{METHOD_NAMES[method]}: running…", self._on_success)
        self.attribution_started.emit(method)

    def _start(self, job: Job, label: str, text: str, on_success) -> None:
        """Run `job` in the panel's slot: progress bar and Cancel for it, `on_success(job, result)` after."""
        self._job, self._job_label = job, label
        self._started = time.monotonic()
        self._set_running(True)
        self.status.setText(text)
        self._set_status_warning(False)
        self.runner.start(
            SLOT, job,
            on_success=lambda r, job=job: on_success(job, r),
            on_failure=lambda msg, job=job: self._on_failure(job, msg),
            on_progress=lambda done, total, job=job: self._on_progress(job, done, total),
            on_cancel=lambda job=job: self._on_cancel(job))

    def _evidence_model(self):
        """The network the curves and the sanity check run on, and its device: the map's own (on a GPU when
        the map was computed there)."""
        device = getattr(self.result, "device", "cpu") or "cpu"
        if device != "cpu" and self.capture_model_for is not None:
            return self.capture_model_for(device), device
        return self.capture_model, "cpu"

    def run_faithfulness(self) -> None:
        """Deletion and insertion curves of the map on screen, each with its random-order reference, on a
        worker (progress counts batched forwards)."""
        self._job_label = "Faithfulness"
        if self.result is None or self.capture_model is None or self.x is None:
            self._fail("Compute a map first: the curves measure the map on screen.")
            return
        model, device = self._evidence_model()
        if self.curve_model_for is not None:
            try:  # the curves need no gradients: the classifier's optimised network is faster
                model = self.curve_model_for(device)
            except RuntimeError as e:
                self._fail(str(e))
                return
        steps = self.curve_steps.value()
        job = Job(faithfulness_curves, model, self.x.to(device), self.result.heatmap, self.result.target,
                  steps=steps, random_scores=self._random_references(steps), wants_progress=True)
        self._start(job, "Faithfulness", f"{self._result_name()}: deletion and insertion curves…",
                    self._on_curves)

    def _random_references(self, steps: int) -> dict | None:
        """The random-order curves already computed for the image on screen and the map's target (every
        map of the image shares them; the records go with the image and the model), if any."""
        for rec in self.explorer_state.attributions:
            curves = rec.curves or {}
            if (curves and rec.result.target == self.result.target
                    and rec.result.heatmap.shape == self.result.heatmap.shape
                    and all(len(c.random_scores) == steps + 1 for c in curves.values())):
                return {kind: c.random_scores for kind, c in curves.items()}
        return None

    def run_sanity_check(self) -> None:
        """The map on screen again with the top blocks randomised in cascade, on a worker (on a copy of the
        network: the original goes on serving the other views)."""
        self._job_label = "Sanity check"
        if self.result is None or self.capture_model is None or self.x is None:
            self._fail("Compute a map first: the sanity check randomises the model behind the map on screen.")
            return
        model, device = self._evidence_model()
        try:
            blocks = sanity_blocks(model, self.sanity_steps.value())
        except ValueError as e:
            self._fail(str(e))
            return
        r = self.result
        explain = map_explainer(self.x.to(device), r.method, r.target, **self._map_kwargs)
        job = Job(sanity_check, model, explain, original=r.heatmap, blocks=blocks, wants_progress=True)
        self._start(job, "Sanity check", f"{self._result_name()}: randomising {len(blocks)} blocks in cascade…",
                    self._on_sanity)

    def cancel(self) -> None:
        """Ask the running attribution to stop; the panel returns to idle when it has."""
        if self._job is not None:
            self._job.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling…")

    def shutdown(self, msecs: int = 30000) -> bool:
        """Cancel and wait for the worker (before the model or the panel goes away)."""
        self.cancel()
        return self.runner.wait(msecs)

    def _on_progress(self, job, done, total) -> None:
        if job is not self._job:
            return
        if total:
            self.progress.setRange(0, int(total))
            self.progress.setValue(int(done))
        else:
            self.progress.setRange(0, 0)

    def _on_success(self, job, result) -> None:
        if job is not self._job:
            return
        self._job = None
        self._set_running(False)
        self.result = result
        seconds = time.monotonic() - self._started
        where = f" on {result.layer}" if result.layer else ""
        device = getattr(result, "device", None)
        on = f" on {device}" if device and device != "cpu" or getattr(result, "notice", None) else ""
        self.status.setText(f"{METHOD_NAMES[result.method]}{where} for {self._category(result.target)}: "
                            f"done in {seconds:.1f} s{on}" + (f". {result.notice}" if result.notice else ""))
        # An empty map (or a fallback to the CPU) is said in the warning colour, never left silent.
        self._set_status_warning(bool(result.notice))
        self.record = AttributionRecord(result, seconds)
        self._map_kwargs = job.map_kwargs
        self._set_running(False)
        self._show_result()
        self._show_curves(None)
        self._show_sanity(None)
        self.explorer_state.attributions = with_record(self.explorer_state.attributions, self.record)
        self.attribution_finished.emit(result)

    def _add_evidence(self, job, **fields) -> float | None:
        """A finished evidence job: its fields (and the seconds it took) go into the map's record and the
        explorer state; None when the job was superseded or its map is gone."""
        if job is not self._job:
            return None
        self._job = None
        self._set_running(False)
        if self.record is None:
            return None
        seconds = time.monotonic() - self._started
        kind = "curves" if "curves" in fields else "sanity"
        self.record = dataclasses.replace(self.record, **fields, **{f"{kind}_seconds": seconds})
        self.explorer_state.attributions = with_record(self.explorer_state.attributions, self.record)
        return seconds

    def _on_curves(self, job, curves) -> None:
        seconds = self._add_evidence(job, curves=curves)
        if seconds is None:
            return
        self._show_curves(self.record)
        d, i = curves["deletion"], curves["insertion"]
        self.status.setText(f"{self._result_name()}: deletion AUC {d.auc:.3f} (random {d.random_auc:.3f}), "
                            f"insertion AUC {i.auc:.3f} (random {i.random_auc:.3f}) in {seconds:.1f} s")
        self._set_status_warning(not (d.better_than_random and i.better_than_random))
        self.faithfulness_finished.emit(self.record)

    def _on_sanity(self, job, check) -> None:
        seconds = self._add_evidence(job, sanity=check)
        if seconds is None:
            return
        self._show_sanity(self.record)
        self.evidence_tabs.setCurrentIndex(1)
        self.status.setText(f"{self._result_name()}: sanity check {self.record.verdict()} in {seconds:.1f} s")
        self._set_status_warning(check.flagged)
        self.sanity_finished.emit(self.record)

    def _on_failure(self, job, message: str) -> None:
        if job is not self._job:
            return
        self._job = None
        self._set_running(False)
        self._fail(message)

    def _on_cancel(self, job) -> None:
        if job is not self._job:  # superseded by a newer run: that one owns the UI
            return
        self._job = None
        self._set_running(False)
        self.status.setText(f"{self._job_label} cancelled.")
        self._set_status_warning(False)
        self.attribution_cancelled.emit()

    def _fail(self, message: str) -> None:
        self.status.setText(f"{self._job_label} failed: {message}")
        self._set_status_warning(True)
        self.attribution_failed.emit(message)

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        # Evidence is for the map on screen: there must be one.
        self.faithfulness_button.setEnabled(not running and self.result is not None)
        self.sanity_button.setEnabled(not running and self.result is not None)
        self.progress.setVisible(running)
        if running:
            self.progress.setRange(0, 0)
            self.progress.setValue(0)
        self.method_combo.setEnabled(not running)

    def _set_status_warning(self, on: bool) -> None:
        self.status.setStyleSheet(f"color: {WARNING_COLOR};" if on else "")

    # ------------------------------------------------------------------ drawing

    def heatmap_levels(self) -> tuple[float, float] | None:
        return None if self.heat_item.image is None else tuple(self.heat_item.getLevels())

    def _show_result(self) -> None:
        r = self.result
        if r is None:
            self.heat_item.clear()
            self.colorbar.hide()
            self.title.setText("Run a method to see which pixels carry the evidence.")
            self.delta_label.setText("")
            self.display_combo.setEnabled(False)
            return
        signed = r.signed and self.state.display == "signed"
        heat = r.heatmap.astype(np.float32)
        mag = np.abs(heat)
        clipped = r.method in CLIPPED_METHODS
        m = float(np.percentile(mag, CLIP_PERCENTILE) if clipped else mag.max()) or float(mag.max()) or 1.0
        if signed:
            levels, cmap = (-m, m), SIGNED_COLORMAP
        else:
            heat = mag
            levels, cmap = (0.0, m), ABSOLUTE_COLORMAP
        self.heat_item.setImage(heat, autoLevels=False, levels=levels)
        self.heat_item.setLookupTable(overlay_lut(cmap, signed))
        self.heat_item.setOpacity(self.state.opacity)
        self.colorbar.setColorMap(pg.colormap.get(cmap))
        self.colorbar.setLevels(levels)
        self.colorbar.show()
        self.display_combo.setEnabled(r.signed)
        self.display_combo.blockSignals(True)  # an unsigned map is shown (and labelled) as absolute
        self.display_combo.setCurrentIndex(self.display_combo.findData("signed" if signed else "absolute"))
        self.display_combo.blockSignals(False)
        where = f" · {r.layer}" if r.layer else ""
        self.title.setText(f"<b>{METHOD_NAMES[r.method]}{where}</b> — {self._category(r.target)}"
                           + (" (signed)" if signed else "")
                           + (f" · scale clipped at the {CLIP_PERCENTILE:g}th percentile" if clipped else ""))
        if r.delta is not None:
            rule = RULE_NAMES.get(r.ig_method, r.ig_method)
            text = (f"Convergence delta {r.delta:.3g} ({r.delta_relative:.1%} of f(x) − f(baseline)"
                    + (f"; {rule}" if rule else "") + ")")
            if r.delta_flagged:
                text = (f"<span style='color:{WARNING_COLOR}'><b>⚠ {text}: large — increase the steps</b>"
                        "</span>")
            self.delta_label.setText(text)
        else:
            self.delta_label.setText("")
        self.box.autoRange(padding=0.01)

    def delta_flagged_shown(self) -> bool:
        """Whether the panel currently shows the convergence warning."""
        return "⚠" in self.delta_label.text()

    def _result_name(self) -> str:
        r = self.result
        return "" if r is None else METHOD_NAMES[r.method] + (f" · {r.layer}" if r.layer else "")

    def _show_curves(self, record: AttributionRecord | None) -> None:
        """Plot `record`'s deletion and insertion curves and their random references (empty: None or none yet)."""
        curves = None if record is None else record.curves
        self.plot_box.setVisible(bool(curves))
        if not curves:
            for item in self.curve_items.values():
                item.setData([], [])
            for kind in CURVE_COLORS:
                self._set_legend(kind, kind)
                self._set_legend(f"{kind}_random", f"{kind}, random")
            self.curve_caption.setText("Faithfulness: deletion should fall fast (low area), insertion rise fast "
                                       "(high area), compared with pixels in a random order." if self.result is not None
                                       else "")
            return
        for kind, c in curves.items():
            self.curve_items[kind].setData(c.fractions, c.scores)
            self.curve_items[f"{kind}_random"].setData(c.fractions, c.random_scores)
            self._set_legend(kind, f"{kind} AUC {c.auc:.3f}")
            self._set_legend(f"{kind}_random", f"random order {c.random_auc:.3f}")
        top = max(float(max(c.scores.max(), c.random_scores.max())) for c in curves.values())
        self.curve_plot.setYRange(0, max(top, 1e-3), padding=0.05)
        parts = []
        for kind, c in curves.items():
            good = c.better_than_random
            mark = "✓" if good else f"<span style='color:{WARNING_COLOR}'>✗ no better than random</span>"
            parts.append(f"{kind} {c.auc:.3f} vs {c.random_auc:.3f} {mark}")
        self.curve_caption.setText(f"<b>{METHOD_NAMES[record.result.method]}</b> for "
                                   f"{self._category(record.result.target)}: " + "; ".join(parts))

    def _set_legend(self, key: str, text: str) -> None:
        item = self.curve_items[key]
        for sample, label in self.curve_legend.items:
            if sample.item is item:
                label.setText(text)

    def _show_sanity(self, record: AttributionRecord | None) -> None:
        """The strip: the original map, then the map after each randomisation step with its Spearman ρ."""
        self.sanity_view.clear()
        self.sanity_items, self.sanity_labels = [], []
        check = None if record is None else record.sanity
        if check is None:
            self.sanity_caption.setText("Sanity check: the map again with the top blocks' weights randomised one "
                                        "after another; a map that stays the same does not show what the model "
                                        "learned." if self.result is not None else "")
            return
        maps = [record.result.heatmap, *check.maps]
        names = ["original", *(f"+ {b}" for b in check.blocks)]
        rhos = [None, *check.correlations]
        lut = pg.colormap.get(ABSOLUTE_COLORMAP).getLookupTable(nPts=256)
        for col, (m, name, rho) in enumerate(zip(maps, names, rhos, strict=True)):
            box = self.sanity_view.addViewBox(row=0, col=col, lockAspect=True, invertY=True, enableMouse=False)
            box.setMenuEnabled(False)
            mag = np.abs(np.asarray(m, dtype=np.float32))
            item = pg.ImageItem(axisOrder="row-major")
            item.setImage(mag, autoLevels=False, levels=(0.0, float(mag.max()) or 1.0))
            item.setLookupTable(lut)
            box.addItem(item)
            box.autoRange(padding=0.02)
            text = "ρ —" if rho is None else ("ρ undefined" if not math.isfinite(rho) else f"ρ {rho:.2f}")
            label = self.sanity_view.addLabel(f"{name}<br>{text}", row=1, col=col, size="8pt",
                                              color=self.palette().color(QPalette.ColorRole.WindowText))
            self.sanity_items.append(item)
            self.sanity_labels.append(label)
        if check.flagged:
            self.sanity_caption.setText(
                f"<span style='color:{WARNING_COLOR}'><b>⚠ The map does not change</b> when the weights are "
                f"randomised (ρ {check.correlations[-1]:.2f} ≥ {SANITY_UNCHANGED:g} after {len(check.blocks)} "
                "blocks): it shows the image, not what the model learned.</span>")
        else:
            self.sanity_caption.setText(
                f"<b>{METHOD_NAMES[record.result.method]}</b>: the map changes as blocks are randomised "
                f"(Spearman ρ of |map| with the original under each): it depends on the learned weights.")

    def _show_records(self, records) -> None:
        """One table row per method computed for the image (the explorer state's `attributions`)."""
        self.evidence_tabs.setVisible(any(rec.curves or rec.sanity is not None for rec in records))
        self.table.blockSignals(True)
        self.table.setRowCount(len(records))
        for row, rec in enumerate(records):
            r = rec.result
            cells = [METHOD_NAMES[r.method], r.layer or "input", self._auc_text(rec, "deletion"),
                     self._auc_text(rec, "insertion"), rec.verdict() or "—", self._times_text(rec)]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if (col in (2, 3) and rec.curves and not rec.curves[("deletion", "insertion")[col - 2]]
                        .better_than_random) or (col == 4 and rec.sanity is not None and rec.sanity.flagged):
                    item.setForeground(pg.mkColor(WARNING_COLOR))
                self.table.setItem(row, col, item)
        self.table.blockSignals(False)

    @staticmethod
    def _auc_text(rec: AttributionRecord, kind: str) -> str:
        if not rec.curves or kind not in rec.curves:
            return "—"
        c = rec.curves[kind]
        return f"{c.auc:.3f} ({c.random_auc:.3f})" + ("" if c.better_than_random else " ✗")

    @staticmethod
    def _times_text(rec: AttributionRecord) -> str:
        parts = [f"map {rec.seconds:.1f} s"]
        if rec.curves_seconds is not None:
            parts.append(f"curves {rec.curves_seconds:.1f} s")
        if rec.sanity_seconds is not None:
            parts.append(f"sanity {rec.sanity_seconds:.1f} s")
        return ", ".join(parts)

    def _on_table_selection(self) -> None:
        """A row picked: show its curves and sanity strip (its map stays the one computed last)."""
        rows = self.table.selectionModel().selectedRows()
        records = self.explorer_state.attributions
        if rows and rows[0].row() < len(records):
            rec = records[rows[0].row()]
            self._show_curves(rec)
            self._show_sanity(rec)

    # ------------------------------------------------------------------ export

    def export_overlay_png(self, path: str | Path, width: int = 900) -> Path:
        """The heatmap over the image with its title and colour bar."""
        if self.result is None:
            raise ValueError("no attribution to export: run a method first")
        from explorer.qt.result_view import export_layout_png

        return export_layout_png(self.view.ci, path, width)

    def _export_dialog(self) -> None:
        name = f"attribution_{self.result.method}.png" if self.result else "attribution.png"
        path, _ = QFileDialog.getSaveFileName(self, "Export attribution", name, "PNG image (*.png)")
        if path:
            try:
                self.export_overlay_png(path)
            except (OSError, ValueError) as e:
                self.export_failed.emit(str(e))

    # ------------------------------------------------------------------ helpers

    def _category(self, index: int | None) -> str:
        if index is None:
            return "top-1"
        name = self.categories[index] if 0 <= index < len(self.categories) else f"class {index}"
        return f"{name} ({index})"

    def _populate_targets(self) -> None:
        self.target_combo.blockSignals(True)
        self.target_combo.clear()
        self.target_combo.addItem("Top-1 (predicted class)", None)
        for i, name in enumerate(self.categories):
            self.target_combo.addItem(f"{i}: {name}", i)
        self.target_combo.setCurrentIndex(0)
        self.target_combo.blockSignals(False)

    def _on_block_combo(self, index: int) -> None:
        if index >= 0:
            self.set_gradcam_layer(self.block_combo.itemText(index), None)

    def _on_branch_combo(self, index: int) -> None:
        if index >= 0:
            self.state.branch = self.branch_combo.itemData(index)

