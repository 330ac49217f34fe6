"""Callbacks that stop a run: ``FiniteLoss`` and a stage-aware ``EarlyStopping``.

``FiniteLoss`` stops at the first non-finite loss or gradient before the optimiser step, so the weights and
every checkpoint stay finite; the checks stay on the device and are read once per step (under DDP one
``all_gather``, so a NaN on one rank stops every rank at the same step).  The CLI adds it to every run and
prints its ``RunStopped`` as one line.
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
    whose gradients — are NaN or ±inf, with one synchronisation per step (see the module docstring)."""

    def __init__(self) -> None:
        self._loss: torch.Tensor | None = None   # (first non-finite or last loss value, all finite) this step

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        loss = loss.detach().float().flatten()
        value = loss[0] if loss.numel() else loss.new_full((), math.nan)
        row = torch.stack([value, torch.isfinite(loss).all().float()])
        # Several backward passes per optimizer step (gradient accumulation): keep the first non-finite one.
        if self._loss is not None:
            row = torch.where(self._loss[1] > 0, row, self._loss)
        self._loss = row

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        # A finite loss can still overflow in backward; such a step would poison the weights (and the next
        # checkpoint).  Checked before gradient clipping, which would turn inf into NaN.
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        device = grads[0].device if grads else pl_module.device
        loss = self._loss.to(device) if self._loss is not None else torch.tensor([0.0, 1.0], device=device)
        self._loss = None
        finite = torch.stack([torch.isfinite(g).all() for g in grads]).all() if grads else torch.tensor(True)
        row = torch.cat([loss, finite.float().to(device).reshape(1)])
        rows = trainer.strategy.all_gather(row).reshape(-1, 3) if trainer.world_size > 1 else row.reshape(1, 3)
        rows = rows.tolist()   # the step's one host synchronisation
        bad_loss = [rank for rank, (_, ok, _) in enumerate(rows) if not ok]
        if bad_loss:
            value = rows[bad_loss[0]][0]
            where = f" on rank {', '.join(map(str, bad_loss))} of {len(rows)}" if len(rows) > 1 else ""
            self._stop(trainer, pl_module, f"non-finite training loss ({value}{where})")
        bad_grad = [rank for rank, (_, _, ok) in enumerate(rows) if not ok]
        if bad_grad:
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
