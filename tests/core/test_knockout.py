"""Branch knock-outs against torchvision's own networks with a forward hook replacing the branch module's output.

The reference knows nothing of our block graph: it names each branch's module(s) by hand from torchvision's
source (Inception v3's nested 1×3 ‖ 3×1 branches are two modules; its max-pool branches have no module, so
their slice of the block's output is replaced), runs the plain model once per knock-out, and replaces the
output by zeros or its per-channel spatial mean. Ours must agree to float32 rounding: RTOL and ATOL, the
knock-outs of one block running as one batch (convolutions summed in another order; measured at most 1.1e-4
on logits of up to about 60).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from netutil import calibrated_model

from explorer.core.attribution.knockout import KnockoutNetwork, branch_effects, knock_out
from explorer.core.graph.capture import CaptureModel

RTOL, ATOL = 1e-4, 5e-4

#: torchvision's Inception v3 branch modules by block class, in the order its forward concatenates them;
#: None: the functional max-pool branch (the block's last channels), a tuple: a branch that is a concatenation.
V3_BRANCHES = {
    "InceptionA": ("branch1x1", "branch5x5_2", "branch3x3dbl_3", "branch_pool"),
    "InceptionB": ("branch3x3", "branch3x3dbl_3", None),
    "InceptionC": ("branch1x1", "branch7x7_3", "branch7x7dbl_5", "branch_pool"),
    "InceptionD": ("branch3x3_2", "branch7x7x3_4", None),
    "InceptionE": ("branch1x1", ("branch3x3_2a", "branch3x3_2b"), ("branch3x3dbl_3a", "branch3x3dbl_3b"),
                   "branch_pool"),
}
V3_BLOCKS = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
             "Mixed_7a", "Mixed_7b", "Mixed_7c")
GOOGLENET_BLOCKS = ("inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d",
                    "inception4e", "inception5a", "inception5b")


def replaced(o: torch.Tensor, mode: str) -> torch.Tensor:
    """The reference's knocked-out tensor: zeros, or each channel's mean over its map (a fresh tensor, as a
    module's output is: torchvision's residual block adds to it in place)."""
    if mode == "zero":
        return torch.zeros_like(o)
    return o.mean((2, 3), keepdim=True).repeat(1, 1, o.shape[2], o.shape[3])


def googlenet_hooks(model, block: str, k: int, mode: str):
    return [model.get_submodule(f"{block}.branch{k + 1}").register_forward_hook(lambda m, i, o: replaced(o, mode))]


def v3_hooks(model, block: str, k: int, mode: str):
    module = model.get_submodule(block)
    names = V3_BRANCHES[type(module).__name__][k]
    if names is None:  # the max pool of the block's input: the last in_channels channels of its output
        def tail(m, i, o):
            channels = i[0].shape[1]  # the max pool keeps the block input's channels
            out = o.clone()
            out[:, -channels:] = replaced(o[:, -channels:], mode)
            return out
        return [module.register_forward_hook(tail)]
    names = names if isinstance(names, tuple) else (names,)
    return [module.get_submodule(n).register_forward_hook(lambda m, i, o: replaced(o, mode)) for n in names]


def by_hooks(model, x, hooks_of, branches, mode: str) -> torch.Tensor:
    """torchvision's forward with every one of `branches` replaced through forward hooks."""
    handles = [h for block, k in branches for h in hooks_of(model, block, k, mode)]
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for h in handles:
            h.remove()


def images(n: int, size: int, seed: int = 5) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def googlenet(graph_of):
    model = calibrated_model("googlenet")
    return model, KnockoutNetwork(CaptureModel(model, graph_of("googlenet")))


@pytest.fixture(scope="module")
def inception_v3(graph_of):
    model = calibrated_model("inception_v3")
    return model, KnockoutNetwork(CaptureModel(model, graph_of("inception_v3")))


CASES = {"googlenet": (GOOGLENET_BLOCKS, 4, googlenet_hooks, 96), "inception_v3": (V3_BLOCKS, None, v3_hooks, 96)}


