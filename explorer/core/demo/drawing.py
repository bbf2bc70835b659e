"""Drawn shapes: 64×64 RGB images, each with exactly one target shape and its mask (the pixels that decide).

Every image is drawn from a numpy Generator seeded by (seed, index), so the same seed gives the same images
in any order and any process. An image is:

- a background: a linear blend of two random colours along a random direction, plus uniform noise of
  ±20 levels on every channel of every pixel;
- the target, one of `SHAPE_CLASSES`: bounding-circle radius 10–22 px, at a random position with the whole
  bounding circle at least a pixel inside the image, a random rotation, filled with one colour whose mean
  absolute difference from the background under it is at least 60 levels;
- 0–2 distractors: ellipses with semi-axes of 2–6 px in random colours, none touching the target (not even
  diagonally: they stay off the target's mask dilated by a pixel).

Shapes are drawn by point sampling: a pixel is the shape's when its centre is inside the shape's outline.
The mask is that same set of pixels, so it is exactly the shape as drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explorer.core.demo.task import IMAGE_SIZE, SHAPE_CLASSES

RADIUS_RANGE = (10.0, 22.0)
NOISE_LEVELS = 20
MIN_CONTRAST = 60.0
DISTRACTORS_MAX = 2
SEMI_AXIS_RANGE = (2.0, 6.0)
#: Star: the inner vertices' radius as a fraction of the outer. Cross: the arm's width as a fraction of the
#: radius. Ring: the hole's radius as a fraction of the outer.
STAR_INNER, CROSS_ARM, RING_INNER = 0.42, 0.66, 0.5
#: Tries before a colour or a distractor's place is settled otherwise (a colour) or given up (a distractor).
_TRIES = 50


@dataclass(frozen=True)
class Distractor:
    """A small ellipse drawn beside the target."""

    centre: tuple[float, float]  # (x, y) in pixels, (0, 0) the image's top-left corner
    semi_axes: tuple[float, float]
    angle: float  # radians
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class DrawnImage:
    """One image of the demo task, with what was drawn on it."""

    image: np.ndarray  # (H, W, 3) uint8
    #: The target's pixels (H, W) bool: the ground truth for every map.
    mask: np.ndarray
    label: int  # index into SHAPE_CLASSES
    centre: tuple[float, float]
    radius: float  # of the target's bounding circle
    angle: float  # the target's rotation, radians
    colour: tuple[int, int, int]
    #: The image before any shape was drawn on it (the blend and its noise).
    background: np.ndarray
    distractors: tuple[Distractor, ...] = ()

    @property
    def class_name(self) -> str:
        return SHAPE_CLASSES[self.label]


def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of every pixel's centre, each (size, size)."""
    c = np.arange(size, dtype=np.float64) + 0.5
    return np.meshgrid(c, c)


def _inside_polygon(x: np.ndarray, y: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    """Which points (x, y) lie inside the polygon with vertices (vx, vy): the even-odd rule."""
    inside = np.zeros(x.shape, dtype=bool)
    j = len(vx) - 1
    for i in range(len(vx)):
        crosses = (vy[i] > y) != (vy[j] > y)
        with np.errstate(divide="ignore", invalid="ignore"):  # a horizontal edge never crosses
            x_cross = vx[i] + (y - vy[i]) * (vx[j] - vx[i]) / (vy[j] - vy[i])
        inside ^= crosses & (x < x_cross)
        j = i
    return inside


def shape_outline(label: int, radius: float) -> np.ndarray | None:
    """The vertices (n, 2) of a polygonal class at the origin, unrotated, every vertex within `radius`;
    None for the round classes (circle, ring)."""
    name = SHAPE_CLASSES[label]
    if name == "square":
        a = np.pi / 4 + np.arange(4) * np.pi / 2
        return radius * np.stack([np.cos(a), np.sin(a)], 1)
    if name == "triangle":
        a = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return radius * np.stack([np.cos(a), np.sin(a)], 1)
    if name == "star":
        a = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, radius, STAR_INNER * radius)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)
    if name == "cross":
        h = CROSS_ARM * radius / 2  # half the arm's width
        arm = np.sqrt(radius ** 2 - h ** 2)  # so that the arm's corners lie on the bounding circle
        quarter = np.array([[arm, -h], [arm, h], [h, h]])
        turns = [quarter @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
                 for t in np.arange(4) * np.pi / 2]
        return np.concatenate(turns)
    return None


def shape_mask(label: int, centre: tuple[float, float], radius: float, angle: float,
               size: int = IMAGE_SIZE) -> np.ndarray:
    """The pixels (size, size) bool whose centres lie inside the shape: class `label`, bounding circle of
    `radius` around `centre` (x, y), rotated by `angle` radians."""
    x, y = _pixel_centres(size)
    dx, dy = x - centre[0], y - centre[1]
    name = SHAPE_CLASSES[label]
    if name in ("circle", "ring"):
        d2 = dx * dx + dy * dy
        disc = d2 <= radius * radius
        return disc & (d2 > (RING_INNER * radius) ** 2) if name == "ring" else disc
    c, s = np.cos(angle), np.sin(angle)
    outline = shape_outline(label, radius)
    vx = centre[0] + c * outline[:, 0] - s * outline[:, 1]
    vy = centre[1] + s * outline[:, 0] + c * outline[:, 1]
    return _inside_polygon(x, y, vx, vy)


