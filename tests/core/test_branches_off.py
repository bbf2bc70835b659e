"""Branches switched off in the session (issue 26): the top-5, the activations and a map of the image on screen
come from the modified network, and the key drops what the previous network made.

The reference is torchvision's own GoogLeNet (calibrated random weights, the same ones the session loads from a
file) with a forward hook on the branch module that replaces its output by zeros or by its per-channel spatial
mean: it knows nothing of our block graph, capture network or switches. The session classifies with the BN-folded,
channels-last copy of the network: probabilities agree to ~1e-5, activations to float32 rounding.
"""

from __future__ import annotations

import copy

import pytest
import torch
from netutil import calibrated_model, write_weights

from explorer.core.model.samples import sample_images
from explorer.core.session import events as ev
from explorer.core.session.runner import InlineRunner
from explorer.core.session.session import Session

BRANCH = ("inception4a", 1)  # "inception4a branch 2"
#: The demo model's branch switched off, and how far the drawn star's probability falls at least (measured: see
#: the test).
DEMO_BRANCH = ("inception3b", 1)
DEMO_DROP = 0.3  # measured with the hook alone: 0.998 → 0.008, and a ring comes first


class LateRunner(InlineRunner):
    """Queues jobs and runs them when told; a cancelled job still finishes and sends what it made (a pool whose
    cancel came too late): only the session's key check keeps it off the screen."""

    def __init__(self):
        super().__init__()
        self.queue = []

    def submit(self, lane, fn, *args, callbacks, wants_progress=False, **kwargs):
        self.queue.append((lane, fn, args, callbacks, wants_progress, kwargs))

    def running(self, lane):
        return next((job for job in self.queue if job[0] == lane), None) or super().running(lane)

    def run_all(self):
        while self.queue:
            lane, fn, args, callbacks, wants_progress, kwargs = self.queue.pop(0)
            InlineRunner.submit(self, lane, fn, *args, callbacks=callbacks, wants_progress=wants_progress, **kwargs)


def hooked(model, mode: str | None, branch=BRANCH):
    """A copy of `model` whose `branch` module's output is replaced ("zero", "mean") or left (None)."""
    net = copy.deepcopy(model).eval()
    if mode is not None:
        block, k = branch

        def replace(m, i, o):
            return torch.zeros_like(o) if mode == "zero" else o.mean((2, 3), keepdim=True).expand_as(o).clone()
        net.get_submodule(f"{block}.branch{k + 1}").register_forward_hook(replace)
    return net


def reference(model, x, mode: str | None):
    """(softmax, inception4b's output) of the hooked torchvision network on the session's input `x`."""
    net = hooked(model, mode)
    seen = {}
    net.inception4b.register_forward_hook(lambda m, i, o: seen.update(out=o))
    with torch.no_grad():
        probs = torch.softmax(net(x.float().contiguous()), 1)[0]
    return probs, seen["out"]


@pytest.fixture(scope="module")
def model():
    return calibrated_model("googlenet")


@pytest.fixture(scope="module")
def session(model, tmp_path_factory):
    weights = write_weights(model, tmp_path_factory.mktemp("w") / "googlenet.pth")
    s = Session(allow_download=False)
    s.set_model("googlenet", weights=str(weights))
    s.classify(str(sample_images()[0].path))
    assert not s.state.loaded.weights.is_random
    return s


