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

The window is a shell that builds its parts and wires them; each action of the table names the part
that owns it ("graph_page.fit_to_window"):
- `graph_page` (explorer.qt.window.graph_page): tracing at the input size, drawing, opening blocks,
  selection and details, find, fit;
- `models` (explorer.qt.window.model_controller): switching and opening models, the engine's start after
  the first paint, weights with retry and cancel, recent models. Any CNN opens through
  `models.open_model(ref)` (File → Open model…, the Model menu's Recent section, or `--model REF`);
- `exports` (explorer.qt.window.exports): the graph as SVG or PNG, the handout as PDF;
- `branch_switches` (explorer.qt.window.branch_switches): branches switched off from the graph's right-click
  menu, the strip that says so, Restore;
- `presentation`, `images` (the image docks), `saved` (the settings), the menus' bindings.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QLabel,
    QMainWindow,
    QProgressBar,
    QTabWidget,
    QToolBar,
    QWidget,
)

from explorer.core.session.state import ExplorerState, InputSize
from explorer.core.model.zoo import get_spec, model_names
from explorer.qt.window.actions import build_actions
from explorer.qt.window.branch_switches import BranchSwitches
from explorer.qt.window.exports import WindowExports
from explorer.qt.window.graph_page import GraphPage
from explorer.qt.window.image_input import ImageInput
from explorer.qt.window.model_controller import ModelController
from explorer.qt.window.help import HelpWindows
from explorer.qt.window.compare_menu import CompareMenu
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
from explorer.core.session.session import Session
from explorer.qt.workers import JobRunner

__all__ = ["APPLICATION", "DEFAULT_MODEL", "DOCK_LAYOUT_VERSION", "MAX_RECENT", "ORGANIZATION", "MainWindow",
           "default_settings"]

