"""Every network of models/ works where the torchvision models do: fx trace, block graph, shapes, sizes."""

import pytest
import torch
from torch import fx
from torch.utils.flop_counter import FlopCounterMode

from explorer.core.shapes.trace import min_input_size, trace_shapes
from explorer.core.model.zoo import get_spec

MODELS = ["googlenet_paper", "bn_inception", "inception_v4", "inception_resnet_v1", "inception_resnet_v2"]

# Two small sizes per model, one of them not square (the 299-px networks need at least 75).
SIZES = {
    "googlenet_paper": [(64, 64), (57, 90)],
    "bn_inception": [(64, 64), (90, 57)],
    "inception_v4": [(75, 75), (80, 107)],
    "inception_resnet_v1": [(75, 75), (107, 80)],
    "inception_resnet_v2": [(75, 75), (80, 107)],
}

# Block module types, in data-flow order, with their counts (repeated blocks collapsed).
BLOCKS = {
    "googlenet_paper": [("Inception", 9)],
    "bn_inception": [("InceptionModule", 2), ("ReductionModule", 1), ("InceptionModule", 4), ("ReductionModule", 1),
                     ("InceptionModule", 2)],
    "inception_v4": [("Mixed3a", 1), ("Mixed4a", 1), ("Mixed5a", 1), ("InceptionA", 4), ("ReductionA", 1),
                     ("InceptionB", 7), ("ReductionB", 1), ("InceptionC", 3)],
    "inception_resnet_v1": [("InceptionResNetA", 5), ("ReductionA", 1), ("InceptionResNetB", 10),
                            ("ReductionB", 1), ("InceptionResNetC", 5)],
    "inception_resnet_v2": [("Mixed5b", 1), ("InceptionResNetA", 10), ("ReductionA", 1), ("InceptionResNetB", 20),
                            ("ReductionB", 1), ("InceptionResNetC", 10)],
}

# Branch labels read off the real layers, per block type.
LABELS = {
    "Inception": ["#1×1", "#3×3 reduce → #3×3", "#5×5 reduce → #5×5", "3×3 max pool → pool proj"],
    "InceptionModule": ["#1×1", "#3×3 reduce → #3×3", "#3×3 reduce → #3×3 → #3×3", None],
    "ReductionModule": ["#3×3 reduce → #3×3 /2", "#3×3 reduce → #3×3 → #3×3 /2", "3×3 max pool /2"],
    "Mixed3a": ["3×3 max pool /2", "#3×3 /2"],
    "Mixed4a": ["#3×3 reduce → #3×3", "#1×1 reduce → 1×7 → 7×1 → #3×3 (factorized 7×7)"],
    "Mixed5a": ["#3×3 /2", "3×3 max pool /2"],
    "InceptionA": ["#1×1", "#3×3 reduce → #3×3", "#3×3 reduce → #3×3 → #3×3", "3×3 avg pool → pool proj"],
    "ReductionA": ["#3×3 /2", "#3×3 reduce → #3×3 → #3×3 /2", "3×3 max pool /2"],
    "InceptionB": ["#1×1", "#1×1 reduce → 1×7 → 7×1 (factorized 7×7)",
                   "#1×1 reduce → 7×1 → 1×7 → 7×1 → 1×7 (factorized 7×7)", "3×3 avg pool → pool proj"],
    "ReductionB": None,  # two different modules share the name (Inception-v4's and the Inception-ResNets')
    "InceptionC": ["#1×1", "#1×1 reduce → (1×3 ‖ 3×1)", "#1×1 reduce → 3×1 → 1×3 → (1×3 ‖ 3×1) (factorized 3×3)",
                   "3×3 avg pool → pool proj"],
    "Mixed5b": ["#1×1", "#5×5 reduce → #5×5", "#3×3 reduce → #3×3 → #3×3", "3×3 avg pool → pool proj"],
}


def _collapse(types):
    runs = []
    for t in types:
        if runs and runs[-1][0] == t:
            runs[-1] = (t, runs[-1][1] + 1)
        else:
            runs.append((t, 1))
    return runs


@pytest.mark.parametrize("name", MODELS)
def test_fx_traces_in_both_modes_and_only_googlenet_has_training_only_parts(model_of, name):
    model = model_of(name)
    try:
        eval_ops = len(fx.symbolic_trace(model.eval()).graph.nodes)
        train_ops = len(fx.symbolic_trace(model.train()).graph.nodes)
    finally:
        model.eval()
    if name == "googlenet_paper":
        assert train_ops > eval_ops  # the two auxiliary classifiers
    else:
        assert train_ops == eval_ops


