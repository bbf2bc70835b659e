"""SRG, ROAD, smooth MPRT and efficient MPRT (explorer/core/attribution/metrics.py) against Quantus 0.6 (a test-only
dependency) with the same perturbations on both sides, on the demo model and on GoogLeNet (calibrated random weights,
64 × 64 inputs); and the known results on the demo model, which has learned its task.

Quantus 0.6 has no SRG: it is checked against Quantus's PixelFlipping curves, most relevant first (the map) and least
relevant first (the map negated), removing pixels into the same blurred image, on the images' centre (see STEPS). Quantus's ROAD cannot run on colour
images (it ranks the map repeated over the channels, 3·H·W entries, and hands those indices to an imputation of H·W
pixels: IndexError); here it runs with its pixel count set to 3·H·W and the indices brought back to pixels, its
own imputation otherwise, and the images it imputes are classified directly. The randomisation metrics explain with
Quantus's own explain ("Gradient", captum's) on both sides: what is checked is the denoising, the randomisation and
the scores.

Tolerances: probabilities and areas 1e-5 (float32 forwards in batches of different sizes); smooth MPRT's
correlations 2e-3: the denoised maps agree to 3e-7 of 5.9, but Quantus averages them in float32 and we in float64, and
values equal in float32 share a rank there (measured: 7e-4 on GoogLeNet at seed 3, below 1e-6 on the demo model);
efficient MPRT's 1e-9 (one image explained alone on both sides, binned in float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.core.attribution import metrics as M

quantus = pytest.importorskip("quantus")

#: SRG's curve steps, on the images' central 48 × 48: Quantus's PixelFlipping steps over the map repeated on the three
#: channels, in steps that must divide H·W; 3·H·W / 24 = 288 channel values (96 whole pixels) divides 48 · 48 (64 · 64
#: has no factor 3, so no step of whole pixels would).
STEPS, CROP = 24, (slice(None), slice(None), slice(8, 56), slice(8, 56))
#: ROAD's removed shares in the cross-checks: each a whole number of pixels at 64 × 64 (4096 · p / 100), as Quantus
#: counts them in channel values (3 · 4096 · p / 100; at 10 % it would take 410 pixels, one of them in part, to our 409).
PERCENTAGES = (12.5, 25, 37.5, 50, 62.5, 75, 87.5)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo():
    """(the demo network, three drawn images as network inputs, their labels)."""
    from explorer.core.demo.drawing import draw_images
    from explorer.core.demo.training import network_input
    from explorer.core.model.loading import load_model

    loaded = load_model("shapes_inception")
    assert not loaded.weights.is_random
    drawn = draw_images(3, 2727)
    return loaded.module.eval(), [network_input(d.image[None]) for d in drawn], [d.label for d in drawn]


@pytest.fixture(scope="module")
def googlenet():
    """(GoogLeNet with calibrated random weights, a 64 × 64 input, its top-1 class)."""
    from tests.netutil import calibrated_model

    model = calibrated_model("googlenet")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return model, x, int(model(x).argmax(1))


def networks(request):
    if request.param == "demo":
        model, xs, labels = request.getfixturevalue("demo")
        return model, xs[0], labels[0]
    return request.getfixturevalue("googlenet")


@pytest.fixture(params=["demo", "googlenet"])
def case(request):
    return networks(request)


def gradient_map(model, x, target) -> np.ndarray:
    """|∂p/∂x| summed over the channels, with a tiny seeded jitter so that no two pixels tie (Quantus ranks the map
    repeated over the channels: a tie between two pixels would interleave their channels)."""
    x = x.clone().requires_grad_(True)
    model(x)[0, target].backward()
    heat = x.grad[0].abs().sum(0).numpy().astype(np.float64)
    return heat + 1e-6 * heat.std() * np.random.default_rng(3).random(heat.shape)


def probability(model, images: np.ndarray, target: int) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.as_tensor(images, dtype=torch.float32)), 1)[:, target].numpy()


def quantus_explainer(target: int):
    """explain(model, images) for our side: Quantus's explain, the method its metrics call below, one image at a time
    as Quantus calls it (GoogLeNet's float32 gradients of a batch of four differ from one image's by 3e-4 of their
    largest value, which moves smooth MPRT's ρ by up to 1e-3)."""
    def explain(model, images):
        a = [quantus.explain(model, images[i : i + 1].detach().numpy(), np.array([target]), method="Gradient")
             for i in range(len(images))]
        return np.concatenate(a).reshape(len(images), *images.shape[-2:])
    return explain


# ---------------------------------------------------------------- SRG


def quantus_curve(model, x, heat, target, substrate) -> np.ndarray:
    """Quantus's PixelFlipping curve of `heat` (the probability after each step), pixels replaced by `substrate`."""
    sub = substrate.numpy().reshape(1, -1)

    def into_substrate(arr, indices, **kwargs):
        out = arr.copy()
        for b in range(arr.shape[0]):
            out[b, indices[b]] = sub[b, indices[b]]
        return out

    h, w = heat.shape
    metric = quantus.PixelFlipping(features_in_step=3 * h * w // STEPS, normalise=False, abs=False,
                                   perturb_func=into_substrate, disable_warnings=True)
    curve = metric(model=model, x_batch=x.numpy(), y_batch=np.array([target]), a_batch=heat[None, None],
                   softmax=True, device="cpu", channel_first=True)
    return np.asarray(curve[0])


def reverse(heat: np.ndarray) -> np.ndarray:
    """The map in reverse order, kept non-negative (Quantus refuses maps that are all negative)."""
    return heat.max() - heat


def srg_by_trapezoid(p0: float, morf: np.ndarray, lerf: np.ndarray) -> float:
    f = np.linspace(0, 1, STEPS + 1)
    return float(np.trapezoid(np.r_[p0, lerf], f) - np.trapezoid(np.r_[p0, morf], f))


def test_srg_matches_quantus_pixel_flipping(case):
    from explorer.core.attribution.faithfulness import _random_cells
    from explorer.core.attribution.methods import baseline_for

    model, x, target = case
    x = x[CROP].contiguous()
    heat = gradient_map(model, x, target)
    ours = M.srg(model, x, heat, target, steps=STEPS, cell=1, random_orders=2, seed=7)
    substrate = baseline_for(x, "blur")
    morf, lerf = quantus_curve(model, x, heat, target, substrate), quantus_curve(model, x, reverse(heat), target, substrate)
    assert len(morf) == STEPS
    np.testing.assert_allclose(ours.detail["morf_curve"][1:], morf, atol=1e-5)
    np.testing.assert_allclose(ours.detail["lerf_curve"][1:], lerf, atol=1e-5)
    p0 = float(probability(model, x.numpy(), target)[0])
    assert ours.values[0] == pytest.approx(srg_by_trapezoid(p0, morf, lerf), abs=1e-5)
    # The reference: the same for each random order, drawn as srg draws them.
    rng = np.random.default_rng(7)
    for k in range(2):
        rand = _random_cells(heat.shape, 1, rng)  # a permutation: no ties, its order the random order
        r_morf = quantus_curve(model, x, rand, target, substrate)
        r_lerf = quantus_curve(model, x, reverse(rand), target, substrate)
        assert ours.reference[k] == pytest.approx(srg_by_trapezoid(p0, r_morf, r_lerf), abs=1e-5)
    assert np.abs(morf - lerf).max() > 1e-3  # the two orders' curves differ well beyond the tolerance


# ---------------------------------------------------------------- ROAD


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # pytorch-grad-cam's numpy on tensors
def test_linear_imputation_matches_pytorch_grad_cam_and_quantus():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from quantus.functions.perturb_func import noisy_linear_imputation

    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 20, 24))
    yy, xx = np.mgrid[:20, :24]
    masks = [rng.random((20, 24)) > 0.5,  # scattered
             (yy - 8) ** 2 + (xx - 15) ** 2 > 36,  # a hole
             (yy > 2) & (xx < 20)]  # a hole touching the edges
    for known in masks:
        ours = M.linear_imputation(image, known)
        grad_cam = NoisyLinearImputer(noise=0.0)(torch.tensor(image, dtype=torch.float32),
                                                 torch.tensor(known.astype(np.float32)))
        q = noisy_linear_imputation(image, np.flatnonzero(~known.ravel()), noise=0.0)
        np.testing.assert_allclose(ours, grad_cam.numpy(), atol=1e-5)
        np.testing.assert_allclose(ours, q, atol=1e-9)
        assert np.array_equal(ours[:, known], image[:, known]) and not np.allclose(ours, image)


