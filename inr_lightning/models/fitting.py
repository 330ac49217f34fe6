"""SignalFitModule: fit M new signals from a cohort encoder, each with its own INR, as one batched model.

Every signal gets its own encoder copy (``CohortINR(cfg, M, C, encoder_copies=M)``): M independent fits run
as one GEMM per layer.  Protocols ``scratch | finetune | freeze | auto``, the random-weights control, who
freezes (this module, once, in ``setup("fit")``) and the frozen-prefix cache: docs/architecture.md, "The fit
stage".  ``summary()`` holds every signal's PSNR/SSIM at ``record_steps`` and at the end.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from inr_lightning.errors import InputError, check_choice
from inr_lightning.models.base import INRModule, LossReduction, LrSchedule
from inr_lightning.nn import CohortINR
from inr_lightning.nn.inr import Encoder

FitProtocol = Literal["scratch", "finetune", "freeze", "auto"]
Above = Literal["finetune", "reinit"]
EncoderWeights = Literal["cohort", "random"]
PROTOCOLS, ABOVE, ENCODER_WEIGHTS = get_args(FitProtocol), get_args(Above), get_args(EncoderWeights)
DEFAULT_RECORD_STEPS = (50, 100, 250, 500, 1000, 2000)


class SignalFitModule(INRModule):
    """Fits ``num_signals`` held-out signals, one INR each, initialised from a cohort's encoder.

    Args:
        cohort: the cohort network (``CohortINR``) whose architecture and encoder weights the fits start from;
            read, never kept (not in ``state_dict``).  The CLI links it from ``CohortRunDataModule.cohort``
            (``data.cohort_ckpt``); from Python, ``checkpoints.load_cohort(path)[0]``.
        protocol: ``scratch``, ``finetune``, ``freeze`` or ``auto`` (docs/architecture.md).
        last_frozen_layer: for ``freeze``: encoder layers ``0 .. last_frozen_layer`` are frozen,
            ``0 ≤ last_frozen_layer < L_s`` (after a fit: −1 when nothing was frozen).
        above: ``finetune`` (layers above the freeze depth start from the cohort weights) or ``reinit``.
        encoder_weights: ``cohort`` (default) or ``random``: the random-weights control.
        backbone: if given, the cohort's backbone must be this one (guards a config pointed at the wrong
            cohort run).
        num_signals: number of signals fitted side by side; linked from ``data.num_signals``.
        out_channels: channels per signal; linked from ``data.num_channels``.
        lr: Adam learning rate (1e-4).
        record_steps: steps at which the full-grid PSNR/SSIM of every signal goes into ``summary.json``.
        loss_reduction, eval_chunk, compile, step_chunk, lr_schedule: as ``INRModule``.
        cache_frozen_prefix: compute the frozen layers' output on the grid once per fit.
        grid: the full grid as one batch (``{"coords" (P, 2), "target" (N, P, C), "num_coords", "shape"}``) that
            training batches' ``index`` refers to; the CLI links it from ``CohortRunDataModule.full_grid``.
            It feeds the frozen-prefix cache and the PSNR at ``record_steps``; None: no cache, and the recorded
            PSNR reads the first validation batch.
    """

    def __init__(self, cohort: CohortINR, protocol: FitProtocol = "auto", last_frozen_layer: int | None = None,
                 above: Above = "finetune", encoder_weights: EncoderWeights = "cohort", backbone: str | None = None,
                 num_signals: int = 1, out_channels: int = 1,
                 lr: float = 1e-4, record_steps: list[int] | None = None, loss_reduction: LossReduction = "sum",
                 eval_chunk: int = 65536, cache_frozen_prefix: bool = True, compile: bool = False,
                 step_chunk: int | None = None, lr_schedule: LrSchedule = "constant", grid: dict | None = None) -> None:
        super().__init__(lr=lr, loss_reduction=loss_reduction, eval_chunk=eval_chunk, compile=compile,
                         step_chunk=step_chunk, lr_schedule=lr_schedule)
        if not isinstance(cache_frozen_prefix, bool):
            raise InputError(f"cache_frozen_prefix must be true or false, got {cache_frozen_prefix!r}")
        self.cache_frozen_prefix = cache_frozen_prefix
        self.grid = grid                               # the data's full grid batch (``contracts.GridData``)
        self._prefix_cache: Tensor | None = None      # (M, P, width): frozen layers' output on the full grid
        self._prefix_index: Tensor | None = None      # arange(P) on the cache's device (full-grid fast path)
        self._step_full = False                       # this step's index is the whole grid in order
        for name, value, allowed in (("protocol", protocol, PROTOCOLS), ("above", above, ABOVE),
                                     ("encoder_weights", encoder_weights, ENCODER_WEIGHTS)):
            check_choice(name, value, allowed)
        if protocol == "freeze" and last_frozen_layer is None:
            raise InputError("protocol: freeze needs last_frozen_layer (an encoder layer index); "
                             "or use protocol: auto with the StableRankFreeze callback")
        if protocol != "freeze" and last_frozen_layer is not None:
            raise InputError(f"last_frozen_layer={last_frozen_layer} is only used with protocol: freeze, not "
                             f"{protocol!r} "
                             f"(for auto, give StableRankFreeze(depth=…))")
        steps = list(DEFAULT_RECORD_STEPS if record_steps is None else record_steps)
        if any(not isinstance(s, int) or s < 0 for s in steps):
            raise InputError(f"record_steps must be integers ≥ 0, got {steps!r}")
        if not isinstance(cohort, CohortINR) or cohort.encoder.copies != 1:
            raise InputError(f"cohort must be a cohort network (a CohortINR with one shared encoder, e.g. "
                             f"checkpoints.load_cohort(path)[0]), got {type(cohort).__name__}")
        cfg, encoder_state = cohort.cfg, cohort.encoder.state_dict()
        if backbone is not None and backbone != cfg.backbone:
            raise InputError(f"the cohort holds a {cfg.backbone} encoder, but backbone is {backbone!r}; point "
                             f"data.cohort_ckpt at the {backbone} cohort run")
        if protocol == "freeze":
            self.check_depth(last_frozen_layer, cfg.shared_layers)
        self.protocol, self.above, self.encoder_weights, self.cfg = protocol, above, encoder_weights, cfg
        self.record_steps = sorted(set(steps))
        self.save_hyperparameters(ignore=["cohort", "grid"])   # inputs, not settings: the CLI links them again
        self.hparams["record_steps"] = self.record_steps
        # Random init everywhere (this *is* scratch), then the cohort encoder in every copy.
        self.net = CohortINR(cfg, num_signals, out_channels, encoder_copies=num_signals)
        # The loaded encoder's weights, one (out, in) matrix per layer: what StableRankFreeze measures.
        self.loaded_encoder_weights = [encoder_state[f"layers.{j}.linear.weight"][0].clone()
                                       for j in range(cfg.shared_layers)]
        # …and the same layers at their random initialisation, for stable ranks relative to init.
        self.init_encoder_weights = [self.net.encoder.linear(j).weight[0].detach().clone()
                                     for j in range(cfg.shared_layers)]
        self._load_encoder(encoder_state, transfer_weights=protocol != "scratch" and encoder_weights == "cohort")
        self.last_frozen_layer: int | None = last_frozen_layer  # resolved; −1 = nothing frozen
        self._freeze_applied = False
        # Only settings go into hparams (``test --ckpt_path`` feeds them back); the cohort's architecture is
        # reported here instead.
        self._summary: dict = {"fit/protocol": protocol, "fit/above": above, "fit/encoder_weights": encoder_weights,
                               "fit/net": cfg.to_dict()}
        self._recorded: dict[int, tuple[list[float], list[float]]] = {}

    def summary(self) -> dict:
        """Entries for ``summary.json``: the protocol, the network, what was frozen, PSNR/SSIM at the recorded
        steps and at the end."""
        return dict(self._summary)

    # -- set-up -------------------------------------------------------------------------------------
    @staticmethod
    def check_depth(depth: int, num_layers: int) -> int:
        if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth < num_layers:
            raise InputError(f"freeze depth {depth!r} is out of range: the encoder has {num_layers} shared layers, "
                             f"valid depths are 0..{num_layers - 1}")
        return depth

    @torch.no_grad()
    def _load_encoder(self, state: dict[str, Tensor], transfer_weights: bool) -> None:
        own = self.net.encoder.state_dict()
        for key, value in state.items():
            if key == "features.B" or transfer_weights:
                own[key].copy_(value.expand_as(own[key]))

    def set_last_frozen_layer(self, depth: int, source: str = "StableRankFreeze") -> None:
        """Called by ``StableRankFreeze.setup`` for ``protocol: auto``: layers ``0 .. depth`` will be frozen
        (``depth = −1``: none)."""
        if self._freeze_applied:
            raise RuntimeError("the freeze depth is set before setup('fit') freezes, never after")
        if depth != -1:
            self.check_depth(depth, len(self.net.encoder))
        self.last_frozen_layer = depth
        self._summary["fit/freeze_source"] = source

    def setup(self, stage: str) -> None:
        if stage != "fit" or self._freeze_applied:
            return
        if self.protocol == "auto" and self.last_frozen_layer is None:
            raise InputError("protocol: auto needs the StableRankFreeze callback in trainer.callbacks "
                             "(class_path: inr_lightning.callbacks.StableRankFreeze) to choose the depth")
        depth = self.last_frozen_layer if self.protocol in ("freeze", "auto") else -1
        self.apply_freeze(depth)

    @torch.no_grad()
    def apply_freeze(self, depth: int) -> None:
        """Freeze encoder layers ``0 .. depth`` (``requires_grad = False``); with ``above: reinit`` re-draw
        the layers above.  Once per module."""
        if self._freeze_applied:
            return
        encoder = self.net.encoder
        if self.above == "reinit" and self.protocol in ("freeze", "auto") and depth + 1 < len(encoder):
            fresh = Encoder(self.cfg, copies=encoder.copies).to(encoder.linear(0).weight.device)
            for j in range(depth + 1, len(encoder)):
                encoder.layers[j].load_state_dict(fresh.layers[j].state_dict())
        for j in range(depth + 1):
            for p in encoder.layers[j].parameters():
                p.requires_grad_(False)
        self.last_frozen_layer = depth
        self._freeze_applied = True
        self._summary["fit/last_frozen_layer"] = depth
        self._summary["fit/frozen_layers"] = list(range(depth + 1))

    # -- frozen-prefix cache ---------------------------------------------------------------------------
    def _grid_coords(self) -> Tensor | None:
        """The full grid ``batch["index"]`` refers to (None: no grid was given)."""
        return None if self.grid is None else self.grid["coords"]

    @torch.no_grad()
    def build_prefix_cache(self, coords: Tensor) -> Tensor:
        """Layers ``0 .. last_frozen_layer`` on the full grid ``coords (P, 2)`` → ``(M, P, width)``, once."""
        coords = coords.to(self.net.encoder.linear(0).weight.device)
        self._prefix_cache = self.net.encoder(coords.unsqueeze(0), 0, self.last_frozen_layer + 1).contiguous()
        self._prefix_index = torch.arange(len(coords), device=coords.device)
        return self._prefix_cache

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """Builds the cache at the first step (on the step's device) and decides whether this step uses it;
        outside ``train_forward`` so that a compiled forward sees no Python side effects."""
        self._step_full = False
        if not (self.cache_frozen_prefix and self._freeze_applied and self.last_frozen_layer is not None
                and self.last_frozen_layer >= 0 and "index" in batch):
            self._prefix_cache = None
            return
        index = batch["index"]
        if self._prefix_cache is None or self._prefix_cache.device != index.device:
            coords = self._grid_coords()
            if coords is None:
                self._prefix_cache = None
                return
            self.build_prefix_cache(coords.to(index.device))
        self._step_full = index.shape[0] == self._prefix_cache.shape[1] and torch.equal(index, self._prefix_index)

    def train_forward(self, batch: dict) -> Tensor:
        cache = self._prefix_cache
        if cache is None or "index" not in batch:
            return self.net(batch["coords"])
        # the whole grid in order: the cache itself; a subset or a chunk of the step: its rows
        h = cache if self._step_full and batch["index"].shape[0] == cache.shape[1] else cache[:, batch["index"]]
        return self.net.forward_from(h, self.last_frozen_layer)

    def teardown(self, stage: str) -> None:
        if stage == "fit":
            self._prefix_cache = self._prefix_index = None  # the cache lives for one fit

    # -- resume ---------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The frozen depth and the recorded PSNR/SSIM history travel with the weights (plain values only, so
        the checkpoint still loads with ``weights_only=True``)."""
        checkpoint["fit_state"] = {"last_frozen_layer": self.last_frozen_layer,
                                   "recorded": {int(s): (list(p), list(q)) for s, (p, q) in self._recorded.items()},
                                   "summary": dict(self._summary)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """On resume (``--ckpt_path``): ``setup`` has frozen the layers again from the same config; the
        checkpoint's depth must agree, and the recorded history comes back."""
        state = checkpoint.get("fit_state")
        if not state:
            return
        saved = state.get("last_frozen_layer")
        if self._freeze_applied and saved is not None and saved != self.last_frozen_layer:
            raise InputError(f"the checkpoint was trained with encoder layers 0..{saved} frozen, this run freezes "
                             f"0..{self.last_frozen_layer}; resume with the run's own config ({{run}}/config.yaml)")
        self._recorded.update({int(s): (list(p), list(q)) for s, (p, q) in state.get("recorded", {}).items()})
        self._summary.update(state.get("summary", {}))

    # -- PSNR / SSIM at the recorded steps -----------------------------------------------------------
    def _full_grid_batch(self) -> dict | None:
        """The full grid for the recorded PSNR: ``grid``, else the first batch of the Trainer's validation loader."""
        if self.grid is not None:
            return self.grid
        loaders = self.trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        return None if loader is None else next(iter(loader))

    @torch.no_grad()
    def _record(self, step: int) -> None:
        if step in self._recorded:
            return
        batch = self._full_grid_batch()
        if batch is None:
            return
        was_training = self.training
        self.eval()
        coords = batch["coords"].to(self.device)
        pred = self._images(self.predict_grid(coords), batch["shape"])
        target = self._images(batch["target"].to(self.device), batch["shape"])
        self.train(was_training)
        psnr = peak_signal_noise_ratio(pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
        ssim = structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none")
        self._recorded[step] = ([float(v) for v in psnr], [float(v) for v in ssim])
        recorded = sorted(self._recorded)
        self._summary["fit/psnr_at_step"] = {str(s): self._recorded[s][0] for s in recorded}
        self._summary["fit/ssim_at_step"] = {str(s): self._recorded[s][1] for s in recorded}
        for logger in self.loggers:
            logger.log_metrics({"record/psnr": float(psnr.mean()), "record/ssim": float(ssim.mean())}, step=step)

    def on_train_start(self) -> None:
        if 0 in self.record_steps:
            self._record(0)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.trainer.global_step in self.record_steps:
            self._record(self.trainer.global_step)

    def on_train_end(self) -> None:
        step = self.trainer.global_step
        self._record(step)
        psnr, ssim = self._recorded[step] if step in self._recorded else ([], [])
        self._summary.update({"fit/final_step": step, "fit/psnr_final": psnr, "fit/ssim_final": ssim})
