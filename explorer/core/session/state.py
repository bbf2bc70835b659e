"""The explorer's session state, without Qt: what the window shows, held in one object that announces changes.

Widgets bind to an `ExplorerState` (they call `state.connect(name, callback)` and set attributes when the
user edits them); tests drive and read the state instead of widgets. Every property is a `StateProperty`
whose docstring says what it holds; setting one to a value equal to the current one announces nothing,
so a widget that writes back what it was just told causes no loop. `state.changes()` groups several
assignments into one announcement per property, made when the block ends (a model switch sets a dozen
properties; views then redraw once).

The state lives on the UI thread: workers hand their results to it there, never from their own threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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


@dataclass
class BatchRun:
    """A batch of files classified by one model: its inputs, the results so far, and how it ended."""

    model: str  #: the name of the model that classified it
    inputs: tuple[str, ...]  #: the files and folders asked for
    results: list = field(default_factory=list)  #: ClassificationResults in input order
    total: int | None = None  #: files found once folders are listed
    status: str = "running"  #: running, done, cancelled, failed
    seconds: float | None = None  #: wall time once done


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

    def __init__(self):
        super().__init__()
        # Evidence computed for one image does not describe the next.
        self.connect("shown_image", lambda _shown: setattr(self, "branch_evidence", None))

    # -- transitions that change several properties at once ---------------------------------

    def begin_model(self, name: str, spec, ref: str | None = None) -> None:
        """A model switch: everything that belonged to the previous model goes (results move aside)."""
        with self.changes():
            if self.batch is not None and self.batch.model != name:
                self.previous_batch = self.batch
            if self.batch is not None:
                self.batch = None
            self.model, self.spec, self.model_ref = name, spec, ref
            self.graph = self.trace = self.loaded = None
            self.trace_error = self.failed_node = None
            self.selection = None
            self.shown_image = None
            self.classification = None
            self.block_times = None
            self.branch_evidence = None
            self.attributions = ()
            self.model_status = "loading"
            self.status_text = f"loading {name}…"

    def is_current(self, model: str | None) -> bool:
        """Whether a result made by `model` belongs to the model on screen."""
        return model is not None and model == self.model