def quantus_road_images(model, x, heat, target) -> tuple[np.ndarray, np.ndarray]:
    """(the images Quantus's ROAD classifies, one per percentage, noise 0; its accuracy at each), with its colour
    bug worked around (see the module's docstring)."""
    from quantus.functions.perturb_func import noisy_linear_imputation

    h, w = heat.shape
    seen = []

    def impute(arr, indices, **kwargs):
        pixels = np.unique(np.asarray(indices) % (h * w))
        out = noisy_linear_imputation(arr, pixels, noise=0.0)
        seen.append(out)
        return out

    metric = quantus.ROAD(percentages=list(PERCENTAGES), noise=0.0, normalise=False, perturb_func=impute,
                          disable_warnings=True)
    metric.a_size = 3 * h * w
    accuracy = metric(model=model, x_batch=x.numpy().astype(np.float64), y_batch=np.array([target]),
                      a_batch=heat[None, None], device="cpu", channel_first=True)
    return np.stack(seen), np.array([accuracy[p] for p in PERCENTAGES])


def test_road_matches_quantus(case):
    model, x, target = case
    heat = gradient_map(model, x, target)
    ours = M.road(model, x, heat, target, percentages=PERCENTAGES, noise=0.0, seeds=(0,), random_orders=1)
    p0 = float(probability(model, x.numpy(), target)[0])
    parts = {}
    for name, a in (("morf", heat), ("lerf", reverse(heat))):
        images, accuracy = quantus_road_images(model, x, a, target)
        probs = probability(model, images, target)
        with torch.no_grad():
            top1 = model(torch.as_tensor(images, dtype=torch.float32)).argmax(1).numpy()
        assert np.array_equal(accuracy, (top1 == target).astype(float))  # the images are the ones it scored
        np.testing.assert_allclose(ours.detail[f"{name}_probabilities"], probs, atol=1e-5)
        parts[name] = float(np.mean(probs - p0))
        assert ours.detail[name] == pytest.approx(parts[name], abs=1e-5)
    assert ours.values[0] == pytest.approx((parts["lerf"] - parts["morf"]) / 2, abs=1e-5)


