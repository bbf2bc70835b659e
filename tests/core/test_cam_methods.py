"""The CAM family (captum's Grad-CAM, pytorch-grad-cam's others) at a block and at one branch, an
empty map explained, and SmoothGrad."""

import numpy as np
import pytest
import torch
from netutil import calibrated_model, synthetic_batch

from explorer.core.attribution.methods import CAM_METHODS, LIBRARY_CAMS, METHODS, AttributionParams, attribute
from explorer.core.graph.capture import CaptureModel

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
BLOCK = "inception4c"  # 4×4 at 64 px
FAST = AttributionParams(ig_steps=4, internal_batch_size=4, smoothgrad_samples=3, score_cam_batch=128)


@pytest.fixture(scope="module")
def cm(graph_of):
    return CaptureModel(calibrated_model("googlenet"), graph_of("googlenet"))


@pytest.fixture(scope="module")
def x():
    return (synthetic_batch(2, 64, torch.Generator().manual_seed(5))[1:] - MEAN) / STD


def hand_grad_cam(cm, x, target, layer):
    """Grad-CAM by hand (Selvaraju et al.): hooks on the probe, weights = the gradient's spatial mean."""
    kept = {}
    h = layer.register_forward_hook(lambda m, i, o: kept.update(a=o))
    try:
        logits = cm(x)
        (g,) = torch.autograd.grad(logits[0, target], kept["a"])
    finally:
        h.remove()
    return (g.mean((2, 3), keepdim=True) * kept["a"]).sum(1)[0].detach()


def test_every_new_method_is_registered():
    assert set(LIBRARY_CAMS) <= set(METHODS) and {"smoothgrad_integrated_gradients", "smoothgrad_saliency"} <= set(METHODS)
    from explorer.core.attribution.methods import baseline_for, branch_shares  # noqa: F401  (still importable)


@pytest.mark.parametrize("method", CAM_METHODS)
def test_cam_maps_at_a_block_and_at_a_branch(cm, x, method):
    seen = []
    block = attribute(cm, x, method, 3, node=BLOCK, params=FAST, progress=lambda d, t: seen.append((d, t)))
    branch = attribute(cm, x, method, 3, node=BLOCK, branch=1, params=FAST)
    assert block.heatmap.shape == branch.heatmap.shape == (64, 64)
    assert block.raw.shape == branch.raw.shape == (4, 4)  # at the layer's resolution
    assert block.layer == BLOCK and branch.layer == f"{BLOCK} branch 2"
    assert np.isfinite(block.heatmap).all() and (block.heatmap >= 0).all()
    assert not np.allclose(block.raw, branch.raw)  # the branch's tensor, not the block's
    assert seen and seen[-1][0] == seen[-1][1]  # progress ends at its total


def test_grad_cam_matches_a_hand_computation_at_a_branch(cm, x):
    layer = cm.layer(BLOCK, 2)
    ref = hand_grad_cam(cm, x, 7, layer)
    r = attribute(cm, x, "grad_cam", 7, node=BLOCK, branch=2, params=AttributionParams(cam_map="signed"))
    np.testing.assert_allclose(r.raw, ref.numpy(), rtol=1e-4, atol=1e-6)
    up = torch.nn.functional.interpolate(ref[None, None], size=(64, 64), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(r.heatmap, up[0, 0].numpy(), rtol=1e-4, atol=1e-6)


def test_an_empty_map_is_explained(cm, x):
    """A class against which every weighted activation argues: the positive map is empty, a notice
    says why and the signed and absolute maps show it."""
    layer = cm.layer(BLOCK)
    with torch.no_grad():
        order = cm(x)[0].argsort().tolist()
    target = next(t for t in order[:200] if (hand_grad_cam(cm, x, t, layer) <= 0).all())
    r = attribute(cm, x, "grad_cam", target, node=BLOCK)
    assert (r.heatmap == 0).all() and r.notice and "signed or absolute" in r.notice
    signed = attribute(cm, x, "grad_cam", target, node=BLOCK, params=AttributionParams(cam_map="signed"))
    absolute = attribute(cm, x, "grad_cam", target, node=BLOCK, params=AttributionParams(cam_map="absolute"))
    assert signed.signed and signed.heatmap.min() < 0 and signed.notice is None
    np.testing.assert_allclose(absolute.heatmap, np.abs(signed.heatmap), rtol=1e-5)
    # A class with positive evidence gets no notice.
    assert attribute(cm, x, "grad_cam", order[-1], node=BLOCK).notice is None


@pytest.mark.parametrize("method", ["smoothgrad_saliency", "smoothgrad_integrated_gradients"])
def test_smoothgrad_averages_noisy_maps(cm, x, method):
    plain = attribute(cm, x, method.removeprefix("smoothgrad_"), 3, params=FAST)
    torch.manual_seed(0)
    smooth = attribute(cm, x, method, 3, params=FAST)
    assert smooth.heatmap.shape == (64, 64) and np.isfinite(smooth.heatmap).all()
    assert not np.allclose(smooth.heatmap, plain.heatmap)
    # No noise: every sample is the image itself, so the average is the plain map.
    torch.manual_seed(0)
    quiet = attribute(cm, x, method, 3, params=AttributionParams(ig_steps=4, internal_batch_size=4,
                                                                 smoothgrad_samples=2, smoothgrad_stdev=0.0))
    np.testing.assert_allclose(quiet.heatmap, plain.heatmap, rtol=1e-4, atol=1e-5)
