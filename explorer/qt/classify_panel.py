"""The classification panel: drop, paste or open images and see what the loaded network makes of them.

One image (a dropped file, a paste, a sample) shows in the single view: the picture, a bar chart of
its top-5 classes and the time split into decode / preprocess / forward. Given the model's block
graph (`set_model(..., graph=)`), that image is classified by one forward that also keeps every
branch's output (`Classifier.classify_captured`), handed on in `ShownImage.capture`. Several files
or a folder fill a sortable table batch by batch, with progress, Cancel, throughput and CSV export;
clicking a row shows that image and its result in the single view.

All torch work runs on a private thread pool (`_Job`: a generator per task that yields plain data
and checks a CancelToken between steps); widgets are touched only by slots on the UI thread. One
classification at a time: a new request cancels the running one, whose later output is dropped.
The pool's threads run at a lower OS priority than the UI thread, so that a CPU batch does not
starve the event loop. The main window docks the panel and forwards drops and pastes to
`handle_drop` / `paste`, and calls `shutdown()` when it closes.

Signals
-------
image_classified(object)  ClassificationResult of a single image that could be classified
batch_finished(list)      every ClassificationResult of a batch that ran to the end, in input order
failed(str)               a message for the status bar: a bad file, failures in a batch, a worker
                          error, a drop with nothing to classify, no model loaded
busy_changed(bool)        a classification or the classifier's preparation started (True) / ended
image_shown(object)       a ShownImage: the picture now on display, its network input, its result and
                          (given the block graph) the Capture of the forward that gave the result
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QMimeData,
    QObject,
    QRunnable,
    QSize,
    QSortFilterProxyModel,
    Qt,
    QThread,
    QThreadPool,
    Signal,
    Slot,
)
from PySide6.QtGui import QFontMetrics, QIcon, QImage, QImageReader, QKeySequence, QPalette, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from explorer.core.cancel import Cancelled, CancelToken
from explorer.core.images import IMAGE_EXTENSIONS, ImageLoadError, expand_inputs
from explorer.qt.panels import Banner
from explorer.qt.results_table import (
    COL_ERROR,
    COL_FILE,
    COL_INDEX,
    COL_PROB,
    COL_TOP1,
    COL_TOP5,
    RESULT_ROLE,
    SORT_ROLE,
    ResultsTableModel,
    display_name,
    fmt_prob,
    write_results_csv,
)

#: Classes shown per image.
TOP = 5
#: Longest side of the picture sent to the UI thread (the label scales it further).
DISPLAY_MAX = 768
#: Name given to an image that comes from the clipboard or a drop of image data.
PASTED_NAME = "<pasted image>"
_FILE_FILTER = "Images ({});;All files (*)".format(" ".join(f"*{e}" for e in IMAGE_EXTENSIONS))


@dataclass
class ShownImage:
    """What the single view displays, for views that work on the same image (activations, attribution).

    image: the upright RGB PIL image as decoded (on the CPU a big JPEG at a reduced DCT scale, never
    smaller than the network's resize; a GPU decode shrunk to DISPLAY_MAX). result: its
    ClassificationResult. capture: the `Capture` of the forward that gave `result` (tensors on the
    classifier's device), None without a block graph. x: that forward's input (1, 3, crop, crop), on
    the same device. rgb: x de-normalised, (crop, crop, 3) uint8. model: the model's name.
    """

    source: str
    image: Any
    result: Any
    capture: Any = None
    x: Any = None
    rgb: Any = None
    model: str | None = None


# ---------------------------------------------------------------------------------------- workers


class _JobSignals(QObject):
    yielded = Signal(int, object)
    finished = Signal(int)
    failed = Signal(int, str)
    cancelled = Signal(int)


class _Job(QRunnable):
    """Runs the generator `fn(*args, cancel=token)` on a pool thread and emits what it yields.

    Signals carry the job id: the panel drops anything from a job that is no longer current.
    """

    def __init__(self, job_id: int, fn: Callable[..., Iterator], args: tuple):
        super().__init__()
        self.setAutoDelete(False)
        self.job_id, self.fn, self.args = job_id, fn, args
        self.token = CancelToken()
        self.signals = _JobSignals()
        self.done = threading.Event()

    def run(self) -> None:
        _lower_thread_priority()
        try:
            for item in self.fn(*self.args, cancel=self.token):
                self.token.raise_if_cancelled()
                self.signals.yielded.emit(self.job_id, item)
            self.token.raise_if_cancelled()
        except Cancelled:
            self.signals.cancelled.emit(self.job_id)
        except Exception as e:  # every worker error ends up in the panel's message area
            if not isinstance(e, (ValueError, OSError, ImageLoadError)):
                traceback.print_exc()
            self.signals.failed.emit(self.job_id, str(e) or type(e).__name__)
        else:
            self.signals.finished.emit(self.job_id)
        finally:
            self.done.set()


#: Linux nice increment of the worker threads over the process (see _lower_thread_priority).
WORKER_NICE = 10


def _lower_thread_priority() -> None:
    """Let the UI thread win a core from the workers: on a 2-core machine torch's threads took both
    and the event loop stalled >100 ms several times per batch; at nice +10 the longest stall fell
    under 50 ms with unchanged throughput (bench/bench_ui_stall.py). Per thread: torch's OpenMP
    helpers, started by this thread's first parallel op, inherit it. Elsewhere Qt's LowPriority."""
    if sys.platform.startswith("linux"):
        try:
            target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + WORKER_NICE)
            tid = threading.get_native_id()
            if os.getpriority(os.PRIO_PROCESS, tid) < target:
                os.setpriority(os.PRIO_PROCESS, tid, target)
        except OSError:
            pass
    else:
        QThread.currentThread().setPriority(QThread.Priority.LowPriority)


def _prepare_task(loaded, device: str, batch_size: int | None, graph, *, cancel: CancelToken):
    """Build the classifier (a device copy of the network, probed through `graph` when given) and
    warm it up (its capture model; CUDA graphs on a GPU)."""
    from explorer.core.inference import Classifier

    classifier = Classifier(loaded, device=device, batch_size=batch_size, graph=graph)
    cancel.raise_if_cancelled()
    classifier.warm_up()
    yield ("classifier", classifier)


def _single_task(classifier, source, name: str, *, cancel: CancelToken):
    """Classify one input and hand it on for display (the top-5 comes first). With a block graph,
    one forward gives the top-5 and every branch's output, from one decode."""
    if classifier.can_capture:
        out = classifier.classify_captured(source, name=name, top=TOP, display_max=DISPLAY_MAX, cancel=cancel)
        yield ("result", out.result)
        if out.result.ok:
            cancel.raise_if_cancelled()
            yield ("shown", _captured_shown(classifier, out, name))
        return
    [result] = classifier.classify([source], names=[name], top=TOP, cancel=cancel)
    yield ("result", result)
    if result.ok:
        cancel.raise_if_cancelled()
        yield ("shown", _shown_image(classifier, source, name, result))


def _batch_task(classifier, paths: list, *, cancel: CancelToken):
    """Expand folders, announce the file list, then classify it batch by batch."""
    files: list[Path] = []
    empty: list[str] = []
    for p in paths:
        found = expand_inputs([p])
        if Path(p).is_dir() and not found:
            empty.append(str(p))
        files.extend(found)
    yield ("files", ([str(f) for f in files], empty))
    for results in classifier.iter_classify(files, top=TOP, cancel=cancel):
        yield ("batch", results)


def _preview_task(classifier, source: str, result, *, cancel: CancelToken):
    """Show a file of the batch table (a row was selected). With a block graph the batch kept no
    activations: one captured forward then gives the view its top-5 and activations together."""
    if classifier.can_capture:
        out = classifier.classify_captured(source, name=source, top=TOP, display_max=DISPLAY_MAX, cancel=cancel)
        yield ("shown", _captured_shown(classifier, out, display_name(source)) if out.result.ok else None)
        return
    yield ("shown", _shown_image(classifier, source, display_name(source), result))


def _captured_shown(classifier, out, name: str):
    """(ShownImage, QImage for display) of a `CapturedClassification` (no decode: its picture)."""
    thumb = out.picture.copy()
    thumb.thumbnail((DISPLAY_MAX, DISPLAY_MAX))
    shown = ShownImage(source=name, image=out.picture, result=out.result, capture=out.capture, x=out.x,
                       rgb=out.rgb, model=classifier.loaded.name)
    return shown, pil_to_qimage(thumb)


def _shown_image(classifier, source, name: str, result):
    """(ShownImage without a capture, QImage for display) or None when the file cannot be decoded
    (any more): for a classifier without a block graph, where the top-5 came from `classify`."""
    from explorer.core.images import LoadedImage, load_image, to_rgb

    try:
        if isinstance(source, (str, os.PathLike)):
            li = load_image(source, max_pixels=classifier.max_pixels, draft_short_side=classifier.resize_size,
                            name=name)
        else:
            rgb = to_rgb(source)
            li = LoadedImage(image=rgb, source=name, format="", stored_size=rgb.size, mode=source.mode,
                             box=(0, 0, *rgb.size))
    except ImageLoadError:
        return None
    x = classifier.preprocess(li)[None]
    thumb = li.image.copy()
    thumb.thumbnail((DISPLAY_MAX, DISPLAY_MAX))
    shown = ShownImage(source=name, image=li.image, result=result, x=x, rgb=classifier.input_rgb(x[0]),
                       model=classifier.loaded.name)
    return shown, pil_to_qimage(thumb)


def pil_to_qimage(image) -> QImage:
    """An RGB PIL image as a QImage that owns its pixels (safe to hand across threads)."""
    a = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    h, w, _ = a.shape
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def qimage_to_pil(image: QImage):
    """A QImage as a PIL image: RGBA when it has alpha (the engine composites it onto white), else RGB."""
    from PIL import Image

    alpha = image.hasAlphaChannel()
    fmt = QImage.Format.Format_RGBA8888 if alpha else QImage.Format.Format_RGB888
    channels = 4 if alpha else 3
    img = image.convertToFormat(fmt)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    a = np.frombuffer(img.constBits(), dtype=np.uint8, count=bpl * h).reshape(h, bpl)
    a = a[:, : w * channels].reshape(h, w, channels).copy()
    return Image.fromarray(a, "RGBA" if alpha else "RGB")


# ---------------------------------------------------------------------------------------- widgets


class TopKChart(pg.PlotWidget):
    """Horizontal bars of the top-k probabilities, best at the top, labels on the left axis."""

    def __init__(self, parent=None):
        super().__init__(parent)
        pal = self.palette()
        text = pal.color(QPalette.ColorRole.WindowText)
        self.setBackground(pal.color(QPalette.ColorRole.Base))
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        item = self.getPlotItem()
        item.invertY(True)
        item.setXRange(0, 1.16, padding=0)  # room right of a 100% bar for its label
        item.setYRange(-0.5, TOP - 0.5, padding=0.02)
        for side in ("left", "bottom"):
            axis = item.getAxis(side)
            axis.setTextPen(text)
            axis.setPen(pal.color(QPalette.ColorRole.Mid))
        bottom = item.getAxis("bottom")
        bottom.setTicks([[(v, f"{v:.0%}") for v in (0, 0.25, 0.5, 0.75, 1.0)]])
        bottom.setStyle(hideOverlappingLabels=False)  # else 0% and 100% vanish at the plot's edges
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.65, width=[], brush=pg.mkBrush(70, 130, 200),
                                    pen=pg.mkPen(None))
        self.addItem(self.bars)
        # Made once and reused: creating pyqtgraph items costs milliseconds on the UI thread.
        self._texts = [pg.TextItem("", color=text, anchor=(0, 0.5)) for _ in range(TOP)]
        for t in self._texts:
            self.addItem(t)
        self._label_width = 0
        #: (label, probability) pairs now drawn, best first.
        self.predictions: list[tuple[str, float]] = []
        self.setMinimumHeight(120)
        self.set_predictions([])

    def set_predictions(self, predictions: Sequence) -> None:
        """Draw `predictions` (objects with .label and .prob, best first, at most TOP); [] clears."""
        self.predictions = [(p.label, float(p.prob)) for p in predictions][:TOP]
        n = len(self.predictions)
        ys = list(range(n))
        self.bars.setOpts(x0=[0.0] * n, y=ys, width=[p for _, p in self.predictions], height=0.65)
        for i, t in enumerate(self._texts):
            if i < n:
                p = self.predictions[i][1]
                t.setText(fmt_prob(p))
                t.setPos(p + 0.01, i)
            t.setVisible(i < n)
        fm = QFontMetrics(self.font())
        labels = [fm.elidedText(label, Qt.TextElideMode.ElideRight, 190) for label, _ in self.predictions]
        left = self.getPlotItem().getAxis("left")
        left.setTicks([list(zip(ys, labels))])
        width = max([fm.horizontalAdvance(s) for s in labels] + [40]) + 12
        if width > self._label_width:  # grow only: the bars do not jump left and right between images
            self._label_width = width
            left.setWidth(width)

    def percent_texts(self) -> list[str]:
        return [t.toPlainText() for t in self._texts if t.isVisible()]


class ScaledImageLabel(QLabel):
    """A QLabel that shows its pixmap scaled to fit, keeping the aspect ratio."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setWordWrap(True)

    def set_image(self, image: QImage | None) -> None:
        """Show `image`; None or a null image clears the label."""
        self._pixmap = QPixmap.fromImage(image) if image is not None and not image.isNull() else None
        if self._pixmap is None:
            self.clear()
        self._rescale()

    def has_image(self) -> bool:
        return self._pixmap is not None

    def set_placeholder(self, text: str) -> None:
        self._pixmap = None
        self.clear()
        self.setText(text)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is None:
            return
        size = self.contentsRect().size()
        self.setPixmap(self._pixmap.scaled(size, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation))


class ResultView(QWidget):
    """The single-image view: picture | title, top-5 chart, time split."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.image = ScaledImageLabel(self)
        lay.addWidget(self.image, 2)
        right = QVBoxLayout()
        self.title = QLabel(self)
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.chart = TopKChart(self)
        self.timings = QLabel(self)
        self.timings.setWordWrap(True)
        self.timings.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Rows of a sensible height, not stretched: the picture gets the rest of the space.
        self.chart.setMaximumHeight(44 * TOP + 40)
        right.addWidget(self.title)
        right.addWidget(self.chart, 1)
        right.addWidget(self.timings)
        right.addStretch(0)
        lay.addLayout(right, 3)
        self.result = None
        self.clear()

    def clear(self, text: str = "Drop an image or a folder here, paste one (Ctrl+V), or open files.") -> None:
        self.result = None
        self.image.set_placeholder(text)
        self.title.setText("")
        self.chart.set_predictions([])
        self.timings.setText("")

    def show_pending(self, name: str) -> None:
        self.clear(f"Classifying {name}…")
        self.title.setText(name)

    def show_result(self, result) -> None:
        self.result = result
        size = f"  ({result.image_size[0]}×{result.image_size[1]})" if result.image_size else ""
        self.title.setText(display_name(result.source) + size)
        self.title.setToolTip(result.source)
        self.chart.set_predictions(result.top)
        if not result.ok:
            self.image.set_placeholder(f"Cannot classify {display_name(result.source)}:\n{result.error}")
        self.timings.setText(fmt_timings(result))

    def show_image(self, image: QImage | None) -> None:
        self.image.set_image(image)


def fmt_timings(result) -> str:
    t = result.timings_ms
    parts = [f"{key} {t[key]:.1f} ms" for key in ("decode", "preprocess", "forward", "total") if key in t]
    text = " · ".join(parts)
    if result.ok:
        text += f" · on {result.device}"
    if result.notice:
        text += f"\n{result.notice}"
    return text


class ClassifyPanel(QWidget):
    """Classify dropped, pasted, opened or sample images with the loaded model (see module docstring)."""

    image_classified = Signal(object)
    batch_finished = Signal(list)
    failed = Signal(str)
    busy_changed = Signal(bool)
    image_shown = Signal(object)

    def __init__(self, parent=None, *, samples: Sequence | None = None):
        """samples: SampleImage list for the gallery (default: explorer.core.samples.sample_images())."""
        super().__init__(parent)
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
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(3)
        self._jobs: dict[int, _Job] = {}  # every job not known to be finished
        self._current: dict[str, int] = {}  # slot → id of its current job
        self._slot_of: dict[int, str] = {}
        self._next_id = 1
        self._batch_total = 0
        self._batch_started = 0.0
        self._empty_folders: list[str] = []
        #: Throughput of the last finished batch, images per second (None before any).
        self.throughput: float | None = None
        self._build_ui(samples)
        self._update_controls()

    # ------------------------------------------------------------------ layout

    def _build_ui(self, samples) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
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
        for w in (self.open_button, self.folder_button, self.paste_button, self.cancel_button, self.export_button):
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(self.device_label)
        bar.addWidget(self.device_combo)
        lay.addLayout(bar)

        self.badge = Banner("warning", self)
        self.message = Banner("error", self)
        lay.addWidget(self.badge)
        lay.addWidget(self.message)

        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
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
        self.splitter.addWidget(self.result_view)
        self.splitter.addWidget(self.batch_box)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.batch_box.hide()
        lay.addWidget(self.splitter, 1)

        self.sample_bar = QHBoxLayout()
        self.sample_buttons: list[QToolButton] = []
        if samples is None:
            from explorer.core.samples import sample_images

            samples = sample_images()
        if samples:
            self.sample_bar.addWidget(QLabel("Samples:", self))
        for s in samples:
            b = QToolButton(self)
            b.setText(s.title or s.name)
            b.setToolTip(f"Classify {s.title or s.name}" + (f"\n{s.credit} ({s.licence})" if s.credit else ""))
            b.setIcon(QIcon(_thumbnail(s.path, 48)))
            b.setIconSize(QSize(48, 48))
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
            b.setAutoRaise(True)
            b.clicked.connect(lambda _=False, path=s.path: self.classify_paths([path]))
            self.sample_bar.addWidget(b)
            self.sample_buttons.append(b)
        self.sample_bar.addStretch(1)
        lay.addLayout(self.sample_bar)

        self.paste_shortcut = QShortcut(QKeySequence(QKeySequence.StandardKey.Paste), self)
        self.paste_shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.paste_shortcut.activated.connect(self.paste)

    # ------------------------------------------------------------------ public API

    @property
    def busy(self) -> bool:
        """Whether a classification or the classifier's preparation is running."""
        return self._busy

    def set_model(self, loaded, device: str = "auto", *, batch_size: int | None = None, graph=None) -> None:
        """Use `loaded` (a LoadedModel; None to unload) on `device`: the classifier is built and warmed
        up in a worker. Requests made meanwhile wait for it; the running job is cancelled.
        graph: the model's BlockGraph; with it a single image's forward also captures its branches."""
        self._interrupt("Stopped: the model changed")
        self._cancel_slot("preview")
        self._cancel_slot("prepare")
        self._pending = None
        self.loaded, self.graph, self.classifier, self.device_request = loaded, graph, None, device
        self.device_combo.blockSignals(True)
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(device)))
        self.device_combo.blockSignals(False)
        self.result_view.clear()
        self.shown = None
        if loaded is None:
            self.badge.set_message(None)
            self.device_label.setText("")
        else:
            self.badge.set_message(loaded.weights.describe() if loaded.weights.is_random else None)
            self.device_label.setText(f"{loaded.name}: preparing ({device})…")
            self._start("prepare", _prepare_task, loaded, device, batch_size, graph)
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

    def classify_paths(self, paths: Sequence[str | os.PathLike]) -> None:
        """Classify files and/or folders: one file → the single view, anything more → the batch table."""
        paths = [Path(p) for p in paths]
        if not paths:
            return
        if len(paths) == 1 and not paths[0].is_dir():
            self._request(lambda: self._start_single(paths[0], str(paths[0])))
        else:
            self._request(lambda: self._start_batch(paths))

    def classify_image(self, image) -> None:
        """Classify an in-memory image (a QImage or a PIL image), e.g. from the clipboard."""
        if isinstance(image, QImage):
            if image.isNull():
                self._fail("The pasted image is empty")
                return
            image = qimage_to_pil(image)
        self._request(lambda: self._start_single(image, PASTED_NAME))

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

    def shutdown(self, msecs: int = 30000) -> bool:
        """Cancel every job and wait for the workers to return (call before the panel is destroyed)."""
        for slot in list(self._current):
            self._cancel_slot(slot)
        self._pending = None
        return self._pool.waitForDone(msecs)

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

    # ------------------------------------------------------------------ requests

    def _interrupt(self, why: str) -> bool:
        """Cancel the running classification, saying so in the batch status; whether one ran."""
        job_id = self._current.get("classify")
        self._cancel_slot("classify")
        if job_id is None:
            return False
        if self.mode == "batch":
            self.progress.setRange(0, max(self._batch_total, 1))
            self.status.setText(f"{why} after {self.model.rowCount()} of {self._batch_total} images")
        return True

    def _request(self, start: Callable[[], None]) -> None:
        """Run `start` now if the classifier is ready, else when it is (a later request replaces it)."""
        self._interrupt("Stopped by a new request")
        self.message.set_message(None)
        if self.classifier is not None:
            start()
        elif self.loaded is not None and "prepare" in self._current:
            self._pending = start
            self.result_view.clear("Waiting for the model…")
        else:
            self._fail("No model is loaded yet: load a model, then classify")
        self._update_controls()

    def _start_single(self, source, name: str) -> None:
        self.mode = "single"
        self.result_view.show_pending(display_name(name))
        self._start("classify", _single_task, self.classifier, source, name)

    def _start_batch(self, paths: list[Path]) -> None:
        self.mode = "batch"
        self.model.clear_results()
        self.table.sortByColumn(COL_INDEX, Qt.SortOrder.AscendingOrder)
        self._batch_total = 0
        self._empty_folders = []
        self.throughput = None
        self.progress.setRange(0, 0)  # busy indicator while folders are listed
        self.status.setText("Listing files…")
        self.batch_box.show()
        self._batch_started = time.perf_counter()
        self._start("classify", _batch_task, self.classifier, [str(p) for p in paths])

    # ------------------------------------------------------------------ jobs

    def _start(self, slot: str, fn, *args) -> int:
        self._cancel_slot(slot)
        job_id = self._next_id
        self._next_id += 1
        job = _Job(job_id, fn, args)
        queued = Qt.ConnectionType.QueuedConnection
        job.signals.yielded.connect(self._on_yielded, queued)
        job.signals.finished.connect(self._on_finished, queued)
        job.signals.failed.connect(self._on_failed, queued)
        job.signals.cancelled.connect(self._on_cancelled, queued)
        # The pool still touches a runnable just after run() returns: keep the last few referenced.
        done = [i for i, j in self._jobs.items() if j.done.is_set()]
        for i in done[:-4]:
            del self._jobs[i]
        self._jobs[job_id] = job
        self._current[slot] = job_id
        self._slot_of[job_id] = slot
        self._pool.start(job)
        self._update_controls()
        return job_id

    def _cancel_slot(self, slot: str) -> None:
        job_id = self._current.pop(slot, None)
        if job_id is not None and job_id in self._jobs:
            self._jobs[job_id].token.cancel()

    def _is_current(self, job_id: int) -> str | None:
        slot = self._slot_of.get(job_id)
        return slot if slot is not None and self._current.get(slot) == job_id else None

    def _end(self, job_id: int) -> None:
        slot = self._slot_of.pop(job_id, None)
        if slot is not None and self._current.get(slot) == job_id:
            del self._current[slot]
        self._update_controls()

    @Slot(int, object)
    def _on_yielded(self, job_id: int, item) -> None:
        if self._is_current(job_id) is None:
            return
        kind, payload = item
        if kind == "classifier":
            self._on_classifier(payload)
        elif kind == "result":
            self._on_single_result(payload)
        elif kind == "shown":
            self._on_shown(payload)
        elif kind == "files":
            self._on_files(*payload)
        elif kind == "batch":
            self._on_batch(payload)

    @Slot(int)
    def _on_finished(self, job_id: int) -> None:
        slot = self._is_current(job_id)
        self._end(job_id)
        if slot == "classify" and self.mode == "batch":
            self._finish_batch()
        if slot == "prepare" and self._pending is not None:
            pending, self._pending = self._pending, None
            pending()
            self._update_controls()

    @Slot(int, str)
    def _on_failed(self, job_id: int, message: str) -> None:
        slot = self._is_current(job_id)
        self._end(job_id)
        if slot is None:
            return
        if slot == "prepare":
            self._pending = None
            self.device_label.setText(f"{self.loaded.name if self.loaded else ''}: not ready")
            self.result_view.clear("The classifier could not be prepared.")
            self._fail(f"Cannot prepare the classifier: {message}")
        elif slot == "classify":
            if self.mode == "batch":
                self.progress.setRange(0, max(self._batch_total, 1))
                self.status.setText("Stopped by an error")
            else:
                self.result_view.clear("Classification failed.")
            self._fail(f"Classification failed: {message}")
        else:
            self._fail(message)

    @Slot(int)
    def _on_cancelled(self, job_id: int) -> None:
        self._end(job_id)

    # ------------------------------------------------------------------ results

    def _on_classifier(self, classifier) -> None:
        self.classifier = classifier
        graph = " · CUDA graph" if classifier.graph_ready else ""
        self.device_label.setText(f"{self.loaded.name} on {classifier.device}{graph}")
        self.device_label.setToolTip("\n".join(classifier.notices))
        if classifier.notices:
            self.message.set_message(classifier.notices[-1])

    def _on_single_result(self, result) -> None:
        self.result_view.show_result(result)
        self.shown = None
        if result.ok:
            self.image_classified.emit(result)
        else:
            self._fail(f"{display_name(result.source)}: {result.error}")

    def _on_shown(self, payload) -> None:
        if payload is None:
            self.result_view.show_image(None)
            return
        shown, qimage = payload
        self.shown = shown
        if self.result_view.result is not shown.result and shown.result is not None:
            # A table row's preview: its captured forward is what the view now shows, top-5 included.
            self.result_view.show_result(shown.result)
        self.result_view.show_image(qimage)
        self.image_shown.emit(shown)

    def _on_files(self, files: list[str], empty: list[str]) -> None:
        self._batch_total = len(files)
        self._empty_folders = empty
        self.progress.setRange(0, max(len(files), 1))
        self.progress.setValue(0)
        if not files:
            self.status.setText("No images")
        else:
            self.status.setText(f"Classifying {len(files)} images…")
        if empty:
            names = ", ".join(display_name(p) for p in empty)
            self.message.set_message(f"No image files in {names}")

    def _on_batch(self, results: list) -> None:
        self.model.append(results)
        done = self.model.rowCount()
        self.progress.setValue(done)
        self.status.setText(f"Classifying… {done} / {self._batch_total}")
        if self.table.currentIndex().row() < 0 and self.proxy.rowCount() > 0:
            self.table.selectRow(0)

    def _finish_batch(self) -> None:
        results = self.model.results
        n = len(results)
        elapsed = time.perf_counter() - self._batch_started
        self.throughput = n / elapsed if n and elapsed > 0 else None
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
            self._start("preview", _preview_task, self.classifier, result.source, result)

    # ------------------------------------------------------------------ state

    def _fail(self, message: str) -> None:
        self.message.set_message(message)
        self.failed.emit(message)

    def _update_controls(self) -> None:
        busy = "classify" in self._current or "prepare" in self._current or self._pending is not None
        classifying = "classify" in self._current
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
