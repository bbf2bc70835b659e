"""Factorisation savings against real layers, and kernel usage read from the block graphs."""

import pytest
import torch.nn as nn

from explorer.core.factorisation import factorisations, kernel_usage


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
