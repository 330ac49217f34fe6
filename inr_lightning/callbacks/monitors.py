"""Callbacks that show a run while it trains: reconstructions next to their targets."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from PIL import Image


def side_by_side(pred: torch.Tensor, target: torch.Tensor, max_images: int) -> torch.Tensor:
    """(N, C, H, W) pairs on [0, 1] → one (H·2, W·n, C) uint8 picture: targets on top, reconstructions below."""
    n = min(max_images, pred.shape[0])
    top = torch.cat(list(target[:n]), dim=-1)
    bottom = torch.cat(list(pred[:n]), dim=-1)
    grid = torch.cat([top, bottom], dim=-2).permute(1, 2, 0)
    return (grid * 255).round().to(torch.uint8)


class ReconstructionImages(L.Callback):
    """Every ``every_n_validations`` validations, logs targets over reconstructions to W&B
    (``val/reconstruction``) and saves the same PNG under ``<run>/reconstructions/``."""

    def __init__(self, every_n_validations: int = 5, max_images: int = 8) -> None:
        self.every, self.max_images, self.count = every_n_validations, max_images, 0

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or getattr(pl_module, "last_images", None) is None:
            return
        self.count += 1
        if (self.count - 1) % self.every or not trainer.is_global_zero:
            return
        picture = side_by_side(*pl_module.last_images, self.max_images).numpy()
        if picture.shape[-1] == 1:
            picture = picture[..., 0]
        out = Path(trainer.default_root_dir) / "reconstructions" / f"step{trainer.global_step:07d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(out)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("val/reconstruction", [picture], step=trainer.global_step,
                                 caption=["top: targets, bottom: reconstructions"])
