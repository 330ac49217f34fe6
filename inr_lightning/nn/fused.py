"""``sin(ω · (W x + b))`` of a ``BatchedLinear`` as one autograd node: the SIREN layer's fast path in eager mode.

Shapes: ``x (1, P, in)`` shared by n copies or ``(n, P, in)``; ``weight (n, out, in)``; ``y (n, P, out)``.  Why by
hand: autograd runs six elementwise passes per layer where this runs two, with ω inside the GEMMs; equal to
autograd to float rounding (gradcheck, gradgradcheck).  Derivation and measurements: docs/architecture.md,
"Fast paths".
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
