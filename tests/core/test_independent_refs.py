"""The numbers only this tool shows, each pinned to an independent computation.

Branch shares and Grad-CAM from gradients taken by hand on the plain torchvision GoogLeNet (forward
hooks on its branch modules, `torch.autograd.grad`), the black baseline from torchvision's Normalize,
branch energy from squared activations, factorisation multiply-adds and the Compare window's
multiply-adds notes from FlopCounterMode, and traced shapes from real forwards of small networks with
non-square strides and kernels and ceil-mode pooling.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from netutil import calibrated_model, synthetic_batch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import Normalize

from explorer.core.microscope.activations import branch_stats
from explorer.core.attribution.methods import AttributionParams, attribute, baseline_for, branch_shares
from explorer.core.graph.blockgraph import block_graph_from_module
from explorer.core.graph.capture import CaptureModel
from explorer.core.shapes.compare import compare_models
from explorer.core.shapes.factorisation import factorisations
from explorer.core.graph.program import pool_output_size
from explorer.core.shapes.trace import trace_shapes
from explorer.core.model.zoo import get_spec

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BLOCKS = ("inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d",
          "inception4e", "inception5a", "inception5b")


def image(size=96, seed=5):
    """One preprocessed image (1, 3, size, size), normalised with torchvision's Normalize."""
    return Normalize(MEAN, STD)(synthetic_batch(1, size, torch.Generator().manual_seed(seed)))


@pytest.fixture(scope="module")
def googlenet(graph_of):
    model = calibrated_model("googlenet")
    return model, CaptureModel(model, graph_of("googlenet"))


def branch_tensors(model, x, *, grad: bool):
    """Each GoogLeNet block's four branch outputs, from hooks on torchvision's own branch modules, and
    the logits of the same forward."""
    seen = {}
    handles = [model.get_submodule(f"{b}.branch{k}").register_forward_hook(
        lambda m, i, o, key=(b, k - 1): seen.__setitem__(key, o)) for b in BLOCKS for k in range(1, 5)]
    try:
        with torch.set_grad_enabled(grad):
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return logits, {b: [seen[(b, k)] for k in range(4)] for b in BLOCKS}


# -- branch shares -----------------------------------------------------------------------------------


def shares_by_hand(model, x, target):
    """|gradient of the target logit × activation| summed per branch, normalised per block."""
    logits, outs = branch_tensors(model, x, grad=True)
    flat = [t for b in BLOCKS for t in outs[b]]
    grads = torch.autograd.grad(logits[0, target], flat)
    sums = [float((g * a).detach().abs().sum()) for g, a in zip(grads, flat)]
    return {b: [s / sum(sums[4 * i: 4 * i + 4]) for s in sums[4 * i: 4 * i + 4]] for i, b in enumerate(BLOCKS)}


def test_branch_shares_equal_gradient_times_activation_on_the_plain_model(googlenet):
    model, cm = googlenet
    x = image(64)
    with torch.no_grad():
        ranked = model(x)[0].argsort(descending=True).tolist()
    top, other = ranked[0], ranked[500]
    expected = {t: shares_by_hand(model, x, t) for t in (top, other)}
    # The evidence for two classes flows through the branches differently, so using the wrong class
    # (or none) shows.
    assert max(abs(a - b) for blk in BLOCKS for a, b in zip(expected[top][blk], expected[other][blk])) > 0.02
    for t in (top, other):
        got = branch_shares(cm, x, target=t)
        assert set(got) == set(BLOCKS)
        for blk in BLOCKS:
            assert got[blk] == pytest.approx(expected[t][blk], rel=1e-4, abs=1e-6), (t, blk)
    # No target: the top-1 class's shares.
    default = branch_shares(cm, x)
    for blk in BLOCKS:
        assert default[blk] == pytest.approx(expected[top][blk], rel=1e-4, abs=1e-6), blk
    # Branches are not interchangeable: in some block the shares are far from uniform (a reversed
    # order cannot match by symmetry).
    assert any(max(v) - min(v) > 0.1 for v in expected[top].values())


# -- Grad-CAM on one branch -------------------------------------------------------------------------


