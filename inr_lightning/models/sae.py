"""SAEModule: a TopK SAE on one encoder layer's activations of a frozen cohort INR.

The data module (``ActivationDataModule``) owns the frozen INR and serves activations; this module owns the
SAE only (its checkpoint holds nothing else).  The SAE's input width is read from the data module at
``setup`` and stored as the hyper-parameter ``d_in``.

Loss: Σ_local ‖x − x̂‖² + aux_weight · AuxK, divided by (global batch · d_in) and scaled by the world size,
so DDP's gradient average equals the single-process gradient on the union of the shards exactly.

Evaluation (validation/test) runs over the full grid, each rank on its shard, with float64 sums and
per-atom fire counts all-reduced across ranks: ``sae/fvu``, ``sae/explained_variance``, ``sae/l0``,
``sae/dead_fraction``, ``sae/dense_fraction``, ``sae/cosine``, ``sae/rel_bias``, ``sae/psnr`` (x̂ spliced in at
the layer, remaining layers and every head, mean over cohort images), ``sae/inr_psnr`` and ``sae/psnr_drop``.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from inr_lightning.analysis import sae_metrics
from inr_lightning.errors import InputError
from inr_lightning.models.base import check_lr
from inr_lightning.nn.sae import B_PRE_INITS, TopKSAE

SAE_TYPES = ("topk",)


class SAEModule(L.LightningModule):
    """Trains a TopK SAE on ``ActivationDataModule`` batches.

    Args:
        n_atoms: dictionary size (4096).
        k: active atoms per coordinate (32).
        lr: Adam learning rate (2e-4/√(n_atoms/2¹⁴) = 4e-4 for 4096 atoms).
        warmup_steps: linear learning-rate warm-up.
        k_aux: dead atoms used by AuxK; ``None`` = d_in / 2.
        aux_weight: weight of the AuxK loss (1/32); 0 turns it off.
        dead_window: samples without firing after which an atom counts as dead (for AuxK).
        b_pre_init: ``median`` (geometric), ``mean`` or ``zero``.
        init_samples: activations sampled for ``b_pre``.
        dense_threshold: an atom firing on more than this share of the grid is *dense*.
        eval_chunk: coordinates per pass during evaluation.
        sae_type: ``topk`` (the only one so far).
        init_seed: seed of the SAE's initialisation (independent of what else used the global RNG before).
        d_in: input width; ``None`` = read from the data module (then saved in the checkpoint).
    """

    checkpoint_monitor = ("sae/fvu", "min")

    def __init__(self, n_atoms: int = 4096, k: int = 32, lr: float = 4e-4, warmup_steps: int = 100,
                 k_aux: int | None = None, aux_weight: float = 1 / 32, dead_window: int = 1_000_000,
                 b_pre_init: str = "median", init_samples: int = 16384, dense_threshold: float = 0.1,
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
        self.lr = check_lr(lr)
        self.save_hyperparameters()
        # With d_in unknown the SAE's parameters stay uninitialised until ``setup`` reads the width from the
        # data; they exist from here on, so an optimizer the CLI builds before ``setup`` can hold them.
        self.sae = TopKSAE(d_in, n_atoms, k, k_aux, dead_window, seed=init_seed)
        self.summary_extra: dict = {}
        self.last_fire_counts: Tensor | None = None   # per-atom fire counts on the full grid (latest evaluation)
        self._sums: dict | None = None
        self._values = 0.0

    def setup(self, stage: str) -> None:
        d_in = getattr(self.trainer.datamodule, "d_in", None) if self._trainer is not None else None
        if d_in is None:
            if self.sae.d_in is None:
                raise InputError("SAEModule needs an ActivationDataModule (data.class_path: "
                                 "inr_lightning.data.ActivationDataModule) or model.init_args.d_in")
            return
        self.sae.materialize(int(d_in))
        self.hparams["d_in"] = int(d_in)  # saved with the checkpoint: the SAE can be rebuilt without the data

    # -- training ---------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if not bool(self.sae.initialized):  # fresh run (a resumed run restores b_pre from its checkpoint)
            sample = self.trainer.datamodule.init_sample(self.hparams.init_samples, self.device)
            self.sae.init_b_pre(sample, self.hparams.b_pre_init)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        x, total = batch["x"], int(batch["num_samples"])
        out = self.sae(x)
        sse = ((out.x_hat - x) ** 2).sum()
        aux = self.sae.aux_sse(x, out.x_hat, out.pre) if self.hparams.aux_weight > 0 else sse.new_zeros(())
        world = self.trainer.world_size
        loss = (sse + self.hparams.aux_weight * aux) / (total * x.shape[-1]) * world
        with torch.no_grad():
            counts = sae_metrics.fire_counts(out.vals, out.idx, self.sae.n_atoms)
            stats = torch.stack([sse.detach().double(), aux.detach().double(), (out.vals > 0).sum().double()])
            if world > 1:
                counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
                stats = self.trainer.strategy.reduce(stats, reduce_op="sum")
            self.sae.update_dead(counts, total)
        self.log("train/mse", stats[0] / (total * x.shape[-1]), prog_bar=True)
        self.log("train/aux_mse", stats[1] / (total * x.shape[-1]))
        self.log("train/l0", stats[2] / total)
        self.log("train/dead_fraction_window", self.sae.dead_mask().float().mean())
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        self.sae.project_decoder_grad()

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.sae.normalize_decoder()

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.sae.parameters(), lr=self.lr)
        warmup = int(self.hparams.warmup_steps)
        if warmup == 0:
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

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
        self.last_fire_counts = sums["fire"].cpu()
        self._sums = None

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation()

    on_test_epoch_end = on_validation_epoch_end
