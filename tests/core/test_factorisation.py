"""Factorisation savings against real layers, and kernel usage read from the block graphs."""

import pytest
import torch.nn as nn

from explorer.core.shapes.factorisation import factorisations, kernel_usage


def _params(*convs):
    return sum(p.numel() for c in convs for p in c.parameters())


@pytest.mark.parametrize("cin,cout", [(64, 64), (192, 96)])
def test_counts_equal_the_weights_of_real_convolutions(cin, cout):
    f5, f3, f7 = factorisations(cin, cout, (35, 35), n=7)
    k = dict(bias=False)
    assert f5.params_original == _params(nn.Conv2d(cin, cout, 5, **k))
    assert f5.params_replacement == _params(nn.Conv2d(cin, cout, 3, **k), nn.Conv2d(cout, cout, 3, **k))
    assert f3.params_replacement == _params(nn.Conv2d(cin, cout, (3, 1), **k), nn.Conv2d(cout, cout, (1, 3), **k))
    assert f7.params_replacement == _params(nn.Conv2d(cin, cout, (1, 7), **k), nn.Conv2d(cout, cout, (7, 1), **k))
    assert f5.macs_original == f5.params_original * 35 * 35


def test_the_papers_savings_at_equal_width():
    f5, f3, f7 = factorisations(128, 128, (17, 17))
    assert f5.saving == pytest.approx(1 - 18 / 25)  # the paper's 28 %
    assert f3.saving == pytest.approx(1 / 3)  # 33 %
    assert f7.saving == pytest.approx(1 - 14 / 49)


def test_kernel_usage_shows_which_model_uses_which(graph_of):
    v1 = kernel_usage(graph_of("googlenet"))
    v3 = kernel_usage(graph_of("inception_v3"))
    assert (5, 5) not in v1["inception3a"] and v1["inception3a"][(3, 3)] == 2  # torchvision's 3×3 "5×5"
    assert v3["Mixed_5b"][(5, 5)] == 1 and v3["Mixed_5b"][(3, 3)] == 2
    assert v3["Mixed_6b"][(1, 7)] == 3 and v3["Mixed_6b"][(7, 1)] == 3


def test_applied_factorisations_read_from_the_branches(graph_of):
    from explorer.core.shapes.factorisation import SEQUENTIAL, SIDE_BY_SIDE, STACKED, UNFACTORISED, applied_factorisations

    def applied(name, block):
        return {(f.family, f.n, f.branch_index + 1) for f in applied_factorisations(graph_of(name).node(block))}

    assert applied("googlenet_paper", "inception3a") == {(UNFACTORISED, 5, 3)}
    assert applied("googlenet", "inception3a") == set()  # a single 3×3: nothing factorised
    assert applied("bn_inception", "inception3a") == {(STACKED, 5, 3)}
    assert applied("inception_v3", "Mixed_5b") == {(UNFACTORISED, 5, 2), (STACKED, 5, 3)}
    assert applied("inception_v3", "Mixed_6b") == {(SEQUENTIAL, 7, 2), (SEQUENTIAL, 7, 3)}
    assert applied("inception_v3", "Mixed_7b") == {(SIDE_BY_SIDE, 3, 2), (SIDE_BY_SIDE, 3, 3)}


@pytest.mark.parametrize("name,size", [("googlenet_paper", (224, 224)), ("inception_v3", (320, 288))])
def test_branch_convs_equal_the_real_layers(graph_of, name, size):
    import torch

    from explorer.core.shapes.factorisation import branch_convs
    from explorer.core.model.zoo import get_spec

    convs = branch_convs(graph_of(name), size)
    model = get_spec(name).build(device="meta")
    seen = {}
    hooks = [model.get_submodule(c.layer).register_forward_hook(
        lambda m, i, o, layer=c.layer: seen.__setitem__(layer, tuple(i[0].shape[2:]))) for c in convs]
    model(torch.empty(1, 3, *size, device="meta"))
    for h in hooks:
        h.remove()
    assert convs and all(c.kernel != (1, 1) for c in convs)
    for c in convs:
        layer = model.get_submodule(c.layer)
        assert (c.in_channels, c.out_channels, c.kernel) == (layer.in_channels, layer.out_channels,
                                                             tuple(layer.kernel_size))
        assert c.map_size == seen[c.layer]
