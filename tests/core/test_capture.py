"""Activation capture, branch statistics and captum attributions on input-sensitive networks."""

import pytest
import torch
import torch.nn.functional as F
from netutil import calibrated_model, synthetic_batch

from explorer.core.microscope.activations import branch_stats, feature_maps, stats_csv, upsample
from explorer.core.attribution.methods import AttributionParams, attribute, branch_shares
from explorer.core.cancel import Cancelled, CancelToken
from explorer.core.graph.capture import CaptureModel

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def images(n, size, seed=3):
    return (synthetic_batch(n, size, torch.Generator().manual_seed(seed)) - MEAN) / STD


@pytest.fixture(scope="module")
def googlenet(graph_of):
    model = calibrated_model("googlenet")
    return model, CaptureModel(model, graph_of("googlenet"))


@pytest.fixture(scope="module")
def inception_v3(graph_of):
    model = calibrated_model("inception_v3")
    return model, CaptureModel(model, graph_of("inception_v3"))


def test_networks_are_input_sensitive(googlenet):
    model, cm = googlenet
    with torch.no_grad():
        top1 = cm(images(8, 128)).argmax(1)
    assert len(set(top1.tolist())) >= 3


def test_googlenet_branches_equal_hooks_on_the_plain_model(googlenet, graph_of):
    model, cm = googlenet
    x = images(2, 128)
    seen = {}
    handles = [
        model.get_submodule(f"{b.name}.branch{k}").register_forward_hook(
            lambda m, i, o, key=(b.name, k - 1): seen.__setitem__(key, o))
        for b in graph_of("googlenet").blocks() for k in range(1, 5)
    ]
    with torch.no_grad():
        logits = model(x)
    for h in handles:
        h.remove()
    cap = cm.capture(x)
    assert torch.equal(cap.logits, logits)  # the same forward classifies and captures
    for (block, k), tensor in seen.items():
        assert torch.equal(cap.branch(block, k), tensor), (block, k)
    for block, tensors in cap.branches.items():
        assert torch.equal(torch.cat(tensors, 1), cap.outputs[block])


def test_inception_v3_branches_equal_hooks_and_concatenate(inception_v3, graph_of):
    model, cm = inception_v3
    graph = graph_of("inception_v3")
    x = images(1, 160)
    expected = {}
    handles = []
    for node in graph.blocks():
        for k, branch in enumerate(node.branches):
            last = branch.all_layers()[-1]
            if last.type == "conv" and not branch.parallel:  # ends in a BasicConv2d: hook its output
                mod = model.get_submodule(last.name.rsplit(".", 1)[0])
                handles.append(mod.register_forward_hook(
                    lambda m, i, o, key=(node.name, k): expected.__setitem__(key, o)))
    with torch.no_grad():
        logits = model(x)
    cap = cm.capture(x)
    assert torch.equal(cap.logits, logits)
    assert len(expected) > 30
    for (block, k), tensor in expected.items():
        assert torch.equal(cap.branch(block, k), tensor), (block, k)
    for block, tensors in cap.branches.items():
        assert all(t is not None for t in tensors)
        assert torch.equal(torch.cat(tensors, 1), cap.outputs[block])
    # Mixed_6a's pool branch is a bare F.max_pool2d: captured all the same.
    assert torch.equal(cap.branch("Mixed_6a", 2), F.max_pool2d(cap.outputs["Mixed_5d"], 3, 2))


