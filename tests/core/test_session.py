"""The Qt-free session, driven headless with the InlineRunner: open a model, classify, Grad-CAM on one branch with
its curves, switch models — and the results of the previous model are gone. The numbers are checked against
computations on a plain copy of the network (hooks, softmax), not against the session's own code."""

import copy
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from explorer.core.model.samples import sample_images
from explorer.core.session import events as ev
from explorer.core.session.runner import Callbacks, InlineRunner, run_task
from explorer.core.session.session import Session
from explorer.core.session.state import ImageInput


class DeferredRunner(InlineRunner):
    """Queues jobs and runs them when told, in order: what a thread pool does while the person goes on."""

    def __init__(self):
        super().__init__()
        self.queue = []

    def submit(self, lane, fn, *args, callbacks, wants_progress=False, **kwargs):
        self.cancel(lane)  # a new request cancels its lane's job, as on the pool
        self.queue.append((lane, fn, args, callbacks, wants_progress, kwargs))

    def running(self, lane):  # a queued job is the lane's, as on the pool
        return next((job for job in self.queue if job[0] == lane), None) or super().running(lane)

    def cancel(self, lane):
        queued = [job for job in self.queue if job[0] == lane]
        for job in queued:
            self.queue.remove(job)
            job[3].cancelled()
        return super().cancel(lane) or bool(queued)

    def run_all(self):
        while self.queue:
            lane, fn, args, callbacks, wants_progress, kwargs = self.queue.pop(0)
            InlineRunner.submit(self, lane, fn, *args, callbacks=callbacks, wants_progress=wants_progress, **kwargs)


class LateRunner(DeferredRunner):
    """A pool whose cancelled jobs still finish and send what they made (cancel came too late for them): only the
    session's key check keeps their results off the screen."""

    def cancel(self, lane):
        return InlineRunner.cancel(self, lane)


@pytest.fixture(scope="module")
def sample():
    return str(sample_images()[0].path)


@pytest.fixture(scope="module")
def session(sample):
    s = Session(allow_download=False)
    s.set_model("googlenet")
    s.classify(sample)
    return s


def _reference_probs(session, x):
    """softmax of a plain copy of the loaded network on the same input."""
    net = copy.deepcopy(session.state.loaded.module).eval()
    with torch.no_grad():
        return torch.softmax(net(x.float().contiguous()), 1)[0], net


def test_open_and_classify_headless(session, sample):
    st = session.state
    assert st.model == "googlenet" and st.model_status == "ready"
    assert st.trace is not None and st.trace.input_shape[2:] == (224, 224)
    assert session.classifier is not None and session.captures is not None
    shown = st.shown_image
    assert shown is not None and st.holds(shown.key) and shown.key.image is st.image
    probs, _ = _reference_probs(session, shown.x.to("cpu"))
    top = st.classification.top
    assert [p.index for p in top] == probs.topk(5).indices.tolist()
    assert [p.prob for p in top] == pytest.approx(probs.topk(5).values.tolist(), abs=1e-4)


def test_grad_cam_on_a_branch_with_curves(session):
    st = session.state
    target = st.classification.top[0].index
    session.attributions.run("grad_cam", target, block="inception4a", branch_index=1)
    [record] = st.attributions
    assert record.result.layer == "inception4a branch 2" and record.result.target == target
    # Grad-CAM by hand: the branch's output and its gradient through hooks on a plain copy of the network.
    x = session.attributions.image()[0]
    _, net = _reference_probs(session, x)
    seen = {}
    net.inception4a.branch2.register_forward_hook(lambda m, i, o: seen.update(a=o) or o.retain_grad())
    net(x)[0, target].backward()
    a = seen["a"]
    cam = (a.grad.mean((2, 3), keepdim=True) * a).sum(1)[0]
    assert torch.allclose(torch.as_tensor(record.result.raw), cam.detach(), rtol=1e-3, atol=1e-6)

    session.attributions.curves(steps=8)
    [record] = st.attributions
    deletion, insertion = record.curves["deletion"], record.curves["insertion"]
    probs, _ = _reference_probs(session, x)
    # Nothing deleted yet: the image's own probability; everything inserted: the same.
    assert deletion.scores[0] == pytest.approx(float(probs[target]), abs=1e-4)
    assert insertion.scores[-1] == pytest.approx(float(probs[target]), abs=1e-4)
    assert len(deletion.scores) == 9


def test_switching_models_leaves_nothing_of_the_previous(session, sample):
    st = session.state
    old_shown, old_loaded = st.shown_image, st.loaded
    assert st.attributions
    seen = []
    st.connect("attributions", seen.append)
    session.set_model("googlenet_paper")
    assert seen and seen[0] == ()  # the maps went with the model
    assert st.attributions == () and session.attributions.result is None
    # The image on screen stayed, and the new model classified it again.
    assert st.image is not None and st.image.source == sample
    assert st.loaded is not old_loaded and st.loaded.name == "googlenet_paper"
    assert st.shown_image is not old_shown and st.shown_image.model == "googlenet_paper"
    probs, _ = _reference_probs(session, st.shown_image.x.to("cpu"))
    assert st.classification.top[0].index == int(probs.argmax())
    with pytest.raises(ValueError, match="Compute a map first"):
        session.attributions.curves()


