"""The classification panel: drop, paste or open images and see what the loaded network makes of them.

One image (a dropped file, a paste, a sample) shows in the single view (`SingleView`, single_view.py): the
picture, a bar chart of its top-5 classes and the time split. Given the model's block graph
(`set_model(..., graph=)`), that image is classified by one forward that also keeps every branch's
output, handed on in `ShownImage.capture`. Several files or a folder fill a sortable table batch by
batch, with progress, Cancel, throughput and export (`BatchView`, batch_view.py); clicking a row shows
that image in the view. The buttons, samples and device choice are the `ClassifyToolbar`
(classify_toolbar.py); the panel handles the requests: what waits for the classifier, single or batch.

The panel is a skin over the window's `ExplorerState`: it writes `image` (what a person gave, a file or
a pasted picture), `classification`, `shown_image` and `batch` there, and follows `model` /
`status_text`. Results belong to what made them: a single image's job carries the state's `result_key`
and its result is used only while that key holds; a model switch clears the table (its files can be
classified again with one click) and the view says the new model is loading until its classifier is
ready, when the window's image docks classify `image` again. The work runs as explorer.core.session.tasks
generators in the panel's lanes of the one `JobRunner` (low-priority threads, so a CPU batch does not starve the UI).

Signals
-------
image_classified(object)  ClassificationResult of a single image that could be classified
batch_finished(list)      every ClassificationResult of a batch that ran to the end, in input order
batch_started()           a batch began (the window gives the table room)
failed(str)               a message for the window: a bad file, failures in a batch, a worker error
busy_changed(bool)        a classification or the classifier's preparation started (True) / ended
image_shown(object)       a ShownImage: the picture now on display, its network input, its result and
                          (given the block graph) the Capture of the forward that gave the result
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import QApplication, QFileDialog, QSplitter, QVBoxLayout, QWidget

from explorer.core.classify.images import IMAGE_EXTENSIONS
from explorer.core.session import events as ev
from explorer.core.session.classify import CLASSIFY, PREPARE
from explorer.core.session.session import Session
from explorer.core.session.state import ExplorerState, ImageInput
from explorer.core.session.tasks import ShownImage
from explorer.core.text import fmt_branches_off
from explorer.qt.classify.batch_view import BatchView, PreviousBatchBar
from explorer.qt.classify.classify_toolbar import ClassifyToolbar, DropTarget, dropped_inputs
from explorer.qt.classify.single_view import SingleView
from explorer.qt.panels import Banner
from explorer.qt.result_view import qimage_to_pil
from explorer.qt.results_table import display_name
from explorer.qt.workers import JobRunner

#: Name given to an image that comes from the clipboard or a drop of image data.
PASTED_NAME = "<pasted image>"
#: Share of the panel's width the batch table gets while a batch is on screen (the image the rest).
BATCH_TABLE_SHARE = 0.6
_FILE_FILTER = "Images ({});;All files (*)".format(" ".join(f"*{e}" for e in IMAGE_EXTENSIONS))


class ClassifyPanel(QWidget):
    """Classify dropped, pasted, opened or sample images with the loaded model (see module docstring)."""

    image_classified = Signal(object)
    batch_finished = Signal(list)
    batch_started = Signal()
    failed = Signal(str)
    busy_changed = Signal(bool)
    image_shown = Signal(object)

    def __init__(self, parent=None, *, runner: JobRunner, samples: Sequence | None = None,
                 session: Session | None = None):
        """samples: SampleImage list for the gallery (default: explorer.core.model.samples.sample_images()).
        session: the window's Session (a panel on its own makes its own, on `runner`)."""
        super().__init__(parent)
        self.session = session if session is not None else Session(ExplorerState(), runner, prepares_classifier=False)
        self.state = self.session.state
        #: The session's classification: the classifier, the requests waiting for it, the mode.
        self.images = self.session.images
        self.drop_target = DropTarget(self, self.handle_drop)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # a click on the panel makes Ctrl+V paste here
        self._busy = False
        # Three at once: a preview, the classifier's preparation and a classification never wait for each other.
        # The session's classify lanes run in this group.
        self.runner = runner.lanes("classify", threads=3, parent=self)
        self.runner.busy_changed.connect(lambda _busy: self._update_controls())
        self._build_ui(samples)
        self._listen()
        self.state.connect("model", self._on_model_switched)
        self.state.connect("batch", self._on_batch_state)
        self.state.connect("previous_batch", self.previous_bar.show_previous)
        self.state.connect("result_key", self._show_network)
        self._update_controls()

    def _listen(self) -> None:
        on = self.session.on
        on(ev.ClassifierReady, lambda event: self._on_classifier(event.classifier))
        on(ev.ImageClassified, lambda event: self._on_single_result(event.result))
        on(ev.ImageShown, self._on_shown)
        on(ev.FilesListed, lambda event: self._on_files(event.files, event.empty_folders))
        on(ev.BatchClassified, lambda event: self.batch_view.append(self.state.batch, event.results))
        on(ev.BatchStopped, lambda event: self.batch_view.stop(event.batch, event.text))
        on(ev.JobEnded, self._on_job_ended)
        on(ev.BranchesSwitched, self._on_branches_switched)

    # -- what the session holds, under the names the window and the tests use

    @property
    def classifier(self):
        return self.images.classifier

    @property
    def loaded(self):
        return self.images.loaded

    @property
    def graph(self):
        return self.images.graph

    @property
    def mode(self) -> str:
        """The view's mode: "single" or "batch" (what the last request was)."""
        return self.images.mode

    # ------------------------------------------------------------------ layout

    def _build_ui(self, samples) -> None:
        """The button row, the banners, the batch table beside the result view, the samples, Ctrl+V."""
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self._build_toolbar())
        self._build_banners(lay)
        lay.addWidget(self._build_batch_view(), 1)
        self.toolbar.add_samples(samples)  # after the views: the samples come last in the tab order
        self.sample_buttons, self.drawn_buttons = self.toolbar.sample_buttons, self.toolbar.drawn_buttons
        self.paste_shortcut = QShortcut(QKeySequence(QKeySequence.StandardKey.Paste), self)
        self.paste_shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.paste_shortcut.activated.connect(self.paste)

    def _build_toolbar(self) -> ClassifyToolbar:
        """The button row, connected; its controls under the names the window and the tests use."""
        self.toolbar = t = ClassifyToolbar(self)
        self.open_button, self.folder_button, self.paste_button = t.open_button, t.folder_button, t.paste_button
        self.cancel_button, self.export_button = t.cancel_button, t.export_button
        self.device_label, self.device_combo, self.fast_decode_box = t.device_label, t.device_combo, t.fast_decode_box
        t.open_button.clicked.connect(self.open_files)
        t.folder_button.clicked.connect(self.open_folder)
        t.paste_button.clicked.connect(self.paste)
        t.cancel_button.clicked.connect(self.cancel)
        t.export_button.clicked.connect(lambda: self.batch_view.export_dialog(self, self.state.batch))
        t.device_chosen.connect(self._on_device_chosen)
        t.fast_decode_box.toggled.connect(self._on_fast_decode)
        t.sample_chosen.connect(lambda path: self.classify_paths([path]))
        t.input_chosen.connect(self.classify_input)
        return t

    def _build_banners(self, lay: QVBoxLayout) -> None:
        """The warning and error banners, and the bar that offers a batch cleared by a model switch again."""
        self.badge = Banner("warning", self)
        self.message = Banner("error", self)
        lay.addWidget(self.badge)
        lay.addWidget(self.message)
        self.previous_bar = PreviousBatchBar(self)
        self.previous_bar.requested.connect(self.classify_previous_batch)
        self.previous_label, self.previous_button = self.previous_bar.previous_label, self.previous_bar.previous_button
        lay.addWidget(self.previous_bar)

    def _build_batch_view(self) -> QSplitter:
        """The batch's progress and table beside the result view of the image shown."""
        # A batch's table on the left, the selected image on the right: both get the dock's whole height.
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.result_view = SingleView(self.splitter)
        self.batch_view = BatchView(self.splitter)
        self.batch_view.result_selected.connect(self._on_row_selected)
        self.batch_view.export_failed.connect(self._fail)
        # The batch view's parts, under the names the window and the tests use.
        self.batch_box, self.progress, self.status = self.batch_view, self.batch_view.progress, self.batch_view.status
        self.model, self.proxy, self.table = self.batch_view.model, self.batch_view.proxy, self.batch_view.table
        self.splitter.addWidget(self.batch_box)
        self.splitter.addWidget(self.result_view)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.batch_box.hide()
        return self.splitter

    # ------------------------------------------------------------------ public API

    @property
    def throughput(self) -> float | None:
        """Throughput of the last finished batch, images per second (None before any)."""
        return self.batch_view.throughput

    @property
    def shown(self) -> ShownImage | None:
        """The picture on display with its network input, result and capture (None: none yet, or none)."""
        return self.result_view.shown

    @property
    def busy(self) -> bool:
        """Whether a classification or the classifier's preparation is running (or a request waits)."""
        return self._busy

    def set_model(self, loaded, device: str = "auto", *, batch_size: int | None = None, graph=None) -> None:
        """Use `loaded` (a LoadedModel; None to unload) on `device`: the classifier is built and warmed
        up in a worker. Requests made meanwhile wait for it; the running job is cancelled.
        graph: the model's BlockGraph; with it a single image's forward also captures its branches."""
        self.images.cancel("Stopped: the model changed")
        self.images.prepare(loaded, device, batch_size, graph)
        self.toolbar.show_device(device)
        # A request made while the model loaded waits for its classifier; it is not lost.
        self.result_view.forget("Waiting for the model…" if self.images.pending is not None else None)
        if loaded is None:
            self.badge.set_message(None)
            self.device_label.setText("")
        else:
            self.badge.set_message(loaded.weights.describe() if loaded.weights.is_random else None)
            self.device_label.setText(f"{loaded.name}: preparing ({device})…")
        self._update_controls()

    def _on_device_chosen(self, device: str) -> None:
        if self.loaded is not None and device != self.images.device:
            self.set_model(self.loaded, device, graph=self.graph)
        else:
            self.images.device = device

    def _on_fast_decode(self, checked: bool) -> None:
        self.images.set_fast_decode(checked)

    def classify_paths(self, paths: Sequence[str | os.PathLike]) -> None:
        """Classify files and/or folders: one file → the single view, anything more → the batch table."""
        paths = [Path(p) for p in paths]
        if not paths:
            return
        if len(paths) == 1 and not paths[0].is_dir():
            self.classify_input(ImageInput(paths[0], str(paths[0])))
        else:
            self._request(lambda: self._start_batch(paths))

    def classify_image(self, image) -> None:
        """Classify an in-memory image (a QImage or a PIL image), e.g. from the clipboard."""
        if isinstance(image, QImage):
            if image.isNull():
                self._fail("The pasted image is empty")
                return
            image = qimage_to_pil(image)
        self.classify_input(ImageInput(image, PASTED_NAME))

    def classify_input(self, given: ImageInput) -> None:
        """Classify `given`, which is the image on screen from now on (the state's `image`: the next model
        classifies it again)."""
        self.state.image = given
        self._request(lambda: self._start_single(given))

    def cancel(self) -> None:
        """Stop the running classification (the panel is idle at once; the worker stops at its next check)."""
        had_pending, self.images.pending = self.images.pending is not None, None
        if (self.images.cancel("Cancelled") or had_pending) and self.mode == "single":
            self.result_view.clear("Cancelled.")
        self._update_controls()

    def handle_drop(self, mime: QMimeData) -> bool:
        """Classify what a drop or the clipboard holds: local files/folders, else image data.
        Returns whether there was something to classify (a message says why not otherwise)."""
        paths, image, problem = dropped_inputs(mime)
        if paths:
            self.classify_paths(paths)
        elif image is not None:
            self.classify_image(image)
        elif problem is not None:
            self._fail(problem)
        return bool(paths) or image is not None

    def paste(self) -> bool:
        """Classify the clipboard's image or image files (Ctrl+V)."""
        return self.handle_drop(QApplication.clipboard().mimeData())

    def open_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Classify images", "", _FILE_FILTER)
        if files:
            self.classify_paths(files)

    def open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Classify every image in a folder")
        if folder:
            self.classify_paths([folder])

    def has_pending(self) -> bool:
        """Whether a request waits for the classifier (made while the model loaded)."""
        return self.images.pending is not None

    def classify_previous_batch(self) -> None:
        """Classify the files of the batch a model switch cleared, with the model now loaded."""
        previous = self.state.previous_batch
        if previous is not None:
            self.classify_paths(list(previous.inputs))

    def shutdown(self, msecs: int = 30000) -> bool:
        """Cancel every job and wait for the workers to return (call before the panel is destroyed)."""
        self.runner.cancel_all()
        self.images.pending = None
        return self.runner.wait(msecs)

    # ------------------------------------------------------------------ the state

    def _on_model_switched(self, name) -> None:
        """Another model is on screen: nothing of the previous one is classified or shown any more."""
        if self.loaded is not None and self.loaded.name == name:
            return
        self.images.cancel("Stopped: the model changed")
        self.images.forget()
        text = self.state.status_text or (f"loading {name}…" if name else "")
        self.result_view.forget(text[:1].upper() + text[1:] if text else "")
        self.device_label.setText(text)
        self._update_controls()

    def _show_network(self, key) -> None:
        """The top-5's heading says when the network classifying is not the plain one (branches switched off)."""
        self.result_view.set_modified(f"Modified network: {fmt_branches_off(*key.off)}" if key.off else "")

    def _on_branches_switched(self, _event: ev.BranchesSwitched) -> None:
        """Other branches are off: the image on screen is being classified again (the session started it)."""
        image = self.state.image
        if image is not None:
            self.result_view.show_pending(display_name(image.name))
        self._update_controls()

    def _on_batch_state(self, batch) -> None:
        if batch is None:
            self.batch_view.clear()
            self.images.mode = "single"
            self._update_controls()

    # ------------------------------------------------------------------ requests

    def _request(self, start: Callable[[], None]) -> None:
        """Run `start` now if the classifier is ready, else when it is (a later request replaces it)."""
        self.message.set_message(None)
        outcome = self.images.request(start)
        if outcome == "waiting":
            loading = self.images.loaded is None or not self.images.preparing()
            self.result_view.clear(f"Waiting for {self.state.model} to load…" if loading else "Waiting for the model…")
        elif outcome == "no model":
            self._fail("No model is loaded yet: load a model, then classify")
        self._update_controls()

    def _start_single(self, given: ImageInput) -> None:
        self.result_view.show_pending(display_name(given.name))
        self.batch_view.release_current()  # a batch on screen stays, but none of its rows is the image shown
        self.images.start_single(given)
        self._update_controls()

    def _start_batch(self, paths: list[Path]) -> None:
        self.batch_view.begin()
        w = max(self.splitter.width(), 400)
        self.splitter.setSizes([round(w * BATCH_TABLE_SHARE), round(w * (1 - BATCH_TABLE_SHARE))])
        self.images.start_batch([str(p) for p in paths])
        self.batch_started.emit()
        self._update_controls()

    # ------------------------------------------------------------------ events

    def _on_job_ended(self, event: ev.JobEnded) -> None:
        """The session's classify jobs: a batch that ran to its end, a failure (its message is the problem's)."""
        problem = self.state.problem.message if self.state.problem is not None else ""
        if event.lane == PREPARE and event.outcome == "failed":
            self._on_prepare_failed(problem)
        elif event.lane == CLASSIFY and event.outcome == "failed":
            self._on_classify_failed(problem)
        elif event.lane == CLASSIFY and event.outcome == "done" and self.mode == "batch":
            self._finish_batch()
        elif event.lane.startswith("classify/") and event.outcome == "failed":
            self._fail(problem)
        self._update_controls()

    def _on_prepare_failed(self, message: str) -> None:
        self.device_label.setText(f"{self.loaded.name if self.loaded else ''}: not ready")
        self.result_view.clear("The classifier could not be prepared.")
        self._fail(f"Cannot prepare the classifier: {message}")
        self._update_controls()

    def _on_classify_failed(self, message: str) -> None:
        if self.mode == "batch":
            self.batch_view.stop(self.state.batch, "Stopped by an error")
        else:
            self.result_view.clear("Classification failed.")
        self._fail(f"Classification failed: {message}")
        self._update_controls()

    def _on_classifier(self, classifier) -> None:
        self.toolbar.show_classifier(self.loaded.name, classifier)
        if classifier.notices:
            self.message.set_message(classifier.notices[-1])

    def _on_single_result(self, result) -> None:
        self.result_view.show_single(result)
        if result.ok:
            self.image_classified.emit(result)
        else:
            self._fail(f"{display_name(result.source)}: {result.error}")

    def _on_shown(self, event: ev.ImageShown) -> None:
        shown = self.result_view.show_captured(event)
        if shown is not None:
            self.image_shown.emit(shown)

    def _on_files(self, files: tuple[str, ...], empty: tuple[str, ...]) -> None:
        self.batch_view.set_files(self.state.batch, files, empty)
        if empty:
            self.message.set_message(f"No image files in {', '.join(display_name(p) for p in empty)}")

    def _finish_batch(self) -> None:
        messages = self.batch_view.finish(self.state.batch)
        if messages:
            self._fail("; ".join(messages))
        self.batch_finished.emit(self.batch_view.results)
        self._update_controls()

    def _on_row_selected(self, result) -> None:
        """A batch row became current: its image is the one on screen, previewed with its forward."""
        previewing = result.ok and self.classifier is not None
        self.result_view.show_single(result, previewing=previewing)
        if previewing:
            self.images.preview(result)  # the image on screen now

    # ------------------------------------------------------------------ controls

    def _fail(self, message: str) -> None:
        self.message.set_message(message)
        self.failed.emit(message)

    def _update_controls(self) -> None:
        classifying, pending = self.images.classifying(), self.images.pending is not None
        busy = classifying or self.images.preparing() or pending
        self.cancel_button.setEnabled(classifying or pending)
        self.export_button.setEnabled(self.model.rowCount() > 0 and not (classifying and self.mode == "batch"))
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)

