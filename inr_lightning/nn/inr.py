"""Cohort INRs: a shared coordinate encoder (SIREN or FFMLP) feeding one small head per signal.

Layer indexing used everywhere in the project: encoder layer ``j`` (0-based) is the j-th linear layer of
the encoder *with* its nonlinearity; "activations of layer j" are its post-nonlinearity outputs.  For the
FFMLP, the fixed Fourier-feature map is the input of layer 0, not a layer of its own.

Shapes: coordinates ``(P, 2)`` on [−1, 1]; encoder activations ``(n, P, width)`` with ``n = 1`` for a
shared encoder and ``n = N`` for N independent encoders; outputs ``(N, P, C)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from inr_lightning.errors import InputError
from inr_lightning.nn.layers import BatchedLinear, FourierFeatures, ReLULayer, SineLayer

BACKBONES = ("siren", "ffmlp")


def to_unit(x: Tensor) -> Tensor:
    """Network range [−1, 1] → images on [0, 1], clamped: the range every PSNR, SSIM and picture uses."""
    return ((x + 1) * 0.5).clamp(0, 1)


@dataclass
class INRConfig:
    """Architecture of a cohort INR.  Plain values only, so it round-trips through checkpoints and YAML.

    Attributes:
        backbone: ``siren`` or ``ffmlp``.
        width: hidden width of every layer.
        shared_layers: encoder layers shared by the cohort (STRAINER reference: 5).
        head_layers: layers per head; the last one is the linear output (reference: 1, a linear head).
        omega0_first: SIREN ω0 of the first layer.
        omega0_hidden: SIREN ω0 of the other layers.
        num_frequencies: FFMLP Fourier features m (γ has 2m entries).
        sigma: FFMLP scale of B ~ N(0, σ²), for coordinates on [0, 1) as in Tancik et al. (see FourierFeatures).
    """

    backbone: str = "siren"
    width: int = 256
    shared_layers: int = 5
    head_layers: int = 1
    omega0_first: float = 30.0
    omega0_hidden: float = 30.0
    num_frequencies: int = 256
    sigma: float = 10.0

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise InputError(f"unknown backbone {self.backbone!r}; expected one of: {', '.join(BACKBONES)}")
        for name in ("width", "shared_layers", "head_layers", "num_frequencies"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.sigma > 0 or not self.omega0_first > 0 or not self.omega0_hidden > 0:
            raise InputError("sigma, omega0_first and omega0_hidden must be positive numbers")

    def to_dict(self) -> dict:
        return asdict(self)


class Encoder(nn.Module):
    """``shared_layers`` coordinate layers, ``copies`` independent copies of them evaluated as one."""

    def __init__(self, cfg: INRConfig, copies: int = 1, in_features: int = 2) -> None:
        super().__init__()
        self.cfg, self.copies = cfg, copies
        layers: list[nn.Module] = []
        if cfg.backbone == "siren":
            self.features: nn.Module = nn.Identity()
            for j in range(cfg.shared_layers):
                fan_in = in_features if j == 0 else cfg.width
                omega = cfg.omega0_first if j == 0 else cfg.omega0_hidden
                layers.append(SineLayer(copies, fan_in, cfg.width, omega, is_first=j == 0))
        else:
            self.features = FourierFeatures(in_features, cfg.num_frequencies, cfg.sigma)
            for j in range(cfg.shared_layers):
                fan_in = self.features.out_features if j == 0 else cfg.width
                layers.append(ReLULayer(copies, fan_in, cfg.width))
        self.layers = nn.ModuleList(layers)

    def __len__(self) -> int:
        return len(self.layers)

    def linear(self, j: int) -> BatchedLinear:
        """The linear map of encoder layer ``j`` (what stable rank and freezing act on)."""
        return self.layers[j].linear

    def forward(self, x: Tensor, start: int = 0, stop: int | None = None) -> Tensor:
        """Run layers ``start .. stop-1``.  ``x``: coordinates ``(B, P, 2)`` if ``start == 0``, else the
        activations of layer ``start - 1``."""
        if start == 0:
            x = self.features(x)
        for layer in self.layers[start:stop]:
            x = layer(x)
        return x


class Heads(nn.Module):
    """One small MLP per signal: ``head_layers − 1`` hidden layers, then a linear output, all batched."""

    def __init__(self, cfg: INRConfig, num_signals: int, out_channels: int) -> None:
        super().__init__()
        hidden: list[nn.Module] = []
        for _ in range(cfg.head_layers - 1):
            if cfg.backbone == "siren":
                hidden.append(SineLayer(num_signals, cfg.width, cfg.width, cfg.omega0_hidden, is_first=False))
            else:
                hidden.append(ReLULayer(num_signals, cfg.width, cfg.width))
        self.hidden = nn.ModuleList(hidden)
        self.out = BatchedLinear(num_signals, cfg.width, out_channels)
        if cfg.backbone == "siren":  # SIREN's last linear layer uses the hidden bound (Sitzmann et al.)
            bound = (6.0 / cfg.width) ** 0.5 / cfg.omega0_hidden
            with torch.no_grad():
                self.out.weight.uniform_(-bound, bound)

    def forward(self, h: Tensor) -> Tensor:
        for layer in self.hidden:
            h = layer(h)
        return self.out(h)


class CohortINR(nn.Module):
    """Encoder + heads.  ``encoder_copies = 1``: a STRAINER cohort (one encoder shared by all heads);
    ``encoder_copies = num_signals``: independent INRs fitted side by side (one encoder per head)."""

    def __init__(self, cfg: INRConfig, num_signals: int, out_channels: int, encoder_copies: int = 1) -> None:
        super().__init__()
        if encoder_copies not in (1, num_signals):
            raise InputError(f"encoder_copies must be 1 or num_signals={num_signals}, got {encoder_copies}")
        self.cfg, self.num_signals, self.out_channels = cfg, num_signals, out_channels
        self.encoder = Encoder(cfg, copies=encoder_copies)
        self.heads = Heads(cfg, num_signals, out_channels)

    def forward(self, coords: Tensor) -> Tensor:
        """``coords (P, 2)`` → ``(N, P, C)``."""
        return self.heads(self.encoder(coords.unsqueeze(0)))

    def forward_from(self, h: Tensor, layer: int) -> Tensor:
        """Continue from the activations ``h`` of encoder layer ``layer`` (e.g. an SAE reconstruction)."""
        return self.heads(self.encoder(h, start=layer + 1))

    def activations(self, coords: Tensor) -> list[Tensor]:
        """Post-nonlinearity activations of every encoder layer, each ``(n, P, width)``."""
        h, out = self.encoder.features(coords.unsqueeze(0)), []
        for layer in self.encoder.layers:
            h = layer(h)
            out.append(h)
        return out
