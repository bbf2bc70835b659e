"""The session's microscope jobs, without Qt: what one channel of a branch looks for — its feature visualisation
(or a grid of a branch's first channels) and its top dataset examples, with indexing a folder for them.

The jobs run in the lanes "images/featurevis" and "images/examples" on the loaded model's plain CPU capture network
(every branch on, whatever the window has switched off: the visualisation and example caches are the model's;
built on the worker, once, by the session's CaptureNetworks) or on a network given with `use`; their events
(ChannelVisualised, ExamplesFound) reach the listeners only while the model and weights they were made for
are on screen.
"""

from __future__ import annotations

from collections.abc import Callable

from explorer.core.session import events as ev

VISUALISE, EXAMPLES = "images/featurevis", "images/examples"
#: Channels in a branch grid.
GRID_CHANNELS = 16


def _visualise(networks_on, model_name, module, target, channels, steps, size, mean, std, *, progress=None,
               cancel=None):
    """Visualise `channels` (None: the target's first GRID_CHANNELS channels) through the disk cache."""
    from explorer.core.microscope.featurevis import target_channels, visualize_cached, weights_digest

    cm = networks_on("cpu")
    grid = channels is None
    if grid:
        channels = list(range(min(GRID_CHANNELS, target_channels(cm, target, size))))
    found = visualize_cached(cm, model_name, weights_digest(module), target, channels, steps=steps, size=size,
                             mean=mean, std=std, progress=progress, cancel=cancel)
    return ev.ChannelVisualised(tuple(found), grid)


def _examples(networks_on, graph, loaded, node, branch, channel, folder, mean, std, *, progress=None, cancel=None):
    """Index `folder` if given (known files are skipped), then the channel's examples and their crops."""
    from explorer.core.classify.images import ImageLoadError
    from explorer.core.classify.inference import Classifier
    from explorer.core.microscope.examples import ExampleIndex, example_crop, index_folder
    from explorer.core.microscope.featurevis import weights_digest

    # Crops are cut from the very input the network saw: the classifier's exact CPU preprocessing.
    preprocess = Classifier(loaded, "cpu", optimize=False).preprocess
    digest = weights_digest(loaded.module)
    with ExampleIndex() as index:
        report = None
        if folder:
            report = index_folder(folder, networks_on("cpu"), graph, preprocess, model=loaded.name, weights=digest,
                                  index=index, progress=progress, cancel=cancel)
        found = index.examples(loaded.name, digest, node, branch, channel)
    crops = []
    for e in found:
        try:
            crops.append(example_crop(e, preprocess, mean, std))
        except ImageLoadError:
            crops.append(None)
    return ev.ExamplesFound(report, tuple(found), tuple(crops))


class Microscope:
    """A channel's feature visualisation and dataset examples (see the module docstring)."""

    def __init__(self, session):
        self.session = session
        self._given = None  # (networks_on, graph, loaded) given with `use`

    def use(self, capture_model, graph, loaded) -> None:
        """Look through `capture_model` (a CPU CaptureModel of `loaded`, with its `graph`) instead of the session's
        loaded model (capture_model None: the session's again)."""
        self.cancel()
        self._given = None if capture_model is None else ((lambda _device: capture_model), graph, loaded)

    def subject(self):
        """(networks_on, graph, loaded) of the network looked through; ValueError when none is loaded."""
        if self._given is not None:
            return self._given
        s = self.session
        if s.captures is None or s.state.loaded is None:
            raise ValueError("Load a model first.")
        return s.captures.plain, s.captures.graph, s.state.loaded

    def mean_std(self) -> tuple[tuple, tuple]:
        tf = self.subject()[2].transforms()
        return tuple(getattr(tf, "mean", (0.485, 0.456, 0.406))), tuple(getattr(tf, "std", (0.229, 0.224, 0.225)))

    def visualise(self, block: str, branch_index: int | None, channels: list[int] | None, steps: int, size: int, *,
                  on_progress: Callable | None = None, on_end: Callable[[str], None] | None = None) -> None:
        """Feature visualisations of `channels` of `block`'s branch (None: a grid of its first channels)."""
        from explorer.core.microscope.featurevis import Target

        networks_on, _, loaded = self.subject()
        mean, std = self.mean_std()
        self._submit(VISUALISE, _visualise, networks_on, loaded.name, loaded.module, Target(block, branch_index),
                     channels, steps, size, mean, std, on_progress=on_progress, on_end=on_end)

    def examples(self, block: str, branch_index: int, channel: int, folder: str | None = None, *,
                 on_progress: Callable | None = None, on_end: Callable[[str], None] | None = None) -> None:
        """The channel's top dataset examples (indexing `folder` first, when given)."""
        networks_on, graph, loaded = self.subject()
        mean, std = self.mean_std()
        self._submit(EXAMPLES, _examples, networks_on, graph, loaded, block, branch_index, channel, folder, mean, std,
                     on_progress=on_progress, on_end=on_end)

    def cancel(self) -> None:
        for lane in (VISUALISE, EXAMPLES):
            self.session.runner.cancel(lane)

    def _submit(self, lane: str, fn, *args, on_progress, on_end) -> None:
        def apply(event) -> None:
            if isinstance(event, ev.Progress):
                if on_progress is not None:
                    on_progress(event.done, event.total)
            else:
                self.session.tell(event)

        self.session.submit(lane, fn, *args, apply=apply, topic="microscope", bound="model", wants_progress=True,
                            on_end=on_end)
