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

The panel composes the room's parts and runs the jobs: `AttributionControls` (attribution_controls.py)
writes the method and its parameters into `state`; `AttributionMapView` and `MapDisplayRow`
(attribution_map.py) draw the map; `FaithfulnessCurves` and `EvidenceTabs` (attribution_evidence.py) draw
the evidence. The children's widgets are reachable on the panel by their old names (`FORWARDED`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QSplitter, QVBoxLayout, QWidget

from explorer.core.attribution.faithfulness import (
    AttributionRecord,
    faithfulness_curves,
    map_explainer,
    sanity_blocks,
    sanity_check,
    with_record,
)
from explorer.core.session.state import ExplorerState
from explorer.qt.attribution.attribution_controls import AttributionControls
from explorer.core.attribution.faithfulness import random_references
from explorer.qt.attribution.attribution_evidence import EvidenceTabs, FaithfulnessCurves
from explorer.qt.attribution.attribution_map import AttributionMapView, MapDisplayRow, delta_text
from explorer.qt.attribution.catalogue import (
    METHOD_NAMES,
    METHOD_PARAMS,
    WARNING_COLOR,
    AttributionPanelState,
    category_label,
    done_text,
    result_name,
)
from explorer.qt.workers import Job, Lanes

__all__ = ["METHOD_NAMES", "METHOD_PARAMS", "AttributionPanel", "AttributionPanelState"]

