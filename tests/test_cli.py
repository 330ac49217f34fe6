"""The command line as users run it: ``python -m inr_lightning`` as a module, validate/test, interpolation,
one-line errors.  Only the first test starts a real process (the module entry point is what it tests); the
others call the CLI in this process, as ``conftest.run_cli``."""

import json
import shlex

import pytest
import wandb
from conftest import ROOT, TINY, assert_names, cli_error, read_summary, run_cli, run_subprocess


@pytest.mark.slow
def test_fit_in_a_subprocess_then_validate_and_test(tmp_path):
    run = tmp_path / "run"
    args = ["--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={run}", *TINY]
    fit = run_subprocess(["fit", *args])
    assert fit.returncode == 0, fit.stderr[-2000:]
    fitted = read_summary(run)
    ckpt = str(run / "checkpoints" / "last.ckpt")
    run_cli(["test", *args, f"--ckpt_path={ckpt}"])
    tested = json.loads((run / "test_summary.json").read_text())
    # The test stage re-evaluates the same weights on the same grid: same PSNR as the last validation.
    assert tested["test/psnr"] == pytest.approx(fitted["val/psnr"], abs=1e-4)
    run_cli(["validate", *args, f"--ckpt_path={ckpt}"])
    validated = json.loads((run / "validate_summary.json").read_text())
    assert validated["val/psnr"] == pytest.approx(fitted["val/psnr"], abs=1e-4)
    assert read_summary(run) == fitted  # the training record is the training record


def test_print_config_resolves_interpolation(tmp_path, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run_cli(["fit", "--config", "configs/cohort/ffmlp.yaml", "--study=brains",
                 f"--trainer.default_root_dir={tmp_path}/x", "--print_config"])
    out = capsys.readouterr().out
    assert stop.value.code in (0, None), out[-2000:]
    assert f"save_dir: {tmp_path}/x" in out and "group: brains" in out
    assert "backbone: ffmlp" in out and "${" not in out


@pytest.mark.parametrize("override,named", [
    ("--backbone=resnet", ["'resnet'", "siren", "ffmlp"]),   # the bad value and the allowed ones
    ("--model.init_args.lr=-1", [-1]),
    ("--model.init_args.lr=nan", [float("nan")]),
    ("--model.init_args.lr=0", [0]),
    ("--model.init_args.no_such_key=3", ["no_such_key"]),
])
def test_bad_values_are_one_line_errors(override, named, tmp_path, capsys):
    line = cli_error(["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={tmp_path}/r",
                      override], capsys)
    assert_names(line, *named)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_missing_or_empty_image_folder_is_one_line(folder, tmp_path, capsys):
    path = tmp_path / folder
    if folder == "empty":
        path.mkdir()
    line = cli_error(["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={tmp_path}/r",
                      "--data.init_args.source=inr_lightning.data.ImageFolder",
                      f"--data.init_args.source.init_args.path={path}"], capsys)
    assert_names(line, f"'{path}'")
    assert not (tmp_path / "r").exists()  # nothing was written for a run that never started


def test_a_new_fit_never_overwrites_another_runs_checkpoints(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={run}", *TINY]
    run_cli(args)
    before = {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()}
    line = cli_error(args, capsys)
    assert_names(line, f"'{run}'", "--ckpt_path=last", "--overwrite")   # the run and both ways out
    assert {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()} == before
    run_cli([*args, "--ckpt_path=last", "--trainer.max_steps=6"])
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


def test_make_demo_twice_keeps_the_first_run(tmp_path, capsys):
    """``make demo`` a second time: the run is complete, so nothing is trained and no file of it changes
    (a run interrupted before its end would be resumed: ``--ckpt_path=last``)."""
    run, last = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"
    args = [*demo_command(), f"--trainer.default_root_dir={run}", *TINY]
    capsys.readouterr()
    run_cli(args)
    wandb.teardown()  # what the end of the `make demo` process does: W&B's service finishes its own logs
    assert_names(capsys.readouterr().out, last)   # says it starts a new run: there was no last.ckpt
    assert read_summary(run)["trainer/global_step"] == 4

    def snapshot() -> dict:
        return {p.relative_to(run).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in sorted(run.rglob("*")) if p.is_file()}

    before = snapshot()
    run_cli(args)
    assert_names(capsys.readouterr().out, f"'{run}'", "complete", 4)   # the run, why nothing ran, its step
    assert snapshot() == before
