"""Each branch's layer conductance at its block adds up to f(x) − f(baseline) (issue 26's decomposition).

References independent of the code under test: f(x) and f(baseline) from plain forwards of the network, and the
per-branch conductance from captum's LayerConductance on torchvision's own branch modules (not on our capture
network's concatenated output, which we split by channel)."""

import numpy as np
import pytest
import torch

from explorer.core.attribution.decomposition import branch_conductance, concatenated_widths
from explorer.core.attribution.methods import baseline_for
from explorer.core.graph.capture import CaptureModel
from explorer.core.model.graphs import zoo_block_graph

from ..netutil import calibrated_model


@pytest.fixture(scope="module")
def googlenet():
    model = calibrated_model("googlenet")
    return model, CaptureModel(model, zoo_block_graph("googlenet")), zoo_block_graph("googlenet")


@pytest.fixture(scope="module")
def image():
    g = torch.Generator().manual_seed(7)
    return torch.randn(1, 3, 64, 64, generator=g)


def _captum_sum(model, modules, x, x0, target, steps=16):
    """captum's conductance through `modules` of the plain network (each a module whose output is part of the
    block's concatenation), summed."""
    from captum.attr import LayerConductance

    return sum(float(LayerConductance(model, m).attribute(x, baselines=x0, target=target, n_steps=steps,
                                                          method="gausslegendre").detach().double().sum())
               for m in modules)


@pytest.mark.parametrize("block", ["inception3a", "inception5b"])
def test_googlenets_branches_are_captums_conductance_through_its_own_modules(googlenet, image, block):
    model, cm, graph = googlenet
    result = branch_conductance(cm, graph, image, block, steps=16)
    x0 = baseline_for(image, "black")
    with torch.no_grad():
        fx, fx0 = model(image)[0, result.target], model(x0)[0, result.target]
    assert result.target == int(model(image).argmax(1))
    assert result.output == pytest.approx(float(fx), abs=1e-4)
    assert result.baseline_output == pytest.approx(float(fx0), abs=1e-4)
    inception = model.get_submodule(block)
    for k, branch in enumerate((inception.branch1, inception.branch2, inception.branch3, inception.branch4)):
        ref = _captum_sum(model, [branch], image, x0, result.target)
        assert result.contributions[k] == pytest.approx(ref, rel=1e-3, abs=1e-4), (block, k)
    assert len(set(np.round(result.contributions, 6))) == 4  # the branches differ


def test_inception_v3s_nested_branch_is_the_sum_of_its_two_halves():
    """Mixed_7b's branch 2 is 1×1 → (1×3 ‖ 3×1) concatenated: its conductance is theirs together."""
    model = calibrated_model("inception_v3")
    graph = zoo_block_graph("inception_v3")
    cm = CaptureModel(model, graph)
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    result = branch_conductance(cm, graph, x, "Mixed_7b", steps=16)
    x0 = baseline_for(x, "black")
    e = model.Mixed_7b
    parts = [[e.branch1x1], [e.branch3x3_2a, e.branch3x3_2b], [e.branch3x3dbl_3a, e.branch3x3dbl_3b], [e.branch_pool]]
    assert concatenated_widths(graph, "Mixed_7b") == [320, 768, 768, 192]
    for k, modules in enumerate(parts):
        assert result.contributions[k] == pytest.approx(_captum_sum(model, modules, x, x0, result.target),
                                                        rel=1e-3, abs=1e-4), k


@pytest.mark.parametrize("baseline", ["zero", "black"])
def test_the_demo_models_branches_add_up_to_what_two_forwards_say(baseline):
    """Completeness on the trained demo network, every block: the branches' sum converges to f(x) − f(x') from two
    plain forwards as the integral gets more steps — within 2 % at 256 (measured at 512: 0.0–1.0 %; at 32 steps
    up to 8 % at the first blocks, 0.2 % at the last). The first block converges slowest, the last fastest; the
    error is shown beside the sum, not hidden."""
    from explorer.core.demo.drawing import draw_images
    from explorer.core.demo.task import MEAN, STD
    from explorer.core.demo.training import network_input
    from explorer.core.model.loading import load_model

    loaded = load_model("shapes_inception")
    graph = zoo_block_graph("shapes_inception")
    cm = CaptureModel(loaded.module, graph)
    net = loaded.module.eval()
    for drawn in draw_images(1, 2427):
        x = network_input(drawn.image[None])
        x0 = baseline_for(x, baseline, mean=MEAN, std=STD)
        with torch.no_grad():
            logits, logits0 = net(x), net(x0)
        assert int(logits.argmax(1)) == drawn.label  # the trained network knows the shape
        difference = float(logits[0, drawn.label] - logits0[0, drawn.label])
        for block in [graph.blocks()[0].name, graph.blocks()[-1].name]:
            coarse, fine = (branch_conductance(cm, graph, x, block, baseline=baseline, steps=n, internal_batch_size=64,
                                               normalisation={"mean": MEAN, "std": STD}) for n in (32, 256))
            assert fine.target == drawn.label and fine.difference == pytest.approx(difference, abs=1e-4)
            assert abs(fine.total - difference) < 0.02 * abs(difference), (block, fine)
            assert abs(fine.error) <= abs(coarse.error) + 1e-6, (block, coarse.error, fine.error)


def test_a_residual_block_is_refused_not_decomposed():
    graph = zoo_block_graph("inception_resnet_v2")
    residual = next(b.name for b in graph.blocks() if b.merge == "add")
    with pytest.raises(ValueError, match="does not concatenate"):
        concatenated_widths(graph, residual)
