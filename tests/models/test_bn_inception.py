"""BN-Inception after Ioffe & Szegedy 2015, Figure 5: double 3×3 branches, avg/max pools, stride-2 modules."""

import torch.nn as nn

from explorer.core.shapes.trace import trace_shapes
from explorer.core.model.zoo import get_spec

# Figure 5: #1×1, #3×3 reduce, #3×3, double #3×3 reduce, double #3×3, pool + proj (0: pass through).
TABLE = {
    "inception3a": (64, 64, 64, 64, 96, "avg", 32),
    "inception3b": (64, 64, 96, 64, 96, "avg", 64),
    "inception3c": (0, 128, 160, 64, 96, "max", 0),
    "inception4a": (224, 64, 96, 96, 128, "avg", 128),
    "inception4b": (192, 96, 128, 96, 128, "avg", 128),
    "inception4c": (160, 128, 160, 128, 160, "avg", 128),
    "inception4d": (96, 128, 192, 160, 192, "avg", 128),
    "inception4e": (0, 128, 192, 192, 256, "max", 0),
    "inception5a": (352, 192, 320, 160, 224, "avg", 128),
    "inception5b": (352, 192, 320, 192, 224, "max", 128),
}


def test_blocks_follow_figure_5(graph_of):
    graph = graph_of("bn_inception")
    assert [b.name for b in graph.blocks()] == list(TABLE)
    for node in graph.blocks():
        ch1, red3, ch3, red_dbl, dbl, pool, proj = TABLE[node.name]
        branches = list(node.branches)
        if ch1:
            b1 = branches.pop(0)
            assert (b1.label, b1.out_channels) == ("#1×1", ch1)
        b3, bdbl, bpool = branches
        stride = "" if ch1 else " /2"
        assert (b3.label, b3.reduce_channels, b3.out_channels) == (f"#3×3 reduce → #3×3{stride}", red3, ch3)
        assert (bdbl.label, bdbl.reduce_channels, bdbl.out_channels) == (
            f"#3×3 reduce → #3×3 → #3×3{stride}", red_dbl, dbl)
        assert [l.kernel for l in bdbl.all_layers()] == [(1, 1), (3, 3), (3, 3)]  # the factorised 5×5
        assert bpool.pool.type == f"{pool}_pool"
        if proj:
            assert bpool.label == f"3×3 {pool} pool → pool proj" and bpool.pool_proj == proj
        else:  # "max + pass through": stride 2, no projection
            assert bpool.label == "3×3 max pool /2" and not [l for l in bpool.all_layers() if l.type == "conv"]
        assert not node.notes


def test_stride_2_modules_halve_the_grid_without_pooling_layers_between_stages(graph_of):
    graph = graph_of("bn_inception")
    trace = trace_shapes(graph, 224)
    shapes = {n: trace.nodes[n].output_shape for n in TABLE}
    assert shapes["inception3b"] == (320, 28, 28) and shapes["inception3c"] == (576, 14, 14)
    # The filter columns of 4c and 4d add up to 608 (the table's output column says 576), hence 1056 after 4e.
    assert shapes["inception4c"] == shapes["inception4d"] == (608, 14, 14)
    assert shapes["inception4e"] == (1056, 7, 7) and shapes["inception5b"] == (1024, 7, 7)
    pools = [n.name for n in graph.nodes() if n.kind == "pool" and n.stage == "body"]
    assert pools == []
    model = get_spec("bn_inception").build(device="meta")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == sum(isinstance(m, nn.Conv2d) for m in model.modules())
