"""The CLI's parsing in this process: a study stage's config resolved with the parser's own error, Literal choices
reported by jsonargparse, and every command (LightningCLI's and the study's) on the same parser."""

import pytest
import yaml
from conftest import ROOT, TINY, run_cli

from inr_lightning.cli import resolve
from inr_lightning.main import COMMANDS
from inr_lightning.errors import InputError
from inr_lightning.study.stages import run_stage

COHORT = ROOT / "configs" / "cohort" / "siren.yaml"


def test_a_stage_config_is_resolved_in_process_as_the_run_records_it(tmp_path, monkeypatch):
    """What ``run_stage`` compares before reusing a run is the config the run itself saves."""
    monkeypatch.chdir(ROOT)
    run = tmp_path / "cohort"
    args = ["fit", "--config", str(COHORT), f"--trainer.default_root_dir={run}", *TINY, "--trainer.logger=false",
            "--study=resolved"]
    requested = resolve(args)
    assert requested["trainer"]["default_root_dir"] == str(run) and requested["study"] == "resolved"
    assert requested["model"]["init_args"]["net"]["width"] == 16 and requested["weights_only"] is None
    assert not run.exists()   # resolving runs nothing
    run_cli(args)
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    for key in ("model", "data", "seed_everything", "study", "backbone", "stage"):
        assert recorded[key] == requested[key], key
    assert recorded["trainer"]["max_steps"] == requested["trainer"]["max_steps"] == 4


@pytest.mark.parametrize("override,key,value", [
    ("--model.init_args.lr=nan", "lr", "nan"),
    ("--model.init_args.loss_reduction=max", "loss_reduction", "max"),
])
def test_a_stage_that_does_not_parse_raises_the_parsers_own_line(override, key, value, tmp_path):
    run = tmp_path / "cohort"
    with pytest.raises(InputError) as err:
        run_stage(COHORT, run, [*TINY, override])
    line = str(err.value)
    assert f'Parser key "{key}"' in line and f"Got value: {value}" in line and "\n" not in line
    assert not run.exists()


def test_a_choice_is_a_literal_that_names_the_bad_value_and_every_allowed_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli(["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={tmp_path}/r",
                 "--model.init_args.loss_reduction=max"])
    assert stop.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Got value: max" in errors[0] and "'sum', 'mean'" in errors[0], errors
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_reports_a_bad_option_as_one_line_of_the_same_parser(command, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli([command, "--no_such_option=3"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no_such_option" in err[0], err


def test_a_command_is_one_line_in_the_registry(monkeypatch, capsys):
    """``COMMANDS`` maps a name to ``module:function``; ``main`` dispatches any entry with the rest of argv."""
    import inr_lightning.compare

    seen = []
    monkeypatch.setattr(inr_lightning.compare, "extra_command", seen.append, raising=False)
    monkeypatch.setitem(COMMANDS, "extra", ("inr_lightning.compare:extra_command", "a test command"))
    run_cli(["extra", "--flag", "x"])
    assert seen == [["--flag", "x"]]
