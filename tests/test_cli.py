"""The command line as users run it: a real subprocess, validate/test, interpolation, one-line errors."""

import json
import shlex

import pytest
from conftest import ROOT, TINY, read_summary, run_subprocess


def test_fit_then_validate_and_test_in_a_subprocess(tmp_path):
    run = tmp_path / "run"
    args = ["--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={run}", *TINY]
    fit = run_subprocess(["fit", *args])
    assert fit.returncode == 0, fit.stderr[-2000:]
    fitted = read_summary(run)
    ckpt = str(run / "checkpoints" / "last.ckpt")
    test = run_subprocess(["test", *args, f"--ckpt_path={ckpt}"])
    assert test.returncode == 0, test.stderr[-2000:]
    tested = json.loads((run / "test_summary.json").read_text())
    # The test stage re-evaluates the same weights on the same grid: same PSNR as the last validation.
    assert tested["test/psnr"] == pytest.approx(fitted["val/psnr"], abs=1e-4)
    validate = run_subprocess(["validate", *args, f"--ckpt_path={ckpt}"])
    assert validate.returncode == 0, validate.stderr[-2000:]
    validated = json.loads((run / "validate_summary.json").read_text())
    assert validated["val/psnr"] == pytest.approx(fitted["val/psnr"], abs=1e-4)
    assert read_summary(run) == fitted  # the training record is the training record


def test_print_config_resolves_interpolation(tmp_path):
    out = run_subprocess(["fit", "--config", "configs/cohort/ffmlp.yaml", "--study=brains",
                          f"--trainer.default_root_dir={tmp_path}/x", "--print_config"])
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"save_dir: {tmp_path}/x" in out.stdout and "group: brains" in out.stdout
    assert "backbone: ffmlp" in out.stdout and "${" not in out.stdout


@pytest.mark.parametrize("override,message", [
    ("--backbone=resnet", "error: unknown backbone 'resnet'; expected one of: siren, ffmlp"),
    ("--model.init_args.lr=-1", "error: learning rate must be a finite number > 0, got -1.0"),
    ("--model.init_args.lr=nan", "error: Parser key \"lr\": Expected a <class 'float'>. Got value: nan"),
    ("--model.init_args.lr=0", "error: learning rate must be a finite number > 0, got 0"),
    ("--model.init_args.no_such_key=3", "error: Option 'no_such_key' is not accepted"),
])
def test_bad_values_are_one_line_errors(override, message, tmp_path):
    out = run_subprocess(["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={tmp_path}/r",
                          override])
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message) and "Traceback" not in out.stderr


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_missing_or_empty_image_folder_is_one_line(folder, tmp_path):
    path = tmp_path / folder
    if folder == "empty":
        path.mkdir()
    out = run_subprocess(["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={tmp_path}/r",
                          "--data.init_args.source=inr_lightning.data.ImageFolder",
                          f"--data.init_args.source.init_args.path={path}"])
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: image folder '{path}'") and "Traceback" not in out.stderr
    assert not (tmp_path / "r").exists()  # nothing was written for a run that never started


def test_a_new_fit_never_overwrites_another_runs_checkpoints(tmp_path):
    run = tmp_path / "run"
    args = ["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={run}", *TINY]
    assert run_subprocess(args).returncode == 0
    before = {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()}
    again = run_subprocess(args)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"error: run directory '{run}' already holds checkpoints of another run; resume it with --ckpt_path=last, "
        "choose another --trainer.default_root_dir, or pass --overwrite=true")
    assert {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()} == before
    resumed = run_subprocess([*args, "--ckpt_path=last", "--trainer.max_steps=6"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_summary(run)["trainer/global_step"] == 6


def demo_command() -> list[str]:
    """The arguments after ``python -m inr_lightning`` in the Makefile's ``demo`` recipe."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("demo:"))
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        words = shlex.split(line.partition("#")[0])
        if "inr_lightning" in words:
            return words[words.index("inr_lightning") + 1:]
    raise AssertionError("the Makefile's demo recipe runs no `python -m inr_lightning` command")


def test_make_demo_twice_keeps_the_first_run(tmp_path):
    """``make demo`` a second time: the run is complete, so nothing is trained and no file of it changes
    (a run interrupted before its end would be resumed: ``--ckpt_path=last``)."""
    run = tmp_path / "run"
    args = [*demo_command(), f"--trainer.default_root_dir={run}", *TINY]
    first = run_subprocess(args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"no {run / 'checkpoints' / 'last.ckpt'} yet; starting a new run" in first.stdout
    assert read_summary(run)["trainer/global_step"] == 4

    def snapshot() -> dict:
        return {p.relative_to(run).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in sorted(run.rglob("*")) if p.is_file()}

    before = snapshot()
    again = run_subprocess(args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"fit: the run in '{run}' is complete ({run / 'checkpoints' / 'last.ckpt'} is at step 4, max_steps=4)" \
        in again.stdout
    assert "Traceback" not in again.stderr
    assert snapshot() == before
