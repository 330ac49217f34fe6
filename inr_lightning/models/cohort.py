"""CohortINRModule: STRAINER cohort training, one shared encoder and one head per signal.

``freeze_random_prefix: j`` builds the *untrained-encoder control* of an SAE at layer ≤ j: encoder layers
0..j keep their random initialisation and never train (``requires_grad`` off, so the optimizer never holds
them), while the layers above and the heads learn the cohort as usual.  Unlike trained heads on a random
encoder, such a network reconstructs the cohort, so its atoms and ablations can be compared with the
trained encoder's.  The value is a hyper-parameter of the checkpoint; ``ActivationDataModule`` reads it.
"""

from __future__ import annotations

from typing import Literal

import torch

from inr_lightning.errors import InputError
from inr_lightning.models.base import INRModule, LossReduction
from inr_lightning.nn import CohortINR, INRConfig


class CohortINRModule(INRModule):
    """Trains a shared encoder and ``num_signals`` heads on a cohort.

    Args:
        net: architecture (``INRConfig``); the network is built from it so that a checkpoint's hyper-parameters
            (plain values) are enough to rebuild it under ``weights_only=True`` loading.
        num_signals: number of heads; linked from ``data.num_signals`` by the CLI, never typed.
        out_channels: channels per signal; linked from ``data.num_channels``.
        lr: Adam learning rate (STRAINER: 1e-4).
        loss_reduction: ``sum`` (STRAINER) or ``mean`` of the per-signal MSEs.
        eval_chunk: coordinates per forward pass during evaluation.
        compile: run the training forward through ``torch.compile`` (see ``INRModule``).
        step_chunk: coordinates per chunk of a training step, null for none (see ``INRModule``).
        freeze_random_prefix: ``j`` keeps encoder layers 0..j at their random initialisation, frozen (the
            untrained-encoder control); ``None`` trains every layer.
        lr_schedule: ``constant`` (STRAINER) or ``cosine``: the rate decays to 0 at ``trainer.max_steps``, so the
            final cohort is not caught in one of Adam's late spikes (at lr ≥ 3e-4 the last-step PSNR of a
            constant-rate cohort swings by 10 dB or more between seeds and rates).
    """

    def __init__(self, net: INRConfig, num_signals: int = 1, out_channels: int = 1, lr: float = 1e-4,
                 loss_reduction: LossReduction = "sum", eval_chunk: int = 65536, compile: bool = False,
                 step_chunk: int | None = None, freeze_random_prefix: int | None = None,
                 lr_schedule: Literal["constant", "cosine"] = "constant") -> None:
        super().__init__(lr=lr, loss_reduction=loss_reduction, eval_chunk=eval_chunk, compile=compile,
                         step_chunk=step_chunk)
        if isinstance(net, dict):  # rebuilt from a checkpoint's hyper-parameters
            net = INRConfig(**net)
        self.save_hyperparameters()
        self.hparams["net"] = net.to_dict()  # plain values: checkpoints stay loadable with weights_only=True
        self.net = CohortINR(net, num_signals, out_channels)
        if lr_schedule not in ("constant", "cosine"):
            raise InputError(f"lr_schedule must be constant or cosine, got {lr_schedule!r}")
        self.lr_schedule = lr_schedule
        if freeze_random_prefix is not None:
            if isinstance(freeze_random_prefix, bool) or not isinstance(freeze_random_prefix, int) \
                    or not 0 <= freeze_random_prefix < net.shared_layers:
                raise InputError(f"freeze_random_prefix={freeze_random_prefix!r} is out of range: the encoder has "
                                 f"layers 0..{net.shared_layers - 1} (or null for none)")
            for j in range(freeze_random_prefix + 1):
                self.net.encoder.layers[j].requires_grad_(False)

    def configure_optimizers(self):
        optimizer = super().configure_optimizers()
        if self.lr_schedule == "constant":
            return optimizer
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(self.trainer.max_steps, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
