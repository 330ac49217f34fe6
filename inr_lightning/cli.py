"""``python -m inr_lightning {fit,validate,test,predict} --config configs/<stage>/<backbone>.yaml``: the LightningCLI
(``omegaconf+`` interpolation, model and data by ``class_path``; ``main.py`` is the entry that runs it).

It adds, through Lightning's hooks only: a run's outputs in ``trainer.default_root_dir`` (``trainer_defaults``
callbacks, the module's ``configure_callbacks`` checkpoints, ``LocalMetrics``; ``validate``/``test`` log to W&B in
``<run>/eval/``); checkpoints loaded with ``weights_only=True`` (``--weights_only=false`` opts out; a pickle is
refused in one line); ``fit --ckpt_path=last`` starts, resumes, or keeps a finished run as it is; a new fit never
overwrites checkpoints; the inputs a stage's data hands its module (links); ``resolve`` for the study.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import lightning as L
import yaml
from jsonargparse import set_parsing_settings
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger

from inr_lightning.callbacks import FiniteLoss, RunConfig, RunSummary
from inr_lightning.callbacks.guards import stage_name
from inr_lightning.callbacks.lineage import WandbLineage
from inr_lightning.callbacks.outputs import CURVES_FILE, METRICS_FILE, FinalValidation, LocalMetrics, SignalWriter
from inr_lightning.callbacks.stops import StopReport, checked_ckpt_path
from inr_lightning.errors import InputError, one_line

ARGS_MESSAGE = ".*LightningCLI's args parameter is intended.*"   # args are passed on purpose (main.py, resolve)
DEFAULTS = str(Path(__file__).with_name("defaults.yaml"))


class OneLineErrorParser(LightningArgumentParser):
    """A bad value raises ``InputError`` with the parser's own first line (``main`` prints it, exit 2)."""

    def error(self, message: str, ex: Exception | None = None):
        if os.environ.get("INR_LIGHTNING_TRACEBACK"):
            return super().error(message, ex)
        raise InputError(one_line(message, ex)) from ex


class Resolved(Exception):  # noqa: N818 — not an error: ``resolve`` stops the CLI after parsing (args[0]: config)
    pass


