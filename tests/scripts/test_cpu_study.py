"""``scripts/cpu_study.sh``: two one-thread processes over one --out, then one call that writes the report."""

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "cpu_study.sh"


def run(*args, dry=True, **kw):
    env = {**os.environ, "PYTHON": sys.executable, "WANDB_MODE": "offline", **({"DRY_RUN": "1"} if dry else {})}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, **kw)


def test_regime_cells_are_split_into_two_halves_of_similar_cost_and_a_last_call_writes_the_map(tmp_path):
    out = run("regime", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    halves = [re.search(r"--cells (.*) &$", line).group(1).split() for line in lines[:2]]
    from inr_lightning.study.profiles import PROFILES

    grid = {f"{r}x{w}" for r, w in PROFILES["regime"].grid}
    assert set(halves[0]) | set(halves[1]) == grid and not set(halves[0]) & set(halves[1])
    assert halves == [h[1:] for h in PROFILES["regime"].halves()]   # the split the regime report costs
    cost = [sum((int(c.split("x")[0]) * int(c.split("x")[1])) ** 2 for c in h) for h in halves]
    assert max(cost) / min(cost) < 1.5
    assert lines[2].endswith(f"--out {tmp_path / 'r'} --wandb disabled") and "--cells" not in lines[2]


def test_an_unknown_profile_is_one_line_and_a_failure():
    out = run("nope", "/tmp/never")
    assert out.returncode != 0 and "unknown profile 'nope'" in out.stderr and out.stdout == ""


@pytest.mark.slow
def test_the_tiny_study_runs_through_the_script_and_its_last_call_only_reuses(tiny_study):
    out, folder = tiny_study   # (conftest: the script on the tiny profile; tests/study checks what it made)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (folder / "report.md").is_file()
    half = folder.with_name("tiny.mri.log").read_text()
    total = re.findall(r"\[(\d+)/(\d+)\]", half)[-1]
    assert total[0] == total[1]                                   # the half ran every stage
    assert "ETA ?" in out.stdout and "Seed set to" not in out.stdout + out.stderr   # the last call trained nothing
