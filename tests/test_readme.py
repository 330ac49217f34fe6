"""The README's command sequences work when pasted in order on a fresh checkout.

Every ``python -m inr_lightning …`` line of the README's ``bash`` blocks runs, in README order, in an empty
folder that holds only the shipped configs, with flags appended that shrink it to seconds (16 px, width 16,
two steps, one seed, two SAE depths). Skipped on purpose: ``study`` (its tiny profile runs in ``tests/study``),
multi-process and GPU lines (DDP is tested in subprocesses elsewhere), ``make`` and ``wandb`` lines.
"""

import os
import re
import shlex
import shutil

import pytest
from conftest import ROOT

from inr_lightning.main import main

TINY_COHORT = ["--model.init_args.net.width=16", "--model.init_args.net.num_frequencies=8",
               "--data.init_args.resolution=16",
               "--data.init_args.steps_per_epoch=2", "--trainer.max_steps=2"]
TINY_FIT = ["--trainer.max_steps=2", "--data.init_args.steps_per_epoch=2", "--model.init_args.record_steps=[2]"]
TINY_SAE = ["--model.init_args.n_atoms=32", "--model.init_args.k=4", "--model.init_args.warmup_steps=1",
            "--model.init_args.init_samples=64", "--data.init_args.batch_size=64",
            "--data.init_args.steps_per_epoch=2", "--trainer.max_steps=2", "--trainer.callbacks.init_args.top_atoms=2",
            "--trainer.callbacks.init_args.figures=false"]
SKIP = re.compile(r"inr_lightning study|--trainer\.devices=2|gpu\.yaml|strategy=ddp")


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("python -m inr_lightning ") and not SKIP.search(line):
                commands.append(shlex.split(line)[3:])
    return commands


def shrink(args: list[str]) -> list[str]:
    """The README line with the flags that make it tiny; W&B off (tests never log)."""
    config = args[args.index("--config") + 1] if "--config" in args else ""
    if args[0] in ("sweep", "sae-depths"):
        extra = TINY_FIT if args[0] == "sweep" else TINY_SAE
        if "--seeds" in args:   # one fit seed: the seeds' pairing is tested in tests/study
            args = [*args[:args.index("--seeds") + 1], "1", *args[args.index("--seeds") + 2:]]
        if args[0] == "sae-depths" and "--layers" not in args:   # the first and last depth: every depth is
            args = [*args, "--layers", "0", "4"]                  # tested in tests/study/test_commands.py
        return [*args, *([] if "--" in args else ["--"]), *extra, "--trainer.logger=false"]
    if args[0] != "fit":
        return [*args, "--trainer.logger=false"] if args[0] in ("test", "validate", "predict") else args
    tiny = TINY_COHORT if "/cohort/" in config else TINY_FIT if "/fit/" in config else TINY_SAE
    return [*args, *tiny, "--trainer.logger=false", "--trainer.enable_progress_bar=false"]


@pytest.mark.slow
def test_readme_command_sequences_run_in_order(tmp_path, capsys):
    commands = readme_commands()
    assert sum(c[0] == "fit" for c in commands) >= 6 and any(c[0] == "render" for c in commands)
    for folder in ("configs", "callbacks"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for args in commands:
            try:
                main(shrink(args))
            except SystemExit as stop:
                assert stop.code in (0, None), f"{' '.join(args)}: {capsys.readouterr().err[-2000:]}"
    finally:
        os.chdir(cwd)
    runs = tmp_path / "runs" / "mri"
    assert (runs / "cohort" / "siren" / "summary.json").is_file()
    assert (runs / "fit" / "siren" / "auto" / "summary.json").is_file()
    assert (runs / "fit" / "siren" / "finetune" / "summary.json").is_file()
    assert (runs / "cohort" / "siren" / "render" / "mosaic.png").is_file()


def test_every_decimal_the_readme_states_about_a_report_is_in_that_report():
    """Each ``<!-- report: PATH -->`` … ``<!-- /report -->`` block of the README speaks about one report: every
    decimal number in it must appear in that report's text (counts and sizes are read by eye; decimals drift)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- report: (\S+) -->(.*?)<!-- /report -->", text, flags=re.S)
    assert blocks, "the README states report numbers only inside report blocks"
    for path, block in blocks:
        report = (ROOT / path).read_text()
        numbers = re.findall(r"(?<![\d.])\d+\.\d+", block)
        assert len(numbers) >= 5, path
        missing = [n for n in numbers if n not in report]
        assert not missing, f"{path} does not contain {missing}"