def test_branch_stats_and_feature_maps(googlenet, graph_of):
    _, cm = googlenet
    cap = cm.capture(images(1, 128))
    stats = branch_stats(cap, graph_of("googlenet"), "inception4c")
    assert [s.label for s in stats] == [b.label for b in graph_of("googlenet").node("inception4c").branches]
    assert sum(s.energy_share for s in stats) == pytest.approx(1.0, abs=1e-9)
    t = cap.branch("inception4c", 1)
    assert stats[1].zero_fraction == pytest.approx(float((t == 0).float().mean()))
    assert stats[1].max == pytest.approx(float(t.max())) and stats[1].channels == t.shape[1]
    fm = feature_maps(t, order="mean", limit=10)
    assert fm.maps.shape == (10, *t.shape[2:]) and list(fm.means) == sorted(fm.means, reverse=True)
    assert (fm.maps[0] == t[0, fm.channels[0]].numpy()).all()
    shared, per = fm.normalised("shared"), fm.normalised("channel")
    assert shared.min() == 0 and shared.max() == 1
    assert all(per[i].max() == 1 for i in range(10) if fm.maps[i].max() > fm.maps[i].min())
    assert upsample(fm.maps[0], (128, 128)).shape == (128, 128)
    assert stats_csv({"inception4c": stats}).count("\n") == 5


def test_branch_shares_are_a_distribution_per_block(googlenet):
    _, cm = googlenet
    shares = branch_shares(cm, images(1, 128))
    assert set(shares) == set(cm.block_branches)
    for values in shares.values():
        assert all(v >= 0 for v in values) and sum(values) == pytest.approx(1.0)
    # Different images rely on the branches differently.
    other = branch_shares(cm, images(1, 128, seed=11))
    assert any(abs(a - b) > 1e-3 for blk in shares for a, b in zip(shares[blk], other[blk]))


def test_integrated_gradients_completeness(googlenet):
    """Attributions add up to f(x) − f(baseline): within 5 % with 128 steps on a short path.

    Random networks are rough along long paths (black → image): there the same property needs
    many more steps, which is what the reported convergence delta and its flag are for.
    """
    _, cm = googlenet
    x = images(1, 64)
    with torch.no_grad():
        target = int(cm(x).argmax(1))
    dim = 0.9 * x  # the image, slightly dimmed
    r = attribute(cm, x, "integrated_gradients", target, baseline=dim, params=AttributionParams(ig_steps=128, internal_batch_size=32))
    with torch.no_grad():
        gap = float(cm(x)[0, target] - cm(dim)[0, target])
    assert abs(gap) > 1.0
    assert r.heatmap.sum() == pytest.approx(gap, rel=0.05)
    assert r.delta == pytest.approx(abs(r.heatmap.sum() - gap), abs=1e-3 * abs(gap))
    assert r.delta_relative < 0.05 and not r.delta_flagged
    assert r.heatmap.shape == (64, 64) and r.target == target
    # Too few steps from a black image: the delta is large and flagged.
    rough = attribute(cm, x, "integrated_gradients", target, params=AttributionParams(ig_steps=4))
    assert rough.delta_flagged


def test_grad_cam_on_a_branch_has_the_branch_resolution(googlenet):
    _, cm = googlenet
    x = images(1, 128)
    cap = cm.capture(x)
    r = attribute(cm, x, "grad_cam", node="inception4a", branch=2)
    assert r.raw.shape == tuple(cap.branch("inception4a", 2).shape[2:])
    assert r.heatmap.shape == (128, 128) and r.heatmap.min() >= 0
    whole = attribute(cm, x, "grad_cam", node="inception5b")
    assert whole.raw.shape == tuple(cap.outputs["inception5b"].shape[2:])


def test_saliency_and_occlusion_report_progress(googlenet):
    _, cm = googlenet
    x = images(1, 96)
    sal = attribute(cm, x, "saliency")
    assert sal.heatmap.shape == (96, 96) and sal.heatmap.max() > 0
    seen = []
    occ = attribute(cm, x, "occlusion", params=AttributionParams(occlusion_window=32, occlusion_stride=32),
                    progress=lambda d, t: seen.append((d, t)))
    assert occ.heatmap.shape == (96, 96)
    assert seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_running_attribution_can_be_cancelled(googlenet):
    _, cm = googlenet
    token = CancelToken()
    seen = []

    def progress(done, total):
        seen.append(done)
        token.cancel()

    with pytest.raises(Cancelled):
        attribute(cm, images(1, 96), "integrated_gradients",
                  params=AttributionParams(ig_steps=64, internal_batch_size=8), progress=progress, cancel=token)
    assert seen == [1]  # stopped after the first of nine forward passes
