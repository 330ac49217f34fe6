"""Command line: ``python -m inr_lightning {fit,validate,test} --config configs/<stage>/<backbone>.yaml``.

A LightningCLI with
- the ``omegaconf+`` parser mode: ``${...}`` interpolation is resolved after every config file and
  command-line override is merged, so ``--trainer.default_root_dir=X`` moves the logger's files too;
- model and data chosen by ``class_path`` in the config (one CLI for every stage);
- the facts of the data linked into the model (``data.num_signals → model.num_signals``, ``data.readout →
  model.readout``), never typed twice;
- every run's outputs in one folder (``trainer.default_root_dir``): ``config.yaml``, ``summary.json`` (the
  last real evaluation: a fit always ends with one), ``metrics.csv`` and ``curves.png`` (with or without
  W&B), ``checkpoints/{last,best}.ckpt``, ``wandb/``; ``validate``/``test`` write ``validate_summary.json``/
  ``test_summary.json`` and their W&B run under ``<run>/eval/``, never touching the training record;
- ``predict`` writes every signal as PNGs and one tensor, as the ``render`` command does;
- bad input reported as one line (``INR_LIGHTNING_TRACEBACK=1`` for the full traceback), exit status 2;
- checkpoints loaded with ``weights_only=True`` only, ``--ckpt_path`` resumes included (a checkpoint that
  needs arbitrary objects unpickled is refused with one line; ``--weights_only=false`` is the explicit
  opt-out for checkpoints you made yourself);
- ``fit --ckpt_path=last`` both starts and continues a run: with no ``last.ckpt`` yet it starts a new one,
  with one it resumes, and with one that already reached ``max_steps`` it trains nothing and keeps every
  file (what ``make demo`` relies on to be run twice);
- a run that cannot go on ends with one line and a non-zero exit status, its checkpoints intact:
  a non-finite loss (``FiniteLoss``, exit 1), SIGTERM (exit 143: Lightning finishes the current step, no
  checkpoint is written mid-epoch, the newest ``last.ckpt`` is from the last validation), or W&B failing to
  start (exit 2, before anything in the run directory is written).
"""

from __future__ import annotations

import logging
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
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from inr_lightning.callbacks import FiniteLoss, RunConfig, RunSummary
from inr_lightning.callbacks.guards import STAGES
from inr_lightning.callbacks.lineage import WandbLineage
from inr_lightning.callbacks.outputs import CURVES_FILE, METRICS_FILE, FinalValidation, LocalMetrics
from inr_lightning.checkpoints import checkpoint_path, read_checkpoint
from inr_lightning.errors import InputError, RunStopped, find_user_error, one_line
from inr_lightning.runtime import retain_freed_memory_if_requested

# Data lives in memory and each batch is a slice of it; worker processes would only add start-up time.
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*`IterableDataset` has `__len__` defined.*")  # about num_workers > 1 only
# Messages that tell the user nothing they can act on, silenced one by one: ``main(args)`` passes the command
# line on purpose; Lightning's own use of a deprecated torch pytree API; torch's notes on the sparse CSR
# tensor the SAE's backward builds (valid by construction).
SILENCED = (
    ".*LightningCLI's args parameter is intended to run from within Python.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    ".*Sparse CSR tensor support is in beta state.*",
    ".*Sparse invariant checks are implicitly disabled.*",
)
for _message in SILENCED:
    warnings.filterwarnings("ignore", _message)


