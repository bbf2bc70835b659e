"""Every branch of GoogLeNet knocked out on its own: our shared pass against a loop of full forwards with hooks.

Run: .venv/bin/python bench/bench_knockout.py [--size 224] [--mode zero|mean] [--rounds 3] [--threads N] [--quick]
(--quick, a smoke test: 64×64, the first two blocks' 8 branches, one round.)

Ours: `explorer.core.attribution.knockout.KnockoutNetwork.effects` — one plain forward keeping every activation,
then one walk over the rest of the network whose batch gains a row per branch at each block's join (built once,
outside the clock: the trace is the capture network the window already holds). The anchor: torchvision's
GoogLeNet run 1 + N times in a loop (the plain forward, then one per branch with a forward hook replacing that
branch module's output), the effects computed from the logits alike. Issue 26's target: all 36 branches at 224 on
the CPU, ours at least 5× faster than the loop. Also printed: the ceiling the sharing can reach at equal speed per
mult-add (the loop's mult-adds over ours, from the shape trace: each knock-out still runs the network after its
block), and the largest difference between the two's Δlogits. Rounds alternate ours and the anchor, so that a
busy machine slows both alike; medians are printed. The weights are random but calibrated (tests/netutil.py, as
bench_faithfulness.py: plain random weights let the activations decay into denormal floats, slow on the CPU, and
every logit to 0), so the knock-outs change the logits as learned weights would; denormals are flushed to zero
for both all the same (calibrated at 224, the weights still sink into them at 64 px: 25× slower).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

from explorer.core.attribution.knockout import KnockoutNetwork, replacement
from explorer.core.classify.device import fold_batch_norms
from explorer.core.model.graphs import zoo_block_graph
from explorer.core.shapes.trace import trace_shapes

MODEL = "googlenet"


def loop_of_forwards(model, x, branches, mode: str, target: int | None = None):
    """(plain logits, knocked logits (N, classes)): one forward, then one per branch with a hook on its module."""
    with torch.inference_mode():
        plain = model(x)
        rows = []
        for block, k in branches:
            h = model.get_submodule(f"{block}.branch{k + 1}").register_forward_hook(
                lambda m, i, o: replacement(o, mode))
            try:
                rows.append(model(x))
            finally:
                h.remove()
    knocked = torch.cat(rows)
    target = int(plain.argmax()) if target is None else target
    _ = (knocked[:, target] - plain[0, target], torch.softmax(knocked, 1)[:, target], knocked.argmax(1))
    return plain, knocked


def sharing_ceiling(graph, size: int, branches) -> tuple[float, float]:
    """(the loop's mult-adds, ours) in G: the loop runs the network 1 + N times; ours once, and each knock-out
    again from its block's join on (GoogLeNet is a chain: everything after the block in data-flow order)."""
    trace = trace_shapes(graph, (size, size))
    order = [n.name for n in graph.nodes() if not n.training_only and n.kind != "input"]
    macs = [trace.nodes[n].macs for n in order]
    total = sum(macs)
    ours = total + sum(sum(macs[order.index(block) + 1:]) for block, _ in branches)
    return (1 + len(branches)) * total / 1e9, ours / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--mode", default="zero", choices=("zero", "mean"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch's CPU threads (0: its default)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests/ (run as a script)
    from bench.bench_cli_classify import matmul_rate
    from tests.netutil import calibrated_model

    torch.set_flush_denormal(True)
    graph = zoo_block_graph(MODEL)
    model = calibrated_model(MODEL).eval()
    t0 = time.perf_counter()
    # Ours as the window runs it: on the classifier's copy of the network, batch norms folded into the
    # convolutions, channels-last (DeviceNetworks.module); the loop runs torchvision's model as loaded, and once
    # more on that same folded copy, so that the sharing's own gain is printed apart from the folding's.
    folded = fold_batch_norms(copy.deepcopy(model)).to(memory_format=torch.channels_last)
    net = KnockoutNetwork.of(folded, graph)
    build = time.perf_counter() - t0
    branches = net.branches()
    if a.quick:
        a.size, a.rounds = 64, 1
        branches = [b for b in branches if b[0] in ("inception3a", "inception3b")]
    x = torch.randn(1, 3, a.size, a.size, generator=torch.Generator().manual_seed(0))
    print(f"{MODEL}: {len(branches)} branches knocked out ({a.mode}) one at a time, at {a.size}×{a.size} on the CPU, "
          f"{torch.get_num_threads()} threads, {a.rounds} rounds (the capture network's build, untimed: {build:.2f} s)")

    with torch.inference_mode():  # warm-up: the allocator and oneDNN's kernels for each batch size
        net.effects(x, mode=a.mode, branches=branches)
        loop_of_forwards(model, x, branches[:2], a.mode)

    ours, anchor, same = [], [], []
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        with torch.inference_mode():  # as the loop runs
            result = net.effects(x, mode=a.mode, branches=branches)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain, knocked = loop_of_forwards(model, x, branches, a.mode, result.target)
        anchor.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loop_of_forwards(folded, x, branches, a.mode, result.target)
        same.append(time.perf_counter() - t0)

    t = result.target
    worst = max(abs(e.delta_logit - (knocked[i, t] - plain[0, t]).item()) for i, e in enumerate(result.effects))
    o, p, f = statistics.median(ours), statistics.median(anchor), statistics.median(same)
    loop_g, ours_g = sharing_ceiling(graph, a.size, branches)
    print(f"shared pass  ours {o:7.3f} s   loop of {1 + len(branches)} forwards {p:7.3f} s   ratio  loop/ours "
          f"{p / o:5.2f}×   (target ≥ 5×: {'met' if p / o >= 5 else 'NOT met'})")
    rate = matmul_rate(a.quick) / 2  # mult-adds per second
    floor = ours_g * 1e9 / rate
    print(f"ceiling on this machine: ours' {ours_g:.2f} G mult-adds at the CPU's matrix-product rate "
          f"({rate / 1e9:.1f} G mult-adds/s, a large float32 matmul) take {floor:.3f} s: at most "
          f"{p / floor:5.2f}× the loop; ours is {(p / o) / (p / floor):.0%} of the way")
    print(f"the loop on ours' folded channels-last copy {f:7.3f} s   ratio  {f / o:5.2f}× (the sharing alone)")
    print(f"mult-adds    ours {ours_g:7.2f} G   loop {loop_g:7.2f} G   ceiling of the sharing {loop_g / ours_g:5.2f}× "
          f"(at equal speed per mult-add); speed: ours {ours_g / o:5.1f} G/s, the loop's batches of one "
          f"{loop_g / p:5.1f} G/s")
    print("rounds (s)   ours " + " ".join(f"{t:.3f}" for t in ours) + "   loop " + " ".join(f"{t:.3f}" for t in anchor)
          + "   loop, folded " + " ".join(f"{t:.3f}" for t in same))
    print(f"largest |Δlogit| difference, ours vs the loop: {worst:.2e} (logits up to {plain.abs().max():.1f}); "
          f"top-1 changed by {sum(e.top1_changed for e in result.effects)} of {len(branches)} knock-outs")


if __name__ == "__main__":
    main()
