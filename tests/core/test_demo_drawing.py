"""The drawn-shapes generator: every rule of the demo task checked on the images themselves, against
geometry computed here (areas from the formulas, a dilation of our own, contrast from the pixels)."""

import math

import numpy as np
import pytest

from explorer.core.demo.drawing import draw_batch, draw_images, draw_image, image_rng
from explorer.core.demo.task import IMAGE_SIZE, SHAPE_CLASSES

_SEED = 1234


@pytest.fixture(scope="module")
def drawn():
    return draw_images(240, _SEED)  # 40 of each class


def _area(name: str, r: float) -> float:
    """The shape's area from its definition: bounding-circle radius r."""
    if name == "circle":
        return math.pi * r * r
    if name == "ring":  # an annulus with the inner radius half the outer
        return math.pi * (r * r - (r / 2) ** 2)
    if name == "square":  # its half-diagonal is r
        return 2 * r * r
    if name == "triangle":  # equilateral, circumradius r
        return 3 * math.sqrt(3) / 4 * r * r
    if name == "star":  # ten triangles (centre, outer point, inner vertex 36° apart at 0.42 r)
        return 10 * 0.5 * r * (0.42 * r) * math.sin(math.radians(36))
    if name == "cross":  # two bars of width w crossing, their corners on the bounding circle
        w = 0.66 * r
        length = 2 * math.sqrt(r * r - (w / 2) ** 2)
        return 2 * length * w - w * w
    raise AssertionError(name)


def test_classes_in_the_issue_s_order():
    assert SHAPE_CLASSES == ("circle", "square", "triangle", "star", "cross", "ring")
    assert [d.class_name for d in draw_images(12, _SEED)] == list(SHAPE_CLASSES) * 2


def test_images_and_masks_have_the_task_s_form(drawn):
    for d in drawn:
        assert d.image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and d.image.dtype == np.uint8
        assert d.mask.shape == (IMAGE_SIZE, IMAGE_SIZE) and d.mask.dtype == bool
        assert 10 <= d.radius <= 22


def test_mask_area_matches_the_shape_s_area(drawn):
    errors = {name: [] for name in SHAPE_CLASSES}
    for d in drawn:
        expected = _area(d.class_name, d.radius)
        errors[d.class_name].append((d.mask.sum() - expected) / expected)
    for name, errs in errors.items():
        errs = np.array(errs)
        # Point sampling: each image is off by a little along the outline, the errors average out.
        assert np.abs(errs).max() < 0.08, (name, errs)
        assert abs(errs.mean()) < 0.015, (name, errs.mean())


def test_mask_is_the_shape_as_drawn(drawn):
    """Every mask pixel carries the target's one colour; outside the mask and the distractors, the image is
    the background."""
    for d in drawn:
        assert (d.image[d.mask] == np.array(d.colour, dtype=np.uint8)).all()
        others = ~d.mask
        for dis in d.distractors:
            others &= ~(d.image == np.array(dis.colour, dtype=np.uint8)).all(-1)
        assert (d.image[others] == d.background[others]).all()


def test_mask_is_one_connected_piece_except_the_ring_s_hole(drawn):
    for d in drawn[:60]:
        assert _components(d.mask, diagonal=True) == 1, d.class_name
        holes = _components(~d.mask)  # the outside, plus the ring's hole
        assert holes == (2 if d.class_name == "ring" else 1), d.class_name


def _components(mask: np.ndarray, diagonal: bool = False) -> int:
    """Connected components by flood fill: 4-connected, or 8-connected with `diagonal` (a star's tip may hang
    on by a corner)."""
    steps = [(1, 0), (-1, 0), (0, 1), (0, -1)] + ([(1, 1), (1, -1), (-1, 1), (-1, -1)] if diagonal else [])
    seen = np.zeros_like(mask)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        count += 1
        todo = [start]
        seen[start] = True
        while todo:
            y, x = todo.pop()
            for ny, nx in ((y + sy, x + sx) for sy, sx in steps):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    todo.append((ny, nx))
    return count


