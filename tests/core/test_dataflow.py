"""Data-flow slides carry the engine's shapes and the image's real maps, taken from one capture.

Every expected value is computed apart from the slide code: shapes by the engine's shape trace and by
hooks on the plain model, maps and energy shares from tensors hooked on the plain model, the input
slide from torchvision's own transforms, the top-5 from torchvision's GoogLeNet.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from explorer.core.graph.blockgraph import block_graph_from_module
from explorer.core.graph.capture import CaptureModel
from explorer.core.lecture.dataflow import Position, SlideDeck, next_position, previous_position, strongest_maps
from explorer.core.shapes.trace import trace_shapes
from tests.netutil import calibrated_model, calibrated_state_dict, synthetic_batch

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
MAPS = 3


def image(size, seed=5):
    return (synthetic_batch(2, size, torch.Generator().manual_seed(seed))[1:] - MEAN) / STD


@functools.cache
def resnet18():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = torchvision.models.resnet18(weights=None).eval()
    return model, block_graph_from_module(model, "torchvision:resnet18")


def branch_modules(name, model, graph):
    """{(block, k): module whose output is branch k}, read off each architecture by hand."""
    out = {}
    for node in graph.blocks():
        for k, branch in enumerate(node.branches):
            if name == "googlenet":
                out[(node.name, k)] = model.get_submodule(f"{node.name}.branch{k + 1}")
            elif name == "resnet18":
                block = model.get_submodule(node.name)
                if branch.label.startswith("identity"):
                    continue  # the block's input, checked through the block's own pre-hook
                out[(node.name, k)] = block.bn2 if k == 0 else block.downsample
            else:  # Inception v3: a branch that ends in a BasicConv2d
                last = branch.all_layers()[-1]
                if last.type == "conv" and not branch.parallel:
                    out[(node.name, k)] = model.get_submodule(last.name.rsplit(".", 1)[0])
    return out


def hooked(model, graph, modules, x):
    """Block inputs and outputs and branch outputs of the plain model's own forward."""
    seen, handles = {}, []
    for node in graph.blocks():
        m = model.get_submodule(node.name)
        handles.append(m.register_forward_hook(
            lambda mod, i, o, n=node.name: seen.update({(n, "in"): i[0].clone(), (n, "out"): o.clone()})))
    for key, m in modules.items():
        # A copy: resnet's `out += identity` overwrites bn2's output after the hook has seen it.
        handles.append(m.register_forward_hook(lambda mod, i, o, key=key: seen.__setitem__(key, o.clone())))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


CASES = {"googlenet": 128, "inception_v3": 160, "resnet18": 64}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    name = request.param
    if name == "resnet18":
        model, graph = resnet18()
    else:
        from explorer.core.graph.blockgraph import build_block_graph
        from explorer.core.model.zoo import get_spec

        model, graph = calibrated_model(name), build_block_graph(get_spec(name))
    size = CASES[name]
    x = image(size)
    cap = CaptureModel(model, graph).capture(x)
    rgb = np.zeros((size, size, 3), np.uint8)
    return name, model, graph, x, cap, rgb


def test_block_slides_carry_the_traced_shapes_and_the_images_maps(case):
    name, model, graph, x, cap, rgb = case
    size = x.shape[-1]
    deck = SlideDeck(graph, cap, rgb, maps_per_branch=MAPS, attribution={})
    trace = trace_shapes(graph, size)
    seen = hooked(model, graph, branch_modules(name, model, graph), x)
    assert deck.names()[1:-1] == [b.name for b in graph.blocks() if not b.training_only]
    checked = 0
    for i, block in enumerate(deck.blocks, start=1):
        s = deck.slide(i)
        assert s.kind == "block" and s.name == block
        assert s.out_shape == trace.nodes[block].output_shape == tuple(seen[(block, "out")].shape[1:])
        assert s.in_shape == tuple(seen[(block, "in")].shape[1:])
        out = seen[(block, "out")][0].double()
        total = out.pow(2).sum().item()
        for b in s.branches:
            t = seen.get((block, b.index))
            if t is None and graph.node(block).branches[b.index].label.startswith("identity"):
                t = seen[(block, "in")]
            if t is None:
                continue
            t = t[0]
            assert b.out_shape == tuple(t.shape), (block, b.index)
            top = t.mean(dim=(1, 2)).topk(MAPS).indices
            assert b.channels.tolist() == top.tolist(), (block, b.index)
            np.testing.assert_allclose(b.maps, t[top].numpy(), rtol=1e-5, atol=1e-6)
            assert b.energy_share == pytest.approx(t.double().pow(2).sum().item() / total, rel=1e-6)
            checked += 1
    assert checked >= len(deck.blocks)
    # Fewer maps on request; the attribution's shares appear once computed.
    deck.set_maps_per_branch(1)
    first = deck.slide(1)
    assert all(b.maps.shape[0] == 1 for b in first.branches)
    shares = [0.1 * (k + 1) for k in range(len(first.branches))]
    deck.set_attribution({first.name: shares})
    assert [b.attribution_share for b in deck.slide(1).branches] == pytest.approx(shares)
    assert deck.slide(2).branches[0].attribution_share is None
    # Knock-out effects join the same way: by block and branch_index, from a BranchEffects.
    from types import SimpleNamespace

    from explorer.core.lecture.dataflow import knockout_deltas

    fx = SimpleNamespace(effects=[SimpleNamespace(block=first.name, branch_index=k, delta_prob=-0.1 * (k + 1))
                                  for k in range(len(deck.slide(1).branches))])
    deck.set_knockouts(knockout_deltas(fx))
    assert [b.knockout_delta for b in deck.slide(1).branches] == pytest.approx(
        [-0.1 * (k + 1) for k in range(len(deck.slide(1).branches))])
    assert deck.slide(2).branches[0].knockout_delta is None


