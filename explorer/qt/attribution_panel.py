"""Attributions of the image on screen: which pixels (or which part of a block's map) made the network
choose a class. Integrated Gradients, Saliency, Grad-CAM on a block or one branch, and Occlusion.

The computation runs on a worker thread (explorer.qt.workers.JobRunner); the panel shows its progress,
can cancel it (captum stops at its next forward), and draws the heatmap over the input image when
the result arrives on the UI thread. One attribution at a time: running again cancels the previous.

Signals
-------
attribution_started(str)       method name
attribution_finished(object)   the AttributionResult
attribution_failed(str)        an error message for the window's status bar
attribution_cancelled()        the running attribution stopped at the user's request
export_failed(str)             an export could not be written
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QCompleter,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from explorer.core.attribution import IG_GAUSS_LEGENDRE_MAX_STEPS, IG_MAX_STEPS
from explorer.qt.activation_view import overlay_lut
from explorer.qt.workers import Job, JobRunner

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


@dataclass
class AttributionPanelState:
    """What the panel will run and how it shows the result."""

    method: str = "integrated_gradients"  #: one of explorer.core.attribution.METHODS
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
    attribution_failed = Signal(str)
    attribution_cancelled = Signal()
    export_failed = Signal(str)

    def __init__(self, parent=None, runner: JobRunner | None = None):
        super().__init__(parent)
        self.state = AttributionPanelState()
        self.runner = runner if runner is not None else JobRunner(self)
        self.capture_model = None
        self.capture_model_for = None  # device -> the network there (gradient methods on the classifier's GPU)
        #: Where the gradient methods run: the classifier's device ("cpu", "cuda:0").
        self.device = "cpu"
        self.graph = None
        self.categories: list[str] = []
        self.x = None
        self.image_rgb: np.ndarray | None = None
        self.result = None
        self._job: Job | None = None
        self._started = 0.0

        # -- method, target, parameters
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

        # -- run / cancel / progress / messages
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

        # -- overlay
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

        # The controls in a column of bounded width beside the overlay: stacked above it, in a dock
        # across a 1280 px window the fields stretched to the full width and pushed Show, Opacity and
        # Export below a 300 px dock's edge.
        self.controls = QWidget(self)
        self.controls.setMaximumWidth(CONTROLS_MAX_WIDTH)
        column = QVBoxLayout(self.controls)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(self.form)
        column.addLayout(buttons)
        column.addLayout(shown)
        column.addWidget(self.status)
        column.addWidget(self.delta_label)
        column.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addWidget(self.controls)
        layout.addWidget(self.view, 1)

        self.method_combo.currentIndexChanged.connect(lambda: self.set_method(self.method_combo.currentData()))
        self.block_combo.currentIndexChanged.connect(self._on_block_combo)
        self.branch_combo.currentIndexChanged.connect(self._on_branch_combo)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.display_combo.currentIndexChanged.connect(lambda: self.set_display(self.display_combo.currentData()))
        self.opacity_slider.valueChanged.connect(lambda v: self.set_opacity(v / 100))
        self.export_button.clicked.connect(self._export_dialog)
        self._populate_targets()
        self.set_method(self.state.method)
        self._set_running(False)
        self._show_result()

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
        self.result = None
        self._show_result()
        self._set_running(False)

    def set_image(self, x, image_rgb: np.ndarray | None = None, top1: int | None = None) -> None:
        """The preprocessed image (1, 3, H, W) and its display RGB (H, W, 3 uint8); clears the heatmap."""
        self.cancel()
        self.x = x
        self.image_rgb = None if image_rgb is None else np.ascontiguousarray(image_rgb)
        if self.image_rgb is not None:
            self.image_item.setImage(self.image_rgb, autoLevels=False, levels=(0, 255))
        else:
            self.image_item.clear()
        name = self._category(top1) if top1 is not None else "predicted class"
        self.target_combo.setItemText(0, f"Top-1 ({name})")
        self.result = None
        self._show_result()
        self._set_running(False)
        self.box.autoRange(padding=0.01)

    # ------------------------------------------------------------------ state setters

    def set_method(self, method: str) -> None:
        from explorer.core.attribution import METHODS

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
        from explorer.core.attribution import AttributionParams

        return AttributionParams(
            ig_steps=self.ig_steps.value(), ig_baseline=self.ig_baseline.currentData(),
            internal_batch_size=self.internal_batch.value(), occlusion_window=self.occlusion_window.value(),
            occlusion_stride=self.occlusion_stride.value(), cam_map=self.cam_map.currentData())

    # ------------------------------------------------------------------ running

    def is_running(self) -> bool:
        return self._job is not None

    def run(self) -> None:
        """Start the chosen method on a worker (cancelling one still running)."""
        from explorer.core.attribution import attribute, attribute_on_device

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
        self._job = job
        self._started = time.monotonic()
        self._set_running(True)
        self.status.setText(f"{METHOD_NAMES[method]}: running…")
        self.runner.start(
            SLOT, job,
            on_success=lambda r, job=job: self._on_success(job, r),
            on_failure=lambda msg, job=job: self._on_failure(job, msg),
            on_progress=lambda done, total, job=job: self._on_progress(job, done, total),
            on_cancel=lambda job=job: self._on_cancel(job))
        self.attribution_started.emit(method)

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
        self._show_result()
        self.attribution_finished.emit(result)

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
        self.status.setText("Attribution cancelled.")
        self._set_status_warning(False)
        self.attribution_cancelled.emit()

    def _fail(self, message: str) -> None:
        self.status.setText(f"Attribution failed: {message}")
        self._set_status_warning(True)
        self.attribution_failed.emit(message)

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
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

    # ------------------------------------------------------------------ export

    def export_overlay_png(self, path: str | Path, width: int = 900) -> Path:
        """The heatmap over the image with its title and colour bar."""
        if self.result is None:
            raise ValueError("no attribution to export: run a method first")
        from explorer.qt.activation_view import export_layout_png

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

