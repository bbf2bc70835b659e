"""Inception-ResNet blocks are drawn as branches plus the shortcut, with the scale and the add."""

import pytest
import torch

from explorer.core.model.zoo import get_spec

# (block type, count, residual scale, channels) in data-flow order.
RESIDUAL = {
    "inception_resnet_v1": [("InceptionResNetA", 5, 0.17, 256), ("InceptionResNetB", 10, 0.10, 896),
                            ("InceptionResNetC", 5, 0.20, 1792)],
    "inception_resnet_v2": [("InceptionResNetA", 10, 0.17, 320), ("InceptionResNetB", 20, 0.10, 1088),
                            ("InceptionResNetC", 9, 0.20, 2080), ("InceptionResNetC", 1, 1.0, 2080)],
}

BRANCHES = {
    "InceptionResNetA": "(#1×1 ‖ #3×3 reduce → #3×3 ‖ #3×3 reduce → #3×3 → #3×3) → #1×1",
    "InceptionResNetB": "(#1×1 ‖ #1×1 reduce → 1×7 → 7×1 (factorized 7×7)) → #1×1",
    "InceptionResNetC": "(#1×1 ‖ #1×1 reduce → 1×3 → 3×1 (factorized 3×3)) → #1×1",
}


@pytest.mark.parametrize("name", list(RESIDUAL))
def test_residual_blocks_have_a_shortcut_a_scaled_branch_and_an_add(graph_of, name):
    graph = graph_of(name)
    residual = [n for n in graph.blocks() if n.kind == "residual"]
    expected = [(t, s, c) for t, count, s, c in RESIDUAL[name] for _ in range(count)]
    assert [(n.module_type, n.branches[1].scale, n.out_channels) for n in residual] == expected
    model = get_spec(name).build(device="meta")
    for node in residual:
        shortcut, branch = node.branches
        assert node.merge == "add"
        assert shortcut.label == "identity (shortcut)" and not shortcut.all_layers() and shortcut.scale is None
        assert branch.label == f"{BRANCHES[node.module_type]} → ×{branch.scale:g}"
        assert branch.merge == "cat" and branch.out_channels == node.out_channels
        # The scale read from the graph is the module's own.
        assert branch.scale == pytest.approx(model.get_submodule(node.name).scale)
        # The 1×1 convolution after the concatenation is linear: no batch norm, no ReLU.
        linear = model.get_submodule(node.name).conv2d
        assert isinstance(linear, torch.nn.Conv2d) and linear.bias is not None


def test_residual_scale_and_add_are_in_the_traced_forward():
    from torch import fx

    model = get_spec("inception_resnet_v2").build(device="meta")
    gm = fx.symbolic_trace(model)
    muls = [n for n in gm.graph.nodes if n.op == "call_function" and n.target.__name__ == "mul"]
    adds = [n for n in gm.graph.nodes if n.op == "call_function" and n.target.__name__ == "add"]
    assert len(muls) == len(adds) == 40
    assert sorted({a for n in muls for a in n.args if isinstance(a, float)}) == [0.1, 0.17, 0.2, 1.0]


def test_last_block_of_v2_has_no_relu_and_v1_follows_figure_15():
    v2 = get_spec("inception_resnet_v2").build(device="meta")
    assert v2.block8.relu is None and all(b.relu is not None for b in v2.repeat_2)
    v1 = get_spec("inception_resnet_v1").build(device="meta")
    assert (len(v1.repeat), len(v1.repeat_1), len(v1.repeat_2)) == (5, 10, 5)
    # Reduction-A with Table 1's k, l, m, n for Inception-ResNet-v1: 192, 192, 256, 384.
    ra = v1.mixed_6a
    assert (ra.branch1[0].conv.out_channels, ra.branch1[1].conv.out_channels, ra.branch1[2].conv.out_channels,
            ra.branch0.conv.out_channels) == (192, 192, 256, 384)