def check_top5(st, probs):
    top = st.classification.top
    assert [p.index for p in top] == probs.topk(5).indices.tolist()
    assert [p.prob for p in top] == pytest.approx(probs.topk(5).values.tolist(), abs=1e-4)


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_a_branch_off_gives_the_hooked_network_s_top5_and_activations(session, model, mode):
    st = session.state
    session.restore_branches()
    x = st.shown_image.x.to("cpu")
    plain, plain_4b = reference(model, x, None)
    check_top5(st, plain)

    session.set_knockout_mode(mode)
    session.switch_branch(*BRANCH, on=False)
    assert st.branches_off == {BRANCH} and st.result_key.off == (frozenset({BRANCH}), mode)
    shown = st.shown_image
    assert shown is not None and st.holds(shown.key) and shown.key.off == (frozenset({BRANCH}), mode)
    probs, out_4b = reference(model, shown.x.to("cpu"), mode)
    check_top5(st, probs)
    # The switch changed the answer measurably (else the comparison above would prove nothing).
    assert (probs - plain).abs().max() > 1e-3
    # A later block's activations are the modified network's, not the plain one's.
    cap = shown.capture
    got = cap.outputs["inception4b"].float().cpu()
    assert torch.allclose(got, out_4b, rtol=1e-3, atol=1e-3 * out_4b.abs().max().item())
    assert (out_4b - plain_4b).abs().max() > 1e-2 * out_4b.abs().max().item()
    # The branch itself shows what its block joined: zeros, or its per-channel mean (flat maps).
    branch = cap.branches["inception4a"][1].float()
    if mode == "zero":
        assert branch.abs().max().item() == 0.0
    else:
        assert torch.allclose(branch, branch.mean((2, 3), keepdim=True).expand_as(branch), atol=1e-5)
        assert branch.abs().max().item() > 0

    session.restore_branches()
    assert st.result_key.off is None
    check_top5(st, reference(model, st.shown_image.x.to("cpu"), None)[0])


def test_a_map_is_the_modified_network_s(session, model):
    """Grad-CAM on inception4b with branch 2 of inception4a off equals Grad-CAM by hand on the hooked network."""
    st = session.state
    session.set_knockout_mode("zero")
    session.switch_branch(*BRANCH, on=False)
    target = st.classification.top[0].index
    session.attributions.run("grad_cam", target, block="inception4b")
    [record] = st.attributions
    x = session.attributions.image()[0]
    net = hooked(model, "zero")
    seen = {}
    net.inception4b.register_forward_hook(lambda m, i, o: seen.update(a=o) or o.retain_grad())
    net(x)[0, target].backward()
    a = seen["a"]
    cam = (a.grad.mean((2, 3), keepdim=True) * a).sum(1)[0].detach()
    assert torch.allclose(torch.as_tensor(record.result.raw), cam, rtol=1e-3, atol=1e-6)
    plain = hooked(model, None)
    seen.clear()
    plain.inception4b.register_forward_hook(lambda m, i, o: seen.update(a=o) or o.retain_grad())
    plain(x)[0, target].backward()
    a = seen["a"]
    plain_cam = (a.grad.mean((2, 3), keepdim=True) * a).sum(1)[0].detach()
    assert (plain_cam - cam).abs().max() > 1e-3 * cam.abs().max()
    session.restore_branches()
    assert st.attributions == ()  # made with the branch off: gone with it


def test_knock_out_each_is_on_top_of_the_branches_off(session, model):
    """The Branch shares tab's knock-outs with inception4a branch 2 off: the plain logit is the hooked network's,
    knocking that branch out again changes nothing, and another branch's knock-out is the network with both
    hooked."""
    st = session.state
    session.set_knockout_mode("zero")
    session.switch_branch(*BRANCH, on=False)
    target = st.classification.top[0].index
    session.attributions.knock_out_each(target, "zero")
    effects = st.knockouts
    x = session.attributions.image()[0]
    with torch.no_grad():
        logit = hooked(model, "zero")(x)[0, target].item()
        both = hooked(hooked(model, "zero"), "zero", ("inception5a", 0))(x)[0, target].item()
    assert effects.logit == pytest.approx(logit, rel=1e-4, abs=1e-4)
    by_branch = {(e.block, e.branch_index): e for e in effects.effects}
    assert by_branch[BRANCH].delta_logit == pytest.approx(0.0, abs=1e-4)
    assert by_branch[("inception5a", 0)].logit == pytest.approx(both, rel=1e-4, abs=5e-4)
    assert abs(by_branch[("inception5a", 0)].delta_logit) > 1e-3
    session.restore_branches()
    assert st.knockouts is None