def test_target_is_fully_inside(drawn):
    for d in drawn:
        x, y = d.centre
        assert d.radius <= x <= IMAGE_SIZE - d.radius and d.radius <= y <= IMAGE_SIZE - d.radius
        assert not (d.mask[0].any() or d.mask[-1].any() or d.mask[:, 0].any() or d.mask[:, -1].any())
        ys, xs = np.nonzero(d.mask)  # pixel centres within the bounding circle
        assert (np.hypot(xs + 0.5 - x, ys + 0.5 - y) <= d.radius + 1e-9).all()


def test_colour_contrast_with_the_background_under_the_target(drawn):
    for d in drawn:
        under = d.background[d.mask].astype(float)
        assert np.abs(under - np.array(d.colour, dtype=float)).mean() >= 60


def test_background_is_a_blend_plus_noise_of_twenty_levels(drawn):
    """A plane fitted to each channel of the background (where nothing was clipped at 0 or 255) leaves
    residuals within the noise (±20, plus the rounding and the fit's own error), spread over that range."""
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    design = np.stack([np.ones(xx.size), xx.ravel(), yy.ravel()], 1)
    spreads = []
    for d in drawn[:60]:
        for c in range(3):
            values = d.background[..., c].ravel().astype(float)
            if values.min() == 0 or values.max() == 255:
                continue
            coef, *_ = np.linalg.lstsq(design, values, rcond=None)
            residual = values - design @ coef
            assert np.abs(residual).max() <= 22
            spreads.append(residual.std())
    assert len(spreads) > 60
    # uniform on the integers −20…20: standard deviation √((41² − 1) / 12) ≈ 11.8
    assert 10.5 < np.median(spreads) < 13


def test_distractors_are_small_ellipses_that_never_touch_the_target(drawn):
    counts = [len(d.distractors) for d in drawn]
    assert set(counts) == {0, 1, 2}
    for d in drawn:
        grown = _dilated(d.mask)
        for dis in d.distractors:
            assert all(2 <= a <= 6 for a in dis.semi_axes)
            painted = (d.image == np.array(dis.colour, dtype=np.uint8)).all(-1) & ~d.mask
            region = _ellipse(dis.centre, dis.semi_axes, dis.angle)
            assert region.any() and (painted | ~region).all() or _covered(d, dis, region)
            assert not (region & grown).any()


def _covered(d, dis, region) -> bool:
    """A distractor painted over in part by a later one: its uncovered pixels still carry its colour."""
    later = d.distractors[d.distractors.index(dis) + 1:]
    rest = region.copy()
    for other in later:
        rest &= ~_ellipse(other.centre, other.semi_axes, other.angle)
    return (d.image[rest] == np.array(dis.colour, dtype=np.uint8)).all()


def _dilated(mask: np.ndarray) -> np.ndarray:
    """Our own 8-neighbour dilation, by looping over the mask's pixels."""
    out = mask.copy()
    for y, x in zip(*np.nonzero(mask)):
        out[max(0, y - 1):y + 2, max(0, x - 1):x + 2] = True
    return out


def _ellipse(centre, axes, angle) -> np.ndarray:
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] + 0.5
    dx, dy = xx - centre[0], yy - centre[1]
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    return (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1


def test_rotation_and_position_vary(drawn):
    stars = [d for d in drawn if d.class_name == "star"]
    assert len({round(d.angle, 3) for d in stars}) == len(stars)
    xs = [d.centre[0] for d in drawn]
    assert min(xs) < 20 and max(xs) > 44


def test_same_seed_same_images_in_any_order():
    a = draw_images(12, 99)
    b = draw_images(6, 99, start=6)
    assert all((x.image == y.image).all() and (x.mask == y.mask).all() for x, y in zip(a[6:], b))
    c = draw_image(image_rng(99, 3), 3)
    assert (c.image == a[3].image).all()
    images, labels = draw_batch(12, 99)
    assert (images == np.stack([d.image for d in a])).all() and labels.tolist() == [d.label for d in a]
    other, _ = draw_batch(12, 100)
    assert not (other == images).all(axis=(1, 2, 3)).any()
