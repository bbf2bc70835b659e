"""The session's attribution jobs, without Qt: a map of the image on screen, its faithfulness curves, its sanity
check and its metrics (map_metrics.py), one at a time in the lane "images/attribution".

Each job is for the session's `result_key` when it started (the model, its weights, the image); its events
reach the state only while that key holds. A finished map becomes an `AttributionRecord` in
`state.attributions`; its curves, its sanity check and its metrics are added to that record. The map the next curves and
sanity check measure is `result`, the last map computed for the image on screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from explorer.core.session import events as ev
from explorer.core.session.state import State, StateProperty

LANE = "images/attribution"
SHARES = "images/shares"
NETWORK = "images/capture_model"


def cpu_input(x):
    """The network input as the CPU capture networks take it: a plain (1, 3, H, W) float tensor of its own (x may
    live on the GPU, in channels-last layout)."""
    import torch

    return x.detach().to("cpu", torch.float32).clone(memory_format=torch.contiguous_format)


def _network(captures, device: str):
    """Build the capture network on `device` now (tracing it takes a while), so the first map need not."""
    captures.on(device)
    return ev.NetworkReady(device)


def _map(networks_on, x, method: str, target, device: str, map_kwargs: dict, *, progress=None, cancel=None):
    from explorer.core.attribution.methods import attribute, attribute_on_device

    started = time.monotonic()
    if device != "cpu":
        result = attribute_on_device(networks_on, x, method, target, device=device, progress=progress,
                                     cancel=cancel, **map_kwargs)
    else:
        result = attribute(networks_on("cpu"), x, method, target, progress=progress, cancel=cancel, **map_kwargs)
    return ev.MapComputed(result, time.monotonic() - started, map_kwargs)


def _curves(model, x, result, steps: int, references, *, progress=None, cancel=None):
    from explorer.core.attribution.faithfulness import DELETION_SUBSTRATE, faithfulness_curves

    started = time.monotonic()
    # Deleted pixels become the image blurred: a flat colour leaves the removed object's silhouette (see
    # DELETION_SUBSTRATE); each Curve says its substrate, and the window says it beside the curves.
    curves = faithfulness_curves(model, x, result.heatmap, result.target, steps=steps, random_scores=references,
                                 progress=progress, cancel=cancel, deletion_substrate=DELETION_SUBSTRATE)
    return ev.CurvesComputed(result, curves, time.monotonic() - started)


def _evidence(model, x, target, *, progress=None, cancel=None):
    from explorer.core.attribution.methods import branch_evidence

    return ev.EvidenceComputed(branch_evidence(model, x, target, progress=progress, cancel=cancel))


def _decompose(model, graph, x, block, target, baseline, normalisation, *, progress=None, cancel=None):
    from explorer.core.attribution.decomposition import branch_conductance

    return ev.BranchesDecomposed(branch_conductance(model, graph, x, block, target, baseline=baseline,
                                                    normalisation=normalisation, progress=progress, cancel=cancel))


def _knock_out(model, graph, x, target, mode, *, progress=None, cancel=None):
    from explorer.core.attribution.knockout import branch_effects

    if cancel is not None:
        cancel.raise_if_cancelled()
    return ev.BranchesKnockedOut(branch_effects(model, graph, x, target, mode))


def _sanity(model, explain, result, blocks, *, progress=None, cancel=None):
    from explorer.core.attribution.faithfulness import sanity_check

    started = time.monotonic()
    check = sanity_check(model, explain, original=result.heatmap, blocks=blocks, progress=progress, cancel=cancel)
    return ev.SanityChecked(result, check, time.monotonic() - started)


class AttributionChoices(State):
    """What the next map is to be and how maps are shown: the attribution controls bind to it by name, the jobs
    read it (nothing is read back from a widget)."""

    method = StateProperty("integrated_gradients", "One of explorer.core.attribution.methods.METHODS.")
    target = StateProperty(None, "The class to explain (an index); None: the top-1 class.")
    block = StateProperty(None, "The CAM methods' block.")
    branch = StateProperty(None, "The CAM methods' branch of that block (branch_index, 0-based); None: the whole block.")
    display = StateProperty("signed", '"signed" (diverging colours) or "absolute", for signed maps.')
    opacity = StateProperty(0.8, "Of the map over the image.")
    params = StateProperty(None, "The methods' parameters (AttributionParams).")
    curve_steps = StateProperty(None, "Points of each faithfulness curve after the first.")
    sanity_steps = StateProperty(None, "Blocks the sanity check randomises in cascade.")

    def __init__(self):
        from explorer.core.attribution.catalogue import SANITY_STEPS
        from explorer.core.attribution.faithfulness import DEFAULT_STEPS
        from explorer.core.attribution.methods import AttributionParams

        super().__init__()
        self.params, self.curve_steps, self.sanity_steps = AttributionParams(), DEFAULT_STEPS, SANITY_STEPS


class Attributions:
    """Maps of the image on screen and their evidence (see the module docstring)."""

    def __init__(self, session):
        self.session = session
        self.choices = AttributionChoices()  #: what the next map is to be (the controls bind to it)
        self.result = None  #: the last map computed for the image on screen (an AttributionResult)
        self.map_kwargs: dict = {}  #: what `result` was computed with (node, branch, params)
        self._networks = None  # networks_on(device) given with `use` (None: the session's capture networks)
        self._input = None  # (x, device) given with `set_input`
        self._given_input = False
        session.state.connect("result_key", self._follow_key)

    def _follow_key(self, _key) -> None:
        self.session.runner.cancel(LANE)
        self.session.runner.cancel(SHARES)
        self.result, self.map_kwargs = None, {}
        if self._given_input:
            self._input = None

    def use(self, networks_on) -> None:
        """Explain with `networks_on(device)` (a CaptureModel there) instead of the session's capture networks
        (None: the session's again). The maps of the previous networks go."""
        self.cancel()
        self._networks = networks_on
        self.result, self.map_kwargs = None, {}

    def set_input(self, x, device: str = "cpu") -> None:
        """Explain `x` (1, 3, H, W), run on `device`, instead of the image on screen's input (None: nothing)."""
        if self._given_input and self._input is not None and x is self._input[0] and device == self._input[1]:
            return
        self.cancel()
        self.session.runner.cancel(SHARES)
        st = self.session.state
        with st.changes():  # what was found for the previous input does not describe this one
            st.branch_evidence = st.conductance = st.knockouts = None
        plain = x is not None and x.device.type == "cpu" and x.is_contiguous() and str(x.dtype) == "torch.float32"
        self._input = None if x is None else (x if plain else cpu_input(x), device)
        self._given_input = True
        self.result, self.map_kwargs = None, {}

    def run_on(self, device: str) -> None:
        """Run the maps of the given input on `device` from now on."""
        if self._input is not None:
            self._input = (self._input[0], device)

    @property
    def input_x(self):
        """The network input the maps explain (on the CPU), or None."""
        try:
            return self.image()[0]
        except ValueError:
            return None

    def prepare_network(self, device: str = "cpu") -> None:
        """Build the loaded model's capture network on `device` on a worker; NetworkReady follows while the
        model and weights it is for are on screen."""
        if self.session.captures is not None:
            self.session.submit(NETWORK, _network, self.session.captures, device, apply=self.session.tell,
                                topic="attribution", bound="model")

    def networks_on(self, device: str):
        if self._networks is not None:
            return self._networks(device)
        if self.session.captures is None:
            raise ValueError("Load a model and classify an image first.")
        return self.session.captures.on(device)

    def image(self):
        """(x on the CPU, the device the maps run on) of the image explained; ValueError when there is none."""
        s = self.session
        if self._networks is None and s.captures is None:
            raise ValueError("Load a model and classify an image first.")
        if self._given_input:
            if self._input is None:
                raise ValueError("Load a model and classify an image first.")
            return self._input
        shown = s.state.shown_image
        if shown is None or shown.x is None:
            raise ValueError("Load a model and classify an image first.")
        return cpu_input(shown.x), str(shown.x.device)

    def run(self, method: str, target: int | None = None, *, block: str | None = None,
            branch_index: int | None = None, params=None, on_progress: Callable | None = None,
            on_end: Callable[[str], None] | None = None) -> None:
        """Compute `method`'s map of the image on screen for `target` (None: the top-1); the CAM family takes a
        `block` and optionally one of its branches (0-based)."""
        from explorer.core.attribution.methods import CAM_METHODS, AttributionParams, with_normalisation

        x, device = self.image()
        params = params if params is not None else AttributionParams()
        loaded = self.session.state.loaded
        if loaded is not None:  # the black baseline where this model's input puts black
            params = with_normalisation(params, loaded.transforms())
        kwargs: dict = dict(params=params)
        if method in CAM_METHODS:
            if block is None:
                raise ValueError(f"choose a block for {method.replace('_', ' ')}")
            kwargs.update(node=block, branch=branch_index)
        self._submit(_map, self.networks_on, x, method, target, device, kwargs, on_progress=on_progress,
                     on_end=on_end)

    def evidence_model(self, for_curves: bool):
        """The network the map's evidence runs on, and its device: the map's own (the classifier's optimised
        network for the curves, which need no gradients)."""
        s = self.session
        device = getattr(self.result, "device", "cpu") or "cpu"
        clf = s.classifier
        if (for_curves and self._networks is None and clf is not None and clf.loaded is s.state.loaded
                and getattr(clf, "graph", None) is not None):
            return clf.capture_model(device), device
        return self.networks_on(device), device

    def curves(self, steps: int | None = None, *, on_progress=None, on_end=None) -> None:
        """Deletion and insertion curves of the last map, with their random-order references."""
        from explorer.core.attribution.faithfulness import DEFAULT_STEPS, random_references

        if self.result is None:
            raise ValueError("Compute a map first: the curves measure the map on screen.")
        steps = steps or DEFAULT_STEPS
        x, _ = self.image()
        model, device = self.evidence_model(True)
        references = random_references(self.session.state.attributions, self.result, steps)
        self._submit(_curves, model, x.to(device), self.result, steps, references, on_progress=on_progress,
                     on_end=on_end)

    def sanity(self, blocks: int, *, on_progress=None, on_end=None) -> int:
        """The last map again with the top `blocks` blocks randomised in cascade; how many blocks that is."""
        from explorer.core.attribution.faithfulness import map_explainer, sanity_blocks

        if self.result is None:
            raise ValueError("Compute a map first: the sanity check randomises the model behind the map on screen.")
        x, _ = self.image()
        model, device = self.evidence_model(False)
        names = sanity_blocks(model, blocks)
        r = self.result
        explain = map_explainer(x.to(device), r.method, r.target, **self.map_kwargs)
        self._submit(_sanity, model, explain, r, names, on_progress=on_progress, on_end=on_end)
        return len(names)

    def metrics(self, steps: int | None = None, *, percentages=None, samples: int | None = None, seeds=None,
                on_progress=None, on_end=None) -> None:
        """Issue 27's metrics of the last map (map_metrics.measure_map): SRG (`steps` removal steps, default the
        curves' steps) and ROAD on the curves' network, smooth and efficient MPRT on the gradients' network; into
        its record, with a MetricsComputed."""
        from explorer.core.session.map_metrics import measure_map

        if self.result is None:
            raise ValueError("Compute a map first: the metrics measure the map on screen.")
        x, _ = self.image()
        curve_model, device = self.evidence_model(True)
        gradient_model, _ = self.evidence_model(False)
        self._submit(measure_map, curve_model, gradient_model, x.to(device), self.result, dict(self.map_kwargs),
                     steps=steps or self.choices.curve_steps, percentages=percentages, samples=samples, seeds=seeds,
                     on_progress=on_progress, on_end=on_end)

    def branch_evidence(self, target: int | None = None, *, on_progress=None, on_end=None) -> None:
        """Every branch's share of the evidence for `target` (None: the top-1) in the image explained, on the CPU:
        into `state.branch_evidence`."""
        x, _ = self.image()
        self._submit(_evidence, self.networks_on("cpu"), x, target, on_progress=on_progress, on_end=on_end,
                     lane=SHARES)

    def decompose(self, block: str, target: int | None = None, *, graph=None, on_progress=None,
                  on_end=None) -> None:
        """`block`'s branches' layer conductance to `target` (None: the top-1) in the image explained, from the
        attribution choices' Integrated Gradients baseline, on the CPU: into `state.conductance`. `graph`: the
        block graph of the networks explained (default: the state's). ValueError for no image, or a block whose
        branches are not concatenated (their parts would not add up)."""
        from explorer.core.attribution.decomposition import concatenated_widths
        from explorer.core.attribution.methods import with_normalisation

        graph = graph if graph is not None else self.session.state.graph
        if graph is None:
            raise ValueError("Load a model and classify an image first.")
        concatenated_widths(graph, block)
        x, _ = self.image()
        loaded = self.session.state.loaded
        params = self.choices.params
        if loaded is not None:  # the black baseline where this model's input puts black
            params = with_normalisation(params, loaded.transforms())
        self._submit(_decompose, self.networks_on("cpu"), graph, x, block, target, params.ig_baseline,
                     params.normalisation(), on_progress=on_progress, on_end=on_end, lane=SHARES)

    def knock_out_each(self, target: int | None = None, mode: str = "zero", *, graph=None, on_progress=None,
                       on_end=None) -> None:
        """Every branch of every block knocked out on its own ("zero" or "mean"), in the image explained, for
        `target` (None: the top-1), on the CPU: into `state.knockouts`. `graph`: as in `decompose`."""
        graph = graph if graph is not None else self.session.state.graph
        if graph is None:
            raise ValueError("Load a model and classify an image first.")
        x, _ = self.image()
        self._submit(_knock_out, self.networks_on("cpu"), graph, x, target, mode, on_progress=on_progress,
                     on_end=on_end, lane=SHARES)

    def cancel(self) -> bool:
        return self.session.runner.cancel(LANE)

    def running(self) -> bool:
        return self.session.runner.running(LANE) is not None

    def _submit(self, fn, *args, on_progress, on_end, lane: str = LANE, **kwargs) -> None:
        def apply(event) -> None:
            if isinstance(event, ev.Progress):
                if on_progress is not None:
                    on_progress(event.done, event.total)
            else:
                self._apply(event)

        self.session.submit(lane, fn, *args, apply=apply, topic="attribution", wants_progress=True, on_end=on_end,
                            **kwargs)

    def _apply(self, event) -> None:
        """A map or its evidence arrived (for the key on screen): into its record in `state.attributions`."""
        import dataclasses

        from explorer.core.attribution.faithfulness import AttributionRecord, with_record

        st = self.session.state
        if isinstance(event, ev.EvidenceComputed):
            st.branch_evidence = event.evidence
            self.session.tell(event)
            return
        if isinstance(event, ev.BranchesDecomposed):
            st.conductance = event.conductance
            self.session.tell(event)
            return
        if isinstance(event, ev.BranchesKnockedOut):
            st.knockouts = event.effects
            self.session.tell(event)
            return
        if isinstance(event, ev.MapComputed):
            self.result, self.map_kwargs = event.result, event.map_kwargs
            record = AttributionRecord(event.result, event.seconds)
        else:
            record = next((r for r in st.attributions if r.result is event.result), None)
            if record is None:
                return
            if isinstance(event, ev.CurvesComputed):
                record = dataclasses.replace(record, curves=event.curves, curves_seconds=event.seconds)
            elif isinstance(event, ev.MetricsComputed):
                record = dataclasses.replace(record, metrics=event.scores, metrics_seconds=event.seconds)
            else:
                record = dataclasses.replace(record, sanity=event.check, sanity_seconds=event.seconds)
        st.attributions = with_record(st.attributions, record)
        self.session.tell(event)
