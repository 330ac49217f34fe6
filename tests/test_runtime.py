"""runtime: retained freed memory is opt-in, and when asked for, glibc really keeps big blocks for reuse.

The probe runs in a fresh process (the setting is process-wide; the test process is never tuned) and reads
glibc's own accounting (``mallinfo2``) around one 64 MiB ``malloc``/``free``.  glibc's default serves such a
block with ``mmap`` (counted in ``hblkhd``) and unmaps it on free; with the setting it comes from the heap
(``arena``) and stays there, free for the next step.  Deterministic: no timings, no page-fault counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import raises_naming

from inr_lightning import runtime
from inr_lightning.errors import InputError
from inr_lightning.runtime import retain_requested

BLOCK = 64 * 2**20  # above glibc's largest mmap threshold (32 MiB): always mmap-served by default

PROBE = """
import ctypes, json
import inr_lightning.data, inr_lightning.main, inr_lightning.models  # noqa: F401  what a training run imports
from inr_lightning import runtime

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def probe(applied):
    before = libc.mallinfo2()
    block = libc.malloc(BLOCK)
    ctypes.memset(block, 1, BLOCK)
    held = libc.mallinfo2()
    libc.free(block)
    after = libc.mallinfo2()
    return {"applied": applied, "mmapped_while_held": held.hblkhd - before.hblkhd,
            "heap_kept_after_free": after.arena - before.arena, "free_in_heap_after_free": after.fordblks}

imported = probe(None)
try:
    inr_lightning.main.main(["fit", "--help"])  # the CLI's start-up up to argument parsing (--help exits there)
except SystemExit:
    pass
print(json.dumps({"imported": imported, "cli": probe(runtime.retain_freed_memory())}))  # idempotent: in force?
""".replace("BLOCK)", f"{BLOCK})")


def glibc() -> bool:
    return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")


@pytest.mark.skipif(not glibc(), reason="glibc malloc tuning")
def test_importing_leaves_malloc_alone_and_a_run_that_asks_keeps_big_blocks():
    env = {**os.environ, "INR_LIGHTNING_RETAIN_MEMORY": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    imported, cli = got["imported"], got["cli"]
    # Imports alone, even with the variable set: glibc's default, the block is its own mapping, gone on free.
    assert imported["mmapped_while_held"] >= BLOCK and imported["heap_kept_after_free"] < BLOCK // 2, got
    # The CLI applied it: the block came from the heap and stays there, free for the next step to reuse.
    assert cli["applied"] is True, got
    assert cli["mmapped_while_held"] == 0 and cli["free_in_heap_after_free"] >= BLOCK, got


@pytest.mark.parametrize("value,applies", [(None, False), ("0", False), (" 1", True), ("1", True)])
def test_only_the_value_1_applies_it(monkeypatch, value, applies):
    calls = []
    monkeypatch.setattr(runtime, "retain_freed_memory", lambda: calls.append(1) or True)  # never tune pytest
    if value is None:
        monkeypatch.delenv("INR_LIGHTNING_RETAIN_MEMORY", raising=False)
    else:
        monkeypatch.setenv("INR_LIGHTNING_RETAIN_MEMORY", value)
    assert retain_requested() is applies
    runtime.retain_freed_memory_if_requested()
    assert calls == ([1] if applies else [])


def test_a_bad_setting_is_one_input_error(monkeypatch):
    monkeypatch.setenv("INR_LIGHTNING_RETAIN_MEMORY", "yes")
    with raises_naming(InputError, "INR_LIGHTNING_RETAIN_MEMORY", "'yes'", 1, 0):
        runtime.retain_freed_memory_if_requested()
