"""What every INR-fitting stage shares: the STRAINER loss, full-grid evaluation, and the metrics it logs.

Subclasses build ``self.net`` (a ``CohortINR``) and may override ``configure_optimizers``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, get_args

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio
from torchmetrics.image import StructuralSimilarityIndexMeasure

from inr_lightning.analysis import stable_rank
from inr_lightning.errors import InputError, check_choice
from inr_lightning.nn import CohortINR, to_unit

LossReduction = Literal["sum", "mean"]
LOSS_REDUCTIONS = get_args(LossReduction)
# constant (STRAINER) or cosine: the rate decays to 0 at ``trainer.max_steps``, so the last step is not one of
# Adam's late spikes (at lr ≥ 3e-4 a constant-rate cohort's last-step PSNR swings by 10 dB between seeds).
LrSchedule = Literal["constant", "cosine"]
LR_SCHEDULES = get_args(LrSchedule)


def check_lr(lr: float) -> float:
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise InputError(f"learning rate must be a finite number > 0, got {lr!r}")
    return float(lr)


def split_batch(batch: dict, size: int) -> list[dict]:
    """A training batch cut into chunks of ``size`` coordinates: ``coords``/``index`` along dim 0,
    ``target`` along dim 1; ``num_coords`` (the step's global count) stays."""
    chunks = []
    for start in range(0, batch["coords"].shape[0], size):
        rows = slice(start, start + size)
        chunk = {**batch, "coords": batch["coords"][rows], "target": batch["target"][:, rows]}
        if "index" in batch:
            chunk["index"] = batch["index"][rows]
        chunks.append(chunk)
    return chunks


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The module's Trainer, or None outside one (``LightningModule.trainer`` raises there)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def run_checkpoints(module: L.LightningModule) -> list[ModelCheckpoint]:
    """A module's ``configure_callbacks``: ``<run>/checkpoints/{last,best}.ckpt``, best by its own
    ``checkpoint_monitor``, in place of Lightning's default checkpoint (none if checkpointing is off)."""
    trainer = module.trainer
    if trainer.checkpoint_callback is None:
        return []
    metric, mode = module.checkpoint_monitor
    return [ModelCheckpoint(dirpath=Path(trainer.default_root_dir) / "checkpoints", filename="best", monitor=metric,
                            mode=mode, save_last=True, auto_insert_metric_name=False)]


class ChunkedLoss(torch.autograd.Function):
    """A step's loss whose parameter gradients are computed chunk by chunk in the forward pass: one loss and
    one backward for Lightning and DDP, one chunk's activations alive at a time, no recomputation (unlike
    ``torch.utils.checkpoint``).  ``forward(loss_fn, chunks, *params)`` → (loss, per-signal share)."""

    @staticmethod
    def forward(ctx, loss_fn, chunks: list[dict], *params: Tensor) -> tuple[Tensor, Tensor]:
        grads = [torch.zeros_like(p) for p in params]
        total = per_signal = None
        for chunk in chunks:
            with torch.enable_grad():
                loss, share = loss_fn(chunk)
                for g, d in zip(grads, torch.autograd.grad(loss, params, allow_unused=True)):
                    if d is not None:
                        g.add_(d)
            total = loss.detach() if total is None else total + loss.detach()
            per_signal = share.detach() if per_signal is None else per_signal + share.detach()
        ctx.save_for_backward(*grads)
        ctx.mark_non_differentiable(per_signal)
        return total, per_signal

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_per_signal: Tensor):
        return (None, None, *(g * grad_loss for g in ctx.saved_tensors))


