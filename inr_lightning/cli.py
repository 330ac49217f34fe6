"""Command line: ``python -m inr_lightning {fit,validate,test} --config configs/<stage>/<backbone>.yaml``.

A LightningCLI with
- the ``omegaconf+`` parser mode: ``${...}`` interpolation is resolved after every config file and
  command-line override is merged, so ``--trainer.default_root_dir=X`` moves the logger's files too;
- model and data chosen by ``class_path`` in the config (one CLI for every stage);
- the facts of the data linked into the model (``data.num_signals → model.num_signals``), never typed twice;
- every run's outputs in one folder (``trainer.default_root_dir``): ``config.yaml``, ``summary.json``,
  ``checkpoints/{last,best}.ckpt``, ``wandb/``;
- bad input reported as one line (``INR_LIGHTNING_TRACEBACK=1`` for the full traceback), exit status 2;
- checkpoints loaded with ``weights_only=True`` only, ``--ckpt_path`` resumes included (a checkpoint that
  needs arbitrary objects unpickled is refused with one line; ``--weights_only=false`` is the explicit
  opt-out for checkpoints you made yourself);
- a run that cannot go on ends with one line and a non-zero exit status, its checkpoints intact:
  a non-finite loss (``FiniteLoss``, exit 1), SIGTERM (exit 143: Lightning finishes the current step, no
  checkpoint is written mid-epoch, the newest ``last.ckpt`` is from the last validation), or W&B failing to
  start (exit 2, before anything in the run directory is written).
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
import warnings
from pathlib import Path

import lightning as L
from jsonargparse import set_parsing_settings
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from inr_lightning.callbacks import FiniteLoss, RunConfig, RunSummary
from inr_lightning.errors import InputError, RunStopped, find_user_error, one_line
from inr_lightning.runtime import retain_freed_memory

# Data lives in memory and each batch is a slice of it; worker processes would only add start-up time.
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*`IterableDataset` has `__len__` defined.*")  # about num_workers > 1 only


def _show_tracebacks() -> bool:
    return bool(os.environ.get("INR_LIGHTNING_TRACEBACK"))


class OneLineErrorParser(LightningArgumentParser):
    """Reports a bad config value as one line (``error: …``) instead of the usage text and a traceback."""

    def error(self, message: str, ex: Exception | None = None):
        if _show_tracebacks():
            return super().error(message, ex)
        print(f"error: {one_line(message, ex)}", file=sys.stderr)
        sys.exit(2)


class INRLightningCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # Study-wide names that configs interpolate (run directory, W&B group and tags, net.backbone).
        parser.add_argument("--study", type=str, default="default", help="study name: the W&B group and run folder")
        parser.add_argument("--backbone", type=str, default="siren", help="siren or ffmlp, for interpolation")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="start a new fit in a run directory that already holds checkpoints")
        # Targets missing from a model's signature are skipped, so one CLI serves every stage.
        parser.link_arguments("data.num_signals", "model.init_args.num_signals", apply_on="instantiate")
        parser.link_arguments("data.num_channels", "model.init_args.out_channels", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        """Adds the callbacks every run needs: ``summary.json`` and last/best checkpoints in ``<run>/checkpoints``."""
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        root = Path(trainer_cfg.get("default_root_dir") or os.getcwd())
        metric, mode = getattr(self.model, "checkpoint_monitor", ("val/psnr", "max"))
        checkpoint = ModelCheckpoint(dirpath=root / "checkpoints", filename="best", monitor=metric, mode=mode,
                                     save_last=True, auto_insert_metric_name=False)
        # ``callbacks=`` below replaces ``trainer.callbacks`` of the config, so the configured ones go in too.
        configured = trainer_cfg.get("callbacks") or []
        configured = list(configured) if isinstance(configured, list) else [configured]
        extra = configured + [checkpoint, RunSummary(), FiniteLoss()] + list(kwargs.pop("callbacks", []) or [])
        return super().instantiate_trainer(callbacks=extra, **kwargs)


    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict:
        """``weights_only=True`` for every ``--ckpt_path`` load unless the user explicitly passed false."""
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if "weights_only" in self._subcommand_method_arguments.get(subcommand, ()) \
                and kwargs.get("weights_only") is None:
            kwargs["weights_only"] = True
        return kwargs

    def _parse_ckpt_path(self) -> None:
        """Lightning reads ``--ckpt_path``'s hyper-parameters here (with ``weights_only=True``); a refused or
        unreadable checkpoint becomes one line."""
        try:
            super()._parse_ckpt_path()
        except pickle.UnpicklingError as err:
            raise _refused(self.config[self.config.subcommand].get("ckpt_path"), err) from None
        except (RuntimeError, EOFError, OSError) as err:
            raise _refused(self.config[self.config.subcommand].get("ckpt_path"), err) from None

    def _run_subcommand(self, subcommand: str) -> None:
        """Runs the subcommand; a stop the user must act on becomes one ``InputError``/``RunStopped`` line."""
        try:
            super()._run_subcommand(subcommand)
        except SIGTERMException:
            root = Path(self.trainer.default_root_dir)
            last = root / "checkpoints" / "last.ckpt"
            kept = f"{last} (written at the last validation)" if last.is_file() else "no checkpoint yet"
            raise RunStopped(f"interrupted by SIGTERM at step {self.trainer.global_step} of the {subcommand} run "
                             f"in '{root}'; kept: {kept}; resume with --ckpt_path=last", exit_code=143) from None
        except pickle.UnpicklingError as err:
            raise _refused(self.config[subcommand].get("ckpt_path"), err) from None
        except Exception as err:
            wandb_error = _wandb_error(err)
            if wandb_error is None or find_user_error(err) is not None:
                raise
            first = (str(wandb_error).strip().splitlines() or [type(wandb_error).__name__])[0]
            raise InputError(f"W&B failed ({type(wandb_error).__name__}: {first[:200]}); the local outputs in "
                             f"'{self.trainer.default_root_dir}' (checkpoints, config.yaml, summary.json) are kept. "
                             "Run `wandb login`, check that the run directory is writable, or log offline "
                             "(--trainer.logger.init_args.offline=true) or not at all (--trainer.logger=false)"
                             ) from None

    def before_fit(self) -> None:
        """Refuses to start a fresh fit over another run's checkpoints (resume or opt in instead)."""
        cfg = self.config[self.subcommand]
        root = Path(self.trainer.default_root_dir)
        if cfg.get("ckpt_path") or cfg.get("overwrite") or not list((root / "checkpoints").glob("*.ckpt")):
            return
        raise InputError(f"run directory '{root}' already holds checkpoints of another run; resume it with "
                         "--ckpt_path=last, choose another --trainer.default_root_dir, or pass --overwrite=true")

    def after_fit(self) -> None:
        if not self.trainer.is_global_zero:
            return
        root = Path(self.trainer.default_root_dir)
        metric, _ = getattr(self.model, "checkpoint_monitor", ("val/psnr", "max"))
        value = self.trainer.callback_metrics.get(metric)
        print(f"\nrun: {root}  ({metric} = {float(value):.2f})" if value is not None else f"\nrun: {root}")
        print(f"  {root / 'config.yaml'}\n  {root / 'summary.json'}\n  {root / 'checkpoints'}/{{last,best}}.ckpt")
        runs = sorted((root / "wandb").glob("offline-run-*"))
        if runs:
            print(f"  W&B (offline): wandb sync {runs[-1]}")


