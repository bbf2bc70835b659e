"""The classify panel's single view: the image on screen with its top-5 and time split (a `ResultView`), and
the `ShownImage` behind it: the picture, its network input, its result and the captured forward.

The view shows what the panel tells it; the panel decides which results still belong on screen."""

from __future__ import annotations

from explorer.core.session.events import ImageShown
from explorer.core.session.tasks import ShownImage
from explorer.qt.result_view import ResultView, array_to_qimage


class SingleView(ResultView):
    """A ResultView that keeps the ShownImage on display (see module docstring)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        #: The picture on display with its network input, result and capture (None: none yet, or none).
        self.shown: ShownImage | None = None

    def forget(self, text: str | None = None) -> None:
        """Nothing shown any more: `text` in place of the image, no result, no ShownImage."""
        self.clear(text)
        self.shown = None

    def show_single(self, result, *, previewing: bool = False) -> None:
        """A result's top-5; its picture and capture follow in `show_captured` (`previewing`: a batch row's,
        whose picture is being prepared: the previous row's picture goes at once)."""
        self.show_result(result)
        self.shown = None
        if previewing:
            self.show_image(None)

    def show_captured(self, event: ImageShown) -> ShownImage | None:
        """The picture of a job's ImageShown event and its captured forward."""
        shown = event.shown
        if shown is None:
            self.show_image(None)
            return None
        self.shown = shown
        if self.result is not shown.result and shown.result is not None:
            # A table row's preview: its captured forward is what the view now shows, top-5 included.
            self.show_result(shown.result)
        self.show_image(array_to_qimage(event.thumbnail) if event.thumbnail is not None else None)
        return shown
