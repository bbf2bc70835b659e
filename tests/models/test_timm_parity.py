"""Inception-v4 and Inception-ResNet-v2 load timm's state dicts and compute what timm's models compute."""

import pytest
import torch
import torch.nn as nn

from explorer.core.model.zoo import get_spec

timm = pytest.importorskip("timm")

SIZE = (91, 117)  # small and not square; both networks accept 75 and up


def _varied_inputs(n, generator):
    """Noise, smooth noise and flat colours: inputs different enough to move every batch norm."""
    noise = torch.randn(n, 3, *SIZE, generator=generator)
    smooth = nn.functional.interpolate(torch.randn(n, 3, 5, 7, generator=generator), size=SIZE, mode="bilinear")
    flat = torch.randn(n, 3, 1, 1, generator=generator).expand(n, 3, *SIZE)
    return torch.cat([noise, smooth, flat])


def _calibrated_timm_model(name):
    """timm's model with random weights whose batch-norm statistics are measured on varied inputs, so
    that activations neither vanish nor explode and the outputs depend on the input."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
    with torch.no_grad():
        model.train()(_varied_inputs(1, g))
    return model.eval()


@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v2"])
def test_timm_weights_load_and_give_the_same_outputs(name):
    reference = _calibrated_timm_model(name)
    ours = get_spec(name).build(device="meta")  # structure only: the weights come from timm's model
    assert list(ours.state_dict()) == list(reference.state_dict())  # same names, same order
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())

    x = _varied_inputs(1, torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        got = ours(x)
    assert got.shape == (3, 1000)
    # Not a trivial agreement: different images give clearly different logits.
    spread = (expected - expected.mean(0)).abs().amax(1)
    assert (spread > 1e-2 * expected.abs().max()).all()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())
