"""Integrated Gradients with many steps, and branch shares with progress and cancellation."""

import math

import numpy as np
import pytest
import torch
from netutil import calibrated_model, synthetic_batch

from explorer.core.attribution.methods import (
    IG_DELTA_WARNING,
    IG_GAUSS_LEGENDRE_MAX_STEPS,
    IG_MAX_STEPS,
    AttributionParams,
    attribute,
    attribute_on_device,
    branch_shares,
    ig_method,
)
from explorer.core.cancel import Cancelled, CancelToken
from explorer.core.graph.capture import CaptureModel

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def images(n, size, seed=3):
    return (synthetic_batch(n, size, torch.Generator().manual_seed(seed)) - MEAN) / STD


@pytest.fixture(scope="module")
def cm(graph_of):
    return CaptureModel(calibrated_model("googlenet"), graph_of("googlenet"))


@pytest.fixture
def leggauss_calls(monkeypatch):
    """The step counts numpy's Gauss–Legendre nodes are computed for (captum calls it at run time)."""
    calls = []
    real = np.polynomial.legendre.leggauss

    def spy(n):
        calls.append(n)
        return real(n)

    monkeypatch.setattr(np.polynomial.legendre, "leggauss", spy)
    return calls


def test_the_integration_rule_switches_above_the_threshold():
    assert ig_method(50) == ig_method(IG_GAUSS_LEGENDRE_MAX_STEPS) == "gausslegendre"
    assert ig_method(IG_GAUSS_LEGENDRE_MAX_STEPS + 1) == ig_method(IG_MAX_STEPS) == "riemann_trapezoid"


def test_many_steps_report_progress_from_the_first_batch_and_cancel(cm, leggauss_calls):
    """At the most steps the window offers, the first forward comes with no Gauss–Legendre solve before
    it: progress arrives after one batch and a cancel there stops the run."""
    token = CancelToken()
    seen = []

    def progress(done, total):
        seen.append((done, total, list(leggauss_calls)))
        token.cancel()

    params = AttributionParams(ig_steps=IG_MAX_STEPS, internal_batch_size=16)
    with pytest.raises(Cancelled):
        attribute(cm, images(1, 64), "integrated_gradients", 1, params=params, progress=progress, cancel=token)
    # Counted per block, forward and backward: each batch's pass, and one forward of the image and the
    # baseline together for the completeness gap.
    assert seen == [(1, len(cm.block_branches) * (2 * math.ceil(IG_MAX_STEPS / 16) + 1), [])]
    assert leggauss_calls == []


def test_few_steps_keep_gauss_legendre(cm, leggauss_calls):
    r = attribute(cm, images(1, 64), "integrated_gradients", 1,
                  params=AttributionParams(ig_steps=8, internal_batch_size=8))
    assert r.ig_method == "gausslegendre" and leggauss_calls and set(leggauss_calls) == {8}


def test_completeness_holds_with_the_trapezoid_rule(cm, leggauss_calls):
    """Attributions add up to f(x) − f(baseline) within IG_DELTA_WARNING (5 %) on a short path, as with
    Gauss–Legendre at 128 steps (test_capture), and the reported delta is that difference."""
    x = images(1, 64)
    with torch.no_grad():
        target = int(cm(x).argmax(1))
    dim = 0.9 * x
    steps = IG_GAUSS_LEGENDRE_MAX_STEPS + 88
    seen = []
    r = attribute(cm, x, "integrated_gradients", target, baseline=dim,
                  params=AttributionParams(ig_steps=steps, internal_batch_size=50),
                  progress=lambda d, t: seen.append((d, t)))
    assert r.ig_method == "riemann_trapezoid" and leggauss_calls == []
    with torch.no_grad():
        gap = float(cm(x)[0, target] - cm(dim)[0, target])
    assert abs(gap) > 1.0
    assert r.heatmap.sum() == pytest.approx(gap, rel=IG_DELTA_WARNING)
    assert r.delta == pytest.approx(abs(r.heatmap.sum() - gap), abs=1e-3 * abs(gap))
    assert r.delta_relative < IG_DELTA_WARNING and not r.delta_flagged
    total = len(cm.block_branches) * (2 * math.ceil(steps / 50) + 1)
    assert seen[-1] == (total, total)
    # Every block of every batch reports, forward and backward: far more often than once per batch.
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and len(set(dones)) >= len(cm.block_branches) * 2 * math.ceil(steps / 50)


