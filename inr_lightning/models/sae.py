"""SAEModule: a TopK SAE on one encoder layer's activations of a frozen cohort INR.

It receives ``readout`` (``nn.readout.LayerReadout``: the frozen INR split at the layer; the CLI links
``data.readout``), which sizes the SAE and carries x and x̂ through the rest of the network; the checkpoint holds
the SAE alone.  From the data it reads batches only (``x``; evaluation also ``target``).  Loss, schedule and
every logged metric: docs/sae.md.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import lightning as L
import torch
from torch import Tensor

from inr_lightning.analysis import sae_metrics
from inr_lightning.contracts import ActivationSource, LayerOutputs
from inr_lightning.errors import InputError, check_choice
from inr_lightning.models.base import attached_trainer, check_lr, run_checkpoints
from inr_lightning.models.sae_eval import SAEEvalSums
from inr_lightning.nn.readout import LayerReadout
from inr_lightning.nn.sae import (B_PRE_INITS, BPreInit, EncoderInput, TopKSAE, reduce_by_name, sae_loss_terms,
                                  spread_from_sums, spread_sums)

Decay = Literal["none", "linear", "cosine"]
DecoderInit = Literal["random", "data"]
DECAYS, DECODER_INITS = get_args(Decay), get_args(DecoderInit)


def lr_factor(step: int, total: int, warmup: int, decay: str, decay_fraction: float) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based) of ``total``."""
    factor = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if decay == "none" or total <= 0 or decay_fraction <= 0:
        return factor
    start = total - decay_fraction * total
    if step < start:
        return factor
    t = min(1.0, (step - start) / max(total - start, 1.0))
    return factor * ((1.0 - t) if decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * t)))


