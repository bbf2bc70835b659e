"""What classifying one image gives: its top-k classes and timings, or why it could not be classified.

Plain data for the window and the command line's table; and the one record every CSV and JSON of
classifications is written from, the command line's and the window's Export alike (`classification_record`,
`CSV_COLUMNS` and `csv_rows`): per image its path, its top-k (rank, class index, label, probability), error,
notice, size and timings, and the provenance of the result (model, weights, device, input size,
preprocessing). No torch at import.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from explorer.core.classify.images import LoadedImage
from explorer.core.classify.provenance import PROVENANCE_COLUMNS, Provenance, provenance_cells

#: The label of every result whose JPEG was decoded at a reduced scale (`fast_decode`).
FAST_DECODE_NOTICE = "fast decode: within ~0.5 grey levels"
#: Said by every result classified on a GPU: nvjpeg and the tensor resize round differently from PIL.
GPU_INPUT_NOTICE = "GPU decode and resize: within 1 grey level of the PIL reference on average, up to 5 at sharp colour edges"


class NotAClassifierError(ValueError):
    """The model outputs a feature map, not a vector of class scores: there is no top-k to give."""


def class_scores(logits):
    """`logits` if they are (N, classes); NotAClassifierError naming the shape otherwise."""
    if logits.dim() != 2:
        shape = "×".join(map(str, logits.shape[1:]))
        raise NotAClassifierError(f"the model's output is a {shape} map, not class scores")
    return logits


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    prob: float


@dataclass
class ClassificationResult:
    """The outcome for one input: its top-k classes, or the reason it could not be classified."""

    source: str
    top: list[Prediction] = field(default_factory=list)
    #: decode (read + decode + RGB), preprocess (resize, crop, normalise), forward (the batch's
    #: forward pass shared equally among its images), total — milliseconds.
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    device: str = "cpu"
    image_size: tuple[int, int] | None = None  # upright (width, height) of the original
    notice: str | None = None  # e.g. a fallback from CUDA to the CPU while this batch ran

    @property
    def ok(self) -> bool:
        return self.error is None

    def add_notice(self, text: str) -> None:
        """Add `text` to `notice` (several can apply: a fast decode and a fallback to the CPU)."""
        if self.notice is None:
            self.notice = text
        elif text not in self.notice.split("; "):
            self.notice = f"{self.notice}; {text}"

    def fill(self, probs: Sequence[float], indices: Sequence[int], categories: Sequence[str]) -> None:
        """Set the top-k from one row of `topk` (probabilities and class indices, best first)."""
        self.top = [Prediction(int(i), category(categories, int(i)), float(v)) for v, i in zip(probs, indices)]

    def to_dict(self, provenance: Provenance | None = None) -> dict[str, Any]:
        """The result's record (see `classification_record`)."""
        return classification_record(self, provenance)


#: The timings every record has, in milliseconds (a missing one is null, an empty CSV cell).
TIMINGS = ("decode", "preprocess", "forward", "total")
#: The keys of a JSON record, in order: the same for every result, present or null.
RECORD_KEYS = ("path", "top", "error", "notice", "image_size", "timings_ms", "provenance")
#: A CSV row per class of the top-k (one row, without a class, for a result with an error).
CSV_COLUMNS = ("path", "rank", "index", "label", "prob", "error", "notice", "image_width", "image_height",
               *(f"{t}_ms" for t in TIMINGS), *PROVENANCE_COLUMNS)


def classification_record(r: ClassificationResult, provenance: Provenance | None) -> dict[str, Any]:
    """The one record of a result, for JSON (a non-finite probability, from NaN logits, is null) and, through
    `csv_rows`, for CSV; `provenance`: what made it (None: not known, null)."""
    return {
        "path": r.source,
        "top": [{"rank": k, "index": p.index, "label": p.label, "prob": _finite_or_none(p.prob)}
                for k, p in enumerate(r.top, 1)],
        "error": r.error,
        "notice": r.notice,
        "image_size": list(r.image_size) if r.image_size is not None else None,
        "timings_ms": {k: round(r.timings_ms[k], 3) if k in r.timings_ms else None for k in TIMINGS},
        "provenance": provenance.to_dict(r.device) if provenance is not None else None,
    }


def csv_rows(record: dict[str, Any]) -> list[list[Any]]:
    """The CSV_COLUMNS rows of a `classification_record`: one per class, or one with the error."""
    w, h = record["image_size"] or ("", "")
    t = record["timings_ms"]
    tail = [record["error"] or "", record["notice"] or "", w, h,
            *("" if t[k] is None else f"{t[k]:.3f}" for k in TIMINGS), *provenance_cells(record["provenance"])]
    top = record["top"] or [{"rank": "", "index": "", "label": "", "prob": None}]
    return [[record["path"], p["rank"], p["index"], p["label"], "" if p["prob"] is None else f"{p['prob']:.6f}", *tail]
            for p in top]


@dataclass
class CapturedClassification:
    """One image classified by a forward that also kept every branch's output (`classify_captured`).

    Everything but `result` is None when the image could not be read (`result.error` says why).
    """

    result: ClassificationResult
    #: The `Capture` of that forward: logits and every probed tensor, on the classifier's device.
    capture: Any = None
    #: The network input, (1, 3, crop, crop) on the device, as the forward received it.
    x: Any = None
    #: The network input de-normalised: (crop, crop, 3) uint8 numpy, the picture under overlays.
    rgb: Any = None
    #: The upright RGB picture as decoded, a PIL image (a CUDA decode is shrunk to `display_max`
    #: on the device before it crosses to the CPU).
    picture: Any = None


def input_label(src, i: int) -> str:
    """How a result names its input: the path, the loaded image's source, or its place in the list."""
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    if isinstance(src, LoadedImage):
        return src.source
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<bytes {i + 1}>"
    return f"<image {i + 1}>"


def category(categories: Sequence[str], index: int) -> str:
    return categories[index] if 0 <= index < len(categories) else f"class {index}"


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None



def ms_since(t0: float) -> float:
    """Milliseconds since `t0` (a `time.perf_counter()` reading)."""
    return (time.perf_counter() - t0) * 1e3
