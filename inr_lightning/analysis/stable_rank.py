"""Exact weight stable rank, srank(W) = ‖W‖²_F / ‖W‖²₂ = Σσᵢ² / σ₁² (between 1 and rank W).

Exact on purpose: a few steps of power iteration underestimate σ₁ and overestimate the stable rank,
enough to move the argmax that picks the freeze depth.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def stable_rank(weight: Tensor) -> float | Tensor:
    """Stable rank of a matrix ``(out, in)``, or of each matrix of a stack ``(n, out, in)`` (a tensor of n).

    Computed in float64 on a detached CPU copy, so it never touches autograd or the training dtype.
    """
    w = weight.detach().to("cpu", torch.float64)
    s = torch.linalg.svdvals(w)
    ranks = (s**2).sum(-1) / s[..., 0] ** 2
    return float(ranks) if w.dim() == 2 else ranks
