"""What a person gives the classify panel: its row of buttons and sample photos, and what a drop or the
clipboard holds.

The toolbar only offers; the panel connects its buttons and decides what a request does. `DropTarget`
accepts drops of local files or image data on a widget and hands them to a handler.

Signals
-------
sample_chosen(object)   the Path of the sample photo clicked
input_chosen(object)    the ImageInput of the drawn sample clicked (it carries the shape's mask)
device_chosen(str)      a person chose "auto", "cpu" or "cuda" in the device combo
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QObject, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QImageReader, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from explorer.qt.result_view import array_to_qimage

#: The devices offered: the combo's text and the device asked for.
DEVICE_CHOICES = (("Device: auto", "auto"), ("Device: CPU", "cpu"), ("Device: CUDA", "cuda"))


class ClassifyToolbar(QWidget):
    """Open, Folder, Paste, Cancel and Export, the device line, fast decode and the device choice; below them
    the samples (in one row the panel needed 1,125 px, wider than its dock beside Details on a laptop)."""

    sample_chosen = Signal(object)
    input_chosen = Signal(object)
    device_chosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        rows = QVBoxLayout(self)
        rows.setContentsMargins(0, 0, 0, 0)
        rows.setSpacing(2)
        self.bar = QHBoxLayout()
        self.samples_row = QHBoxLayout()
        rows.addLayout(self.bar)
        rows.addLayout(self.samples_row)
        self.open_button = QPushButton("Open…", self)
        self.open_button.setToolTip("Classify one or more image files")
        self.folder_button = QPushButton("Folder…", self)
        self.folder_button.setToolTip("Classify every image in a folder")
        self.paste_button = QPushButton("Paste", self)
        self.paste_button.setToolTip("Classify the image on the clipboard (Ctrl+V)")
        self.cancel_button = QPushButton("Cancel", self)
        self.export_button = QPushButton("Export…", self)
        self.export_button.setToolTip("Save the batch table as CSV, JSON or JSON Lines, each result with what made it"
                                      " (model, weights, device, preprocessing)")
        self.device_label = QLabel(self)
        self.device_combo = QComboBox(self)
        for text, value in DEVICE_CHOICES:
            self.device_combo.addItem(text, value)
        self.device_combo.setToolTip("Where images are classified: auto picks the GPU when there is one")
        self.device_combo.currentIndexChanged.connect(lambda i: self.device_chosen.emit(self.device_combo.itemData(i)))
        self.fast_decode_box = QCheckBox("Fast decode", self)
        self.fast_decode_box.setToolTip(
            "Decode big JPEGs at a reduced scale on the CPU: several times faster, but the network input is\n"
            "within ~0.5 grey levels of torchvision's instead of equal to it; each such result says so")
        for w in (self.open_button, self.folder_button, self.paste_button, self.cancel_button, self.export_button):
            self.bar.addWidget(w)
        self.bar.addStretch(1)
        self.bar.addWidget(self.device_label)
        self.bar.addWidget(self.fast_decode_box)
        self.bar.addWidget(self.device_combo)
        self.samples_row.addStretch(1)
        self.sample_buttons: list[QToolButton] = []
        #: The drawn samples' buttons (the demo task's shapes, with their masks).
        self.drawn_buttons: list[QToolButton] = []

    def add_samples(self, samples: Sequence | None) -> None:
        """The sample photos as buttons in the samples row (default: the shipped samples, and after them the
        drawn samples of the demo task)."""
        # Small pictures in a row of their own (their names in the tooltips), so nothing below the views can be
        # cut off or pushed out of a low dock.
        drawn = samples is None
        if samples is None:
            from explorer.core.model.samples import sample_images

            samples = sample_images()
        if samples:
            self.samples_row.insertWidget(self.samples_row.count() - 1, QLabel("Samples:", self))
        for s in samples:
            b = self._sample_button(s.title or s.name, f"Classify {s.title or s.name}"
                                    + (f"\n{s.credit} ({s.licence})" if s.credit else ""), _thumbnail(s.path, 32))
            b.clicked.connect(lambda _=False, path=s.path: self.sample_chosen.emit(path))
            self.sample_buttons.append(b)
        if drawn:
            self.add_drawn_samples()

    def add_drawn_samples(self, samples: Sequence | None = None) -> None:
        """The demo task's drawn shapes as buttons after the photos (default: explorer.core.demo.samples'): each
        is classified with its shape's mask, the ground truth of its maps."""
        from explorer.core.session.state import ImageInput

        if samples is None:
            from explorer.core.demo.samples import drawn_samples

            samples = drawn_samples()
        for s in samples:
            tip = (f"Classify {s.title[:1].lower()}{s.title[1:]}: the demo model knows its six shapes, and the "
                   "Attributions tab measures maps against the shape's pixels")
            b = self._sample_button(s.title, tip, QPixmap.fromImage(array_to_qimage(s.image)))
            b.clicked.connect(lambda _=False, s=s: self.input_chosen.emit(ImageInput(
                _pil(s.image), f"<drawn {s.name}>", mask=s.mask)))
            self.drawn_buttons.append(b)

    def _sample_button(self, text: str, tip: str, pixmap: QPixmap) -> QToolButton:
        """A small picture in the samples row."""
        b = QToolButton(self)
        b.setText(text)
        b.setToolTip(tip)
        b.setIcon(QIcon(pixmap))
        b.setIconSize(QSize(28, 28))
        b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        b.setAutoRaise(True)
        self.samples_row.insertWidget(self.samples_row.count() - 1, b)
        return b

    def show_device(self, device: str) -> None:
        """Show `device` ("auto", "cpu" or "cuda") in the combo without announcing it."""
        self.device_combo.blockSignals(True)
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(device)))
        self.device_combo.blockSignals(False)

    def show_classifier(self, name: str, classifier) -> None:
        """The device line for a ready classifier of model `name`; its notices in the tooltip."""
        graph = " · CUDA graph" if classifier.graph_ready else ""
        self.device_label.setText(f"{name} on {classifier.device}{graph}")
        self.device_label.setToolTip("\n".join(classifier.notices))


