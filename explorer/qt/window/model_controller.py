"""Which model the window shows: the zoo's or any CNN opened by reference, its graph and its weights.

`set_model(name)` switches to a zoo model: its shipped preview is drawn at once, and the engine (torch)
starts only after that first paint, building the real graph in a worker. `open_model(ref)` opens any CNN
(torchvision:NAME, timm:NAME, a .py with build(), TorchScript, torch.export) in a worker, replacing the
current model only once its graph is built. Weights follow the graph: pretrained, from a file, or random with
a reason, with retry and cancel. Results go to the window's `ExplorerState`; the window's signals
(graph_ready, graph_drawn, model_opened, model_loaded) announce them.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QFileDialog

from explorer.core.model.zoo import get_spec, model_names
from explorer.core.session import events as ev
from explorer.core.session.state import InputSize
from explorer.qt.window.window_settings import APPLICATION, MAX_RECENT

WEIGHT_FILTER = "Weights (*.pth *.pt *.bin *.safetensors);;All files (*)"
#: The graph worker (which imports torch) starts right after the graph's first paint, or after this long.
ENGINE_FALLBACK_MS = 1500


class ModelController(QObject):
    """The model part of `window`: switching and opening models, the engine's start, weights, recent models."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.state = window.state
        self.session = window.session  # builds the graph, loads the weights; this part shows what it does
        self.session.on(ev.GraphBuilt, lambda event: self._on_graph(event.graph))
        self.session.on(ev.WeightsLoaded, lambda event: self._on_weights(event.loaded))
        self.session.on(ev.JobProgress, self._on_progress)
        self.session.on(ev.JobEnded, self._on_job_ended)
        self.session.on(ev.ModelOpened, self._on_opened)
        self.state.connect("problem", self._on_problem)
        self._opening: str | None = None  #: the reference being opened, while it is
        self.open_dialog = None  #: File → Open model…'s dialog, while one is up
        self.run_prompt = None  #: the question before running a remembered .py model again
        self._shown_preview: str | None = None
        self._engine_started = False
        self._engine_waits = False
        self._engine_fallback: QTimer | None = None

    def set_model(self, name: str, size: tuple[int, int] | None | bool = False) -> None:
        """Load `name`'s block graph in a worker, then its weights. size: None keeps the current
        input size, False (the default) switches to the model's native size."""
        spec = get_spec(name)
        if name == self.state.model and self.state.model_ref is None and self.state.graph is not None:
            return
        self.window.saved.save_expanded()
        self.session.runner.cancel("model/open")
        self._shown_preview = None
        self._ask_for_weights()
        self.session.begin(name, spec)
        if size is False:
            size = spec.native_size
        if size is not None:
            self.state.input_size = InputSize(size[0], size[1], self.state.input_size.batch)
        self.window.banner.set_message(None)
        self.window.notice.set_message(None)
        self.window.details.show_nothing()
        self.window.view.show_message(f"Loading {spec.title}…")
        if self._engine_started:
            self._start_graph_job(name)
        # The preview is drawn now, before any worker imports torch: the window paints it at once.
        self._show_preview(name)
        if not self._engine_started and not self._engine_waits:
            # The engine (torch) starts importing once the graph has painted: a worker importing torch
            # holds the interpreter for seconds, and the window would stay black until then.
            self._engine_waits = True
            self.window.view.viewport().installEventFilter(self)
            # A window that is never shown starts the engine after a while; stopped once a paint has.
            self._engine_fallback = QTimer(self, singleShot=True, interval=ENGINE_FALLBACK_MS)
            self._engine_fallback.timeout.connect(self._start_engine)
            self._engine_fallback.start()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.Paint and obj is self.window.view.viewport() and not self._engine_started:
            obj.removeEventFilter(self)
            QTimer.singleShot(0, self._start_engine)  # after this paint has reached the screen
        return False

    def _start_engine(self) -> None:
        if self._engine_started:
            return
        self._engine_started = True
        self.window.view.viewport().removeEventFilter(self)
        if self._engine_fallback is not None:
            self._engine_fallback.stop()
        st = self.state
        if st.model_ref is None and st.model is not None and (st.graph is None or self._shown_preview):
            self._start_graph_job(st.model)

    def _start_graph_job(self, name: str) -> None:
        self.session.build_graph(name)

    def _ask_for_weights(self) -> None:
        """The next model's weights: what the window was started with."""
        self.session.weights, self.session.allow_download = self.window.weights_choice, self.window.allow_download

    def _show_preview(self, name: str) -> None:
        """Draw the shipped preview of `name` while the engine (torch) loads; shapes are those of
        the native size, so the preview is shown only when that is the size asked for."""
        from explorer.core.shapes.preview import load_preview

        if self.state.model != name or self.state.graph is not None:
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
            self.state.expanded = frozenset(b for b in self.window.saved.saved_expanded(name) if b in names)
        self.window.graph_page.redraw()
        self.window.graph_page.initial_view()
        self._shown_preview = name
        self.window.show_status(f"{self.window.spec_title()}: preview; the engine is loading…", 0, topic="model")
        self.window.graph_drawn.emit(name)

    def _on_job_ended(self, event: ev.JobEnded) -> None:
        """A graph that could not be built, weights that did not load (the session's problem says why)."""
        if event.lane == "model/graph" and event.outcome == "failed":
            self.window.view.show_message(f"Could not build the block graph of {self.window.spec_title()}.")
        elif event.lane == "model/weights" and event.outcome == "failed":
            self._restore_weights_badge()
        elif event.lane == "model/weights" and event.outcome == "cancelled":
            # A model switch cancels the old load; the new model's own load follows its graph.
            if self.session.runner.running("model/weights") is None and self.state.graph is not None:
                self._restore_weights_badge("download cancelled")

    def _on_progress(self, event: ev.JobProgress) -> None:
        if event.lane == "model/weights":
            self.window.weights_bar.show_progress(event.done, event.total)

    def sync_model_widgets(self) -> None:
        """The combo and the Model menu show the current model (an opened one: its Recent entry)."""
        opened = self.state.model_ref is not None
        title = self.window.spec_title()
        combo = self.window.model_combo
        combo.blockSignals(True)
        # An opened model is in no zoo entry: the combo shows its title as a placeholder.
        combo.setPlaceholderText(title if opened else "")
        combo.setCurrentIndex(-1 if opened else max(0, combo.findData(self.state.model)))
        combo.blockSignals(False)
        self.window.setWindowTitle(f"{title} — {APPLICATION}" if self.state.spec is not None else APPLICATION)

    def on_model_combo(self, index: int) -> None:
        name = self.window.model_combo.itemData(index)
        if name:
            self.set_model(name)

    def _on_graph(self, graph) -> None:
        if graph.name != self.state.model:
            return
        from_preview = self._shown_preview == graph.name and self.state.graph is not None
        self._shown_preview = None
        names = {n.name for n in graph.blocks()}
        with self.state.changes():
            self.state.graph = graph
            if not from_preview:  # keep what the user expanded while the preview was up
                saved = self.window.saved.saved_expanded(self.state.model_ref or graph.name)
                self.state.expanded = frozenset(n for n in saved if n in names)
        self.window.graph_page.complete_names(graph)
        reason = getattr(graph, "dataflow_reason", None)
        self.window.notice.set_message(
            f"Module tree only: {reason}. The nodes are the model's modules in the order its forward calls them,"
            " with shapes; the data-flow view, branch detail, activations and attributions need a forward that"
            " torch.fx can trace." if reason else None)
        self.window.graph_page.show_trace(redraw=False)  # the session traced it when the graph arrived
        self.window.graph_page.redraw()
        if not from_preview:
            self.window.graph_page.initial_view()
        self.window.show_status(f"{self.window.spec_title()}: {len(graph.nodes())} nodes, {len(names)} blocks;"
                                " loading weights…", 0, topic="model")
        self.window.graph_ready.emit(graph.name)
        if not from_preview:
            self.window.graph_drawn.emit(graph.name)
        self._show_weights_loading(self.session.weights)  # the session loads them next

    def load_weights(self, weights: str, allow_download: bool) -> None:
        """Load the current model's weights in a worker ("auto", "none" or a file path)."""
        graph = self.state.graph
        if self.state.model is None or graph is None or getattr(graph, "is_preview", False):
            return
        self._show_weights_loading(weights)
        self.session.allow_download = allow_download
        self.session.load_weights(weights)

    def _show_weights_loading(self, weights: str) -> None:
        text = "Loading weights…" if weights in ("auto", "none") else \
            f"Loading weights from {Path(weights).name}…"
        self.window.weights_bar.show_loading(text)
        self.window.weights_label.setText("weights: loading…")

    def _has_published_weights(self) -> bool:
        spec = self.state.spec
        return spec is not None and (spec.weights is not None or spec.hub_weights is not None)

    def retry_download(self) -> None:
        """Try the published weights again; a failure keeps the model's weights and says so."""
        self.session.allow_download = True
        if self.state.loaded is None or self.state.loaded.name != self.state.model:
            self.load_weights("auto", True)
            return
        self.window.weights_bar.show_loading("Retrying the download…")
        self.session.retry_download()

    def cancel_download(self) -> None:
        self.session.runner.cancel("model/weights")

    def open_weights_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open weights file", "", WEIGHT_FILTER)
        if path:
            self.load_weights(path, False)

    def _on_weights(self, loaded) -> None:
        from explorer.core.model.loading import RetryResult

        if isinstance(loaded, RetryResult):  # Retry download: nothing changes unless weights arrived
            if loaded.loaded.name != self.state.model:
                return
            self.window.show_status(f"Retry download: {loaded.message}", 15000, topic="model")
            if not loaded.changed:
                self._restore_weights_badge(loaded.message)
                return
            loaded = loaded.loaded
        if loaded.name != self.state.model:
            return
        state = loaded.weights
        if state.is_random:
            self.window.weights_bar.show_random(state.reason, self._has_published_weights())
            self.window.weights_label.setText("weights: random")
        else:
            self.window.weights_bar.hide_all()
            self.window.weights_label.setText(f"weights: {state.describe()}")
        graph, title = self.state.graph, self.window.spec_title()  # the image docks follow the weights themselves
        classes = self.output_classes()
        self.window.show_status(f"{title}: {len(graph.nodes())} nodes, {len(graph.blocks())} blocks", 8000,
                                topic="model")
        if self.state.model_ref is not None and classes != 1000:
            self.window.show_status(
                f"{title} outputs {classes} class scores, not ImageNet's 1000: classification shows class indices"
                if classes else f"{title} does not output a vector of class scores: classification cannot"
                " interpret it", 15000, topic="model")
        self.window.model_loaded.emit(loaded.name)

    def _restore_weights_badge(self, reason: str | None = None) -> None:
        """The weights bar, and the classify panel's badge with it, say why the weights are random."""
        from explorer.core.model.weights import RANDOM_WARNING

        state = self.state.loaded.weights if self.state.loaded is not None else None
        if state is None or state.is_random:
            why = reason or (state.reason if state else "weights not loaded")
            self.window.weights_bar.show_random(why, self._has_published_weights())
            self.window.weights_label.setText("weights: random")
            if self.window.images is not None and state is not None:
                self.window.images.classify.badge.set_message(f"{RANDOM_WARNING} ({why})")
        else:
            self.window.weights_bar.hide_all()

    # -- any CNN ----------------------------------------------------------------------------

    def open_model_dialog(self) -> None:
        """File → Open model…: a name with completion, or a model file; the window opens it."""
        from explorer.qt.window.open_model_dialog import OpenModelDialog

        if self.open_dialog is not None:
            self.open_dialog.deleteLater()
        self.open_dialog = OpenModelDialog(self.window, session=self.session, recent=self.recent_models())
        self.open_dialog.model_chosen.connect(self.open_model)
        self.open_dialog.open()

    def ask_to_run(self, ref: str) -> None:
        """Ask before running the last session's .py model again (window-modal, not blocking)."""
        from PySide6.QtWidgets import QMessageBox

        box = QMessageBox(QMessageBox.Icon.Question, "Run a Python model file?",
                          f"The last session's model was {Path(ref).name}, a Python file. Opening it runs its code"
                          f" with your permissions, as any script you start would.\n\n{ref}",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self.window)
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
            self.window.saved.settings.setValue("model/ref", self.state.model)

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
                why = "it is not a regular file (a folder, a device or a pipe)" if exists else \
                    "the file does not exist"
                self.window.show_error(f"Cannot open {ref}: {why}"
                                       + (" (removed from the recent models)" if known else ""))
                return
            ref = str(path.resolve())
        self.window.busy.setVisible(True)
        self.window.show_status(f"Opening {ref}…", 0, topic="open")
        self._opening = ref
        self.session.open_reference(ref)

    def _on_opened(self, event: ev.ModelOpened) -> None:
        ref, spec, graph = event.ref, event.spec, event.graph
        self._opening = None
        if spec is None:  # a bare name that is the zoo's
            self.window.status_line.clear("open")
            self.set_model(ref)
            return
        self.window.saved.save_expanded()
        self._shown_preview = None
        self.window.status_line.clear("open")
        self.window.banner.set_message(None)
        self.window.details.show_nothing()
        self.window.view.show_message(f"Drawing {spec.title}…")  # drops the previous model's boxes and selection
        self._add_recent(ref)
        self._ask_for_weights()
        self.session.opened(ref, spec, graph)  # a zoo model still loading is superseded; draws it, loads weights
        self.window.model_opened.emit(ref)

    def _on_problem(self, problem) -> None:
        if problem is not None and problem.topic == "open":
            ref, self._opening = self._opening, None
            self._on_open_failed(ref, problem.message)

    def _on_open_failed(self, ref: str, message: str) -> None:
        self.window.status_line.clear("open")
        self.window.sync_busy()
        self.sync_model_widgets()
        self.window.model_menu_binding.sync()  # a Recent entry was checked when it was chosen
        still = f" {self.window.spec_title()} stays loaded." if self.state.graph is not None else ""
        self.window.show_error(f"Could not open {ref}: {message}.{still}")

    def output_classes(self) -> int | None:
        """How many class scores the current model outputs at this size (None: not a vector)."""
        return self.session.output_classes()

    def recent_models(self) -> list[str]:
        """References of the models opened lately, the latest first."""
        return list(self.state.recent)[:MAX_RECENT]

    def _add_recent(self, ref: str) -> None:
        self.state.recent = tuple([ref] + [r for r in self.state.recent if r != ref])[:MAX_RECENT]

    def _forget_recent(self, ref: str) -> None:
        if ref in self.state.recent:
            self.state.recent = tuple(r for r in self.state.recent if r != ref)
