"""The explorer's session state, without Qt: what the window shows, held in one object that announces changes.

Widgets bind to an `ExplorerState` (they call `state.connect(name, callback)` and set attributes when the
user edits them); tests drive and read the state instead of widgets. Every property is a `StateProperty`
whose docstring says what it holds; setting one to a value equal to the current one announces nothing,
so a widget that writes back what it was just told causes no loop. `state.changes()` groups several
assignments into one announcement per property, made when the block ends (a model switch sets a dozen
properties; views then redraw once).

The state lives on the UI thread: workers hand their results to it there, never from their own threads.

Results belong to what made them. `result_key` (a `ResultKey`: the model, its weights, the image, the branches
switched off) says what
the results on screen are for; a job takes the key when it starts and its result is used only while
`holds(key)`. When the key changes, the results it no longer covers are dropped here, in `_follow_key`,
and the views, which follow the state, drop what they showed of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

Callback = Callable[[Any], None]


class StateProperty:
    """A property that announces changes to its state's callbacks: `value` after it changed."""

    def __init__(self, default: Any = None, doc: str = ""):
        self.default = default
        self.__doc__ = doc

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return obj.__dict__.get(self.name, self.default)

    def __set__(self, obj, value) -> None:
        old = obj.__dict__.get(self.name, self.default)
        obj.__dict__[self.name] = value
        if not _same(old, value):
            obj._announce(self.name)


def _same(a, b) -> bool:
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # arrays and tensors compare element-wise: treat them as different
        return False


class State:
    """Base of state objects: named callbacks per property, and grouped announcements."""

    def __init__(self):
        self.__dict__["_callbacks"] = {}
        self.__dict__["_held"] = None  # names changed inside `changes()`, in order

    @classmethod
    def property_names(cls) -> list[str]:
        return [n for k in reversed(cls.__mro__) for n, v in vars(k).items() if isinstance(v, StateProperty)]

    def connect(self, name: str, callback: Callback) -> None:
        """Call `callback(new_value)` whenever property `name` changes."""
        if name not in self.property_names():
            raise AttributeError(f"{type(self).__name__} has no property {name!r}")
        self._callbacks.setdefault(name, []).append(callback)

    def disconnect(self, name: str, callback: Callback) -> None:
        cbs = self._callbacks.get(name, [])
        if callback in cbs:
            cbs.remove(callback)

    @contextmanager
    def changes(self) -> Iterator[None]:
        """Hold announcements until the block ends, then make one per changed property (nested: outermost)."""
        if self._held is not None:
            yield
            return
        self.__dict__["_held"] = []
        try:
            yield
        finally:
            held, self.__dict__["_held"] = self._held, None
            for name in dict.fromkeys(held):
                self._call(name)

    def _announce(self, name: str) -> None:
        if self._held is not None:
            self._held.append(name)
        else:
            self._call(name)

    def _call(self, name: str) -> None:
        value = getattr(self, name)
        for cb in list(self._callbacks.get(name, [])):
            cb(value)


@dataclass(frozen=True)
class InputSize:
    """The input the shapes are traced for: height, width, batch N."""

    height: int
    width: int
    batch: int = 1

    @property
    def hw(self) -> tuple[int, int]:
        return self.height, self.width

    def text(self) -> str:
        return f"{self.height}×{self.width}" + (f" ×{self.batch}" if self.batch > 1 else "")


@dataclass(frozen=True, eq=False)
class ImageInput:
    """An image a person gave: a file, or a picture pasted or dropped as data. It is what stays on screen
    through a model switch, to be classified again by the next model. Compared by identity: the same file
    given twice is two inputs (results of the first do not describe the second)."""

    source: Any  #: a path, or a PIL image
    name: str  #: what the result calls it: the path, or "<pasted image>"
    #: The object's pixels, (H, W) bool at the image's own size, when they are known (a drawn sample of the demo
    #: task): the ground truth its maps are measured against. None: unknown.
    mask: Any = None

    def available(self) -> bool:
        """Whether it can be classified again (a file may have gone since)."""
        return Path(self.source).is_file() if isinstance(self.source, (str, os.PathLike)) else True


