"""File → Export handout…: the handout of the model on screen (and the image on screen) as a PDF.

The drawings are recorded on the UI thread (a scene lives there); the session writes the handout
(explorer.core.session.lecture: the engine's work and the PDF, on a worker), with a progress dialog whose
Cancel stops the job. Problems reach the window's error line; a failed or cancelled handout leaves no file, and any older
file at the destination as it was (explorer.core.outputs writes it whole or not at all).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QPoint, Qt, Signal
from PySide6.QtWidgets import QProgressDialog

from explorer.core.lecture.handout import check_blocks, drawings
from explorer.core.session import events as ev
from explorer.core.session.lecture import LANE

SLOT = "handout"  # the status line's topic


class HandoutExport(QObject):
    """Writes handouts of `window`'s model through its session; one at a time (a new one cancels the running one).

    Signals: written(str) the path of a finished PDF; failed(str) why a handout was not written."""

    written = Signal(str)
    failed = Signal(str)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.session = window.session
        self.dialog: QProgressDialog | None = None
        self.session.on(ev.HandoutWritten, lambda event: self._done(event.path))
        self.session.on(ev.JobEnded, self._on_end)
        self.session.state.connect("problem", self._on_problem)

    def start(self, path: str | Path, blocks: list[str] | None = None) -> bool:
        """Start writing the handout to `path`: the model and input size on screen, the image on screen
        (when it belongs to this model), `blocks` (default: the selected block, else the first Inception
        block), and the overlay on the graph, if any. Whether it started."""
        from explorer.qt.lecture.handout_pdf import record_drawings, write_pdf

        w, st = self.window, self.window.state
        why = self.session.handouts.why_not()
        if why is not None:
            return self._fail(why)
        try:
            selected = w.graph_page.selected_block()
            blocks = check_blocks(st.graph, blocks or ([selected] if selected else None))
        except ValueError as e:
            return self._fail(str(e))
        overlay = None
        if w.view.overlay_values is not None and w.view.legend_widget.legend is not None:
            overlay = (w.view.overlay_values, w.view.legend_widget.legend)
        pictures = record_drawings(st.graph, st.trace, drawings(blocks), overlay)
        self._show_dialog(path)
        return self.session.handouts.write(path, blocks, pictures, write_pdf, on_progress=self._progress)

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
        if self.session.handouts.cancel():
            self.window.show_status("handout cancelled", 4000, topic=SLOT)
        self._close_dialog()

    def _done(self, path) -> None:
        self._close_dialog()
        self.window.show_status(f"wrote handout {path}", 8000, topic=SLOT)
        self.written.emit(str(path))

    def _on_end(self, event: ev.JobEnded) -> None:
        if event.lane == LANE and event.outcome != "done":
            self._close_dialog()

    def _on_problem(self, problem) -> None:
        if problem is not None and problem.topic == "handout":
            self._close_dialog()
            self._tell(problem.message if problem.message.startswith("the handout") else
                       f"handout failed: {problem.message}")

    def _fail(self, message: str) -> bool:
        self._tell(message)
        return False

    def _tell(self, message: str) -> None:
        self.window.show_error(message)
        self.failed.emit(message)
