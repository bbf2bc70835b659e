"""The demo model in the zoo: its blocks read like GoogLeNet's, its shapes are those of its real forward, its
classes are the shapes' and its preprocessing the training's."""

import json

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from explorer.cli import main
from explorer.core.demo.task import IMAGE_SIZE, SHAPE_CLASSES
from explorer.core.model.zoo import get_spec, model_names
from explorer.core.shapes.trace import trace_shapes

_BLOCKS = ["inception3a", "inception3b", "inception4a", "inception4b", "inception5a"]


def test_in_the_zoo_with_the_shapes_classes_and_its_size():
    assert "shapes_inception" in model_names()
    spec = get_spec("shapes_inception")
    assert spec.categories() == list(SHAPE_CLASSES)
    assert spec.native_size == (IMAGE_SIZE, IMAGE_SIZE) == (64, 64)
    model = spec.build()
    assert not model.training and model(torch.zeros(2, 3, 64, 64)).shape == (2, 6)


def test_blocks_have_googlenet_s_four_branches(graph_of):
    graph = graph_of("shapes_inception")
    blocks = graph.blocks()
    assert [n.name for n in blocks] == _BLOCKS
    model = get_spec("shapes_inception").build(device="meta")
    for node in blocks:
        assert node.kind == "inception" and node.merge == "cat" and len(node.branches) == 4
        m = model.get_submodule(node.name)
        b1, b2, b3, b4 = node.branches
        assert b1.label == "#1×1" and b1.kernel == (1, 1) and b1.out_channels == m.branch1.conv.out_channels
        assert b2.label == "#3×3 reduce → #3×3" and b2.reduce_channels == m.branch2[0].conv.out_channels
        assert b3.label == "#5×5 reduce → #5×5" and b3.kernel == (5, 5)
        assert b4.label == "3×3 max pool → pool proj" and b4.pool_proj == m.branch4[1].conv.out_channels
        assert node.out_channels == sum(b.out_channels for b in node.branches)
    # stem before the first block, pooling between the stages, the head after the last
    order = [n.name for n in graph.nodes()]
    assert order.index("maxpool3") == order.index("inception3b") + 1
    assert order.index("maxpool4") == order.index("inception4b") + 1
    assert graph.node("conv1").stage == "stem" and graph.node("fc").stage == "head"


def test_traced_shapes_are_those_of_the_real_forward(graph_of):
    """Every node's shape at 64×64 (and at 96×80) against forward hooks on the real network."""
    graph = graph_of("shapes_inception")
    model = get_spec("shapes_inception").build()
    for size in ((64, 64), (96, 80)):
        seen = {}
        hooks = [model.get_submodule(n.name).register_forward_hook(
            lambda mod, inp, out, name=n.name: seen.__setitem__(name, tuple(out.shape[1:])))
            for n in graph.nodes() if n.kind != "input"]
        with torch.no_grad():
            model(torch.zeros(1, 3, *size))
        for h in hooks:
            h.remove()
        trace = trace_shapes(graph, size)
        assert {name: trace.nodes[name].output_shape for name in seen} == seen
        if size == (64, 64):
            assert seen["inception5a"] == (256, 4, 4) and seen["fc"] == (6,)


def test_cli_traces_it_at_64(capsys):
    assert main(["trace", "shapes_inception", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert [n for n in nodes if nodes[n]["kind"] == "inception"] == _BLOCKS
    model = get_spec("shapes_inception").build()
    assert doc["total_params"] == sum(p.numel() for p in model.parameters())


def test_preprocessing_scales_pixels_to_minus_one_one(tmp_path):
    """The zoo's transform of a 64×64 image is the image itself, scaled to [-1, 1]: no resize, no crop."""
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    x = get_spec("shapes_inception").transforms()(Image.open(path).convert("RGB"))
    expected = torch.from_numpy(rgb).permute(2, 0, 1).double() / 255 * 2 - 1
    assert torch.allclose(x.double(), expected, atol=1e-6)


def test_uses_batch_norm_and_relu_in_every_branch():
    model = get_spec("shapes_inception").build()
    for name in _BLOCKS:
        block = model.get_submodule(name)
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        norms = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
        assert len(convs) == len(norms) == 6
