"""Traced shapes, params, multiply-adds and minimum sizes against the real torchvision models."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from explorer.core.shapes.trace import InputTooSmallError, min_input_size, parse_size, trace_shapes
from explorer.core.model.zoo import get_spec

MODELS = ["googlenet", "inception_v3"]


def _real_shapes(name, size, batch=2):
    """Output shape of every block-graph node from real forwards: eval mode, then train mode for the
    auxiliary heads (absent when the real head cannot run at this size)."""
    model = get_spec(name).build()
    shapes = {}
    for qualname, mod in model.named_children():
        mod.register_forward_hook(lambda m, i, o, q=qualname: shapes.__setitem__(q, tuple(o.shape)))
    x = torch.randn(batch, 3, *size)
    with torch.no_grad():
        model(x)
        try:
            model.train()(x)
        except RuntimeError:
            pass
    return shapes


@pytest.mark.parametrize("name,size", [
    ("googlenet", (224, 224)), ("googlenet", (97, 131)), ("googlenet", (301, 64)),
    ("inception_v3", (299, 299)), ("inception_v3", (160, 211)), ("inception_v3", (75, 75)),
])
def test_every_node_shape_matches_the_real_forward(graph_of, name, size):
    graph = graph_of(name)
    trace = trace_shapes(graph, size, batch=2)
    real = _real_shapes(name, size)
    checked = 0
    for node in graph.nodes():
        if node.kind == "input":
            continue
        t = trace.nodes[node.name]
        if t.failure:  # a training-only head that cannot run at this size: the real one fails too
            assert node.training_only and node.name not in real
            continue
        assert node.name in real, node.name
        assert (2, *t.output_shape) == real[node.name], node.name
        checked += 1
    assert checked == len(real)


def test_aux_head_that_cannot_run_does_not_invalidate_the_size(graph_of):
    # At 75×75 Inception v3's inference path works but its auxiliary head's 5×5 pooling does not fit.
    trace = trace_shapes(graph_of("inception_v3"), 75)
    assert trace.nodes["AuxLogits"].failure and "AuxLogits" in trace.nodes["AuxLogits"].failure
    assert trace.nodes["fc"].output_shape == (1000,)
    with pytest.raises(RuntimeError):
        get_spec("inception_v3").build().train()(torch.randn(2, 3, 75, 75))


@pytest.mark.parametrize("name", MODELS)
def test_min_input_matches_torchvision_documentation(graph_of, name):
    assert min_input_size(graph_of(name)) == get_spec(name).weights_enum().meta["min_size"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("axis", ["h", "w"])
def test_too_small_names_the_layer_where_the_real_forward_fails(graph_of, name, axis):
    graph = graph_of(name)
    mh, mw = min_input_size(graph)
    nh, nw = graph.native_size
    size = (mh - 1, nw) if axis == "h" else (nh, mw - 1)
    with pytest.raises(InputTooSmallError) as info:
        trace_shapes(graph, size)
    err = info.value
    # The real model fails too, and in the same layer: the last module entered before the error.
    model = get_spec(name).build()
    entered = []
    for q, m in model.named_modules():
        if not list(m.children()):
            m.register_forward_pre_hook(lambda m, i, q=q: entered.append(q))
    with pytest.raises(RuntimeError), torch.no_grad():
        model(torch.randn(1, 3, *size))
    assert err.layer == entered[-1]
    assert err.node == err.layer.split(".")[0]
    msg = str(err)
    assert err.layer in msg and f"{mh}×{mw}" in msg and "smaller than" in msg
    # One pixel more is fine.
    trace_shapes(graph, (mh, nw) if axis == "h" else (nh, mw))


@pytest.mark.parametrize("name", MODELS)
def test_params_equal_the_models_own(graph_of, name):
    graph = graph_of(name)
    trace = trace_shapes(graph, graph.native_size)
    spec = get_spec(name)
    with_aux = spec.build(device="meta")
    assert trace.total_params == sum(p.numel() for p in with_aux.parameters())
    assert sum(n.params for n in trace) == trace.total_params
    kwargs = dict(spec.builder_kwargs, aux_logits=False)
    fn = getattr(__import__("torchvision.models", fromlist=["x"]), spec.builder[1])
    with torch.device("meta"):
        without_aux = fn(**kwargs)
    assert trace.total_params_inference == sum(p.numel() for p in without_aux.parameters())
    aux = sum(n.params for n in trace if n.training_only)
    assert aux > 0 and trace.total_params - trace.total_params_inference == aux


@pytest.mark.parametrize("name", MODELS)
def test_total_macs_match_torchvision_documented_gflops(graph_of, name):
    graph = graph_of(name)
    trace = trace_shapes(graph, graph.native_size)
    documented = get_spec(name).weights_enum().meta["_ops"]  # GFLOPS as torchvision counts them: MACs
    assert abs(trace.total_macs / 1e9 - documented) < 0.0005 + 1e-9


@pytest.mark.parametrize("name,size", [("googlenet", (180, 250)), ("inception_v3", (331, 277))])
def test_per_node_macs_match_torch_flop_counter(graph_of, name, size):
    graph = graph_of(name)
    trace = trace_shapes(graph, size, batch=3)
    model = get_spec(name).build(device="meta")
    counter = FlopCounterMode(display=False, depth=2)
    with counter:
        model(torch.empty(3, 3, *size, device="meta"))
    counts = counter.get_flop_counts()
    cls = type(model).__name__
    for node in graph.nodes():
        if node.kind == "input" or node.training_only:
            continue
        # The flop counter counts a multiply-accumulate as two FLOPs; pooling and norms as none.
        flops = sum(counts.get(f"{cls}.{node.name}", {}).values())
        assert trace.nodes[node.name].macs * 2 == flops, node.name
    assert trace.total_macs * 2 == sum(counts["Global"].values())


def test_non_square_input_keeps_h_and_w_apart(graph_of):
    trace = trace_shapes(graph_of("googlenet"), (224, 448))
    c, h, w = trace.nodes["inception5b"].output_shape
    assert (h, w) == (7, 14)
    assert trace.input_shape == (1, 3, 224, 448)


def test_activation_bytes_are_float32_outputs_times_batch(graph_of):
    trace = trace_shapes(graph_of("googlenet"), 224, batch=4)
    c, h, w = trace.nodes["inception3a"].output_shape
    assert trace.nodes["inception3a"].activation_bytes == 4 * c * h * w * 4
    assert trace.total_activation_bytes == sum(
        n.activation_bytes for n in trace if not n.training_only and n.kind != "input")


def test_receptive_field_matches_gradient_extent():
    """The analytic receptive field equals the input region whose pixels reach one output pixel."""
    import torch.nn as nn

    from explorer.core.graph.blockgraph import block_graph_from_module

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, (1, 7), stride=(1, 2), padding=(0, 3))
            self.b = nn.AvgPool2d(3, stride=2, padding=1)
            self.c = nn.Conv2d(2, 2, 3, dilation=2, padding=2)
            self.d = nn.Conv2d(2, 1, (5, 3), stride=(2, 1))

        def forward(self, x):
            return self.d(self.c(self.b(self.a(x))))

    net = Net()
    for p in net.parameters():
        nn.init.constant_(p, 0.1)
    graph = block_graph_from_module(net, "net", native_size=(96, 96))
    node = graph.node("d")
    x = torch.ones(1, 1, 96, 96, requires_grad=True)
    y = net(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
    assert node.receptive_field == (int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
    assert node.effective_stride == (1 * 2 * 1 * 2, 2 * 2 * 1 * 1)


@pytest.mark.parametrize("text,expected", [("224", (224, 224)), ("320x480", (320, 480)), ("320×480", (320, 480)),
                                           (" 64 , 96 ", (64, 96))])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "0", "-3", "224x0", "1x2x3", "12.5"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_trace_rejects_non_positive(graph_of):
    with pytest.raises(ValueError):
        trace_shapes(graph_of("googlenet"), (0, 224))
    with pytest.raises(ValueError):
        trace_shapes(graph_of("googlenet"), 224, batch=0)


@pytest.mark.parametrize("name,size", [
    ("googlenet", 224), ("inception_v3", 299), ("inception_v3", 120), ("inception_v3", 75),
])
def test_macs_with_heads_count_only_the_heads_that_run(graph_of, name, size):
    """Against the real model's counted FLOPs (2 per multiply-add): in eval mode no head runs; in train mode
    every head that can. At 120 Inception v3's AuxLogits fails in its second convolution, so the real
    training forward stops; the trace counts none of the head's work, not even its first convolution's."""
    trace = trace_shapes(graph_of(name), size)
    model = get_spec(name).build()
    x = torch.randn(2, 3, size, size)  # batch 2: train-mode batch norm needs more than one value
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model.eval()(x)
    assert trace.total_macs == fc.get_total_flops() // 4
    failing = [t for t in trace if t.training_only and t.failure]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model.train()(x)
    except RuntimeError:
        assert failing and trace.total_macs_with_aux == trace.total_macs
        assert all(t.macs == 0 and t.output_shape is None for t in failing)
    else:
        assert not failing and trace.total_macs_with_aux == fc.get_total_flops() // 4
    assert trace.heads == ([t for t in trace if t.training_only and not t.failure], failing)
