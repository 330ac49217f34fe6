"""Callbacks that stop a run: ``FiniteLoss`` and a stage-aware ``EarlyStopping``.

FiniteLoss: stop a run at the first non-finite training loss or gradient, before it touches the weights.

The checks run in ``on_before_backward`` (the step's loss) and ``on_before_optimizer_step`` (its gradients,
before clipping): nothing has been changed yet, so the weights in memory and every checkpoint already
written stay finite.  The run ends with a ``RunStopped``
error that the CLI prints as one line: which stage, which step, the loss value and where the last good
checkpoint is.  Under DDP the decision is shared by all ranks (one all-reduce of a flag per step), so every
rank stops at the same step and none waits forever in a collective.

The CLI adds this callback to every run; checkpoints are only written after validations, so the newest
``last.ckpt`` always holds weights that produced finite losses.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import early_stopping

from inr_lightning.errors import InputError, RunStopped, check_choice

STAGES = {"CohortINRModule": "cohort", "SignalFitModule": "fit", "SAEModule": "sae"}


def stage_name(pl_module: L.LightningModule) -> str:
    name = type(pl_module).__name__
    return STAGES.get(name, name)


class FiniteLoss(L.Callback):
    """Raises ``RunStopped`` at the first step whose training loss — or, before the optimizer applies them,
    whose gradients — are NaN or ±inf (see the module docstring)."""

    @staticmethod
    def _any_rank(trainer: L.Trainer, bad: bool) -> bool:
        return trainer.strategy.reduce_boolean_decision(bad, all=False) if trainer.world_size > 1 else bad

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if self._any_rank(trainer, not bool(torch.isfinite(loss.detach()).all())):
            value = float(loss.detach().float().flatten()[0]) if loss.numel() else math.nan
            self._stop(trainer, pl_module, f"non-finite training loss ({value})")

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        # A finite loss can still overflow in backward; such a step would poison the weights (and the next
        # checkpoint).  Checked before gradient clipping, which would turn inf into NaN.
        bad = any(p.grad is not None and not bool(torch.isfinite(p.grad).all()) for p in pl_module.parameters())
        if self._any_rank(trainer, bad):
            self._stop(trainer, pl_module, "non-finite gradient")

    @staticmethod
    def _stop(trainer: L.Trainer, pl_module: L.LightningModule, what: str) -> None:
        ckpt = next((c.last_model_path for c in trainer.checkpoint_callbacks if getattr(c, "last_model_path", "")),
                    "")
        kept = (f"the last good checkpoint is {ckpt}" if ckpt and Path(ckpt).is_file()
                else "no checkpoint had been written yet")
        raise RunStopped(f"{what} at step {trainer.global_step} (epoch {trainer.current_epoch}) of the "
                         f"{stage_name(pl_module)} stage; the step was not applied and {kept}. Lower the learning "
                         "rate (model.init_args.lr) or clip gradients (trainer.gradient_clip_val), then resume "
                         "with --ckpt_path=last or start again")


class EarlyStopping(early_stopping.EarlyStopping):
    """Lightning's ``EarlyStopping`` that defaults to the stage's own metric, so one preset serves every stage.

    ``monitor: null`` (the default) watches the metric ``best.ckpt`` is chosen by — ``val/psnr`` (max) for
    cohort and fit runs, ``sae/fvu`` (min) for SAEs — and ``min_delta: null`` takes that metric's default
    step (``DEFAULT_MIN_DELTA``).  A ``monitor`` the stage never logs stops the run with one line naming the
    stage and the keys it does log, instead of Lightning's traceback.
    """

    DEFAULT_MIN_DELTA = {"val/psnr": 0.05, "sae/fvu": 1e-3}

    def __init__(self, monitor: str | None = None, min_delta: float | None = None, patience: int = 5,
                 mode: Literal["min", "max"] | None = None, check_on_train_epoch_end: bool | None = None, **kwargs) -> None:
        super().__init__(monitor=monitor or "", min_delta=0.0, patience=patience, mode=mode or "min",
                         check_on_train_epoch_end=check_on_train_epoch_end, **kwargs)
        self._given = (monitor, min_delta, mode)
        self.at_epoch_end = check_on_train_epoch_end
        self._stage = "this"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        monitor, min_delta, mode = self._given
        own, own_mode = getattr(pl_module, "checkpoint_monitor", ("val/psnr", "max"))
        self.monitor = monitor or own
        self.mode = mode or (own_mode if self.monitor == own else "min")
        check_choice("EarlyStopping mode", self.mode, tuple(self.mode_dict))
        delta = self.DEFAULT_MIN_DELTA.get(self.monitor, 0.0) if min_delta is None else float(min_delta)
        self.min_delta = abs(delta) * (1 if self.monitor_op == torch.gt else -1)
        self.best_score = torch.tensor(-torch.inf if self.monitor_op == torch.gt else torch.inf)
        self._stage = stage_name(pl_module)
        if self.at_epoch_end is None:  # where Lightning checks: after each epoch if it validates after each
            self.at_epoch_end = trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1
        super().setup(trainer, pl_module, stage)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_epoch_end:
            self.require_monitor(trainer)
        super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.at_epoch_end:
            self.require_monitor(trainer)
        super().on_validation_end(trainer, pl_module)

    def require_monitor(self, trainer: L.Trainer) -> None:
        """Where Lightning checks (a fit, not its sanity check), the watched metric must have been logged."""
        logs = trainer.callback_metrics
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self.strict and self.monitor not in logs:
            raise InputError(f"EarlyStopping monitors {self.monitor!r}, which the {self._stage} stage does not log; "
                             f"it logs: {', '.join(sorted(logs)) or 'nothing yet'} (leave monitor unset to watch "
                             "the stage's own metric)")