#: The image panels are built this long after the window is on screen (pyqtgraph costs half a second).
IMAGE_DOCKS_DELAY_MS = 60


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
        #: The application's one job runner (one pool): every widget's lanes are groups of it. Two model jobs
        #: at once: the graph of a newly chosen model need not wait for a download to give up.
        self.jobs = JobRunner(self)
        self.runner = self.jobs.lanes("model", threads=2, parent=self)
        self.session = Session(self.state, self.jobs, weights=weights, allow_download=allow_download,
                               prepares_classifier=False)
        self.images = None  # the image panels, built just after the window is on screen

        self.models = ModelController(self)
        self.image_input = ImageInput(self, classify_sample=classify_sample, restore=restore)
        self.setWindowTitle(APPLICATION)
        self.setAcceptDrops(True)
        self._default_size()
        self._build_ui()
        self.exports = WindowExports(self)
        self.compare = CompareMenu(self)
        self.help_windows = HelpWindows(self)
        self.actions = build_actions(self)
        self._build_model_menu()
        self.branch_switches = BranchSwitches(self)
        self.presentation = Presentation(self)
        self.image_input.route_paste(self)
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
        self.models.set_model(name, size=None)
        if opened and model is None and opened.endswith(".py"):
            # A remembered Python file is code: it runs again only when the person says so.
            QTimer.singleShot(0, lambda: self.models.ask_to_run(opened))
        elif opened:
            self.models.open_model(opened)
        # pyqtgraph and the image panels cost half a second: after the first paint and the preview.
        QTimer.singleShot(IMAGE_DOCKS_DELAY_MS, self.image_input.build_docks)

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
    def model_ref(self) -> str | None:
        return self.state.model_ref

    @property
    def expanded(self) -> frozenset[str]:
        return self.state.expanded

    @expanded.setter
    def expanded(self, blocks) -> None:
        self.state.expanded = frozenset(blocks)

    # -- construction ------------------------------------------------------------------------

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
        page.bind_weights_bar(self.models)
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
        tb = QToolBar("Toolbar", self)  # its View menu entry; "Graph" is the tab's
        tb.setObjectName("graph_toolbar")
        self.toolbar = tb
        self.model_combo = QComboBox(self)
        for name in model_names():
            self.model_combo.addItem(get_spec(name).title, name)
        self.model_combo.setToolTip("The network to explore")
        self.model_combo.currentIndexChanged.connect(self.models.on_model_combo)
        tb.addWidget(self.model_combo)
        tb.addSeparator()
        self.size_control = self.graph_page.build_size_control()
        tb.addWidget(self.size_control)
        tb.addSeparator()
        self.find_edit = self.graph_page.build_find_edit()
        tb.addWidget(self.find_edit)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)

    def _build_details_dock(self) -> None:
        """The selected node's details, docked on the right from the toolbar down to the status bar: the
        image docks share the bottom with the graph only, so Details keeps the window's height (a block's
        rows and branches, ~570 px, were cut at its third branch on a 1280×800 laptop)."""
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
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
        self.model_menu_binding.zoo_model_chosen.connect(self.models.set_model)
        self.model_menu_binding.reference_chosen.connect(self.models.open_model)
        self.model_menu_binding.open_requested.connect(self.models.open_model_dialog)
        self.model_actions = self.model_menu_binding.group
        self.compare_action = self.actions["compare"]
        self.factorisation_action = self.actions["factorisation"]

    def _bind_state(self) -> None:
        st = self.state
        st.connect("input_size", self.graph_page.on_input_size)
        st.connect("size_linked", self.size_control.set_linked)
        st.connect("model", lambda _n: self.models.sync_model_widgets())
        st.connect("model_ref", lambda _r: self.models.sync_model_widgets())
        st.connect("model_status", lambda _s: self.sync_busy())
        st.connect("status_text", lambda text: self.show_status(text, 0, topic="model") if text else
                   self.status_line.clear("model"))
        st.connect("presenting", lambda _p: self.sync_busy())
        # The model's problems reach the banner; the panels show their own jobs' in place.
        st.connect("problem", lambda p: self.show_error(p.message) if p and p.topic in ("model", "weights") else None)

    # -- actions (see explorer.qt.window.actions) ---------------------------------------------------------

    def show_graph_tab(self) -> None:
        self.tabs.setCurrentIndex(0)

    def show_paper_tab(self) -> None:
        if self.tabs.count() > 1:
            self.tabs.setCurrentIndex(1)

    def chrome_widgets(self) -> list[QWidget]:
        """What presentation mode hides: menus, toolbar, docks, status bar (the banners are suppressed)."""
        return [self.menuBar(), self.toolbar, self.tabs.tabBar(), self.statusBar(), self.details_dock,
                *(self.images.docks() if self.images is not None else [])]

    # -- model ----------------------------------------------------------------------------

    def spec_title(self) -> str:
        return self.state.spec.title if self.state.spec is not None else ""


    def sync_busy(self) -> None:
        busy = self.state.model_status == "loading"
        self.busy.setVisible(busy and not self.state.presenting)

    # -- messages ----------------------------------------------------------------------------

    def show_error(self, message: str, topic: str | None = None) -> None:
        """The one place worker and user errors reach: the banner above the graph and the status line.
        topic: what the message is about ("size"): `clear_error(topic)` removes it once that holds again."""
        self.sync_busy()
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
        if self.image_input.drop(event.mimeData()):
            event.acceptProposedAction()

    def closeEvent(self, event) -> None:
        self.save_settings()
        if self.images is not None:
            self.images.shutdown()
        self.compare.shutdown()
        self.jobs.cancel_all()  # every group's, the window's own included
        self.jobs.wait(20000)
        super().closeEvent(event)

    def changeEvent(self, event) -> None:
        # The drawing's colours come from the palette: follow a light/dark switch of the system.
        if event.type() in (QEvent.Type.ApplicationPaletteChange, QEvent.Type.PaletteChange) and self.graph is not None:
            QTimer.singleShot(0, self.graph_page.redraw)
        super().changeEvent(event)

    def _default_size(self) -> None:
        """1280×860, or a smaller screen's free area less a window frame (a 1280×800 laptop: 1264×760)."""
        screen = self.screen() or QApplication.primaryScreen()
        avail = screen.availableGeometry() if screen else None
        w, h = 1280, 860
        if avail is not None:
            w, h = min(w, avail.width() - 16), min(h, avail.height() - 40)
        self.resize(w, h)

    def sizeHint(self) -> QSize:
        return QSize(1280, 860)

