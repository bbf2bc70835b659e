"""File → Export handout…: the handout of the model on screen (and the image on screen) as a PDF.

The drawings are recorded on the UI thread (a scene lives there); the engine's work and the PDF are
done on the window's one job runner in slot "handout", with a progress dialog whose Cancel stops the
job. Errors reach the window's error handler; a failed or cancelled handout leaves no file, and any older
file at the destination as it was (explorer.core.outputs writes it whole or not at all).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QPoint, Qt, Signal
from PySide6.QtWidgets import QProgressDialog

from explorer.core.lecture.handout import build_handout, check_blocks, drawings
from explorer.core.outputs import Inputs
from explorer.qt.workers import Job

SLOT = "handout"


def _handout_job(loaded, graph, size, image, name, blocks, pictures, path, inputs=None, *, progress=None,
                 cancel=None):
    from explorer.qt.lecture.handout_pdf import handout_caveat, write_pdf

    handout = build_handout(loaded, graph, size, image=image, image_name=name, blocks=blocks, progress=progress,
                            cancel=cancel)
    # The image's pages of random weights say their numbers mean nothing.
    return write_pdf(handout, pictures, path, cancel=cancel, inputs=inputs, caveat=handout_caveat(loaded))


class HandoutExport(QObject):
    """Writes handouts of `window`'s model; one at a time (a new one cancels the running one).

    Signals: written(str) the path of a finished PDF; failed(str) why a handout was not written."""

    written = Signal(str)
    failed = Signal(str)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.dialog: QProgressDialog | None = None

    def start(self, path: str | Path, blocks: list[str] | None = None) -> Job | None:
        """Start writing the handout to `path`: the model and input size on screen, the image on screen
        (when it belongs to this model), `blocks` (default: the selected block, else the first Inception
        block), and the overlay on the graph, if any."""
        from explorer.qt.lecture.handout_pdf import record_drawings

        w, st = self.window, self.window.state
        graph = st.graph
        if st.loaded is None or graph is None or getattr(graph, "is_preview", False) or st.trace is None:
            return self._fail("the handout can be written once the model has loaded")
        if st.trace_error is not None:
            return self._fail(f"the handout needs an input size that fits the network: {st.trace_error}")
        try:
            blocks = check_blocks(graph, blocks or ([w.graph_page.selected_block()] if w.graph_page.selected_block() else None))
        except ValueError as e:
            return self._fail(str(e))
        image = name = None
        shown = st.shown_image
        if shown is not None and st.holds(shown.key):  # made by the model and weights on screen
            source = Path(str(shown.source))
            image, name = (source, source.name) if source.is_file() else (shown.image, str(shown.source))
        overlay = None
        if w.view.overlay_values is not None and w.view.legend_widget.legend is not None:
            overlay = (w.view.overlay_values, w.view.legend_widget.legend)
        pictures = record_drawings(graph, st.trace, drawings(blocks), overlay)
        # The photo on screen or the model file chosen as the destination is refused, not overwritten.
        inputs = Inputs([p for p in (image, st.model_ref) if isinstance(p, (str, Path))])
        job = Job(_handout_job, st.loaded, graph, st.input_size.hw, image, name, blocks, pictures, str(path), inputs,
                  wants_progress=True)
        self._show_dialog(path)
        w.runner.start(SLOT, job, on_success=self._done, on_failure=self._failed, on_progress=self._progress,
                       on_cancel=self._cancelled)
        return job

    def _show_dialog(self, path) -> None:
        if self.dialog is None:
            self.dialog = QProgressDialog(self.window)
            self.dialog.setWindowTitle("Export handout")
            self.dialog.setWindowModality(Qt.WindowModality.NonModal)
            self.dialog.setMinimumDuration(400)
            self.dialog.setAutoClose(False)
            self.dialog.setAutoReset(False)
            self.dialog.canceled.connect(self.cancel)
        self.dialog.setLabelText(f"Writing {Path(path).name}…")
        self.dialog.setRange(0, 0)
        self.dialog.setValue(0)
        self._place_dialog()

    def _place_dialog(self) -> None:
        """In the window's lower right corner, above the status bar: centred, it floated over the banners."""
        w, d = self.window, self.dialog
        d.adjustSize()
        corner = w.mapToGlobal(QPoint(w.width(), w.height() - w.statusBar().height()))
        d.move(corner - QPoint(d.width() + 16, d.height() + 16))

    def _close_dialog(self) -> None:
        if self.dialog is not None:
            self.dialog.blockSignals(True)
            self.dialog.reset()
            self.dialog.hide()
            self.dialog.blockSignals(False)

    def _progress(self, done: int, total: int | None) -> None:
        if self.dialog is not None and total:
            self.dialog.setRange(0, total)
            self.dialog.setValue(done)
        self.window.show_status(f"handout: step {done} of {total}…", 0, topic=SLOT)

    def cancel(self) -> None:
        if self.window.runner.cancel(SLOT):
            self.window.show_status("handout cancelled", 4000, topic=SLOT)
        self._close_dialog()

    def _done(self, path) -> None:
        self._close_dialog()
        self.window.show_status(f"wrote handout {path}", 8000, topic=SLOT)
        self.written.emit(str(path))

    def _failed(self, message: str) -> None:
        self._close_dialog()
        self._fail(f"handout failed: {message}")

    def _cancelled(self) -> None:
        self._close_dialog()

    def _fail(self, message: str) -> None:
        self.window.show_error(message)
        self.failed.emit(message)
        return None
