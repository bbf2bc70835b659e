"""The demo task in a few constants, shared by the generator, the training and the zoo (no numpy, no torch)."""

from __future__ import annotations

from pathlib import Path

#: The classes, in the order of the network's outputs.
SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "ring")
#: Images are IMAGE_SIZE × IMAGE_SIZE RGB.
IMAGE_SIZE = 64
#: The normalisation the network was trained with: the Inception convention, pixels scaled to [-1, 1].
MEAN = STD = (0.5, 0.5, 0.5)
#: The demo model's trained weights, shipped in this folder (package data): `inception-explorer train-demo` with its
#: default settings makes them again.
SHIPPED_WEIGHTS = Path(__file__).with_name("shapes_inception.safetensors")
