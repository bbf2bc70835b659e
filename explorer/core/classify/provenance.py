"""What made a result: the model reference, the weights (their file and its sha256, or "random"), the input
size and the preprocessing. Every record the tool writes of a classification or an attribution carries it,
with the device the result was computed on (`Provenance.to_dict(device)`).

The weights' sha256 is computed when a record first asks for it (reading the file once per process and file
version), not when the model loads: a window that never exports never reads its weights twice.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

#: The weights of a record made with seeded random weights.
RANDOM = "random"
#: Its CSV columns, in order (`provenance_cells`).
PROVENANCE_COLUMNS = ("model", "weights", "weights_sha256", "device", "input_size", "resize", "crop",
                      "interpolation", "mean", "std")


@lru_cache(maxsize=32)
def _sha256(path: str, _size: int, _mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str | None:
    """The sha256 (hex) of a file's bytes, computed once per version of the file; None when it cannot be read."""
    try:
        st = os.stat(path)
        return _sha256(os.path.abspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return None


@dataclass(frozen=True)
class Provenance:
    """How a classifier turns an image into its input, and which network and weights it runs (see module)."""

    model: str  #: the model reference, as typed or opened: a zoo name, torchvision:NAME, a file
    weights: str  #: "random", or the file the weights were read from (or a description where none is known)
    weights_file: str | None = None  #: that file, when there is one to hash
    input_size: tuple[int, int] = (224, 224)  #: H, W of the network input
    resize: int = 256  #: the short side is resized to this
    crop: int = 224  #: then the centre is cropped to this square
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @cached_property
    def weights_sha256(self) -> str | None:
        """The weight file's sha256 (None: random weights, or no file to read)."""
        return file_sha256(self.weights_file) if self.weights_file else None

    @property
    def is_random(self) -> bool:
        return self.weights == RANDOM

    def to_dict(self, device: str) -> dict[str, Any]:
        """The provenance block of a JSON record (`device`: where the result was computed)."""
        weights: Any = RANDOM if self.is_random else {"file": self.weights, "sha256": self.weights_sha256}
        return {
            "model": self.model,
            "weights": weights,
            "device": device,
            "input_size": list(self.input_size),
            "preprocessing": {"resize": self.resize, "crop": self.crop, "interpolation": self.interpolation,
                              "mean": list(self.mean), "std": list(self.std)},
        }


def provenance_cells(block: dict[str, Any] | None) -> list[Any]:
    """A record's provenance block (`Provenance.to_dict`) as the PROVENANCE_COLUMNS cells of a CSV row
    (random weights: 'random' and no hash; no block: empty cells)."""
    if block is None:
        return [""] * len(PROVENANCE_COLUMNS)
    weights = block["weights"]
    file, sha = (weights, "") if isinstance(weights, str) else (weights["file"], weights["sha256"] or "")
    pre = block["preprocessing"]
    h, w = block["input_size"]
    return [block["model"], file, sha, block["device"], f"{h}x{w}", pre["resize"], pre["crop"], pre["interpolation"],
            " ".join(f"{v:g}" for v in pre["mean"]), " ".join(f"{v:g}" for v in pre["std"])]


def provenance_of(reference: str, loaded, transforms=None) -> Provenance:
    """The Provenance of results made with `loaded` (a LoadedModel) opened as `reference`; `transforms`: the
    preprocessing the classifier runs (default: the model's own, `loaded.transforms()`)."""
    tf = transforms if transforms is not None else loaded.transforms()
    state = loaded.weights
    if state.is_random:
        weights, file = RANDOM, None
    elif state.path:
        weights = file = state.path
    elif os.path.isfile(reference):  # TorchScript / torch.export: the weights came with the model's file
        weights = file = os.path.abspath(reference)
    else:
        weights, file = state.source, None
    crop, resize = int(tf.crop_size[0]), int(tf.resize_size[0])
    interpolation = getattr(tf.interpolation, "value", str(tf.interpolation))
    return Provenance(model=reference, weights=weights, weights_file=file, input_size=(crop, crop), resize=resize,
                      crop=crop, interpolation=str(interpolation), mean=tuple(float(v) for v in tf.mean),
                      std=tuple(float(v) for v in tf.std))
