"""The session under the window, without Qt: it owns the state, the engine objects and the jobs that make them.

A `Session` holds the window's `ExplorerState`, the loaded model's classifier and its capture networks (one per
device, built once), and a `Runner` (explorer.core.session.runner) for its jobs: the window's thread pool, or an
`InlineRunner` in headless use. Requests — a model, its weights, an image, a map — start jobs; the jobs' typed
events (explorer.core.session.events) come back to `_apply`, the one place they change the state, after which
the listeners of that event type hear it (`on`). A job's events are applied only while the state's
`result_key` still holds the key the job was started for: a model switch or another image during a job leaves
nothing of it on screen. Errors reach one place: `state.problem`.

Lanes: "model/graph", "model/weights", "model/open", "model/names" (the model); "classify/prepare",
"classify/classify" (the image on screen); "images/…" (maps, their evidence, the channel; one at a time);
"model/overlay" (block timing), "model/handout" (the handout), "compare/compare" (two models side by side).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from explorer.core.session import events as ev
from explorer.core.session.runner import Callbacks, InlineRunner, Runner
from explorer.core.session.state import ExplorerState, ImageInput, InputSize


@dataclass(frozen=True)
class Problem:
    """Something that went wrong, for people: what was being done (`topic`) and why, in one line."""

    topic: str
    message: str
    serial: int = 0  # two equal problems in a row are still two announcements


class CaptureNetworks:
    """The loaded network's CaptureModels for the gradient methods, one per device, each built once. Jobs on
    pool threads ask for them: a lock guards the cache. Another device's is a copy of the network (captum's
    hooks on it never reach the classifier's captures)."""

    def __init__(self, loaded, graph, branches_now=None):
        """branches_now(): the branches switched off and the mode (the session's), read at every forward of `on`'s
        networks (explorer.core.attribution.knockout.BranchSwitches); `plain`'s never switch one off."""
        self.loaded, self.graph, self.branches_now = loaded, graph, branches_now
        self._lock = threading.Lock()
        self._by_device: dict[tuple[str, bool], Any] = {}

    def on(self, device: str = "cpu"):
        """The network that classifies and explains: with the branches switched off."""
        return self._network(device, self.branches_now is not None)

    def plain(self, device: str = "cpu"):
        """The network as loaded, every branch on (the microscope's: its caches know nothing of switches)."""
        return self._network(device, False)

    def _network(self, device: str, switched: bool):
        with self._lock:
            model = self._by_device.get((device, switched))
            if model is None:
                from explorer.core.graph.capture import CaptureModel

                module = self.loaded.module
                if device != "cpu":
                    import copy

                    module = copy.deepcopy(module).to(device)
                model = CaptureModel(module, self.graph)
                if switched:
                    from explorer.core.attribution.knockout import BranchSwitches

                    BranchSwitches(self.branches_now).install(model)
                self._by_device[(device, switched)] = model
            return model


def _build_graph(name: str):
    from explorer.core.model.graphs import zoo_block_graph

    return ev.GraphBuilt(zoo_block_graph(name))


def _open_reference(ref: str):
    """What a person typed, opened: a bare name resolves to torchvision's or timm's model of that name (importing
    them, hence on a worker); a zoo model's name comes back without spec and graph."""
    from explorer.core.model.anycnn import resolve_reference
    from explorer.core.model.graphs import opened_model
    from explorer.core.model.zoo import model_names

    ref = resolve_reference(ref)
    if ref in model_names():
        return ev.ModelOpened(ref, None, None)
    spec, graph = opened_model(ref)
    return ev.ModelOpened(ref, spec, graph)


def _list_model_names():
    from explorer.core.model.anycnn import torchvision_model_names

    return ev.ModelNamesListed(tuple(torchvision_model_names()))


def _load_weights(model, weights, allow_download: bool, outputs: int | None = None, *, progress=None, cancel=None):
    from explorer.core.model.loading import load_model

    cancel.raise_if_cancelled()
    return ev.WeightsLoaded(load_model(model, weights=weights, allow_download=allow_download, progress=progress,
                                       cancel=cancel, outputs=outputs))