@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_each_branch_knocked_out_equals_hooks_on_torchvision(request, name, mode):
    """Every branch of every block, on its own, in the shared pass (`knock_out_each`) and in a plain knocked
    forward (`knock_out`), equals torchvision's forward with a hook on that branch."""
    model, net = request.getfixturevalue(name)
    blocks, per_block, hooks_of, size = CASES[name]
    branches = net.branches()
    assert list(dict.fromkeys(b for b, _ in branches)) == list(blocks)
    assert all(k == 0 or branches[i - 1] == (b, k - 1) for i, (b, k) in enumerate(branches))
    if per_block:
        assert len(branches) == per_block * len(blocks)
    else:  # Inception v3: A, C and E blocks have 4 branches, the grid reductions B and D 3
        assert len(branches) == 4 * 9 + 3 * 2
    x = images(1, size)
    with torch.no_grad():
        plain_ref = model(x)
    plain, each = net.knock_out_each(x, branches, mode)
    torch.testing.assert_close(plain, plain_ref, rtol=RTOL, atol=ATOL)
    shapes = {b: t.shape for b, t in zip(branches, (net.capture.capture(x).branch(*b) for b in branches))}
    moved = counted = 0
    for row, b in enumerate(branches):
        ref = by_hooks(model, x, hooks_of, [b], mode)
        torch.testing.assert_close(each[row:row + 1], ref, rtol=RTOL, atol=ATOL, msg=lambda m, b=b: f"{b}: {m}")
        torch.testing.assert_close(net.knock_out(x, [b], mode), ref, rtol=RTOL, atol=ATOL,
                                   msg=lambda m, b=b: f"{b}: {m}")
        if mode == "mean" and shapes[b][2:].numel() == 1:  # a 1×1 map is its own mean: nothing is knocked out
            torch.testing.assert_close(ref, plain_ref, rtol=RTOL, atol=ATOL)
            continue
        counted += 1
        moved += (ref - plain_ref).abs().max().item() > 100 * ATOL
    # The comparison has teeth: most knock-outs move the logits far beyond the tolerance (at 96 px, the mean
    # of the last blocks' 3×3 maps keeps much of them: 32 of GoogLeNet's 36 mean knock-outs move it).
    assert counted >= 0.7 * len(branches) and moved >= 0.8 * counted, (moved, counted, len(branches))


def test_on_the_classifier_s_channels_last_copy_the_rows_stay_channels_last(googlenet, graph_of):
    """The window knocks out on the classifier's copy (batch norms folded, channels-last): there every branch's
    knock-out still equals torchvision's model with a hook, and the walk's batched rows reach the max pools
    channels-last (the repeated and gathered rows came out channels-first, and such a max pool took 3.5 to 15
    times as long: half the shared pass's time)."""
    import copy

    from explorer.core.classify.device import fold_batch_norms

    model, _ = googlenet
    fast = fold_batch_norms(copy.deepcopy(model)).to(memory_format=torch.channels_last)
    net = KnockoutNetwork(CaptureModel(fast, graph_of("googlenet")))
    formats = []
    for m in fast.modules():
        if isinstance(m, torch.nn.MaxPool2d):
            m.register_forward_pre_hook(lambda m, args: formats.append(
                (args[0].shape[0], args[0].is_contiguous(memory_format=torch.channels_last))))
    branches = net.branches()
    x = images(1, 96)
    _, each = net.knock_out_each(x, branches, "zero")
    batched = [cl for n, cl in formats if n > 1]
    assert batched and all(batched), formats
    for row, b in enumerate(branches):
        ref = by_hooks(model, x, googlenet_hooks, [b], "zero")
        torch.testing.assert_close(each[row:row + 1], ref, rtol=RTOL, atol=ATOL, msg=lambda m, b=b: f"{b}: {m}")


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_branches_knocked_out_together_in_a_batch(request, name):
    """Several branches at once (two of one block, one of another, a nested one in Inception v3), on a batch
    of two images: each image's mean is its own."""
    model, net = request.getfixturevalue(name)
    blocks, _, hooks_of, size = CASES[name]
    chosen = [(blocks[1], 0), (blocks[1], 2), (blocks[-1], 1)]
    x = images(2, size, seed=9)
    for mode in ("zero", "mean"):
        ref = by_hooks(model, x, hooks_of, chosen, mode)
        torch.testing.assert_close(knock_out(net, None, x, chosen, mode), ref, rtol=RTOL, atol=ATOL)


def test_branch_effects_are_the_reference_differences(googlenet):
    """Δlogit, Δprobability and the new top-1 of `branch_effects` are those of the hooked forwards, for a
    target that is not the top-1."""
    model, net = googlenet
    x = images(1, 96, seed=11)
    with torch.no_grad():
        plain = model(x)[0]
    target = int(plain.argsort()[-3])  # the third class
    result = branch_effects(net, None, x, target=target, mode="mean")
    assert result.target == target and result.top1 == int(plain.argmax())
    assert result.logit == pytest.approx(plain[target].item(), abs=ATOL)
    assert result.prob == pytest.approx(torch.softmax(plain, 0)[target].item(), abs=1e-6)
    assert len(result.effects) == 36
    for e in result.effects:
        ref = by_hooks(model, x, googlenet_hooks, [(e.block, e.branch_index)], "mean")[0]
        assert e.delta_logit == pytest.approx((ref[target] - plain[target]).item(), abs=2 * ATOL)
        p, p0 = torch.softmax(ref, 0)[target].item(), torch.softmax(plain, 0)[target].item()
        assert e.delta_prob == pytest.approx(p - p0, abs=1e-5)
        assert e.top1 == int(ref.argmax()) and e.top1_changed == (e.top1 != result.top1)
    assert any(e.top1_changed for e in result.effects)


