"""FiniteLoss: stop a run at the first non-finite training loss or gradient, before it touches the weights.

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

import lightning as L
import torch

from inr_lightning.errors import RunStopped

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
