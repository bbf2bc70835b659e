"""The typed events of the session's jobs: what a job tells its caller, one class per kind of news.

Every job kind the session runs ends in one of these (a plain function's return value, or a generator's
yields; explorer.core.session.runner). The session applies each to its state by type, in one place
(`Session._apply`), and then tells the listeners of that type (`Session.on`). Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from explorer.core.session.runner import Progress

__all__ = [
    "BatchClassified", "BatchStopped", "BlocksTimed", "ChannelVisualised", "ClassifierReady", "Compared",
    "BranchesDecomposed", "BranchesKnockedOut", "CurvesComputed", "EvidenceComputed", "ExamplesFound", "FilesListed", "GraphBuilt", "HandoutWritten",
    "ImageClassified", "ImageShown", "JobEnded", "JobProgress", "MapComputed", "MetricsComputed", "ModelNamesListed",
    "ModelOpened",
    "NetworkReady", "Progress", "SanityChecked", "ShapesTraced", "WeightsLoaded",
]


@dataclass(frozen=True)
class JobProgress:
    """A session job's progress, told with its lane: `done` of `total` steps (total None when unknown)."""

    lane: str
    done: int
    total: int | None = None


@dataclass(frozen=True)
class JobEnded:
    """A session job ended: "done", "failed" (its message went to `state.problem`) or "cancelled" (also when
    what it was for left the screen first)."""

    lane: str
    outcome: str


@dataclass(frozen=True)
class GraphBuilt:
    """A model's block graph is built (its name is `graph.name`)."""

    graph: Any


@dataclass(frozen=True)
class ShapesTraced:
    """The session traced the model's shapes at the state's input size (the state holds the trace, or the failing
    node and why); `ok`: whether the size fits."""

    ok: bool


@dataclass(frozen=True)
class ModelOpened:
    """Any CNN opened by reference: the reference it resolved to, its ModelSpec and its BlockGraph (spec and
    graph None when the reference named a zoo model)."""

    ref: str
    spec: Any
    graph: Any


@dataclass(frozen=True)
class ModelNamesListed:
    """The names torchvision can build, for the Open-model dialog's completion."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class WeightsLoaded:
    """The model has its weights: a LoadedModel (or a RetryResult after Retry download)."""

    loaded: Any


@dataclass(frozen=True)
class ClassifierReady:
    """The classifier of a loaded model is built and warmed up."""

    classifier: Any


@dataclass(frozen=True)
class ImageClassified:
    """The top-k of one image (it comes before its picture and capture)."""

    result: Any


@dataclass(frozen=True)
class ImageShown:
    """A picture to display: `shown` (a ShownImage; None when the file cannot be decoded any more) and its
    thumbnail, an (h, w, 3) uint8 array at most DISPLAY_MAX on a side."""

    shown: Any
    thumbnail: Any  # np.ndarray | None


@dataclass(frozen=True)
class FilesListed:
    """A batch's folders are listed: the files to classify, and the folders that held none."""

    files: tuple[str, ...]
    empty_folders: tuple[str, ...]


@dataclass(frozen=True)
class BatchClassified:
    """Results of the next files of a batch, in input order."""

    results: tuple


@dataclass(frozen=True)
class BatchStopped:
    """A batch (a BatchRun) stopped before its end, and what to say about it."""

    batch: Any
    text: str


@dataclass(frozen=True)
class MapComputed:
    """An attribution map (AttributionResult) of the image on screen, with the seconds it took and the
    keyword arguments it was computed with (the sanity check recomputes it with them)."""

    result: Any
    seconds: float
    map_kwargs: dict


@dataclass(frozen=True)
class ChannelVisualised:
    """Feature visualisations (Visualisations, one per channel asked for); `grid`: a branch's first channels."""

    visualisations: tuple
    grid: bool


@dataclass(frozen=True)
class ExamplesFound:
    """A channel's top dataset examples, their crops (None where a file can no longer be read), and the report
    of the folder indexed first (None when none was)."""

    report: Any
    examples: tuple
    crops: tuple


@dataclass(frozen=True)
class EvidenceComputed:
    """Every branch's share of the evidence for a class (a BranchEvidence: |gradient × activation| per branch)."""

    evidence: Any


@dataclass(frozen=True)
class BranchesDecomposed:
    """One block's branches' layer conductance to the target's logit (a BranchConductance), which adds up to
    f(x) − f(baseline)."""

    conductance: Any


@dataclass(frozen=True)
class BranchesKnockedOut:
    """Every branch of the image's network knocked out on its own (a BranchEffects)."""

    effects: Any


@dataclass(frozen=True)
class BranchesSwitched:
    """Other branches are switched off now (the state's `branches_off`): `off` is the key's (frozenset of (block,
    branch_index), mode), None for the plain network. What the previous network made has gone; the image on
    screen is being classified again."""

    off: tuple | None


@dataclass(frozen=True)
class CurvesComputed:
    """The deletion and insertion curves of a map (`curves` by kind) and the seconds they took."""

    result: Any
    curves: dict
    seconds: float


@dataclass(frozen=True)
class SanityChecked:
    """The cascade randomisation check of a map (a SanityCheck) and the seconds it took."""

    result: Any
    check: Any
    seconds: float


@dataclass(frozen=True)
class MetricsComputed:
    """Issue 27's metrics of a map (metrics.MetricScore by name: SRG, ROAD, smooth and efficient MPRT), for the
    record `key` (method, layer, target) of `result`, and the seconds they took."""

    key: tuple
    result: Any
    scores: dict
    seconds: float


@dataclass(frozen=True)
class NetworkReady:
    """The loaded model's capture network for the gradient methods is built on `device`."""

    device: str


@dataclass(frozen=True)
class BlocksTimed:
    """Every block of the model on screen timed at an input size (a BlockTimes)."""

    times: Any


@dataclass(frozen=True)
class HandoutWritten:
    """A handout PDF is written whole at `path`."""

    path: str


@dataclass(frozen=True)
class Compared:
    """Two models compared at an input size: both block graphs and their Comparison."""

    names: tuple[str, str]
    size: tuple[int, int]
    graphs: tuple
    comparison: Any
