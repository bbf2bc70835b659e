"""The explorer's main window: the block graph, input size, model and weights, details, presentation.

The window holds the state (model, input size, expanded blocks, the last valid shape trace) and
redraws the graph view from it; engine work that needs torch runs in `JobRunner` workers and
comes back as plain results. torch is never imported here at module level, so the window can be
shown while the first worker is still importing it.

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

import re
from pathlib import Path

from PySide6.QtCore import QByteArray, QEvent, QPointF, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QFont, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QCompleter,
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from explorer.core.zoo import get_spec, model_names
from explorer.qt.graph_view import GraphView, TextMeasure
from explorer.diagram.layout import Style, build_diagram, layout_diagram
from explorer.qt.panels import Banner, DetailsPanel, InputSizeControl, WeightsBar
from explorer.qt.presentation import Presentation
from explorer.qt.theme import make_theme
from explorer.qt.workers import Job, JobRunner, load_block_graph, load_weights, open_any_model

ORGANIZATION = "InceptionExplorer"
APPLICATION = "Inception Explorer"
DEFAULT_MODEL = "googlenet"
INITIAL_MIN_ZOOM = 0.8
WEIGHT_FILTER = "Weights (*.pth *.pt *.bin *.safetensors);;All files (*)"
#: How many opened models the Model menu's Recent section remembers.
MAX_RECENT = 8


def default_settings() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


#: The preview is drawn this long after the model is chosen: the window paints itself first.
PREVIEW_DELAY_MS = 30
IMAGE_DOCKS_DELAY_MS = 60
#: Bumped when the docks change: a layout saved by an older version is then not restored.
DOCK_LAYOUT_VERSION = 2


def _load_opened_weights(spec, weights: str, allow_download: bool, outputs: int | None, *, progress=None,
                         cancel=None):
    """An opened model (a ModelSpec, not a zoo name) on the CPU with weights, as a LoadedModel."""
    from explorer.core.loading import load_model

    if cancel is not None:
        cancel.raise_if_cancelled()
    return load_model(spec, weights=weights, allow_download=allow_download, progress=progress, cancel=cancel,
                      outputs=outputs)


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


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
        self.weights_choice = weights
        self.allow_download = allow_download
        # Two threads: the graph of a newly chosen model need not wait for a download to give up.
        self.runner = JobRunner(self, threads=2)
        self.graph = None  # BlockGraph of the current model once loaded
        self.trace = None  # the last valid ShapeTrace
        self.loaded = None  # LoadedModel once its weights are in
        self.model_name: str | None = None
        self.spec = None  # the current model's ModelSpec (the zoo's, or an opened one)
        self.model_ref: str | None = None  # what an opened model was opened from; None for the zoo's
        self.open_dialog = None
        self.expanded: set[str] = set()
        self.failed_node: str | None = None
        self._presentation_scale: float | None = None
        self._classify_sample = classify_sample
        self._restore = restore

        self.setWindowTitle(APPLICATION)
        self.setAcceptDrops(True)
        self._default_size()
        self._build_ui()
        self._build_menus()
        self.presentation = Presentation(self)

        saved_model = self.settings.value("model/name", DEFAULT_MODEL) if restore else DEFAULT_MODEL
        # Not a zoo name: a reference to open, after the zoo's model (which stays if opening fails).
        opened = model if model and model not in model_names() else None
        name = (None if opened else model) or (saved_model if saved_model in model_names() else DEFAULT_MODEL)
        if restore:
            self._restore_settings(name)
        else:
            self.size_control.set_value(*get_spec(name).native_size, 1, emit=False)
        self.set_model(name, size=None)
        if opened:
            self.open_model(opened)
        # pyqtgraph and the image panels cost half a second: after the first paint and the preview.
        QTimer.singleShot(IMAGE_DOCKS_DELAY_MS, self._build_image_docks)

    def _build_image_docks(self) -> None:
        """Classification, activations, attributions and branch shares, as docks."""
        if self.images is not None:
            return
        from explorer.qt.image_docks import ImageDocks

        self.images = ImageDocks(self, classify_sample=self._classify_sample)
        self.images.classify.paste_shortcut.setEnabled(False)  # the window's Edit → Paste has Ctrl+V
        self.images.activations.block_changed.connect(self._follow_block)
        self.images.shares.block_selected.connect(self._follow_block)
        for dock in self.images.docks():
            self.view_menu.addAction(dock.toggleViewAction())
        self.resizeDocks([self.images.classify_dock], [340], Qt.Orientation.Vertical)
        state = self.settings.value("window/state")
        if self._restore and isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state, DOCK_LAYOUT_VERSION)  # the docks' places, now that they exist
        if self.presentation_active():
            for dock in self.images.docks():
                dock.hide()
        if self.loaded is not None and self.graph is not None and not getattr(self.graph, "is_preview", False):
            self.images.model_ready(self.loaded, self.graph)

    # -- construction ------------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.view = GraphView(self)
        self.view.box_selected.connect(self._on_box_selected)
        self.view.box_activated.connect(self._on_box_activated)
        self.weights_bar = WeightsBar(self)
        self.weights_bar.retry_requested.connect(self.retry_download)
        self.weights_bar.open_requested.connect(self.open_weights_dialog)
        self.weights_bar.cancel_requested.connect(self.cancel_download)
        self.banner = Banner("error", self)
        # Why the graph shows the module tree instead of the data flow (an untraceable forward).
        self.notice = Banner("warning", self)
        self.caption = QLabel(self)
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption.setWordWrap(True)
        self.caption.setStyleSheet("QLabel { background: black; color: white; padding: 10px; }")
        self.caption.hide()
        central = QWidget(self)
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.weights_bar)
        lay.addWidget(self.banner)
        lay.addWidget(self.notice)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.caption)
        self.setCentralWidget(central)

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
        self.size_control = InputSizeControl(self)
        self.size_control.size_changed.connect(self._on_size_changed)
        tb.addWidget(self.size_control)
        tb.addSeparator()
        self.find_edit = QLineEdit(self)
        self.find_edit.setPlaceholderText("Find node (Ctrl+F)")
        self.find_edit.setClearButtonEnabled(True)
        self.find_edit.setMaximumWidth(220)
        self.find_edit.returnPressed.connect(lambda: self.find(self.find_edit.text()))
        tb.addWidget(self.find_edit)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)

        self.details = DetailsPanel(self)
        self.details_dock = QDockWidget("Details", self)
        self.details_dock.setObjectName("details_dock")
        self.details_dock.setWidget(self.details)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.details_dock)
        self.paper_table = None
        self.paper_dock = None
        try:
            from explorer.qt.paper_table import PaperTableWidget
        except ImportError:
            PaperTableWidget = None
        if PaperTableWidget is not None:
            self.paper_table = PaperTableWidget(self)
            self.paper_dock = QDockWidget("Paper table", self)
            self.paper_dock.setObjectName("paper_dock")
            # In a scroll area, so the table's own minimum width does not force the window wider.
            scroll = QScrollArea(self)
            scroll.setWidgetResizable(True)
            scroll.setWidget(self.paper_table)
            self.paper_dock.setWidget(scroll)
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.paper_dock)
            self.tabifyDockWidget(self.details_dock, self.paper_dock)
            self.details_dock.raise_()
        self.resizeDocks([self.details_dock], [380], Qt.Orientation.Horizontal)
        self.images = None  # the image panels, built just after the window is on screen

        sb = self.statusBar()
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

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            if isinstance(shortcut, (list, tuple)):
                act.setShortcuts([QKeySequence(s) for s in shortcut])
            else:
                act.setShortcut(QKeySequence(shortcut))
        if tip:
            act.setStatusTip(tip)
        act.triggered.connect(slot)
        menu.addAction(act)
        self.addAction(act)  # shortcuts keep working while presentation mode hides the menu bar
        return act

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self._action(f, "&Open images…", lambda: self.images and self.images.classify.open_files(), QKeySequence.StandardKey.Open,
                     "Classify image files (or drop them on the window)")
        self._action(f, "Open &folder…", lambda: self.images and self.images.classify.open_folder(), "Ctrl+Shift+O",
                     "Classify every image of a folder")
        self._action(f, "Open &model…", self.open_model_dialog, "Ctrl+Shift+M",
                     "Any CNN: torchvision:NAME, timm:NAME, a .py file with build(), TorchScript or torch.export")
        self._action(f, "Open &weights file…", self.open_weights_dialog, "Ctrl+Alt+O",
                     "Load a .pth / .safetensors state dict into the current model")
        self._action(f, "&Retry download", self.retry_download, None, "Download the pretrained weights again")
        export = f.addMenu("&Export graph")
        self._action(export, "As &SVG…", self.export_svg_dialog, "Ctrl+Shift+S", "Vector drawing, text stays text")
        self._action(export, "As &PNG…", self.export_png_dialog, "Ctrl+Shift+P", "Bitmap at a chosen scale")
        f.addSeparator()
        self._action(f, "&Quit", self.close, "Ctrl+Q")

        e = mb.addMenu("&Edit")
        self._action(e, "&Paste image", lambda: self.images and self.images.classify.paste(), QKeySequence.StandardKey.Paste,
                     "Classify the image on the clipboard")
        self._action(e, "&Cancel classification", lambda: self.images and self.images.classify.cancel(), "Ctrl+.")

        v = mb.addMenu("&View")
        self._action(v, "Zoom &in", self.view.zoom_in, ["Ctrl+=", "Ctrl++"])
        self._action(v, "Zoom &out", self.view.zoom_out, "Ctrl+-")
        self._action(v, "&Fit to window", lambda: self.view.fit(max_zoom=1.5), "Ctrl+0")
        v.addSeparator()
        self._action(v, "&Expand all blocks", self.expand_all, "Ctrl+Shift+E")
        self._action(v, "&Collapse all blocks", self.collapse_all, "Ctrl+Shift+C")
        self._action(v, "F&ind node…", self.focus_find, QKeySequence.StandardKey.Find)
        v.addSeparator()
        self._action(v, "Full &screen", self.toggle_full_screen, "F11")
        self._action(v, "&Presentation mode", lambda: self.presentation.toggle(), "F5",
                     "Full screen, large type; arrow keys step through the blocks, Esc leaves")
        v.addSeparator()
        self.toolbar.addSeparator()
        for act in v.actions():
            if act.text() in ("&Fit to window", "&Expand all blocks", "&Collapse all blocks"):
                self.toolbar.addAction(act)
        v.addAction(self.details_dock.toggleViewAction())
        if self.paper_dock is not None:
            v.addAction(self.paper_dock.toggleViewAction())
        v.addAction(self.toolbar.toggleViewAction())
        self.view_menu = v

        m = mb.addMenu("&Model")
        self.model_actions = QActionGroup(self)
        for name in model_names():
            act = QAction(get_spec(name).title.replace("&", "&&"), self, checkable=True)  # "Ioffe & Szegedy"
            act.setData(name)
            act.triggered.connect(lambda checked, n=name: self.set_model(n))
            self.model_actions.addAction(act)
            m.addAction(act)
        self.model_menu = m
        self.recent_actions: list[QAction] = []
        self._rebuild_recent_menu()

        c = mb.addMenu("&Compare")
        self.compare_action = self._action(c, "&Compare models…", lambda: self.open_compare(0), "Ctrl+Shift+K",
                                           "Two models side by side, stage by stage, differences highlighted")
        self.factorisation_action = self._action(c, "&Factorisation…", lambda: self.open_compare(1), None,
                                                 "What factorising a convolution saves, and where each model does it")

        h = mb.addMenu("&Help")
        self._action(h, "&About", self._about)

    def open_compare(self, tab: int = 0):
        """Show the Compare window (one per main window, non-modal) on tab 0 (compare) or 1 (factorisation)."""
        from explorer.qt.compare_window import CompareWindow

        opened = [r for r in [self.model_name, *self.recent_models()] if r not in model_names()]
        if getattr(self, "compare_window", None) is None:
            h, w, _ = self.size_control.value()
            self.compare_window = CompareWindow(self.settings, self.model_name, (h, w), parent=self,
                                                opened=list(dict.fromkeys(opened)))
        else:
            self.compare_window.add_models(opened)
        self.compare_window.show_tab(tab)
        self.compare_window.show()
        self.compare_window.raise_()
        self.compare_window.activateWindow()
        return self.compare_window

    def chrome_widgets(self) -> list[QWidget]:
        """What presentation mode hides: menus, toolbar, docks, status bar (the banners are suppressed)."""
        out = [self.menuBar(), self.toolbar, self.statusBar(), self.details_dock,
               *(self.images.docks() if self.images is not None else [])]
        if self.paper_dock is not None:
            out.append(self.paper_dock)
        return out

    # -- model and weights -------------------------------------------------------------------

    def spec_title(self) -> str:
        return self.spec.title if self.spec is not None else ""

    def set_model(self, name: str, size: tuple[int, int] | None | bool = False) -> None:
        """Load `name`'s block graph in a worker, then its weights. size: None keeps the current
        input size, False (the default) switches to the model's native size."""
        spec = get_spec(name)
        if name == self.model_name and self.model_ref is None and self.graph is not None:
            return
        if self.model_name is not None and self.graph is not None:
            self._save_expanded()
        if size is False:
            size = spec.native_size
        if size is not None:
            self.size_control.set_value(size[0], size[1], None, emit=False)
        self.runner.cancel("open")
        self.model_name, self.spec, self.model_ref = name, spec, None
        self.graph = self.trace = self.loaded = None
        self.failed_node = None
        self.banner.set_message(None)
        self.notice.set_message(None)
        self.details.show_nothing()
        self._sync_model_widgets()
        self.settings.setValue("model/name", name)
        self._set_busy(True, f"Loading {spec.title}…")
        self.view.show_message(f"Loading {spec.title}…")
        self.runner.cancel("weights")
        self.runner.start("graph", Job(load_block_graph, name), on_success=self._on_graph,
                          on_failure=self._on_graph_failed)
        # After the window is on screen: the preview must not delay it.
        QTimer.singleShot(PREVIEW_DELAY_MS, lambda: self._show_preview(name))

    def _show_preview(self, name: str) -> None:
        """Draw the shipped preview of `name` while the engine (torch) loads; shapes are those of
        the native size, so the preview is shown only when that is the size asked for."""
        from explorer.core.preview import load_preview

        if self.model_name != name or self.graph is not None:
            return
        shipped = load_preview(name)
        if shipped is None:
            return
        preview, trace = shipped
        h, w, n = self.size_control.value()
        if trace.input_shape != (n, trace.input_shape[1], h, w):
            return
        self.graph, self.trace = preview, trace
        names = {b.name for b in preview.blocks()}
        self.expanded = {b for b in self._saved_expanded(name) if b in names}
        self.redraw()
        self._initial_view()
        self._shown_preview = name
        self.view_status(f"{self.spec_title()}: preview; the engine is loading…")
        self.graph_drawn.emit(name)

    def view_status(self, text: str) -> None:
        self.statusBar().showMessage(text)

    def _on_graph_failed(self, message: str) -> None:
        self.view.show_message(f"Could not build the block graph of {self.spec_title()}.")
        self.show_error(message)

    def _sync_model_widgets(self) -> None:
        opened = self.model_ref is not None
        self.model_combo.blockSignals(True)
        # An opened model is in no zoo entry: the combo shows its title as a placeholder.
        self.model_combo.setPlaceholderText(self.spec_title() if opened else "")
        self.model_combo.setCurrentIndex(-1 if opened else max(0, self.model_combo.findData(self.model_name)))
        self.model_combo.blockSignals(False)
        for act in self.model_actions.actions():
            act.setChecked(not opened and act.data() == self.model_name)

    def _on_model_combo(self, index: int) -> None:
        name = self.model_combo.itemData(index)
        if name:
            self.set_model(name)

    def _on_graph(self, graph) -> None:
        if graph.name != self.model_name:
            return
        from_preview = getattr(self, "_shown_preview", None) == graph.name and self.graph is not None
        self._shown_preview = None
        self.graph = graph
        names = {n.name for n in graph.blocks()}
        if not from_preview:  # keep what the user expanded while the preview was up
            self.expanded = {n for n in self._saved_expanded(graph.name) if n in names}
        self.find_edit.setCompleter(QCompleter([n.name for n in graph.nodes()], self.find_edit))
        self.find_edit.completer().setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.find_edit.completer().setFilterMode(Qt.MatchFlag.MatchContains)
        reason = getattr(graph, "dataflow_reason", None)
        self.notice.set_message(
            f"Module tree only: {reason}. The nodes are the model's modules in the order its forward calls them,"
            " with shapes; the data-flow view, branch detail, activations and attributions need a forward that"
            " torch.fx can trace." if reason else None)
        self.retrace(redraw=False)
        self.redraw()
        if not from_preview:
            self._initial_view()
        self._set_busy(False, f"{self.spec_title()}: {len(graph.nodes())} nodes, {len(names)} blocks")
        self.graph_ready.emit(graph.name)
        if not from_preview:
            self.graph_drawn.emit(graph.name)
        self.load_weights(self.weights_choice, self.allow_download)

    def load_weights(self, weights: str, allow_download: bool) -> None:
        """Load the current model's weights in a worker ("auto", "none" or a file path)."""
        if self.model_name is None:
            return
        name = self.model_name
        text = "Loading weights…" if weights in ("auto", "none") else f"Loading weights from {Path(weights).name}…"
        self.weights_bar.show_loading(text)
        self.weights_label.setText("weights: loading…")
        if self.model_ref is not None:
            job = Job(_load_opened_weights, self.spec, weights, allow_download, self.output_classes(),
                      wants_progress=True)
        else:
            job = Job(load_weights, name, weights, allow_download, wants_progress=True)
        self.runner.start("weights", job, on_success=self._on_weights, on_failure=self._on_weights_failed,
                          on_progress=self.weights_bar.show_progress, on_cancel=self._on_weights_cancelled)

    def _has_published_weights(self) -> bool:
        return self.spec is not None and self.spec.weights is not None

    def retry_download(self) -> None:
        self.load_weights("auto", True)

    def cancel_download(self) -> None:
        self.runner.cancel("weights")

    def open_weights_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open weights file", "", WEIGHT_FILTER)
        if path:
            self.load_weights(path, False)

    def _on_weights(self, loaded) -> None:
        if loaded.name != self.model_name:
            return
        self.loaded = loaded
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
        if self.model_ref is not None and classes != 1000:
            self.statusBar().showMessage(
                f"{self.spec_title()} outputs {classes} class scores, not ImageNet's 1000: classification shows"
                " class indices" if classes else f"{self.spec_title()} does not output a vector of class scores:"
                " classification cannot interpret it", 15000)
        self.model_loaded.emit(loaded.name)

    def _on_weights_failed(self, message: str) -> None:
        self.show_error(message)
        self._restore_weights_badge()

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
        from explorer.qt.open_model_dialog import OpenModelDialog

        if self.open_dialog is not None:
            self.open_dialog.deleteLater()
        self.open_dialog = OpenModelDialog(self, runner=self.runner, recent=self.recent_models())
        self.open_dialog.model_chosen.connect(self.open_model)
        self.open_dialog.open()

    def open_model(self, ref: str) -> None:
        """Open any CNN — 'torchvision:NAME', 'timm:NAME', or a .py (with build()) / TorchScript /
        torch.export file — in a worker. It replaces the current model only once its graph is built;
        a bad name or a broken file is reported and the current model stays."""
        from explorer.core.anycnn import is_file_reference

        ref = str(ref).strip()
        if not ref:
            return
        if is_file_reference(ref):
            path = Path(ref).expanduser()
            if not path.is_file():
                known = ref in self.recent_models()
                self._forget_recent(ref)
                self.show_error(f"Cannot open {ref}: the file does not exist"
                                + (" (removed from the recent models)" if known else ""))
                return
            ref = str(path.resolve())
        self._set_busy(True, f"Opening {ref}…")
        self.runner.start("open", Job(open_any_model, ref), on_success=lambda result: self._on_opened(ref, result),
                          on_failure=lambda message: self._on_open_failed(ref, message))

    def _on_opened(self, ref: str, result) -> None:
        spec, graph = result
        self.runner.cancel("graph")  # a zoo model still loading is superseded
        if self.model_name is not None and self.graph is not None and not getattr(self.graph, "is_preview", False):
            self._save_expanded()
        self.model_name, self.spec, self.model_ref = spec.name, spec, ref
        self.graph = self.trace = self.loaded = None
        self._shown_preview = None
        self.failed_node = None
        self.banner.set_message(None)
        self.details.show_nothing()
        self.view.show_message(f"Drawing {spec.title}…")  # drops the previous model's boxes and selection
        self.size_control.set_value(*spec.native_size, None, emit=False)
        self._sync_model_widgets()
        self._add_recent(ref)
        self._on_graph(graph)  # draws it, then loads the weights
        self.model_opened.emit(ref)

    def _on_open_failed(self, ref: str, message: str) -> None:
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
        value = self.settings.value("recent/models", [])
        if isinstance(value, str):
            value = [value] if value else []
        return [str(v) for v in (value or [])][:MAX_RECENT]

    def _set_recent(self, refs: list[str]) -> None:
        self.settings.setValue("recent/models", refs[:MAX_RECENT])
        self._rebuild_recent_menu()

    def _add_recent(self, ref: str) -> None:
        self._set_recent([ref] + [r for r in self.recent_models() if r != ref])

    def _forget_recent(self, ref: str) -> None:
        if ref in self.recent_models():
            self._set_recent([r for r in self.recent_models() if r != ref])

    def clear_recent(self) -> None:
        self._set_recent([])

    def _rebuild_recent_menu(self) -> None:
        """The Model menu's Recent section: one entry per opened model, then Open model… and Clear."""
        from explorer.core.anycnn import is_file_reference

        for act in self.recent_actions:
            self.model_menu.removeAction(act)
            act.deleteLater()
        self.recent_actions = [self.model_menu.addSection("Recent")]
        for ref in self.recent_models():
            act = QAction(Path(ref).name if is_file_reference(ref) else ref, self)
            act.setData(ref)
            act.setStatusTip(ref)
            act.setToolTip(ref)
            act.triggered.connect(lambda checked=False, r=ref: self.open_model(r))
            self.model_menu.addAction(act)
            self.recent_actions.append(act)
        more = [QAction("Open &model…", self), QAction("Clear recent", self)]
        more[0].triggered.connect(self.open_model_dialog)
        more[1].triggered.connect(self.clear_recent)
        more[1].setEnabled(len(self.recent_actions) > 1)
        self.recent_actions.append(self.model_menu.addSeparator())
        for act in more:
            self.model_menu.addAction(act)
            self.recent_actions.append(act)

    # -- shapes ------------------------------------------------------------------------------

    def _on_size_changed(self, h: int, w: int, n: int) -> None:
        self.settings.setValue("input/height", h)
        self.settings.setValue("input/width", w)
        self.settings.setValue("input/batch", n)
        self.settings.setValue("input/linked", self.size_control.linked)
        self.retrace()

    def set_input_size(self, h: int, w: int | None = None, batch: int | None = None) -> None:
        """Set the input size as if typed in the size control (retraces and redraws)."""
        w = h if w is None else w
        self.size_control.set_value(h, w, batch)

    def input_size(self) -> tuple[int, int, int]:
        return self.size_control.value()

    def retrace(self, redraw: bool = True) -> bool:
        """Trace shapes at the control's size; on failure keep the last valid trace and mark the node."""
        if self.graph is None:
            return False
        if getattr(self.graph, "is_preview", False):
            # Only the native size is known until the engine has loaded; it retraces then.
            self.statusBar().showMessage("shapes for this size follow once the engine has loaded", 5000)
            return False
        from explorer.core.shapes import InputTooSmallError, trace_shapes

        h, w, n = self.size_control.value()
        ok = True
        try:
            self.trace = trace_shapes(self.graph, (h, w), batch=n)
        except InputTooSmallError as e:
            ok = False
            self.failed_node = e.node or "input"
            self._trace_error(str(e))
            self.trace_failed.emit(self.failed_node, str(e))
        except ValueError as e:
            ok = False
            self.failed_node = "input"
            self._trace_error(str(e))
            self.trace_failed.emit("input", str(e))
        else:
            self.failed_node = None
            self.banner.set_message(None)
            self.size_control.set_invalid(False)
            t = self.trace
            self.totals_label.setText(
                f"{t.total_params_inference / 1e6:.2f} M params · {t.total_macs / 1e9:.2f} G mult-adds"
                f" · input {h}×{w}" + (f" ×{n}" if n > 1 else ""))
        if redraw:
            self.redraw()
        if ok:
            self._update_paper_table()
            self._refresh_details()
            self.trace_updated.emit()
        return ok

    def _trace_error(self, message: str) -> None:
        self.banner.set_message(message)
        self.size_control.set_invalid(True)
        self.statusBar().showMessage(message, 10000)

    def _update_paper_table(self) -> None:
        if self.paper_table is None or self.graph is None or self.trace is None:
            return
        if getattr(self.graph, "is_preview", False):
            return
        try:
            self.paper_table.set_model(self.graph, self.trace)
        except Exception as e:  # the table is a guest widget: its failure must not take the window down
            self.statusBar().showMessage(f"paper table: {e}", 10000)

    # -- drawing -----------------------------------------------------------------------------

    def set_presentation_style(self, scale: float | None) -> None:
        """None: the normal theme; a number: presentation theme with fonts that much larger."""
        self._presentation_scale = scale
        font = QFont(self.caption.font())
        font.setPointSizeF((QApplication.font().pointSizeF() or 10) * (scale or 1) * 1.1)
        self.caption.setFont(font)

    def graph_style(self) -> Style:
        return Style().scaled(self._presentation_scale) if self._presentation_scale else Style()

    def redraw(self, anchor: str | None = None) -> None:
        """Rebuild the drawing from the state, keeping `anchor` (or the selection) where it was on screen."""
        if self.graph is None:
            return
        p = self._presentation_scale
        theme = make_theme(p or 1.0, presentation=p is not None)
        style = self.graph_style()
        selected = self.view.selected_key()
        anchor = anchor or (self.view.boxes[selected].box.node if selected in self.view.boxes else None)
        before = self._screen_pos(anchor)
        d = build_diagram(self.graph, self.trace, self.expanded, TextMeasure(theme), style)
        layout_diagram(d, style)
        kinds = {n.name: n.kind for n in self.graph.nodes()}
        self.view.set_diagram(d, theme, kinds, selected=selected if selected in d.boxes else None)
        self.view.set_failed(self.failed_node)
        if before is not None:
            after = self._screen_pos(anchor)
            if after is not None:
                delta = after - before
                h, v = self.view.horizontalScrollBar(), self.view.verticalScrollBar()
                h.setValue(h.value() + round(delta.x()))
                v.setValue(v.value() + round(delta.y()))

    def _screen_pos(self, node: str | None) -> QPointF | None:
        if node is None or self.view.diagram is None:
            return None
        rect = self.view.node_rect(node)
        if rect is None:
            return None
        return QPointF(self.view.mapFromScene(QPointF(rect.center().x(), rect.top())))

    def _initial_view(self) -> None:
        self.view.fit(max_zoom=1.0)
        if self.view.zoom() < INITIAL_MIN_ZOOM:
            # A tall graph would be unreadable when fitted: start readable, at the input.
            self.view.set_zoom(INITIAL_MIN_ZOOM)
            first = self.view.boxes.get("input")
            if first is not None:
                rect = self.view.viewport().rect()
                top = first.sceneBoundingRect().top() - 20
                self.view.centerOn(first.sceneBoundingRect().center().x(),
                                   top + rect.height() / 2 / self.view.zoom())

    def expand(self, name: str) -> None:
        if self.graph is not None and self.graph.node(name).branches and name not in self.expanded:
            self.expanded.add(name)
            self._save_expanded()
            self.redraw(anchor=name)

    def collapse(self, name: str) -> None:
        if name in self.expanded:
            self.expanded.discard(name)
            self._save_expanded()
            self.redraw(anchor=name)

    def toggle(self, name: str) -> None:
        self.collapse(name) if name in self.expanded else self.expand(name)

    def expand_all(self) -> None:
        if self.graph is not None:
            self.expanded = {n.name for n in self.graph.blocks()}
            self._save_expanded()
            self.redraw()

    def collapse_all(self) -> None:
        self.expanded.clear()
        self._save_expanded()
        self.redraw()

    def _on_box_activated(self, key: str) -> None:
        if self.graph is None:
            return
        box = self.view.boxes.get(key)
        node = box.box.node if box is not None else key
        if node not in self.graph.graph:
            return
        if box is None or box.box.role in ("node", "header", "concat"):
            self.toggle(node)

    def _on_box_selected(self, key: str) -> None:
        self._refresh_details(key)
        item = self.view.boxes.get(key)
        if item is not None and self.images is not None:
            self.images.select_block(item.box.node)

    def selected_block(self) -> str | None:
        """The block the graph's selection is in, if any."""
        item = self.view.boxes.get(self.view.selected_key() or "")
        node = item.box.node if item is not None else None
        return node if node and self.graph is not None and node in self.graph.graph \
            and self.graph.node(node).is_block else None

    def _follow_block(self, name: str) -> None:
        """An image panel stepped to block `name`: select it in the graph too (no loop: same name)."""
        if self.selected_block() != name and name in self.view.boxes:
            self.view.select(name)

    def _refresh_details(self, key: str | None = None) -> None:
        key = self.view.selected_key() if key is None else key
        item = self.view.boxes.get(key)
        if not key or item is None or self.graph is None:
            if key == "":
                self.details.show_nothing()
            return
        node = item.box.node
        self.details.show_node(self.graph, self.trace, node, key if key != node else None)

    # -- find --------------------------------------------------------------------------------

    def focus_find(self) -> None:
        self.find_edit.setFocus()
        self.find_edit.selectAll()

    def find(self, text: str) -> str | None:
        """Select and centre the node (or layer inside a block) whose name best matches `text`."""
        text = text.strip().lower()
        if not text or self.graph is None:
            return None
        names = [n.name for n in self.graph.nodes()]
        match = next((n for n in names if n.lower() == text), None) \
            or next((n for n in names if n.lower().startswith(text)), None) \
            or next((n for n in names if text in n.lower()), None)
        if match is not None:
            self.view.select(match) or self.view.select(self.view.diagram.entry[match])
            self.statusBar().showMessage(f"found {match}", 4000)
            return match
        # A layer inside a block: open the block and select the layer's box.
        for node in self.graph.blocks():
            if any(text in l.name.lower() for b in node.branches for l in b.all_layers()):
                self.expand(node.name)
                for b in self.view.diagram.boxes.values():
                    if b.node == node.name and b.role == "layer" and text in b.tooltip.lower():
                        self.view.select(b.key)
                        self.statusBar().showMessage(f"found {b.tooltip} in {node.name}", 4000)
                        return b.key
        self.statusBar().showMessage(f"no node matches “{text}”", 4000)
        return None

    # -- export ------------------------------------------------------------------------------

    def export_svg(self, path: str | Path) -> Path:
        from explorer.qt.exporters import SvgExporter

        return SvgExporter(self.view.scene(), f"{self.spec_title()} block graph").export(path)

    def export_png(self, path: str | Path, scale: float = 2.0) -> Path:
        from explorer.qt.exporters import PngExporter

        return PngExporter(self.view.scene()).export(path, scale)

    def export_svg_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export graph as SVG", f"{self._file_stem()}.svg", "SVG (*.svg)")
        if path:
            self._export(lambda: self.export_svg(path))

    def export_png_dialog(self) -> None:
        scale, ok = QInputDialog.getDouble(self, "Export graph as PNG", "Scale (1 = as drawn at 100 %):", 2.0, 0.25,
                                           8.0, 2)
        if not ok:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export graph as PNG", f"{self._file_stem()}.png", "PNG (*.png)")
        if path:
            self._export(lambda: self.export_png(path, scale))

    def _file_stem(self) -> str:
        """The model's name as a file name ("torchvision:resnet18" → "torchvision_resnet18")."""
        name = self.model_name or "graph"
        return re.sub(r"[^\w.-]+", "_", Path(name).stem if self.model_ref else name)

    def _export(self, fn) -> None:
        try:
            path = fn()
        except OSError as e:
            self.show_error(f"export failed: {e}")
        else:
            self.statusBar().showMessage(f"exported {path}", 6000)

    # -- window ------------------------------------------------------------------------------

    def show_error(self, message: str) -> None:
        """The one place worker and user errors reach: the banner above the graph and the status bar."""
        self._set_busy(False)
        self.banner.set_message(message)
        self.statusBar().showMessage(message, 15000)
        self.error_shown.emit(message)

    def _set_busy(self, busy: bool, message: str | None = None) -> None:
        self.busy.setVisible(busy)
        self.model_combo.setEnabled(not busy)
        if message:
            self.statusBar().showMessage(message, 0 if busy else 8000)

    def toggle_full_screen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    def _about(self) -> None:
        QMessageBox.about(self, "About Inception Explorer",
                          "<b>Inception Explorer</b><br>Look inside Inception-family convolutional networks:"
                          " block graph, shapes at any input size, the paper's table, presentation mode.")

    # -- settings ----------------------------------------------------------------------------

    def _restore_settings(self, model: str) -> None:
        s = self.settings
        native = get_spec(model).native_size
        h = _int(s.value("input/height"), native[0])
        w = _int(s.value("input/width"), native[1])
        n = _int(s.value("input/batch"), 1)
        linked = str(s.value("input/linked", "true")).lower() == "true"
        self.size_control.set_value(h, w, n, emit=False)
        self.size_control.set_linked(linked and h == w)
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        state = s.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state, DOCK_LAYOUT_VERSION)

    def _saved_expanded(self, model: str) -> list[str]:
        value = self.settings.value(f"expanded/{model}", "")
        if isinstance(value, (list, tuple)):
            value = ",".join(value)
        return [v for v in str(value or "").split(",") if v]

    def _save_expanded(self) -> None:
        if self.model_name is not None and not self.presentation_active():
            self.settings.setValue(f"expanded/{self.model_name}", ",".join(sorted(self.expanded)))

    def presentation_active(self) -> bool:
        return getattr(self, "presentation", None) is not None and self.presentation.active

    def save_settings(self) -> None:
        s = self.settings
        if self.presentation_active():
            self.presentation.leave()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState(DOCK_LAYOUT_VERSION))
        if self.model_name and self.model_ref is None:  # an opened model is reopened from the Recent list
            s.setValue("model/name", self.model_name)
        h, w, n = self.size_control.value()
        s.setValue("input/height", h)
        s.setValue("input/width", w)
        s.setValue("input/batch", n)
        s.setValue("input/linked", self.size_control.linked)
        self._save_expanded()
        s.sync()

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
            self.images.classify_dock.show()
            self.images.classify_dock.raise_()

    def closeEvent(self, event) -> None:
        self.save_settings()
        if self.images is not None:
            self.images.shutdown()
        if getattr(self, "compare_window", None) is not None:
            self.compare_window.shutdown()
            self.compare_window.close()
        self.runner.cancel_all()
        self.runner.wait(20000)
        super().closeEvent(event)

    def changeEvent(self, event) -> None:
        # The drawing's colours come from the palette: follow a light/dark switch of the system.
        if event.type() in (QEvent.Type.ApplicationPaletteChange, QEvent.Type.PaletteChange) and self.graph is not None:
            QTimer.singleShot(0, self.redraw)
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
