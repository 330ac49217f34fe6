"""Process-level tuning for training on a CPU: keep freed memory for reuse, as CUDA's caching allocator does.

Why: torch's CPU allocator is plain ``malloc``.  glibc serves every block above its mmap threshold (at most
32 MiB) with a fresh ``mmap`` and returns it with ``munmap`` on free, and trims the heap top above 2× the
threshold — so each training step page-faults its activations in anew and the kernel zeroes every page.
A cohort step at 65 536 coordinates (64 MiB per activation) spent over a third of its time there:
591 k page faults per step; with this setting 0–1, and 1.8 s → 1.25 s per step on one core
(``scripts/bench.py --no-retain`` vs ``scripts/bench.py``, rows g1b and c1).  ``retain_freed_memory`` turns
off mmap-served blocks and heap trimming, so freed activations are reused by the next step.

Cost: the process keeps its peak heap until it exits — the contract of CUDA's caching allocator — plus
fragmentation: that step's peak RSS went from 1.26 GB to 1.83 GB (steady after a few steps, not growing).
Where host memory is tighter than time, opt out.

The CLI calls it once at start-up; ``INR_LIGHTNING_RETAIN_MEMORY=0`` leaves malloc alone.  Elsewhere than
glibc (macOS, musl) there is nothing to tune and it returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # <malloc.h>
_INT_MAX = 2**31 - 1
_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Make glibc malloc keep freed blocks for reuse.  Idempotent; True when the setting is in force."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("INR_LIGHTNING_RETAIN_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: no mallopt, nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
    return _applied
