"""How images reach the window: the image docks (built just after the first paint), Edit → Paste and drops.

Ctrl+V in a text field pastes text only when the clipboard holds nothing but text; an image or files on the
clipboard go to the window's Paste (classify) wherever the focus is. Files, folders or image data dropped
anywhere on the window are classified too.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QLineEdit, QWidget


class ImageInput(QObject):
    """The image side of `window`: builds its `images` docks, routes Paste, takes drops."""

    def __init__(self, window, classify_sample: bool = True, restore: bool = True):
        super().__init__(window)
        self.window = window
        self._classify_sample = classify_sample
        self._restore = restore

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.ShortcutOverride and event.matches(QKeySequence.StandardKey.Paste):
            mime = QApplication.clipboard().mimeData()
            if mime is not None and (mime.hasImage() or mime.hasUrls()):
                event.ignore()  # the field does not claim the key: the window's Paste action gets it
                return True
        return False

    def route_paste(self, root: QWidget) -> None:
        """The text fields under `root` leave an image or files on the clipboard to the window's Paste."""
        for w in root.findChildren(QAbstractSpinBox) + root.findChildren(QLineEdit):
            w.installEventFilter(self)

    def build_docks(self) -> None:
        """Classification, activations, attributions and branch shares, as docks: `window.images`."""
        w = self.window
        if w.images is not None:
            return
        from explorer.qt.window.image_docks import DOCK_SHARE, ImageDocks

        w.images = images = ImageDocks(w, runner=w.jobs, session=w.session, classify_sample=self._classify_sample)
        images.classify.paste_shortcut.setEnabled(False)  # the window's Edit → Paste has Ctrl+V
        images.activations.block_changed.connect(w.graph_page.follow_block)
        images.shares.block_selected.connect(w.graph_page.follow_block)
        for dock in images.docks():
            w.view_menu.addAction(dock.toggleViewAction())
        w.resizeDocks([images.classify_dock], [round(w.height() * DOCK_SHARE)], Qt.Orientation.Vertical)
        if self._restore:
            w.saved.restore_docks(w)  # the docks' places, now that they exist
        if w.state.presenting:
            for dock in images.docks():
                dock.hide()
        self.route_paste(images.classify.parentWidget() or w)
        for panel in (images.classify, images.activations, images.attribution, images.shares):
            self.route_paste(panel)
        graph = w.state.graph
        if w.state.loaded is not None and graph is not None and not getattr(graph, "is_preview", False):
            images.model_ready(w.state.loaded, graph)

    def paste(self) -> None:
        """Edit → Paste (Ctrl+V): text into the focused text field when the clipboard holds only text;
        otherwise the clipboard's image or files are classified, wherever the focus is."""
        focus = QApplication.focusWidget()
        mime = QApplication.clipboard().mimeData()
        text_only = mime is not None and mime.hasText() and not (mime.hasImage() or mime.hasUrls())
        if text_only and isinstance(focus, (QLineEdit, QAbstractSpinBox)):
            focus.lineEdit().paste() if isinstance(focus, QAbstractSpinBox) else focus.paste()
            return
        if self.window.images is not None and self.window.images.classify.paste():
            self._raise_classify_dock()

    def drop(self, mime) -> bool:
        """Classify what was dropped on the window; False when it holds nothing to classify."""
        if self.window.images is None or not self.window.images.classify.handle_drop(mime):
            return False
        self._raise_classify_dock()
        return True

    def _raise_classify_dock(self) -> None:
        """The classify dock comes forward for a dropped or pasted image; not while presenting, where the
        image goes to the slides and the docks stay hidden."""
        images = self.window.images
        if images is not None and not self.window.state.presenting:
            images.classify_dock.show()
            images.classify_dock.raise_()