#: Widest the column of controls grows (pixels): room for the longest baseline and branch names.
CONTROLS_MAX_WIDTH = 420
SLOT = "attribution"
#: What the panel answers for by its children's names: the controls' setters (set_method, set_target, target,
#: set_gradcam_layer, visible_parameters) and the widgets the window, tests and benches reach.
FORWARDED = {
    "controls": ("set_method", "set_target", "target", "set_gradcam_layer", "visible_parameters",
                 "method_combo", "target_combo", "ig_steps", "ig_baseline", "internal_batch", "occlusion_window",
                 "occlusion_stride", "block_combo", "branch_combo", "cam_map", "form", "_rows", "run_button",
                 "cancel_button", "progress", "faithfulness_button", "curve_steps", "sanity_button", "sanity_steps"),
    "display_row": ("display_combo", "opacity_slider", "export_button"),
    "view": ("heatmap_levels", "title", "box", "image_item", "heat_item", "colorbar"),
    "plot_box": ("curve_plot", "curve_legend", "curve_items", "curve_caption"),
    "evidence_tabs": ("table",),
    "sanity_strip": ("sanity_caption", "sanity_view", "sanity_items", "sanity_labels"),
}


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

        self.controls = AttributionControls(self.state)
        self.display_row = MapDisplayRow(self.state.opacity)
        self.view = AttributionMapView()
        #: The deletion and insertion curves beside the overlay (hidden until used).
        self.plot_box = FaithfulnessCurves()
        self.evidence_tabs = EvidenceTabs()
        self.sanity_strip = self.evidence_tabs.strip
        self._arrange()
        self._connect()
        self.set_method(self.state.method)
        self._set_running(False)
        self._show_result()
        self.evidence_tabs.show_records(self.explorer_state.attributions)

    # ------------------------------------------------------------------ construction

    def _arrange(self) -> None:
        """The column of controls beside the map and curves, above the evidence tabs."""
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.delta_label = QLabel()
        self.delta_label.setWordWrap(True)
        self.delta_label.setTextFormat(Qt.TextFormat.RichText)
        # The controls in a column of bounded width beside the overlay: stacked above it, in a dock
        # across a 1280 px window the fields stretched to the full width and pushed Show, Opacity and
        # Export below a 300 px dock's edge.
        self.column = QWidget(self)
        self.column.setMaximumWidth(CONTROLS_MAX_WIDTH)
        column = QVBoxLayout(self.column)
        column.setContentsMargins(0, 0, 0, 0)
        for w in (self.controls, self.display_row, self.status, self.delta_label):
            column.addWidget(w)
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
        layout.addWidget(self.column)
        layout.addWidget(self.results_split, 1)

    def _connect(self) -> None:
        """The controls to the panel's setters and jobs; the window's state to the records and the key."""
        self.controls.run_button.clicked.connect(self.run)
        self.controls.cancel_button.clicked.connect(self.cancel)
        self.controls.faithfulness_button.clicked.connect(self.run_faithfulness)
        self.controls.sanity_button.clicked.connect(self.run_sanity_check)
        self.display_row.display_chosen.connect(self.set_display)
        self.display_row.opacity_chosen.connect(self.set_opacity)
        self.display_row.export_button.clicked.connect(self._export_dialog)
        self.evidence_tabs.table.row_chosen.connect(self._on_table_row)
        self.explorer_state.connect("attributions", self.evidence_tabs.show_records)
        self.explorer_state.connect("result_key", self._follow_key)

    # ------------------------------------------------------------------ inputs

    def set_model(self, capture_model, graph, categories: list[str] | None = None, capture_model_for=None) -> None:
        """The network to explain (a CaptureModel on the CPU), its block graph and its class names.
        capture_model_for(device): the same network on another device, for runs on `self.device`."""
        self.cancel()
        self.capture_model, self.graph = capture_model, graph
        self.capture_model_for = capture_model_for
        self.categories = list(categories or [])
        self.controls.populate_targets(self.categories)
        self.controls.set_graph(graph)
        self._clear_results()

    def set_image(self, x, image_rgb: np.ndarray | None = None, top1: int | None = None) -> None:
        """The preprocessed image (1, 3, H, W) and its display RGB (H, W, 3 uint8); clears the heatmap."""
        self.cancel()
        self.x = x
        self._image_key = self.explorer_state.result_key if x is not None else None
        self.image_rgb = None if image_rgb is None else np.ascontiguousarray(image_rgb)
        self.controls.set_top1_name(category_label(self.categories, top1) if top1 is not None else "predicted class")
        self._clear_results()
        self.view.set_image(self.image_rgb)

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
        self._show_evidence(None)
        self._set_running(False)

    # ------------------------------------------------------------------ state setters

    def set_display(self, display: str) -> None:
        if display not in ("signed", "absolute"):
            raise ValueError(f"unknown display {display!r}")
        self.state.display = display
        self.display_row.show_display(display)
        self._show_result()

    def set_opacity(self, opacity: float) -> None:
        self.state.opacity = min(max(float(opacity), 0.0), 1.0)
        self.display_row.show_opacity(self.state.opacity)
        self.view.set_opacity(self.state.opacity)

    def params(self):
        """The methods' parameters as the controls set them (an AttributionParams)."""
        return self.state.params

    # ------------------------------------------------------------------ running

    def is_running(self) -> bool:
        return self._job is not None

    def run(self) -> None:
        """Start the chosen method on a worker (cancelling one still running)."""
        self._job_label = "Attribution"
        if self.capture_model is None or self.x is None:
            self._fail("Load a model and classify an image first.")
            return
        try:
            self.state.target = self.target()
        except ValueError as e:
            self._fail(str(e))
            return
        method = self.state.method
        if "block" in METHOD_PARAMS[method] and self.state.block is None:  # the CAM family
            self._fail(f"Choose a block for {METHOD_NAMES[method]}.")
            return
        on_device = self.capture_model_for if self.device != "cpu" else None
        job = _map_job(self.state, self.capture_model, on_device, self.device, self.x)
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
        steps = self.state.curve_steps
        references = random_references(self.explorer_state.attributions, self.result, steps)
        job = Job(faithfulness_curves, model, self.x.to(device), self.result.heatmap, self.result.target,
                  steps=steps, random_scores=references, wants_progress=True)
        self._start(job, "Faithfulness", f"{result_name(self.result)}: deletion and insertion curves…",
                    self._on_curves)

    def run_sanity_check(self) -> None:
        """The map on screen again with the top blocks randomised in cascade, on a worker (on a copy of the
        network: the original goes on serving the other views)."""
        self._job_label = "Sanity check"
        if self.result is None or self.capture_model is None or self.x is None:
            self._fail("Compute a map first: the sanity check randomises the model behind the map on screen.")
            return
        model, device = self._evidence_model()
        try:
            blocks = sanity_blocks(model, self.state.sanity_steps)
        except ValueError as e:
            self._fail(str(e))
            return
        r = self.result
        explain = map_explainer(self.x.to(device), r.method, r.target, **self._map_kwargs)
        job = Job(sanity_check, model, explain, original=r.heatmap, blocks=blocks, wants_progress=True)
        self._start(job, "Sanity check", f"{result_name(r)}: randomising {len(blocks)} blocks in cascade…",
                    self._on_sanity)

    def cancel(self) -> None:
        """Ask the running attribution to stop; the panel returns to idle when it has."""
        if self._job is not None:
            self._job.cancel()
            self.controls.cancel_button.setEnabled(False)
            self.status.setText("Cancelling…")

    def shutdown(self, msecs: int = 30000) -> bool:
        """Cancel and wait for the worker (before the model or the panel goes away)."""
        self.cancel()
        return self.runner.wait(msecs)

    def _on_progress(self, job, done, total) -> None:
        if job is self._job:
            self.controls.show_progress(done, total)

    def _on_success(self, job, result) -> None:
        if job is not self._job:
            return
        self._job = None
        self.result = result
        seconds = time.monotonic() - self._started
        self.status.setText(done_text(result, seconds, self.categories))
        # An empty map (or a fallback to the CPU) is said in the warning colour, never left silent.
        self._set_status_warning(bool(result.notice))
        self.record = AttributionRecord(result, seconds)
        self._map_kwargs = job.map_kwargs
        self._set_running(False)
        self._show_result()
        self._show_evidence(None)
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
        self.plot_box.show_curves(self.record, self.categories, True)
        d, i = curves["deletion"], curves["insertion"]
        self.status.setText(f"{result_name(self.result)}: deletion AUC {d.auc:.3f} (random {d.random_auc:.3f}), "
                            f"insertion AUC {i.auc:.3f} (random {i.random_auc:.3f}) in {seconds:.1f} s")
        self._set_status_warning(not (d.better_than_random and i.better_than_random))
        self.faithfulness_finished.emit(self.record)

    def _on_sanity(self, job, check) -> None:
        seconds = self._add_evidence(job, sanity=check)
        if seconds is None:
            return
        self.sanity_strip.show_sanity(self.record, True)
        self.evidence_tabs.setCurrentIndex(1)
        self.status.setText(f"{result_name(self.result)}: sanity check {self.record.verdict()} in {seconds:.1f} s")
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
        self.controls.set_running(running, has_map=self.result is not None)

    def _set_status_warning(self, on: bool) -> None:
        self.status.setStyleSheet(f"color: {WARNING_COLOR};" if on else "")

    # ------------------------------------------------------------------ drawing

    def _show_result(self) -> None:
        """The map on screen (or the empty state), the display box as it is drawn, and IG's delta line."""
        r = self.result
        signed = self.view.show_result(r, self.state.display, self.state.opacity, self.categories)
        self.display_row.display_combo.setEnabled(r is not None and r.signed)
        if r is not None:  # an unsigned map is shown (and labelled) as absolute
            self.display_row.show_display("signed" if signed else "absolute")
        self.delta_label.setText(delta_text(r))

    def delta_flagged_shown(self) -> bool:
        """Whether the panel currently shows the convergence warning."""
        return "⚠" in self.delta_label.text()

    def _show_evidence(self, record: AttributionRecord | None) -> None:
        """`record`'s curves and sanity strip (None: their empty states)."""
        self.plot_box.show_curves(record, self.categories, self.result is not None)
        self.sanity_strip.show_sanity(record, self.result is not None)

    def _on_table_row(self, row: int) -> None:
        """A row picked: show its curves and sanity strip (its map stays the one computed last)."""
        records = self.explorer_state.attributions
        if row < len(records):
            self._show_evidence(records[row])

    # ------------------------------------------------------------------ export

    def export_overlay_png(self, path: str | Path, width: int = 900) -> Path:
        """The heatmap over the image with its title and colour bar."""
        if self.result is None:
            raise ValueError("no attribution to export: run a method first")
        return self.view.export_png(path, width)

    def _export_dialog(self) -> None:
        name = f"attribution_{self.result.method}.png" if self.result else "attribution.png"
        path, _ = QFileDialog.getSaveFileName(self, "Export attribution", name, "PNG image (*.png)")
        if path:
            try:
                self.export_overlay_png(path)
            except (OSError, ValueError) as e:
                self.export_failed.emit(str(e))


def _map_job(state: AttributionPanelState, capture_model, capture_model_for, device: str, x) -> Job:
    """The job that computes `state`'s map of `x`: on `device` through `capture_model_for` when given (the
    CPU computes it instead when the GPU runs out of memory), else on the CPU's `capture_model`."""
    from explorer.core.attribution.methods import attribute, attribute_on_device

    kwargs = dict(params=state.params)
    if "block" in METHOD_PARAMS[state.method]:  # the CAM family
        kwargs.update(node=state.block, branch=state.branch)
    if capture_model_for is not None:
        job = Job(attribute_on_device, capture_model_for, x, state.method, state.target, device=device,
                  wants_progress=True, **kwargs)
    else:
        job = Job(attribute, capture_model, x, state.method, state.target, wants_progress=True, **kwargs)
    job.map_kwargs = kwargs  # the sanity check recomputes the map with them
    return job


def _forward(child: str, name: str) -> property:
    return property(lambda self: getattr(getattr(self, child), name), doc=f"The {child}'s `{name}`.")


for _child, _names in FORWARDED.items():
    for _name in _names:
        setattr(AttributionPanel, _name, _forward(_child, _name))
