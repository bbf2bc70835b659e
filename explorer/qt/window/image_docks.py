"""The image side of the window: classification, per-branch activations, attributions, branch shares.

`ImageDocks` builds the four panels as dock widgets of the main window and wires them together:
the classify panel's forward of an image also captures every branch's output (on the classifier's
device), and the activation view shows that capture as it is — no second forward. The attribution
panel and the branch-share charts run their own gradient passes through a CPU `CaptureModel` of the
loaded network, on the image's network input; they share one worker thread.

What the panels show belongs to the window's `ExplorerState.result_key` (the model, its weights, the image):
a late image or capture model of a previous key is dropped, and when the weights of a model arrive the
image on screen (`ExplorerState.image`, a file or a pasted picture) is classified again.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtWidgets import QApplication, QDockWidget, QMainWindow, QScrollArea, QWidget

from explorer.core.session import events as ev
from explorer.core.session.attributions import cpu_input
from explorer.core.session.session import Session
from explorer.qt.microscope.activation_view import ActivationView
from explorer.qt.attribution.attribution_panel import AttributionPanel
from explorer.qt.attribution.branch_share_chart import BranchSharePanel
from explorer.qt.microscope.channel_panel import ChannelPanel
from explorer.qt.classify.classify_panel import ClassifyPanel
from explorer.qt.workers import JobRunner


#: Share of the window's height the bottom docks get by default. Measured at 1280×800 (window 1264×760) and
#: 1600×1000 (1280×860) under Xvfb: at the old 340 px the attribution map was drawn ~80 px tall; at half the
#: height it is ~250 px, and the graph above still shows an expanded Inception block whole at a readable zoom;
#: a little under half leaves the Paper table tab eight rows at 1280×860 (at 1264×760 the graph page's minimum
#: height caps the docks at 354 px either way).
DOCK_SHARE = 0.48
#: Share of the window's height the classify dock gets while a batch is on screen.
BATCH_DOCK_SHARE = 0.5


class _PanelHolder(QWidget):
    """Holds a panel in a dock's scroll area, which then scrolls only below the panel's minimum size.

    A panel whose layout has a word-wrapping label has height-for-width, and a resizable scroll area
    gives such a widget its preferred height for the width, not what it needs: a scroll bar appeared
    at the default window size with the whole panel fitting above it."""

    def __init__(self, panel: QWidget):
        super().__init__()
        self.panel = panel
        panel.setParent(self)
        panel.installEventFilter(self)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return self.panel.minimumSizeHint()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return self.panel.sizeHint()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.panel.setGeometry(self.rect())

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        if obj is self.panel and event.type() == QEvent.Type.LayoutRequest:
            QApplication.postEvent(self, QEvent(QEvent.Type.LayoutRequest))  # the scroll area re-reads our size
        return False


class ImageDocks(QObject):
    """Owns the image panels of a main window (which calls `shutdown`); they follow the session's weights and the
    graph's selection through `state.selection`."""

    def __init__(self, window: QMainWindow, *, runner: JobRunner, session: Session, classify_sample: bool = True):
        super().__init__(window)
        self.window = window
        self.session = session  #: owns the capture networks (explorer.core.session.session.CaptureNetworks)
        self.state = session.state
        # One at a time: the panels' jobs share the capture network and the per-device networks.
        self.runner = runner.lanes("images", threads=1, parent=self)
        #: The ResultKey (model, weights) whose CPU capture network the gradient panels have (None: none yet).
        self.network_key = None
        self.model_key = None  #: the ResultKey (model, weights) the panels were last given (model_ready)
        self._sample_pending = classify_sample
        session.on(ev.NetworkReady, self._on_network)
        session.on(ev.WeightsLoaded, self._on_weights)
        self.state.connect("selection", self._on_selection)

        self.classify = ClassifyPanel(window, runner=runner, session=session)
        self.activations = ActivationView(window)
        self.attribution = AttributionPanel(window, runner=self.runner, session=session)
        self.shares = BranchSharePanel(window, runner=self.runner, session=session)
        self.channel = ChannelPanel(window, runner=self.runner, session=session)
        # All four share the bottom, as tabs: the full width suits the top-5 chart and the branch
        # mosaics, and the graph keeps the middle of the window.
        self.classify_dock = self._dock("Classify", "classify_dock", self.classify,
                                        Qt.DockWidgetArea.BottomDockWidgetArea)
        self.activation_dock = self._dock("Activations", "activation_dock", self.activations,
                                          Qt.DockWidgetArea.BottomDockWidgetArea)
        self.attribution_dock = self._dock("Attributions", "attribution_dock", self.attribution,
                                           Qt.DockWidgetArea.BottomDockWidgetArea)
        self.shares_dock = self._dock("Branch shares", "shares_dock", self.shares, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.channel_dock = self._dock("Channel", "channel_dock", self.channel, Qt.DockWidgetArea.BottomDockWidgetArea)
        window.tabifyDockWidget(self.classify_dock, self.activation_dock)
        window.tabifyDockWidget(self.activation_dock, self.attribution_dock)
        window.tabifyDockWidget(self.attribution_dock, self.shares_dock)
        window.tabifyDockWidget(self.shares_dock, self.channel_dock)
        self.channel.on_screen = False  # a tab behind the Classify tab until raised
        self.channel_dock.visibilityChanged.connect(self.channel.set_on_screen)
        self.classify_dock.raise_()

        self.classify.image_shown.connect(self._on_image_shown)
        self.classify.failed.connect(self._status)
        self.classify.batch_started.connect(self._give_batch_room)
        self.attribution.attribution_failed.connect(self._status)
        self.shares.shares_failed.connect(self._status)
        self.channel.failed.connect(self._status)
        self.activations.channel_selected.connect(self._show_channel)
        for w in (self.activations, self.attribution, self.shares):
            w.export_failed.connect(self._status)

    def _dock(self, title: str, name: str, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self.window)
        dock.setObjectName(name)
        # In a scroll area, so a panel's minimum size never forces the window larger (a projector).
        scroll = QScrollArea(dock)
        scroll.setWidgetResizable(True)
        scroll.setWidget(_PanelHolder(widget))
        dock.setWidget(scroll)
        self.window.addDockWidget(area, dock)
        return dock

    def docks(self) -> list[QDockWidget]:
        return [self.classify_dock, self.activation_dock, self.attribution_dock, self.shares_dock, self.channel_dock]

    def _give_batch_room(self) -> None:
        """A batch began: the classify dock comes forward and gets half the window's height for its table
        (not while presenting: the docks stay hidden, the slides show the batch's first image)."""
        if self.state.presenting:
            return
        dock = self.classify_dock
        dock.show()
        dock.raise_()
        want = round(self.window.height() * BATCH_DOCK_SHARE)
        if dock.height() < want and not dock.isFloating():
            self.window.resizeDocks([dock], [want], Qt.Orientation.Vertical)

    def _status(self, message: str) -> None:
        show = getattr(self.window, "show_status", None)
        show(message, 15000) if show is not None else self.window.statusBar().showMessage(message, 15000)

    # -- the model --------------------------------------------------------------------------

    @property
    def graph(self):
        """The block graph of the model on screen (None while a preview or nothing is)."""
        graph = self.state.graph
        return None if graph is None or getattr(graph, "is_preview", False) else graph

    def _on_weights(self, _event) -> None:
        """The session loaded weights (or retried a download): new ones are classified with from now on."""
        st = self.state
        if st.loaded is not None and self.graph is not None and self.model_key != st.result_key.for_model():
            self.model_ready(st.loaded, self.graph)

    def model_ready(self, loaded, graph) -> None:
        """The window's model has its weights: classify (and capture) with it."""
        self.network_key, self.model_key = None, self.state.result_key.for_model()
        self.activations.clear()
        self.classify.set_model(loaded, self.classify.device_combo.currentData(), graph=graph)
        self.session.attributions.prepare_network("cpu")  # NetworkReady follows
        again = self.state.image
        if self.classify.has_pending():
            pass  # a request the user made while the model loaded runs first, and replaces the re-run
        elif again is not None and again.available():
            # The image on screen stays on screen (a file or a pasted picture): classified again by the new model.
            self.classify.classify_input(again)
        elif self._sample_pending:
            from explorer.core.model.samples import sample_images

            samples = sample_images()
            if samples:
                self.classify.classify_paths([samples[0].path])
        self._sample_pending = False

    def _on_network(self, event: ev.NetworkReady) -> None:
        """The session's CPU capture network of the model on screen is built (the session checked the key)."""
        if event.device != "cpu" or self.graph is None:
            return
        loaded = self.state.loaded
        self.network_key = self.state.result_key.for_model()
        self.attribution.set_model(None, self.graph, loaded.categories)  # the session's networks
        self.shares.set_model(None, self.graph)  # the session's networks
        self.channel.set_model(None, self.graph, loaded)  # the session's networks
        self.attribution.set_image(None)  # the previous model's image until the new one's arrives
        shown = self.state.shown_image
        if shown is not None and self._is_current(shown):
            self._hand_on(shown)

    # -- the image --------------------------------------------------------------------------

    def _is_current(self, shown) -> bool:
        """Whether `shown` was made for what is on screen now (one of a previous model may arrive late)."""
        return self.graph is not None and self.state.holds(getattr(shown, "key", None))

    def _on_image_shown(self, shown) -> None:
        if not self._is_current(shown):
            return
        if shown.capture is not None:
            # A new image must not move the graph's selection: the view follows the graph, not back.
            self.activations.blockSignals(True)
            try:
                self.activations.set_capture(self.graph, shown.capture, shown.rgb, off=getattr(shown.key, "off", None))
            finally:
                self.activations.blockSignals(False)
        else:
            self.activations.clear()
            notice = getattr(self.classify.classifier, "capture_error", None)
            if notice:
                self.activations.message.setText(f"Activations unavailable: {notice}")
        if self.network_key is not None:
            self._hand_on(shown)
        page = getattr(self.window, "graph_page", None)  # the window's graph page, where there is one
        selected = page.selected_block() if page is not None else None
        if selected:
            self.select_block(selected)

    def _hand_on(self, shown) -> None:
        """Give the gradient panels the image's network input; attributions run on the classifier's device
        (branch shares on the CPU, where their network is)."""
        if shown.x is None:
            return
        self.attribution.device = str(shown.x.device)
        x = cpu_input(shown.x)
        top1 = shown.result.top[0].index if shown.result is not None and shown.result.top else None
        self.attribution.set_image(x, shown.rgb, top1=top1)
        self.shares.set_image(x)

    def _show_channel(self, block: str, branch: int, channel: int) -> None:
        """A channel was clicked in Activations: the Channel panel shows what it looks for (not one of a
        previous model, whose capture Activations shows until the new model's image arrives)."""
        if not self.state.holds(self.network_key):
            return
        self.channel.show_channel(block, branch, channel, self.activations.detail_map())

    def _on_selection(self, key: str | None) -> None:
        """The graph's selection moved: follow the node it is in (a layer's key names its block first)."""
        graph = self.graph
        if not key or graph is None:
            return
        node = key
        while node not in graph.graph and "/" in node:
            node = node.rsplit("/", 1)[0]
        self.select_block(node)

    def select_block(self, name: str) -> None:
        """The graph's selection moved to `name`: follow it where it is a block."""
        if self.graph is None or name not in self.graph.graph or not self.graph.node(name).is_block:
            return
        if self.activations.capture is not None and name in self.activations.capture.branches:
            self.activations.show_block(name)
        if self.network_key is None:  # the panels still show the previous model until it is ready
            return
        self.shares.show_block(name)
        self.attribution.set_gradcam_layer(name, None)

    def shutdown(self) -> None:
        self.classify.shutdown()
        self.attribution.shutdown()
        self.shares.shutdown()
        self.channel.cancel()
        self.runner.cancel_all()
        self.runner.wait(20000)
