"""Deletion / insertion curves and the model-randomisation sanity check.

The curves are checked on a picture whose evidence lives in one known square: a sample photo pasted
on a canvas of the mean colour (zeros after normalisation). A map that finds the square removes the
class's evidence first; a random order removes mostly canvas. The photo is the rocket: on the seeded
calibrated test network its evidence is local for every method checked here (for the cat on this network
Integrated Gradients spreads over the canvas).
"""

import math

import numpy as np
import pytest
import torch
from netutil import calibrated_model
from PIL import Image

from explorer.core.attribution.methods import AttributionParams, attribute
from explorer.core.cancel import Cancelled, CancelToken
from explorer.core.graph.capture import CaptureModel
from explorer.core.attribution.faithfulness import (
    RANDOM_ORDERS,
    SANITY_UNCHANGED,
    VERDICT_MARGIN,
    AttributionRecord,
    Curve,
    cell_order,
    curve_forwards,
    curve_scores,
    faithfulness_curves,
    rankdata,
    sanity_check,
    spearman,
    step_counts,
)
from explorer.core.model.samples import SAMPLES_DIR

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
SIZE, PATCH, AT = 96, 48, (12, 36)  # canvas side, photo side, the photo's top-left corner (y, x)


@pytest.fixture(scope="module")
def cm(graph_of):
    return CaptureModel(calibrated_model("googlenet"), graph_of("googlenet"))


def photo(name="rocket.jpg", side=PATCH) -> torch.Tensor:
    from torchvision.transforms.functional import center_crop, resize, to_tensor

    img = Image.open(SAMPLES_DIR / name).convert("RGB")
    return ((to_tensor(center_crop(resize(img, side), side)).unsqueeze(0)) - MEAN) / STD


def pasted(name="rocket.jpg") -> torch.Tensor:
    x = torch.zeros(1, 3, SIZE, SIZE)
    y0, x0 = AT
    x[..., y0 : y0 + PATCH, x0 : x0 + PATCH] = photo(name)
    return x


def test_the_test_network_responds_to_its_input(cm):
    """Calibrated random weights, yet different pictures get different classes and probabilities."""
    xs = torch.cat([pasted(n) for n in ("chelsea.png", "coffee.jpg", "rocket.jpg")])
    with torch.no_grad():
        p = torch.softmax(cm(xs), 1)
    assert len(set(p.argmax(1).tolist())) == 3
    assert float(p.max(1).values.min()) > 0.05  # far above chance (1/1000)


def reference_curve(model, x, order, target, substrate, counts):
    """Independent reference: each step's image made pixel by pixel in a loop, classified alone."""
    h, w = x.shape[-2:]
    scores = []
    for n in counts:
        img = x.clone()
        for flat in order[:n]:
            y, xx = divmod(int(flat), w)
            img[0, :, y, xx] = substrate[0, :, y, xx]
        with torch.no_grad():
            scores.append(float(torch.softmax(model(img), 1)[0, target]))
    return np.array(scores)


def test_batched_curves_equal_a_loop_of_single_forwards(cm):
    x = pasted()[..., 24:56, 24:56].contiguous()  # 32 px: a few hundred pixel moves per step
    rng = np.random.default_rng(1)
    heat = rng.normal(size=(32, 32))
    order = cell_order(heat, 3)
    with torch.no_grad():
        target = int(cm(x).argmax(1))  # a class with a probability to follow (a tiny one hides any error)
    from explorer.core.attribution.methods import baseline_for

    for kind, sub in (("deletion", torch.zeros_like(x)), ("insertion", baseline_for(x, "blur"))):
        ours = curve_scores(cm, x, order, target, kind, steps=6, batch_size=4, substrate=sub)
        if kind == "deletion":
            ref = reference_curve(cm, x, order, target, sub, step_counts(32 * 32, 6))
        else:  # insertion: the substrate's pixels become the image's
            ref = reference_curve(cm, sub, order, target, x, step_counts(32 * 32, 6))
        assert ref.max() > 0.01
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-7)
        assert ours.std() > 1e-3  # the curve moves: the comparison has something to compare


