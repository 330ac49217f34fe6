"""StableRankFreeze: choose the freeze depth of a fit from the stable ranks of the loaded cohort encoder.

Finding 1 of the study (SCIENCE.md §3): the best freeze depth is the encoder layer of highest weight stable
rank.  Whether "freeze at layer j" includes layer j is not public, so both readings are offered:

- ``through``: freeze layers ``0 .. j``     (depth ``j``);
- ``below``:   freeze layers ``0 .. j − 1`` (depth ``j − 1``; ``j = 0`` freezes nothing).

Division of labour with ``SignalFitModule`` (``inr_lightning.models.fitting``): in ``setup("fit")`` this
callback measures the exact stable rank (float64 SVD) of every shared-encoder layer of the *loaded* encoder
(the cohort weights, whatever the protocol), reports the profile and, only when the module's
``protocol`` is ``auto``, hands it the chosen depth (``pl_module.set_freeze_depth``).  The module's own
``setup`` — which Lightning calls right after the callbacks' — then freezes, once, before optimizers and DDP
exist.  With ``scratch``/``finetune``/``freeze`` the callback only reports (the module's depth stands), so
one callback can sit in every run of a sweep.

The profile goes into ``summary.json`` (``freeze/stable_rank``, ``freeze/argmax``, ``freeze/depth``,
``freeze/rule``) and, when a WandbLogger is present, into a W&B table and bar chart.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from inr_lightning.analysis import stable_rank
from inr_lightning.errors import InputError

RULES = ("through", "below")


def choose_freeze_depth(profile: list[float], rule: str = "through", depth: int | None = None,
                        allow_first_layer: bool = True) -> tuple[int, int]:
    """``(layer, freeze_depth)``: the layer the rule is about (the stable-rank argmax, or ``depth`` if given)
    and the last frozen layer under ``rule`` (−1: none)."""
    if rule not in RULES:
        raise InputError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    n = len(profile)
    if depth is not None:
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth < n:
            raise InputError(f"freeze depth {depth!r} is out of range: the encoder has {n} shared layers, "
                             f"valid depths are 0..{n - 1}")
        layer = depth
    else:
        first = 0 if allow_first_layer or n == 1 else 1
        candidates = profile[first:]
        layer = first + max(range(len(candidates)), key=lambda i: candidates[i])
    return layer, layer if rule == "through" else layer - 1


class StableRankFreeze(L.Callback):
    """Freeze a fit's encoder up to its layer of highest stable rank (see the module docstring).

    Args:
        rule: ``through`` (freeze 0..argmax) or ``below`` (freeze 0..argmax−1).
        depth: an explicit layer that overrides the argmax (the rule still applies to it); ``0 ≤ depth < L_s``.
        allow_first_layer: whether layer 0 may win the argmax (the FFMLP's first layer, acting on 2m Fourier
            features, often has the highest stable rank; the SIREN's never does).
    """

    def __init__(self, rule: str = "through", depth: int | None = None, allow_first_layer: bool = True) -> None:
        if rule not in RULES:
            raise InputError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
            raise InputError(f"depth must be an encoder layer index ≥ 0 or null, got {depth!r}")
        self.rule, self.depth, self.allow_first_layer = rule, depth, allow_first_layer
        self.profile: list[float] = []
        self.layer: int | None = None
        self.freeze_depth: int | None = None

    @staticmethod
    def loaded_weights(pl_module: L.LightningModule) -> list[torch.Tensor]:
        """The encoder matrices to measure: the module's loaded cohort weights if it keeps them, else copy 0 of
        its current encoder."""
        weights = getattr(pl_module, "loaded_encoder_weights", None)
        if weights is not None:
            return list(weights)
        encoder = pl_module.net.encoder
        return [encoder.linear(j).weight[0] for j in range(len(encoder))]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.profile = [float(stable_rank(w)) for w in self.loaded_weights(pl_module)]
        self.layer, self.freeze_depth = choose_freeze_depth(self.profile, self.rule, self.depth,
                                                            self.allow_first_layer)
        argmax = max(range(len(self.profile)), key=lambda i: self.profile[i])
        extra = getattr(pl_module, "summary_extra", None)
        if extra is None:
            extra = pl_module.summary_extra = {}
        extra.update({"freeze/stable_rank": self.profile, "freeze/argmax": argmax, "freeze/rule": self.rule,
                      "freeze/layer": self.layer, "freeze/depth": self.freeze_depth,
                      "freeze/explicit_depth": self.depth, "freeze/allow_first_layer": self.allow_first_layer})
        protocol = getattr(pl_module, "protocol", "auto")
        if protocol == "auto":
            if hasattr(pl_module, "set_freeze_depth"):
                pl_module.set_freeze_depth(self.freeze_depth, source=f"StableRankFreeze(rule={self.rule})")
            else:  # any module with a ``net.encoder``: freeze here, still before the optimizers exist
                for j in range(self.freeze_depth + 1):
                    for p in pl_module.net.encoder.layers[j].parameters():
                        p.requires_grad_(False)
        extra["freeze/applied"] = protocol == "auto"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self.profile:
            return
        for logger in trainer.loggers:
            logger.log_metrics({"freeze/depth": float(self.freeze_depth), "freeze/layer": float(self.layer)},
                               step=trainer.global_step)
            if isinstance(logger, WandbLogger):
                import wandb

                rows = [[j, s] for j, s in enumerate(self.profile)]
                table = wandb.Table(columns=["layer", "stable_rank"], data=rows)
                logger.experiment.log({
                    "freeze/stable_rank_profile": table,
                    "freeze/stable_rank_bar": wandb.plot.bar(table, "layer", "stable_rank",
                                                             title=f"stable rank per encoder layer "
                                                                   f"(freeze 0..{self.freeze_depth}, {self.rule})"),
                })
