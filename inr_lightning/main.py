"""``python -m inr_lightning <command>``: the one entry for Lightning's subcommands (``cli.py``) and the
``COMMANDS`` beside them (study, sweep, sae-depths, compare, render, export).  A user error ends it with one line
(``INR_LIGHTNING_TRACEBACK=1`` for the traceback); third-party messages nobody can act on are silenced.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings

from inr_lightning.callbacks.stops import RunComplete, StopReport
from inr_lightning.cli import ARGS_MESSAGE, cli
from inr_lightning.errors import find_user_error
from inr_lightning.runtime import retain_freed_memory_if_requested

# Messages that say nothing a user can act on: args passed on purpose; Lightning's deprecated torch API; the SAE's
# sparse CSR backward; data in memory (workers cost time); predict's single full-grid batch.
SILENCED = (ARGS_MESSAGE, r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
            ".*Sparse CSR tensor support is in beta.*", ".*Sparse invariant checks are implicitly.*",
            ".*does not have many workers.*", ".*`IterableDataset` has `__len__` defined.*",
            ".*Couldn't infer the batch indices.*")
TIPS = [logging.getLogger(f"lightning.{p}.utilities.rank_zero") for p in ("pytorch", "fabric")]  # drop_tips
# Commands beside LightningCLI's subcommands: name → ("module:function" taking argv, one line of help).
COMMANDS: dict[str, tuple[str, str]] = {
    "study": ("inr_lightning.study.commands:study", "the whole study: cohorts → sweep → SAEs → report.md"),
    "sweep": ("inr_lightning.study.commands:sweep", "freeze-depth sweep of one or more cohort runs"),
    "sae-depths": ("inr_lightning.study.commands:sae_depths", "an SAE at every encoder depth of cohort runs"),
    "compare": ("inr_lightning.compare:compare", "final metrics of runs in a table, a metric's curves in a plot"),
    "render": ("inr_lightning.render:render", "every signal of a cohort or fit run as PNGs and a tensor, any grid"),
    "export": ("inr_lightning.export:export", "a cohort run as a shareable folder: model.safetensors, config, card"),
}


def drop_tips(record: logging.LogRecord) -> bool:  # an advertisement; the module's checkpoints replacing the default
    return not str(record.getMessage()).startswith(("💡 Tip:", "The following callbacks returned in `LightningModule"
                                                    ".configure_callbacks` will override existing callbacks passed to "
                                                    "Trainer: ModelCheckpoint"))


def main(args: list[str] | None = None, exit_on_error: bool = True) -> None:
    """``python -m inr_lightning …`` in this process: user errors end it with one line (``SystemExit``);
    ``exit_on_error=False`` raises that error (``InputError``/``RunStopped``) instead (a study's stages)."""
    args = sys.argv[1:] if args is None else list(args)
    report = StopReport()
    for logger in TIPS:
        logger.addFilter(drop_tips)
    with warnings.catch_warnings():
        for message in SILENCED:
            warnings.filterwarnings("ignore", message)
        try:
            if args and args[0] in COMMANDS:
                module, _, function = COMMANDS[args[0]][0].partition(":")
                return getattr(importlib.import_module(module), function)(args[1:])
            if not args or args[0] in ("-h", "--help"):
                print("inr_lightning commands besides LightningCLI's (each has its own --help):\n" + "\n".join(
                    f"  {name:<10}  {help_}" for name, (_, help_) in COMMANDS.items()) + "\n")
            retain_freed_memory_if_requested()  # opt-in (INR_LIGHTNING_RETAIN_MEMORY=1): runtime.py
            cli(args, report)
        except RunComplete as done:
            print(done)
        except (Exception, SystemExit) as err:
            cause = find_user_error(report.error or err)
            if cause is None or os.environ.get("INR_LIGHTNING_TRACEBACK"):
                raise
            if not exit_on_error:
                raise cause from None
            print(f"error: {cause}", file=sys.stderr)
            sys.exit(getattr(cause, "exit_code", 2))
        finally:  # WandbLogger leaves its run open; a second run in this process would silently reuse it
            for logger in TIPS:
                logger.removeFilter(drop_tips)
            wandb = sys.modules.get("wandb")
            if wandb is not None and wandb.run is not None:
                wandb.finish()
