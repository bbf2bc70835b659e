"""The image side of the window: classification, per-branch activations, attributions, branch shares.

`ImageDocks` builds the four panels as dock widgets of the main window and wires them together:
a classified image is captured once through the `CaptureModel` (every branch's output kept), and
the activation view, the attribution panel and the branch-share charts all work from that capture.
The capture and the attribution jobs share one worker thread: a CaptureModel is one network.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow, QScrollArea

from explorer.qt.activation_view import ActivationView
from explorer.qt.attribution_panel import AttributionPanel
from explorer.qt.branch_share_chart import BranchSharePanel
from explorer.qt.classify_panel import ClassifyPanel
from explorer.qt.workers import Job, JobRunner


def _build_capture(module, graph):
    from explorer.core.capture import CaptureModel

    return CaptureModel(module, graph)


def _capture(capture_model, tensor, mean, std):
    """Capture one preprocessed image; also its de-normalised RGB (uint8 H×W×3) for the overlays."""
    import torch

    x = tensor[None].float()
    cap = capture_model.capture(x)
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    rgb = ((tensor.float() * s + m).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
    return x, cap, rgb


class ImageDocks(QObject):
    """Owns the image panels of a main window (which calls `model_ready`, `select_block`, `shutdown`)."""

    def __init__(self, window: QMainWindow, *, classify_sample: bool = True):
        super().__init__(window)
        self.window = window
        self.runner = JobRunner(self, threads=1)
        self.capture_model = None
        self.graph = None
        self.loaded = None
        self.last_shown = None
        self._sample_pending = classify_sample

        self.classify = ClassifyPanel(window)
        self.activations = ActivationView(window)
        self.attribution = AttributionPanel(window, runner=self.runner)
        self.shares = BranchSharePanel(window, runner=self.runner)
        # All four share the bottom, as tabs: the full width suits the top-5 chart and the branch
        # mosaics, and the graph keeps the middle of the window.
        self.classify_dock = self._dock("Classify", "classify_dock", self.classify,
                                        Qt.DockWidgetArea.BottomDockWidgetArea)
        self.activation_dock = self._dock("Activations", "activation_dock", self.activations,
                                          Qt.DockWidgetArea.BottomDockWidgetArea)
        self.attribution_dock = self._dock("Attributions", "attribution_dock", self.attribution,
                                           Qt.DockWidgetArea.BottomDockWidgetArea)
        self.shares_dock = self._dock("Branch shares", "shares_dock", self.shares, Qt.DockWidgetArea.BottomDockWidgetArea)
        window.tabifyDockWidget(self.classify_dock, self.activation_dock)
        window.tabifyDockWidget(self.activation_dock, self.attribution_dock)
        window.tabifyDockWidget(self.attribution_dock, self.shares_dock)
        self.classify_dock.raise_()

        self.classify.image_shown.connect(self._on_image_shown)
        self.classify.failed.connect(self._status)
        self.attribution.attribution_failed.connect(self._status)
        self.shares.shares_failed.connect(self._status)
        for w in (self.activations, self.attribution, self.shares):
            w.export_failed.connect(self._status)

    def _dock(self, title: str, name: str, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self.window)
        dock.setObjectName(name)
        # In a scroll area, so a panel's minimum size never forces the window larger (a projector).
        scroll = QScrollArea(dock)
        scroll.setWidgetResizable(True)
        scroll.setWidget(widget)
        dock.setWidget(scroll)
        self.window.addDockWidget(area, dock)
        return dock

    def docks(self) -> list[QDockWidget]:
        return [self.classify_dock, self.activation_dock, self.attribution_dock, self.shares_dock]

    def _status(self, message: str) -> None:
        self.window.statusBar().showMessage(message, 15000)

    # -- the model --------------------------------------------------------------------------

    def model_ready(self, loaded, graph) -> None:
        """The window's model has its weights: classify with it, and capture through it."""
        self.loaded, self.graph, self.capture_model = loaded, graph, None
        self.activations.clear()
        self.classify.set_model(loaded, self.classify.device_combo.currentData())
        self.runner.start("capture_model", Job(_build_capture, loaded.module, graph),
                          on_success=self._on_capture_model, on_failure=self._status)
        again = self.last_shown.source if self.last_shown is not None else None
        if again and Path(again).is_file():
            # The image on screen stays on screen: classified again by the new model.
            self.classify.classify_paths([again])
        elif self._sample_pending:
            from explorer.core.samples import sample_images

            samples = sample_images()
            if samples:
                self.classify.classify_paths([samples[0].path])
        self._sample_pending = False

    def _on_capture_model(self, capture_model) -> None:
        if self.loaded is None or capture_model.graph_name != self.loaded.name:
            return
        self.capture_model = capture_model
        self.attribution.set_model(capture_model, self.graph, self.loaded.categories)
        self.shares.set_model(capture_model, self.graph)
        if self.last_shown is not None:
            self._on_image_shown(self.last_shown)

    # -- the image --------------------------------------------------------------------------

    def _on_image_shown(self, shown) -> None:
        self.last_shown = shown
        if self.capture_model is None or getattr(shown, "tensor", None) is None:
            return
        t = self.loaded.transforms()
        self.runner.start("capture", Job(_capture, self.capture_model, shown.tensor, list(t.mean), list(t.std)),
                          on_success=self._on_capture, on_failure=self._status)

    def _on_capture(self, result) -> None:
        x, cap, rgb = result
        # A new image must not move the graph's selection: the view follows the graph, not back.
        self.activations.blockSignals(True)
        try:
            self.activations.set_capture(self.graph, cap, rgb)
        finally:
            self.activations.blockSignals(False)
        self.attribution.set_image(x, rgb, top1=int(cap.logits.argmax(1)[0]))
        self.shares.set_image(x)
        selected = getattr(self.window, "selected_block", lambda: None)()
        if selected:
            self.select_block(selected)

    def select_block(self, name: str) -> None:
        """The graph's selection moved to `name`: follow it where it is a block."""
        if self.graph is None or name not in self.graph.graph or not self.graph.node(name).is_block:
            return
        if self.activations.capture is not None and name in self.activations.capture.branches:
            self.activations.show_block(name)
        if self.capture_model is None:  # the panels still hold the previous model until it is ready
            return
        self.shares.show_block(name)
        self.attribution.set_gradcam_layer(name, None)

    def shutdown(self) -> None:
        self.classify.shutdown()
        self.attribution.shutdown()
        self.shares.shutdown()
        self.runner.cancel_all()
        self.runner.wait(20000)
