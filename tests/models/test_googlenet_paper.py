"""GoogLeNet as in the paper: Table 1's channels, 5×5 branches, LRN, no batch norm, aux heads, dropout."""

import torch
import torch.nn as nn
from torch import fx

from explorer.core.shapes.trace import trace_shapes
from explorer.core.model.zoo import get_spec

# Table 1: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj, output depth.
TABLE_1 = {
    "inception3a": (64, 96, 128, 16, 32, 32, 256),
    "inception3b": (128, 128, 192, 32, 96, 64, 480),
    "inception4a": (192, 96, 208, 16, 48, 64, 512),
    "inception4b": (160, 112, 224, 24, 64, 64, 512),
    "inception4c": (128, 128, 256, 24, 64, 64, 512),
    "inception4d": (112, 144, 288, 32, 64, 64, 528),
    "inception4e": (256, 160, 320, 32, 128, 128, 832),
    "inception5a": (256, 160, 320, 32, 128, 128, 832),
    "inception5b": (384, 192, 384, 48, 128, 128, 1024),
}


def test_inception_blocks_have_table_1_channels_and_real_5x5_branches(graph_of):
    graph = graph_of("googlenet_paper")
    assert [b.name for b in graph.blocks()] == list(TABLE_1)
    for node in graph.blocks():
        b1, b2, b3, b4 = node.branches
        ch1, red3, ch3, red5, ch5, proj, depth = TABLE_1[node.name]
        assert (b1.label, b1.kernel, b1.out_channels) == ("#1×1", (1, 1), ch1)
        assert (b2.label, b2.kernel, b2.reduce_channels, b2.out_channels) == ("#3×3 reduce → #3×3", (3, 3), red3, ch3)
        assert (b3.label, b3.kernel, b3.reduce_channels, b3.out_channels) == ("#5×5 reduce → #5×5", (5, 5), red5, ch5)
        assert (b4.label, b4.pool.type, b4.pool.stride, b4.pool_proj) == (
            "3×3 max pool → pool proj", "max_pool", (1, 1), proj)
        assert node.out_channels == depth
        assert not node.notes and not any(b.note for b in node.branches)  # nothing differs from the paper


def test_stem_has_lrn_where_figure_3_has_it_and_no_batch_norm(graph_of):
    graph = graph_of("googlenet_paper")
    stem = [n.name for n in graph.nodes() if n.stage == "stem"]
    assert stem == ["input", "conv1", "maxpool1", "lrn1", "conv2", "conv3", "lrn2", "maxpool2"]
    model = get_spec("googlenet_paper").build(device="meta")
    assert isinstance(model.lrn1, nn.LocalResponseNorm) and isinstance(model.lrn2, nn.LocalResponseNorm)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))
    trace = trace_shapes(graph, 224)
    assert [trace.nodes[n].output_shape for n in ("conv1", "maxpool1", "conv3", "maxpool2")] == [
        (64, 112, 112), (64, 56, 56), (192, 56, 56), (192, 28, 28)]
    assert trace.nodes["inception5b"].output_shape == (1024, 7, 7)


def test_aux_classifiers_and_dropout_follow_section_5(graph_of):
    graph = graph_of("googlenet_paper")
    assert {n.name for n in graph.nodes() if n.training_only} == {"aux1", "aux2"}
    assert graph.predecessors("aux1") == ["inception4a"] and graph.predecessors("aux2") == ["inception4d"]
    aux = graph.node("aux1")
    assert [l.describe() for l in aux.layers] == ["5×5 avg pool /3", "1×1 conv, 128", "fc, 1024", "fc, 1000"]
    trace = trace_shapes(graph, 224)
    model = get_spec("googlenet_paper").build(device="meta")
    assert model.aux1.dropout.p == model.aux2.dropout.p == 0.7
    assert model.dropout.p == 0.4 and graph.predecessors("fc") == ["dropout"]
    aux_params = sum(p.numel() for h in ("aux1", "aux2") for p in model.get_submodule(h).parameters())
    assert trace.total_params - trace.total_params_inference == aux_params


def test_training_forward_returns_the_aux_logits_and_fx_traces_it(model_of):
    model = model_of("googlenet_paper").train()
    x = torch.randn(1, 3, 224, 224)
    try:
        gm = fx.symbolic_trace(model)
        with torch.no_grad():
            torch.manual_seed(1)  # the same dropout masks in both runs
            out = model(x)
            torch.manual_seed(1)
            traced = gm(x)
    finally:
        model.eval()
    assert [t.shape for t in out] == [(1, 1000)] * 3
    for a, b in zip(out, traced):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with torch.no_grad():
        assert isinstance(model(x[:, :, :64, :64]), torch.Tensor)


def test_multiply_adds_at_224_are_the_papers_one_and_a_half_billion(graph_of):
    # Section 5: "a computational budget of 1.5 billion multiply-adds at inference time".
    trace = trace_shapes(graph_of("googlenet_paper"), 224)
    assert trace.total_macs == 1_582_671_872
    assert trace.total_params_inference == 6_998_552  # the paper's Table 1 sums to about 6.8 M
