"""The classification panel: drop, paste or open images and see what the loaded network makes of them.

One image (a dropped file, a paste, a sample) shows in the single view (`SingleView`, single_view.py): the
picture, a bar chart of its top-5 classes and the time split. Given the model's block graph
(`set_model(..., graph=)`), that image is classified by one forward that also keeps every branch's
output, handed on in `ShownImage.capture`. Several files or a folder fill a sortable table batch by
batch, with progress, Cancel, throughput and CSV export (`BatchView`, batch_view.py); clicking a row shows
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

from explorer.core.session import tasks
from explorer.core.classify.images import IMAGE_EXTENSIONS
from explorer.core.session.state import BatchRun, ExplorerState, ImageInput
from explorer.core.session.tasks import ShownImage
from explorer.qt.classify.batch_view import BatchView, PreviousBatchBar
from explorer.qt.classify.classify_toolbar import ClassifyToolbar, DropTarget, dropped_inputs
from explorer.qt.classify.single_view import SingleView
from explorer.qt.panels import Banner
from explorer.qt.result_view import qimage_to_pil
from explorer.qt.results_table import display_name
from explorer.qt.workers import Job, JobRunner

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
                 state: ExplorerState | None = None):
        """samples: SampleImage list for the gallery (default: explorer.core.model.samples.sample_images()).
        state: the window's ExplorerState (a panel on its own makes its own)."""
        super().__init__(parent)
        self.state = state if state is not None else ExplorerState()
        self.drop_target = DropTarget(self, self.handle_drop)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # a click on the panel makes Ctrl+V paste here
        self.loaded = None  # the LoadedModel
        self.graph = None  # its BlockGraph, when given: single images are then captured
        self.classifier = None  # the Classifier, once the worker has built it
        self.device_request = "auto"
        #: The view's mode: "single" or "batch" (what the last request was).
        self.mode = "single"
        self._busy = False
        self._pending: Callable[[], None] | None = None  # a request waiting for the classifier
        # Three at once: a preview, the classifier's preparation and a classification never wait for each other.
        self.runner = runner.lanes("classify", threads=3, parent=self)
        self.runner.busy_changed.connect(lambda _busy: self._update_controls())
        self._build_ui(samples)
        self.state.connect("model", self._on_model_switched)
        self.state.connect("batch", self._on_batch_state)
        self.state.connect("previous_batch", self.previous_bar.show_previous)
        self._update_controls()

    # ------------------------------------------------------------------ layout

    def _build_ui(self, samples) -> None:
        """The button row, the banners, the batch table beside the result view, the samples, Ctrl+V."""
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self._build_toolbar())
        self._build_banners(lay)
        lay.addWidget(self._build_batch_view(), 1)
        self.toolbar.add_samples(samples)  # after the views: the samples come last in the tab order
        self.sample_buttons = self.toolbar.sample_buttons
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
        t.export_button.clicked.connect(lambda: self.batch_view.export_dialog(self))
        t.device_chosen.connect(self._on_device_chosen)
        t.fast_decode_box.toggled.connect(self._on_fast_decode)
        t.sample_chosen.connect(lambda path: self.classify_paths([path]))
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
        self._interrupt("Stopped: the model changed")
        self.runner.cancel("preview")
        self.runner.cancel("prepare")
        if loaded is None:
            self._pending = None
        self.loaded, self.graph, self.classifier, self.device_request = loaded, graph, None, device
        self.toolbar.show_device(device)
        # A request made while the model loaded waits for its classifier; it is not lost.
        self.result_view.forget("Waiting for the model…" if self._pending is not None else None)
        if loaded is None:
            self.badge.set_message(None)
            self.device_label.setText("")
        else:
            self.badge.set_message(loaded.weights.describe() if loaded.weights.is_random else None)
            self.device_label.setText(f"{loaded.name}: preparing ({device})…")
            self.runner.start("prepare", Job(tasks.prepare_classifier, loaded, device, batch_size, graph),
                              on_event=self._on_event, on_success=lambda _: self._on_prepared(),
                              on_failure=self._on_prepare_failed)
        self._update_controls()

    def set_device(self, device: str) -> None:
        """Classify on "auto", "cpu" or "cuda" from now on (the classifier is prepared again)."""
        if not self.toolbar.choose_device(device):  # a change of the combo has reached _on_device_chosen
            self._on_device_chosen(device)

    def _on_device_chosen(self, device: str) -> None:
        if self.loaded is not None and device != self.device_request:
            self.set_model(self.loaded, device, graph=self.graph)
        else:
            self.device_request = device

    def _on_fast_decode(self, checked: bool) -> None:
        if self.classifier is not None:  # read at each image: the next one follows the box
            self.classifier.fast_decode = checked

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
        had_pending, self._pending = self._pending is not None, None
        if (self._interrupt("Cancelled") or had_pending) and self.mode == "single":
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

    def batch_results(self) -> list:
        """The batch table's results, in input order."""
        return self.batch_view.results

    def export_csv(self, path: str | os.PathLike) -> Path:
        """Write the batch table (input order) to `path` as CSV; see results_table.csv_header."""
        return self.batch_view.export_csv(path)

    def has_pending(self) -> bool:
        """Whether a request waits for the classifier (made while the model loaded)."""
        return self._pending is not None

    def classify_previous_batch(self) -> None:
        """Classify the files of the batch a model switch cleared, with the model now loaded."""
        previous = self.state.previous_batch
        if previous is not None:
            self.classify_paths(list(previous.inputs))

    def shutdown(self, msecs: int = 30000) -> bool:
        """Cancel every job and wait for the workers to return (call before the panel is destroyed)."""
        self.runner.cancel_all()
        self._pending = None
        return self.runner.wait(msecs)

    # ------------------------------------------------------------------ the state

    def _on_model_switched(self, name) -> None:
        """Another model is on screen: nothing of the previous one is classified or shown any more."""
        if self.loaded is not None and self.loaded.name == name:
            return
        self._interrupt("Stopped: the model changed")
        self.runner.cancel("preview")
        self.runner.cancel("prepare")
        self._pending = None
        self.loaded = self.graph = self.classifier = None
        text = self.state.status_text or (f"loading {name}…" if name else "")
        self.result_view.forget(text[:1].upper() + text[1:] if text else "")
        self.device_label.setText(text)
        self._update_controls()

    def _on_batch_state(self, batch) -> None:
        if batch is None:
            self.batch_view.clear()
            self.mode = "single"
            self._update_controls()

    # ------------------------------------------------------------------ requests

    def _interrupt(self, why: str) -> bool:
        """Cancel the running classification, saying so in the batch status; whether one ran."""
        if not self.runner.cancel("classify"):
            return False
        batch = self.state.batch
        if self.mode == "batch" and batch is not None:
            self.batch_view.stop(batch, f"{why} after {self.model.rowCount()} of {batch.total or 0} images", "cancelled")
        return True

    def _request(self, start: Callable[[], None]) -> None:
        """Run `start` now if the classifier is ready, else when it is (a later request replaces it)."""
        self._interrupt("Stopped by a new request")
        self.message.set_message(None)
        if self.classifier is not None:
            start()
        elif self.loaded is not None and self.runner.running("prepare") is not None:
            self._pending = start
            self.result_view.clear("Waiting for the model…")
        elif self.state.model_status == "loading" and self.state.model:
            self._pending = start
            self.result_view.clear(f"Waiting for {self.state.model} to load…")
        else:
            self._fail("No model is loaded yet: load a model, then classify")
        self._update_controls()

    def _start_single(self, given: ImageInput) -> None:
        self.mode = "single"
        self.result_view.show_pending(display_name(given.name))
        key = self.state.result_key
        self.runner.start("classify", Job(tasks.classify_single, self.classifier, given.source, given.name),
                          on_event=lambda event: self._on_event(event, key), on_failure=self._on_classify_failed)
        self._update_controls()

    def _start_batch(self, paths: list[Path]) -> None:
        self.mode = "batch"
        self.state.previous_batch = None
        self.state.batch = BatchRun(model=self.loaded.name, inputs=tuple(str(p) for p in paths))
        self.batch_view.begin()
        w = max(self.splitter.width(), 400)
        self.splitter.setSizes([round(w * BATCH_TABLE_SHARE), round(w * (1 - BATCH_TABLE_SHARE))])
        self.runner.start("classify", Job(tasks.classify_batch, self.classifier, [str(p) for p in paths]),
                          on_event=self._on_event, on_success=lambda _: self._finish_batch(),
                          on_failure=self._on_classify_failed)
        self.batch_started.emit()
        self._update_controls()

    # ------------------------------------------------------------------ events

    def _on_event(self, event, key=None) -> None:
        """A job's event; `key`: the ResultKey a single image's job was started for (its results are used
        only while the key holds)."""
        if isinstance(event, tasks.ClassifierReady):
            self._on_classifier(event.classifier)
        elif isinstance(event, (tasks.ImageClassified, tasks.ImageShown)) and not self.state.holds(key):
            return
        elif isinstance(event, tasks.ImageClassified):
            self._on_single_result(event.result)
        elif isinstance(event, tasks.ImageShown):
            self._on_shown(event, key)
        elif isinstance(event, tasks.FilesListed):
            self._on_files(event.files, event.empty_folders)
        elif isinstance(event, tasks.BatchClassified):
            self.batch_view.append(self.state.batch, event.results)

    def _on_prepared(self) -> None:
        if self._pending is not None and self.classifier is not None:
            pending, self._pending = self._pending, None
            pending()
        self._update_controls()

    def _on_prepare_failed(self, message: str) -> None:
        self._pending = None
        self.device_label.setText(f"{self.loaded.name if self.loaded else ''}: not ready")
        self.result_view.clear("The classifier could not be prepared.")
        self._fail(f"Cannot prepare the classifier: {message}")
        self._update_controls()

    def _on_classify_failed(self, message: str) -> None:
        if self.mode == "batch":
            self.batch_view.stop(self.state.batch, "Stopped by an error", "failed")
        else:
            self.result_view.clear("Classification failed.")
        self._fail(f"Classification failed: {message}")
        self._update_controls()

    def _on_classifier(self, classifier) -> None:
        self.classifier = classifier
        classifier.fast_decode = self.fast_decode_box.isChecked()
        self.toolbar.show_classifier(self.loaded.name, classifier)
        if classifier.notices:
            self.message.set_message(classifier.notices[-1])

    def _on_single_result(self, result) -> None:
        self.result_view.show_single(result)
        self.state.classification = result
        if result.ok:
            self.image_classified.emit(result)
        else:
            self._fail(f"{display_name(result.source)}: {result.error}")

    def _on_shown(self, event: tasks.ImageShown, key) -> None:
        shown = self.result_view.show_captured(event, key)
        if shown is not None:
            self.state.shown_image = shown
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
            self.state.image = ImageInput(result.source, result.source)  # the image on screen now
            key = self.state.result_key
            self.runner.start("preview", Job(tasks.preview_file, self.classifier, result.source, result),
                              on_event=lambda event: self._on_event(event, key), on_failure=self._fail)

    # ------------------------------------------------------------------ controls

    def _fail(self, message: str) -> None:
        self.message.set_message(message)
        self.failed.emit(message)

    def _update_controls(self) -> None:
        classifying = self.runner.running("classify") is not None
        busy = classifying or self.runner.running("prepare") is not None or self._pending is not None
        self.cancel_button.setEnabled(classifying or self._pending is not None)
        self.export_button.setEnabled(self.model.rowCount() > 0 and not (classifying and self.mode == "batch"))
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)

