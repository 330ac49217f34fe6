"""Command line: ``python -m inr_lightning {fit,validate,test} --config configs/<stage>/<backbone>.yaml``.

A LightningCLI with
- the ``omegaconf+`` parser mode: ``${...}`` interpolation is resolved after every config file and
  command-line override is merged, so ``--trainer.default_root_dir=X`` moves the logger's files too;
- model and data chosen by ``class_path`` in the config (one CLI for every stage);
- the facts of the data linked into the model (``data.num_signals → model.num_signals``), never typed twice;
- every run's outputs in one folder (``trainer.default_root_dir``): ``config.yaml``, ``summary.json``,
  ``checkpoints/{last,best}.ckpt``, ``wandb/``;
- bad input reported as one line (``INR_LIGHTNING_TRACEBACK=1`` for the full traceback).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import lightning as L
from jsonargparse import set_parsing_settings
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from inr_lightning.callbacks import RunConfig, RunSummary
from inr_lightning.errors import InputError, find_input_error, one_line

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
        extra = configured + [checkpoint, RunSummary()] + list(kwargs.pop("callbacks", []) or [])
        return super().instantiate_trainer(callbacks=extra, **kwargs)


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


def main(args: list[str] | None = None) -> None:
    # Configs write ``${trainer.default_root_dir}`` from their own top; under subcommands that top is
    # ``fit.``/``test.``…, so absolute paths are read as relative to the file (jsonargparse's setting for it).
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
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
    except Exception as err:  # noqa: BLE001 — only our InputError is turned into one line; the rest re-raise
        cause = find_input_error(err)
        if cause is None or _show_tracebacks():
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
    finally:
        # WandbLogger leaves its run open; a second run in the same process would silently reuse it.
        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:
            wandb.finish()