class INRModule(L.LightningModule):
    """The base of the cohort and fit stages: fits ``self.net``'s N outputs ``(N, P, C)`` to N signals.

    Loss (STRAINER): per-signal MSE over the step's coordinates, summed over signals, normalised by the global
    coordinate count so that DDP equals one process exactly.  ``step_chunk`` (bounded memory) and ``compile``:
    docs/architecture.md, "Inside a training step".
    """

    net: CohortINR
    checkpoint_monitor = ("val/psnr", "max")

    def __init__(self, lr: float = 1e-4, loss_reduction: LossReduction = "sum", eval_chunk: int = 65536,
                 compile: bool = False, step_chunk: int | None = None, lr_schedule: LrSchedule = "constant") -> None:
        super().__init__()
        check_choice("loss_reduction", loss_reduction, LOSS_REDUCTIONS)
        check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        self.lr_schedule = lr_schedule
        if step_chunk is not None and not (isinstance(step_chunk, int) and step_chunk >= 1):
            raise InputError(f"step_chunk must be a positive number of coordinates or null (no chunks), "
                             f"got {step_chunk!r}")
        self.lr, self.loss_reduction, self.eval_chunk = check_lr(lr), loss_reduction, eval_chunk
        self.step_chunk = step_chunk
        if not isinstance(compile, bool):
            raise InputError(f"compile must be true or false, got {compile!r}")
        # Not ``self.compile``: that name is nn.Module's own compile() method.
        self.use_compile = compile
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.test_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.last_images: tuple[Tensor, Tensor] | None = None  # (prediction, target) of the last evaluation

    # -- training ---------------------------------------------------------------------------------
    def train_forward(self, batch: dict) -> Tensor:
        """The N outputs ``(N, p, C)`` at the step's coordinates (subclasses may start from cached activations)."""
        return self.net(batch["coords"])

    def _training_forward(self, batch: dict) -> Tensor:
        if not self.use_compile:
            return self.train_forward(batch)
        fn = self.__dict__.get("_compiled_train_forward")
        if fn is None:  # in __dict__, not a submodule: no ``_orig_mod.`` keys in the state dict
            fn = self.__dict__["_compiled_train_forward"] = torch.compile(self.train_forward)
        return fn(batch)

    def chunk_loss(self, batch: dict) -> tuple[Tensor, Tensor]:
        """(loss, per-signal share of the MSE) of the coordinates in ``batch``.  Both add up over chunks: each
        chunk divides by the step's global coordinate count, never its own."""
        pred = self._training_forward(batch)
        target = batch["target"]
        # Local share of each signal's global MSE: Σ_local (pred − y)² / (P_global · C).
        per_signal = ((pred - target) ** 2).sum(dim=(1, 2)) / (batch["num_coords"] * target.shape[-1])
        return (per_signal.sum() if self.loss_reduction == "sum" else per_signal.mean()), per_signal

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        if self.step_chunk is not None and batch["coords"].shape[0] > self.step_chunk:
            params = [p for p in self.parameters() if p.requires_grad]
            loss, per_signal = ChunkedLoss.apply(self.chunk_loss, split_batch(batch, self.step_chunk), *params)
        else:
            loss, per_signal = self.chunk_loss(batch)
        world = self.trainer.world_size if attached_trainer(self) is not None else 1
        with torch.no_grad():
            global_mse = self.trainer.strategy.reduce(per_signal.detach(), reduce_op="sum") if world > 1 \
                else per_signal.detach()
            # MSE on [−1, 1] is 4× the MSE on [0, 1]; train PSNR is unclamped, val PSNR is exact.
            psnr = -10 * torch.log10(global_mse / 4)
        reduced = global_mse.sum() if self.loss_reduction == "sum" else global_mse.mean()
        n = int(batch["num_coords"])
        self.log("train/loss", reduced, prog_bar=True, batch_size=n)
        self.log("train/psnr", psnr.mean(), prog_bar=True, batch_size=n)
        return loss * world

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        try:  # fused: one kernel per parameter instead of a dozen elementwise passes (CPU and CUDA)
            optimizer = torch.optim.Adam(params, lr=self.lr, fused=True)
        except (RuntimeError, ValueError, TypeError):
            optimizer = torch.optim.Adam(params, lr=self.lr)
        if self.lr_schedule == "constant":
            return optimizer
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(self.trainer.max_steps, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # -- evaluation -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_grid(self, coords: Tensor) -> Tensor:
        """All N outputs at ``coords`` ``(P, 2)``, evaluated in chunks of ``eval_chunk`` coordinates."""
        return torch.cat([self.net(c) for c in coords.split(self.eval_chunk)], dim=1)

    def _images(self, values: Tensor, shape: tuple[int, int]) -> Tensor:
        n, _, c = values.shape
        return to_unit(values.transpose(1, 2).reshape(n, c, *shape))

    def _evaluate(self, batch: dict, stage: str, ssim: StructuralSimilarityIndexMeasure) -> None:
        pred = self._images(self.predict_grid(batch["coords"]), batch["shape"])
        target = self._images(batch["target"], batch["shape"])
        psnr = peak_signal_noise_ratio(pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
        # Every rank evaluates the same full grid, so sync_dist only averages identical values; it keeps
        # the monitored metric present on all ranks for ModelCheckpoint.
        self.log(f"{stage}/psnr", psnr.mean(), sync_dist=True, prog_bar=True, batch_size=1)
        for i, value in enumerate(psnr):
            self.log(f"{stage}/psnr_per_signal/{i}", value, sync_dist=True, batch_size=1)
        ssim(pred, target)
        self.log(f"{stage}/ssim", ssim, prog_bar=False, batch_size=1)
        self.last_images = (pred.cpu(), target.cpu())

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_ssim)

    def predict_step(self, batch: dict, batch_idx: int) -> Tensor:
        """Every signal on the batch's grid → ``(N, C, H, W)`` on [0, 1] (what ``predict`` writes)."""
        return self._images(self.predict_grid(batch["coords"]), batch["shape"])

    def configure_callbacks(self) -> list[ModelCheckpoint]:
        return run_checkpoints(self)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_ssim)

    def on_validation_epoch_end(self) -> None:
        # Exact (float64 SVD) stable rank of every encoder layer: cheap next to an epoch, and the freeze
        # rule of the fitting stage reads it.  Independent encoder copies report their mean.
        for j in range(len(self.net.encoder)):
            srank = stable_rank(self.net.encoder.linear(j).weight)
            self.log(f"encoder/stable_rank/{j}", float(srank.mean()), sync_dist=False, rank_zero_only=True)
