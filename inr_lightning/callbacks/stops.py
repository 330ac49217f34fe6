"""The one line a user reads when a run cannot go on: SIGTERM, W&B failing, a checkpoint refused or of another
stage, a monitor that watches a metric the stage does not log.  ``StopReport`` sees the exception through
Lightning's ``on_exception`` hook (with the trainer: the step, the run folder); the CLI prints its ``error``."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from inr_lightning.callbacks.guards import STAGES, stage_name
from inr_lightning.checkpoints import checkpoint_path
from inr_lightning.errors import InputError, RunStopped, find_user_error


class StopReport(L.Callback):
    """Turns the exception that stopped a run into an ``InputError``/``RunStopped`` (``self.error``), naming
    what was kept; exceptions it does not know stay as they are (``self.error`` is None)."""

    def __init__(self) -> None:
        self.error: InputError | RunStopped | None = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        root = Path(trainer.default_root_dir)
        if isinstance(exception, SIGTERMException):
            last = checkpoint_path(root, "last")
            kept = f"{last} (written at the last validation)" if last.is_file() else "no checkpoint yet"
            fn = getattr(trainer.state.fn, "value", trainer.state.fn)
            self.error = RunStopped(f"interrupted by SIGTERM at step {trainer.global_step} of the {fn} run in "
                                    f"'{root}'; kept: {kept}; resume with --ckpt_path=last", exit_code=143)
        elif isinstance(exception, RuntimeError) and "Early stopping conditioned on metric" in str(exception):
            what = str(exception).split(" Pass in")[0].removeprefix("Early stopping conditioned on metric ")
            self.error = InputError(f"EarlyStopping watches a metric the {stage_name(pl_module)} stage does not log "
                                    f"({what}); use inr_lightning.callbacks.EarlyStopping "
                                    "(callbacks/early_stopping.yaml), which watches the stage's own metric")
        elif (wandb := wandb_error(exception)) is not None and find_user_error(exception) is None:
            first = (str(wandb).strip().splitlines() or [type(wandb).__name__])[0]
            self.error = InputError(f"W&B failed ({type(wandb).__name__}: {first[:200]}); the local outputs in "
                                    f"'{root}' (checkpoints, config.yaml, summary.json) are kept. Run `wandb login`, "
                                    "check that the run directory is writable, or log offline "
                                    "(--trainer.logger.init_args.offline=true) or not at all (--trainer.logger=false)")


def wandb_error(ex: BaseException | None) -> BaseException | None:
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


def refused(ckpt, err: BaseException) -> InputError:
    """The one line for a checkpoint that ``torch.load(weights_only=True)`` would not read."""
    reason = str(err).partition("WeightsUnpickler error:")[2]
    if not any(word in reason.lower() for word in ("global", "reduce", "build")):  # a damaged or foreign file
        return InputError(f"--ckpt_path {str(ckpt)!r} is not a readable checkpoint ({type(err).__name__}); "
                          "give a .ckpt file written by a run, or 'last'")
    lines = [line.strip() for line in str(err).splitlines() if "Unsupported global" in line]
    detail = f" ({lines[0][:160]})" if lines else ""
    return InputError(f"checkpoint {str(ckpt)!r} was refused: it holds objects that only load by running arbitrary "
                      f"code, and checkpoints are loaded with weights_only=True{detail}")


def check_stage(ckpt, theirs: str, ours: str) -> None:
    """The checkpoint's model class (``hyper_parameters["_class_path"]``) must be the config's."""
    if not theirs or not ours or theirs.rpartition(".")[2] == ours.rpartition(".")[2]:
        return
    name = lambda path: f"{STAGES.get(path.rpartition('.')[2], path)} stage ({path.rpartition('.')[2]})"  # noqa: E731
    raise InputError(f"--ckpt_path {str(ckpt)!r} is a {name(theirs)} checkpoint, but the config's model is the "
                     f"{name(ours)}; give the config of the run that wrote it: --config "
                     f"{Path(ckpt).resolve().parent.parent / 'config.yaml'}")


class RunComplete(Exception):  # noqa: N818 — not an error: a resumed fit with nothing left to train
    pass


def checked_ckpt_path(sub: str, cfg, root: Path) -> str | None:
    """``--ckpt_path`` of a parsed ``sub`` config, checked (exists, loads with ``cfg.weights_only``, written by the
    config's stage) and ``last``/``best`` resolved in ``root``; ``fit --ckpt_path=last`` with no ``last.ckpt``
    starts a new run (None), with one at ``max_steps`` raises ``RunComplete``."""
    ckpt = cfg.get("ckpt_path")
    if ckpt is None or str(ckpt) in ("hpc", "registry"):  # Lightning's own keywords
        return ckpt
    path = checkpoint_path(root, ckpt)
    if sub == "fit" and str(ckpt) == "last" and not path.is_file():
        print(f"fit: no {path} yet; starting a new run")  # one command both starts and continues a run
        return None
    if not path.is_file():
        raise InputError(f"--ckpt_path {str(ckpt)!r} does not exist; give a .ckpt file written by a run "
                         "(<run>/checkpoints/last.ckpt or best.ckpt), or 'last'/'best' for the run in "
                         "--trainer.default_root_dir")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=cfg.weights_only)
    except Exception as err:  # noqa: BLE001 — every unreadable file is the same one line
        raise refused(ckpt, err) from None
    check_stage(ckpt, str((saved.get("hyper_parameters") or {}).get("_class_path") or ""),
                str(cfg.model.get("class_path") or ""))
    max_steps, step = cfg.trainer.get("max_steps"), saved.get("global_step")
    if sub == "fit" and isinstance(step, int) and max_steps is not None and 0 <= max_steps <= step:
        raise RunComplete(f"fit: the run in '{root}' is complete ({path} is at step {step}, max_steps={max_steps}"
                          f"); nothing to train, its files are kept: {root / 'summary.json'}. Train on with a "
                          "larger --trainer.max_steps, or start anew in another --trainer.default_root_dir")
    return str(path)
