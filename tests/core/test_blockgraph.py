"""The block graph is read from the real layers: branches, kernels, channels, aux heads, data flow."""

import networkx as nx
import pytest
import torch
import torch.nn as nn

from explorer.core.graph.blockgraph import block_graph_from_module
from explorer.core.model.zoo import get_spec

GOOGLENET_BLOCKS = ["inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d",
                    "inception4e", "inception5a", "inception5b"]


def _convs(module):
    return [(q, m) for q, m in module.named_modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_every_conv_of_every_block_appears_once_with_its_real_kernel(graph_of, name):
    graph = graph_of(name)
    model = get_spec(name).build(device="meta")
    for node in graph.blocks():
        layers = [l for b in node.branches for l in b.all_layers()]
        real = {f"{node.name}.{q}": m for q, m in _convs(model.get_submodule(node.name))}
        convs = [l for l in layers if l.type == "conv"]
        assert sorted(l.name for l in convs) == sorted(real), node.name
        for l in convs:
            m = real[l.name]
            assert l.kernel == m.kernel_size and l.stride == m.stride and l.padding == m.padding
            assert l.out_channels == m.out_channels


def test_googlenet_blocks_and_branch_labels(graph_of):
    graph = graph_of("googlenet")
    assert [n.name for n in graph.blocks()] == GOOGLENET_BLOCKS
    model = get_spec("googlenet").build(device="meta")
    for node in graph.blocks():
        m = model.get_submodule(node.name)
        b1, b2, b3, b4 = node.branches
        assert b1.label == "#1×1" and b1.out_channels == m.branch1.conv.out_channels
        assert b2.label == "#3×3 reduce → #3×3" and b2.reduce_channels == m.branch2[0].conv.out_channels
        # torchvision's "5×5" branch really is a 3×3 convolution: the label names the paper's #5×5
        # column and the real kernel beside it, and the note says so.
        kh, kw = m.branch3[1].conv.kernel_size
        assert b3.kernel == (kh, kw) and b3.label == f"#5×5 reduce → #5×5 ({kh}×{kw} kernel)"
        assert b3.note and "5×5" in b3.note and any("5×5" in n for n in node.notes)
        assert len({b.label for b in node.branches}) == 4
        assert b4.label == "3×3 max pool → pool proj" and b4.pool.type == "max_pool"
        assert b4.pool_proj == m.branch4[1].conv.out_channels
        assert node.out_channels == sum(b.out_channels for b in node.branches)


def test_inception_v3_factorized_nested_and_reduction_blocks(graph_of):
    graph = graph_of("inception_v3")
    six_b = graph.node("Mixed_6b")
    kernels = [l.kernel for l in six_b.branches[1].all_layers()]
    assert kernels == [(1, 1), (1, 7), (7, 1)]
    assert "1×7 → 7×1" in six_b.branches[1].label and "factorized 7×7" in six_b.branches[1].label
    seven_b = graph.node("Mixed_7b")
    b = seven_b.branches[1]
    assert [p.all_layers()[0].kernel for p in b.parallel] == [(1, 3), (3, 1)] and b.merge == "cat"
    assert b.out_channels == sum(p.out_channels for p in b.parallel)
    assert "(1×3 ‖ 3×1)" in b.label
    six_a = graph.node("Mixed_6a")
    pool = six_a.branches[-1]
    assert pool.label == "3×3 max pool /2" and pool.layers[0].stride == (2, 2) and pool.kernel is None
    five_b = graph.node("Mixed_5b")
    assert five_b.branches[1].label == "#5×5 reduce → #5×5"
    assert five_b.branches[3].pool.type == "avg_pool"
    for node in graph.blocks():
        assert node.out_channels == sum(b.out_channels for b in node.branches)


@pytest.mark.parametrize("name,aux", [("googlenet", {"aux1": "inception4a", "aux2": "inception4d"}),
                                      ("inception_v3", {"AuxLogits": "Mixed_6e"})])
def test_aux_heads_are_training_only_side_heads(graph_of, name, aux):
    graph = graph_of(name)
    heads = {n.name for n in graph.nodes() if n.training_only}
    assert heads == set(aux)
    for head, source in aux.items():
        node = graph.node(head)
        assert node.kind == "aux" and graph.predecessors(head) == [source] and graph.successors(head) == []
    model = get_spec(name).build(device="meta")
    aux_params = sum(p.numel() for h in aux for p in model.get_submodule(h).parameters())
    assert graph.total_params - graph.total_params_inference == aux_params


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_inference_path_is_one_chain_from_input_to_fc(graph_of, name):
    graph = graph_of(name)
    g = graph.graph
    assert nx.is_directed_acyclic_graph(g)
    main = g.subgraph([n.name for n in graph.nodes() if not n.training_only])
    order = list(nx.topological_sort(main))
    assert order[0] == "input" and order[-1] == "fc"
    assert all(main.has_edge(a, b) for a, b in zip(order, order[1:]))
    stages = [graph.node(n).stage for n in order]
    assert stages == sorted(stages, key=["stem", "body", "head"].index)


class Fork(nn.Module):
    """A hand-made block: two parallel paths joined by concatenation, then a residual add."""

    def __init__(self):
        super().__init__()
        self.left = nn.Conv2d(8, 4, 1)
        self.right = nn.Sequential(nn.Conv2d(8, 2, 1), nn.ReLU(), nn.Conv2d(2, 4, (1, 5), padding=(0, 2)))
        self.proj = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        return x + self.proj(torch.cat([self.left(x), self.right(x)], 1))


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2)
        self.blocks = nn.Sequential(Fork(), Fork())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def test_generic_detection_on_a_hand_made_net():
    graph = block_graph_from_module(SmallNet(), "small", native_size=(32, 32))
    assert [n.name for n in graph.nodes()] == ["input", "stem", "blocks.0", "blocks.1", "pool", "fc"]
    block = graph.node("blocks.0")
    assert block.kind == "residual" and block.merge == "add"
    shortcut, residual = block.branches  # in the order the addition takes them: x + proj(...)
    assert shortcut.label == "identity (shortcut)" and not shortcut.all_layers()
    assert residual.merge == "cat" and [p.out_channels for p in residual.parallel] == [4, 4]
    assert [l.kernel for l in residual.parallel[1].all_layers()] == [(1, 1), (1, 5)]
    assert residual.tail[0].name == "blocks.0.proj"
    assert graph.node("stem").stage == "stem" and graph.node("fc").stage == "head"