class _DropTips(logging.Filter):
    """Lightning's advertisement for its hosted logger, printed at the start of every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("💡 Tip:")


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_DropTips())

DEFAULTS = Path(__file__).with_name("defaults.yaml")

# Special values of ``--ckpt_path`` that Lightning resolves itself.
CKPT_KEYWORDS = ("last", "best", "hpc", "registry")


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
        parser.add_argument("--stage", type=str, default="run",
                            help="cohort, fit or sae: the run folder's and the W&B job type's name")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="start a new fit in a run directory that already holds checkpoints")
        # Targets missing from a model's signature are skipped, so one CLI serves every stage.
        parser.link_arguments("data.num_signals", "model.init_args.num_signals", apply_on="instantiate")
        parser.link_arguments("data.num_channels", "model.init_args.out_channels", apply_on="instantiate")
        # The SAE stage: the frozen INR at the layer (nn.readout.LayerReadout), built by ActivationDataModule.
        parser.link_arguments("data.readout", "model.init_args.readout", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        """``validate``/``test``/``predict`` keep their W&B run out of the training run's ``wandb/``: it goes to
        ``<run>/eval/``, with job type ``<job>-<subcommand>`` (``cohort-test``)."""
        if self.subcommand in (None, "fit"):
            return
        trainer = self.config[self.subcommand].get("trainer") or {}
        root = Path(trainer.get("default_root_dir") or os.getcwd())
        specs = trainer.get("logger")
        for spec in specs if isinstance(specs, list) else [specs]:
            if str(getattr(spec, "class_path", "") or "").endswith("WandbLogger") and spec.get("init_args"):
                spec.init_args.save_dir = str(root / "eval")
                job = spec.init_args.get("job_type")
                spec.init_args.job_type = f"{job}-{self.subcommand}" if job else self.subcommand

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        """Adds what every run needs: ``summary.json``, a final validation, last/best checkpoints in
        ``<run>/checkpoints`` and, for ``fit``, ``metrics.csv``/``curves.png`` beside any other logger."""
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        root = Path(trainer_cfg.get("default_root_dir") or os.getcwd())
        metric, mode = getattr(self.model, "checkpoint_monitor", ("val/psnr", "max"))
        checkpoint = ModelCheckpoint(dirpath=root / "checkpoints", filename="best", monitor=metric, mode=mode,
                                     save_last=True, auto_insert_metric_name=False)
        # ``callbacks=`` below replaces ``trainer.callbacks`` of the config, so the configured ones go in too.
        configured = trainer_cfg.get("callbacks") or []
        configured = list(configured) if isinstance(configured, list) else [configured]
        # FinalValidation first: its validation must come before the end-of-training reports of other callbacks.
        extra = [FinalValidation()] + configured + [checkpoint, RunSummary(), FiniteLoss(), WandbLineage()] \
            + list(kwargs.pop("callbacks", []) or [])
        loggers = _loggers(kwargs.pop("logger", trainer_cfg.get("logger")), root)
        local = None
        if self.subcommand == "fit":
            local = LocalMetrics(root, resume=bool(self.config["fit"].get("ckpt_path")))
            loggers.append(local)
        for logger in loggers:
            if isinstance(logger, WandbLogger):
                Path(logger.save_dir or root).mkdir(parents=True, exist_ok=True)
                # Lightning passes ``anonymous=None``, which W&B answers with a deprecation warning.
                init = getattr(logger, "_wandb_init", None)
                if isinstance(init, dict) and init.get("anonymous") is None:
                    init.pop("anonymous", None)
        trainer = super().instantiate_trainer(callbacks=extra, logger=loggers or False, **kwargs)
        if local is not None:
            local.trainer = trainer
        return trainer

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict:
        """``weights_only=True`` for every ``--ckpt_path`` load unless the user explicitly passed false."""
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if "weights_only" in self._subcommand_method_arguments.get(subcommand, ()) \
                and kwargs.get("weights_only") is None:
            kwargs["weights_only"] = True
        return kwargs

    def _parse_ckpt_path(self) -> None:
        """Lightning reads ``--ckpt_path``'s hyper-parameters here (with ``weights_only=True``); a missing,
        refused or unreadable checkpoint, or one written by another stage than the config's, becomes one line."""
        subcommand = self.config.get("subcommand")
        ckpt = self.config[subcommand].get("ckpt_path") if subcommand else None
        if subcommand == "fit" and str(ckpt) == "last" and not self._last_checkpoint().is_file():
            # Nothing to resume yet: a new run (Lightning would warn and do the same), so that one command
            # (``make demo``) both starts the run and continues it.
            print(f"fit: no {self._last_checkpoint()} yet; starting a new run")
            self.config[subcommand]["ckpt_path"] = ckpt = None
        if ckpt and str(ckpt) not in CKPT_KEYWORDS:
            if not Path(ckpt).is_file():
                raise InputError(f"--ckpt_path {str(ckpt)!r} does not exist; give a .ckpt file written by a run "
                                 "(<run>/checkpoints/last.ckpt or best.ckpt), or 'last'/'best' for the run in "
                                 "--trainer.default_root_dir")
            self._check_stage(subcommand, ckpt)
        try:
            super()._parse_ckpt_path()
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
            raise _refused(ckpt, err) from None

    def _last_checkpoint(self) -> Path:
        """``<run>/checkpoints/last.ckpt`` of the parsed config's run directory (what ``--ckpt_path=last`` reads)."""
        trainer = self.config[self.config["subcommand"]].get("trainer") or {}
        return checkpoint_path(trainer.get("default_root_dir") or os.getcwd(), "last")

    def _fit_already_complete(self) -> bool:
        """A fit resumed from a checkpoint that already reached ``max_steps`` has nothing to train: it ends
        with one line and leaves every file of the run as it is (Lightning would run no step but rewrite
        ``summary.json`` without the final evaluation and start an empty W&B run)."""
        ckpt = self.config["fit"].get("ckpt_path")
        path = self._last_checkpoint() if str(ckpt) == "last" else Path(str(ckpt)) if ckpt else None
        max_steps = self.trainer.max_steps
        if path is None or not path.is_file() or max_steps is None or max_steps < 0:
            return False
        try:
            step = read_checkpoint(path).get("global_step")
        except InputError:  # an unreadable checkpoint is reported by the fit itself
            return False
        if not isinstance(step, int) or step < max_steps:
            return False
        root = Path(self.trainer.default_root_dir)
        print(f"fit: the run in '{root}' is complete ({path} is at step {step}, max_steps={max_steps}); nothing "
              f"to train, its files are kept: {root / 'summary.json'}. Train on with a larger "
              "--trainer.max_steps, or start anew in another --trainer.default_root_dir")
        return True

    def _check_stage(self, subcommand: str, ckpt: str) -> None:
        """The checkpoint's model (``hyper_parameters["_class_path"]``) must be the config's model."""
        try:
            hp = read_checkpoint(ckpt).get("hyper_parameters") or {}
        except InputError:  # unreadable files are reported by _parse_ckpt_path's own handler
            return
        theirs = str(hp.get("_class_path") or "")
        model = self.config[subcommand].get("model")
        ours = str(getattr(model, "class_path", "") or (model.get("class_path", "") if isinstance(model, dict) else ""))
        if not theirs or not ours or theirs.rpartition(".")[2] == ours.rpartition(".")[2]:
            return

        def stage(path: str) -> str:
            name = path.rpartition(".")[2]
            return f"{STAGES.get(name, name)} stage ({name})"

        raise InputError(f"--ckpt_path {str(ckpt)!r} is a {stage(theirs)} checkpoint, but the config's model is the "
                         f"{stage(ours)}; give the config of the run that wrote it: --config "
                         f"{Path(ckpt).resolve().parent.parent / 'config.yaml'}")

    def predict(self, model: L.LightningModule, datamodule: L.LightningDataModule | None = None,
                ckpt_path: str | None = None, **_: object) -> None:
        """``predict``: every signal of the checkpoint's cohort or fit run on the data's grid, written as the
        ``render`` command writes them (``<run>/predict/``)."""
        from inr_lightning.api import render_net
        from inr_lightning.render import write_signals

        root = Path(self.trainer.default_root_dir)
        net = getattr(model, "net", None)
        if net is None:
            name = type(model).__name__
            raise InputError(f"predict renders the signals of a cohort or fit run; the {STAGES.get(name, name)} "
                             "stage has none (for SAEs use inr_lightning.load_run(<run>).encode/decode/ablate)")
        if not ckpt_path:
            raise InputError("predict needs --ckpt_path (a .ckpt of the run, or 'last'/'best'); or use "
                             "python -m inr_lightning render <run>")
        path = checkpoint_path(root, ckpt_path)
        if not path.is_file():
            raise InputError(f"--ckpt_path {str(ckpt_path)!r}: no checkpoint at {path}")
        state = read_checkpoint(path)["state_dict"]
        model.load_state_dict(state)
        resolution = tuple(getattr(datamodule, "resolution", None) or ())
        if len(resolution) != 2:
            raise InputError("predict needs a data module with a resolution (the SignalDataModule of a cohort "
                             "or fit config)")
        images = render_net(net.eval(), resolution)
        if self.trainer.is_global_zero:
            written = write_signals(images, root / "predict")
            print(f"predict: {len(images)} signals at {resolution[0]}×{resolution[1]} → {written}")

    def _run_subcommand(self, subcommand: str) -> None:
        """Runs the subcommand; a stop the user must act on becomes one ``InputError``/``RunStopped`` line."""
        if subcommand == "fit" and self._fit_already_complete():
            return
        try:
            super()._run_subcommand(subcommand)
        except SIGTERMException:
            root = Path(self.trainer.default_root_dir)
            last = checkpoint_path(root, "last")
            kept = f"{last} (written at the last validation)" if last.is_file() else "no checkpoint yet"
            raise RunStopped(f"interrupted by SIGTERM at step {self.trainer.global_step} of the {subcommand} run "
                             f"in '{root}'; kept: {kept}; resume with --ckpt_path=last", exit_code=143) from None
        except pickle.UnpicklingError as err:
            raise _refused(self.config[subcommand].get("ckpt_path"), err) from None
        except Exception as err:
            if isinstance(err, RuntimeError) and "Early stopping conditioned on metric" in str(err):
                stage = STAGES.get(type(self.model).__name__, type(self.model).__name__)
                what = str(err).split(" Pass in")[0].removeprefix("Early stopping conditioned on metric ")
                raise InputError(f"EarlyStopping watches a metric the {stage} stage does not log ({what}); "
                                 "use inr_lightning.callbacks.EarlyStopping (callbacks/early_stopping.yaml), which "
                                 "watches the stage's own metric") from None
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
        print(f"  {root / METRICS_FILE}\n  {root / CURVES_FILE}")
        runs = sorted((root / "wandb").glob("offline-run-*"))
        if runs:
            print(f"  W&B (offline): wandb sync {runs[-1]}")


