"""The handout's content, without Qt: its sections, and feature maps that are the image's real branch outputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.core.lecture.handout import BranchMaps, GraphDrawing, build_handout, check_blocks
from explorer.core.model.loading import load_model


@pytest.fixture(scope="module")
def googlenet():
    from explorer.core.model.graphs import zoo_block_graph

    return load_model("googlenet", weights="none"), zoo_block_graph("googlenet")


def test_feature_maps_are_the_branch_outputs_of_the_plain_model(googlenet, tmp_path):
    from torchvision.models import GoogLeNet_Weights

    loaded, graph = googlenet
    path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 130, 3), dtype=np.uint8)).save(path)
    h = build_handout(loaded, graph, (64, 64), image=path, blocks=["inception4a"])
    assert [s.title for s in h.sections] == [
        "Block graph", "Paper table: googlenet at 64×64", "Shape trace at 64×64", "Top-5 of noise.png",
        "Block inception4a: feature maps", "Attribution: Grad-CAM of noise.png"]
    assert [d.key for d in h.drawings] == ["graph", "block:inception4a"]
    section = h.sections[4]
    assert GraphDrawing("block:inception4a", frozenset({"inception4a"}), "inception4a") in section.parts
    strips = next(p for p in section.parts if isinstance(p, tuple) and isinstance(p[0], BranchMaps))

    # Hooks on torchvision's own branch modules, the input from torchvision's own transforms.
    module = loaded.module.eval()
    block = module.inception4a
    outs = {}
    hooks = [getattr(block, f"branch{k}").register_forward_hook(lambda m, i, o, k=k: outs.__setitem__(k, o))
             for k in range(1, 5)]
    try:
        x = GoogLeNet_Weights.IMAGENET1K_V1.transforms()(Image.open(path).convert("RGB"))[None]
        with torch.no_grad():
            module(x)
    finally:
        for hk in hooks:
            hk.remove()
    assert len(strips) == 4
    for k, strip in enumerate(strips, 1):
        o = outs[k][0]
        top = torch.argsort(o.mean(dim=(1, 2)), descending=True)[: len(strip.channels)]
        assert list(strip.channels) == top.tolist()
        m = o[top].numpy()
        expect = (m - m.min()) / (m.max() - m.min())
        np.testing.assert_allclose(strip.maps, expect, atol=1e-4)
        assert strip.shape == "×".join(map(str, o.shape))
        assert strip.label.endswith(graph.node("inception4a").branches[k - 1].label)

    # The table's "off" column: the top-1's probability with each branch alone zeroed, through a hook on
    # torchvision's branch module, minus the plain probability (issue 26).
    from explorer.core.lecture.handout import Table

    table = next(p for p in section.parts if isinstance(p, Table))
    assert table.columns[-1] == "off"
    with torch.no_grad():
        probs = torch.softmax(module(x), 1)[0]
    top1 = int(probs.argmax())
    for k, row in enumerate(table.rows, 1):
        handle = getattr(block, f"branch{k}").register_forward_hook(lambda m, i, o: torch.zeros_like(o))
        with torch.no_grad():
            knocked = torch.softmax(module(x), 1)[0]
        handle.remove()
        shown, _, mark = row[-1].partition(" %")
        assert float(shown) == pytest.approx(100 * float(knocked[top1] - probs[top1]), abs=0.051), (k, row)
        assert (mark.strip() == "⟲") == (int(knocked.argmax()) != top1), (k, row)


def test_without_an_image_the_first_inception_block_is_opened(googlenet):
    loaded, graph = googlenet
    h = build_handout(loaded, graph, (48, 48))
    assert [s.title for s in h.sections] == ["Block graph", "Paper table: googlenet at 48×48", "Shape trace at 48×48",
                                             "Block inception3a"]
    with pytest.raises(ValueError, match="no block inception9z in googlenet; blocks: inception3a"):
        check_blocks(graph, ["inception9z"])


def test_a_model_without_a_paper_is_not_compared_with_one():
    """The paper-table page of a model that has no paper (ResNet-18) says so, and marks nothing as differing;
    GoogLeNet's cites its paper."""
    from explorer.core.lecture.handout import _paper_section
    from explorer.core.model.graphs import block_graph, zoo_block_graph
    from explorer.core.shapes.trace import trace_shapes

    resnet = block_graph("torchvision:resnet18")
    section = _paper_section(resnet, trace_shapes(resnet, (224, 224)))
    [text] = section.text
    assert "no paper table to compare with" in text and "differ from the paper" not in text
    googlenet = zoo_block_graph("googlenet")
    [cited] = _paper_section(googlenet, trace_shapes(googlenet, (224, 224))).text
    assert "Layout after" in cited and "differ from the paper" in cited


def test_pages_over_an_image_of_random_weights_say_the_network_has_learned_nothing(googlenet, tmp_path):
    """Random weights: the handout carries the caveat its writer says once on each page over the image, and no
    section's own text warns again (the top-5 page names the weights plainly); the page about the architecture
    names them as the model's weights. The demo model's learned weights: no caveat."""
    from explorer.core.lecture.handout import IMAGE_CAVEAT
    from explorer.core.model.graphs import zoo_block_graph
    from explorer.core.model.weights import RANDOM_WARNING

    from explorer.core.model.loading import has_learned_weights

    loaded, graph = googlenet
    demo = load_model("shapes_inception")
    assert not has_learned_weights(loaded) and not has_learned_weights(loaded.weights)
    assert has_learned_weights(demo) and has_learned_weights(demo.weights)
    path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    h = build_handout(loaded, graph, (64, 64), image=path, blocks=["inception4a"])
    assert h.image_caveat == IMAGE_CAVEAT
    warned = [" ".join(s.text).lower().count("random weights") for s in h.sections]
    assert warned == [1, 0, 0, 0, 0, 0]  # the block graph's "Weights: random weights: …", nothing over the image
    assert RANDOM_WARNING in " ".join(h.sections[0].text) and "weights: none, random" in h.sections[3].text[0]
    shapes = build_handout(demo, zoo_block_graph("shapes_inception"), (64, 64), image=path)
    assert shapes.image_caveat == "" and not any("random" in " ".join(s.text) for s in shapes.sections)