def test_road_noise_gives_spread_around_the_noise_free_score(demo):
    model, xs, labels = demo
    heat = gradient_map(model, xs[0], labels[0])
    clean = M.road(model, xs[0], heat, labels[0], percentages=PERCENTAGES, noise=0.0, seeds=(0,), random_orders=1)
    noisy = M.road(model, xs[0], heat, labels[0], percentages=PERCENTAGES, seeds=(0, 1, 2), random_orders=2)
    low, high = noisy.interval
    assert low < high  # three seeds, three values
    assert abs(noisy.values.mean() - clean.values[0]) < 0.05
    assert len(noisy.reference) == 2


# ---------------------------------------------------------------- smooth and efficient MPRT


@pytest.mark.parametrize("seed", [0, 3])
def test_smooth_mprt_matches_quantus(case, seed):
    model, x, target = case
    ours = M.smooth_mprt(model, x, quantus_explainer(target), samples=4, noise=0.1, seeds=(seed,))
    np.random.seed(seed)
    metric = quantus.SmoothMPRT(seed=seed, nr_samples=4, noise_magnitude=0.1, skip_layers=True,
                                layer_order="bottom_up", disable_warnings=True)
    scores = metric(model=model, x_batch=x.numpy(), y_batch=np.array([target]), a_batch=None,
                    explain_func=quantus.explain, explain_func_kwargs={"method": "Gradient"}, device="cpu",
                    channel_first=True)
    assert ours.reference[0] == pytest.approx(scores["original"][0], abs=2e-3)
    assert ours.values[0] == pytest.approx(list(scores.values())[-1][0], abs=2e-3)
    assert ours.values[0] < ours.reference[0]  # the two numbers compared are not the same one


@pytest.mark.parametrize("seed", [0, 3])
def test_efficient_mprt_matches_quantus(case, seed):
    model, x, target = case
    ours = M.efficient_mprt(model, x, quantus_explainer(target), seeds=(seed,), bins=100)
    metric = quantus.EfficientMPRT(seed=seed, complexity_func_kwargs={"n_bins": 100}, layer_order="bottom_up",
                                   skip_layers=True, abs=False, normalise=False, disable_warnings=True)
    scores = metric(model=model, x_batch=x.numpy(), y_batch=np.array([target]), a_batch=None,
                    explain_func=quantus.explain, explain_func_kwargs={"method": "Gradient"}, device="cpu",
                    channel_first=True)
    assert ours.values[0] == pytest.approx(scores[0], abs=1e-9)
    assert ours.values[0] != 0.0