@pytest.mark.parametrize("runner_type", [DeferredRunner, LateRunner])
def test_a_job_that_ends_after_a_switch_leaves_nothing(sample, runner_type):
    runner = runner_type()
    s = Session(runner=runner, allow_download=False)
    s.set_model("googlenet")
    runner.run_all()
    s.classify(sample)  # queued: it runs after the switch below
    told = []
    s.on(ev.ImageShown, lambda e: told.append(e.shown.model))
    s.set_model("googlenet_paper")
    runner.run_all()
    # The queued googlenet classification ran, and its events were dropped; the new model's arrived.
    assert told == ["googlenet_paper"]
    assert s.state.shown_image.model == "googlenet_paper"


@pytest.mark.parametrize("runner_type", [DeferredRunner, LateRunner])
def test_a_map_that_ends_after_another_image_leaves_nothing(session, sample, tmp_path, runner_type):
    from PIL import Image

    other = tmp_path / "other.png"
    Image.open(sample).convert("RGB").rotate(90).save(other)
    runner = runner_type()
    session.runner = runner
    try:
        session.attributions.run("saliency")
        session.classify(str(other))
        runner.run_all()
    finally:
        session.runner = InlineRunner()
    assert session.state.image.source == str(other)
    assert session.state.attributions == ()


@pytest.mark.parametrize("runner_type", [InlineRunner, LateRunner])
def test_branch_evidence_belongs_to_its_image(session, sample, tmp_path, runner_type):
    from PIL import Image

    session.classify(sample)
    runner = runner_type()
    session.runner = runner
    try:
        session.attributions.branch_evidence()
        other = tmp_path / "turned.png"
        Image.open(sample).convert("RGB").rotate(180).save(other)
        if runner_type is InlineRunner:  # computed for the image on screen: the state holds it, until the next
            evidence = session.state.branch_evidence
            assert evidence is not None and evidence.model == session.state.model
            assert set(evidence.shares()) == {b.name for b in session.state.graph.blocks()}
        session.classify(str(other))
        if runner_type is LateRunner:
            runner.run_all()
    finally:
        session.runner = InlineRunner()
    assert session.state.branch_evidence is None


@pytest.mark.parametrize("runner_type", [InlineRunner, LateRunner])
def test_a_channels_visualisation_belongs_to_its_model(session, runner_type, tmp_path, monkeypatch):
    monkeypatch.setenv("INCEPTION_EXPLORER_CACHE", str(tmp_path / "cache"))
    runner = runner_type()
    session.runner = runner
    seen = []
    session.on(ev.ChannelVisualised, seen.append)
    block = [b.name for b in session.state.graph.blocks()][0]
    try:
        session.microscope.visualise(block, 1, [3], steps=2, size=32)
        if runner_type is LateRunner:  # the model is loaded again before the job ends: what it made is not shown
            session.set_model(session.state.model)
            runner.run_all()
            assert session.state.loaded is not None
    finally:
        session.runner = InlineRunner()
    if runner_type is InlineRunner:
        [event] = seen
        [vis] = event.visualisations
        assert not event.grid and vis.channel == 3 and vis.image.shape[:2] == (32, 32)
    else:
        assert seen == []


def test_errors_take_one_route():
    s = Session(allow_download=False)
    s.set_model("googlenet")
    s.load_weights(__file__)  # not a weights file
    assert s.state.problem is not None and s.state.problem.topic == "weights"
    assert "\n" not in s.state.problem.message and s.state.problem.message


def test_inline_runner_events_and_cancel():
    def task(n, *, cancel):
        for i in range(n):
            yield ev.Progress(i, n)

    got, ends = [], []
    runner = InlineRunner()
    runner.submit("x/y", task, 3, callbacks=Callbacks(on_event=got.append, on_done=lambda: ends.append("done")))
    assert got == [ev.Progress(0, 3), ev.Progress(1, 3), ev.Progress(2, 3)] and ends == ["done"]

    def replaced(*, cancel):  # a job whose first event starts another in its lane is cancelled by it
        yield 1
        yield 2

    got.clear()
    calls = Callbacks(on_event=lambda e: (got.append(e), runner.submit("x/y", task, 1, callbacks=Callbacks())),
                      on_cancel=lambda: ends.append("cancelled"))
    runner.submit("x/y", replaced, callbacks=calls)
    assert got == [1] and ends[-1] == "cancelled"
    with pytest.raises(ZeroDivisionError):
        run_task(lambda: 1 / 0, (), {}, runner.history[0].token, got.append)