def test_building_every_slide_runs_no_forward(case, monkeypatch):
    name, model, graph, x, cap, rgb = case
    calls = []
    real = torch.nn.Conv2d.forward
    monkeypatch.setattr(torch.nn.Conv2d, "forward", lambda self, t: calls.append(1) or real(self, t))
    with torch.no_grad():
        model(x[:, :, :96, :96] if name != "inception_v3" else x)  # the counter counts
    assert calls
    calls.clear()
    deck = SlideDeck(graph, cap, rgb, categories=[f"c{i}" for i in range(1000)])
    for i in range(len(deck)):
        deck.slide(i)
    strongest_maps(cap, graph)
    assert calls == []


def test_thumbnails_are_each_nodes_strongest_channel(case):
    name, model, graph, x, cap, rgb = case
    seen = hooked(model, graph, {}, x)
    thumbs = strongest_maps(cap, graph)
    for block in [b.name for b in graph.blocks()]:
        out = seen[(block, "out")][0]
        m = out[out.mean(dim=(1, 2)).argmax()]
        m = (m - m.min()) / (m.max() - m.min())
        np.testing.assert_allclose(thumbs[block], m.numpy(), atol=1e-5)
    assert "input" not in thumbs and all(t.min() >= 0 and t.max() <= 1 for t in thumbs.values())


def test_flow_mode_lights_the_branches_in_order_then_the_join(case):
    name, model, graph, x, cap, rgb = case
    deck = SlideDeck(graph, cap, rgb)
    pos, seen = Position(), []
    while True:
        seen.append((pos.slide, deck.slide(pos.slide).lit(pos.step)))
        nxt = next_position(deck, pos, flow=True)
        if nxt == pos:
            break
        pos = nxt
    expected = [(0, None)]
    for i, block in enumerate(deck.blocks, start=1):
        n = len(graph.node(block).branches)
        expected += [(i, ("branch", k)) for k in range(n)] + [(i, ("merge", None))]
    expected.append((len(deck) - 1, None))
    assert seen == expected
    # Back from the start of a block's slide: the previous block at its join; without flow, slide by slide.
    assert previous_position(deck, Position(2, 0), flow=True) == Position(1, deck.flow_steps(1) - 1)
    assert previous_position(deck, Position(2, 0), flow=False) == Position(1, 0)
    assert next_position(deck, Position(1, 0), flow=False) == Position(2, 0)


@functools.cache
def _classified(path):
    from explorer.core.graph.blockgraph import build_block_graph
    from explorer.core.classify.inference import Classifier
    from explorer.core.model.loading import LoadedModel
    from explorer.core.model.weights import WeightsState
    from explorer.core.model.zoo import get_spec

    spec = get_spec("googlenet")
    loaded = LoadedModel(spec, calibrated_model("googlenet"), WeightsState("file", "calibrated"), spec.categories())
    graph = build_block_graph(spec)
    return graph, spec, Classifier(loaded, "cpu", graph=graph).classify_captured(path)


def test_first_slide_is_the_preprocessed_input_and_last_the_top5(tmp_path):
    pixels = (synthetic_batch(4, 300, torch.Generator().manual_seed(11))[3].permute(1, 2, 0) * 255).byte().numpy()
    path = tmp_path / "boxes.png"
    Image.fromarray(pixels[:, 20:]).save(path)  # not square: resize and crop both matter
    graph, spec, out = _classified(str(path))
    deck = SlideDeck(graph, out.capture, out.rgb, result=out.result, source="boxes.png")
    # torchvision's own preprocessing, de-normalised
    x = spec.weights_enum().transforms()(Image.open(path).convert("RGB"))
    ref = ((x * STD[0] + MEAN[0]).clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
    first = deck.slide(0)
    assert first.kind == "input" and first.out_shape == (3, 224, 224)
    assert np.abs(first.image.astype(np.float64) - ref).max() <= 1.0
    # torchvision's own GoogLeNet with the same weights
    plain = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    plain.load_state_dict(calibrated_state_dict("googlenet"))
    with torch.no_grad():
        probs = plain.eval()(x[None]).softmax(1)[0]
    values, indices = probs.topk(5)
    cats = spec.categories()
    last = deck.slide(len(deck) - 1)
    assert last.kind == "top5"
    assert [label for label, _ in last.top] == [cats[i] for i in indices.tolist()]
    assert [p for _, p in last.top] == pytest.approx(values.tolist(), abs=1e-3)
    # Without the classifier's result, the deck reads the same top-5 off the capture's logits.
    bare = SlideDeck(graph, out.capture, out.rgb, categories=cats)
    assert [label for label, _ in bare.slide(len(bare) - 1).top] == [cats[i] for i in indices.tolist()]


def test_a_split_branch_reads_as_parallel_paths(graph_of):
    from explorer.core.lecture.dataflow import describe_layers

    branch = graph_of("inception_v3").node("Mixed_7b").branches[1]
    assert describe_layers(branch) == ("1×1 conv, 384", "(1×3 conv, 384 ‖ 3×1 conv, 384)")