def _loggers(logger, root: Path) -> list:
    """The configured ``trainer.logger`` as a list: ``false`` → none, ``true``/unset → Lightning's default."""
    if logger is False:
        return []
    if logger is True or logger is None:  # Lightning's own choice: TensorBoard when installed, else CSV
        from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
        from lightning.pytorch.loggers.tensorboard import _TENSORBOARD_AVAILABLE, _TENSORBOARDX_AVAILABLE

        tensorboard = _TENSORBOARD_AVAILABLE or _TENSORBOARDX_AVAILABLE
        return [TensorBoardLogger(save_dir=root) if tensorboard else CSVLogger(save_dir=root)]
    return list(logger) if isinstance(logger, (list, tuple)) else [logger]


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


# Commands beside LightningCLI's fit/validate/test/predict: name → (module, function taking argv, one line).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "study": ("inr_lightning.study.commands", "study", "the whole study: cohorts → sweep → SAEs → report.md"),
    "sweep": ("inr_lightning.study.commands", "sweep", "freeze-depth sweep of one or more cohort runs"),
    "sae-depths": ("inr_lightning.study.commands", "sae_depths", "an SAE at every encoder depth of cohort runs"),
    "compare": ("inr_lightning.compare", "compare", "final metrics of runs in a table, a metric's curves in a plot"),
    "render": ("inr_lightning.render", "render", "every signal of a cohort or fit run as PNGs and a tensor, any grid"),
    "export": ("inr_lightning.export", "export", "a cohort run as a shareable folder: model.safetensors, config, card"),
}


