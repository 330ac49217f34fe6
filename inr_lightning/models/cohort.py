"""CohortINRModule: STRAINER cohort training, one shared encoder and one head per signal.

``freeze_random_prefix: j`` trains the untrained-encoder control of an SAE at layer ≤ j (docs/sae.md).
"""

from __future__ import annotations

from inr_lightning.errors import InputError
from inr_lightning.models.base import INRModule, LossReduction, LrSchedule
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
            untrained-encoder control: the heads still learn the cohort); ``None`` trains every layer.
        lr_schedule: ``constant`` (STRAINER) or ``cosine`` (see ``INRModule``).
    """

    def __init__(self, net: INRConfig = INRConfig(), num_signals: int = 1, out_channels: int = 1, lr: float = 1e-4,
                 loss_reduction: LossReduction = "sum", eval_chunk: int = 65536, compile: bool = False,
                 step_chunk: int | None = None, freeze_random_prefix: int | None = None,
                 lr_schedule: LrSchedule = "constant") -> None:
        super().__init__(lr=lr, loss_reduction=loss_reduction, eval_chunk=eval_chunk, compile=compile,
                         step_chunk=step_chunk, lr_schedule=lr_schedule)
        if isinstance(net, dict):  # rebuilt from a checkpoint's hyper-parameters
            net = INRConfig(**net)
        self.save_hyperparameters()
        self.hparams["net"] = net.to_dict()  # plain values: checkpoints stay loadable with weights_only=True
        self.net = CohortINR(net, num_signals, out_channels)
        if freeze_random_prefix is not None:
            if isinstance(freeze_random_prefix, bool) or not isinstance(freeze_random_prefix, int) \
                    or not 0 <= freeze_random_prefix < net.shared_layers:
                raise InputError(f"freeze_random_prefix={freeze_random_prefix!r} is out of range: the encoder has "
                                 f"layers 0..{net.shared_layers - 1} (or null for none)")
            for j in range(freeze_random_prefix + 1):
                self.net.encoder.layers[j].requires_grad_(False)
