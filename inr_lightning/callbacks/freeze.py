"""StableRankFreeze: a fit's freeze depth from the stable ranks of the loaded cohort encoder.

It freezes through the encoder layer of highest weight stable rank, the rule the study tests (docs/study.md,
finding 1), in two readings (``through``: layers 0..j; ``below``: 0..j−1) and three forms (raw argmax, first
layer excluded, relative to initialisation).  It measures and reports; under ``protocol: auto`` it hands
``SignalFitModule`` the depth, and the module freezes (docs/architecture.md, "The fit stage").
"""

from __future__ import annotations

import sys
from typing import Literal, get_args

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from inr_lightning.analysis import stable_rank
from inr_lightning.errors import InputError, check_choice

Rule = Literal["through", "below"]
RULES = get_args(Rule)


def choose_last_frozen_layer(profile: list[float], rule: Rule = "through", depth: int | None = None,
                        allow_first_layer: bool = True, init_profile: list[float] | None = None) -> tuple[int, int]:
    """``(layer, last_frozen_layer)``: the layer the rule is about (the argmax of the stable rank — divided by
    ``init_profile`` when given — or ``depth`` if given) and the last frozen layer under ``rule`` (−1: none)."""
    check_choice("rule", rule, RULES)
    n = len(profile)
    if depth is not None:
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth < n:
            raise InputError(f"freeze depth {depth!r} is out of range: the encoder has {n} shared layers, "
                             f"valid depths are 0..{n - 1}")
        layer = depth
    else:
        first = 0 if allow_first_layer or n == 1 else 1
        scores = profile if init_profile is None else [p / i for p, i in zip(profile, init_profile)]
        candidates = scores[first:]
        layer = first + max(range(len(candidates)), key=lambda i: candidates[i])
    return layer, layer if rule == "through" else layer - 1


class StableRankFreeze(L.Callback):
    """Chooses a fit's freeze depth by stable rank (the module docstring); reports it in ``summary()``.

    Args:
        rule: ``through`` (freeze 0..argmax) or ``below`` (freeze 0..argmax−1).
        depth: an explicit layer that overrides the argmax (the rule still applies to it); ``0 ≤ depth < L_s``.
        allow_first_layer: whether layer 0 may win the argmax (the FFMLP's first layer, acting on 2m Fourier
            features, often has the highest stable rank; the SIREN's never does).
        relative_to_init: rank layers by stable rank divided by the same layer's at its random initialisation.
    """

    def __init__(self, rule: Rule = "through", depth: int | None = None, allow_first_layer: bool = True,
                 relative_to_init: bool = False) -> None:
        check_choice("rule", rule, RULES)
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
            raise InputError(f"depth must be an encoder layer index ≥ 0 or null, got {depth!r}")
        self.rule, self.depth, self.allow_first_layer = rule, depth, allow_first_layer
        self.relative_to_init = relative_to_init
        self.profile: list[float] = []
        self.init_profile: list[float] | None = None
        self.layer: int | None = None
        self.last_frozen_layer: int | None = None
        self._summary: dict = {}

    def summary(self) -> dict:
        """Entries for ``summary.json``: the stable-rank profile, the rule and (when applied) what it froze."""
        return dict(self._summary)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not hasattr(pl_module, "set_last_frozen_layer"):
            name = type(pl_module).__name__
            raise InputError(f"StableRankFreeze chooses the freeze depth of a fit (SignalFitModule); the model is a "
                             f"{name}: remove the callback from trainer.callbacks")
        self.profile = [float(stable_rank(w)) for w in pl_module.loaded_encoder_weights]
        self.init_profile = [float(stable_rank(w)) for w in pl_module.init_encoder_weights]
        self.layer, self.last_frozen_layer = choose_last_frozen_layer(
            self.profile, self.rule, self.depth, self.allow_first_layer,
            self.init_profile if self.relative_to_init else None)
        argmax = max(range(len(self.profile)), key=lambda i: self.profile[i])
        extra = self._summary = {}
        self.applied = pl_module.protocol == "auto"
        extra.update({"freeze/stable_rank": self.profile, "freeze/stable_rank_init": self.init_profile,
                      "freeze/argmax": argmax, "freeze/rule": self.rule,
                      "freeze/allow_first_layer": self.allow_first_layer,
                      "freeze/relative_to_init": self.relative_to_init, "freeze/applied": self.applied})
        if not self.applied:  # another protocol decides the depth: report the profile only
            return
        extra.update({"freeze/layer": self.layer, "freeze/last_frozen_layer": self.last_frozen_layer,
                      "freeze/explicit_depth": self.depth})
        pl_module.set_last_frozen_layer(self.last_frozen_layer, source=f"StableRankFreeze(rule={self.rule})")
        if trainer.is_global_zero:
            print(self.explain(), file=sys.stderr)

    def explain(self) -> str:
        """One line: what ``auto`` froze and why."""
        frozen = "nothing" if self.last_frozen_layer < 0 else f"encoder layers 0..{self.last_frozen_layer}"
        if self.depth is not None:
            why = f"explicit depth {self.depth}"
        else:
            score = "stable rank / its value at init" if self.relative_to_init else "stable rank"
            first = "" if self.allow_first_layer else ", layer 0 excluded"
            why = f"layer {self.layer} has the highest {score}{first}"
        profile = ", ".join(f"{v:.1f}" for v in self.profile)
        return f"auto: froze {frozen} (rule {self.rule}: {why}; stable rank per layer: {profile})"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self.profile:
            return
        for logger in trainer.loggers:
            if self.applied:  # freeze/* scalars only where the depth was actually applied
                logger.log_metrics({"freeze/last_frozen_layer": float(self.last_frozen_layer), "freeze/layer": float(self.layer)},
                                   step=trainer.global_step)
            if isinstance(logger, WandbLogger):
                import wandb

                rows = [[j, s] for j, s in enumerate(self.profile)]
                table = wandb.Table(columns=["layer", "stable_rank"], data=rows)
                title = "stable rank per encoder layer" + \
                    (f" (froze 0..{self.last_frozen_layer}, {self.rule})" if self.applied else "")
                logger.experiment.log({
                    "freeze/stable_rank_profile": table,
                    "freeze/stable_rank_bar": wandb.plot.bar(table, "layer", "stable_rank", title=title),
                })
