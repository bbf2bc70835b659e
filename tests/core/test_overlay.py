"""Graph overlays against independent computations: the module's own parameters, torch's FLOP counter,
hooks on the plain model, and a plain timed forward of the same network."""

import statistics
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from netutil import gradient_x_activation_by_hooks

from explorer.core.graph.capture import CaptureModel
from explorer.core.overlay.quantities import (
    PALETTE,
    colour_at,
    image_overlay,
    make_legend,
    static_overlay,
    time_blocks,
    where_time_goes,
)
from explorer.core.shapes.trace import trace_shapes
from explorer.core.text import fmt_bytes, fmt_count
from explorer.core.model.zoo import get_spec

SIZE = (64, 64)


@pytest.fixture(scope="module")
def googlenet():
    torch.manual_seed(0)
    return get_spec("googlenet").build(device="cpu").eval()


def _module_names(graph):
    return [n.name for n in graph.nodes() if not n.training_only and n.kind != "input"]


def test_params_equal_each_modules_own_parameters(graph_of, googlenet):
    graph = graph_of("googlenet")
    ov = static_overlay("params", graph, trace_shapes(graph, SIZE))
    expected = {n: sum(p.numel() for p in googlenet.get_submodule(n).parameters()) for n in _module_names(graph)}
    assert ov.values == expected
    assert ov.legend.high == max(expected.values())
    assert ov.legend.high_text == fmt_count(max(expected.values()))


def test_macs_equal_the_flop_counter_per_module(graph_of, googlenet):
    graph = graph_of("googlenet")
    trace = trace_shapes(graph, SIZE)
    ov = static_overlay("macs", graph, trace)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        googlenet(torch.randn(1, 3, *SIZE))
    counts = counter.get_flop_counts()
    top = type(googlenet).__name__
    for name in _module_names(graph):
        flops = sum(counts.get(f"{top}.{name}", {}).values())
        assert ov.values[name] * 2 == flops, name  # the counter counts a multiply-add as two FLOPs
        assert ov.values[name] == trace.nodes[name].macs


def test_memory_and_receptive_field_come_from_the_real_output_shapes(graph_of, googlenet):
    graph = graph_of("googlenet")
    trace = trace_shapes(graph, SIZE)
    mem = static_overlay("memory", graph, trace)
    outs = {}
    hooks = [googlenet.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: outs.__setitem__(n, o.numel() * 4)) for n in _module_names(graph)]
    with torch.no_grad():
        googlenet(torch.randn(1, 3, *SIZE))
    for h in hooks:
        h.remove()
    assert mem.values == outs
    assert mem.legend.high_text == fmt_bytes(max(outs.values()))
    rf = static_overlay("receptive_field", graph, trace)
    assert rf.values["conv1"] == 7  # a 7×7 convolution sees 7×7 pixels
    assert rf.values["fc"] == max(SIZE)  # after global pooling: the whole input


def test_energy_and_zeros_equal_hooks_on_the_plain_model(graph_of, googlenet):
    graph = graph_of("googlenet")
    x = torch.randn(1, 3, *SIZE)
    cap = CaptureModel(googlenet, graph).capture(x)
    energy, zeros = image_overlay("energy", cap), image_overlay("zeros", cap)
    outs = {}
    hooks = [googlenet.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: outs.__setitem__(n, o.detach().clone())) for n in _module_names(graph)]
    with torch.no_grad():
        googlenet(x)
    for h in hooks:
        h.remove()
    assert set(energy.values) == set(outs)
    for name, t in outs.items():
        flat = t.flatten().tolist()
        assert energy.values[name] == pytest.approx(sum(v * v for v in flat), rel=1e-4), name
        assert zeros.values[name] == pytest.approx(sum(v == 0 for v in flat) / len(flat), abs=1e-6), name
    # ReLU outputs are about half zeros; the final logits none.
    assert 0.2 < zeros.values["inception3a"] < 0.9
    assert zeros.values["fc"] == 0


def test_block_times_sum_to_a_plain_timed_forward(graph_of, googlenet):
    """On one thread and in CPU time, timed forwards interleaved one by one with plain ones (so a busy
    machine slows both alike): the per-block times sum to within 15 % of the plain forward, timed without
    hooks (a hook timing the wrong span, blocks left out or counted twice are not)."""
    graph = graph_of("googlenet")
    x = torch.randn(1, 3, 96, 96)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ratios = []
    try:
        with torch.inference_mode():
            googlenet(x)
        for _ in range(9):
            times = time_blocks(googlenet, graph, x, warmup=0, repeats=1, clock=time.thread_time)
            with torch.inference_mode():
                t0 = time.thread_time()
                googlenet(x)
                plain = time.thread_time() - t0
            ratios.append(sum(times.median.values()) / plain)
    finally:
        torch.set_num_threads(threads)
    assert set(times.median) == set(_module_names(graph))
    assert not googlenet._forward_hooks and not googlenet.inception3a._forward_pre_hooks  # hooks removed
    assert 0.85 <= statistics.median(ratios) <= 1.15, ratios


