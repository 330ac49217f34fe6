"""runtime.retain_freed_memory: freed activations are reused, not page-faulted in again every step."""

import subprocess
import sys

import pytest

# A few training steps of a small SIREN on 65 536 coordinates (32 MiB activations, at glibc's largest mmap
# threshold and above); prints whether the setting is in force and the page faults of three steps.
PROBE = """
import resource, torch
from inr_lightning.nn import CohortINR, INRConfig
from inr_lightning.runtime import retain_freed_memory
on = retain_freed_memory()
torch.manual_seed(0)
net = CohortINR(INRConfig(width=128, shared_layers=2), num_signals=2, out_channels=1)
coords = torch.rand(65536, 2) * 2 - 1
def step():
    net(coords).square().sum().backward()
def faults_over_three_steps():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
for _ in range(8):
    step()
# The fewer of two windows: now and then (1 run in 20 here) the heap still grows once after the warm-up,
# ~one activation's pages in one window; remapping every step shows in both.
print(on, min(faults_over_three_steps(), faults_over_three_steps()))
"""
PAGES_PER_STEP = 65536 * 128 * 4 // 4096  # one activation tensor's pages: 8192


def probe(env_value: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={"PATH": "", "INR_LIGHTNING_RETAIN_MEMORY": env_value, "OMP_NUM_THREADS": "1"})
    on, faults = out.stdout.split()
    return on == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_freed_memory_is_reused_and_the_opt_out_leaves_malloc_alone():
    on, faults = probe("1")
    off, faults_off = probe("0")
    assert on and not off
    assert faults < PAGES_PER_STEP, faults              # reused: (almost) no new pages
    assert faults_off > 3 * PAGES_PER_STEP, faults_off  # glibc default: every big block mapped anew, every step