class Session:
    """The model on screen, its weights, classifier and capture networks, the image on screen and its results."""

    def __init__(self, state: ExplorerState | None = None, runner: Runner | None = None, *, device: str = "cpu",
                 batch_size: int | None = None, weights: str = "auto", allow_download: bool = True,
                 prepares_classifier: bool = True):
        self.state = state if state is not None else ExplorerState()
        self.runner: Runner = runner if runner is not None else InlineRunner()
        self.device, self.batch_size, self.allow_download = device, batch_size, allow_download
        self.weights = weights  #: what the next load asks for: "auto", "none" or a file
        #: Whether loaded weights are followed by a classifier (the window's classify panel asks for it, on the
        #: device its box names).
        self.prepares_classifier = prepares_classifier
        self.captures: CaptureNetworks | None = None  #: the loaded model's networks for the gradient methods
        self._listeners: dict[type, list[Callable[[Any], None]]] = {}
        self._problems = 0
        from explorer.core.session.attributions import Attributions
        from explorer.core.session.classify import Classification
        from explorer.core.session.microscope import Microscope

        from explorer.core.session.compare import Comparisons
        from explorer.core.session.lecture import Handouts
        from explorer.core.session.timing import BlockTiming

        self.images = Classification(self)  #: the classifier and the requests for it
        self.attributions = Attributions(self)  #: maps of the image on screen and their evidence
        self.microscope = Microscope(self)  #: what a channel looks for
        self.timing = BlockTiming(self)  #: the blocks' measured times (the graph's time overlay)
        self.handouts = Handouts(self)  #: the handout of the model on screen
        self.comparisons = Comparisons(self)  #: two models side by side (the Compare window)
        self.model_names: tuple[str, ...] | None = None  #: torchvision's model names, once listed
        # A new input size is traced at once (on the calling thread: a trace takes milliseconds).
        self.state.connect("input_size", lambda _size: self.retrace())
        st = self.state
        #: (the branches switched off, the mode) now: what every network of the session reads at each forward. A
        #: plain function, not a method: a deep copy of a network (sanity checks) shares it instead of the session.
        self.branches_now = lambda: (st.branches_off, st.knockout_mode)
        self._off = st.result_key.off  # the switches the results on screen were made with
        for name in ("branches_off", "knockout_mode"):
            st.connect(name, lambda _value: self._branches_switched())

    @property
    def classifier(self):
        """The loaded model's Classifier, once prepared (None before)."""
        return self.images.classifier

    # -- events -------------------------------------------------------------------------------

    def on(self, kind: type, callback: Callable[[Any], None]) -> None:
        """Call `callback(event)` after each `kind` event has been applied to the state."""
        self._listeners.setdefault(kind, []).append(callback)

    def off(self, kind: type, callback: Callable[[Any], None]) -> None:
        """Stop calling `callback` for `kind` events."""
        callbacks = self._listeners.get(kind, [])
        if callback in callbacks:
            callbacks.remove(callback)

    def tell(self, event) -> None:
        for callback in list(self._listeners.get(type(event), [])):
            callback(event)

    def problem(self, topic: str, message: str) -> None:
        """The one error route: the window shows `state.problem`; a headless caller reads it."""
        self._problems += 1
        self.state.problem = Problem(topic, message, self._problems)

    def submit(self, lane: str, fn, *args, apply: Callable[[Any], None], topic: str, bound: str | None = "image",
               wants_progress: bool = False, on_end: Callable[[str], None] | None = None, **kwargs):
        """Run `fn` in `lane`; each event goes to `apply` while the state still holds the key of now — the whole
        key (`bound="image"`), its model and weights ("model"), or always (None: the job checks what it made);
        an error becomes a Problem about `topic`. on_end(outcome): "done", "failed" or "cancelled" (also for a
        job whose key went)."""
        key = self.state.result_key if bound == "image" else self.state.result_key.for_model()

        def current() -> bool:
            return bound is None or self.state.holds(key)

        def on_event(event) -> None:
            if current():
                apply(event)

        def on_error(message: str) -> None:
            if not current():  # what it was for left the screen: nobody is told of it
                end("cancelled")
                return
            self.problem(topic, message)
            end("failed")

        def end(outcome: str) -> None:
            outcome = outcome if outcome != "done" or current() else "cancelled"
            if on_end is not None:
                on_end(outcome)
            self.tell(ev.JobEnded(lane, outcome))

        callbacks = Callbacks(on_event=on_event, on_done=lambda: end("done"), on_error=on_error,
                              on_cancel=lambda: end("cancelled"))
        return self.runner.submit(lane, fn, *args, callbacks=callbacks, wants_progress=wants_progress, **kwargs)

    # -- the model ----------------------------------------------------------------------------

    def set_model(self, name: str, *, weights: str = "auto", size: tuple[int, int] | None = None) -> None:
        """Switch to the zoo model `name` (at `size`, or its own input size) with `weights`: its graph is built,
        then its weights are loaded, then its classifier is prepared; the image on screen is classified again."""
        from explorer.core.model.zoo import get_spec

        spec = get_spec(name)
        self.begin(name, spec)
        self.weights = weights
        h, w = size or spec.native_size
        self.state.input_size = InputSize(h, w, self.state.input_size.batch)
        self.build_graph(name)

    def begin(self, name: str, spec, ref: str | None = None) -> None:
        """A model switch: the previous model's jobs stop, its engine objects and results go."""
        for lane in ("model/graph", "model/weights"):
            self.runner.cancel(lane)
        self.images.forget()
        self.captures = None
        self.state.begin_model(name, spec, ref)

    def opened(self, ref: str, spec, graph) -> None:
        """Any CNN opened by reference (spec and graph built on a worker) replaces the model on screen."""
        self.begin(spec.name, spec, ref)
        self.state.input_size = InputSize(*spec.native_size, self.state.input_size.batch)
        self._apply(ev.GraphBuilt(graph))

    def open_reference(self, ref: str) -> None:
        """Open any CNN by reference (torchvision:NAME, timm:NAME, a file) on a worker. Listeners of ModelOpened
        hear what it resolved to (a zoo name comes back without a graph); a failure is a Problem about "open",
        and the model on screen stays."""
        self.submit("model/open", _open_reference, ref, apply=self.tell, topic="open", bound=None)

    def list_model_names(self) -> None:
        """List torchvision's model names once (importing torchvision takes a while); ModelNamesListed follows."""
        if self.model_names is not None:
            self.tell(ev.ModelNamesListed(self.model_names))
            return

        def apply(event: ev.ModelNamesListed) -> None:
            self.model_names = event.names
            self.tell(event)

        self.submit("model/names", _list_model_names, apply=apply, topic="model names", bound=None)

    def output_classes(self) -> int | None:
        """How many class scores the model outputs at the traced size (None: not a vector)."""
        st = self.state
        if st.graph is None or st.trace is None:
            return None
        last = [n for n in st.graph.nodes() if not n.training_only][-1]
        node = st.trace.nodes.get(last.name)
        shape = node.output_shape if node is not None else None
        return shape[0] if shape is not None and len(shape) == 1 else None

    def build_graph(self, name: str) -> None:
        def end(outcome: str) -> None:
            if outcome == "failed" and name == self.state.model:
                self.state.model_status = "failed"

        self.submit("model/graph", _build_graph, name, apply=self._apply, topic="model", bound=None, on_end=end)

    def retrace(self) -> bool:
        """Trace shapes at the state's input size; on failure keep the last valid trace and name the failing node.
        Listeners of ShapesTraced hear it (the state's input size changing retraces by itself)."""
        from explorer.core.shapes.trace import InputTooSmallError, trace_shapes

        st = self.state
        if st.graph is None or getattr(st.graph, "is_preview", False):
            return False
        size = st.input_size
        with st.changes():
            try:
                st.trace = trace_shapes(st.graph, size.hw, batch=size.batch)
            except ValueError as e:
                st.failed_node = (getattr(e, "node", None) or "input") if isinstance(e, InputTooSmallError) else "input"
                st.trace_error = str(e)
            else:
                st.failed_node = st.trace_error = None
        ok = st.trace_error is None
        self.tell(ev.ShapesTraced(ok))
        return ok

    def load_weights(self, weights: str | None = None) -> None:
        """Load the model's weights ("auto", "none" or a file; default: the last asked for) in a worker."""
        st = self.state
        if weights is not None:
            self.weights = weights
        if st.model is None or st.graph is None or getattr(st.graph, "is_preview", False):
            return
        model, outputs = (st.spec, self.output_classes()) if st.model_ref is not None else (st.model, None)
        self._weights_job(_load_weights, model, self.weights, self.allow_download, outputs)

    def retry_download(self) -> None:
        """Try the published weights again; the model keeps its weights unless new ones arrive."""
        from explorer.core.model.loading import retry_download

        if self.state.loaded is None or self.state.loaded.name != self.state.model:
            self.load_weights("auto")
            return
        self._weights_job(lambda loaded, **kw: ev.WeightsLoaded(retry_download(loaded, **kw)), self.state.loaded)

    def _weights_job(self, fn, *args) -> None:
        lane = "model/weights"

        def apply(event) -> None:
            if isinstance(event, ev.Progress):
                self.tell(ev.JobProgress(lane, event.done, event.total))
            else:
                self._apply(event)

        def end(outcome: str) -> None:
            if outcome == "failed" and self.state.loaded is None:
                self.state.model_status = "failed"

        self.submit(lane, fn, *args, apply=apply, topic="weights", bound=None, wants_progress=True, on_end=end)

    def prepare_classifier(self, device: str | None = None, batch_size: int | None = None) -> None:
        """Build the loaded model's classifier on `device`; then the image on screen is classified again (unless a
        request made meanwhile waits: it runs instead)."""
        st = self.state
        if device is not None:
            self.device = device
        if batch_size is not None:
            self.batch_size = batch_size
        if st.loaded is None:
            return
        graph = st.graph if st.graph is not None and not getattr(st.graph, "is_preview", False) else None
        self.images.prepare(st.loaded, self.device, self.batch_size, graph)
        again = st.image
        if self.images.pending is None and again is not None and again.available():
            self.images.single(again)

    # -- the image ----------------------------------------------------------------------------

    def classify(self, image: ImageInput | str) -> str:
        """Put `image` (an ImageInput or a path) on screen and classify it (once the classifier is ready)."""
        if not isinstance(image, ImageInput):
            image = ImageInput(str(image), str(image))
        return self.images.single(image)

    # -- branches switched off ----------------------------------------------------------------

    def switch_branch(self, block: str, branch_index: int, on: bool) -> None:
        """Switch `block`'s branch (0-based) off or back on; what is on screen is made again with it."""
        st = self.state
        node = st.graph.node(block) if st.graph is not None and block in st.graph.graph else None
        if node is None or not node.is_block or not 0 <= branch_index < len(node.branches):
            raise ValueError(f"{block} has no branch_index {branch_index}")
        b = (block, branch_index)
        st.branches_off = st.branches_off - {b} if on else st.branches_off | {b}

    def restore_branches(self) -> None:
        """Every branch on again: the plain network."""
        self.state.branches_off = frozenset()

    def set_knockout_mode(self, mode: str) -> None:
        """What a switched-off branch becomes: "zero" or "mean"."""
        if mode not in ("zero", "mean"):
            raise ValueError(f'unknown knock-out mode {mode!r}; one of "zero", "mean"')
        self.state.knockout_mode = mode

    def _branches_switched(self) -> None:
        """Other branches are off (the state's key dropped what the previous network made): a batch moves aside,
        as with a model switch, and the image on screen is classified again, by the network as it now is."""
        st = self.state
        off = st.result_key.off
        if off == self._off:  # the mode changed with every branch on: the same network
            return
        self._off = off
        if self.images.mode == "batch":
            self.images.cancel("Stopped: branches were switched")
        if st.batch is not None:
            with st.changes():
                st.previous_batch, st.batch = st.batch, None
        self.tell(ev.BranchesSwitched(off))
        image = st.image
        if image is not None and image.available() and (self.images.classifier is not None or self.images.pending):
            self.images.single(image)

    # -- applying events ----------------------------------------------------------------------

    def _apply(self, event) -> None:
        """The one place the session's jobs change the state (each job's key was checked by `submit`)."""
        st = self.state
        if isinstance(event, ev.GraphBuilt):
            if event.graph.name != st.model:
                return
            st.graph = event.graph
            self.retrace()
            self.tell(event)
            self.load_weights()
            return
        if isinstance(event, ev.WeightsLoaded):
            self._apply_weights(event)
            return
        self.tell(event)

    def _apply_weights(self, event: ev.WeightsLoaded) -> None:
        from explorer.core.model.loading import RetryResult

        st, loaded = self.state, event.loaded
        if isinstance(loaded, RetryResult):
            if loaded.loaded.name != st.model or not loaded.changed:
                self.tell(event)
                return
            loaded = loaded.loaded
        if loaded.name != st.model:
            return
        with st.changes():
            st.loaded = loaded
            st.model_status = "ready"
            st.status_text = ""
        graph = st.graph if st.graph is not None and not getattr(st.graph, "is_preview", False) else None
        self.captures = CaptureNetworks(loaded, graph, self.branches_now) if graph is not None else None
        self.tell(event)
        if self.prepares_classifier:
            self.prepare_classifier()
