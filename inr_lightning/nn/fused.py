"""``sin(ω · (W x + b))`` of a ``BatchedLinear`` as one autograd node: the SIREN layer's fast path.

Why by hand: autograd runs a SIREN layer as ``linear (+ bias) → mul ω → sin`` and backward as ``cos →
mul ∂y → mul ω → sum (bias)`` — six elementwise passes over a ``(P, width)`` tensor per layer, each with a
fresh allocation, next to three GEMMs.  On a CPU those
passes cost about half as much as the GEMMs.  Here ω rides inside the GEMMs (BLAS α and β are free):

    forward   z = ω·b + ω·(x Wᵀ)           one GEMM                 y = sin z     one pass
    backward  g = cos z ⊙ ∂y               two passes, one buffer (not in place on z: retain_graph works)
              ∂x = g (ωW)   ∂W = ω (gᵀx)   two GEMMs; ω scales the small operands ∂b = ω·Σg     one reduction

**Copy blocking (CPU).**  With n independent copies (a batched fit of n signals) every pass above runs over
n·P·width floats — 64 MB per layer for 16 signals at 64×64 — so each one streams from memory, while one
signal's 4 MB stays in cache between its GEMM and its elementwise passes.  On a CPU the copies therefore run
in groups of at most ``CPU_BLOCK_BYTES`` of activations: each group's GEMM, then its ``sin`` (or its ``cos ⊙
∂y`` and both gradient GEMMs) while the group is still in cache.  The backward's ``g`` becomes one reused
group-sized buffer.  Measured on the 2-core CPU, 16 signals at 64×64 as bare training steps: unblocked the
batched step ran at 0.96–0.99 of the throughput of 16 single-signal steps, blocked at 0.99–1.03 (A/B in one
process, and ``scripts/bench.py`` row c3).  On a GPU nothing is blocked: there one launch for all copies keeps
the device busy and blocking would only add launches (not measured: no GPU yet).  Under ``torch.compile`` the
plain ops run (``SineLayer``), unblocked.

``torch.compile`` fuses some of this too, but eager mode is the default and must be fast as well.  The result
equals the autograd path up to float rounding (``tests/nn/test_fused.py``, gradcheck in float64, blocked
and whole).  Under autocast the plain path runs: mixed-precision backward needs autocast's own casting rules.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# Two 64×64 signals' activations at width 256 (4096 × 256 float32 = 4 MiB each).  Measured at 64×64 with 16
# signals (batched / sequential step): blocks of 4 MiB 1.006, 8 MiB 1.032, 16 MiB 1.025, 32 MiB 1.011, no
# blocking 0.988 — a flat optimum a few times one core's L2 (2 MiB here).
CPU_BLOCK_BYTES = 8 * 2**20


def copy_group_size(copies: int, rows: int, out_features: int, x: Tensor) -> int:
    """How many copies run together: all of them on a GPU, a cache-sized group on a CPU (at least one)."""
    if x.device.type != "cpu":
        return copies
    per_copy = rows * out_features * x.element_size()
    return max(1, min(copies, CPU_BLOCK_BYTES // per_copy))


class _SineLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, omega: float) -> Tensor:
        n, out_f, in_f = weight.shape
        shared = n == 1 or x.shape[0] == 1
        group = copy_group_size(n, x.shape[-2], out_f, x)
        ctx.omega, ctx.shared, ctx.group = omega, shared, group
        # One input for all copies, nothing to block: (rows, in) @ (in, n·out), the copies side by side in z.
        # Otherwise (an input per copy, or blocking): copies in groups, batched GEMMs (_forward_grouped).
        ctx.side_by_side = shared and group == n
        if not ctx.side_by_side:
            return _forward_grouped(ctx, x, weight, bias, omega)
        x2 = x.reshape(-1, in_f)
        z = torch.addmm(bias.reshape(n * out_f), x2, weight.reshape(n * out_f, in_f).T, beta=omega, alpha=omega)
        y = torch.sin(z)
        ctx.save_for_backward(x, weight, z)
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
        if not ctx.side_by_side:
            return (*_backward_grouped(ctx, grad_y, x, weight, z, need_x, need_w, need_b), None)
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
        return gx, gw, gb, None


def _forward_grouped(ctx, x: Tensor, weight: Tensor, bias: Tensor, omega: float) -> Tensor:
    """Copies in groups of ``ctx.group`` (all n in one group unless blocked): z and y are ``(n, P, out)``,
    each group's ``sin`` right after its GEMM.  A shared input is multiplied copy by copy (no expanded x)."""
    n, out_f, _ = weight.shape
    z = x.new_empty(n, x.shape[1], out_f)
    y = torch.empty_like(z)
    for s in range(0, n, ctx.group):
        e = min(n, s + ctx.group)
        if ctx.shared:
            for i in range(s, e):
                torch.addmm(bias[i, 0], x[0], weight[i].T, beta=omega, alpha=omega, out=z[i])
        else:
            torch.baddbmm(bias[s:e], x[s:e], weight[s:e].transpose(1, 2), beta=omega, alpha=omega, out=z[s:e])
        torch.sin(z[s:e], out=y[s:e])
    ctx.save_for_backward(x, weight, z)
    return y


def _backward_grouped(ctx, grad_y: Tensor, x: Tensor, weight: Tensor, z: Tensor, need_x: bool, need_w: bool,
                      need_b: bool) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """The backward of ``_forward_grouped``, group by group through one reused ``g`` buffer."""
    omega, shared, group = ctx.omega, ctx.shared, ctx.group
    n = weight.shape[0]
    buffer = z.new_empty(group, *z.shape[1:])
    gx = (torch.zeros_like(x) if shared else torch.empty_like(x)) if need_x else None
    gw = torch.empty_like(weight) if need_w else None
    gb = z.new_empty(n, 1, z.shape[-1]) if need_b else None
    scaled_w = omega * weight if need_x else None
    for s in range(0, n, group):
        e = min(n, s + group)
        g = buffer[: e - s]
        torch.cos(z[s:e], out=g).mul_(grad_y[s:e])
        if shared:  # the input of every copy is x[0]: ∂x sums over copies
            for i in range(s, e):
                if need_x:
                    gx[0].addmm_(g[i - s], scaled_w[i])
                if need_w:
                    torch.mm(g[i - s].T, x[0], out=gw[i])
        else:
            if need_x:
                torch.bmm(g, scaled_w[s:e], out=gx[s:e])
            if need_w:
                torch.bmm(g.transpose(1, 2), x[s:e], out=gw[s:e])
        if need_b:
            torch.sum(g, 1, keepdim=True, out=gb[s:e])
    if need_w:
        gw.mul_(omega)
    if need_b:
        gb.mul_(omega)
    return gx, gw, gb


def sine_linear(x: Tensor, weight: Tensor, bias: Tensor, omega: float) -> Tensor | None:
    """``sin(ω (W x + b))`` for ``weight (n, out, in)``, ``bias (n, 1, out)`` and ``x (B, P, in)`` with ``B``
    in {1, n}; ``(n, P, out)`` out.  ``None`` where the fused path does not apply (autocast, other layouts):
    the caller then runs the plain autograd path."""
    if torch.is_autocast_enabled(x.device.type) or x.dim() != 3 or x.shape[0] not in (1, weight.shape[0]):
        return None
    return _SineLinear.apply(x, weight, bias, float(omega))
