"""Per-block timing of GoogLeNet (the "measured time" overlay): ours against a plain timed forward loop.

Run: .venv/bin/python bench/bench_overlay.py [--size 224] [--device cpu|cuda] [--warmup 1] [--repeats 5]
     [--rounds 3] [--threads N] [--quick]
(--quick, a smoke test: 96×96, one round.)

Ours: `explorer.core.overlay.quantities.timing_task` as the window runs it — a private copy of the network, `warmup`
untimed forwards, then `repeats` forwards with a hook before and after every block; wall time of the
whole call, warm-up and copy included. The anchor: the same number of forwards of the plain network in a
loop, timed the same way. Issue 14's target for GoogLeNet on the CPU: ours ≤ 2 s. Also printed: the sum
of the per-block medians against the median plain forward (the overlay's times add up to the forward;
on a machine so busy that every forward stalls somewhere, the sum of medians leaves the stalls out), and
the median forward with the hooks on (their overhead).
Rounds alternate ours and the anchor, so that a busy machine slows both alike; medians are printed.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from explorer.core.model.graphs import zoo_block_graph
from explorer.core.overlay.quantities import timing_task
from explorer.core.model.zoo import get_spec

MODEL = "googlenet"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch's CPU threads (0: its default)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.quick:
        a.size, a.rounds = 96, 1
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_overlay: CUDA is not available")
    graph = zoo_block_graph(MODEL)
    module = get_spec(MODEL).build(device="cpu").eval()
    size = (a.size, a.size)
    n = a.warmup + a.repeats
    print(f"{MODEL} at {a.size}×{a.size} on {a.device}, {a.warmup} warm-up + {a.repeats} timed forwards, "
          f"{torch.get_num_threads()} threads, {a.rounds} rounds")

    ours, anchor, sums, plain_fw, hooked = [], [], [], [], []
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        times = timing_task(module, graph, size, a.device, warmup=a.warmup, repeats=a.repeats)
        ours.append(time.perf_counter() - t0)
        sums.append(sum(times.median.values()))
        hooked.append(statistics.median(times.forward_seconds))

        t0 = time.perf_counter()
        m = copy.deepcopy(module).to(a.device)
        x = torch.randn(1, 3, *size, device=a.device)
        each = []
        with torch.inference_mode():
            for _ in range(n):
                t1 = time.perf_counter()
                m(x)
                sync(a.device)
                each.append(time.perf_counter() - t1)
        anchor.append(time.perf_counter() - t0)
        plain_fw.append(statistics.median(each[a.warmup:]))

    o, p = statistics.median(ours), statistics.median(anchor)
    s, f = statistics.median(sums), statistics.median(plain_fw)
    print(f"per-block timing   ours {o:7.3f} s   plain loop {p:7.3f} s   ratio  ours/plain {o / p:5.2f}"
          f"   (target: ours ≤ 2 s on the CPU: {'met' if o <= 2 else 'NOT met'})")
    print(f"sum of block medians {s * 1e3:8.1f} ms   median plain forward {f * 1e3:8.1f} ms   "
          f"ratio {s / f:5.3f}   (median hooked forward {statistics.median(hooked) * 1e3:8.1f} ms)")


if __name__ == "__main__":
    main()