# -- branch shares ----------------------------------------------------------------------------------


def test_branch_shares_report_progress_block_by_block(cm):
    x = images(1, 96)
    blocks = list(cm.block_branches)
    seen = []
    shares = branch_shares(cm, x, progress=lambda d, t: seen.append((d, t)))
    # Top-1 forward, forward and backward: every block counted three times, one at a time.
    assert seen == [(d, 3 * len(blocks)) for d in range(1, 3 * len(blocks) + 1)]
    assert shares == branch_shares(cm, x)  # counting changes nothing
    seen.clear()
    branch_shares(cm, x, target=3, blocks=["inception4c"], progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 2), (2, 2)]


@pytest.mark.parametrize("stop_at", [1, 12])  # during the top-1 forward; during the backward
def test_branch_shares_stop_when_cancelled(cm, stop_at):
    token = CancelToken()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == stop_at:
            token.cancel()

    with pytest.raises(Cancelled):
        branch_shares(cm, images(1, 96), target=None if stop_at == 1 else 3, progress=progress, cancel=token)
    assert seen == list(range(1, stop_at + 1))  # stopped at the next block
    # The hooks are gone: the model runs as before.
    assert all(len(p._forward_hooks) == 1 for p in cm.probes.values())  # only the capture's own
    with pytest.raises(Cancelled):
        branch_shares(cm, images(1, 96), cancel=token)  # a cancelled token stops before any work


class _FullGpu(torch.nn.Module):
    """The network as the GPU runs it, with no memory left: every forward runs out."""

    block_branches: dict = {}

    def forward(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")


def _saliency_by_hand(model, x, target):
    """|d logit / d input|, largest over the colour channels: autograd on the plain model."""
    x = x.clone().requires_grad_(True)
    model(x)[0, target].backward()
    return x.grad.abs().amax(1)[0].numpy()


@pytest.fixture
def cuda_on_cpu(monkeypatch):
    """CUDA calls made harmless: tensors "moved" to cuda stay on the CPU."""
    import contextlib

    real_to = torch.Tensor.to
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: self if a and str(a[0]).startswith("cuda")
                        else real_to(self, *a, **k))
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)


def test_gradients_run_on_the_classifiers_device(cm, cuda_on_cpu):
    x = images(1, 96)
    asked = []
    r = attribute_on_device(lambda d: asked.append(d) or cm, x, "saliency", 7, device="cuda")
    assert asked == ["cuda"] and r.device == "cuda" and r.notice is None
    assert np.allclose(r.heatmap, _saliency_by_hand(calibrated_model("googlenet"), x, 7), atol=1e-6)


def test_gradients_fall_back_to_cpu_when_the_gpu_runs_out_of_memory(cm, cuda_on_cpu):
    x = images(1, 96)
    asked = []
    models = {"cuda": _FullGpu(), "cpu": cm}
    r = attribute_on_device(lambda d: asked.append(d) or models[d], x, "saliency", 7, device="cuda")
    assert asked == ["cuda", "cpu"] and r.device == "cpu"
    assert "out of memory" in r.notice and "CPU" in r.notice
    assert np.allclose(r.heatmap, _saliency_by_hand(calibrated_model("googlenet"), x, 7), atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_integrated_gradients_in_large_batches_match_the_cpu(cm, graph_of):
    """On CUDA the steps run in batches of up to CUDA_IG_BATCH (a GPU is latency-bound at 16), in full
    float32: the map and the completeness delta are the CPU's."""
    from explorer.core.classify.inference import resolve_device

    resolve_device("cuda")  # TF32 off, as every GPU path
    x = images(1, 96)
    params = AttributionParams(ig_steps=50, internal_batch_size=16)
    gpu_cm = CaptureModel(calibrated_model("googlenet").cuda(), graph_of("googlenet"))
    calls = []
    gpu_cm.gm.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    on_gpu = attribute(gpu_cm, x.cuda(), "integrated_gradients", 1, params=params)
    on_cpu = attribute(cm, x, "integrated_gradients", 1, params=params)
    assert calls == [50, 2]  # every step in one batch, then the image and the baseline together
    assert np.corrcoef(on_gpu.heatmap.ravel(), on_cpu.heatmap.ravel())[0, 1] > 0.9999
    assert on_gpu.delta == pytest.approx(on_cpu.delta, rel=1e-2, abs=1e-4)
