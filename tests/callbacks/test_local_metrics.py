"""``LocalMetrics`` across a resume: the curves of a run stopped and resumed from its checkpoint are those of the
uninterrupted run, even where the stopped run had logged steps after its last checkpoint (they are logged again
on resume, and the later value wins)."""

from __future__ import annotations

import shutil

import pytest
from conftest import TINY, run_cli

from inr_lightning.callbacks.outputs import read_metrics


def cohort(run, *extra: str) -> list[str]:
    """The tiny cohort fit (2 steps per epoch: a validation and a checkpoint every 2 steps), one row per step."""
    return ["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={run}", *TINY,
            "--trainer.logger=false", "--trainer.log_every_n_steps=1", *extra]


@pytest.mark.slow
def test_a_resumed_run_has_the_curves_of_the_uninterrupted_run(tmp_path):
    reference, run = tmp_path / "reference", tmp_path / "run"
    run_cli(cohort(reference, "--trainer.max_steps=8"))
    last = run / "checkpoints" / "last.ckpt"
    run_cli(cohort(run, "--trainer.max_steps=4"))                               # stopped at step 4 …
    shutil.copy(last, tmp_path / "step4.ckpt")
    run_cli(cohort(run, "--trainer.max_steps=6", "--ckpt_path=last"))           # … resumed, logged steps 5 and 6,
    shutil.copy(tmp_path / "step4.ckpt", last)                                  # … and lost their checkpoint
    run_cli(cohort(run, "--trainer.max_steps=8", "--ckpt_path=last"))           # resumed again from step 4

    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,key,value" and rows.count(rows[0]) == 1            # one file, appended, one header
    logged_twice = [r for r in rows[1:] if r.startswith("5,train/loss,")]
    assert len(logged_twice) == 2                                               # step 5 was logged again
    want, got = read_metrics(reference), read_metrics(run)
    assert {"train/loss", "val/psnr"} <= set(want) and set(got) == set(want)
    for key, curve in want.items():
        assert [step for step, _ in got[key]] == [step for step, _ in curve], key
        assert [value for _, value in got[key]] == pytest.approx([value for _, value in curve], rel=1e-5, abs=1e-6), key
    assert [step for step, _ in want["train/loss"]] == list(range(1, 9))
    assert [step for step, _ in want["val/psnr"]] == [2, 4, 6, 8]
