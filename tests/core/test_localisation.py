"""The pointing game and the inside share against hand-computed maps and masks, and against Quantus's
PointingGame and AttributionLocalisation (a test-only dependency, in the dev extras)."""

import math

import numpy as np
import pytest
from PIL import Image

from explorer.core.attribution.localisation import Localisation, box_mask, input_mask, localise, read_mask


def test_box_mask_is_inclusive_exclusive_and_clipped():
    m = box_mask((4, 5), (1, 2, 3, 4))  # columns 1, 2; rows 2, 3
    assert m.shape == (4, 5) and m.dtype == bool
    assert sorted(zip(*np.nonzero(m))) == [(2, 1), (2, 2), (3, 1), (3, 2)]
    assert box_mask((4, 5), (-3, -3, 2, 1)).sum() == 2  # clipped at the top-left: row 0, columns 0, 1
    assert box_mask((4, 5), (3, 2, 99, 99)).sum() == 2 * 2  # clipped at the bottom-right
    assert not box_mask((4, 5), (6, 0, 9, 4)).any()  # outside
    assert not box_mask((4, 5), (3, 1, 3, 4)).any() and not box_mask((4, 5), (3, 3, 1, 1)).any()  # empty


def test_pointing_and_share_by_hand():
    heat = np.array([[0.0, 1.0, 2.0],
                     [0.0, 5.0, 1.0],
                     [0.0, 0.0, 1.0]])
    mask = box_mask((3, 3), (1, 1, 3, 3))  # the bottom-right 2×2: 5 + 1 + 0 + 1 = 7 of 10
    assert localise(heat, mask) == Localisation(True, 0.7)
    assert localise(heat, ~mask) == Localisation(False, pytest.approx(0.3))


def test_a_signed_map_points_with_its_positive_maximum_and_shares_only_its_positive_part():
    heat = np.array([[-9.0, 2.0],
                     [1.0, -1.0]])  # the strongest value is evidence against the class
    mask = np.array([[True, False], [True, True]])
    loc = localise(heat, mask)
    assert not loc.pointing  # the maximum, 2, is off the object; -9 on it does not count
    assert loc.inside_share == pytest.approx(1 / 3)  # positive part: 2 outside, 1 inside


def test_ties_count_when_any_maximal_pixel_is_on_the_object():
    heat = np.zeros((3, 3))
    heat[0, 0] = heat[2, 2] = 4.0
    assert localise(heat, box_mask((3, 3), (2, 2, 3, 3))).pointing
    assert localise(heat, box_mask((3, 3), (0, 0, 1, 1))).pointing
    assert not localise(heat, box_mask((3, 3), (1, 1, 2, 2))).pointing


def test_a_map_without_positive_evidence_points_nowhere():
    mask = box_mask((4, 4), (0, 0, 4, 4))  # even a mask covering everything
    for heat in (np.zeros((4, 4)), -np.ones((4, 4))):
        loc = localise(heat, mask)
        assert not loc.pointing and math.isnan(loc.inside_share)
        assert loc.to_dict() == {"pointing": False, "inside_share": None}


def test_values_that_are_not_finite_are_no_evidence():
    heat = np.array([[np.nan, np.inf], [1.0, 3.0]])
    loc = localise(heat, np.array([[True, True], [False, True]]))
    assert loc.pointing and loc.inside_share == pytest.approx(0.75)


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="map"):
        localise(np.zeros((4, 4)), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="map"):
        localise(np.zeros((2, 4, 4)), np.zeros((2, 4, 4), bool))


def test_agrees_with_quantus():
    """Quantus 0.6's PointingGame and AttributionLocalisation (positive attributions only, no abs, no
    normalisation) on signed random maps with objects of random boxes, drawn shapes, ties and empty maps. Quantus
    divides by the total plus 1e-9, hence the tolerance."""
    quantus = pytest.importorskip("quantus")
    from explorer.core.demo.drawing import draw_images

    rng = np.random.default_rng(0)
    maps, masks = [], []
    for d in draw_images(12, 77):
        maps.append(rng.normal(size=(64, 64)))
        masks.append(d.mask)
    for _ in range(12):
        heat = np.round(rng.normal(size=(32, 32)), 1)  # rounded: maxima tie now and then
        y0, x0 = rng.integers(0, 24, size=2)
        maps.append(heat)
        masks.append(box_mask((32, 32), (x0, y0, x0 + rng.integers(1, 9), y0 + rng.integers(1, 9))))
    ties = np.zeros((32, 32))
    ties[3, 3] = ties[20, 20] = 1.0
    maps.append(ties)
    masks.append(box_mask((32, 32), (18, 18, 22, 22)))
    ours = [localise(h, m) for h, m in zip(maps, masks)]
    assert {o.pointing for o in ours} == {True, False}
    for size in (64, 32):
        idx = [i for i, h in enumerate(maps) if h.shape == (size, size)]
        a = np.stack([maps[i] for i in idx])[:, None]
        s = np.stack([masks[i] for i in idx])[:, None]
        x, y = np.zeros((len(idx), 3, size, size)), np.zeros(len(idx), dtype=int)
        pointing = quantus.PointingGame(abs=False, normalise=False, disable_warnings=True)(
            model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s)
        inside = quantus.AttributionLocalisation(abs=False, normalise=False, positive_attributions=True,
                                                 disable_warnings=True)(
            model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s)
        for k, i in enumerate(idx):
            assert ours[i].pointing == bool(pointing[k]), i
            assert ours[i].inside_share == pytest.approx(float(inside[k]), abs=1e-6), i


def test_read_mask_and_bring_it_to_the_network_input(tmp_path):
    """A mask file read as bool, and resized and cropped as the model's preprocessing does the image: the
    object's pixels in the network input are where the mask says (a white square on black, at 2× the input)."""
    from torchvision.transforms import functional as F

    from explorer.core.model.zoo import imagenet_preprocessing

    big = np.zeros((300, 200), dtype=np.uint8)
    big[100:160, 40:120] = 255
    Image.fromarray(big).save(tmp_path / "m.png")
    mask = read_mask(tmp_path / "m.png")
    assert mask.dtype == bool and mask.sum() == 60 * 80
    rgba = np.zeros((300, 200, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[100:160, 40:120, 3] = 255  # white everywhere, opaque only on the object
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "a.png"), mask)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a mask"):
        read_mask(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError):
        read_mask(tmp_path / "gone.png")
    tf = imagenet_preprocessing(100).transform()  # resize the short side to 114, crop 100
    seen = input_mask(mask, tf)
    assert seen.shape == (100, 100)
    # The image itself through the same resize (bilinear) and crop: its white square is where the mask is,
    # to within the blurred edge.
    image = np.asarray(F.center_crop(F.resize(Image.fromarray(big), list(tf.resize_size)), list(tf.crop_size)))
    white = image >= 128
    assert (seen & white).sum() / (seen | white).sum() > 0.9

    def bounds(m):
        ys, xs = np.nonzero(m)
        return np.array([ys.min(), ys.max(), xs.min(), xs.max()])

    assert np.abs(bounds(seen) - bounds(white)).max() <= 1
