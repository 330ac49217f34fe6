"""CohortINRModule: STRAINER cohort training, one shared encoder and one head per signal."""

from __future__ import annotations

from inr_lightning.models.base import INRFitModule
from inr_lightning.nn import CohortINR, INRConfig


class CohortINRModule(INRFitModule):
    """Trains a shared encoder and ``num_signals`` heads on a cohort.

    Args:
        net: architecture (``INRConfig``); the network is built from it so that a checkpoint's hyper-parameters
            (plain values) are enough to rebuild it under ``weights_only=True`` loading.
        num_signals: number of heads; linked from ``data.num_signals`` by the CLI, never typed.
        out_channels: channels per signal; linked from ``data.num_channels``.
        lr: Adam learning rate (STRAINER: 1e-4).
        loss_reduction: ``sum`` (STRAINER) or ``mean`` of the per-signal MSEs.
        eval_chunk: coordinates per forward pass during evaluation.
        compile: run the training forward through ``torch.compile`` (see ``INRFitModule``).
        step_chunk: coordinates per chunk of a training step, null for none (see ``INRFitModule``).
    """

    def __init__(self, net: INRConfig, num_signals: int = 1, out_channels: int = 1, lr: float = 1e-4,
                 loss_reduction: str = "sum", eval_chunk: int = 65536, compile: bool = False,
                 step_chunk: int | None = None) -> None:
        super().__init__(lr=lr, loss_reduction=loss_reduction, eval_chunk=eval_chunk, compile=compile,
                         step_chunk=step_chunk)
        if isinstance(net, dict):  # rebuilt from a checkpoint's hyper-parameters
            net = INRConfig(**net)
        self.save_hyperparameters()
        self.hparams["net"] = net.to_dict()  # plain values: checkpoints stay loadable with weights_only=True
        self.net = CohortINR(net, num_signals, out_channels)