class SAEModule(L.LightningModule):
    """Trains a TopK SAE on ``ActivationDataModule`` batches.

    Args:
        readout: the frozen INR at the layer (``ActivationDataModule.readout``): width, initialisation sample,
            outputs from the layer on.  ``None``: give ``d_in`` (nothing to train or evaluate through).
        n_atoms: dictionary size (4096).
        k: active atoms per coordinate (32).
        lr: Adam learning rate; ``None`` = ``lr_base``/√(n_atoms/2¹⁴) (the reference's scaling).
        lr_base: the rate that rule gives 2¹⁴ atoms (the reference's: 2e-4).
        warmup_steps: linear learning-rate warm-up.
        decay: learning-rate decay at the end of training: ``none``, ``linear`` or ``cosine`` (to 0).
        decay_fraction: share of ``trainer.max_steps`` (the last ones) over which the rate decays.
        k_aux: dead atoms used by AuxK; ``None`` = d_in / 2.
        aux_weight: weight of the AuxK loss (1/32), normalised by the residual's spread; 0 turns it off.
        dead_window: samples without firing after which an atom counts as dead (for AuxK).
        b_pre_init: ``median`` (geometric), ``mean`` or ``zero``.
        decoder_init: ``data`` (rows = spread-out activations, ``TopKSAE.init_decoder_from_data``) or ``random``
            (the reference's unit rows).
        encoder_input: ``whitened`` (ZCA on the ``init_samples``) or ``centred`` (x/s − b_pre, the reference's).
        whiten_eps: the whitening's regulariser, relative to the largest variance.
        downstream_weight: weight of the downstream term (FVU of the INR's outputs from x̂ against those from x);
            0 = the local loss alone (the reference's).
        bias_lr_scale: the encoder bias b_enc learns at ``lr`` × this, every other parameter at ``lr``.
        init_samples: activations sampled for ``b_pre`` and the input scale (mean input norm).
        dense_threshold: an atom firing on more than this share of the grid is *dense*.
        eval_chunk: coordinates per pass during evaluation.
        init_seed: seed of the SAE's initialisation (independent of what else used the global RNG before).
        d_in: input width; ``None`` = the readout's (saved in the checkpoint either way).
    """

    checkpoint_monitor = ("sae/fvu", "min")

    def __init__(self, readout: LayerReadout | None = None, n_atoms: int = 4096, k: int = 32, lr: float | None = None,
                 lr_base: float = 1e-3, warmup_steps: int = 100, decay: Decay = "linear", decay_fraction: float = 0.3,
                 k_aux: int | None = None, aux_weight: float = 1 / 32, dead_window: int = 131072,
                 b_pre_init: BPreInit = "median", decoder_init: DecoderInit = "data",
                 encoder_input: EncoderInput = "whitened", whiten_eps: float = 1e-4, downstream_weight: float = 1.0,
                 bias_lr_scale: float = 0.25, init_samples: int = 16384, dense_threshold: float = 0.1,
                 eval_chunk: int = 16384, init_seed: int = 0, d_in: int | None = None) -> None:
        super().__init__()
        if not 1 <= int(k) <= int(n_atoms):
            raise InputError(f"k={k!r} must be between 1 and n_atoms={n_atoms!r}")
        check_choice("b_pre_init", b_pre_init, B_PRE_INITS)
        if not aux_weight >= 0 or int(warmup_steps) < 0 or int(init_samples) < 1 or int(eval_chunk) < 1:
            raise InputError("aux_weight and warmup_steps must be ≥ 0, init_samples and eval_chunk ≥ 1")
        check_choice("decoder_init", decoder_init, DECODER_INITS)
        if not whiten_eps > 0:
            raise InputError(f"whiten_eps must be > 0, got {whiten_eps!r}")
        if not downstream_weight >= 0:
            raise InputError(f"downstream_weight must be ≥ 0, got {downstream_weight!r}")
        if not bias_lr_scale > 0:
            raise InputError(f"bias_lr_scale must be > 0, got {bias_lr_scale!r}")
        check_choice("decay", decay, DECAYS)
        if not 0 <= decay_fraction <= 1:
            raise InputError(f"decay_fraction must be between 0 and 1, got {decay_fraction!r}")
        if int(n_atoms) < 1:
            raise InputError(f"n_atoms must be ≥ 1, got {n_atoms!r}")
        if readout is not None and not isinstance(readout, ActivationSource):
            raise InputError(f"readout must have a width and sample(n, device) (contracts.ActivationSource, e.g. "
                             f"ActivationDataModule.readout), got {type(readout).__name__}")
        if downstream_weight > 0 and readout is not None and not isinstance(readout, LayerOutputs):
            raise InputError(f"downstream_weight={downstream_weight!r} needs the frozen INR beside the activations "
                             f"(a LayerReadout, e.g. ActivationDataModule.readout); {type(readout).__name__} has none: "
                             f"set downstream_weight: 0")
        if readout is not None:
            if d_in is not None and int(d_in) != readout.width:
                raise InputError(f"d_in={d_in!r} disagrees with the readout's width {readout.width}")
            d_in = readout.width
        self.lr = check_lr(check_lr(lr_base) / math.sqrt(int(n_atoms) / 2 ** 14) if lr is None else lr)
        self.save_hyperparameters(ignore=["readout"])
        # The CLI hands its parsed arguments over as the hyper-parameters: d_in is set here (saved in the
        # checkpoint: the SAE can be rebuilt without the data) and the readout is never one.
        self.hparams["d_in"] = d_in
        self.hparams.pop("readout", None)
        self.readout = readout   # a plain object, not a child module: never in the state_dict
        self.sae = TopKSAE(d_in, n_atoms, k, k_aux, dead_window, seed=init_seed, encoder_input=encoder_input)
        self._eval: SAEEvalSums | None = None
        self._fitting = False   # the input scale is reported by fits (as it was when the fit started)

    def summary(self) -> dict:
        """Entries for ``summary.json``: the learning rate and, in a fit, the input scale."""
        return {"sae/lr": self.lr, **({"sae/input_scale": float(self.sae.input_scale)} if self._fitting else {})}

    def setup(self, stage: str) -> None:
        if self.sae.d_in is None:
            raise InputError("SAEModule needs a readout (e.g. data.class_path: inr_lightning.data.ActivationDataModule, "
                             "linked as model.init_args.readout) or d_in")
        if self.hparams.downstream_weight > 0 and not isinstance(self.readout, LayerOutputs):
            raise InputError(f"downstream_weight={self.hparams.downstream_weight!r} needs the frozen INR beside the "
                             f"activations (a LayerReadout, e.g. ActivationDataModule.readout); "
                             f"{type(self.readout).__name__} has none: set downstream_weight: 0")

    # -- training ---------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if not bool(self.sae.initialized):  # fresh run (a resumed run restores s and b_pre from its checkpoint)
            if self.readout is None:
                raise InputError("SAEModule needs a readout to initialise from (readout.sample)")
            sample = self.readout.sample(self.hparams.init_samples, self.device)
            self.sae.init_input_scale(sample)
            self.sae.init_b_pre(sample, self.hparams.b_pre_init)
            self.sae.init_encoder_whitener(sample, self.hparams.whiten_eps)
            if self.hparams.decoder_init == "data":
                gen = torch.Generator().manual_seed(int(self.hparams.init_seed))
                self.sae.init_decoder_from_data(sample, gen)
            self._broadcast_initialisation()
        self._fitting = True

    def _broadcast_initialisation(self) -> None:
        """Every rank takes rank 0's data initialisation (the whole SAE state: W_dec, W_enc, b_pre, input scale,
        whitener).  Why: DDP broadcast the parameters when it wrapped the module, before this hook; each rank's
        sample, geometric median and farthest-point choice are then computed apart, and float results (or a
        rank-dependent sample) may differ, so ranks would start from different atoms and never re-sync."""
        if attached_trainer(self) is None or self.trainer.world_size <= 1:
            return
        state = {key: value.detach().cpu() for key, value in self.sae.state_dict().items()}
        self.sae.load_state_dict(self.trainer.strategy.broadcast(state, src=0))  # copies in place: DDP keeps its views

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        x, total = batch["x"], int(batch["num_samples"])
        out = self.sae(x)
        scale = self.sae.input_scale
        sse = (((out.x_hat - x) / scale) ** 2).sum()            # in the normalised units
        use_aux = self.hparams.aux_weight > 0 and bool(self.sae.dead_mask().any())
        aux = self.sae.aux_sse(x, out.x_hat, out.pre, out.u) if use_aux else sse.new_zeros(())
        world = self.trainer.world_size
        use_down = self.hparams.downstream_weight > 0
        if use_down:   # the INR's outputs from x̂ against those from x: every head, every channel
            with torch.no_grad():
                y = self.readout.outputs_from(x).permute(1, 0, 2).flatten(1)
            y_hat = self.readout.outputs_from(out.x_hat).permute(1, 0, 2).flatten(1)
            dsse = ((y_hat - y) ** 2).sum()
        with torch.no_grad():
            # This shard's sums, all-reduced by name over the global batch (float64).
            sums = {"x": self.sae.normalized_sums(x), "e": self.sae.normalized_sums(x - out.x_hat),
                    "sse": sse.detach().double(), "aux": aux.detach().double(), "active": (out.vals > 0).sum().double(),
                    "fire": sae_metrics.fire_counts(out.vals, out.idx, self.sae.n_atoms)}
            if use_down:
                sums.update(y=spread_sums(y), dsse=dsse.detach().double())
            if world > 1:
                sums = reduce_by_name(sums, lambda t: self.trainer.strategy.reduce(t, reduce_op="sum"))
            spread_x = spread_from_sums(sums["x"], total).clamp_min(1e-30)
            spread_e = spread_from_sums(sums["e"], total).clamp_min(1e-30)
            spread_y = spread_from_sums(sums["y"], total).clamp_min(1e-30) if use_down else None
            if use_down:
                self.log("train/downstream_fvu", sums["dsse"] / spread_y)
            self.sae.update_dead(sums["fire"], total)
        terms = sae_loss_terms(sse, aux, spread_x, spread_e, self.hparams.aux_weight,
                               dsse if use_down else None, spread_y, self.hparams.downstream_weight, world)
        d = x.shape[-1]
        scale2 = float(scale) ** 2
        self.log("train/mse", sums["sse"] * scale2 / (total * d), prog_bar=True)   # in the original units
        self.log("train/fvu", sums["sse"] / spread_x)
        self.log("train/aux_mse", sums["aux"] * scale2 / (total * d))
        self.log("train/aux_loss", sums["aux"] / spread_e)
        self.log("train/l0", sums["active"] / total)
        self.log("train/dead_fraction_window", self.sae.dead_mask().float().mean())
        return terms["total"]

    def on_before_optimizer_step(self, optimizer) -> None:
        self.sae.project_decoder_grad()

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.sae.normalize_decoder()

    def configure_callbacks(self) -> list:
        return run_checkpoints(self)

    def configure_optimizers(self):
        others = [p for p in self.sae.parameters() if p is not self.sae.b_enc]
        bias = {"params": [self.sae.b_enc], "lr": self.lr * self.hparams.bias_lr_scale}
        opt = torch.optim.Adam([{"params": others}, bias], lr=self.lr)
        hp = self.hparams
        trainer = attached_trainer(self)
        total = int(trainer.max_steps) if trainer is not None and trainer.max_steps > 0 else 0
        if total <= 0 and trainer is not None:
            estimated = self.trainer.estimated_stepping_batches
            total = int(estimated) if math.isfinite(estimated) else 0
        if int(hp.warmup_steps) == 0 and (hp.decay == "none" or total <= 0):
            return opt
        args = (total, int(hp.warmup_steps), hp.decay, float(hp.decay_fraction))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, *args))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- evaluation -------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        if self._eval is not None:
            self._eval.reset()

    on_test_epoch_start = on_validation_epoch_start

    @torch.no_grad()
    def _evaluate_batch(self, batch: dict) -> None:
        if self.readout is None:
            raise InputError("SAEModule needs a readout to evaluate through (model.init_args.readout)")
        chunk = self.hparams.eval_chunk
        x, target = batch["x"], batch["target"]
        if self._eval is None:
            self._eval = SAEEvalSums(self.sae.d_in, self.sae.n_atoms, target.shape[0], self.hparams.dense_threshold)
        self._eval.to(self.device)
        sums = None
        sse_sae = torch.zeros(target.shape[0], dtype=torch.float64, device=self.device)
        sse_inr = torch.zeros_like(sse_sae)
        for start in range(0, x.shape[0], chunk):
            xc, tc = x[start:start + chunk], target[:, start:start + chunk]
            out = self.sae(xc)
            sums = sae_metrics.add_sums(sums, sae_metrics.batch_sums(xc, out.x_hat, out.vals, out.idx, self.sae.n_atoms))
            sse_sae += sae_metrics.sse_per_image(self.readout.outputs_from(out.x_hat), tc)
            sse_inr += sae_metrics.sse_per_image(self.readout.outputs_from(xc), tc)
        # An empty shard (more ranks than coordinates) adds nothing but the zeros of its errors.
        self._eval.update(sums or {}, sse_sae, sse_inr, float(batch["num_coords"] * target.shape[-1]))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate_batch(batch)

    test_step = validation_step

    def _log_evaluation(self) -> None:
        if self._eval is None or self._eval.update_count == 0:
            return
        metrics = self._eval.compute()   # reduced across ranks: every rank logs the same values
        for key, value in metrics.items():
            self.log(f"sae/{key}", value, prog_bar=key in ("fvu", "l0"))
        self._eval.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation()

    on_test_epoch_end = on_validation_epoch_end