def _refused(ckpt, err: BaseException) -> InputError:
    """The one line for a ``--ckpt_path`` that ``torch.load(weights_only=True)`` would not read."""
    reason = str(err).partition("WeightsUnpickler error:")[2]
    if not any(word in reason.lower() for word in ("global", "reduce", "build")):  # a damaged or foreign file
        return InputError(f"--ckpt_path {str(ckpt)!r} is not a readable checkpoint ({type(err).__name__}); "
                          "give a .ckpt file written by a run, or 'last'")
    lines = [line.strip() for line in str(err).splitlines() if "Unsupported global" in line]
    detail = f" ({lines[0][:160]})" if lines else ""
    return InputError(f"checkpoint {str(ckpt)!r} was refused: it holds objects that only load by running arbitrary "
                      f"code, and checkpoints are loaded with weights_only=True{detail}")


def _wandb_error(ex: BaseException | None) -> BaseException | None:
    """The exception behind ``ex`` that ``wandb`` raised (its own type, or any error raised inside its code,
    such as an ``OSError`` for an unwritable directory), if any."""
    seen = set()
    while ex is not None and id(ex) not in seen:
        frames = traceback.extract_tb(ex.__traceback__)
        if type(ex).__module__.split(".")[0] == "wandb" or any(
                f"{os.sep}wandb{os.sep}" in frame.filename and "-packages" in frame.filename for frame in frames):
            return ex
        seen.add(id(ex))
        ex = ex.__cause__ or ex.__context__
    return None


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """``[own args…] -- [overrides…]`` → (own args, overrides): how scripts pass CLI overrides to every run."""
    if "--" not in argv:
        return list(argv), []
    i = argv.index("--")
    return list(argv[:i]), list(argv[i + 1:])


# Commands beside LightningCLI's fit/validate/test/predict: name → (module, function taking argv, one line).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "study": ("inr_lightning.study.commands", "study", "the whole study: cohorts → sweep → SAEs → report.md"),
    "sweep": ("inr_lightning.study.commands", "sweep", "freeze-depth sweep of one or more cohort runs"),
    "sae-depths": ("inr_lightning.study.commands", "sae_depths", "an SAE at every encoder depth of cohort runs"),
}


def _run_command(name: str, argv: list[str]) -> None:
    """One of ``COMMANDS``: a plain function of its own arguments; its user errors become one line."""
    import importlib

    module, function, _ = COMMANDS[name]
    try:
        getattr(importlib.import_module(module), function)(argv)
    except Exception as err:  # noqa: BLE001 — only InputError/RunStopped become one line; the rest re-raise
        cause = find_user_error(err)
        if cause is None or _show_tracebacks():
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(getattr(cause, "exit_code", 2))


def main(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else list(args)
    if args and args[0] in COMMANDS:
        return _run_command(args[0], args[1:])
    if not args or args[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        print("inr_lightning commands besides LightningCLI's (each has its own --help):\n" + "\n".join(
            f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()) + "\n")
    # Configs write ``${trainer.default_root_dir}`` from their own top; under subcommands that top is
    # ``fit.``/``test.``…, so absolute paths are read as relative to the file (jsonargparse's setting for it).
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    retain_freed_memory()
    try:
        INRLightningCLI(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=RunConfig,
            parser_class=OneLineErrorParser,
            parser_kwargs={"parser_mode": "omegaconf+"},
            args=args,
        )
    except Exception as err:  # noqa: BLE001 — only InputError/RunStopped become one line; the rest re-raise
        cause = find_user_error(err)
        if cause is None or _show_tracebacks():
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(getattr(cause, "exit_code", 2))
    finally:
        # WandbLogger leaves its run open; a second run in the same process would silently reuse it.
        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:
            wandb.finish()
