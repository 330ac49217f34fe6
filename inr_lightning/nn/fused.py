"""``sin(ω · (W x + b))`` of a ``BatchedLinear`` as one autograd node: the SIREN layer's fast path.

Why by hand: autograd runs a SIREN layer as ``linear (+ bias) → mul ω → sin`` and backward as ``cos →
mul ∂y → mul ω → sum (bias)`` — six elementwise passes over a ``(P, width)`` tensor per layer, each with a
fresh allocation, next to three GEMMs.  On a CPU those
passes cost about half as much as the GEMMs.  Here ω rides inside the GEMMs (BLAS α and β are free):

    forward   z = ω·b + ω·(x Wᵀ)           one GEMM                 y = sin z     one pass
    backward  g = cos z ⊙ ∂y               two passes, one buffer (not in place on z: retain_graph works)
              ∂x = g (ωW)   ∂W = ω (gᵀx)   two GEMMs; ω scales the small operands ∂b = ω·Σg     one reduction

``torch.compile`` fuses some of this too, but eager mode is the default and must be fast as well.  The result
equals the autograd path up to float rounding (``tests/nn/test_fused.py``, gradcheck in float64).
Under autocast the plain path runs: mixed-precision backward needs autocast's own casting rules.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class _SineLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, omega: float) -> Tensor:
        n, out_f, in_f = weight.shape
        shared = n == 1 or x.shape[0] == 1
        if shared:  # one input for all copies: (rows, in) @ (in, n·out); the copies sit side by side in z
            x2 = x.reshape(-1, in_f)
            z = torch.addmm(bias.reshape(n * out_f), x2, weight.reshape(n * out_f, in_f).T, beta=omega, alpha=omega)
        else:       # one input per copy: a batched GEMM
            z = torch.baddbmm(bias, x, weight.transpose(1, 2), beta=omega, alpha=omega)
        y = torch.sin(z)
        ctx.save_for_backward(x, weight, z)
        ctx.omega, ctx.shared = omega, shared
        if not shared:
            return y
        if n == 1:
            return y.view(*x.shape[:-1], out_f)
        return y.view(-1, n, out_f).transpose(0, 1)  # (n, P, out), a view: no copy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: Tensor):
        x, weight, z = ctx.saved_tensors
        omega = ctx.omega
        n, out_f, in_f = weight.shape
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if ctx.shared:
            # (rows, n·out); ∂y arrives as (n, P, out): multiplied in through a strided view, never copied
            g = torch.cos(z)
            if n > 1:
                g.view(-1, n, out_f).mul_(grad_y.transpose(0, 1))
            else:
                g.mul_(grad_y.reshape(z.shape))
            x2 = x.reshape(-1, in_f)
            gx = (g @ (omega * weight).reshape(n * out_f, in_f)).view_as(x) if need_x else None
            gw = (g.T @ x2).mul_(omega).view_as(weight) if need_w else None
            gb = g.sum(0).mul_(omega).view(n, 1, out_f) if need_b else None
        else:
            g = torch.cos(z).mul_(grad_y)  # (n, P, out)
            gx = torch.bmm(g, omega * weight) if need_x else None
            gw = torch.bmm(g.transpose(1, 2), x).mul_(omega) if need_w else None
            gb = g.sum(1, keepdim=True).mul_(omega) if need_b else None
        return gx, gw, gb, None


def sine_linear(x: Tensor, weight: Tensor, bias: Tensor, omega: float) -> Tensor | None:
    """``sin(ω (W x + b))`` for ``weight (n, out, in)``, ``bias (n, 1, out)`` and ``x (B, P, in)`` with ``B``
    in {1, n}; ``(n, P, out)`` out.  ``None`` where the fused path does not apply (autocast, other layouts):
    the caller then runs the plain autograd path."""
    if torch.is_autocast_enabled(x.device.type) or x.dim() != 3 or x.shape[0] not in (1, weight.shape[0]):
        return None
    return _SineLinear.apply(x, weight, bias, float(omega))
