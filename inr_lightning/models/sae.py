"""SAEModule: a TopK SAE on one encoder layer's activations of a frozen cohort INR.

The data module (``ActivationDataModule``) owns the frozen INR and serves activations; this module owns the
SAE only (its checkpoint holds nothing else).  The SAE's input width is read from the data module at
``setup`` and stored as the hyper-parameter ``d_in``.

Loss (as in Gao et al. 2024), on inputs divided by the SAE's ``input_scale`` (their mean norm):
Σ‖x − x̂‖² / Σ‖x − x̄‖² + aux_weight · AuxK / Σ‖e − ē‖², each sum over the global batch, e the residual the
dead atoms reconstruct; with ``downstream_weight`` w > 0, plus w · Σ‖f(x̂) − f(x)‖² / Σ‖f(x) − f̄‖², f the frozen
INR from the layer on (remaining layers and every head): the error of the outputs the SAE is spliced into
(end-to-end SAE training, Braun et al. 2024, here beside the local loss).  The denominators are all-reduced and
the loss is scaled by the world size, so DDP's gradient average equals the single-process gradient on the union
of the shards exactly.

Learning rate: linear warm-up over ``warmup_steps``, then constant, then a decay to 0 (``decay``: linear or
cosine) over the last ``decay_fraction`` of ``trainer.max_steps``.

Curves: every training step's batch FVU and every evaluation's FVU and dead fraction are kept (and
checkpointed); ``<run>/sae_curves.png`` and ``<run>/sae_curves.csv`` are rewritten at each evaluation and at
the end of training.

Evaluation (validation/test) runs over the full grid, each rank on its shard, with float64 sums and
per-atom fire counts all-reduced across ranks: ``sae/fvu``, ``sae/explained_variance``, ``sae/l0``,
``sae/dead_fraction``, ``sae/dense_fraction``, ``sae/cosine``, ``sae/rel_bias``, ``sae/psnr`` (x̂ spliced in at
the layer, remaining layers and every head, mean over cohort images), ``sae/inr_psnr`` and ``sae/psnr_drop``.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from inr_lightning.analysis import sae_metrics
from inr_lightning.contracts import ActivationBatches, ActivationData
from inr_lightning.errors import InputError
from inr_lightning.models.base import check_lr
from inr_lightning.nn.sae import B_PRE_INITS, TopKSAE, spread_from_sums, spread_sums

SAE_TYPES = ("topk",)
# train_*: one entry per training step; the others one per evaluation (seconds: wall-clock since the fit started)
CURVE_KEYS = ("train_step", "train_fvu", "step", "seconds", "fvu", "dead_fraction")
DECAYS = ("none", "linear", "cosine")
DECODER_INITS = ("random", "data")


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
        n_atoms: dictionary size (4096).
        k: active atoms per coordinate (32).
        lr: Adam learning rate; ``None`` = ``lr_base``/√(n_atoms/2¹⁴), the reference's scaling with the
            dictionary size.
        lr_base: the rate that rule gives 2¹⁴ atoms (reference: 2e-4).
        warmup_steps: linear learning-rate warm-up.
        decay: learning-rate decay at the end of training: ``none``, ``linear`` or ``cosine`` (to 0).
        decay_fraction: share of ``trainer.max_steps`` (the last ones) over which the rate decays.
        k_aux: dead atoms used by AuxK; ``None`` = d_in / 2.
        aux_weight: weight of the AuxK loss (1/32), normalised by the residual's spread; 0 turns it off.
        dead_window: samples without firing after which an atom counts as dead (for AuxK).
        b_pre_init: ``median`` (geometric), ``mean`` or ``zero``.
        decoder_init: ``random`` unit rows, or ``data``: rows = centred, normalised activations drawn from the
            ``init_samples`` (``TopKSAE.init_decoder_from_data``).
        encoder_input: ``centred`` (x/s − b_pre, the reference) or ``whitened``: the encoder reads the inputs
            ZCA-whitened on the ``init_samples`` (``TopKSAE.init_encoder_whitener``); decoder and loss unchanged.
        whiten_eps: the whitening's regulariser, relative to the largest variance.
        downstream_weight: weight of the downstream term (the INR's outputs from x̂ against those from x, as an
            FVU); 0 = the local loss alone (the reference).
        bias_lr_scale: the encoder bias b_enc learns at ``lr`` × this, every other parameter at ``lr``.
        init_samples: activations sampled for ``b_pre`` and the input scale (mean input norm).
        dense_threshold: an atom firing on more than this share of the grid is *dense*.
        eval_chunk: coordinates per pass during evaluation.
        sae_type: ``topk`` (the only one so far).
        init_seed: seed of the SAE's initialisation (independent of what else used the global RNG before).
        d_in: input width; ``None`` = read from the data module (then saved in the checkpoint).
    """

    checkpoint_monitor = ("sae/fvu", "min")

    def __init__(self, n_atoms: int = 4096, k: int = 32, lr: float | None = None, lr_base: float = 2e-4,
                 warmup_steps: int = 100,
                 decay: str = "linear", decay_fraction: float = 0.2,
                 k_aux: int | None = None, aux_weight: float = 1 / 32, dead_window: int = 1_000_000,
                 b_pre_init: str = "median", decoder_init: str = "random", encoder_input: str = "centred",
                 whiten_eps: float = 1e-4, downstream_weight: float = 0.0, bias_lr_scale: float = 1.0,
                 init_samples: int = 16384,
                 dense_threshold: float = 0.1,
                 eval_chunk: int = 16384, sae_type: str = "topk", init_seed: int = 0, d_in: int | None = None) -> None:
        super().__init__()
        if sae_type not in SAE_TYPES:
            raise InputError(f"unknown SAE type {sae_type!r}; expected one of: {', '.join(SAE_TYPES)}")
        if not 1 <= int(k) <= int(n_atoms):
            raise InputError(f"k={k!r} must be between 1 and n_atoms={n_atoms!r}")
        if b_pre_init not in B_PRE_INITS:
            raise InputError(f"b_pre_init must be one of {', '.join(B_PRE_INITS)}, got {b_pre_init!r}")
        if not aux_weight >= 0 or int(warmup_steps) < 0 or int(init_samples) < 1 or int(eval_chunk) < 1:
            raise InputError("aux_weight and warmup_steps must be ≥ 0, init_samples and eval_chunk ≥ 1")
        if decoder_init not in DECODER_INITS:
            raise InputError(f"decoder_init must be one of {', '.join(DECODER_INITS)}, got {decoder_init!r}")
        if not whiten_eps > 0:
            raise InputError(f"whiten_eps must be > 0, got {whiten_eps!r}")
        if not downstream_weight >= 0:
            raise InputError(f"downstream_weight must be ≥ 0, got {downstream_weight!r}")
        if not bias_lr_scale > 0:
            raise InputError(f"bias_lr_scale must be > 0, got {bias_lr_scale!r}")
        if decay not in DECAYS:
            raise InputError(f"decay must be one of {', '.join(DECAYS)}, got {decay!r}")
        if not 0 <= decay_fraction <= 1:
            raise InputError(f"decay_fraction must be between 0 and 1, got {decay_fraction!r}")
        if int(n_atoms) < 1:
            raise InputError(f"n_atoms must be ≥ 1, got {n_atoms!r}")
        self.lr = check_lr(check_lr(lr_base) / math.sqrt(int(n_atoms) / 2 ** 14) if lr is None else lr)
        self.save_hyperparameters()
        # With d_in unknown the SAE's parameters stay uninitialised until ``setup`` reads the width from the
        # data; they exist from here on, so an optimizer the CLI builds before ``setup`` can hold them.
        self.sae = TopKSAE(d_in, n_atoms, k, k_aux, dead_window, seed=init_seed, encoder_input=encoder_input)
        self.summary_extra: dict = {"sae/lr": self.lr}
        self.curves: dict[str, list] = {key: [] for key in CURVE_KEYS}
        self._sums: dict | None = None
        self._values = 0.0
        self._clock: float | None = None   # wall-clock start of this fit (curves' "seconds" column)
        self.title = f"SAE, {n_atoms} atoms, k = {k}"   # names the data once ``setup`` has seen it

    def setup(self, stage: str) -> None:
        """Sizes the SAE from its data (``contracts.ActivationData``: what this module reads from it)."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        if not isinstance(dm, ActivationBatches):
            raise InputError(f"SAEModule needs activation data (contracts.ActivationBatches, e.g. data.class_path: "
                             f"inr_lightning.data.ActivationDataModule), got {type(dm).__name__}")
        if self.hparams.downstream_weight > 0 and not isinstance(dm, ActivationData):
            raise InputError(f"downstream_weight={self.hparams.downstream_weight!r} needs the frozen INR beside the "
                             f"activations (contracts.ActivationData, e.g. ActivationDataModule); "
                             f"{type(dm).__name__} has none: set downstream_weight: 0")
        self.sae.materialize(int(dm.d_in))
        self.hparams["d_in"] = int(dm.d_in)  # saved with the checkpoint: the SAE can be rebuilt without the data
        where = dm.describe() if isinstance(dm, ActivationData) else "SAE"
        self.title = f"{where}, {self.sae.n_atoms} atoms, k = {self.sae.k}"

    # -- training ---------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self._clock = time.perf_counter()
        if not bool(self.sae.initialized):  # fresh run (a resumed run restores s and b_pre from its checkpoint)
            sample = self.trainer.datamodule.init_sample(self.hparams.init_samples, self.device)
            self.sae.init_input_scale(sample)
            self.sae.init_b_pre(sample, self.hparams.b_pre_init)
            self.sae.init_encoder_whitener(sample, self.hparams.whiten_eps)
            if self.hparams.decoder_init == "data":
                gen = torch.Generator().manual_seed(int(self.hparams.init_seed))
                self.sae.init_decoder_from_data(sample, gen)
        self.summary_extra["sae/input_scale"] = float(self.sae.input_scale)

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
            dm = self.trainer.datamodule
            net, layer = dm.net.to(x.device), dm.layer
            with torch.no_grad():
                y = net.forward_from(x.unsqueeze(0), layer).permute(1, 0, 2).flatten(1)
            y_hat = net.forward_from(out.x_hat.unsqueeze(0), layer).permute(1, 0, 2).flatten(1)
            dsse = ((y_hat - y) ** 2).sum()
        with torch.no_grad():
            counts = sae_metrics.fire_counts(out.vals, out.idx, self.sae.n_atoms)
            down = [spread_sums(y), dsse.detach().double().reshape(1)] if use_down else []
            sums = torch.cat([self.sae.normalized_sums(x), self.sae.normalized_sums(x - out.x_hat),
                              torch.stack([sse.detach().double(), aux.detach().double(),
                                           (out.vals > 0).sum().double()]), *down])
            if world > 1:
                counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
                sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
            d = x.shape[-1]
            spread_x = spread_from_sums(sums[:d + 1], total).clamp_min(1e-30)
            spread_e = spread_from_sums(sums[d + 1:2 * d + 2], total).clamp_min(1e-30)
            sse_all, aux_all, active = sums[2 * d + 2:2 * d + 5]
            if use_down:
                spread_y = spread_from_sums(sums[2 * d + 5:-1], total).clamp_min(1e-30)
                self.log("train/downstream_fvu", sums[-1] / spread_y)
            self.sae.update_dead(counts, total)
        loss = sse / spread_x.to(sse.dtype) + self.hparams.aux_weight * aux / spread_e.to(sse.dtype)
        if use_down:
            loss = loss + self.hparams.downstream_weight * dsse / spread_y.to(sse.dtype)
        loss = loss * world
        scale2 = float(scale) ** 2
        fvu = sse_all / spread_x
        self.log("train/mse", sse_all * scale2 / (total * d), prog_bar=True)   # in the original units
        self.log("train/fvu", fvu)
        self.log("train/aux_mse", aux_all * scale2 / (total * d))
        self.log("train/aux_loss", aux_all / spread_e)
        self.log("train/l0", active / total)
        self.log("train/dead_fraction_window", self.sae.dead_mask().float().mean())
        self.curves["train_step"].append(int(self.global_step))
        self.curves["train_fvu"].append(float(fvu))
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        self.sae.project_decoder_grad()

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.sae.normalize_decoder()

    def configure_optimizers(self):
        others = [p for p in self.sae.parameters() if p is not self.sae.b_enc]
        bias = {"params": [self.sae.b_enc], "lr": self.lr * self.hparams.bias_lr_scale}
        opt = torch.optim.Adam([{"params": others}, bias], lr=self.lr)
        hp = self.hparams
        total = int(self.trainer.max_steps) if self._trainer is not None and self.trainer.max_steps > 0 else 0
        if total <= 0 and self._trainer is not None:
            estimated = self.trainer.estimated_stepping_batches
            total = int(estimated) if math.isfinite(estimated) else 0
        if int(hp.warmup_steps) == 0 and (hp.decay == "none" or total <= 0):
            return opt
        args = (total, int(hp.warmup_steps), hp.decay, float(hp.decay_fraction))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, *args))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- curves -----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["sae_curves"] = {key: list(values) for key, values in self.curves.items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("sae_curves") or {}
        self.curves = {key: list(saved.get(key, [])) for key in CURVE_KEYS}

    def write_curves(self) -> None:
        """``<run>/sae_curves.png`` and ``.csv`` (rank 0): FVU (training batches and full-grid evaluations,
        log scale) and the dead fraction on the grid, against the step."""
        if self._trainer is None or not self.trainer.is_global_zero or not self.curves["train_step"]:
            return
        run = Path(self.trainer.default_root_dir)
        run.mkdir(parents=True, exist_ok=True)
        with open(run / "sae_curves.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "seconds", "fvu", "dead_fraction"])
            w.writerows(zip(*(self.curves[key] for key in ("step", "seconds", "fvu", "dead_fraction"))))
        from inr_lightning.callbacks.atoms import plot_curves

        plot_curves(run / "sae_curves.png", self.curves, title=self.title)

    # -- evaluation -------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._sums = None

    on_test_epoch_start = on_validation_epoch_start

    @torch.no_grad()
    def _evaluate_batch(self, batch: dict) -> None:
        dm = self.trainer.datamodule
        net, layer, chunk = dm.net.to(self.device), dm.layer, self.hparams.eval_chunk
        x, target = batch["x"], batch["target"]
        sums = None
        sse_sae = torch.zeros(target.shape[0], dtype=torch.float64, device=self.device)
        sse_inr = torch.zeros_like(sse_sae)
        for start in range(0, x.shape[0], chunk):
            xc, tc = x[start:start + chunk], target[:, start:start + chunk]
            out = self.sae(xc)
            sums = sae_metrics.add_sums(sums, sae_metrics.batch_sums(xc, out.x_hat, out.vals, out.idx, self.sae.n_atoms))
            sse_sae += sae_metrics.sse_per_image(net.forward_from(out.x_hat.unsqueeze(0), layer), tc)
            sse_inr += sae_metrics.sse_per_image(net.forward_from(xc.unsqueeze(0), layer), tc)
        if sums is None:  # an empty shard (more ranks than coordinates)
            zero = torch.zeros((), dtype=torch.float64, device=self.device)
            sums = {"n": zero, "sum_x": torch.zeros(self.sae.d_in, dtype=torch.float64, device=self.device),
                    **{key: zero for key in ("sum_sq", "sse", "l0", "cos", "xhat_sq", "x_dot_xhat")},
                    "fire": torch.zeros(self.sae.n_atoms, dtype=torch.float64, device=self.device)}
        sums["sse_sae"], sums["sse_inr"] = sse_sae, sse_inr
        self._sums = sae_metrics.add_sums(self._sums, sums)
        self._values = float(batch["num_coords"] * target.shape[-1])  # values per image on the full grid

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate_batch(batch)

    test_step = validation_step

    def _log_evaluation(self) -> None:
        if self._sums is None:
            return
        values = self._values
        sums = {key: (self.trainer.strategy.reduce(v, reduce_op="sum") if self.trainer.world_size > 1 else v)
                for key, v in self._sums.items()}
        metrics = sae_metrics.metrics_from_sums(sums, self.hparams.dense_threshold)
        psnr_sae = sae_metrics.psnr_from_sse(sums["sse_sae"], values)
        psnr_inr = sae_metrics.psnr_from_sse(sums["sse_inr"], values)
        metrics.update(psnr=float(psnr_sae.mean()), inr_psnr=float(psnr_inr.mean()),
                       psnr_drop=float((psnr_inr - psnr_sae).mean()))
        # Every rank holds the same all-reduced values: no further sync needed.
        for key, value in metrics.items():
            self.log(f"sae/{key}", value, prog_bar=key in ("fvu", "l0"))
        self._sums = None
        if self.trainer.state.fn == "fit" and (not self.curves["step"] or self.curves["step"][-1] != self.global_step):
            self.curves["step"].append(int(self.global_step))
            elapsed = time.perf_counter() - self._clock if self._clock is not None else math.nan
            self.curves["seconds"].append(round(elapsed, 3))
            self.curves["fvu"].append(metrics["fvu"])
            self.curves["dead_fraction"].append(metrics["dead_fraction"])
            if not self.trainer.sanity_checking:
                self.write_curves()

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation()

    on_test_epoch_end = on_validation_epoch_end

    def on_train_end(self) -> None:
        self.write_curves()
