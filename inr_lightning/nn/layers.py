"""Building blocks of coordinate MLPs: batched linear layers, sine and ReLU layers, Fourier features.

Every weight carries a leading *copies* dimension ``n``: ``n = 1`` for one shared network (a cohort
encoder), ``n = N`` for N independent networks evaluated as one (the N heads of a cohort, or the N
encoders of a batched fit).  One weight tensor per layer means one GEMM per layer instead of a Python
loop over N modules.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from inr_lightning.nn.fused import sine_linear


class BatchedLinear(nn.Module):
    """``n`` independent linear maps ``in_features → out_features`` stored as one ``(n, out, in)`` tensor.

    Input ``(B, P, in)`` with ``B`` either 1 (one input shared by all copies) or ``n`` (one input per copy);
    output ``(n, P, out)``.
    """

    def __init__(self, copies: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.copies, self.in_features, self.out_features = copies, in_features, out_features
        self.weight = nn.Parameter(torch.empty(copies, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(copies, 1, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default (kaiming_uniform with a=√5) is U(±1/√in) for weight and bias alike.
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        n, b = self.copies, x.shape[0]
        if n == 1:
            # view, not weight[0]: the backward of a view is free, that of a select allocates and copies
            return torch.nn.functional.linear(x, self.weight.view(self.out_features, self.in_features),
                                              self.bias.view(self.out_features))
        if b == n:
            return torch.baddbmm(self.bias, x, self.weight.transpose(1, 2))
        if b != 1:
            raise ValueError(f"input has {b} copies; expected 1 or {n}")
        # One shared input for n maps: a single (P, in) × (in, n·out) GEMM, no expanded copy of x.
        # squeeze, not x[0]: the backward of a select allocates a zero tensor and copies into it
        p = x.shape[1]
        y = x.squeeze(0) @ self.weight.reshape(n * self.out_features, self.in_features).T
        return y.view(p, n, self.out_features).transpose(0, 1) + self.bias

    def extra_repr(self) -> str:
        return f"copies={self.copies}, in_features={self.in_features}, out_features={self.out_features}"


class SineLayer(nn.Module):
    """SIREN layer ``sin(ω0 · (W x + b))`` with the initialisation of Sitzmann et al. (2020)."""

    def __init__(self, copies: int, in_features: int, out_features: int, omega0: float, is_first: bool) -> None:
        super().__init__()
        self.omega0, self.is_first = omega0, is_first
        self.linear = BatchedLinear(copies, in_features, out_features)
        bound = 1.0 / in_features if is_first else math.sqrt(6.0 / in_features) / omega0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        # Eager: the hand-fused node (nn/fused.py says why).  Under torch.compile: plain ops, which inductor
        # fuses into its own kernels (an opaque autograd.Function would stop it).
        if not torch.compiler.is_compiling():
            fused = sine_linear(x, self.linear.weight, self.linear.bias, self.omega0)
            if fused is not None:
                return fused
        return torch.sin(self.omega0 * self.linear(x))


class ReLULayer(nn.Module):
    """Linear + ReLU with PyTorch's default initialisation (the FFMLP hidden layer)."""

    def __init__(self, copies: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = BatchedLinear(copies, in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.linear(x))


class FourierFeatures(nn.Module):
    """γ(x) = [sin(2π B x'), cos(2π B x')] with a fixed Gaussian ``B ~ N(0, σ²)`` of shape ``(m, 2)``.

    Convention: σ is given for coordinates on [0, 1) as in Tancik et al. (2020).  Our grids live on
    [−1, 1], so the layer maps x' = (x + 1) / 2 first; the same σ then means the same frequencies per image
    as in the paper (σ = 10 → about 10 cycles across the image), whatever range the grid uses.
    """

    def __init__(self, in_features: int = 2, num_frequencies: int = 256, sigma: float = 10.0) -> None:
        super().__init__()
        # A buffer, not a parameter: B is fixed, drawn from the seeded global RNG, saved with the checkpoint.
        self.register_buffer("B", torch.randn(num_frequencies, in_features) * sigma)
        self.out_features = 2 * num_frequencies

    def forward(self, x: Tensor) -> Tensor:
        proj = (2 * math.pi) * (((x + 1) * 0.5) @ self.B.T)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)