class DropTarget(QObject):
    """Lets `widget` accept drags of local files or image data and hands a drop's data to `handle`, which
    says whether it held something to use (the drop is accepted then)."""

    def __init__(self, widget, handle: Callable[[QMimeData], bool]):
        super().__init__(widget)
        self._handle = handle
        widget.setAcceptDrops(True)
        widget.installEventFilter(self)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        kind = ev.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            mime = ev.mimeData()
            if (mime.hasUrls() and any(u.isLocalFile() for u in mime.urls())) or mime.hasImage():
                ev.acceptProposedAction()
            else:
                ev.ignore()
            return True
        if kind == QEvent.Type.Drop:
            if self._handle(ev.mimeData()):
                ev.acceptProposedAction()
            else:
                ev.ignore()
            return True
        return super().eventFilter(obj, ev)


def dropped_inputs(mime: QMimeData | None) -> tuple[list[str], QImage | None, str | None]:
    """What a drop or the clipboard holds: its local files and folders, else its image, else why nothing.

    Returns (paths, image, problem): paths when there are local ones, an image when there are none and the
    data holds a non-empty image, otherwise a message saying why there is nothing to classify (None for no
    data at all)."""
    if mime is None:
        return [], None, None
    if mime.hasUrls():
        local = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
        if local:
            return local, None, None
        if not mime.hasImage():
            return [], None, "Only local files can be classified (the drop holds web addresses)"
    if mime.hasImage():
        image = mime.imageData()
        if isinstance(image, QPixmap):
            image = image.toImage()
        if isinstance(image, QImage) and not image.isNull():
            return [], image, None
    return [], None, "Nothing to classify: drop or paste image files, a folder or an image"


def _pil(rgb):
    """An (H, W, 3) uint8 array as a PIL image (what the classifier decodes from memory)."""
    from PIL import Image

    return Image.fromarray(rgb)


def _thumbnail(path: Path, side: int) -> QPixmap:
    """A small pixmap of an image file, decoded at reduced size where the format allows."""
    reader = QImageReader(str(path))
    size = reader.size()
    if size.isValid():
        reader.setScaledSize(size.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    return QPixmap.fromImage(image) if not image.isNull() else QPixmap()