@pytest.mark.parametrize("name", MODELS)
def test_block_graph_finds_every_block_with_branches_read_from_the_layers(graph_of, name):
    graph = graph_of(name)
    blocks = graph.blocks()
    assert _collapse([b.module_type for b in blocks]) == BLOCKS[name]
    for node in blocks:
        assert not node.notes, (node.name, node.notes)
        assert node.out_channels == sum(b.out_channels for b in node.branches) or node.merge == "add"
        expected = LABELS.get(node.module_type)
        if node.kind == "residual":
            continue
        assert node.kind == "inception" and node.merge == "cat"
        if expected:
            labels = [b.label for b in node.branches]
            assert [e or l for e, l in zip(expected, labels)] == labels, node.name


@pytest.mark.parametrize("name", MODELS)
def test_every_conv_of_every_block_appears_once_with_its_real_kernel(graph_of, name):
    graph = graph_of(name)
    model = get_spec(name).build(device="meta")
    for node in graph.blocks():
        convs = [l for b in node.branches for l in b.all_layers() if l.type == "conv"]
        real = {f"{node.name}.{q}": m for q, m in model.get_submodule(node.name).named_modules()
                if isinstance(m, torch.nn.Conv2d)}
        if node.kind == "residual":  # the 1×1 "linear" convolution sits after the branches' concatenation
            assert len(node.branches) == 2 and node.branches[1].tail[-1].name == f"{node.name}.conv2d"
        assert sorted(l.name for l in convs) == sorted(real), node.name
        for l in convs:
            m = real[l.name]
            assert (l.kernel, l.stride, l.padding, l.out_channels) == (m.kernel_size, m.stride, m.padding,
                                                                       m.out_channels)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("which", [0, 1])
def test_traced_shapes_match_a_real_forward(graph_of, model_of, name, which):
    size = SIZES[name][which]
    graph = graph_of(name)
    model = model_of(name)
    trace = trace_shapes(graph, size, batch=1)
    real = {}
    hooks = [model.get_submodule(n.name).register_forward_hook(
        lambda m, i, o, q=n.name: real.__setitem__(q, tuple(o.shape)))
        for n in graph.nodes() if n.kind != "input" and not n.training_only]
    x = torch.randn(1, 3, *size)
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    for node in graph.nodes():
        if node.kind == "input" or node.training_only:
            continue
        assert (1, *trace.nodes[node.name].output_shape) == real[node.name], node.name
    if which == 0:  # the fx trace the block graph reads computes exactly what the model does
        with torch.no_grad():
            torch.testing.assert_close(fx.symbolic_trace(model)(x), out, rtol=0, atol=0)
    assert trace.total_params == sum(p.numel() for p in model.parameters())
    assert sum(n.params for n in trace) == trace.total_params


@pytest.mark.parametrize("name", MODELS)
def test_macs_at_native_size_match_torch_flop_counter(graph_of, name):
    graph = graph_of(name)
    trace = trace_shapes(graph, graph.native_size)
    model = get_spec(name).build(device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.empty(1, 3, *graph.native_size, device="meta"))
    # The flop counter counts a multiply-accumulate as two FLOPs.
    assert trace.total_macs * 2 == counter.get_total_flops()


@pytest.mark.parametrize("name", MODELS)
def test_min_input_size_is_exact_in_a_real_forward(graph_of, model_of, name):
    graph = graph_of(name)
    mh, mw = min_input_size(graph)
    assert mh and mw
    model = model_of(name)
    with torch.no_grad():
        assert model(torch.randn(1, 3, mh, mw)).shape == (1, 1000)
        for smaller in ((mh - 1, mw), (mh, mw - 1)):
            with pytest.raises(RuntimeError):
                model(torch.randn(1, 3, *smaller))


@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v2"])
def test_calibrated_models_find_their_classifier_and_respond_to_the_input(name):
    """netutil.calibrated_model calibrates the last nn.Linear whatever its name (last_linear, classif):
    the calibrated network then tells different images apart. At the native size, where it was calibrated."""
    from netutil import calibrated_model, synthetic_batch

    model = calibrated_model(name)
    size = get_spec(name).native_size[0]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (synthetic_batch(8, size, torch.Generator().manual_seed(5)) - mean) / std
    with torch.no_grad():
        logits = model(x)
    assert len(set(logits.argmax(1).tolist())) >= 4
    # The classifier's logits were spread to std ≈ 3 on the calibration images (the median image: an outlier
    # image may spread further).
    assert 1.0 < float(logits.std(1).median()) < 10.0
