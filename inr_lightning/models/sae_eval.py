"""The SAE's full-grid evaluation as a ``torchmetrics.Metric``: float64 sums, each reduced by name across ranks
(``dist_reduce_fx="sum"``), turned into metrics by ``analysis.sae_metrics``."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from inr_lightning.analysis import sae_metrics

SCALAR_SUMS = ("n", "sum_sq", "sse", "l0", "cos", "xhat_sq", "x_dot_xhat")


class SAEEvalSums(Metric):
    """Sums of ``sae_metrics.batch_sums`` over the evaluated chunks (``sum_x (d_in,)``, ``fire (n_atoms,)``, the
    scalars), and per cohort image the squared errors of the outputs through the SAE (``sse_sae``) and through
    the INR (``sse_inr``), ``(num_images,)``.  ``compute()`` = ``sae_metrics.metrics_from_sums`` (FVU, L0, dead
    and dense fractions, cosine, relative bias) plus ``psnr``, ``inr_psnr`` and ``psnr_drop`` (means over the
    images; ``values_per_image`` values per image on the full grid, given to ``update``)."""

    full_state_update = False

    def __init__(self, d_in: int, n_atoms: int, num_images: int, dense_threshold: float = 0.1) -> None:
        super().__init__()
        self.n_atoms, self.dense_threshold = int(n_atoms), float(dense_threshold)
        self.values_per_image: float | None = None
        f64 = torch.float64
        for key in SCALAR_SUMS:
            self.add_state(key, default=torch.zeros((), dtype=f64), dist_reduce_fx="sum")
        self.add_state("sum_x", default=torch.zeros(int(d_in), dtype=f64), dist_reduce_fx="sum")
        self.add_state("fire", default=torch.zeros(self.n_atoms, dtype=f64), dist_reduce_fx="sum")
        self.add_state("sse_sae", default=torch.zeros(int(num_images), dtype=f64), dist_reduce_fx="sum")
        self.add_state("sse_inr", default=torch.zeros(int(num_images), dtype=f64), dist_reduce_fx="sum")

    def update(self, sums: dict[str, Tensor], sse_sae: Tensor, sse_inr: Tensor, values_per_image: float) -> None:
        """``sums``: ``sae_metrics.batch_sums`` of a chunk (or their sum); ``sse_*``: ``(num_images,)``."""
        for key, value in sums.items():
            setattr(self, key, getattr(self, key) + value)
        self.sse_sae = self.sse_sae + sse_sae
        self.sse_inr = self.sse_inr + sse_inr
        self.values_per_image = float(values_per_image)

    def sums(self) -> dict[str, Tensor]:
        """The states by name (as ``sae_metrics.SUM_KEYS`` and ``sse_sae``/``sse_inr``)."""
        return {key: getattr(self, key) for key in (*sae_metrics.SUM_KEYS, "sse_sae", "sse_inr")}

    def compute(self) -> dict[str, float]:
        s = self.sums()
        metrics = sae_metrics.metrics_from_sums(s, self.dense_threshold)
        if self.values_per_image is not None:
            psnr_sae = sae_metrics.psnr_from_sse(s["sse_sae"], self.values_per_image)
            psnr_inr = sae_metrics.psnr_from_sse(s["sse_inr"], self.values_per_image)
            metrics.update(psnr=float(psnr_sae.mean()), inr_psnr=float(psnr_inr.mean()),
                           psnr_drop=float((psnr_inr - psnr_sae).mean()))
        return metrics