def test_switching_drops_what_the_previous_network_made(session):
    st = session.state
    session.restore_branches()
    session.set_knockout_mode("zero")
    old_shown, old_class = st.shown_image, st.classification
    target = old_class.top[0].index
    session.attributions.run("grad_cam", target, block="inception4b")
    assert st.attributions
    heard = []
    session.on(ev.BranchesSwitched, heard.append)
    dropped = []
    st.connect("classification", dropped.append)
    session.switch_branch("inception5b", 3, on=False)
    assert heard == [ev.BranchesSwitched((frozenset({("inception5b", 3)}), "zero"))]
    assert not st.holds(old_shown.key) and st.attributions == () and st.knockouts is None
    assert dropped[0] is None and st.classification is not old_class  # dropped, then classified again
    assert st.shown_image is not old_shown and st.holds(st.shown_image.key)
    # The mode with nothing off is the same network: nothing goes; with a branch off it is another.
    key = st.result_key
    session.set_knockout_mode("mean")
    assert st.result_key != key and len(heard) == 2
    session.restore_branches()
    key = st.result_key
    session.set_knockout_mode("zero")
    assert st.result_key == key and len(heard) == 3
    with pytest.raises(ValueError):
        session.switch_branch("inception4a", 7, on=False)
    with pytest.raises(ValueError):
        session.switch_branch("conv1", 0, on=False)


def test_a_classification_started_before_the_switch_does_not_land(model, tmp_path):
    """A pool's job that ends after the switch: the key keeps its top-5 off the screen."""
    runner = LateRunner()
    weights = write_weights(model, tmp_path / "g.pth")
    s = Session(runner=runner, allow_download=False)
    s.set_model("googlenet", weights=str(weights))
    runner.run_all()
    st = s.state
    shown = []
    st.connect("shown_image", shown.append)
    s.classify(str(sample_images()[0].path))  # queued
    s.switch_branch(*BRANCH, on=False)  # queues the new network's classification
    runner.run_all()
    # Both ran to their end; only the second one's image reached the state.
    assert [x.key.off for x in shown if x is not None] == [(frozenset({BRANCH}), "zero")]
    assert st.shown_image is not None and st.shown_image.key.off == (frozenset({BRANCH}), "zero")
    probs, _ = reference(model, st.shown_image.x.to("cpu"), "zero")
    check_top5(st, probs)


def test_a_batch_moves_aside_and_the_microscope_looks_at_the_plain_network(session, model):
    st = session.state
    session.restore_branches()
    session.images.batch([str(sample_images()[0].path)])
    assert st.batch is not None and st.batch.status == "done"
    batch = st.batch
    session.switch_branch(*BRANCH, on=False)
    assert st.batch is None and st.previous_batch is batch
    assert session.captures.plain("cpu").gm is not session.captures.on("cpu").gm
    assert session.microscope.subject()[0]("cpu") is session.captures.plain("cpu")
    # A batch made now is the modified network's too (it does not run the plain folded network).
    session.images.batch([str(sample_images()[0].path)])
    [row] = st.batch.results
    probs, _ = reference(model, st.shown_image.x.to("cpu"), "zero")
    assert [p.index for p in row.top] == probs.topk(5).indices.tolist()
    assert [p.prob for p in row.top] == pytest.approx(probs.topk(5).values.tolist(), abs=1e-4)
    session.restore_branches()


def test_the_demo_model_s_answer_changes_with_a_branch_off():
    """shapes_inception, trained and shipped, on a drawn star: with inception3b's branch 2 off (zeros) the
    session's top-5 is that of the demo network with a forward hook zeroing that branch module's output, the
    star's probability falls measurably and the top-1 changes."""
    from PIL import Image

    from explorer.core.demo.samples import drawn_samples
    from explorer.core.model.loading import load_model
    from explorer.core.session.state import ImageInput

    loaded = load_model("shapes_inception")
    assert not loaded.weights.is_random
    s = Session(allow_download=False)
    s.set_model("shapes_inception")
    [star] = drawn_samples(("star",))
    s.classify(ImageInput(Image.fromarray(star.image), "<drawn star>"))
    st = s.state
    assert st.classification.top[0].index == star.label
    s.switch_branch(DEMO_BRANCH[0], DEMO_BRANCH[1], on=False)
    x = st.shown_image.x.to("cpu").float().contiguous()
    net = copy.deepcopy(loaded.module).eval()
    with torch.no_grad():
        plain = torch.softmax(net(x), 1)[0]
    block, k = DEMO_BRANCH
    net.get_submodule(f"{block}.branch{k + 1}").register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    with torch.no_grad():
        probs = torch.softmax(net(x), 1)[0]
    check_top5(st, probs)
    assert plain[star.label] - probs[star.label] > DEMO_DROP, (plain[star.label], probs[star.label])
    assert st.classification.top[0].index != star.label