def test_randomisation_leaves_the_original_alone(demo):
    model = demo[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    random = M.fully_randomised(model, 0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not all(torch.equal(before[k], v) for k, v in random.state_dict().items())


# ---------------------------------------------------------------- what the demo model is known to give


@pytest.fixture(scope="module")
def demo_capture(demo):
    from explorer.core.graph.capture import CaptureModel
    from explorer.core.model.graphs import zoo_block_graph

    return CaptureModel(demo[0], zoo_block_graph("shapes_inception")).eval()


def explainers(target):
    return {"gradient": M.method_explainer("saliency", target),
            "grad_cam": M.method_explainer("grad_cam", target, node="inception5a"),
            "edges": M.edge_control}


def test_gradient_and_grad_cam_pass_smooth_mprt_an_edge_detector_fails(demo, demo_capture):
    """On every image: the gradient's and Grad-CAM's denoised maps on the fully randomised network correlate less with
    the trained network's, at every seed, than two denoisings on the trained network do; the Sobel magnitude of the
    image, which ignores the weights, correlates as much (its interval overlaps its reference)."""
    _, xs, labels = demo
    for x, label in zip(xs, labels):
        scores = {name: M.smooth_mprt(demo_capture, x, e, samples=6) for name, e in explainers(label).items()}
        assert scores["gradient"].clears_reference and scores["grad_cam"].clears_reference
        assert not scores["edges"].clears_reference
        lo, hi = scores["edges"].interval
        r_lo, r_hi = scores["edges"].reference_interval
        assert lo <= r_hi and r_lo <= hi  # overlapping, not merely short of the margin


def test_efficient_mprt_passes_the_gradient_not_the_edges_nor_grad_cam(demo, demo_capture):
    """Efficient MPRT: the gradient's map grows more complex on the randomised network at every seed; the edge
    detector's does not change at all (0 at every seed). Grad-CAM's entropy falls at some seed on every image
    (measured: the randomised network's CAM is flat or nearly so; -1 where it is all zero), so efficient MPRT does not
    pass it — the metrics
    disagree, which is why a verdict is given per metric."""
    _, xs, labels = demo
    for x, label in zip(xs, labels):
        e = explainers(label)
        gradient = M.efficient_mprt(demo_capture, x, e["gradient"])
        edges = M.efficient_mprt(demo_capture, x, e["edges"])
        cam = M.efficient_mprt(demo_capture, x, e["grad_cam"])
        assert gradient.clears_reference
        assert np.array_equal(edges.values, np.zeros(3)) and not edges.clears_reference
        assert not cam.clears_reference and cam.values.min() < 0


def test_srg_and_road_clear_their_random_references_on_the_demo(demo, demo_capture):
    """The gradient's and Grad-CAM's SRG beat every random order on every image; ROAD (noisy, three seeds) clears
    its references on most of them; and a map turned upside down (least relevant first) gives a negative SRG."""
    from explorer.core.attribution.methods import attribute

    _, xs, labels = demo
    cleared = []
    for x, label in zip(xs, labels):
        for method, kw in (("saliency", {}), ("grad_cam", {"node": "inception5a"})):
            heat = attribute(demo_capture, x, method, label, **kw).heatmap
            s = M.srg(demo_capture, x, heat, label, steps=16)
            assert s.clears_reference, (method, s.values, s.reference)
            assert M.srg(demo_capture, x, -heat, label, steps=16).values[0] < 0
            cleared.append(M.road(demo_capture, x, heat, label, percentages=(20, 40, 60, 80)).clears_reference)
    assert sum(cleared) >= len(cleared) - 2, cleared


def test_score_intervals_and_verdicts():
    better = M.MetricScore("x", [0.5, 0.6], [0.1, 0.2], True)
    assert better.interval == (0.5, 0.6) and better.clears_reference
    assert not M.MetricScore("x", [0.15, 0.6], [0.1, 0.2], True).clears_reference  # overlaps
    assert M.MetricScore("x", [0.1], [0.5, 0.9], False).clears_reference
    assert not M.MetricScore("x", [np.nan], [0.5], False).clears_reference
    d = better.to_dict()
    assert d["interval"] == [0.5, 0.6] and d["reference_interval"] == [0.1, 0.2] and d["clears_reference"] is True
