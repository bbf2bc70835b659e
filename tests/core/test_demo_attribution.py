"""Attribution, faithfulness, the sanity check and feature visualisation on a network that has learned something:
the demo model (shapes_inception, its shipped weights) on drawn shapes whose deciding pixels are known, images of a
seed training never saw (training draws seed 0, its accuracy is measured on EVAL_SEED; test_demo_weights uses 2424,
the thresholds below were chosen on seed 4242 before these images were drawn).

What is measured, per image, for each map: Integrated Gradients, Grad-CAM at the last block and Grad-CAM at a
branch of it, and, as the best any map could do, the object's own mask used as a map:
- the pointing game and the share of positive attribution on the object (localisation.py);
- deletion and insertion areas against RANDOM_ORDERS random orders (faithfulness.py), a ✓ only beyond all of them.

Integrated Gradients starts from the mean colour ("zero": mid-grey, the centre of the demo's [-1, 1] inputs), as the
drawn shapes and backgrounds take every colour, black included. Deletion replaces pixels with the image blurred (the
window's and the command line's default): a flat colour leaves the deleted shape's silhouette, which on this task is
the evidence itself (shown below: with the mean colour, RISE's, even the object's own mask deletes no faster than a
random order).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from explorer.core.attribution.faithfulness import RANDOM_ORDERS, faithfulness_curves, map_explainer, sanity_check
from explorer.core.attribution.localisation import localise
from explorer.core.attribution.methods import AttributionParams, attribute
from explorer.core.demo.drawing import dilate, draw_images
from explorer.core.demo.task import MEAN, SHAPE_CLASSES, STD
from explorer.core.demo.training import EVAL_SEED, network_input

#: Images no training run of the shipped weights drew, nor any other test; the thresholds were set on seed 4242
#: (printed with -s: the same rates there) before these were drawn.
SEED = 2426
#: Images measured: every class five times, the issue's 30. The whole file took 47 s on a two-core machine busy
#: with two other sessions' work (load about 6), 31 s of it CPU time; the measurements below 33 s of that.
COUNT = 30
#: Images the flat-colour deletion of the object's mask is shown on (a demonstration, not a measure of a map).
FLAT_COUNT = 12
#: Curve steps (4 % of the pixels each) and IG's steps: enough for these 64×64 images (IG's completeness gap
#: stays small), few enough for the test command.
STEPS, IG_STEPS = 25, 16
LAST_BLOCK, BRANCH = "inception5a", 1  # Grad-CAM's layers: the last block, and its branch 2 (1×1 → 3×3)
MAPS = {
    "integrated_gradients": dict(method="integrated_gradients",
                                 params=AttributionParams(ig_steps=IG_STEPS, ig_baseline="zero")),
    "grad_cam": dict(method="grad_cam", node=LAST_BLOCK),
    "grad_cam_branch": dict(method="grad_cam", node=LAST_BLOCK, branch=BRANCH),
}


def extent(mask: np.ndarray) -> np.ndarray:
    """The object's extent: its pixels and any hole they enclose (a ring's), grown by one pixel. A shape is told
    by its outline, which the pixels on both sides of it draw: evidence just outside the outline, or in the ring's
    hole, is on the object. (Zhang et al.'s pointing game allows 15 px on images of about 224; 1 px at 64 is
    stricter.)"""
    outside = np.zeros_like(mask)
    outside[[0, -1], :] |= ~mask[[0, -1], :]
    outside[:, [0, -1]] |= ~mask[:, [0, -1]]
    while True:  # the background reachable from the border, without crossing the shape
        p = np.pad(outside, 1)
        grown = (p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:] | outside) & ~mask
        if (grown == outside).all():
            return dilate(~outside)
        outside = grown


@pytest.fixture(scope="module")
def demo():
    """(capture model of the demo network, the drawn images), torch on one thread meanwhile: for a network this
    small two threads are little faster on an idle two-core machine and many times slower on a busy one (as
    training.TrainingPlan.threads found)."""
    from explorer.core.graph.capture import CaptureModel
    from explorer.core.model.graphs import zoo_block_graph
    from explorer.core.model.loading import load_model

    assert SEED not in (0, EVAL_SEED, 2424, 4242)
    loaded = load_model("shapes_inception")
    assert not loaded.weights.is_random
    cm = CaptureModel(loaded.module, zoo_block_graph("shapes_inception"))
    cm.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield cm, draw_images(COUNT, SEED)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def measured(demo):
    """Per map kind, a row per image: (pointing on the mask, pointing on the extent, inside share, the mask's share
    of the image, deletion ✓, insertion ✓, insertion's area above the random orders' mean); and for the mask as a map, deletion ✓ with the other
    (RISE's) substrate, the mean colour. Printed with -s."""
    cm, drawn = demo
    rows: dict[str, list] = {name: [] for name in (*MAPS, "mask")}
    flat_substrate = []
    started, cpu = time.perf_counter(), time.process_time()
    for d in drawn:
        x = network_input(d.image[None])
        maps = {name: attribute(cm, x, target=d.label, **kw).heatmap for name, kw in MAPS.items()}
        maps["mask"] = d.mask.astype(np.float64)
        references = None
        for name, heat in maps.items():
            curves = faithfulness_curves(cm, x, heat, d.label, steps=STEPS, random_scores=references,
                                         deletion_substrate="blur")
            references = {k: c.random_runs for k, c in curves.items()}
            loc = localise(heat, d.mask)
            rows[name].append((loc.pointing, localise(heat, extent(d.mask)).pointing, loc.inside_share,
                               d.mask.mean(), curves["deletion"].better_than_random,
                               curves["insertion"].better_than_random,
                               curves["insertion"].auc > curves["insertion"].random_auc))
        if len(flat_substrate) < FLAT_COUNT:
            flat = faithfulness_curves(cm, x, maps["mask"], d.label, kinds=("deletion",), steps=STEPS,
                                       deletion_substrate="zero")
            flat_substrate.append(flat["deletion"].better_than_random)
    rates = {name: np.array(r, dtype=np.float64) for name, r in rows.items()}
    print(f"\n{COUNT} images of seed {SEED}, {RANDOM_ORDERS} random orders, {STEPS} steps: "
          f"{time.perf_counter() - started:.1f} s ({time.process_time() - cpu:.1f} s CPU)")
    for name, r in rates.items():
        print(f"  {name:21s} pointing {r[:, 0].mean():.2f} (extent {r[:, 1].mean():.2f})  inside {r[:, 2].mean():.2f} "
              f"(object {r[:, 3].mean():.2f})  deletion ✓ {r[:, 4].mean():.2f}  insertion ✓ {r[:, 5].mean():.2f} (above their mean {r[:, 6].mean():.2f})")
    print(f"  mask, deletion to the mean colour ✓ {np.mean(flat_substrate):.2f}")
    return rates, np.array(flat_substrate)


@pytest.mark.parametrize("name", list(MAPS))
def test_maps_point_at_the_object(measured, name):
    """The map's largest positive value lies on the object's extent for at least 80 % of the images, and its
    positive evidence is concentrated on the object: the share inside the object's own pixels is on average at
    least 1.25 times the object's share of the image (a map spread evenly would give 1; seed 4242 gave 1.6 for
    Grad-CAM, 2.3 for IG). On the object's pixels alone, without the outline's other side or a ring's hole, the
    maxima hit 53 % (IG) to 70 % (Grad-CAM) of seed 4242's images."""
    r = measured[0][name]
    assert r[:, 1].mean() >= 0.8, r[:, 1].mean()
    assert np.nanmean(r[:, 2]) >= 1.25 * r[:, 3].mean()


@pytest.mark.parametrize("name", list(MAPS))
def test_maps_delete_the_evidence_faster_than_every_random_order(measured, name):
    """Deletion (pixels to the image blurred): the class's probability falls faster than with any of the random
    orders, beyond their spread, for at least 80 % of the images."""
    assert measured[0][name][:, 4].mean() >= 0.8


def test_integrated_gradients_inserts_the_evidence_faster_than_every_random_order(measured):
    """Insertion into the blurred image: faster than any random order for at least 80 % of the images."""
    assert measured[0]["integrated_gradients"][:, 5].mean() >= 0.8


@pytest.mark.parametrize("name", ["grad_cam", "grad_cam_branch"])
def test_grad_cam_inserts_the_evidence_faster_than_the_random_orders(measured, name):
    """Insertion into the blurred image: Grad-CAM's area lies above the random orders' for at least 80 % of the
    images (the issue's measure: above their mean), and beyond every one of them (the window's ✓) on at least 60 %
    (seed 4242: 87 % and 70 % at the last block and at its branch alike; the object's own mask, the best any map
    could point, 93 % and 83 %).

    Grad-CAM at the last block is a 4×4 map: inserting its top squares restores a region around the object, not
    the object alone, and some random orders (sharp 2-px squares scattered over the whole blurred image) can be as
    fast. The demo network is trained with parts of its backgrounds blurred (core/demo/augment.py), so that a
    sharp object on a blurred background is an image it knows; before, the object's own mask beat every random
    order on 37 % of seed 4242's images, Grad-CAM on 57 %, and Grad-CAM's area lay above the random orders' mean on
    73 %. Starting insertion from the mean colour instead would credit a map for the shape of its region, not for
    where it points: the object's mask moved off the object by half the image beat every random order on 87 % of
    the images from the mean colour, on 3 % from the image blurred."""
    rates = measured[0]
    assert rates[name][:, 6].mean() >= 0.8
    assert rates[name][:, 5].mean() >= 0.6


def test_the_object_itself_deletes_faster_only_when_its_silhouette_goes_too(measured):
    """The object's mask as the map, the best a map can point: with pixels deleted to the image blurred it beats
    every random order; deleted to a flat colour it mostly does not (the silhouette of the shape stays, in grey,
    and the network still reads it)."""
    rates, flat = measured
    assert rates["mask"][:, 4].mean() >= 0.7
    assert flat.mean() <= 0.5


def test_the_sanity_check_s_correlation_falls_as_blocks_are_randomised(demo):
    """Cascade randomisation from the last block down, on one image of each class. Integrated Gradients: Spearman's
    ρ with the original falls as more blocks are randomised (on average at every step, and from the first step to
    the last on at least five of the six images), and no map is flagged as unchanged. Grad-CAM at the last block
    changes as soon as that block is randomised: its positive part is then empty (ρ undefined) or ρ < 0.9."""
    cm, drawn = demo
    ig, cam = [], []
    for d in drawn[:6]:
        x = network_input(d.image[None])
        for kw, out in ((MAPS["integrated_gradients"], ig), (MAPS["grad_cam"], cam)):
            kw = dict(kw)
            method = kw.pop("method")
            r = attribute(cm, x, method, d.label, **kw)
            out.append(sanity_check(cm, map_explainer(x, method, d.label, **kw), original=r.heatmap, k=5))
    assert all(c.blocks == ["inception5a", "inception4b", "inception4a", "inception3b", "inception3a"] for c in ig)
    rho = np.array([c.correlations for c in ig])
    assert (np.diff(rho.mean(0)) < 0).all(), rho
    assert (rho[:, -1] < rho[:, 0]).sum() >= 5 and not any(c.flagged for c in ig)
    first = np.array([c.correlations[0] for c in cam])
    assert all(not np.isfinite(r) or r < 0.9 for r in first), first


def test_each_class_s_feature_visualisation_beats_every_drawn_image_of_it(demo):
    """The class logit's feature visualisation (featurevis.visualize on the fc node, at the demo's 64×64 with its
    [-1, 1] normalisation, 256 steps at a learning rate of 0.005) raises that logit above every drawn image of the
    class. On seed 4242 the smallest margin was 8.5; at the window's learning rate, 0.05, circles and triangles stay
    below their drawn images after 128 steps, and at 0.01 circles still need 256 steps to pass."""
    from explorer.core.microscope.featurevis import Target, visualize

    cm, drawn = demo
    with torch.no_grad():
        logits = cm(network_input(np.stack([d.image for d in drawn]))).numpy()
    labels = np.array([d.label for d in drawn])
    vis = visualize(cm, Target("fc"), range(len(SHAPE_CLASSES)), steps=256, size=64, mean=MEAN, std=STD, lr=0.005)
    for c, v in enumerate(vis):
        drawn_best = logits[labels == c, c].max()
        assert v.objective > drawn_best, (SHAPE_CLASSES[c], v.objective, drawn_best)