def test_where_time_goes_ranks_by_time_beside_macs_share(graph_of, googlenet):
    graph = graph_of("googlenet")
    trace = trace_shapes(graph, (96, 96))
    times = time_blocks(googlenet, graph, torch.randn(1, 3, 96, 96), warmup=1, repeats=2)
    rows = where_time_goes(times, trace)
    assert [r.seconds for r in rows] == sorted(times.median.values(), reverse=True)
    assert sum(r.time_share for r in rows) == pytest.approx(1.0)
    macs = {r.node: r.macs_share for r in rows}
    assert macs["inception3b"] == pytest.approx(trace.nodes["inception3b"].macs / trace.total_macs)


def test_legend_colours_rank_like_the_values():
    values = {"a": 0, "b": 10, "c": 1000, "d": 100_000}
    legend = make_legend("params", values)
    assert legend.log  # spans decades
    lum = [sum(legend.colour(v)) for v in sorted(values.values())]
    assert lum == sorted(lum, reverse=True) and lum[0] > lum[-1]
    assert legend.colour(100_000) == PALETTE[-1]
    assert colour_at(0) == PALETTE[0]
    linear = make_legend("zeros", {"a": 0.2, "b": 0.6})
    assert not linear.log and linear.position(0.3) == pytest.approx(0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_block_times_on_the_gpu_sum_to_a_plain_timed_forward(graph_of, googlenet):
    """CUDA events around each block: their sum is within 15 % of a plain forward timed by events.
    A batch large enough that the GPU's work, not the launch gaps between kernels (in no block's
    events), makes the forward's time: at 8 images an H100 gave 0.84 and 1.16."""
    import copy

    graph = graph_of("googlenet")
    m = copy.deepcopy(googlenet).cuda()
    x = torch.randn(64, 3, 224, 224, device="cuda")
    times = time_blocks(m, graph, x, warmup=3, repeats=10)
    plain = []
    with torch.inference_mode():
        m(x)  # warm-up, as time_blocks does
        for _ in range(10):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            m(x)
            b.record()
            torch.cuda.synchronize()
            plain.append(a.elapsed_time(b) / 1e3)
    assert times.device.startswith("cuda") and set(times.median) == set(_module_names(graph))
    assert 0.85 <= sum(times.median.values()) / statistics.median(plain) <= 1.15


def test_attribution_share_per_block_equals_gradient_times_activation_on_the_plain_model(graph_of, googlenet):
    """Each block's share: |d logit / d output × output| summed over the block's output, over all blocks,
    computed here with hooks on the plain network (a concatenation's output is its branches' outputs)."""
    from explorer.core.attribution.methods import branch_evidence
    from explorer.core.overlay.quantities import attribution_overlay

    graph = graph_of("googlenet")
    x = torch.randn(1, 3, *SIZE)
    target = 7
    evidence = branch_evidence(CaptureModel(googlenet, graph), x, target)
    overlay = attribution_overlay(evidence)
    blocks = [b.name for b in graph.blocks() if b.branches and not b.training_only]
    raw = gradient_x_activation_by_hooks(googlenet, x, target, blocks)
    whole = sum(raw.values())
    assert set(overlay.values) == set(raw)
    for b, v in raw.items():
        assert overlay.values[b] == pytest.approx(v / whole, rel=1e-3, abs=1e-7), b
    assert sum(overlay.values.values()) == pytest.approx(1.0)
    # The per-branch shares are the same sums normalised within each block.
    for b, shares in evidence.shares().items():
        assert sum(shares) == pytest.approx(1.0)
        assert len(shares) == len(graph.node(b).branches)


def test_energy_reads_in_the_shared_count_units():
    legend = make_legend("energy", {"a": 44_400.0, "b": 0.5})
    assert legend.text(44_400.0) == fmt_count(44_400.0) == "44.4 K"
    assert legend.text(0.5) == "0.5"


def test_a_legend_names_its_time_unit_once():
    """The timing legend read "0 s … 8.68 ms": one unit per legend, at its high end."""
    from explorer.core.overlay.quantities import make_legend

    legend = make_legend("time", {"a": 0.00868, "b": 4.5e-5})
    assert (legend.low_text, legend.high_text) == ("0", "8.68 ms")
    assert make_legend("zeros", {"a": 0.25, "b": 0.5}).range_texts == ("0", "50.0 %")