class INRLightningCLI(LightningCLI):
    def __init__(self, *args, resolve_only: bool = False, **kwargs) -> None:
        self.resolve_only = resolve_only
        given = kwargs.get("args") or []
        # A run names its subcommand first: only that one's parser is built (the other three: a third of a parse).
        every = LightningCLI.subcommands()
        self.only = given[0] if given and given[0] in every else None
        if self.only and kwargs.get("parser_kwargs"):   # per-subcommand settings of the others would be unknown
            kwargs["parser_kwargs"] = {k: v for k, v in kwargs["parser_kwargs"].items()
                                       if k not in every or k == self.only}
        super().__init__(*args, **kwargs)

    def subcommands(self) -> dict[str, set[str]]:
        every = LightningCLI.subcommands()
        return {self.only: every[self.only]} if self.only else every

    def add_arguments_to_parser(self, parser) -> None:
        # Study-wide names that configs interpolate (run directory, W&B group and tags, net.backbone).
        parser.add_argument("--study", type=str, default="default", help="study name: the W&B group and run folder")
        parser.add_argument("--backbone", type=str, default="siren", help="siren or ffmlp, for interpolation")
        parser.add_argument("--stage", type=str, default="run", help="cohort, fit or sae: run folder and W&B job type")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="start a new fit in a run directory that already holds checkpoints")
        # A link whose source the data module lacks is skipped, so one CLI serves every stage (``readout``: the SAE
        # stage's data; ``full_grid`` and ``cohort``: the fit stage's, ``CohortRunDataModule``).
        parser.link_arguments("data.num_signals", "model.init_args.num_signals", apply_on="instantiate")
        parser.link_arguments("data.num_channels", "model.init_args.out_channels", apply_on="instantiate")
        parser.link_arguments("data.readout", "model.init_args.readout", apply_on="instantiate")
        parser.link_arguments("data.full_grid", "model.init_args.grid", apply_on="instantiate")
        parser.link_arguments("data.cohort", "model.init_args.cohort", apply_on="instantiate")

    def parse_arguments(self, parser, args) -> None:
        """After parsing: ``weights_only=True`` unless given; ``--ckpt_path`` checked (exists, loads with
        ``weights_only``, written by the config's stage) and ``last``/``best`` resolved in the run directory."""
        super().parse_arguments(parser, args)
        sub = self.config.subcommand
        if self.resolve_only:
            raise Resolved(yaml.safe_load(parser.dump(self.config, skip_unset=False, skip_validation=True))[sub])
        cfg, root = self.config[sub], run_dir(self.config[sub])
        cfg.weights_only = True if cfg.get("weights_only") is None else cfg.weights_only
        cfg.ckpt_path = checked_ckpt_path(sub, cfg, root)

    def before_instantiate_classes(self) -> None:
        """``validate``/``test``/``predict`` log to W&B in ``<run>/eval/`` as job ``<job>-<subcommand>``."""
        specs = self.config[self.subcommand].trainer.get("logger") if self.subcommand != "fit" else None
        for spec in specs if isinstance(specs, list) else [specs]:
            if str(getattr(spec, "class_path", "")).endswith("WandbLogger") and spec.get("init_args"):
                spec.init_args.save_dir = str(run_dir(self.config[self.subcommand]) / "eval")
                job = spec.init_args.get("job_type")
                spec.init_args.job_type = f"{job}-{self.subcommand}" if job else self.subcommand

    def after_instantiate_classes(self) -> None:
        """``fit`` keeps ``metrics.csv``/``curves.png`` beside any logger; W&B's folder exists before it starts."""
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                Path(logger.save_dir or self.trainer.default_root_dir).mkdir(parents=True, exist_ok=True)
        if self.subcommand == "fit":
            local = LocalMetrics(self.trainer.default_root_dir, resume=bool(self.config.fit.get("ckpt_path")))
            local.trainer = self.trainer
            self.trainer.loggers = [*self.trainer.loggers, local]

    def before_fit(self) -> None:
        """Refuses to start a fresh fit over another run's checkpoints (resume or opt in instead)."""
        cfg, root = self.config.fit, Path(self.trainer.default_root_dir)
        if not (cfg.get("ckpt_path") or cfg.get("overwrite") or not list((root / "checkpoints").glob("*.ckpt"))):
            raise InputError(f"run directory '{root}' already holds checkpoints of another run; resume it with "
                             "--ckpt_path=last, choose another --trainer.default_root_dir, or pass --overwrite=true")

    def after_fit(self) -> None:
        if not self.trainer.is_global_zero:
            return
        root, (metric, _) = Path(self.trainer.default_root_dir), getattr(self.model, "checkpoint_monitor", ("", ""))
        value, runs = self.trainer.callback_metrics.get(metric), sorted((root / "wandb").glob("offline-run-*"))
        print(f"\nrun: {root}" + (f"  ({metric} = {float(value):.2f})" if value is not None else ""))
        for name in ("config.yaml", "summary.json", "checkpoints/{last,best}.ckpt", METRICS_FILE, CURVES_FILE):
            print(f"  {root / name}")
        for run in runs[-1:]:
            print(f"  W&B (offline): wandb sync {run}")

    def before_predict(self) -> None:
        """``predict`` renders the signals of a cohort or fit checkpoint (``SignalWriter``: ``<run>/predict/``)."""
        if getattr(self.model, "net", None) is None:
            raise InputError(f"predict renders the signals of a cohort or fit run; the {stage_name(self.model)} stage "
                             "has none (for SAEs use inr_lightning.load_run(<run>).encode/decode/ablate)")
        if not self.config.predict.get("ckpt_path"):
            raise InputError("predict needs --ckpt_path (a .ckpt of the run, or 'last'/'best'); or use "
                             "python -m inr_lightning render <run>")


def run_dir(cfg) -> Path:
    """The run directory of a parsed subcommand config (``trainer.default_root_dir``)."""
    return Path((cfg.get("trainer") or {}).get("default_root_dir") or os.getcwd())


def cli(args: list[str], report: StopReport | None = None, **kwargs) -> INRLightningCLI:
    """The LightningCLI of ``args`` (``fit``/``validate``/``test``/``predict`` and their options)."""
    # Configs write ``${trainer.default_root_dir}`` from their top; under subcommands that top is ``fit.``…
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    callbacks = [FinalValidation(), RunSummary(), FiniteLoss(), WandbLineage(), SignalWriter(), report or StopReport()]
    return INRLightningCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True,
                           subclass_mode_data=True, save_config_callback=RunConfig, parser_class=OneLineErrorParser,
                           trainer_defaults={"callbacks": callbacks},
                           # Every stage's shared settings, read before any --config (inr_lightning/defaults.yaml).
                           parser_kwargs={"parser_mode": "omegaconf+", **{sub: {"default_config_files": [DEFAULTS]}
                                          for sub in ("fit", "validate", "test", "predict")}}, args=args, **kwargs)


def resolve(args: list[str]) -> dict:
    """The full config a run of ``args`` (``["fit", …]``) would use, resolved in this process, nothing run;
    a bad value raises the parser's own ``InputError``."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ARGS_MESSAGE)
            cli(args, resolve_only=True)
    except Resolved as done:
        return done.args[0]
