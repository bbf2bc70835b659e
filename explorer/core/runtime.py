"""How torch runs in this process: the one setting the window and the command line make before torch loads.

torch's CPU kernels run on OpenMP (GNU libgomp in the Linux wheels). Between two parallel regions an idle
OpenMP thread spins for up to GOMP_SPINCOUNT iterations (300,000 by default: about 3 ms by libgomp's own
estimate) before it sleeps, unless the process has more OpenMP threads than cores, when it spins only 100
times. A forward of an Inception network is hundreds of short regions, so where the cores are shared (other
programs, our own decode threads) the spinning threads take the time the others need, and a thread that is
not scheduled holds up its whole team. That made the command line's `classify` several times slower than the
window on the same files: the command line ran torch on its main thread, the process's only OpenMP team,
with the full spin; the window runs it on a worker thread, a second team, so libgomp counted more threads
than cores and barely spun. With OMP_WAIT_POLICY=PASSIVE (spin 0) both paths wait alike
(bench/bench_cli_classify.py measures them side by side, with libgomp's default spin beside).

libgomp reads its environment once, when torch's import loads it: `prepare_torch_runtime()` must run
before the first `import torch`. A setting of the user's own (OMP_WAIT_POLICY or GOMP_SPINCOUNT in the
environment) is kept. Denormal floats are not flushed (the benches flush them): on a sample photo no layer of
the zoo's seven networks, with their seeded random weights, outputs a single denormal (the smallest layer
maximum is 1.9e-11, in Inception v4), so flushing has nothing to gain here.
"""

from __future__ import annotations

import os
import sys

#: The OpenMP environment torch runs under here, unless the user set either variable.
OPENMP_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}
#: Variables by which a user chooses OpenMP's waiting for themselves (then ours is not applied).
USER_WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def prepare_torch_runtime() -> bool:
    """Set OpenMP's wait policy for torch before torch is imported; whether it takes effect in this
    process (False: torch is already loaded, or the user chose a wait policy of their own)."""
    if "torch" in sys.modules or any(name in os.environ for name in USER_WAIT_SETTINGS):
        return False
    os.environ.update(OPENMP_ENVIRONMENT)
    return True
