"""The window's drawn samples: a few images of the demo task, drawn with a fixed seed, each with its mask.

Beside the sample photos, the classify panel offers these: the demo model classifies them (they come from a
seed its training never drew), and their masks are the ground truth the Attributions tab measures maps against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explorer.core.demo.drawing import DrawnImage, draw_images
from explorer.core.demo.task import SHAPE_CLASSES

#: The seed of the drawn samples: training draws from seed 0 (by default) and measures on EVAL_SEED; neither is it.
SAMPLE_SEED = 24
#: The classes offered, one image each.
SAMPLE_CLASSES = ("triangle", "star", "ring")


@dataclass(frozen=True)
class DrawnSample:
    """One drawn sample: its class's name, a title for people, and the image with its mask."""

    name: str  #: the class's name: "star"
    title: str  #: "A drawn star (demo task, seed 24)"
    drawn: DrawnImage

    @property
    def image(self) -> np.ndarray:
        """(H, W, 3) uint8."""
        return self.drawn.image

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: the shape's pixels."""
        return self.drawn.mask

    @property
    def label(self) -> int:
        """Its class's index in SHAPE_CLASSES (the demo model's output)."""
        return self.drawn.label


def drawn_samples(classes: tuple[str, ...] = SAMPLE_CLASSES, seed: int = SAMPLE_SEED) -> list[DrawnSample]:
    """One image of each of `classes`, in that order: the image of that class among the first six of the set
    drawn with `seed` (they hold each class once)."""
    first = draw_images(len(SHAPE_CLASSES), seed)
    out = []
    for name in classes:
        drawn = first[SHAPE_CLASSES.index(name)]
        out.append(DrawnSample(name, f"A drawn {name} (demo task, seed {seed})", drawn))
    return out