def grad_cam_by_hand(activation, gradient):
    """ReLU of the channels weighted by their spatially averaged gradient (Selvaraju et al. 2017)."""
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * activation).sum(1))[0]


@pytest.mark.parametrize("block,branch", [("inception4a", 2), ("inception4c", 0)])
def test_grad_cam_on_a_branch_uses_that_branchs_activation_and_gradient(googlenet, block, branch):
    model, cm = googlenet
    x = image(112)
    target = 7
    logits, outs = branch_tensors(model, x, grad=True)
    tensors = outs[block]
    whole = torch.cat(tensors, 1)
    grads = torch.autograd.grad(logits[0, target], tensors)
    expected = grad_cam_by_hand(tensors[branch], grads[branch]).detach().numpy()
    expected_block = grad_cam_by_hand(whole, torch.cat(grads, 1)).detach().numpy()
    # The branch and its block have the same H×W but different maps: a branch's map made from the
    # whole block would show here.
    assert expected.shape == expected_block.shape
    assert np.abs(expected - expected_block).max() > 0.1 * np.abs(expected).max() > 0

    # `raw` is the signed map (before the ReLU, so that an empty map can be explained): its positive part.
    r = attribute(cm, x, "grad_cam", target, node=block, branch=branch)
    np.testing.assert_allclose(np.maximum(r.raw, 0), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    r_block = attribute(cm, x, "grad_cam", target, node=block)
    np.testing.assert_allclose(np.maximum(r_block.raw, 0), expected_block, rtol=1e-4,
                               atol=1e-5 * np.abs(expected_block).max())


# -- Integrated Gradients baselines -----------------------------------------------------------------


def test_black_baseline_is_a_black_image_normalised():
    x = image(32)
    black = Normalize(MEAN, STD)(torch.zeros(1, 3, 32, 32))  # pixel value 0 in every channel
    got = baseline_for(x, "black")
    assert got.shape == x.shape
    torch.testing.assert_close(got, black)
    # The mean colour is a different image: 0 after normalisation is (0.485, 0.456, 0.406) in pixels.
    mean_colour = baseline_for(x, "zero")
    grey = torch.tensor(MEAN).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    torch.testing.assert_close(mean_colour, Normalize(MEAN, STD)(grey))
    assert (got - mean_colour).abs().min() > 1.5


def test_integrated_gradients_starts_from_the_black_image_by_default(googlenet):
    _, cm = googlenet
    x = image(64)
    params = AttributionParams(ig_steps=4, internal_batch_size=4)
    assert params.ig_baseline == "black"
    default = attribute(cm, x, "integrated_gradients", 3, params=params)
    black = attribute(cm, x, "integrated_gradients", 3, params=params,
                      baseline=Normalize(MEAN, STD)(torch.zeros_like(x)))
    mean_colour = attribute(cm, x, "integrated_gradients", 3, params=params, baseline=torch.zeros_like(x))
    np.testing.assert_allclose(default.heatmap, black.heatmap, rtol=1e-5, atol=1e-7)
    assert not np.allclose(default.heatmap, mean_colour.heatmap, rtol=1e-2, atol=1e-4)


# -- branch energy ----------------------------------------------------------------------------------


def test_branch_energy_is_the_share_of_squared_activations(googlenet, graph_of):
    model, cm = googlenet
    x = image(96)
    _, outs = branch_tensors(model, x, grad=False)
    cap = cm.capture(x)
    for blk in ("inception3b", "inception4d"):
        arrays = [t[0].numpy().astype(np.float64) for t in outs[blk]]
        energy = [float((a * a).sum()) for a in arrays]
        stats = branch_stats(cap, graph_of("googlenet"), blk)
        assert [s.index for s in stats] == [0, 1, 2, 3]
        for s, a, e in zip(stats, arrays, energy):
            assert s.energy_share == pytest.approx(e / sum(energy), rel=1e-6)
            assert s.mean == pytest.approx(float(a.mean()), rel=1e-5)
            assert s.channels == a.shape[0]
        # Squares, not magnitudes: the two orderings of shares differ enough to tell apart.
        l1 = [float(np.abs(a).sum()) for a in arrays]
        assert max(abs(e / sum(energy) - m / sum(l1)) for e, m in zip(energy, l1)) > 0.005  # ≫ the 1e-6 above


# -- factorisation multiply-adds --------------------------------------------------------------------


def flops_per_layer(convs, cin, size):
    """FLOPs FlopCounterMode counts for each convolution of a real stack (a MAC is two FLOPs)."""
    stack = nn.Sequential(*convs)
    counter = FlopCounterMode(display=False, depth=2)
    with counter:
        stack(torch.empty(1, cin, *size, device="meta"))
    counts = counter.get_flop_counts()
    return [sum(counts.get(f"Sequential.{i}", {}).values()) for i in range(len(convs))]


@pytest.mark.parametrize("cin,cout,size,n", [(64, 64, (35, 35), 7), (192, 96, (17, 23), 7), (48, 80, (9, 12), 5)])
def test_factorisation_multiply_adds_equal_the_flop_counter_on_real_stacks(cin, cout, size, n):
    """Every layer of each stack counts (the second one reads cout channels, not cin)."""
    for f in factorisations(cin, cout, size, n):
        for kernels, params, macs in ((f.original, f.params_original, f.macs_original),
                                      (f.replacement, f.params_replacement, f.macs_replacement)):
            chans = [cin] + [cout] * len(kernels)
            convs = [nn.Conv2d(chans[i], chans[i + 1], k, padding="same", bias=False, device="meta")
                     for i, k in enumerate(kernels)]
            per_layer = flops_per_layer(convs, cin, size)
            assert all(p > 0 for p in per_layer)
            assert macs * 2 == sum(per_layer), (f.name, kernels)
            assert params == sum(p.numel() for c in convs for p in c.parameters())


# -- the Compare window's multiply-adds notes -------------------------------------------------------


def node_macs_by_flop_counter(name, size):
    """Multiply-adds of each top-level module of zoo model `name`, counted by FlopCounterMode."""
    model = get_spec(name).build(device="meta").eval()
    counter = FlopCounterMode(display=False, depth=2)
    with counter:
        model(torch.empty(1, 3, *size, device="meta"))
    cls = type(model).__name__
    return {k[len(cls) + 1:]: sum(v.values()) // 2 for k, v in counter.get_flop_counts().items()
            if k.startswith(cls + ".")}


def test_compare_names_every_multiply_adds_difference(graph_of):
    size = (224, 224)
    ref_a, ref_b = node_macs_by_flop_counter("googlenet", size), node_macs_by_flop_counter("googlenet_paper", size)
    c = compare_models(graph_of("googlenet"), graph_of("googlenet_paper"), size)
    differing = 0
    for row in c.rows:
        if row.a is None or row.b is None or row.a.training_only:
            continue
        a, b = ref_a.get(row.a.name, 0), ref_b.get(row.b.name, 0)
        note = row.difference("macs")
        if a != b:
            differing += 1
            assert note is not None, row.a.name
            assert f"{a:,}" in note.text and f"{b:,}" in note.text, note.text
            assert f"{(b - a) / a * 100:+.0f} %" in note.text, note.text
        else:
            assert note is None, (row.a.name, note)
    # Every block (the paper's 5×5 against torchvision's 3×3) and more differ.
    assert differing >= 9


# -- shape tracing: non-square strides and kernels, ceil-mode pooling -------------------------------


class Skewed(nn.Module):
    """Strides (2, 1), kernels 1×7 / 7×1 / 3×5, ceil-mode pools whose last window can start in the padding."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, (1, 7), stride=(2, 1), padding=(0, 3))
        self.pool1 = nn.MaxPool2d((3, 2), stride=(2, 1), padding=(1, 0), ceil_mode=True)
        self.tall = nn.Conv2d(4, 6, (7, 1), stride=(1, 2), padding=(3, 0))
        self.pool2 = nn.MaxPool2d(2, stride=2, padding=1, ceil_mode=True)
        self.odd = nn.Conv2d(6, 8, (3, 5), stride=(2, 1), padding=(1, 3), dilation=(1, 2))
        self.pool3 = nn.AvgPool2d((3, 2), stride=(2, 3), padding=1, ceil_mode=True)
        self.head = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.pool3(self.odd(self.pool2(self.tall(self.pool1(self.stem(x))))))
        return self.fc(torch.flatten(self.head(x), 1))


def test_pool_output_size_equals_torch_including_the_dropped_last_window():
    """Every small configuration, against torch's pooling; some drop a ceil-mode window that would
    start in the padding."""
    dropped = 0
    for size in range(1, 12):
        for k in (1, 2, 3):
            for s in (1, 2, 3):
                for p in range(0, k // 2 + 1):
                    if size + 2 * p < k:
                        continue
                    x = torch.zeros(1, 1, 1, size)
                    for ceil in (False, True):
                        real = F.max_pool2d(x, (1, k), (1, s), (0, p), ceil_mode=ceil).shape[-1]
                        assert pool_output_size(size, k, s, p, 1, ceil) == real, (size, k, s, p, ceil)
                    dropped += real < uncorrected_ceil_size(size, k, s, p)
    assert dropped > 0


def uncorrected_ceil_size(n, k, s, p):
    """A ceil-mode pool's output size without the last-window correction."""
    return (n + 2 * p - k + s - 1) // s + 1


# Input sizes, and the pools (with the axis) whose last ceil-mode window starts in the padding there.
SKEWED_SIZES = {
    (33, 33): (("pool2", 0), ("pool3", 1)),
    (40, 51): (("pool2", 0), ("pool2", 1), ("pool3", 1)),
    (47, 39): (("pool2", 0), ("pool2", 1), ("pool3", 1)),
    (50, 21): (("pool2", 0), ("pool3", 1)),
}


@pytest.mark.parametrize("size", list(SKEWED_SIZES))
def test_traced_shapes_equal_a_real_forward_with_skewed_strides_and_ceil_pools(size):
    net = Skewed().eval()
    graph = block_graph_from_module(net, "skewed", native_size=(48, 48))
    trace = trace_shapes(graph, size)
    real, inputs = {}, {}

    def keep(mod, i, o, q):
        inputs[q], real[q] = tuple(i[0].shape[1:]), tuple(o.shape[1:])

    handles = [m.register_forward_hook(lambda mod, i, o, q=q: keep(mod, i, o, q)) for q, m in net.named_children()]
    counter = FlopCounterMode(display=False, depth=2)
    with torch.no_grad(), counter:
        net(torch.zeros(1, 3, *size))
    for h in handles:
        h.remove()
    counts = counter.get_flop_counts()
    # Stride (2, 1) on a square input: H and W part ways.
    assert real["stem"][1:] == ((size[0] - 1) // 2 + 1, size[1])
    for q, shape in real.items():
        node = trace.nodes[q]
        assert node.output_shape == shape, (q, size)
        assert node.macs * 2 == sum(counts.get(f"Skewed.{q}", {}).values()), q
    # These sizes reach the correction: torch drops a window the plain ceil formula would count.
    for q, axis in SKEWED_SIZES[size]:
        pool = getattr(net, q)
        k, s, p = ((v, v) if isinstance(v, int) else v for v in (pool.kernel_size, pool.stride, pool.padding))
        n = inputs[q][1 + axis]
        assert real[q][1 + axis] == uncorrected_ceil_size(n, k[axis], s[axis], p[axis]) - 1, (q, axis)


def test_an_exported_skewed_net_traces_to_the_real_shapes(tmp_path):
    """The same rules read from a torch.export graph's aten ops (conv strides and pool kernels as lists)."""
    from explorer.core.model.anycnn import open_model
    from explorer.core.graph.blockgraph import build_block_graph

    net = Skewed().eval()
    path = tmp_path / "skewed.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(1, 3, 48, 48),)), path)
    graph = build_block_graph(open_model(str(path)))
    for size in SKEWED_SIZES:
        real = {}
        handles = [m.register_forward_hook(lambda mod, i, o, q=q: real.__setitem__(q, tuple(o.shape[1:])))
                   for q, m in net.named_children()]
        with torch.no_grad():
            net(torch.zeros(1, 3, *size))
        for h in handles:
            h.remove()
        trace = trace_shapes(graph, size)
        for q, shape in real.items():
            assert trace.nodes[q].output_shape == shape, (q, size)
