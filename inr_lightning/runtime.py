"""Opt-in process tuning for training on a CPU: keep freed memory for reuse, as CUDA's caching allocator does.

Why: torch's CPU allocator is plain ``malloc``.  glibc serves every block above its mmap threshold (at most
32 MiB) with a fresh ``mmap`` and returns it with ``munmap`` on free, and trims the heap top above 2× the
threshold, so a step with big activations page-faults them in anew every time and the kernel zeroes each
page.  ``retain_freed_memory`` turns off mmap-served blocks and heap trimming: freed activations are reused by
the next step (``python -m benchmarks --no-retain`` against ``python -m benchmarks``; numbers in
BENCHMARKS.md).

Cost: the process keeps its peak heap until it exits, plus fragmentation.  That is a process-wide trade of
memory for time, so it is never a side effect: importing the package, building modules and running the test
suite leave malloc alone.  A training run asks for it with ``INR_LIGHTNING_RETAIN_MEMORY=1``; the CLI then
applies it once at start-up, before the run allocates anything (``retain_freed_memory_if_requested``).  Code
that trains without the CLI can call ``retain_freed_memory()`` itself.  Elsewhere than glibc (macOS, musl)
there is nothing to tune and both return False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from inr_lightning.errors import InputError

ENV = "INR_LIGHTNING_RETAIN_MEMORY"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # <malloc.h>
_INT_MAX = 2**31 - 1
_applied: bool | None = None


def retain_requested() -> bool:
    """Whether ``INR_LIGHTNING_RETAIN_MEMORY`` asks for retained memory: ``1`` yes; ``0`` or unset no."""
    value = os.environ.get(ENV, "0").strip()
    if value not in ("0", "1"):
        raise InputError(f"{ENV} must be 1 (keep freed memory for reuse) or 0 / unset (glibc's default), "
                         f"got {value!r}")
    return value == "1"


def retain_freed_memory() -> bool:
    """Make glibc malloc keep freed blocks for reuse, for the rest of the process.  Idempotent; True when the
    setting is in force."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: no mallopt, nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
    return _applied


def retain_freed_memory_if_requested() -> bool:
    """``retain_freed_memory()`` when ``INR_LIGHTNING_RETAIN_MEMORY=1``, else nothing; True when in force."""
    return retain_freed_memory() if retain_requested() else bool(_applied)
