"""``python -m inr_lightning sweep`` and ``sae-depths`` on a tiny cohort run; one-line errors."""

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import assert_names, cli_error, raises_naming, train_cohort

from inr_lightning.study.commands import match_learning_rate, sae_depths, sweep


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return train_cohort(tmp_path_factory.mktemp("cohort") / "ffmlp", "ffmlp", "--trainer.logger=false",
                        "--model.init_args.net.shared_layers=2")


@pytest.mark.slow
def test_sweep_runs_every_protocol_with_paired_seeds(cohort, tmp_path, capsys):
    out = tmp_path / "sweep"
    verdicts = sweep(["--cohort_ckpt", str(cohort), "--out", str(out), "--seeds", "2", "--no_controls", "--",
                      "--trainer.max_steps=2", "--data.init_args.steps_per_epoch=2",
                      "--model.init_args.record_steps=[1, 2]"])
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    labels = {"scratch", "finetune", "freeze_0", "freeze_1", "auto"}
    assert {r["protocol"] for r in rows} == labels and {r["seed"] for r in rows} == {"0", "1"}
    assert len(rows) == len(labels) * 2 * 5 * 3   # protocols × seeds × held-out signals × (steps 1, 2, final)
    runs = next(v["runs"] for v in verdicts if v["backbone"] == "ffmlp")
    # the two seeds are two fits of the same signals: paired, and not identical
    assert runs.psnr[0]["finetune"][-1] != runs.psnr[1]["finetune"][-1]
    summary = json.loads((out / "ffmlp" / "seed1" / "freeze_1" / "summary.json").read_text())
    assert summary["fit/last_frozen_layer"] == 1 and summary["data/resolution"] == [16, 16]
    text = (out / "report.md").read_text()
    assert "| through | raw argmax |" in text and "| below | raw argmax |" in text and "(n=2)" in text
    assert "replicates are fit seeds of one cohort" in text
    assert "auto matches or beats finetune" in capsys.readouterr().out


@pytest.mark.slow
def test_sae_depths_trains_every_depth_and_the_control(cohort, tmp_path):
    out = tmp_path / "sae"
    rows = sae_depths(["--cohort_ckpt", str(cohort), "--out", str(out), "--control_layers", "1", "--sae_seeds", "2",
                       "--dict_sizes", "16", "--",
                       "--model.init_args.n_atoms=32", "--model.init_args.k=4", "--model.init_args.warmup_steps=1",
                       "--data.init_args.batch_size=64", "--data.init_args.steps_per_epoch=2",
                       "--trainer.max_steps=2", "--trainer.callbacks.init_args.top_atoms=2",
                       "--trainer.callbacks.init_args.figures=false"])
    assert [(r["layer"], r["encoder"], r["seed"], r["n_atoms"], r["kind"]) for r in rows] == [
        (0, "cohort", 0, 32, "depth"), (1, "cohort", 0, 32, "depth"), (1, "cohort", 1, 32, "seed"),
        (1, "cohort", 0, 16, "size"), (1, "untrained", 0, 32, "control")]
    seeded = [yaml.safe_load((Path(r["run"]) / "config.yaml").read_text())["model"]["init_args"]["init_seed"]
              for r in rows[1:3]]
    assert seeded == [0, 1]   # an SAE seed is its own initialisation, not only another batch order
    control = json.loads((out / "control" / "ffmlp" / "cohort_layer1" / "config.yaml").with_name("summary.json")
                         .read_text())
    assert control["trainer/global_step"] == 4   # the control's cohort trained above its random layers
    table = (out / "sae_depths.md").read_text()
    assert "| ffmlp | 1 | untrained | 32 | 0 |" in table and all(0 <= r["sae/fvu"] for r in rows)


@pytest.mark.parametrize("args, named", [
    (["sweep", "--out", "x"], ["cohort_ckpt"]),                                    # the missing argument
    (["sweep", "--cohort_ckpt", "missing.ckpt", "--out", "x"], ["'missing.ckpt'"]),
    (["study", "--profile", "huge"], ["huge"]),                                    # the bad value
])
def test_bad_command_lines_are_one_line_errors(args, named, capsys):
    assert_names(cli_error(args, capsys), *named)


def test_learning_rate_matching_bisects_between_the_rates_that_bracket_the_target():
    import math

    calls = []

    def train(lr):  # a cohort PSNR that grows with log(lr): 20 dB at 1e-4, 32 dB at 1e-3
        calls.append(lr)
        return None, {"val/psnr": 20 + 12 * math.log10(lr / 1e-4)}

    tried = match_learning_rate(train, (1e-4, 1e-3), target=26.0)
    assert calls[:2] == [1e-4, 1e-3] and calls[2] == 3.2e-4          # geometric mean of the bracket
    assert abs(tried[3.2e-4][1]["val/psnr"] - 26.0) <= 1.0 and len(calls) == 3
    calls.clear()
    tried = match_learning_rate(train, (1e-4, 1e-3), target=38.5)   # above both: one step past the best rate
    assert calls == [1e-4, 1e-3, 3.2e-3] and abs(tried[3.2e-3][1]["val/psnr"] - 38.0) < 0.1


def test_learning_rate_matching_looks_between_the_best_rate_and_a_faster_one_that_overshot():
    """All runs below the target and the fastest rate diverged: the next try lies between the best rate and
    the diverged one, not past it (the MRI cohort of the decisive profile: 52.2 dB at 3e-4, 15.2 at 1e-3)."""
    import math

    calls = []

    def train(lr):  # unimodal: peak 54 dB at 5e-4, diverges above
        calls.append(lr)
        return None, {"val/psnr": 54 - 30 * math.log10(lr / 5e-4) ** 2}

    match_learning_rate(train, (3e-4, 1e-3), target=53.9)
    assert calls[:3] == [3e-4, 1e-3, 5.5e-4]


def test_regime_cells_are_chosen_by_name_and_a_bad_one_is_one_clear_error():
    from inr_lightning.errors import InputError
    from inr_lightning.study.commands import with_cells
    from inr_lightning.study.profiles import PROFILES

    assert with_cells(PROFILES["regime"], ["64x128", "32x64"]).grid == ((32, 64), (64, 128))
    with raises_naming(InputError, "40x64", "32x64", "32x128"):
        with_cells(PROFILES["regime"], ["40x64"])
    with raises_naming(InputError, "--cells", "'decisive'"):
        with_cells(PROFILES["decisive"], ["32x64"])


def test_progress_extrapolates_the_stages_that_ran_and_ignores_reused_ones(capsys):
    from pathlib import Path

    from inr_lightning.study.stages import Progress

    progress = Progress()
    progress.step(Path("nothing planned"), 5.0)          # no plan: silent
    progress.plan(5)
    progress.step(Path("a"), 600.0)
    progress.step(Path("b"), None)                      # reused: costs nothing, counts as done
    progress.step(Path("c"), 1200.0)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" —")[0] for line in lines] == ["[1/5] a", "[2/5] b", "[3/5] c"]
    assert lines[0].endswith("ETA 40 min") and lines[2].endswith("ETA 30 min")   # 2 left × 900 s