@dataclass(frozen=True)
class ResultKey:
    """What a result was made for: the model (its name; an opened model's reference too), its weights (the
    n-th weights the state was given, 0 before any) and the image (None: a result about the model alone,
    such as a channel's visualisation). The input size the graph is traced for is no part of it: images
    are classified at the model's own preprocessing size, whatever size the shapes are traced for."""

    model: str | None = None
    ref: str | None = None
    weights: int = 0
    image: ImageInput | None = None
    #: The branches switched off in the network that made the result and how ((frozenset of (block,
    #: branch_index), "zero" or "mean")); None: the plain network.
    off: tuple[frozenset, str] | None = None

    def for_model(self) -> ResultKey:
        """The key of a result about the model alone (its plain network: the microscope's)."""
        return replace(self, image=None, off=None)

    def holds_for(self, current: ResultKey) -> bool:
        """Whether a result made for this key belongs on screen under `current`."""
        return self == (current if self.image is not None else current.for_model())

    def change_to(self, new: ResultKey) -> str:
        """What changed from this key to `new`, for people: "the model changed"."""
        if (self.model, self.ref) != (new.model, new.ref):
            return "the model changed"
        if self.weights != new.weights:
            return "the weights changed"
        return "the branches switched off changed" if self.off != new.off else "the image changed"


@dataclass(frozen=True)
class ChannelChoice:
    """A channel chosen to look at in the Channel tab: one output channel of a block's branch."""

    block: str
    branch_index: int  #: 0-based
    channel: int


@dataclass
class BatchRun:
    """A batch of files classified by one model: its inputs, the results so far, and how it ended."""

    model: str  #: the name of the model that classified it
    inputs: tuple[str, ...]  #: the files and folders asked for
    results: list = field(default_factory=list)  #: ClassificationResults in input order
    total: int | None = None  #: files found once folders are listed
    status: str = "running"  #: running, done, cancelled, failed
    seconds: float | None = None  #: wall time once done
    provenance: Any = None  #: what made its results (explorer.core.classify.provenance.Provenance), for its export


