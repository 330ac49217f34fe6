"""What an SAE reads from a frozen cohort INR, as plain objects (no Lightning).

``LayerReadout(net, layer)``: the frozen network split at encoder layer ``layer`` (``activations``: coordinates
→ ``(P, width)``; ``outputs_from``: activations → ``(N, P, C)``; ``sample``: the initialisation sample).  Not an
``nn.Module``, so the ``SAEModule`` holding it checkpoints the SAE alone.  ``SampledActivations(x)``: activations
one already has, with no network behind them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Sampler = Callable[[int, "torch.device | str"], Tensor]


class SampledActivations:
    """Activations ``x (P, width)`` given as a tensor: ``sample(n)`` = the first ``n`` rows."""

    def __init__(self, x: Tensor) -> None:
        self.x = x
        self.width = int(x.shape[-1])

    def sample(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        return self.x[:n].to(device)

    def describe(self) -> str:
        return "SAE"


class LayerReadout:
    """The frozen ``CohortINR`` ``net`` read at encoder layer ``layer`` (0-based, post-nonlinearity).

    Args:
        net: the cohort network; frozen here (``eval``, ``requires_grad_(False)``).
        layer: the encoder layer.
        chunk: coordinates per forward pass in ``activations``.
        sampler: ``(n, device) → (≤ n, width)``, the initialisation sample (``sample``); ``None``: ``sample``
            fails (an SAE then needs its initialisation sample from elsewhere).
        encoder: ``cohort`` or ``untrained`` (the layers up to ``layer`` kept at their random initialisation),
            named by ``describe``.
    """

    def __init__(self, net, layer: int, chunk: int = 65536, sampler: Sampler | None = None,
                 encoder: str = "cohort") -> None:
        self.net = net.eval().requires_grad_(False)
        self.layer, self.chunk, self.encoder = int(layer), int(chunk), encoder
        self._sampler = sampler

    # -- facts ------------------------------------------------------------------------------------
    @property
    def width(self) -> int:
        return int(self.net.cfg.width)

    @property
    def backbone(self) -> str:
        return str(self.net.cfg.backbone)

    @property
    def num_signals(self) -> int:
        return int(self.net.num_signals)

    def describe(self) -> str:
        """``SIREN layer 2 (cohort encoder)``: what a figure title names."""
        return f"{self.backbone.upper()} layer {self.layer} ({self.encoder} encoder)"

    def to(self, device: torch.device | str) -> LayerReadout:
        self.net.to(device)
        return self

    # -- reading ----------------------------------------------------------------------------------
    @torch.no_grad()
    def activations(self, coords: Tensor) -> Tensor:
        """``(P, 2)`` → ``(P, width)`` activations of ``layer``, on ``coords``' device, in chunks."""
        self.net.to(coords.device)
        out = [self.net.encoder(c.unsqueeze(0), stop=self.layer + 1)[0] for c in coords.split(self.chunk)]
        return torch.cat(out) if out else coords.new_zeros(0, self.width)

    def outputs_from(self, x: Tensor) -> Tensor:
        """``(P, width)`` activations of ``layer`` → ``(N, P, C)``: the remaining layers and every head (with
        autograd: the SAE's downstream term backpropagates through it into x)."""
        self.net.to(x.device)
        return self.net.forward_from(x.unsqueeze(0), self.layer)

    def sample(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        """A deterministic sample of ≤ ``n`` activations from the training distribution (same on every rank)."""
        if self._sampler is None:
            raise ValueError("this LayerReadout has no sampler: build it with sampler=… (ActivationDataModule does)")
        return self._sampler(n, device)
