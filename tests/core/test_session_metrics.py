"""Issue 27's metrics as a session job (core/session/map_metrics.py), headless: the map on screen measured with SRG,
ROAD, smooth and efficient MPRT into its record, told with the record's key, equal to direct calls of
core/attribution/metrics.py's functions with the same seeds on the plain capture network (the classifier's optimised
network runs SRG and ROAD in the session: probabilities agree to 1e-4), and gone with the model's weights or the
image, also when the job ends late (a pool whose cancelled job still delivers). Small step, seed and sample counts keep it to a few seconds on the demo model."""

import numpy as np
import pytest
from PIL import Image

from explorer.core.attribution import metrics as M
from explorer.core.attribution.faithfulness import DELETION_SUBSTRATE
from explorer.core.demo.drawing import draw_images
from explorer.core.session import events as ev
from explorer.core.session.runner import InlineRunner
from explorer.core.session.session import Session

from .test_session import LateRunner

SMALL = dict(steps=8, percentages=(30, 60), samples=3, seeds=(0, 1))


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drawn")
    paths = []
    for i, d in enumerate(draw_images(2, 2426)):
        paths.append(str(folder / f"{i}.png"))
        Image.fromarray(d.image).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def demo(drawn):
    s = Session(allow_download=False)
    s.set_model("shapes_inception")
    assert not s.state.loaded.weights.is_random
    s.classify(drawn[0])
    return s


def test_the_metrics_of_the_map_on_screen_equal_direct_calls(demo):
    told = []
    demo.on(ev.MetricsComputed, told.append)
    demo.attributions.run("saliency")
    progress = []
    demo.attributions.metrics(**SMALL, on_progress=lambda done, total: progress.append((done, total)))
    [record] = demo.state.attributions
    [event] = told
    assert event.key == record.key and event.result is record.result
    assert set(record.metrics) == {"srg", "road", "smooth_mprt", "efficient_mprt"}
    assert record.metrics is event.scores and record.metrics_seconds == event.seconds > 0
    assert progress[-1] == (400, 400) and all(d <= t for d, t in progress)
    # The reference: metrics.py's functions called directly on the plain capture network, same seeds and counts.
    cm = demo.captures.on("cpu")
    x = demo.attributions.input_x
    heat, target = record.result.heatmap, record.result.target
    explain = M.method_explainer("saliency", target, **demo.attributions.map_kwargs)
    direct = {"srg": M.srg(cm, x, heat, target, steps=8, deletion_substrate=DELETION_SUBSTRATE),
              "road": M.road(cm, x, heat, target, percentages=(30, 60), seeds=(0, 1)),
              "smooth_mprt": M.smooth_mprt(cm, x, explain, samples=3, seeds=(0, 1)),
              "efficient_mprt": M.efficient_mprt(cm, x, explain, seeds=(0, 1))}
    for name, score in direct.items():
        got = record.metrics[name]
        assert got.values.shape == score.values.shape and got.reference.shape == score.reference.shape
        np.testing.assert_allclose(got.values, score.values, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(got.reference, score.reference, atol=1e-4, err_msg=name)
        assert got.clears_reference == score.clears_reference
    # The learned demo network's gradient map beats its random references on SRG.
    assert record.metrics["srg"].clears_reference


def test_cancelled_at_its_first_progress_the_job_stores_nothing(demo):
    demo.attributions.run("saliency")
    ended, progress = [], []

    def on_progress(done, total):
        progress.append(done)
        demo.attributions.cancel()

    demo.attributions.metrics(**SMALL, on_progress=on_progress, on_end=ended.append)
    assert ended == ["cancelled"] and len(progress) == 1 and progress[0] < 100  # stopped inside SRG
    assert demo.state.attributions[0].metrics is None


def test_the_metrics_go_with_the_weights_and_a_late_job_leaves_nothing(demo, drawn):
    demo.attributions.run("saliency")
    demo.attributions.metrics(**SMALL)
    assert demo.state.attributions[0].metrics is not None
    demo.classify(drawn[1])  # another image: the record and its metrics go
    assert demo.state.attributions == ()
    with pytest.raises(ValueError, match="Compute a map first"):
        demo.attributions.metrics()
    # A pool whose cancelled job still finishes and sends its scores: only the key check keeps them off the record.
    demo.attributions.run("saliency")
    told = []
    demo.on(ev.MetricsComputed, told.append)
    runner = LateRunner()
    demo.runner = runner
    try:
        demo.attributions.metrics(**SMALL)
        demo.set_model("shapes_inception", weights="none")  # other weights before the job ran
        runner.run_all()
    finally:
        demo.runner = InlineRunner()
    assert told == [] and all(r.metrics is None for r in demo.state.attributions)
    demo.set_model("shapes_inception")
    demo.classify(drawn[0])


def test_roads_imputation_of_a_scattered_map_takes_a_fraction_of_a_second():
    """A saliency map's pixel order leaves the removed pixels scattered; SuperLU's MMD_AT_PLUS_A ordering took 367 s
    on such a 224 × 224 mask with 90 % removed (the window's Metrics job then ran for minutes), COLAMD 0.33 s. The
    imputed pixels are each their neighbours' weighted mean (the system solved), checked by hand on a few."""
    import time

    rng = np.random.default_rng(0)
    image = rng.standard_normal((3, 224, 224))
    order = np.argsort(-rng.standard_normal(224 * 224), kind="stable")
    known = M._removal_masks(order, (224, 224), (90,))[0]
    started = time.perf_counter()
    out = M.linear_imputation(image, known)
    assert time.perf_counter() - started < 10
    for y, x in np.argwhere(~known[1:-1, 1:-1])[:20] + 1:
        mean = sum(w * out[:, y + dy, x + dx] for (dy, dx), w in M.IMPUTATION_WEIGHTS)
        np.testing.assert_allclose(out[:, y, x], mean, atol=1e-8)
