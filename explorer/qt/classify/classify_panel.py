"""The classification panel: drop, paste or open images and see what the loaded network makes of them.

One image (a dropped file, a paste, a sample) shows in the single view (`ResultView`): the picture, a
bar chart of its top-5 classes and the time split. Given the model's block graph
(`set_model(..., graph=)`), that image is classified by one forward that also keeps every branch's
output, handed on in `ShownImage.capture`. Several files or a folder fill a sortable table batch by
batch, with progress, Cancel, throughput and CSV export; clicking a row shows that image in the view.

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
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QMimeData, QSize, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QFontMetrics, QIcon, QImage, QImageReader, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from explorer.core.session import tasks
from explorer.core.classify.images import IMAGE_EXTENSIONS
from explorer.core.session.state import BatchRun, ExplorerState, ImageInput
from explorer.core.session.tasks import ShownImage  # noqa: F401 - what image_shown carries
from explorer.qt.panels import Banner
from explorer.qt.result_view import ResultView, array_to_qimage, qimage_to_pil
from explorer.qt.results_table import (
    COL_FILE,
    COL_INDEX,
    COL_PROB,
    COL_TOP1,
    COL_TOP5,
    RESULT_ROLE,
    SORT_ROLE,
    ResultsTableModel,
    display_name,
    write_results_csv,
)
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
        self.setAcceptDrops(True)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # a click on the panel makes Ctrl+V paste here
        self.loaded = None  # the LoadedModel
        self.graph = None  # its BlockGraph, when given: single images are then captured
        self.classifier = None  # the Classifier, once the worker has built it
        self.device_request = "auto"
        #: The view's mode: "single" or "batch" (what the last request was).
        self.mode = "single"
        self.shown: ShownImage | None = None
        self._busy = False
        self._pending: Callable[[], None] | None = None  # a request waiting for the classifier
        # Three at once: a preview, the classifier's preparation and a classification never wait for each other.
        self.runner = runner.lanes("classify", threads=3, parent=self)
        self.runner.busy_changed.connect(lambda _busy: self._update_controls())
        self._batch_started = 0.0
        self._empty_folders: tuple[str, ...] = ()
        #: Throughput of the last finished batch, images per second (None before any).
        self.throughput: float | None = None
        self._build_ui(samples)
        self.state.connect("model", self._on_model_switched)
        self.state.connect("batch", self._on_batch_state)
        self.state.connect("previous_batch", self._on_previous_batch)
        self._update_controls()

    # ------------------------------------------------------------------ layout

    def _build_ui(self, samples) -> None:
        """The button row, the banners, the batch table beside the result view, the samples, Ctrl+V."""
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        bar = self._build_button_bar()
        lay.addLayout(bar)
        self._build_banners(lay)
        lay.addWidget(self._build_batch_view(), 1)
        self._add_samples(bar, samples)
        self.paste_shortcut = QShortcut(QKeySequence(QKeySequence.StandardKey.Paste), self)
        self.paste_shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.paste_shortcut.activated.connect(self.paste)

    def _build_button_bar(self) -> QHBoxLayout:
        """Open, Folder, Paste, Cancel and Export; the device line, fast decode and the device choice."""
        bar = QHBoxLayout()
        self.open_button = QPushButton("Open…", self)
        self.open_button.setToolTip("Classify one or more image files")
        self.open_button.clicked.connect(self.open_files)
        self.folder_button = QPushButton("Folder…", self)
        self.folder_button.setToolTip("Classify every image in a folder")
        self.folder_button.clicked.connect(self.open_folder)
        self.paste_button = QPushButton("Paste", self)
        self.paste_button.setToolTip("Classify the image on the clipboard (Ctrl+V)")
        self.paste_button.clicked.connect(self.paste)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button = QPushButton("Export CSV…", self)
        self.export_button.setToolTip("Save the batch table as CSV")
        self.export_button.clicked.connect(self._export_clicked)
        self.device_label = QLabel(self)
        self.device_combo = QComboBox(self)
        for text, value in (("Device: auto", "auto"), ("Device: CPU", "cpu"), ("Device: CUDA", "cuda")):
            self.device_combo.addItem(text, value)
        self.device_combo.setToolTip("Where images are classified: auto picks the GPU when there is one")
        self.device_combo.currentIndexChanged.connect(self._on_device_combo)
        self.fast_decode_box = QCheckBox("Fast decode", self)
        self.fast_decode_box.setToolTip(
            "Decode big JPEGs at a reduced scale on the CPU: several times faster, but the network input is\n"
            "within ~0.5 grey levels of torchvision's instead of equal to it; each such result says so")
        self.fast_decode_box.toggled.connect(self._on_fast_decode)
        for w in (self.open_button, self.folder_button, self.paste_button, self.cancel_button, self.export_button):
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(self.device_label)
        bar.addWidget(self.fast_decode_box)
        bar.addWidget(self.device_combo)
        return bar

    def _build_banners(self, lay: QVBoxLayout) -> None:
        """The warning and error banners, and the bar that offers a batch cleared by a model switch again."""
        self.badge = Banner("warning", self)
        self.message = Banner("error", self)
        lay.addWidget(self.badge)
        lay.addWidget(self.message)
        # A batch cleared by a model switch: its files can be classified again with the new model.
        self.previous_bar = QWidget(self)
        pl = QHBoxLayout(self.previous_bar)
        pl.setContentsMargins(0, 0, 0, 0)
        self.previous_label = QLabel(self.previous_bar)
        self.previous_button = QPushButton("Classify them again", self.previous_bar)
        self.previous_button.setToolTip("Classify the same files and folders with the model now loaded")
        self.previous_button.clicked.connect(self.classify_previous_batch)
        pl.addWidget(self.previous_label, 1)
        pl.addWidget(self.previous_button)
        self.previous_bar.hide()
        lay.addWidget(self.previous_bar)

    def _build_batch_view(self) -> QSplitter:
        """The batch's progress and table beside the result view of the image shown."""
        # A batch's table on the left, the selected image on the right: both get the dock's whole height.
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.result_view = ResultView(self.splitter)
        self.batch_box = QWidget(self.splitter)
        bl = QVBoxLayout(self.batch_box)
        bl.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.progress = QProgressBar(self.batch_box)
        self.progress.setFormat("%v / %m")
        self.status = QLabel(self.batch_box)
        row.addWidget(self.progress, 1)
        row.addWidget(self.status, 2)
        bl.addLayout(row)
        self.model = ResultsTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView(self.batch_box)
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSortIndicator(COL_INDEX, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        # Fixed starting widths (user-resizable): ResizeToContents would measure every row on each
        # batch, on the UI thread.
        fm = QFontMetrics(self.table.font())
        widths = {COL_INDEX: fm.horizontalAdvance("00000") + 12, COL_FILE: 150, COL_TOP1: 140,
                  COL_PROB: fm.horizontalAdvance("Probability") + 24, COL_TOP5: 300}
        header.setStretchLastSection(True)
        for col, width in widths.items():
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(col, width)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(fm.height() + 6)
        self.table.selectionModel().currentRowChanged.connect(self._on_row_changed)
        bl.addWidget(self.table, 1)
        self.splitter.addWidget(self.batch_box)
        self.splitter.addWidget(self.result_view)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.batch_box.hide()
        return self.splitter

    def _add_samples(self, bar: QHBoxLayout, samples) -> None:
        """The sample photos as buttons in the button row, before the device line."""
        # Samples: small pictures in the button row (their names in the tooltips), so nothing below the
        # views can be cut off or pushed out of a low dock.
        self.sample_buttons: list[QToolButton] = []
        if samples is None:
            from explorer.core.model.samples import sample_images

            samples = sample_images()
        if samples:
            bar.insertWidget(bar.count() - 3, QLabel("Samples:", self))
        for s in samples:
            b = QToolButton(self)
            b.setText(s.title or s.name)
            b.setToolTip(f"Classify {s.title or s.name}" + (f"\n{s.credit} ({s.licence})" if s.credit else ""))
            b.setIcon(QIcon(_thumbnail(s.path, 32)))
            b.setIconSize(QSize(28, 28))
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
            b.setAutoRaise(True)
            b.clicked.connect(lambda _=False, path=s.path: self.classify_paths([path]))
            bar.insertWidget(bar.count() - 3, b)
            self.sample_buttons.append(b)

    # ------------------------------------------------------------------ public API

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
        self.device_combo.blockSignals(True)
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(device)))
        self.device_combo.blockSignals(False)
        # A request made while the model loaded waits for its classifier; it is not lost.
        self.result_view.clear("Waiting for the model…" if self._pending is not None else None)
        self.shown = None
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
        index = self.device_combo.findData(device)
        if index < 0:
            raise ValueError(f"unknown device {device!r}: auto, cpu or cuda")
        if index != self.device_combo.currentIndex():
            self.device_combo.setCurrentIndex(index)  # → _on_device_combo
        elif self.loaded is not None and device != self.device_request:
            self.set_model(self.loaded, device, graph=self.graph)

    def _on_device_combo(self, index: int) -> None:
        device = self.device_combo.itemData(index)
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
        if mime is None:
            return False
        if mime.hasUrls():
            urls = mime.urls()
            local = [u.toLocalFile() for u in urls if u.isLocalFile()]
            if local:
                self.classify_paths(local)
                return True
            if not mime.hasImage():
                self._fail("Only local files can be classified (the drop holds web addresses)")
                return False
        if mime.hasImage():
            image = mime.imageData()
            if isinstance(image, QPixmap):
                image = image.toImage()
            if isinstance(image, QImage) and not image.isNull():
                self.classify_image(image)
                return True
        self._fail("Nothing to classify: drop or paste image files, a folder or an image")
        return False

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
        return self.model.results

    def export_csv(self, path: str | os.PathLike) -> Path:
        """Write the batch table (input order) to `path` as CSV; see results_table.csv_header."""
        return write_results_csv(self.model.results, path)

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

    # ------------------------------------------------------------------ drops

    def dragEnterEvent(self, event) -> None:
        mime = event.mimeData()
        if (mime.hasUrls() and any(u.isLocalFile() for u in mime.urls())) or mime.hasImage():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        if self.handle_drop(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

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
        self.shown = None
        text = self.state.status_text or (f"loading {name}…" if name else "")
        self.result_view.clear(text[:1].upper() + text[1:] if text else "")
        self.device_label.setText(text)
        self._update_controls()

    def _on_batch_state(self, batch) -> None:
        if batch is None:
            self.model.clear_results()
            self.batch_box.hide()
            self.mode = "single"
            self._update_controls()

    def _on_previous_batch(self, previous) -> None:
        if previous is None:
            self.previous_bar.hide()
            return
        n = len(previous.results)
        self.previous_label.setText(
            f"The batch table held {n} result{'s' if n != 1 else ''} of {previous.model}; they were cleared"
            " when the model changed.")
        self.previous_bar.show()

    # ------------------------------------------------------------------ requests

    def _interrupt(self, why: str) -> bool:
        """Cancel the running classification, saying so in the batch status; whether one ran."""
        if not self.runner.cancel("classify"):
            return False
        batch = self.state.batch
        if self.mode == "batch" and batch is not None:
            total = batch.total or 0
            self.progress.setRange(0, max(total, 1))
            self.status.setText(f"{why} after {self.model.rowCount()} of {total} images")
            batch.status = "cancelled"
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
        self.model.clear_results()
        self.table.sortByColumn(COL_INDEX, Qt.SortOrder.AscendingOrder)
        self._empty_folders = ()
        self.throughput = None
        self.state.previous_batch = None
        self.state.batch = BatchRun(model=self.loaded.name, inputs=tuple(str(p) for p in paths))
        self.progress.setRange(0, 0)  # busy indicator while folders are listed
        self.status.setText("Listing files…")
        self.batch_box.show()
        w = max(self.splitter.width(), 400)
        self.splitter.setSizes([round(w * BATCH_TABLE_SHARE), round(w * (1 - BATCH_TABLE_SHARE))])
        self._batch_started = time.perf_counter()
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
            self._on_batch(event.results)

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
            batch = self.state.batch
            self.progress.setRange(0, max(batch.total or 0 if batch else 0, 1))
            self.status.setText("Stopped by an error")
            if batch is not None:
                batch.status = "failed"
        else:
            self.result_view.clear("Classification failed.")
        self._fail(f"Classification failed: {message}")
        self._update_controls()

    def _on_classifier(self, classifier) -> None:
        self.classifier = classifier
        classifier.fast_decode = self.fast_decode_box.isChecked()
        graph = " · CUDA graph" if classifier.graph_ready else ""
        self.device_label.setText(f"{self.loaded.name} on {classifier.device}{graph}")
        self.device_label.setToolTip("\n".join(classifier.notices))
        if classifier.notices:
            self.message.set_message(classifier.notices[-1])

    def _on_single_result(self, result) -> None:
        self.result_view.show_result(result)
        self.shown = None
        self.state.classification = result
        if result.ok:
            self.image_classified.emit(result)
        else:
            self._fail(f"{display_name(result.source)}: {result.error}")

    def _on_shown(self, event: tasks.ImageShown, key) -> None:
        shown = event.shown
        if shown is None:
            self.result_view.show_image(None)
            return
        shown.key = key
        self.shown = shown
        if self.result_view.result is not shown.result and shown.result is not None:
            # A table row's preview: its captured forward is what the view now shows, top-5 included.
            self.result_view.show_result(shown.result)
        self.result_view.show_image(array_to_qimage(event.thumbnail) if event.thumbnail is not None else None)
        self.state.shown_image = shown
        self.image_shown.emit(shown)

    def _on_files(self, files: tuple[str, ...], empty: tuple[str, ...]) -> None:
        if self.state.batch is not None:
            self.state.batch.total = len(files)
        self._empty_folders = empty
        self.progress.setRange(0, max(len(files), 1))
        self.progress.setValue(0)
        self.status.setText(f"Classifying {len(files)} images…" if files else "No images")
        if empty:
            names = ", ".join(display_name(p) for p in empty)
            self.message.set_message(f"No image files in {names}")

    def _on_batch(self, results) -> None:
        self.model.append(results)
        if self.state.batch is not None:
            self.state.batch.results.extend(results)
        done = self.model.rowCount()
        total = self.state.batch.total if self.state.batch is not None else done
        self.progress.setValue(done)
        self.status.setText(f"Classifying… {done} / {total}")
        if self.table.currentIndex().row() < 0 and self.proxy.rowCount() > 0:
            self.table.selectRow(0)

    def _finish_batch(self) -> None:
        results = self.model.results
        n = len(results)
        elapsed = time.perf_counter() - self._batch_started
        self.throughput = n / elapsed if n and elapsed > 0 else None
        if self.state.batch is not None:
            self.state.batch.status, self.state.batch.seconds = "done", elapsed
        self.progress.setRange(0, max(n, 1))
        self.progress.setValue(n)
        failures = self.model.failure_count()
        if n:
            rate = f" — {self.throughput:.1f} images/s" if self.throughput else ""
            self.status.setText(f"{n} images in {elapsed:.1f} s{rate}")
        messages = []
        if failures:
            messages.append(f"{failures} of {n} files could not be classified (see the Error column)")
        if self._empty_folders:
            messages.append(f"No image files in {', '.join(display_name(p) for p in self._empty_folders)}")
        if not n and not self._empty_folders:
            messages.append("Nothing to classify")
        if messages:
            self._fail("; ".join(messages))
        self.batch_finished.emit(results)
        self._update_controls()

    def _on_row_changed(self, current, _previous) -> None:
        if not current.isValid():
            return
        result = self.proxy.data(current.siblingAtColumn(0), RESULT_ROLE)
        if result is None:
            return
        self.result_view.show_result(result)
        self.shown = None
        if result.ok and self.classifier is not None:
            self.result_view.show_image(None)
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

    def _export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the results as CSV", "classification.csv",
                                              "CSV files (*.csv)")
        if path:
            try:
                self.export_csv(path)
            except OSError as e:
                self._fail(f"Cannot write {path}: {e.strerror or e}")


def _thumbnail(path: Path, side: int) -> QPixmap:
    """A small pixmap of an image file, decoded at reduced size where the format allows."""
    reader = QImageReader(str(path))
    size = reader.size()
    if size.isValid():
        reader.setScaledSize(size.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    return QPixmap.fromImage(image) if not image.isNull() else QPixmap()
