"""Ground truth for a map: does it point at the object, and how much of its evidence lies on it.

Two measures against a mask of the object (the drawn shape of the demo task, or a box a person draws):

- the pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", 2016): the map's
  largest value lies on the object;
- the share of the map's positive attribution inside the object (Kohlbrenner et al., "Towards Best Practice
  in Explaining Neural Network Decisions with LRP", 2020, Quantus's AttributionLocalisation with
  positive attributions only).

Both read the map as it is drawn over the image: at the network input's size, positive values as evidence for
the class. Masks from files are brought to that size with the model's own resize and crop (`input_mask`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Localisation:
    """Where a map's evidence lies against the object's mask."""

    #: The map's positive maximum lies on the object (a map with no positive value points nowhere: False).
    pointing: bool
    #: The share (0…1) of the map's positive attribution inside the object; NaN when the map has none.
    inside_share: float

    def to_dict(self) -> dict[str, Any]:
        """As `attribute`'s records carry it: `{pointing, inside_share}`, a share that is not a number as null."""
        share = None if not math.isfinite(self.inside_share) else round(self.inside_share, 6)
        return {"pointing": self.pointing, "inside_share": share}


def localise(heatmap: np.ndarray, mask: np.ndarray) -> Localisation:
    """The pointing game and the inside share of `heatmap` (H, W, at the image's size) against `mask` (H, W), the
    object's pixels (anything non-zero counts as the object).

    The maximum is the map's positive maximum: for a signed map the largest evidence for the class, never the
    strongest evidence against it; a map whose values are all zero or negative points nowhere. Ties: when
    several pixels share the maximum, the map points at the object if any one of them lies on it (as Quantus's
    PointingGame). Values that are not finite count as no evidence.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    on = np.asarray(mask).astype(bool)
    if heat.ndim != 2 or heat.shape != on.shape:
        raise ValueError(f"the map is {heat.shape}, the mask {on.shape}: both must be (H, W) of one size")
    positive = np.where(np.isfinite(heat) & (heat > 0), heat, 0.0)
    top = positive.max() if positive.size else 0.0
    pointing = bool(top > 0 and (on & (positive == top)).any())
    total = float(positive.sum())
    share = float(positive[on].sum()) / total if total > 0 else math.nan
    return Localisation(pointing, share)


def box_mask(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """A (H, W) bool mask of the pixels in `box` = (x0, y0, x1, y1): columns x0 … x1 − 1, rows y0 … y1 − 1,
    clipped to the image (a box outside it, or with x1 ≤ x0 or y1 ≤ y0, is empty)."""
    h, w = shape
    x0, y0, x1, y1 = (int(v) for v in box)
    out = np.zeros((h, w), dtype=bool)
    out[max(0, y0):max(0, min(h, y1)), max(0, x0):max(0, min(w, x1))] = True
    return out


def read_mask(path: str | Path) -> np.ndarray:
    """A mask image as (H, W) bool: a pixel is the object's when its grey level is at least 128 (the demo's masks
    are black and white; a mask with transparency counts its opaque white pixels). FileNotFoundError when there is
    no such file, ValueError for one that cannot be read as an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = np.asarray(im.convert("RGBA"))
                grey = np.asarray(Image.fromarray(rgba[..., :3]).convert("L"))
                return (grey >= 128) & (rgba[..., 3] >= 128)
            return np.asarray(im.convert("L")) >= 128
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"not a mask image: {e}") from None


def input_mask(mask: np.ndarray, transforms) -> np.ndarray:
    """`mask` (the image's size) as the network input sees the image: the preprocessing's resize of the shorter
    side (nearest neighbour, so that it stays a mask) and its centre crop. `transforms` has `resize_size` and
    `crop_size`, as the models' preprocessing (torchvision's ImageClassification) has."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    m = torch.from_numpy(np.asarray(mask).astype(np.uint8))[None]
    m = F.resize(m, list(transforms.resize_size), interpolation=InterpolationMode.NEAREST)
    m = F.center_crop(m, list(transforms.crop_size))
    return m[0].numpy().astype(bool)