def _exit_on_user_error(err: Exception) -> None:
    """An ``InputError``/``RunStopped`` behind ``err`` ends the process with its one line; anything else re-raises."""
    cause = find_user_error(err)
    if cause is None or _show_tracebacks():
        raise err
    print(f"error: {cause}", file=sys.stderr)
    sys.exit(getattr(cause, "exit_code", 2))


def _run_command(name: str, argv: list[str]) -> None:
    """One of ``COMMANDS``: a plain function of its own arguments; its user errors become one line."""
    import importlib

    module, function, _ = COMMANDS[name]
    try:
        getattr(importlib.import_module(module), function)(argv)
    except Exception as err:  # noqa: BLE001 — only InputError/RunStopped become one line; the rest re-raise
        _exit_on_user_error(err)


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
    try:
        retain_freed_memory_if_requested()  # opt-in (INR_LIGHTNING_RETAIN_MEMORY=1): runtime.py
        INRLightningCLI(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=RunConfig,
            parser_class=OneLineErrorParser,
            # Every stage's shared trainer/logger settings, read before any --config (inr_lightning/defaults.yaml).
            parser_kwargs={"parser_mode": "omegaconf+",
                           **{sub: {"default_config_files": [str(DEFAULTS)]} for sub in ("fit", "validate", "test",
                                                                                           "predict")}},
            args=args,
        )
    except Exception as err:  # noqa: BLE001 — only InputError/RunStopped become one line; the rest re-raise
        _exit_on_user_error(err)
    finally:
        # WandbLogger leaves its run open; a second run in the same process would silently reuse it.
        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:
            wandb.finish()