def test_session_modules_import_without_qt_or_torch():
    code = textwrap.dedent("""
        import sys
        class NoQt:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph", "superqt"):
                    raise ImportError("Qt is not available here")
        sys.meta_path.insert(0, NoQt())
        import explorer.core.session.session, explorer.core.session.attributions, explorer.core.session.runner
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_the_black_baseline_is_black_in_the_model_s_own_input(tmp_path):
    """The demo model scales pixels to [-1, 1]: Integrated Gradients' "black" baseline starts from -1 there (the
    session fills the model's normalisation into the parameters), not from ImageNet's black (about -2.1)."""
    from PIL import Image

    from explorer.core.attribution.methods import attribute
    from explorer.core.demo.drawing import draw_images

    path = tmp_path / "star.png"
    Image.fromarray(draw_images(4, 5)[3].image).save(path)
    s = Session(allow_download=False)
    s.set_model("shapes_inception")
    s.classify(str(path))
    s.attributions.run("integrated_gradients", 3)
    [record] = s.state.attributions
    params = s.attributions.map_kwargs["params"]
    assert params.input_mean == params.input_std == (0.5, 0.5, 0.5) and params.ig_baseline == "black"
    x = s.attributions.image()[0]
    expected = attribute(s.captures.on("cpu"), x, "integrated_gradients", 3, baseline=-torch.ones_like(x))
    np.testing.assert_allclose(record.result.heatmap, expected.heatmap, rtol=1e-5, atol=1e-7)


def _cell_ranked_pixels(mask: np.ndarray, cell: int) -> np.ndarray:
    """The mask's own deletion order, built by hand: `cell`×`cell` squares by their share of the object's pixels,
    most first (ties in reading order), each square's pixels together in reading order."""
    h, w = mask.shape
    squares = [(-mask[y:y + cell, x:x + cell].mean(), y // cell, x // cell, y, x)
               for y in range(0, h, cell) for x in range(0, w, cell)]
    pixels = []
    for *_, y, x in sorted(squares):
        pixels += [yy * w + xx for yy in range(y, min(y + cell, h)) for xx in range(x, min(x + cell, w))]
    return np.array(pixels)


def test_the_window_s_curves_on_a_drawn_sample_delete_to_the_image_blurred():
    """The window's drawn samples on the demo model (as its sample buttons give them), Grad-CAM at the last block
    and its curves as the window computes them: deletion ends on the image blurred (σ = 1/20 of the side, by scipy
    here), not on the mean colour; and the object, as a map, deletes the class faster than every random order the
    session computed (its curve built here by hand: the object's squares, the blurred image, a plain copy of the
    network). With the mean colour the object mostly does not (tests/core/test_demo_attribution.py).

    The object is its mask grown by a pixel: a shape is told by its outline, which the pixels on both sides of it
    draw (with the shipped weights before they were trained with blurred backgrounds, the mask alone lost to a
    random order on the triangle)."""
    from PIL import Image
    from scipy.ndimage import binary_dilation, gaussian_filter

    from explorer.core.attribution.faithfulness import DEFAULT_STEPS, VERDICT_MARGIN
    from explorer.core.demo.samples import drawn_samples
    from explorer.core.demo.training import network_input

    s = Session(allow_download=False)
    s.set_model("shapes_inception")
    net = copy.deepcopy(s.state.loaded.module).eval()
    for sample in drawn_samples():
        s.classify(ImageInput(Image.fromarray(sample.image), f"<drawn {sample.name}>", mask=sample.mask))
        s.attributions.run("grad_cam", sample.label, block="inception5a")
        s.attributions.curves()
        [deletion] = [r.curves["deletion"] for r in s.state.attributions if r.result is s.attributions.result]
        x = s.attributions.image()[0]
        torch.testing.assert_close(x, network_input(sample.image[None]))
        h, w = x.shape[-2:]
        sigma = max(h, w) / 20  # torchvision's kernel of 2·round(3σ) + 1 taps, reflected at the border
        blurred = torch.from_numpy(np.stack([gaussian_filter(c, sigma, mode="mirror", truncate=round(3 * sigma) / sigma)
                                             for c in x[0].numpy()]))[None]
        with torch.no_grad():
            p_blurred, p_flat = torch.softmax(net(torch.cat([blurred, torch.zeros_like(x)])), 1)[:, sample.label]
        # the two substrates can be told apart (the demo model learnt both as no evidence: about 1/6 each)
        assert abs(float(p_blurred) - float(p_flat)) > 1e-4
        assert deletion.scores[-1] == pytest.approx(float(p_blurred), abs=1e-5)
        assert len(deletion.scores) == DEFAULT_STEPS + 1 and deletion.substrate == "blur"

        grown = binary_dilation(sample.mask, structure=np.ones((3, 3), dtype=bool))
        order = _cell_ranked_pixels(grown, max(1, round(min(h, w) / 28)))
        counts = np.round(np.linspace(0, h * w, DEFAULT_STEPS + 1)).astype(int)
        images = []
        for n in counts:
            deleted = np.zeros(h * w, dtype=bool)
            deleted[order[:n]] = True
            images.append(torch.where(torch.from_numpy(deleted.reshape(h, w)), blurred[0], x[0]))
        with torch.no_grad():
            mask_curve = torch.softmax(net(torch.stack(images)), 1)[:, sample.label].numpy()
        mask_auc = float(np.trapezoid(mask_curve, np.linspace(0, 1, DEFAULT_STEPS + 1)))
        assert mask_auc < deletion.random_aucs.min() - VERDICT_MARGIN, (sample.name, mask_auc, deletion.random_aucs)
