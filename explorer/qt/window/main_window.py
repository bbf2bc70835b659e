"""The explorer's main window: the block graph, input size, model and weights, details, presentation.

The window is a skin over an `ExplorerState` (explorer.core.session.state): the model, its graph and
weights, the input size and its trace, the expanded blocks, the selection and the image results
live there, and the widgets follow its announcements. Engine work that needs torch runs on the one
`JobRunner` and comes back as plain results, handed to the state on the UI thread. torch is never
imported here at module level, so the window paints before the first worker has imported it.

Menus and shortcuts come from one table (explorer.qt.window.actions); settings are bound to the state by
`WindowSettings`; finding a node is `explorer.core.graph.find`.

Signals
-------
graph_ready(str)        the named model's block graph is drawn
model_opened(str)       a model opened by reference (torchvision:NAME, timm:NAME, a file) is the window's
graph_drawn(str)        a drawing of the named model is on screen (the preview, or the live graph)
model_loaded(str)       its weights are loaded (pretrained, from a file, or random with a reason)
trace_updated()         shapes were retraced at a new input size
trace_failed(str, str)  the input size is too small: failing node, engine message
error_shown(str)        a message was shown in the error banner

Any CNN opens through `open_model(ref)` (File → Open model…, the Model menu's Recent section, or
`--model REF` on the command line): it is opened and its graph built in a worker, and only then
replaces the current model, which stays usable if opening fails.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QCompleter,
    QDockWidget,
    QFileDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QTabWidget,
    QToolBar,
    QWidget,
)

from explorer.core.session.state import ExplorerState, InputSize
from explorer.core.model.zoo import get_spec, model_names
from explorer.qt.window.actions import build_actions
from explorer.qt.window.exports import WindowExports
from explorer.qt.window.graph_page import GraphPage
from explorer.qt.window import help
from explorer.qt.window.model_menu import ModelMenu
from explorer.qt.window.overlay_menu import OverlayMenu
from explorer.qt.window.thumbnails import ThumbnailMenu
from explorer.qt.lecture.presentation import Presentation
from explorer.qt.window.status_line import StatusLine
from explorer.qt.window.window_settings import (
    APPLICATION,
    DEFAULT_MODEL,
    DOCK_LAYOUT_VERSION,
    MAX_RECENT,
    ORGANIZATION,
    WindowSettings,
    default_settings,
)
from explorer.qt.workers import Job, JobRunner, load_block_graph, load_weights, open_any_model

__all__ = ["APPLICATION", "DEFAULT_MODEL", "DOCK_LAYOUT_VERSION", "MAX_RECENT", "ORGANIZATION", "MainWindow",
           "default_settings"]

WEIGHT_FILTER = "Weights (*.pth *.pt *.bin *.safetensors);;All files (*)"
#: The image panels are built this long after the window is on screen (pyqtgraph costs half a second).
IMAGE_DOCKS_DELAY_MS = 60
#: The graph worker (which imports torch) starts right after the graph's first paint, or after this long.
ENGINE_FALLBACK_MS = 1500


def _open_reference(ref: str):
    """(reference, ModelSpec, BlockGraph) of what a user typed (a bare name resolves to torchvision's or
    timm's model of that name); runs on a worker, as resolving imports torchvision and timm."""
    from explorer.core.model.anycnn import resolve_reference
    from explorer.core.model.zoo import model_names

    ref = resolve_reference(ref)
    if ref in model_names():
        return ref, None, None
    spec, graph = open_any_model(ref)
    return ref, spec, graph


class _PasteRouter(QObject):
    """Ctrl+V in a text field pastes text only when the clipboard holds nothing but text; an image or
    files on the clipboard go to the window's Paste (classify) wherever the focus is."""

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.ShortcutOverride and event.matches(QKeySequence.StandardKey.Paste):
            mime = QApplication.clipboard().mimeData()
            if mime is not None and (mime.hasImage() or mime.hasUrls()):
                event.ignore()  # the field does not claim the key: the window's Paste action gets it
                return True
        return False


class MainWindow(QMainWindow):
    graph_ready = Signal(str)
    model_opened = Signal(str)
    graph_drawn = Signal(str)
    model_loaded = Signal(str)
    trace_updated = Signal()
    trace_failed = Signal(str, str)
    error_shown = Signal(str)

    def __init__(self, model: str | None = None, *, weights: str = "auto", allow_download: bool = True,
                 settings: QSettings | None = None, restore: bool = True, classify_sample: bool = True, parent=None):
        super().__init__(parent)
        self.settings = settings if settings is not None else default_settings()
        self.state = ExplorerState()
        self.saved = WindowSettings(self.settings, self.state)
        self.weights_choice = weights
        self.allow_download = allow_download
        #: The application's one job runner (one pool): every widget's lanes are groups of it.
        self.jobs = JobRunner(self)
        # Two at once: the graph of a newly chosen model need not wait for a download to give up.
        self.runner = self.jobs.lanes("window", threads=2, parent=self)
        self.open_dialog = None
        self.compare_window = None
        self._classify_sample = classify_sample
        self._restore = restore
        self._shown_preview: str | None = None
        self._engine_started = False
        self._engine_waits = False
        self._engine_fallback: QTimer | None = None
        self.images = None  # the image panels, built just after the window is on screen

        self.setWindowTitle(APPLICATION)
        self.setAcceptDrops(True)
        self._default_size()
        self._build_ui()
        self.exports = WindowExports(self)
        self.actions = build_actions(self)
        self._build_model_menu()
        self.presentation = Presentation(self)
        self._paste_router = _PasteRouter(self)
        self._route_paste(self)
        self._bind_state()

        saved = self.saved.saved_model() if restore else DEFAULT_MODEL
        if restore:
            self.state.recent = self.saved.saved_recent()
        requested = model or saved
        # Not a zoo name: a reference to open, after the zoo's model (which stays if opening fails).
        opened = requested if requested not in model_names() else None
        name = DEFAULT_MODEL if opened else requested
        if restore:
            size, linked = self.saved.saved_input_size(get_spec(name).native_size)
            self.state.size_linked = linked
            self.state.input_size = size
            self.saved.restore_window(self)
        else:
            self.state.input_size = InputSize(*get_spec(name).native_size, 1)
        self.saved.bind()
        self.set_model(name, size=None)
        self.run_prompt = None
        if opened and model is None and opened.endswith(".py"):
            # A remembered Python file is code: it runs again only when the person says so.
            QTimer.singleShot(0, lambda: self._ask_to_run(opened))
        elif opened:
            self.open_model(opened)
        # pyqtgraph and the image panels cost half a second: after the first paint and the preview.
        QTimer.singleShot(IMAGE_DOCKS_DELAY_MS, self._build_image_docks)

    # -- the state, for readers (the window's own widgets follow it) ------------------------------

    @property
    def graph(self):
        return self.state.graph

    @property
    def trace(self):
        return self.state.trace

    @property
    def loaded(self):
        return self.state.loaded

    @property
    def model_name(self) -> str | None:
        return self.state.model

    @property
    def spec(self):
        return self.state.spec

    @property
    def model_ref(self) -> str | None:
        return self.state.model_ref

    @property
    def failed_node(self) -> str | None:
        return self.state.failed_node

    @property
    def recent_actions(self) -> list[QAction]:
        return self.model_menu_binding.recent_actions

    @property
    def expanded(self) -> frozenset[str]:
        return self.state.expanded

    @expanded.setter
    def expanded(self, blocks) -> None:
        self.state.expanded = frozenset(blocks)

    # -- construction ------------------------------------------------------------------------

    def _build_image_docks(self) -> None:
        """Classification, activations, attributions and branch shares, as docks."""
        if self.images is not None:
            return
        from explorer.qt.window.image_docks import ImageDocks

        self.images = ImageDocks(self, runner=self.jobs, state=self.state, classify_sample=self._classify_sample)
        self.images.classify.paste_shortcut.setEnabled(False)  # the window's Edit → Paste has Ctrl+V
        self.images.activations.block_changed.connect(self.graph_page.follow_block)
        self.images.shares.block_selected.connect(self.graph_page.follow_block)
        for dock in self.images.docks():
            self.view_menu.addAction(dock.toggleViewAction())
        self.resizeDocks([self.images.classify_dock], [340], Qt.Orientation.Vertical)
        if self._restore:
            self.saved.restore_docks(self)  # the docks' places, now that they exist
        if self.state.presenting:
            for dock in self.images.docks():
                dock.hide()
        self._route_paste(self.images.classify.parentWidget() or self)
        for panel in (self.images.classify, self.images.activations, self.images.attribution, self.images.shares):
            self._route_paste(panel)
        if self.loaded is not None and self.graph is not None and not getattr(self.graph, "is_preview", False):
            self.images.model_ready(self.loaded, self.graph)

    def _route_paste(self, root: QWidget) -> None:
        for w in root.findChildren(QAbstractSpinBox) + root.findChildren(QLineEdit):
            w.installEventFilter(self._paste_router)

    def _build_ui(self) -> None:
        """The graph and the paper's table as tabs in the middle, the toolbar, the Details dock, the status bar."""
        self._build_tabs(self._build_graph_page())
        self._build_toolbar()
        self._build_details_dock()
        self._build_status_bar()

    def _build_graph_page(self) -> QWidget:
        """The graph page (explorer.qt.window.graph_page); its widgets are the window's too, by name."""
        self.graph_page = page = GraphPage(self)
        self.view, self.weights_bar, self.banner, self.notice, self.caption = (
            page.view, page.weights_bar, page.banner, page.notice, page.caption)
        self.weights_bar.retry_requested.connect(self.retry_download)
        self.weights_bar.open_requested.connect(self.open_weights_dialog)
        self.weights_bar.cancel_requested.connect(self.cancel_download)
        return page.widget

    def _build_tabs(self, graph_page: QWidget) -> None:
        """The central tabs: the graph page, and the paper's table where it can be imported."""
        # The graph and the paper's table share the central area as tabs: the table gets the room it needs.
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(graph_page, "Graph")
        self.paper_table = None
        self.paper_dock = None  # the table is a tab now, not a dock
        try:
            from explorer.qt.shapes.paper_table import PaperTableWidget
        except ImportError:
            PaperTableWidget = None
        if PaperTableWidget is not None:
            self.paper_table = PaperTableWidget(self)
            self.tabs.addTab(self.paper_table, "Paper table")
        self.tabs.tabBar().setVisible(self.tabs.count() > 1)
        self.tabs.currentChanged.connect(lambda _i: self.graph_page.update_paper_table())
        self.setCentralWidget(self.tabs)

    def _build_toolbar(self) -> None:
        """The model, the input size and the node search."""
        tb = QToolBar("Graph", self)
        tb.setObjectName("graph_toolbar")
        self.toolbar = tb
        self.model_combo = QComboBox(self)
        for name in model_names():
            self.model_combo.addItem(get_spec(name).title, name)
        self.model_combo.setToolTip("The network to explore")
        self.model_combo.currentIndexChanged.connect(self._on_model_combo)
        tb.addWidget(self.model_combo)
        tb.addSeparator()
        self.size_control = self.graph_page.build_size_control()
        tb.addWidget(self.size_control)
        tb.addSeparator()
        self.find_edit = self.graph_page.build_find_edit()
        tb.addWidget(self.find_edit)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)

    def _build_details_dock(self) -> None:
        """The selected node's details, docked on the right."""
        self.details = self.graph_page.build_details()
        self.details_dock = QDockWidget("Details", self)
        self.details_dock.setObjectName("details_dock")
        self.details_dock.setWidget(self.details)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.details_dock)
        self.resizeDocks([self.details_dock], [380], Qt.Orientation.Horizontal)

    def _build_status_bar(self) -> None:
        """The status line; the model's totals, the weights and the busy bar on the right."""
        sb = self.statusBar()
        self.status_line = StatusLine(self)
        sb.addWidget(self.status_line, 1)
        self.busy = QProgressBar(self)
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(140)
        self.busy.setMaximumHeight(14)
        self.busy.hide()
        self.totals_label = QLabel(self)
        self.weights_label = QLabel(self)
        sb.addPermanentWidget(self.totals_label)
        sb.addPermanentWidget(self.weights_label)
        sb.addPermanentWidget(self.busy)

    def _build_model_menu(self) -> None:
        v = self.menus["&View"]
        for key in ("fit", "expand_all", "collapse_all"):
            self.toolbar.addAction(self.actions[key])
        v.addSeparator()
        v.addAction(self.details_dock.toggleViewAction())
        v.addAction(self.toolbar.toggleViewAction())
        v.addSeparator()
        self.overlay_menu = OverlayMenu(self, v)
        self.thumbnails = ThumbnailMenu(self, v)
        v.addSeparator()
        self.view_menu = v
        self.model_menu = self.menus["&Model"]
        self.model_menu_binding = ModelMenu(self.model_menu, self.state, self)
        self.model_menu_binding.zoo_model_chosen.connect(self.set_model)
        self.model_menu_binding.reference_chosen.connect(self.open_model)
        self.model_menu_binding.open_requested.connect(self.open_model_dialog)
        self.model_actions = self.model_menu_binding.group
        self.compare_action = self.actions["compare"]
        self.factorisation_action = self.actions["factorisation"]

    def _bind_state(self) -> None:
        st = self.state
        st.connect("input_size", self.graph_page.on_input_size)
        st.connect("size_linked", self.size_control.set_linked)
        st.connect("model", lambda _n: self._sync_model_widgets())
        st.connect("model_ref", lambda _r: self._sync_model_widgets())
        st.connect("model_status", lambda _s: self._sync_busy())
        st.connect("status_text", lambda text: self.show_status(text, 0, topic="model") if text else
                   self.status_line.clear("model"))
        st.connect("presenting", lambda _p: self._sync_busy())

    # -- actions (see explorer.qt.window.actions) ---------------------------------------------------------

    def open_images(self) -> None:
        if self.images is not None:
            self.images.classify.open_files()

    def open_folder(self) -> None:
        if self.images is not None:
            self.images.classify.open_folder()

    def paste(self) -> None:
        """Edit → Paste (Ctrl+V): text into the focused text field when the clipboard holds only text;
        otherwise the clipboard's image or files are classified, wherever the focus is."""
        focus = QApplication.focusWidget()
        mime = QApplication.clipboard().mimeData()
        text_only = mime is not None and mime.hasText() and not (mime.hasImage() or mime.hasUrls())
        if text_only and isinstance(focus, (QLineEdit, QAbstractSpinBox)):
            focus.lineEdit().paste() if isinstance(focus, QAbstractSpinBox) else focus.paste()
            return
        if self.images is not None and self.images.classify.paste():
            self._raise_classify_dock()

    def cancel_classification(self) -> None:
        if self.images is not None:
            self.images.classify.cancel()

    def show_graph_tab(self) -> None:
        self.tabs.setCurrentIndex(0)

    def show_paper_tab(self) -> None:
        if self.tabs.count() > 1:
            self.tabs.setCurrentIndex(1)

    def toggle_presentation(self) -> None:
        self.presentation.toggle()

    def open_factorisation(self):
        return self.open_compare(1)

    def show_shortcuts(self) -> None:
        help.show_shortcuts(self)

    def show_weights_help(self) -> None:
        help.show_weights_help(self)

    def show_about(self) -> None:
        help.show_about(self)

    def open_compare(self, tab: int = 0):
        """Show the Compare window (one per main window, non-modal) on tab 0 (compare) or 1 (factorisation)."""
        from explorer.qt.shapes.compare_window import CompareWindow

        opened = [r for r in [self.model_ref, *self.recent_models()] if r and r not in model_names()]
        if self.compare_window is None:
            size = self.state.input_size
            self.compare_window = CompareWindow(self.settings, self.model_name, size.hw, parent=self,
                                                opened=list(dict.fromkeys(opened)), runner=self.jobs)
        else:
            self.compare_window.add_models(opened)
        self.compare_window.show_tab(tab)
        self.compare_window.show()
        self.compare_window.raise_()
        self.compare_window.activateWindow()
        return self.compare_window

    def chrome_widgets(self) -> list[QWidget]:
        """What presentation mode hides: menus, toolbar, docks, status bar (the banners are suppressed)."""
        return [self.menuBar(), self.toolbar, self.tabs.tabBar(), self.statusBar(), self.details_dock,
                *(self.images.docks() if self.images is not None else [])]

    # -- model and weights -------------------------------------------------------------------

    def spec_title(self) -> str:
        return self.spec.title if self.spec is not None else ""

    def set_model(self, name: str, size: tuple[int, int] | None | bool = False) -> None:
        """Load `name`'s block graph in a worker, then its weights. size: None keeps the current
        input size, False (the default) switches to the model's native size."""
        spec = get_spec(name)
        if name == self.model_name and self.model_ref is None and self.graph is not None:
            return
        self.saved.save_expanded()
        self.runner.cancel("open")
        self.runner.cancel("weights")
        self._shown_preview = None
        self.state.begin_model(name, spec)
        if size is False:
            size = spec.native_size
        if size is not None:
            self.state.input_size = InputSize(size[0], size[1], self.state.input_size.batch)
        self.banner.set_message(None)
        self.notice.set_message(None)
        self.details.show_nothing()
        self.view.show_message(f"Loading {spec.title}…")
        if self._engine_started:
            self._start_graph_job(name)
        # The preview is drawn now, before any worker imports torch: the window paints it at once.
        self._show_preview(name)
        if not self._engine_started and not self._engine_waits:
            # The engine (torch) starts importing once the graph has painted: a worker importing torch
            # holds the interpreter for seconds, and the window would stay black until then.
            self._engine_waits = True
            self.view.viewport().installEventFilter(self)
            # A window that is never shown starts the engine after a while; stopped once a paint has.
            self._engine_fallback = QTimer(self, singleShot=True, interval=ENGINE_FALLBACK_MS)
            self._engine_fallback.timeout.connect(self._start_engine)
            self._engine_fallback.start()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.Paint and obj is self.view.viewport() and not self._engine_started:
            obj.removeEventFilter(self)
            QTimer.singleShot(0, self._start_engine)  # after this paint has reached the screen
        return False

    def _start_engine(self) -> None:
        if self._engine_started:
            return
        self._engine_started = True
        self.view.viewport().removeEventFilter(self)
        if self._engine_fallback is not None:
            self._engine_fallback.stop()
        if self.model_ref is None and self.model_name is not None and (self.graph is None or self._shown_preview):
            self._start_graph_job(self.model_name)

    def _start_graph_job(self, name: str) -> None:
        self.runner.start("graph", Job(load_block_graph, name), on_success=self._on_graph,
                          on_failure=self._on_graph_failed)

    def _show_preview(self, name: str) -> None:
        """Draw the shipped preview of `name` while the engine (torch) loads; shapes are those of
        the native size, so the preview is shown only when that is the size asked for."""
        from explorer.core.shapes.preview import load_preview

        if self.model_name != name or self.graph is not None:
            return
        shipped = load_preview(name)
        if shipped is None:
            return
        preview, trace = shipped
        size = self.state.input_size
        if trace.input_shape != (size.batch, trace.input_shape[1], size.height, size.width):
            return
        names = {b.name for b in preview.blocks()}
        with self.state.changes():
            self.state.graph, self.state.trace = preview, trace
            self.state.expanded = frozenset(b for b in self.saved.saved_expanded(name) if b in names)
        self.graph_page.redraw()
        self.graph_page.initial_view()
        self._shown_preview = name
        self.show_status(f"{self.spec_title()}: preview; the engine is loading…", 0, topic="model")
        self.graph_drawn.emit(name)

    def view_status(self, text: str) -> None:
        self.show_status(text)

    def _on_graph_failed(self, message: str) -> None:
        self.view.show_message(f"Could not build the block graph of {self.spec_title()}.")
        self.state.model_status = "failed"
        self.show_error(message)

    def _sync_model_widgets(self) -> None:
        """The combo and the Model menu show the current model (an opened one: its Recent entry)."""
        opened = self.model_ref is not None
        self.model_combo.blockSignals(True)
        # An opened model is in no zoo entry: the combo shows its title as a placeholder.
        self.model_combo.setPlaceholderText(self.spec_title() if opened else "")
        self.model_combo.setCurrentIndex(-1 if opened else max(0, self.model_combo.findData(self.model_name)))
        self.model_combo.blockSignals(False)
        self.setWindowTitle(f"{self.spec_title()} — {APPLICATION}" if self.spec is not None else APPLICATION)

    def _sync_busy(self) -> None:
        busy = self.state.model_status == "loading"
        self.busy.setVisible(busy and not self.state.presenting)

    def _on_model_combo(self, index: int) -> None:
        name = self.model_combo.itemData(index)
        if name:
            self.set_model(name)

    def _on_graph(self, graph) -> None:
        if graph.name != self.model_name:
            return
        from_preview = self._shown_preview == graph.name and self.graph is not None
        self._shown_preview = None
        names = {n.name for n in graph.blocks()}
        with self.state.changes():
            self.state.graph = graph
            if not from_preview:  # keep what the user expanded while the preview was up
                saved = self.saved.saved_expanded(self.model_ref or graph.name)
                self.state.expanded = frozenset(n for n in saved if n in names)
        self.find_edit.setCompleter(QCompleter([n.name for n in graph.nodes()], self.find_edit))
        self.find_edit.completer().setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.find_edit.completer().setFilterMode(Qt.MatchFlag.MatchContains)
        reason = getattr(graph, "dataflow_reason", None)
        self.notice.set_message(
            f"Module tree only: {reason}. The nodes are the model's modules in the order its forward calls them,"
            " with shapes; the data-flow view, branch detail, activations and attributions need a forward that"
            " torch.fx can trace." if reason else None)
        self.graph_page.retrace(redraw=False)
        self.graph_page.redraw()
        if not from_preview:
            self.graph_page.initial_view()
        self.show_status(f"{self.spec_title()}: {len(graph.nodes())} nodes, {len(names)} blocks; loading weights…",
                         0, topic="model")
        self.graph_ready.emit(graph.name)
        if not from_preview:
            self.graph_drawn.emit(graph.name)
        self.load_weights(self.weights_choice, self.allow_download)

    def load_weights(self, weights: str, allow_download: bool) -> None:
        """Load the current model's weights in a worker ("auto", "none" or a file path)."""
        if self.model_name is None or self.graph is None or getattr(self.graph, "is_preview", False):
            return
        text = "Loading weights…" if weights in ("auto", "none") else f"Loading weights from {Path(weights).name}…"
        self.weights_bar.show_loading(text)
        self.weights_label.setText("weights: loading…")
        if self.model_ref is not None:
            job = Job(load_weights, self.spec, weights, allow_download, outputs=self.output_classes(),
                      wants_progress=True)
        else:
            job = Job(load_weights, self.model_name, weights, allow_download, wants_progress=True)
        self.runner.start("weights", job, on_success=self._on_weights, on_failure=self._on_weights_failed,
                          on_progress=self.weights_bar.show_progress, on_cancel=self._on_weights_cancelled)

    def _has_published_weights(self) -> bool:
        return self.spec is not None and (self.spec.weights is not None or self.spec.hub_weights is not None)

    def retry_download(self) -> None:
        """Try the published weights again; a failure keeps the model's weights and says so."""
        from explorer.core.model.loading import retry_download

        if self.loaded is None or self.loaded.name != self.model_name:
            self.load_weights("auto", True)
            return
        self.weights_bar.show_loading("Retrying the download…")
        self.runner.start("weights", Job(retry_download, self.loaded, wants_progress=True),
                          on_success=self._on_weights, on_failure=self._on_weights_failed,
                          on_progress=self.weights_bar.show_progress, on_cancel=self._on_weights_cancelled)

    def cancel_download(self) -> None:
        self.runner.cancel("weights")

    def open_weights_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open weights file", "", WEIGHT_FILTER)
        if path:
            self.load_weights(path, False)

    def _on_weights(self, loaded) -> None:
        from explorer.core.model.loading import RetryResult

        if isinstance(loaded, RetryResult):  # Retry download: nothing changes unless weights arrived
            if loaded.loaded.name != self.model_name:
                return
            self.show_status(f"Retry download: {loaded.message}", 15000, topic="model")
            if not loaded.changed:
                self._restore_weights_badge(loaded.message)
                return
            loaded = loaded.loaded
        if loaded.name != self.model_name:
            return
        with self.state.changes():
            self.state.loaded = loaded
            self.state.model_status = "ready"
            self.state.status_text = ""
        state = loaded.weights
        if state.is_random:
            self.weights_bar.show_random(state.reason, self._has_published_weights())
            self.weights_label.setText("weights: random")
        else:
            self.weights_bar.hide_all()
            self.weights_label.setText(f"weights: {state.describe()}")
        if self.images is not None and self.graph is not None and not getattr(self.graph, "is_preview", False):
            self.images.model_ready(loaded, self.graph)
        classes = self.output_classes()
        self.show_status(f"{self.spec_title()}: {len(self.graph.nodes())} nodes, "
                         f"{len(self.graph.blocks())} blocks", 8000, topic="model")
        if self.model_ref is not None and classes != 1000:
            self.show_status(
                f"{self.spec_title()} outputs {classes} class scores, not ImageNet's 1000: classification shows"
                " class indices" if classes else f"{self.spec_title()} does not output a vector of class scores:"
                " classification cannot interpret it", 15000, topic="model")
        self.model_loaded.emit(loaded.name)

    def _on_weights_failed(self, message: str) -> None:
        self.show_error(message)
        self._restore_weights_badge()
        if self.loaded is None:
            self.state.model_status = "failed"

    def _on_weights_cancelled(self) -> None:
        # A model switch cancels the old load; the new model's own load follows its graph.
        if self.runner.running("weights") is None and self.graph is not None:
            self._restore_weights_badge("download cancelled")

    def _restore_weights_badge(self, reason: str | None = None) -> None:
        state = self.loaded.weights if self.loaded is not None else None
        if state is None or state.is_random:
            self.weights_bar.show_random(reason or (state.reason if state else "weights not loaded"),
                                         self._has_published_weights())
            self.weights_label.setText("weights: random")
        else:
            self.weights_bar.hide_all()

    # -- any CNN -----------------------------------------------------------------------------

    def open_model_dialog(self) -> None:
        """File → Open model…: a name with completion, or a model file; the window opens it."""
        from explorer.qt.window.open_model_dialog import OpenModelDialog

        if self.open_dialog is not None:
            self.open_dialog.deleteLater()
        self.open_dialog = OpenModelDialog(self, runner=self.runner, recent=self.recent_models())
        self.open_dialog.model_chosen.connect(self.open_model)
        self.open_dialog.open()

    def _ask_to_run(self, ref: str) -> None:
        """Ask before running the last session's .py model again (window-modal, not blocking)."""
        from PySide6.QtWidgets import QMessageBox

        box = QMessageBox(QMessageBox.Icon.Question, "Run a Python model file?",
                          f"The last session's model was {Path(ref).name}, a Python file. Opening it runs its code"
                          f" with your permissions, as any script you start would.\n\n{ref}",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.button(QMessageBox.StandardButton.Yes).setText("Run it")
        box.button(QMessageBox.StandardButton.No).setText(f"Keep {self.state.model}")
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.finished.connect(lambda result: self._on_run_answer(ref, result))
        self.run_prompt = box
        box.open()

    def _on_run_answer(self, ref: str, result: int) -> None:
        from PySide6.QtWidgets import QMessageBox

        self.run_prompt = None
        if result == QMessageBox.StandardButton.Yes:
            self.open_model(ref)
        else:
            self.saved.settings.setValue("model/ref", self.state.model)

    def open_model(self, ref: str) -> None:
        """Open any CNN — 'torchvision:NAME', 'timm:NAME', or a .py (with build()) / TorchScript /
        torch.export file — in a worker. It replaces the current model only once its graph is built;
        a bad name or a broken file is reported and the current model stays."""
        from explorer.core.model.anycnn import looks_like_path

        ref = str(ref).strip()
        if not ref:
            return
        if ref in model_names():
            self.set_model(ref)
            return
        if looks_like_path(ref) or Path(ref).expanduser().exists():  # else a name, resolved on the worker
            path = Path(ref).expanduser()
            if not path.is_file():
                exists = path.exists()
                known = ref in self.recent_models() and not exists
                if known:
                    self._forget_recent(ref)
                why = "it is not a regular file (a folder, a device or a pipe)" if exists else "the file does not exist"
                self.show_error(f"Cannot open {ref}: {why}" + (" (removed from the recent models)" if known else ""))
                return
            ref = str(path.resolve())
        self.busy.setVisible(True)
        self.show_status(f"Opening {ref}…", 0, topic="open")
        self.runner.start("open", Job(_open_reference, ref), on_success=lambda result: self._on_opened(*result),
                          on_failure=lambda message: self._on_open_failed(ref, message))

    def _on_opened(self, ref: str, spec, graph) -> None:
        if ref in model_names():  # a bare name that is the zoo's
            self.status_line.clear("open")
            self.set_model(ref)
            return
        self.runner.cancel("graph")  # a zoo model still loading is superseded
        self.runner.cancel("weights")
        self.saved.save_expanded()
        self._shown_preview = None
        self.status_line.clear("open")
        self.state.begin_model(spec.name, spec, ref)
        self.banner.set_message(None)
        self.details.show_nothing()
        self.view.show_message(f"Drawing {spec.title}…")  # drops the previous model's boxes and selection
        self.state.input_size = InputSize(*spec.native_size, self.state.input_size.batch)
        self._add_recent(ref)
        self._on_graph(graph)  # draws it, then loads the weights
        self.model_opened.emit(ref)

    def _on_open_failed(self, ref: str, message: str) -> None:
        self.status_line.clear("open")
        self._sync_busy()
        self._sync_model_widgets()
        self.model_menu_binding.sync()  # a Recent entry was checked when it was chosen
        still = f" {self.spec_title()} stays loaded." if self.graph is not None else ""
        self.show_error(f"Could not open {ref}: {message}.{still}")

    def output_classes(self) -> int | None:
        """How many class scores the current model outputs at this size (None: not a vector)."""
        if self.graph is None or self.trace is None:
            return None
        last = [n for n in self.graph.nodes() if not n.training_only][-1]
        node = self.trace.nodes.get(last.name)
        shape = node.output_shape if node is not None else None
        return shape[0] if shape is not None and len(shape) == 1 else None

    def recent_models(self) -> list[str]:
        """References of the models opened lately, the latest first."""
        return list(self.state.recent)[:MAX_RECENT]

    def _add_recent(self, ref: str) -> None:
        self.state.recent = tuple([ref] + [r for r in self.state.recent if r != ref])[:MAX_RECENT]

    def _forget_recent(self, ref: str) -> None:
        if ref in self.state.recent:
            self.state.recent = tuple(r for r in self.state.recent if r != ref)

    def clear_recent(self) -> None:
        self.state.recent = ()

    # -- messages ----------------------------------------------------------------------------

    def show_error(self, message: str, topic: str | None = None) -> None:
        """The one place worker and user errors reach: the banner above the graph and the status line.
        topic: what the message is about ("size"): `clear_error(topic)` removes it once that holds again."""
        self._sync_busy()
        self.banner.set_message(message)
        self._banner_topic = topic
        self.show_status(message, 15000 if topic is None else 0, topic=topic)
        self.error_shown.emit(message)

    def clear_error(self, topic: str) -> None:
        """Remove `topic`'s message from the banner and the status line (others stay)."""
        if getattr(self, "_banner_topic", None) == topic:
            self.banner.set_message(None)
            self._banner_topic = None
        self.status_line.clear(topic)

    def show_status(self, text: str, msecs: int = 8000, topic: str | None = None) -> None:
        """A one-line message in the status bar, elided beside the permanent texts (0: until replaced)."""
        self.status_line.show_message(text, msecs, topic)

    def _raise_classify_dock(self) -> None:
        """The classify dock comes forward for a dropped or pasted image; not while presenting, where the
        image goes to the slides and the docks stay hidden."""
        if self.images is not None and not self.state.presenting:
            self.images.classify_dock.show()
            self.images.classify_dock.raise_()

    def toggle_full_screen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    # -- settings ----------------------------------------------------------------------------

    def presentation_active(self) -> bool:
        return getattr(self, "presentation", None) is not None and self.presentation.active

    def save_settings(self) -> None:
        if self.presentation_active():
            self.presentation.leave()
        self.saved.save_window(self)

    # -- window events -----------------------------------------------------------------------

    def dragEnterEvent(self, event) -> None:
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasImage():
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:
        event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        """Files, folders or image data dropped anywhere on the window are classified."""
        if self.images is not None and self.images.classify.handle_drop(event.mimeData()):
            event.acceptProposedAction()
            self._raise_classify_dock()

    def closeEvent(self, event) -> None:
        self.save_settings()
        if self.images is not None:
            self.images.shutdown()
        if self.compare_window is not None:
            self.compare_window.shutdown()
            self.compare_window.close()
        self.jobs.cancel_all()  # every group's, the window's own included
        self.jobs.wait(20000)
        super().closeEvent(event)

    def changeEvent(self, event) -> None:
        # The drawing's colours come from the palette: follow a light/dark switch of the system.
        if event.type() in (QEvent.Type.ApplicationPaletteChange, QEvent.Type.PaletteChange) and self.graph is not None:
            QTimer.singleShot(0, self.graph_page.redraw)
        super().changeEvent(event)

    def _default_size(self) -> None:
        """1280×860, or 90 % of a smaller screen (a 1280×720 projector)."""
        screen = self.screen() or QApplication.primaryScreen()
        avail = screen.availableGeometry() if screen else None
        w, h = 1280, 860
        if avail is not None:
            w, h = min(w, int(avail.width() * 0.9)), min(h, int(avail.height() * 0.9))
        self.resize(w, h)

    def sizeHint(self) -> QSize:
        return QSize(1280, 860)

