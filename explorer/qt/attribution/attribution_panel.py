"""Attributions of the image on screen: which pixels (or which part of a block's map) made the network
choose a class. Integrated Gradients, Saliency, Grad-CAM on a block or one branch, and Occlusion.

The computation runs on a worker thread (in the image panels' lanes of explorer.qt.workers.JobRunner); the
panel shows its progress, can cancel it (captum stops at its next forward), and draws the heatmap over the
input image when the result arrives on the UI thread. One job at a time: running again cancels the previous.

Beside the map, the evidence that it means something (explorer.core.attribution.faithfulness): its deletion and
insertion curves with their random-order references, its metrics (SRG, ROAD, smooth and efficient MPRT, each an
interval over noise seeds beside its reference: metrics_panel.py), a table of every method computed for the image
that ranks them only where the metrics agree, and the strip of maps of the model-randomisation sanity check. Where the object is known — a drawn sample's
shape, or a box a person drags on the map (`GroundTruth`, ground_truth.py) — the map is measured against it:
the pointing game and the share of positive attribution inside the object, in a line under the map, beside
the curves and in the table. The table's rows live in the window's
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
metrics_finished(object)       the AttributionRecord with its metrics (SRG, ROAD, smooth and efficient MPRT)
attribution_failed(str)        an error message for the window's status bar (a map, curves or a sanity check)
attribution_cancelled()        the running job stopped at the user's request
export_failed(str)             an export could not be written

The panel composes the room's parts and runs the jobs: `AttributionControls` (attribution_controls.py)
writes the method and its parameters into `state`; `AttributionMapView` and `MapDisplayRow`
(attribution_map.py) draw the map; `FaithfulnessCurves` and `EvidenceTabs` (attribution_evidence.py) draw
the evidence. The children's widgets are reachable on the panel by their old names (`FORWARDED`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from explorer.core.attribution.catalogue import METHOD_NAMES, METHOD_PARAMS, category_label, done_text, result_name
from explorer.core.attribution.faithfulness import AttributionRecord
from explorer.core.session import events as ev
from explorer.core.session.session import Session
from explorer.core.session.state import ExplorerState
from explorer.core.text import fmt_branches_off
from explorer.qt.attribution.attribution_controls import AttributionControls
from explorer.qt.attribution.attribution_evidence import EvidenceTabs
from explorer.qt.attribution.attribution_map import AttributionMapView, MapDisplayRow, MapFirstSplitter, delta_text
from explorer.qt.attribution.ground_truth import GroundTruth
from explorer.qt.panels import UNLEARNED, unlearned
from explorer.qt.theme import WARNING_COLOR
from explorer.qt.workers import Lanes

__all__ = ["METHOD_NAMES", "METHOD_PARAMS", "AttributionPanel"]

#: Widest the column of controls grows (pixels): its combo boxes show ~20 characters and pop up wide.
CONTROLS_MAX_WIDTH = 280
SLOT = "attribution"
#: What the panel answers for by its children's names: the controls' setters (set_method, target,
#: set_gradcam_layer) and the widgets the window, tests and benches reach.
FORWARDED = {
    "controls": ("set_method", "target", "set_gradcam_layer",
                 "method_combo", "target_combo", "ig_steps", "ig_baseline", "internal_batch", "occlusion_window",
                 "occlusion_stride", "block_combo", "branch_combo", "cam_map", "form", "_rows", "run_button",
                 "cancel_button", "progress", "faithfulness_button", "curve_steps", "sanity_button", "sanity_steps",
                 "metrics_button"),
    "display_row": ("display_combo", "opacity_slider", "export_button"),
    "view": ("title", "box", "image_item", "heat_item", "colorbar"),
    "plot_box": ("curve_plot", "curve_legend", "curve_items", "curve_caption"),
    "evidence_tabs": ("table", "ranking_label"),
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
    metrics_finished = Signal(object)
    attribution_failed = Signal(str)
    attribution_cancelled = Signal()
    export_failed = Signal(str)

    def __init__(self, parent=None, *, runner: Lanes, session: Session | None = None,
                 explorer_state: ExplorerState | None = None):
        super().__init__(parent)
        #: Runs the maps and their evidence and holds their records (the window's session when given; a panel on
        #: its own makes one on its runner).
        self.session = session if session is not None else Session(
            explorer_state if explorer_state is not None else ExplorerState(), runner.runner, prepares_classifier=False)
        self.explorer_state = self.session.state
        self.attributions = self.session.attributions
        self.state = self.attributions.choices  #: what the next map is to be (the controls are bound to it)
        self.runner = runner  # the image panels' lane group: one job at a time among them
        self._device = "cpu"
        self.graph = None
        self.categories: list[str] = []
        self.image_rgb: np.ndarray | None = None
        self._image_key = None  # the state's ResultKey when the image was given: the map and jobs are for it
        self._job: int | None = None  # the serial of the running job (its callbacks check it)
        self._serial = 0
        self._job_label = "Attribution"
        self._evidence: AttributionRecord | None = None  # the record whose curves and strip are shown

        self.controls = AttributionControls(self.state)
        self.display_row = MapDisplayRow(self.state.opacity)
        self.view = AttributionMapView()
        #: The map measured against the object (a drawn sample's shape, or a box dragged on the map).
        self.truth = GroundTruth(self.session, self.view)
        #: The curves, the methods table and the sanity strip, as tabs beside the map (hidden until used).
        self.evidence_tabs = EvidenceTabs()
        self.plot_box = self.evidence_tabs.curves  # the deletion and insertion curves, in the Curves tab
        self.sanity_strip = self.evidence_tabs.strip
        self._arrange()
        self._connect()
        self.set_method(self.state.method)
        self._set_running(False)
        self._show_result()
        self._show_records()

    # ------------------------------------------------------------------ construction

    def _arrange(self) -> None:
        """The column of controls, then the map beside the evidence tabs (a splitter the person can move)."""
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.delta_label = QLabel()
        self.delta_label.setWordWrap(True)
        self.delta_label.setTextFormat(Qt.TextFormat.RichText)
        # The controls in a narrow column: across the dock the fields stretched to its width; at 374 px (one row of
        # evidence buttons, the display row) they left the map and the curves 490 px of a laptop's 876.
        self.column = QWidget(self)
        self.column.setMaximumWidth(CONTROLS_MAX_WIDTH)
        column = QVBoxLayout(self.column)
        column.setContentsMargins(0, 0, 0, 0)
        for w in (self.controls, self.status, self.delta_label):
            column.addWidget(w)
        column.addStretch(1)
        # The map, with how it is shown under it and the line that measures it against the object.
        self.map_box = QWidget(self)
        under = QVBoxLayout(self.map_box)
        under.setContentsMargins(0, 0, 0, 0)
        under.addWidget(self.view, 1)
        under.addWidget(self.display_row)
        under.addWidget(self.truth)
        # Beside it the evidence (curves, methods, sanity check) as tabs: a dock is short and wide, and the map
        # is square, so the evidence takes width, not the map's height.
        self.results_split = MapFirstSplitter(self.view)
        self.results_split.addWidget(self.map_box)
        self.results_split.addWidget(self.evidence_tabs)
        self.results_split.setChildrenCollapsible(False)
        self.results_split.setStretchFactor(0, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)  # the dock frames it already: 11 px margins were 14 px of map
        layout.addWidget(self.column)
        layout.addWidget(self.results_split, 1)

    def _connect(self) -> None:
        """The controls to the panel's setters and jobs; the window's state to the records and the key."""
        self.controls.run_button.clicked.connect(self.run)
        self.controls.cancel_button.clicked.connect(self.cancel)
        self.controls.faithfulness_button.clicked.connect(self.run_faithfulness)
        self.controls.sanity_button.clicked.connect(self.run_sanity_check)
        self.controls.metrics_button.clicked.connect(self.run_metrics)
        self.display_row.display_chosen.connect(self.set_display)
        self.display_row.opacity_chosen.connect(self.set_opacity)
        self.display_row.export_button.clicked.connect(lambda: _export_dialog(self))
        self.evidence_tabs.table.row_chosen.connect(self._on_table_row)
        self.explorer_state.connect("attributions", lambda _records: self._show_records())
        self.truth.changed.connect(self._show_truth)
        self.explorer_state.connect("result_key", self._follow_key)
        self.session.on(ev.MapComputed, self._on_success)
        self.session.on(ev.CurvesComputed, self._on_curves)
        self.session.on(ev.SanityChecked, self._on_sanity)
        self.session.on(ev.MetricsComputed, self._on_metrics)

    # -- what the session holds, under the names the window and the tests use

    @property
    def device(self) -> str:
        """Where the gradient methods run: the classifier's device ("cpu", "cuda:0")."""
        return self._device

    @device.setter
    def device(self, device: str) -> None:
        self._device = device
        self.attributions.run_on(device)

    @property
    def x(self):
        """The network input the maps explain (on the CPU), or None."""
        return self.attributions.input_x

    @property
    def result(self):
        """The map on screen (an AttributionResult), or None."""
        return self.attributions.result

    @property
    def record(self) -> AttributionRecord | None:
        """The row of `result`, with its evidence so far."""
        return next((r for r in self.explorer_state.attributions if r.result is self.result), None)

    # ------------------------------------------------------------------ inputs

    def set_model(self, capture_model, graph, categories: list[str] | None = None, capture_model_for=None) -> None:
        """The block graph and class names of the network explained: the session's capture networks, or
        `capture_model` (a CaptureModel on the CPU) when given, with `capture_model_for(device)` for runs on
        `self.device`."""
        self.cancel()
        if capture_model is not None:
            self.attributions.use(capture_model_for or (lambda _device: capture_model))
        else:
            self.attributions.use(None)
        self.graph = graph
        self.categories = list(categories or [])
        self.controls.populate_targets(self.categories)
        self.controls.set_graph(graph)
        self._clear_results()

    def set_image(self, x, image_rgb: np.ndarray | None = None, top1: int | None = None) -> None:
        """The preprocessed image (1, 3, H, W) and its display RGB (H, W, 3 uint8); clears the heatmap."""
        self.cancel()
        self.attributions.set_input(x, self.device)
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
        job, self._job = self._job, None  # the session stopped it; its late news is not this panel's
        self.set_image(None)
        self.status.setText(f"{self._job_label} stopped: {why}." if job is not None else "")
        self._set_status_warning(False)

    def _clear_results(self) -> None:
        """The map, its curves, its sanity strip and the methods table belong to the model and image that
        made them: they go when either changes."""
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

    def run(self) -> None:
        """Start the chosen method on a worker (cancelling one still running)."""
        try:
            self.state.target = self.target()
        except ValueError as e:
            self._job_label = "Attribution"
            self._fail(str(e))
            return
        st = self.state
        if "block" in METHOD_PARAMS[st.method] and st.block is None:  # the CAM family
            self._job_label = "Attribution"
            self._fail(f"Choose a block for {METHOD_NAMES[st.method]}.")
            return
        if self._start("Attribution", f"{METHOD_NAMES[st.method]}: running…", self.attributions.run, st.method,
                       st.target, block=st.block, branch_index=st.branch, params=st.params):
            self.attribution_started.emit(st.method)

    def _start(self, label: str, text: str, request, *args, **kwargs) -> bool:
        """Ask the session for a job (`request(*args, **kwargs)`): progress bar and Cancel for it; whether it
        started (a request it refuses is said in the status line)."""
        self._job_label = label
        self._serial += 1
        serial = self._serial
        self._job = serial
        try:
            request(*args, on_progress=lambda done, total: self._on_progress(serial, done, total),
                    on_end=lambda outcome: self._on_end(serial, outcome), **kwargs)
        except (ValueError, RuntimeError) as e:
            self._job = None
            self._fail(str(e))
            return False
        if self._job == serial:  # still running (an InlineRunner's job has ended already)
            self._set_running(True)
            self.status.setText(text)
            self._set_status_warning(False)
        return True

    def run_faithfulness(self) -> None:
        """Deletion and insertion curves of the map on screen, each with its random-order reference, on a
        worker (progress counts batched forwards)."""
        self._start("Faithfulness", f"{result_name(self.result)}: deletion and insertion curves…",
                    self.attributions.curves, self.state.curve_steps)

    def run_sanity_check(self) -> None:
        """The map on screen again with the top blocks randomised in cascade, on a worker (on a copy of the
        network: the original goes on serving the other views)."""
        self._start("Sanity check", f"{result_name(self.result)}: randomising the top blocks in cascade…",
                    self.attributions.sanity, self.state.sanity_steps)

    def run_metrics(self) -> None:
        """SRG, ROAD, smooth and efficient MPRT of the map on screen, each over noise seeds, on a worker."""
        self._start("Metrics", f"{result_name(self.result)}: SRG, ROAD, smooth and efficient MPRT…",
                    self.attributions.metrics, self.state.curve_steps)

    def cancel(self) -> None:
        """Ask the running attribution to stop; the panel returns to idle when it has."""
        if self._job is not None:
            self.attributions.cancel()
            self.controls.cancel_button.setEnabled(False)
            self.status.setText("Cancelling…")

    def shutdown(self, msecs: int = 30000) -> bool:
        """Cancel and wait for the worker (before the model or the panel goes away)."""
        self.cancel()
        return self.runner.wait(msecs)

    def _on_progress(self, serial: int, done, total) -> None:
        if serial == self._job:
            self.controls.show_progress(done, total)

    def _on_end(self, serial: int, outcome: str) -> None:
        if serial != self._job:  # superseded by a newer run, or its image went: that one owns the UI
            return
        self._job = None
        self._set_running(False)
        if outcome == "failed":
            problem = self.explorer_state.problem
            self._fail(problem.message if problem is not None else "unknown error")
        elif outcome == "cancelled":
            self.status.setText(f"{self._job_label} cancelled.")
            self._set_status_warning(False)
            self.attribution_cancelled.emit()

    def _on_success(self, event: ev.MapComputed) -> None:
        result = event.result
        # An empty map (or a fallback to the CPU) is said in the warning colour, never left silent.
        self._say_result(done_text(result, event.seconds, self.categories), bool(result.notice))
        self._show_result()
        self._show_evidence(None)
        self.attribution_finished.emit(result)

    def _on_curves(self, event: ev.CurvesComputed) -> None:
        if event.result is not self.result:
            return
        self._show_evidence(self.record)
        self.evidence_tabs.setCurrentWidget(self.plot_box)
        d, i = event.curves["deletion"], event.curves["insertion"]
        self._say_result(f"{result_name(self.result)}: deletion AUC {d.auc:.3f} (random {d.random_auc:.3f}), "
                         f"insertion AUC {i.auc:.3f} (random {i.random_auc:.3f}) in {event.seconds:.1f} s",
                         not (d.better_than_random and i.better_than_random))
        self.faithfulness_finished.emit(self.record)

    def _on_sanity(self, event: ev.SanityChecked) -> None:
        if event.result is not self.result:
            return
        self.sanity_strip.show_sanity(self.record, True, self.unlearned())
        self.evidence_tabs.setCurrentWidget(self.sanity_strip)
        self._say_result(f"{result_name(self.result)}: sanity check {self.record.verdict()} in {event.seconds:.1f} s",
                         event.check.flagged)
        self.sanity_finished.emit(self.record)

    def _on_metrics(self, event: ev.MetricsComputed) -> None:
        if event.result is not self.result:
            return
        self._show_evidence(self.record)
        self.evidence_tabs.setCurrentWidget(self.evidence_tabs.metrics)
        cleared = sum(s.clears_reference for s in event.scores.values())
        self._say_result(f"{result_name(self.result)}: {cleared} of {len(event.scores)} metrics clear their "
                         f"references in {event.seconds:.1f} s", cleared < len(event.scores))
        self.metrics_finished.emit(self.record)

    def _fail(self, message: str) -> None:
        self.status.setText(f"{self._job_label} failed: {message}")
        self._set_status_warning(True)
        self.attribution_failed.emit(message)

    def _set_running(self, running: bool) -> None:
        self.controls.set_running(running, has_map=self.result is not None)

    def _set_status_warning(self, on: bool) -> None:
        self.status.setStyleSheet(f"color: {WARNING_COLOR};" if on else "")

    def unlearned(self) -> bool:
        """Whether the maps are of a network with random weights (the window's state knows; a panel on its own
        that was given a network does not, and says nothing)."""
        return unlearned(self.explorer_state.loaded)

    def _say_result(self, text: str, warn: bool) -> None:
        """A result in the status line: in the warning colour when `warn`, and with random weights, said so."""
        if self.unlearned():
            text, warn = f"{text} — ⚠ {UNLEARNED}", True
        off = self.explorer_state.result_key.off
        if off:  # the map is the modified network's (the key drops it when the switches change)
            text, warn = f"{text} — ⚠ modified network: {fmt_branches_off(*off)}", True
        self.status.setText(text)
        self._set_status_warning(warn)

    # ------------------------------------------------------------------ drawing

    def _show_result(self) -> None:
        """The map on screen (or the empty state), the display box as it is drawn, and IG's delta line."""
        r = self.result
        signed = self.view.show_result(r, self.state.display, self.state.opacity, self.categories)
        self.display_row.display_combo.setEnabled(r is not None and r.signed)
        if r is not None:  # an unsigned map is shown (and labelled) as absolute
            self.display_row.show_display("signed" if signed else "absolute")
        self.delta_label.setText(delta_text(r))
        self.truth.show_result(r)

    def _show_evidence(self, record: AttributionRecord | None) -> None:
        """`record`'s curves (with its localisation, where the object is known) and sanity strip (None: their
        empty states)."""
        self._evidence = record
        truth = self.truth.caption(record.result) if record is not None else ""
        self.evidence_tabs.show_curves(record, self.categories, self.result is not None, truth, self.unlearned())
        self.evidence_tabs.show_metrics(record, self.categories, self.truth.localise(record.result)
                                        if record is not None else None, self.unlearned())
        self.sanity_strip.show_sanity(record, self.result is not None, self.unlearned())

    def _show_records(self) -> None:
        """The methods table, each map measured against the object where it is known."""
        self.evidence_tabs.show_records(self.explorer_state.attributions, self.truth.localise, self.unlearned())

    def _show_truth(self) -> None:
        """The object's pixels changed (a box drawn or cleared): the table and the curves' line measure again."""
        self._show_records()
        shown = self._evidence.result if self._evidence is not None else None
        record = next((r for r in self.explorer_state.attributions if r.result is shown), None)
        if record is not None:
            self._show_evidence(record)

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


def _export_dialog(panel: AttributionPanel) -> None:
    """Export's file dialog, then the map's PNG (a failure is told with `export_failed`)."""
    name = f"attribution_{panel.result.method}.png" if panel.result else "attribution.png"
    path, _ = QFileDialog.getSaveFileName(panel, "Export attribution", name, "PNG image (*.png)")
    if path:
        try:
            panel.export_overlay_png(path)
        except (OSError, ValueError) as e:
            panel.export_failed.emit(str(e))


def _forward(child: str, name: str) -> property:
    return property(lambda self: getattr(getattr(self, child), name), doc=f"The {child}'s `{name}`.")


for _child, _names in FORWARDED.items():
    for _name in _names:
        setattr(AttributionPanel, _name, _forward(_child, _name))