def ellipse_mask(centre: tuple[float, float], semi_axes: tuple[float, float], angle: float,
                 size: int = IMAGE_SIZE) -> np.ndarray:
    """The pixels whose centres lie inside an ellipse."""
    x, y = _pixel_centres(size)
    dx, dy = x - centre[0], y - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (u / semi_axes[0]) ** 2 + (v / semi_axes[1]) ** 2 <= 1.0


def dilate(mask: np.ndarray) -> np.ndarray:
    """`mask` grown by one pixel in all eight directions."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def draw_background(rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """Two random colours blended along a random direction, plus uniform noise of ±NOISE_LEVELS on every channel:
    (size, size, 3) uint8."""
    ends = rng.integers(0, 256, size=(2, 3)).astype(np.float64)
    phi = rng.uniform(0.0, 2 * np.pi)
    x, y = _pixel_centres(size)
    along = x * np.cos(phi) + y * np.sin(phi)
    t = (along - along.min()) / (along.max() - along.min())
    blend = ends[0] + t[..., None] * (ends[1] - ends[0])
    noise = rng.integers(-NOISE_LEVELS, NOISE_LEVELS + 1, size=(size, size, 3))
    return np.clip(np.rint(blend) + noise, 0, 255).astype(np.uint8)


def contrast(colour, background: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference, in levels, between `colour` and the background's pixels under `mask`."""
    under = background[mask].astype(np.float64)
    return float(np.abs(under - np.asarray(colour, dtype=np.float64)).mean())


def _target_colour(rng: np.random.Generator, background: np.ndarray, mask: np.ndarray) -> tuple[int, int, int]:
    """A random colour at least MIN_CONTRAST from the background under `mask`. Should every try fall short,
    each channel's extreme farthest from the background's mean there: that is at least 63.75 levels away."""
    for _ in range(_TRIES):
        colour = rng.integers(0, 256, size=3)
        if contrast(colour, background, mask) >= MIN_CONTRAST:
            return tuple(int(c) for c in colour)
    mean = background[mask].reshape(-1, 3).mean(0)
    return tuple(0 if m >= 127.5 else 255 for m in mean)


def _distractors(rng: np.random.Generator, keep_off: np.ndarray, size: int) -> list[tuple[Distractor, np.ndarray]]:
    """0–DISTRACTORS_MAX ellipses, each with its mask, none touching `keep_off`; a distractor that finds
    no free place in _TRIES tries is left out."""
    placed = []
    for _ in range(int(rng.integers(0, DISTRACTORS_MAX + 1))):
        axes = tuple(float(a) for a in rng.uniform(*SEMI_AXIS_RANGE, size=2))
        angle = float(rng.uniform(0.0, np.pi))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        for _ in range(_TRIES):
            centre = tuple(float(c) for c in rng.uniform(0.0, size, size=2))
            mask = ellipse_mask(centre, axes, angle, size)
            if mask.any() and not (mask & keep_off).any():
                placed.append((Distractor(centre, axes, angle, colour), mask))
                break
    return placed


def draw_image(rng: np.random.Generator, label: int, size: int = IMAGE_SIZE) -> DrawnImage:
    """One image with a target of class `label`, drawn from `rng`."""
    radius = float(rng.uniform(*RADIUS_RANGE))
    angle = float(rng.uniform(0.0, 2 * np.pi))
    # The bounding circle stays a pixel clear of the edges: the shape is whole, with a border around it.
    centre = tuple(float(c) for c in rng.uniform(radius + 1, size - radius - 1, size=2))
    background = draw_background(rng, size)
    mask = shape_mask(label, centre, radius, angle, size)
    colour = _target_colour(rng, background, mask)
    image = background.copy()
    image[mask] = colour
    distractors = _distractors(rng, dilate(mask), size)
    for d, d_mask in distractors:
        image[d_mask] = d.colour
    return DrawnImage(image=image, mask=mask, label=label, centre=centre, radius=radius, angle=angle,
                      colour=colour, background=background, distractors=tuple(d for d, _ in distractors))


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image `index` of the set drawn with `seed`."""
    return np.random.default_rng([seed, index])


def draw_images(count: int, seed: int, *, start: int = 0) -> list[DrawnImage]:
    """Images `start` … `start + count - 1` of the set drawn with `seed`; image i is of class i mod 6, so that
    any six consecutive images hold every class once."""
    n = len(SHAPE_CLASSES)
    return [draw_image(image_rng(seed, i), i % n) for i in range(start, start + count)]


def draw_batch(count: int, seed: int, *, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images (count, H, W, 3) uint8, labels (count,) int64) of `draw_images`, for training."""
    drawn = draw_images(count, seed, start=start)
    return np.stack([d.image for d in drawn]), np.array([d.label for d in drawn], dtype=np.int64)