def test_a_subset_of_branches_and_bad_requests(googlenet):
    model, net = googlenet
    x = images(1, 96)
    chosen = [("inception4c", 3), ("inception3a", 1)]
    result = net.effects(x, branches=chosen)
    assert [(e.block, e.branch_index) for e in result.effects] == chosen
    ref = by_hooks(model, x, googlenet_hooks, [chosen[0]], "zero")[0]
    assert result.effects[0].logit == pytest.approx(ref[result.target].item(), abs=ATOL)
    with pytest.raises(KeyError, match="branch_index 4"):
        net.effects(x, branches=[("inception3a", 4)])
    with pytest.raises(ValueError, match="mode"):
        net.effects(x, mode="noise")
    with pytest.raises(ValueError, match="one image"):
        net.knock_out_each(images(2, 96), chosen)
    with pytest.raises(ValueError, match="target 1000"):
        net.effects(x, target=1000, branches=chosen)


def resnet_hooks(model, block: str, k: int, mode: str):
    """ResNet-18's branch 1 is the residual path (bn2's output), branch 2 the shortcut: the downsample's output,
    or the block's input itself, whose knock-out the block's hook redoes: relu(bn2's output + replaced input)."""
    module = model.get_submodule(block)
    if k == 0:
        return [module.bn2.register_forward_hook(lambda m, i, o: replaced(o, mode))]
    if module.downsample is not None:
        return [module.downsample.register_forward_hook(lambda m, i, o: replaced(o, mode))]
    kept = {}
    return [module.bn2.register_forward_hook(lambda m, i, o: kept.__setitem__("bn2", o.clone())),
            module.register_forward_hook(lambda m, i, o: torch.relu(kept["bn2"] + replaced(i[0], mode)))]


def test_resnet_residual_and_shortcut_branches_through_the_any_cnn_path():
    """torchvision:resnet18 opened as any CNN: its blocks add two branches; each, knocked out alone, equals
    torchvision's forward with the hook on it (the shortcut is knocked out in the addition only, not in the
    residual path that reads the same tensor)."""
    from explorer.core.model.anycnn import open_block_graph

    spec, graph = open_block_graph("torchvision:resnet18")
    model = spec.build()
    net = KnockoutNetwork.of(model, graph)
    branches = net.branches()
    assert len(branches) == 16 and branches[:2] == [("layer1.0", 0), ("layer1.0", 1)]
    x = images(1, 64)
    for mode in ("zero", "mean"):
        plain, each = net.knock_out_each(x, branches, mode)
        for row, b in enumerate(branches):
            ref = by_hooks(model, x, resnet_hooks, [b], mode)
            scale = ref.abs().max().item()
            torch.testing.assert_close(each[row:row + 1], ref, rtol=RTOL, atol=ATOL * scale,
                                       msg=lambda m, b=b: f"{b}: {m}")
            assert (ref - plain).abs().max().item() > 100 * ATOL * scale, b


def test_demo_model_branches_matter_and_its_last_block_decides():
    """shapes_inception with its shipped weights, on the window's drawn samples: knock-outs change the target's
    logit, not all alike, and with every branch of the last block off (zeros: its per-channel means would give
    the global pooling the same values), the prediction changes."""
    from explorer.core.demo.samples import drawn_samples
    from explorer.core.demo.training import network_input
    from explorer.core.model.graphs import zoo_block_graph
    from explorer.core.model.loading import load_model

    loaded = load_model("shapes_inception")
    assert not loaded.weights.is_random
    net = KnockoutNetwork.of(loaded.module.eval(), zoo_block_graph("shapes_inception"))
    last = net.branches()[-1][0]
    changed = []
    for sample in drawn_samples():
        x = network_input(sample.image[None])
        with torch.no_grad():
            plain = loaded.module(x)[0]
        assert int(plain.argmax()) == sample.label, sample.name
        result = net.effects(x, mode="zero")
        deltas = np.array([e.delta_logit for e in result.effects])
        assert np.abs(deltas).max() > 1.0 and np.ptp(deltas) > 1.0, deltas
        off = [b for b in net.branches() if b[0] == last]
        knocked = net.knock_out(x, off, "zero")[0]
        # The head then sees nothing: the label's probability falls towards a sixth (six classes).
        assert torch.softmax(plain, 0)[sample.label] > 0.9
        assert torch.softmax(knocked, 0)[sample.label] < 0.3, (sample.name, knocked)
        changed.append(int(knocked.argmax()) != sample.label)
    # The prediction changes, except for the one class the head's bias favours when it sees nothing (triangle).
    assert sum(changed) >= len(changed) - 1, changed
