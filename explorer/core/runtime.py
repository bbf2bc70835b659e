"""How torch runs in this process: what the window and the command line set, alike, before torch loads.

- OpenMP's idle threads sleep. torch's CPU kernels run on OpenMP (GNU libgomp in the Linux wheels), whose idle
  threads spin up to GOMP_SPINCOUNT times between parallel regions (300,000 by default: about 3 ms by libgomp's
  own estimate) before they sleep, unless the process has more OpenMP threads than cores, when they spin only
  100 times. A forward of an Inception network is hundreds of short regions, so where cores are shared (other
  programs, our own decode threads) spinning threads take the time the others need, and a thread that is not
  scheduled holds up its whole team. That made the command line's `classify` several times slower than the
  window on the same files: the command line ran torch on its main thread, the process's only OpenMP team,
  with the full spin; the window runs it on a worker thread, a second team, so libgomp counted more threads
  than cores and barely spun. OMP_WAIT_POLICY=PASSIVE (spin 0) makes both wait alike.
- Freed memory is reused, not handed back. glibc's malloc gives a thread's freed memory back to the system when
  more than its trim threshold is free, and the next forward faults it in again page by page; on the main
  thread (the command line's) that was 5× the page faults of a worker thread's (the window's) and ~6 % of the
  time. The thresholds are set from the start to the ceiling glibc's own adjustment grows them to on a 64-bit
  machine (blocks up to 32 MiB from the heap, 64 MiB free kept), where it would otherwise get only after
  freeing a block that large.

bench/bench_cli_classify.py measures both paths side by side, with and without these settings. libgomp reads its
environment once, when torch's import loads it: `prepare_torch_runtime()` must run before the first
`import torch`. A setting of the user's own (in the environment) is kept. Denormal floats are not flushed (the
benches flush them): on a sample photo no layer of the zoo's seven networks, with their seeded random weights,
outputs a single denormal (the smallest layer maximum is 1.9e-11, in Inception v4), so flushing has nothing
to gain here.
"""

from __future__ import annotations

import os
import sys

#: The OpenMP environment torch runs under here, unless the user set either variable.
OPENMP_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}
#: Variables by which a user chooses OpenMP's waiting for themselves (then ours is not applied).
USER_WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: glibc's mallopt parameters (malloc.h) and the values set: its dynamic thresholds' 64-bit ceilings.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MALLOC_THRESHOLDS = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 64 << 20}
#: Variables by which a user tunes glibc's malloc for themselves (then ours is not applied).
USER_MALLOC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def prepare_torch_runtime() -> list[str]:
    """Set how torch runs here (idle OpenMP threads sleep; freed memory is reused): before torch is imported.
    Returns what was set ("openmp", "malloc"); OpenMP's setting is left out once torch is loaded (too late)
    and each is left out where the user chose their own or the platform has no such setting."""
    done = []
    if "torch" not in sys.modules and not any(name in os.environ for name in USER_WAIT_SETTINGS):
        os.environ.update(OPENMP_ENVIRONMENT)
        done.append("openmp")
    if not any(name in os.environ for name in USER_MALLOC_SETTINGS) and _set_malloc_thresholds():
        done.append("malloc")
    return done


def _set_malloc_thresholds() -> bool:
    """MALLOC_THRESHOLDS through glibc's mallopt; False on another C library or platform."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)  # the C library this process runs on
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: mallopt is not glibc's there
            return False
        return all(libc.mallopt(param, value) == 1 for param, value in MALLOC_THRESHOLDS.items())
    except (OSError, AttributeError):
        return False