def test_cell_order_keeps_squares_together_and_ranks_them_by_mean():
    heat = np.zeros((4, 6))
    heat[2:4, 2:4] = 5  # the best square
    heat[0:2, 4:6] = [[1, 1], [1, 9]]  # mean 3: second
    order = cell_order(heat, 2)
    assert sorted(order[:4]) == [14, 15, 20, 21]
    assert sorted(order[4:8]) == [4, 5, 10, 11]


@pytest.mark.parametrize("method", ["integrated_gradients", "grad_cam"])
def test_curves_of_a_map_and_its_random_orders_in_batched_forwards(cm, method):
    """The curves' bookkeeping on the calibrated random network: the map's and RANDOM_ORDERS random orders'
    curves in one batched sequence, from the picture's probability to the blank canvas's. Whether a map beats
    the random orders is asked where the answer means something, of a trained network (test_demo_attribution:
    on this one Integrated Gradients' deletion area lies among the random orders')."""
    x = pasted()
    kw = dict(node="inception4e") if method == "grad_cam" else {}
    r = attribute(cm, x, method, params=AttributionParams(ig_steps=16, ig_baseline="zero"), **kw)
    seen = []
    curves = faithfulness_curves(cm, x, r.heatmap, r.target, steps=12, batch_size=13, deletion_substrate="zero",
                                 progress=lambda d, t: seen.append((d, t)))
    d, i = curves["deletion"], curves["insertion"]
    assert d.random_runs.shape == i.random_runs.shape == (RANDOM_ORDERS, 13)
    assert len({round(a, 6) for a in d.random_aucs}) == RANDOM_ORDERS  # five orders, five curves
    # Every image of the map's and the random orders' curves in batches of 13: 2 × 6 × 11 + 3 = 135 images.
    assert seen == [(k, 11) for k in range(1, 12)] and curve_forwards(12, 13) == 11
    # The probability starts at the picture's and deletion to the mean colour ends on the blank canvas.
    with torch.no_grad():
        p = torch.softmax(cm(torch.cat([x, torch.zeros_like(x)])), 1)[:, r.target]
    assert d.scores[0] == pytest.approx(float(p[0]), rel=1e-4)
    assert d.scores[-1] == pytest.approx(float(p[1]), rel=1e-4) == pytest.approx(d.random_scores[-1], rel=1e-4)


@pytest.mark.parametrize("streams", [1, 2])
def test_curves_stop_when_cancelled(cm, streams):
    token = CancelToken()
    seen = []

    def progress(done, total):
        seen.append(done)
        token.cancel()

    with pytest.raises(Cancelled):
        faithfulness_curves(cm, pasted(), np.zeros((SIZE, SIZE)), 1, steps=4, batch_size=2, streams=streams,
                            progress=progress, cancel=token)
    assert seen == [1]


def test_streams_run_on_their_share_of_the_threads_and_give_them_back(cm):
    """Two forwards at once, each on its own thread with half of torch's threads; afterwards the caller
    and any thread started later have all of them again, and an error in a forward reaches the caller."""
    import threading

    x = pasted()[..., 24:56, 24:56].contiguous()
    calls, meanwhile = [], []

    def model(images):
        calls.append((threading.current_thread(), torch.get_num_threads()))
        t = threading.Thread(target=lambda: meanwhile.append(torch.get_num_threads()))  # another job's, say
        t.start()
        t.join()
        return cm(images)

    def broken(images):
        if len(calls) >= 3:
            raise ValueError("out of memory, say")
        return model(images)

    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        faithfulness_curves(model, x, np.zeros((32, 32)), 1, steps=5, batch_size=2, streams=2)
        assert len(calls) == curve_forwards(5, 2) == math.ceil((2 * (1 + RANDOM_ORDERS) * 4 + 3) / 2)
        assert {n for _, n in calls} == {2}
        assert set(meanwhile) == {4}  # a thread first used during the curves gets all of them
        assert threading.current_thread() not in {t for t, _ in calls}
        assert torch.get_num_threads() == 4
        fresh = []
        t = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
        t.start()
        t.join()
        assert fresh == [4]
        calls.clear()
        with pytest.raises(ValueError, match="out of memory"):
            faithfulness_curves(broken, x, np.zeros((32, 32)), 1, steps=5, batch_size=2, streams=2)
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(threads)


