"""``sin(ω · (W x + b))`` of a ``BatchedLinear`` as one autograd node: the SIREN layer's fast path in eager mode.

Why by hand: autograd runs a SIREN layer as ``linear (+ bias) → mul ω → sin`` and backward as ``cos →
mul ∂y → mul ω → sum (bias)``: six elementwise passes over a ``(P, width)`` tensor per layer, each with a
fresh allocation, next to three GEMMs; on a CPU those passes cost a large share of a step.  Here ω rides
inside the GEMMs (BLAS α and β are free):

    forward   z = ω·b + ω·(x Wᵀ)           one GEMM                 y = sin z     one pass
    backward  g = cos z ⊙ ∂y               two passes, one buffer (not in place on z: retain_graph works)
              ∂x = g (ωW)   ∂W = ω (gᵀx)   two GEMMs; ω scales the small operands ∂b = ω·Σg     one reduction

Layouts: one input shared by all n copies (a cohort's encoder, its heads) runs as one ``(P, in) @ (in, n·out)``
GEMM with the copies side by side; one input per copy (a batched fit's encoders) as batched GEMMs.  Running
the copies in cache-sized groups instead was measured and did not pay its way (BENCHMARKS.md, "Copy blocking").

Derivative supervision (a loss on ∂y/∂x, e.g. fitting an image's gradient) backpropagates through the
backward itself: under ``create_graph=True`` the backward is rebuilt from the saved inputs in plain autograd
ops, so every derivative order is exact; a plain backward takes the fused path.  Under ``torch.compile`` and
autocast the caller runs the plain ops instead (``SineLayer``): inductor fuses them itself, and autocast's
casting rules need them.  Equal to the autograd path to float rounding: gradcheck and gradgradcheck in float64
(``tests/nn/test_fused.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor


class _SineLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, omega: float) -> Tensor:
        n, out_f, in_f = weight.shape
        ctx.omega = omega
        if x.shape[0] == 1:  # one input for all copies: (rows, in) @ (in, n·out), the copies side by side in z
            z = torch.addmm(bias.reshape(n * out_f), x.reshape(-1, in_f), weight.reshape(n * out_f, in_f).T,
                            beta=omega, alpha=omega)
            y = torch.sin(z)
            y = y.view(*x.shape[:-1], out_f) if n == 1 else y.view(-1, n, out_f).transpose(0, 1)  # views
        else:                # one input per copy: batched GEMMs, z is (n, P, out)
            z = torch.baddbmm(bias, x, weight.transpose(1, 2), beta=omega, alpha=omega)
            y = torch.sin(z)
        ctx.save_for_backward(x, weight, bias, z)
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        x, weight, bias, z = ctx.saved_tensors
        omega = ctx.omega
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # backward(create_graph=True): the gradient must be differentiable again
            return (*_differentiable_backward(grad_y, x, weight, bias, omega, need_x, need_w, need_b), None)
        n, out_f, in_f = weight.shape
        g = torch.cos(z)
        if x.shape[0] == 1:  # z is (rows, n·out); ∂y arrives as (n, P, out): multiplied in through a view
            if n > 1:
                g.view(-1, n, out_f).mul_(grad_y.transpose(0, 1))
            else:
                g.mul_(grad_y.reshape(z.shape))
            gx = (g @ (omega * weight).reshape(n * out_f, in_f)).view_as(x) if need_x else None
            gw = (g.T @ x.reshape(-1, in_f)).mul_(omega).view_as(weight) if need_w else None
            gb = g.sum(0).mul_(omega).view(n, 1, out_f) if need_b else None
        else:
            g.mul_(grad_y)
            gx = torch.bmm(g, omega * weight) if need_x else None
            gw = torch.bmm(g.transpose(1, 2), x).mul_(omega) if need_w else None
            gb = g.sum(1, keepdim=True).mul_(omega) if need_b else None
        return gx, gw, gb, None


def plain_sine_linear(x: Tensor, weight: Tensor, bias: Tensor, omega: float) -> Tensor:
    """``sin(ω (W x + b))`` in plain autograd ops: the same layouts and result as ``sine_linear``."""
    return torch.sin(omega * (torch.matmul(x, weight.transpose(1, 2)) + bias))


def _differentiable_backward(grad_y: Tensor, x: Tensor, weight: Tensor, bias: Tensor, omega: float, need_x: bool,
                             need_w: bool, need_b: bool) -> list[Tensor | None]:
    """The layer's gradients as a graph of plain ops, rebuilt from the saved inputs (whose history autograd
    keeps under ``create_graph``), so that they can be differentiated again."""
    wanted = [t for t, need in zip((x, weight, bias), (need_x, need_w, need_b)) if need]
    with torch.enable_grad():
        grads = iter(torch.autograd.grad(plain_sine_linear(x, weight, bias, omega), wanted, grad_y, create_graph=True))
    return [next(grads) if need else None for need in (need_x, need_w, need_b)]


def sine_linear(x: Tensor, weight: Tensor, bias: Tensor, omega: float) -> Tensor | None:
    """``sin(ω (W x + b))`` for ``weight (n, out, in)``, ``bias (n, 1, out)`` and ``x (B, P, in)`` with ``B``
    in {1, n}; ``(n, P, out)`` out.  ``None`` where the fused path does not apply (autocast, other layouts):
    the caller then runs the plain autograd path."""
    if torch.is_autocast_enabled(x.device.type) or x.dim() != 3 or x.shape[0] not in (1, weight.shape[0]):
        return None
    return _SineLinear.apply(x, weight, bias, float(omega))