class ExplorerState(State):
    """Everything the main window shows, for the model on screen (see the module docstring)."""

    model = StateProperty(None, "The current model's name: a zoo name or an opened model's name.")
    model_ref = StateProperty(None, "What an opened model was opened from (torchvision:NAME, a file); None for the zoo's.")
    spec = StateProperty(None, "The current model's ModelSpec.")
    model_status = StateProperty("loading", "loading, ready (graph and weights in) or failed.")
    status_text = StateProperty("", "What the model is doing, for people: 'loading inception_v4…'.")
    graph = StateProperty(None, "The current model's BlockGraph (a shipped preview while the engine loads).")
    loaded = StateProperty(None, "The LoadedModel once its weights are in (pretrained, from a file or random).")
    input_size = StateProperty(InputSize(224, 224, 1), "The input size shapes are traced for (InputSize).")
    size_linked = StateProperty(True, "Whether editing H sets W too.")
    trace = StateProperty(None, "The ShapeTrace at `input_size`; the last valid one while `trace_error` is set.")
    trace_error = StateProperty(None, "Why `input_size` cannot pass through the network, or None.")
    failed_node = StateProperty(None, "The first node that fails at `input_size` ('input' for a size the engine refuses).")
    expanded = StateProperty(frozenset(), "The blocks drawn opened into their branches.")
    selection = StateProperty(None, "The key of the selected box: a node name or a layer inside an expanded block.")
    result_key = StateProperty(ResultKey(), "What the results on screen are for (ResultKey): the model, its weights, "
                               "the image. When it changes, the results it no longer covers go (_follow_key).")
    image = StateProperty(None, "The image on screen as it was given (ImageInput: a file or a pasted picture); it "
                          "stays through a model switch, and the next model classifies it again.")
    shown_image = StateProperty(None, "The ShownImage on display (picture, result, capture), from the current model.")
    classification = StateProperty(None, "The ClassificationResult of the single image last classified.")
    batch = StateProperty(None, "The BatchRun of the current model, or None.")
    previous_batch = StateProperty(None, "A BatchRun cleared by a model switch (its inputs can be run again).")
    recent = StateProperty((), "References of the models opened lately, the latest first.")
    presenting = StateProperty(False, "Whether presentation mode is on.")
    overlay = StateProperty("none", "What the graph's boxes are coloured by: a key of explorer.core.overlay.quantities.QUANTITIES.")
    block_times = StateProperty(None, "The BlockTimes last measured for the current model (its size and device).")
    thumbnails = StateProperty(False, "Whether the graph's boxes show the strongest feature map of the image on screen.")
    attributions = StateProperty((), "The maps computed for the image on screen by the current model, with their "
                                 "faithfulness and sanity evidence: AttributionRecords, one per method, layer and target.")
    branch_evidence = StateProperty(None, "The BranchEvidence of the image on screen (per-branch |gradient × "
                                    "activation|), once computed; cleared with the image and the model.")
    conductance = StateProperty(None, "The BranchConductance of one block of the image on screen: each branch's part of "
                                "f(x) − f(baseline) and how far their sum is from it; cleared with the image and the model.")
    knockouts = StateProperty(None, "The BranchEffects of the image on screen: every branch knocked out on its own, "
                              "the target's logit and probability then and the new top-1; cleared with the image and "
                              "the model.")
    branches_off = StateProperty(frozenset(), "The branches switched off in the network that classifies and explains "
                                 "(a frozenset of (block, branch_index)): each replaced where its block joins it, as "
                                 "`knockout_mode` says. Part of `result_key`: what was made with others goes.")
    knockout_mode = StateProperty("zero", 'What a switched-off branch becomes: "zero" (zeros) or "mean" (each '
                                  "channel's mean over the image, which keeps the block's statistics).")
    channel = StateProperty(None, "The channel shown in the Channel tab (ChannelChoice), of the model on screen.")
    object_box = StateProperty(None, "A box (x0, y0, x1, y1) a person drew around the object on the attribution map, in "
                               "the network input's pixels (columns x0 … x1 − 1, rows y0 … y1 − 1): the ground truth "
                               "its maps are measured against; None: none. It goes with the image and the model.")
    problem = StateProperty(None, "The last thing that went wrong, for people (session.Problem: topic and one line); "
                            "the one route errors take to the window.")

    #: Results computed on the image on screen, and their empty values: they go when any part of the key changes.
    IMAGE_RESULTS = {"attributions": (), "branch_evidence": None, "conductance": None, "knockouts": None}
    #: Results that go when the model or its weights change, not with the image: the channel chosen, and the last
    #: image shown with its classification (the next image's replace them when they arrive; until then, a
    #: presentation keeps its slide).
    MODEL_RESULTS = {"shown_image": None, "classification": None, "channel": None}
    #: Results of the network run that go when other branches are switched off (the channel chosen stays).
    NETWORK_RESULTS = {"shown_image": None, "classification": None}

    def __init__(self):
        super().__init__()
        self._weights_of = None  # the LoadedModel that result_key.weights counts
        self._weights_serial = 0
        # Evidence computed for one image does not describe the next.
        self.connect("shown_image", lambda _shown: self._drop_evidence())
        for name in ("model", "model_ref", "loaded", "image", "branches_off", "knockout_mode"):
            self.connect(name, self._follow_key)

    # -- what results are for ----------------------------------------------------------------

    def holds(self, key: ResultKey | None) -> bool:
        """Whether a result made for `key` belongs on screen now (a job's result may arrive after a switch)."""
        return key is not None and key.holds_for(self.result_key)

    def _current_key(self) -> ResultKey:
        if self.loaded is not self._weights_of:  # other weights: what the previous ones made is not theirs
            self._weights_of, self._weights_serial = self.loaded, self._weights_serial + 1
        off = (frozenset(self.branches_off), self.knockout_mode) if self.branches_off else None
        return ResultKey(self.model, self.model_ref, self._weights_serial, self.image, off)

    def _drop_evidence(self) -> None:
        with self.changes():
            self.branch_evidence = self.conductance = self.knockouts = None

    def _follow_key(self, _changed=None) -> None:
        """The one place results are dropped: the key changed, and what it no longer covers goes."""
        old, key = self.result_key, self._current_key()
        if key == old:
            return
        with self.changes():
            self.result_key = key
            dropped = dict(self.IMAGE_RESULTS)
            if key.for_model() != old.for_model():
                dropped.update(self.MODEL_RESULTS)
            elif key.off != old.off:
                dropped.update(self.NETWORK_RESULTS)
            for name, empty in dropped.items():
                setattr(self, name, empty)
            if (key.model, key.ref, key.image) != (old.model, old.ref, old.image):
                self.object_box = None  # drawn on another image, or in another model's input pixels

    # -- transitions that change several properties at once ---------------------------------

    def begin_model(self, name: str, spec, ref: str | None = None) -> None:
        """A model switch: everything that belonged to the previous model goes (a batch moves aside; the
        image stays, for the next model to classify; its results go with the key)."""
        with self.changes():
            if self.batch is not None and self.batch.model != name:
                self.previous_batch = self.batch
            if self.batch is not None:
                self.batch = None
            self.model, self.spec, self.model_ref = name, spec, ref
            self.graph = self.trace = self.loaded = None
            self.trace_error = self.failed_node = None
            self.selection = None
            self.block_times = None
            self.branches_off = frozenset()  # another network's branches
            self.model_status = "loading"
            self.status_text = f"loading {name}…"
            # A new load, even of the same model again: nothing made before it is for it.
            self._weights_of, self._weights_serial = None, self._weights_serial + 1
            self._follow_key()

    def is_current(self, model: str | None) -> bool:
        """Whether a result made by `model` belongs to the model on screen."""
        return model is not None and model == self.model
