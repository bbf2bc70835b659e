"""The session's classification, without Qt: the loaded model's classifier, and what happens to the requests for
it — one image, a batch, a batch row's preview — including those made before it is ready.

`prepare(loaded, device, …)` builds and warms up a classifier in the lane "classify/prepare"; a request made
meanwhile waits (the latest replaces an earlier one) and runs once the classifier is ready. A new request
cancels the running classification ("classify/classify"). Events come back to `_apply`, which writes the
state — `classification`, `shown_image` (stamped with the key it was made for), `batch` (a BatchRun: its files,
results and how it ended) — and then tells the session's listeners (the classify panel draws them).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from explorer.core.session import events as ev
from explorer.core.session.state import BatchRun, ImageInput

PREPARE, CLASSIFY, PREVIEW = "classify/prepare", "classify/classify", "classify/preview"


class Classification:
    """The classifier of the loaded model and the requests for it (see the module docstring)."""

    def __init__(self, session):
        self.session = session
        self.loaded = None  #: the LoadedModel the classifier is (being) built for
        self.graph = None  #: its BlockGraph, when single images are also captured
        self.classifier = None  #: the Classifier, once ready
        self.device = "auto"  #: the device asked for
        self.fast_decode = False  #: whether big JPEGs are decoded at a reduced scale (CPU path)
        self.pending: Callable[[], None] | None = None  #: a request waiting for the classifier
        self.mode = "single"  #: what the last request was: "single" or "batch"
        self._batch_started = 0.0

    @property
    def state(self):
        return self.session.state

    # -- the classifier -----------------------------------------------------------------------

    def prepare(self, loaded, device: str = "auto", batch_size: int | None = None, graph=None) -> None:
        """Use `loaded` (None: none) on `device`; requests made until the classifier is ready wait for it."""
        runner = self.session.runner
        for lane in (PREVIEW, PREPARE):
            runner.cancel(lane)
        self.loaded, self.graph, self.classifier, self.device = loaded, graph, None, device
        if loaded is None:
            self.pending = None
            return
        from explorer.core.session import tasks

        self.session.submit(PREPARE, tasks.prepare_classifier, loaded, device, batch_size, graph,
                            self.session.branches_now, apply=self._apply, topic="classify", bound="model",
                            on_end=self._prepared)

    def forget(self) -> None:
        """The model went: nothing of it is classified or waits any more."""
        for lane in (CLASSIFY, PREVIEW, PREPARE):
            self.session.runner.cancel(lane)
        self.pending = None
        self.loaded = self.graph = self.classifier = None

    def preparing(self) -> bool:
        return self.session.runner.running(PREPARE) is not None

    def classifying(self) -> bool:
        return self.session.runner.running(CLASSIFY) is not None

    def _prepared(self, outcome: str) -> None:
        if outcome == "done" and self.pending is not None and self.classifier is not None:
            pending, self.pending = self.pending, None
            pending()
        elif outcome == "failed":
            self.pending = None

    def set_fast_decode(self, on: bool) -> None:
        self.fast_decode = on
        if self.classifier is not None:  # read at each image: the next one follows
            self.classifier.fast_decode = on

    # -- requests -----------------------------------------------------------------------------

    def request(self, start: Callable[[], None]) -> str:
        """Run `start` now if the classifier is ready ("started"), else when it is ("waiting"); "no model" when
        none is loading. The running classification stops first."""
        self.cancel()
        if self.classifier is not None:
            start()
            return "started"
        st = self.state
        if (self.loaded is not None and self.preparing()) or (st.model_status == "loading" and st.model):
            self.pending = start
            return "waiting"
        return "no model"

    def single(self, image: ImageInput) -> str:
        """Classify `image`, the image on screen from now on (the next model classifies it again)."""
        self.state.image = image
        return self.request(lambda: self.start_single(image))

    def batch(self, paths: list) -> str:
        """Classify files and folders into a BatchRun (the state's `batch`)."""
        return self.request(lambda: self.start_batch([str(p) for p in paths]))

    def preview(self, result) -> None:
        """A batch row's file becomes the image on screen, shown with its captured forward."""
        from explorer.core.session import tasks

        self.state.image = ImageInput(result.source, result.source)
        self.session.submit(PREVIEW, tasks.preview_file, self.classifier, result.source, result, apply=self._apply,
                            topic="classify")

    def cancel(self, why: str = "Stopped by a new request") -> bool:
        """Stop the running classification (a batch says `why` and how far it got); whether one ran."""
        batch = self.state.batch
        if not self.session.runner.cancel(CLASSIFY):
            return False
        if self.mode == "batch" and batch is not None and batch.status == "running":
            batch.status = "cancelled"
            self.session.tell(ev.BatchStopped(batch, f"{why} after {len(batch.results)} of {batch.total or 0} images"))
        return True

    def start_single(self, image: ImageInput) -> None:
        from explorer.core.session import tasks

        self.mode = "single"
        self.session.submit(CLASSIFY, tasks.classify_single, self.classifier, image.source, image.name,
                            apply=self._apply, topic="classify")

    def start_batch(self, paths: list[str]) -> None:
        from explorer.core.session import tasks

        self.mode = "batch"
        st = self.state
        st.previous_batch = None
        from explorer.core.classify.provenance import provenance_of

        reference = st.model_ref or st.model or self.loaded.name
        st.batch = run = BatchRun(model=self.loaded.name, inputs=tuple(paths),
                                  provenance=provenance_of(reference, self.loaded, self.classifier.transforms))
        self._batch_started = time.perf_counter()
        self.session.submit(CLASSIFY, tasks.classify_batch, self.classifier, paths, apply=self._apply,
                            topic="classify", bound="model", on_end=lambda outcome: self._batch_ended(run, outcome))

    def _batch_ended(self, run: BatchRun, outcome: str) -> None:
        if outcome == "done":
            run.status, run.seconds = "done", time.perf_counter() - self._batch_started
        elif outcome == "failed":
            run.status = "failed"
        elif run.status == "running":
            run.status = "cancelled"

    # -- events -------------------------------------------------------------------------------

    def _apply(self, event) -> None:
        st = self.state
        if isinstance(event, ev.ClassifierReady):
            if event.classifier.loaded is not self.loaded:
                return
            self.classifier = event.classifier
            event.classifier.fast_decode = self.fast_decode
        elif isinstance(event, ev.ImageClassified):
            st.classification = event.result
        elif isinstance(event, ev.ImageShown) and event.shown is not None:
            event.shown.key = st.result_key
            st.shown_image = event.shown
        elif isinstance(event, ev.FilesListed) and st.batch is not None:
            st.batch.total = len(event.files)
        elif isinstance(event, ev.BatchClassified) and st.batch is not None:
            st.batch.results.extend(event.results)
        self.session.tell(event)

