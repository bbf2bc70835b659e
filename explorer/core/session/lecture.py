"""The session's handout, without Qt's widgets: the handout of the model on screen (and the image on screen, when
its model and weights made it) built by the engine and written as a PDF, in the lane "model/handout".

The engine's part (`explorer.core.lecture.handout.build_handout`: forwards, maps, tables) and the file's
drawing run on a worker, and the file is written even when the model on screen changes meanwhile (it is the
file the person asked for, of the model it names); the drawing is done by a `writer(handout, pictures, path, cancel=,
inputs=)` the caller hands in (the window's paints with QPdfWriter and QPainter, which are thread-safe on a PDF; the
graph's pictures were recorded on the UI thread, where its scene lives). A handout of random weights carries the
caveat its pages over the image say (`Handout.image_caveat`). A failed or cancelled handout leaves
no file (explorer.core.outputs); its problem is about "handout".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from explorer.core.session import events as ev

LANE = "model/handout"


def _handout(loaded, graph, size, image, name, blocks, pictures, path, inputs, writer, *, progress=None, cancel=None):
    from explorer.core.lecture.handout import build_handout

    handout = build_handout(loaded, graph, size, image=image, image_name=name, blocks=blocks, progress=progress,
                            cancel=cancel)
    return ev.HandoutWritten(str(writer(handout, pictures, path, cancel=cancel, inputs=inputs)))


class Handouts:
    """Writes handouts of the model on screen, one at a time (a new one cancels the running one)."""

    def __init__(self, session):
        self.session = session

    def why_not(self) -> str | None:
        """Why no handout can be written now, for people (None: one can)."""
        st = self.session.state
        if st.loaded is None or st.graph is None or getattr(st.graph, "is_preview", False) or st.trace is None:
            return "the handout can be written once the model has loaded"
        if st.trace_error is not None:
            return f"the handout needs an input size that fits the network: {st.trace_error}"
        return None

    def image(self):
        """(image, name) the handout shows: the image on screen when the model and weights on screen made it (the
        file when it is one, else the picture), else (None, None)."""
        st = self.session.state
        shown = st.shown_image
        if shown is None or not st.holds(shown.key):
            return None, None
        source = Path(str(shown.source))
        return (source, source.name) if source.is_file() else (shown.image, str(shown.source))

    def write(self, path: str | Path, blocks: list[str], pictures, writer: Callable,
              on_progress: Callable[[int, int | None], None] | None = None,
              on_end: Callable[[str], None] | None = None) -> bool:
        """Write the handout of `blocks` to `path` on a worker (HandoutWritten follows); False, with a Problem,
        when none can be written now. The image on screen and the model file are refused as destinations."""
        from explorer.core.outputs import Inputs

        st = self.session.state
        why = self.why_not()
        if why is not None:
            self.session.problem("handout", why)
            return False
        image, name = self.image()
        inputs = Inputs([p for p in (image, st.model_ref) if isinstance(p, (str, Path))])

        def apply(event) -> None:
            if isinstance(event, ev.Progress):
                if on_progress is not None:
                    on_progress(event.done, event.total)
                self.session.tell(ev.JobProgress(LANE, event.done, event.total))
            else:
                self.session.tell(event)

        self.session.submit(LANE, _handout, st.loaded, st.graph, st.input_size.hw, image, name, blocks, pictures,
                            str(path), inputs, writer, apply=apply, topic="handout", bound=None,
                            wants_progress=True, on_end=on_end)
        return True

    def cancel(self) -> bool:
        return self.session.runner.cancel(LANE)