def test_ranks_and_correlation_equal_scipys_on_maps_with_ties():
    """A ReLU'd map is full of equal values: ranks and ρ against scipy's, on maps of a CAM's kind."""
    from scipy.stats import rankdata as scipy_rankdata
    from scipy.stats import spearmanr

    rng = np.random.default_rng(4)
    for _ in range(5):
        a = np.maximum(rng.normal(size=(64, 64)), 0).round(1)
        b = np.maximum(a + rng.normal(scale=0.5, size=a.shape), 0).round(1)
        np.testing.assert_array_equal(rankdata(a), scipy_rankdata(a.ravel()))
        assert spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)


def test_rank_correlation_by_hand():
    assert rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    a, b = np.array([1, 2, 2, 4]), np.array([1, 3, 2, 4])
    # ranks a: 1, 2.5, 2.5, 4 (mean 2.5, deviations -1.5, 0, 0, 1.5);
    # ranks b: 1, 3, 2, 4 (deviations -1.5, .5, -.5, 1.5):
    # Σ da·db = 2.25 + 2.25 = 4.5; Σ da² = 4.5; Σ db² = 5: ρ = 4.5 / √(4.5 · 5)
    assert spearman(a, b) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert math.isnan(spearman(np.ones(4), a))


@pytest.mark.parametrize("method", ["integrated_gradients", "grad_cam"])
def test_sanity_correlation_falls_as_blocks_are_randomised(cm, method):
    # A whole photo (on the pasted picture, IG is exactly 0 on the blank canvas whatever the weights).
    x = photo(side=SIZE)
    params = AttributionParams(ig_steps=8)
    kw = dict(node="inception4e") if method == "grad_cam" else {}
    r = attribute(cm, x, method, params=params, **kw)
    before = {k: v.clone() for k, v in cm.state_dict().items()}

    def explain(m):
        return attribute(m, x, method, r.target, params=params, **kw).heatmap

    check = sanity_check(cm, explain, k=3, original=r.heatmap)
    assert check.blocks == ["inception5b", "inception5a", "inception4e"]
    assert all(c < SANITY_UNCHANGED for c in check.correlations), check.correlations
    assert check.correlations[-1] < check.correlations[0] or check.correlations[0] < 0.5
    assert not check.flagged
    # The original model is untouched and still gives the original map.
    assert all(torch.equal(v, cm.state_dict()[k]) for k, v in before.items())
    np.testing.assert_array_equal(explain(cm), r.heatmap)


