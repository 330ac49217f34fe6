"""A study stage is reused only when its recorded resolved config equals the requested one."""

import json

import pytest
from conftest import ROOT, TINY, raises_naming

from inr_lightning.errors import InputError
from inr_lightning.study.stages import config_diff, run_stage

COHORT = ROOT / "configs" / "cohort" / "siren.yaml"


def test_reuse_refuse_overwrite_and_resume(tmp_path):
    run = tmp_path / "cohort"
    first = run_stage(COHORT, run, TINY)
    record = json.loads((run / "stage.json").read_text())
    assert 0 < record["cpu_seconds"] and 0 < record["seconds"]   # what the stage cost, whatever ran beside it
    ckpt = run / "checkpoints" / "last.ckpt"
    stamp, data = ckpt.stat().st_mtime_ns, ckpt.read_bytes()
    assert run_stage(COHORT, run, TINY) == first and ckpt.stat().st_mtime_ns == stamp   # reused, not re-run
    with raises_naming(InputError, "trainer.max_steps", 4, 6, "--overwrite"):
        run_stage(COHORT, run, [*TINY, "--trainer.max_steps=6"])
    assert ckpt.read_bytes() == data                                                    # nothing touched
    assert run_stage(COHORT, run, [*TINY, "--trainer.max_steps=6"], overwrite=True)["trainer/global_step"] == 6
    # an interrupted stage (no stage.json yet) resumes from last.ckpt instead of starting over
    (run / "stage.json").unlink()
    resumed = run_stage(COHORT, run, [*TINY, "--trainer.max_steps=6"])
    assert resumed["trainer/global_step"] == 6 and json.loads((run / "stage.json").read_text())["resumed"] is True


def test_a_runs_cost_sums_cpu_time_and_counts_the_wall_clock_of_runs_recorded_without_it():
    from inr_lightning.study.report import run_cost

    assert run_cost([{"seconds": 90}, {"seconds": 30}]) == "took 2.0 min in all"
    line = run_cost([{"seconds": 120, "cpu_seconds": 60}, {"seconds": 60}])
    assert "3.0 min of wall-clock" in line and "2.0 min of CPU time" in line and "1 runs recorded before" in line
    assert "recorded before" not in run_cost([{"seconds": 120, "cpu_seconds": 60}])
    assert "1 resumed" in run_cost([{"seconds": 60, "resumed": True}, {"seconds": 60}])


def test_the_regime_maps_cost_is_summed_per_cell_and_per_half_of_the_script():
    """CPU minutes per cell, per half of ``scripts/cpu_study.sh`` (``Profile.halves``) and the slower half as the
    map's time on two idle cores; runs without CPU time count their wall-clock and are named."""
    from pathlib import Path

    from inr_lightning.study.profiles import PROFILES
    from inr_lightning.study.report import regime_cost_lines

    profile = PROFILES["regime_tiny"]                         # halves: (16x16), (16x8)
    records = {Path("r16_w16/mri/seed0/cohort/siren/stage.json"): {"seconds": 120, "cpu_seconds": 60},
               Path("r16_w16/mri/seed0/sweep/siren/auto/stage.json"): {"seconds": 60, "cpu_seconds": 30,
                                                                        "resumed": True},
               Path("r16_w8/mri/seed0/cohort/siren/stage.json"): {"seconds": 240, "cpu_seconds": 180},
               Path("r16_w8/mri/seed0/sweep/siren/auto/stage.json"): {"seconds": 30}}
    text = "\n".join(regime_cost_lines(records, profile))
    assert "| 16², width 16 | 2 | 1 | 1.5 | 3.0 |" in text and "| 16², width 8 | 2 | 0 | 3.5 | 4.5 |" in text
    assert "16x16: 1.5 CPU-min; 16x8: 3.5 CPU-min" in text and "about its slower half, 3.5 min" in text
    assert "1 runs recorded before CPU time" in text
    assert "recorded before" not in "\n".join(regime_cost_lines(
        {k: {**v, "cpu_seconds": v.get("cpu_seconds", 1)} for k, v in records.items()}, profile))


def test_a_regime_maps_cuts_name_its_cells_sizes_not_the_base_profiles():
    from inr_lightning.study.profiles import PROFILES

    cuts = PROFILES["regime"].generated_cuts(3)
    assert cuts[0] == "{32, 48, 64}² px × width {64, 128} (reference: 128×128, width 256)"
    assert not any("48×48" in c for c in cuts)
    assert PROFILES["decisive"].generated_cuts(5)[0].startswith("32×32 px and width 128")


def test_config_diff_ignores_where_a_run_logs_but_not_what_it_computes():
    a = {"trainer": {"max_steps": 4, "logger": False, "enable_progress_bar": False}, "ckpt_path": None}
    b = {"trainer": {"max_steps": 4, "logger": {"class_path": "W"}, "enable_progress_bar": True, "log_every_n_steps": 1},
         "ckpt_path": "last"}
    assert config_diff(a, b) == []
    assert config_diff(a, {**b, "seed_everything": 1}) == ["seed_everything: '(absent)' → 1"]
    # An argument added to a class since a run was recorded: the same run when requested at its default, not else.
    fit = {"class_path": "inr_lightning.models.SignalFitModule", "init_args": {"lr": 1e-3}}
    old, new = {**a, "model": fit}, {**b, "model": {**fit, "init_args": {"lr": 1e-3, "lr_schedule": "constant"}}}
    assert config_diff(old, new) == []
    new["model"]["init_args"]["lr_schedule"] = "cosine"
    assert config_diff(old, new) == ["model.init_args.lr_schedule: '(absent)' → 'cosine'"]