def test_paper_identity_comes_from_the_zoo_and_the_kernel_from_the_layers(graph_of):
    """The paper's column is the zoo spec's data (its branch kernels); the kernel in the label is read
    from the module: with the paper's kernel for branch 3 changed, the label follows it."""
    from dataclasses import replace

    spec = get_spec("googlenet")
    model = spec.build(device="meta")
    kh, kw = model.inception3a.branch3[1].conv.kernel_size
    for paper_kernel, column in (((5, 5), "#5×5"), ((7, 7), "#7×7")):
        paper = replace(spec.paper, branch_kernels={"Inception": ((1, 1), (3, 3), paper_kernel, None)})
        graph = block_graph_from_module(model, "googlenet", paper=paper)
        b3 = graph.node("inception3a").branches[2]
        assert b3.label == f"{column} reduce → {column} ({kh}×{kw} kernel)"
    # Without the paper, two branches of one block read the same and get their numbers.
    plain = block_graph_from_module(model, "googlenet").node("inception3a")
    assert [b.label for b in plain.branches] == [
        "#1×1", "#3×3 reduce → #3×3 (branch 2)", "#3×3 reduce → #3×3 (branch 3)", "3×3 max pool → pool proj"]


@pytest.mark.parametrize("name, block, labels", [
    ("googlenet_paper", "inception3a",
     ["#1×1", "#3×3 reduce → #3×3", "#5×5 reduce → #5×5", "3×3 max pool → pool proj"]),
    ("inception_v3", "Mixed_5b",
     ["#1×1", "#5×5 reduce → #5×5", "#3×3 reduce → #3×3 → #3×3", "3×3 avg pool → pool proj"]),
    ("inception_v3", "Mixed_6a", ["#3×3 /2", "#3×3 reduce → #3×3 → #3×3 /2", "3×3 max pool /2"]),
])
def test_labels_that_were_distinct_stay_as_they_were(graph_of, name, block, labels):
    assert [b.label for b in graph_of(name).node(block).branches] == labels


class TwinBranches(nn.Module):
    """A block whose second and third branches are the same 1×1 → 3×3 path (different weights)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Conv2d(2, 4, 3, padding=1))
        self.c = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Conv2d(2, 4, 3, padding=1))

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x), self.c(x)], 1)


class TwinNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = TwinBranches()
        self.fc = nn.Linear(12, 2)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.block(x), 1), 1))


def test_identical_branches_of_a_custom_net_get_distinct_labels():
    block = block_graph_from_module(TwinNet(), "twins", native_size=(8, 8)).node("block")
    assert [b.label for b in block.branches] == [
        "#1×1", "#3×3 reduce → #3×3 (branch 2)", "#3×3 reduce → #3×3 (branch 3)"]