def test_the_randomisable_copy_never_writes_into_the_original(cm):
    """The copy shares the original's weight storage (no copy of the network for each check), so
    randomising replaces tensors, and backward through the copy fills the copy's gradients only."""
    from explorer.core.attribution.faithfulness import randomisable_copy, randomise_block

    x = pasted()
    with torch.no_grad():
        want = cm(x)
    before = {k: v.clone() for k, v in cm.state_dict().items()}
    clone = randomisable_copy(cm)
    randomise_block(clone, "inception5b", torch.Generator().manual_seed(0))
    out = clone(x)
    out[0, 1].backward()
    assert all(torch.equal(v, cm.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in cm.parameters())
    assert all(p.grad is not None for p in clone.gm.inception5a.parameters())
    with torch.no_grad():
        torch.testing.assert_close(cm(x), want, rtol=0, atol=0)
        assert not torch.allclose(clone(x), want, atol=1e-3)  # the randomised block tells
    # Blocks left alone are the original's storage; the randomised one is new.
    assert clone.gm.inception4e.branch1.conv.weight.data_ptr() == cm.gm.inception4e.branch1.conv.weight.data_ptr()
    assert clone.gm.inception5b.branch1.conv.weight.data_ptr() != cm.gm.inception5b.branch1.conv.weight.data_ptr()


def test_a_map_that_ignores_the_model_is_flagged(cm):
    x = pasted()
    edges = (x[0].diff(dim=-1).abs().sum(0)[:-1, :] + x[0].diff(dim=-2).abs().sum(0)[:, :-1]).numpy()
    check = sanity_check(cm, lambda m: edges, k=2)
    assert check.correlations == [pytest.approx(1.0)] * 2 and check.flagged


def test_road_prefers_the_map_to_its_reverse(cm):
    """pytorch-grad-cam's ROAD on our model: Grad-CAM's map removes more of the class first than the
    same map upside down (least relevant first), and the score is its MoRF/LeRF combination."""
    from explorer.core.attribution.faithfulness import road_score

    x = pasted()
    r = attribute(cm, x, "grad_cam", node="inception4e")
    good = road_score(cm, x, r.heatmap, r.target, percentiles=(30, 60, 90))
    bad = road_score(cm, x, -r.heatmap, r.target, percentiles=(30, 60, 90))
    assert good.morf < good.lerf and good.combined > bad.combined
    assert good.combined == pytest.approx((good.lerf - good.morf) / 2)
    # The imputation noise is seeded: the same call gives the same score.
    assert road_score(cm, x, r.heatmap, r.target, percentiles=(30,)) == road_score(cm, x, r.heatmap, r.target,
                                                                                 percentiles=(30,))


@pytest.mark.parametrize("streams", [1, 3])
def test_all_four_curves_equal_loops_of_single_forwards(cm, streams):
    """faithfulness_curves classifies the images of six curves (the map's and two random orders', deletion and
    insertion) as one sequence (their shared first and last images once), `streams` batches at once: each
    curve still equals its own loop of single forwards, the random orders drawn one after another from the
    seed."""
    from explorer.core.attribution.methods import baseline_for
    from explorer.core.attribution.faithfulness import _random_cells, curve_images, default_cell

    x = pasted()[..., 24:56, 24:56].contiguous()
    heat = np.random.default_rng(2).normal(size=(32, 32))
    with torch.no_grad():
        target = int(cm(x).argmax(1))
    seen = []
    curves = faithfulness_curves(cm, x, heat, target, steps=5, batch_size=4, streams=streams,
                                 progress=lambda d, t: seen.append(t), random_orders=2)
    assert curve_images(5, random_orders=2) == 6 * 4 + 3 and seen == [curve_forwards(5, 4, random_orders=2)] * 7
    assert curve_images(5, random_orders=1) == 4 * 4 + 3  # one random order: as before there were more
    cell = default_cell(32, 32)
    rng = np.random.default_rng(0)
    orders = [cell_order(heat, cell), *(cell_order(_random_cells((32, 32), cell, rng), cell) for _ in range(2))]
    counts = step_counts(32 * 32, 5)
    blur = baseline_for(x, "blur")
    for o, order in enumerate(orders):
        deletion = reference_curve(cm, x, order, target, blur, counts)  # deleted to the image blurred: the default
        insertion = reference_curve(cm, blur, order, target, x, counts)
        got = [(curves["deletion"].scores, curves["insertion"].scores),
               (curves["deletion"].random_runs[0], curves["insertion"].random_runs[0]),
               (curves["deletion"].random_runs[1], curves["insertion"].random_runs[1])][o]
        np.testing.assert_allclose(got[0], deletion, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(got[1], insertion, rtol=1e-4, atol=1e-7)
    assert curves["deletion"].scores.std() > 1e-3 and curves["insertion"].random_scores.std() > 1e-3
    assert not np.allclose(curves["deletion"].random_runs[0], curves["deletion"].random_runs[1])


def test_a_second_map_of_the_image_reuses_the_random_references(cm):
    """The random order does not depend on the map: given the first map's references, the second map's
    curves classify only their own images, and equal the curves computed from scratch."""
    x = pasted()[..., 24:56, 24:56].contiguous()
    rng = np.random.default_rng(4)
    first_map, second_map = rng.normal(size=(32, 32)), rng.normal(size=(32, 32))
    with torch.no_grad():
        target = int(cm(x).argmax(1))
    first = faithfulness_curves(cm, x, first_map, target, steps=5, batch_size=1)
    seen = []

    def counting(images):
        seen.append(len(images))
        return cm(images)

    again = faithfulness_curves(counting, x, second_map, target, steps=5, batch_size=1,
                                random_scores={k: c.random_runs for k, c in first.items()})
    assert sum(seen) == 2 * (5 - 1) + 3  # the inner steps of two curves, the image and two substrates
    scratch = faithfulness_curves(cm, x, second_map, target, steps=5, batch_size=1)
    for kind in ("deletion", "insertion"):
        np.testing.assert_allclose(again[kind].scores, scratch[kind].scores, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(again[kind].random_runs, scratch[kind].random_runs, rtol=1e-5, atol=1e-8)
        assert not np.allclose(again[kind].scores, first[kind].scores)  # another map: other curves
    with pytest.raises(ValueError, match="points"):
        faithfulness_curves(cm, x, second_map, target, steps=4, random_scores={"deletion": first["deletion"].random_scores})


def _curve(kind, scores, runs, substrate="blur"):
    return Curve(kind, np.linspace(0, 1, len(scores)), np.asarray(scores, float), np.asarray(runs, float), substrate)


def test_random_references_are_reused_only_for_the_same_deletion_substrate():
    """An image's random orders deleted to one substrate are no reference for a map deleted to another."""
    from types import SimpleNamespace

    from explorer.core.attribution.faithfulness import random_references

    result = SimpleNamespace(target=3, heatmap=np.zeros((4, 4)))
    runs = [[1.0, 0.5, 0.0]]
    flat = AttributionRecord(result, 1.0, curves={"deletion": _curve("deletion", [1, 0.2, 0], runs, "zero"),
                                                  "insertion": _curve("insertion", [0, 0.8, 1], runs)})
    blurred = AttributionRecord(result, 1.0, curves={"deletion": _curve("deletion", [1, 0.3, 0], [[1, 0.6, 0]]),
                                                     "insertion": _curve("insertion", [0, 0.8, 1], runs)})
    assert random_references([flat], result, 2, "blur") is None
    assert random_references([flat], result, 2, "zero")["deletion"].tolist() == runs
    assert random_references([flat, blurred], result, 2, "blur")["deletion"].tolist() == [[1, 0.6, 0]]


def test_a_verdict_is_a_pass_only_beyond_every_random_order():
    """Areas by hand (two steps: the area is the mean of the ends and twice the middle, over 4): a map is better
    than random only beyond the random orders' spread by more than VERDICT_MARGIN; a tie, an area among the
    random orders' or within the margin of the best is no better than random."""
    runs = [[1.0, 0.5, 0.0], [1.0, 0.3, 0.0], [1.0, 0.7, 0.0]]  # areas 0.5, 0.4, 0.6
    d = _curve("deletion", [1.0, 0.1, 0.0], runs)  # area 0.3
    assert d.random_aucs.tolist() == pytest.approx([0.5, 0.4, 0.6]) and d.random_spread == pytest.approx((0.4, 0.6))
    assert d.random_auc == pytest.approx(0.5) and d.random_scores.tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert d.auc == pytest.approx(0.3) and d.better_than_random
    assert not _curve("deletion", [1.0, 0.45, 0.0], runs).better_than_random  # below the mean, not the least
    assert not _curve("deletion", [1.0, 0.3, 0.0], runs).better_than_random  # a tie with the best
    assert not _curve("deletion", [1.0, 0.3 - VERDICT_MARGIN, 0.0], runs).better_than_random  # within the margin
    assert _curve("deletion", [1.0, 0.3 - 3 * VERDICT_MARGIN, 0.0], runs).better_than_random
    assert _curve("insertion", [0.0, 0.8, 1.0], runs).better_than_random  # 0.65 > 0.6
    assert not _curve("insertion", [0.0, 0.6, 1.0], runs).better_than_random  # above the mean, among them
    # Random weights: every area near 0.001, the map's "below" them by a hair: no better than random.
    tiny = _curve("deletion", [0.001, 0.0009, 0.001], [[0.001, 0.00101, 0.001], [0.001, 0.00102, 0.001]])
    assert tiny.auc < tiny.random_spread[0] and not tiny.better_than_random
    record = d.to_dict()
    assert record["auc"] == 0.3 and record["random_auc"] == 0.5 and record["random_aucs"] == [0.5, 0.4, 0.6]
    assert record["random_spread"] == [0.4, 0.6] and record["better_than_random"] is True
    assert record["curve"] == [1.0, 0.1, 0.0] and record["random_curve"] == [1.0, 0.5, 0.0]
    one = _curve("insertion", [0.0, 0.8, 1.0], [0.0, 0.2, 1.0])  # a single order, given as one curve
    assert one.random_runs.shape == (1, 3) and one.random_spread == pytest.approx((0.35, 0.35))


def test_only_learned_weights_pass_the_sanity_check():
    """A map that changes as blocks are randomised passes only when the weights were learned; with random ones it
    "changes", and no text says it depends on learned weights. A map that stays the same is unchanged either way."""
    from explorer.core.attribution.faithfulness import AttributionRecord, SanityCheck, sanity_verdict

    changes = SanityCheck(["b2", "b1"], [0.7, 0.53], [np.zeros((2, 2))] * 2)
    same = SanityCheck(["b2", "b1"], [0.99, 0.95], [np.zeros((2, 2))] * 2)
    assert sanity_verdict(changes, True).startswith("passes (ρ 0.53 after 2 blocks")
    assert "depends on the learned weights" in sanity_verdict(changes, True)
    random = sanity_verdict(changes, False)
    assert random.startswith("changes (ρ 0.53") and "learned weights" not in random and "random" in random
    for learned in (True, False):
        assert sanity_verdict(same, learned).startswith("unchanged (ρ 0.95")
    record = AttributionRecord(result=None, seconds=1.0, sanity=changes)
    assert record.verdict() == "passes (ρ 0.53)" and record.verdict(learned=False) == "changes (ρ 0.53), random weights"


def test_deletion_can_end_on_the_image_blurred(cm):
    """deletion_substrate="blur": deleted pixels become the blurred image's (insertion's start), so deletion ends
    where insertion begins; an unknown substrate is refused before any forward."""
    from explorer.core.attribution.methods import baseline_for

    x = pasted()[..., 24:56, 24:56].contiguous()
    heat = np.random.default_rng(5).normal(size=(32, 32))
    curves = faithfulness_curves(cm, x, heat, 1, steps=3, random_orders=1, deletion_substrate="blur")
    with torch.no_grad():
        blurred = float(torch.softmax(cm(baseline_for(x, "blur")), 1)[0, 1])
    assert curves["deletion"].scores[-1] == pytest.approx(blurred, rel=1e-4)
    assert curves["insertion"].scores[0] == pytest.approx(blurred, rel=1e-4)
    assert [c.to_dict()["substrate"] for c in curves.values()] == ["blur", "blur"]
    flat = faithfulness_curves(cm, x, heat, 1, kinds=("deletion",), steps=3, random_orders=1, deletion_substrate="zero")
    with torch.no_grad():
        grey = float(torch.softmax(cm(torch.zeros_like(x)), 1)[0, 1])
    assert flat["deletion"].scores[-1] == pytest.approx(grey, rel=1e-4) and flat["deletion"].substrate == "zero"
    assert abs(grey - blurred) > 1e-3  # the two ends differ: each check above can fail
    with pytest.raises(ValueError, match="deletion substrate"):
        faithfulness_curves(lambda images: pytest.fail("no forward"), x, heat, 1, steps=3, deletion_substrate="black")
