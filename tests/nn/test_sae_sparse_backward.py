"""The SAE's sparse backward (``SelectedCodes``) equals dense autograd through ReLU → top-k, AuxK included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inr_lightning.nn.sae import TopKSAE


def dense_reference(sae: TopKSAE, x: torch.Tensor, aux_weight: float) -> torch.Tensor:
    """The loss with every step in dense autograd (the pre-change formulation)."""
    pre = F.relu(F.linear(sae.encoder_input(x), sae.W_enc, sae.b_enc))
    vals, idx = pre.topk(sae.k, dim=-1)
    x_hat = sae.decode_dense(sae.dense_codes(vals, idx))
    loss = ((x_hat - x) ** 2).sum()
    dead = sae.dead_mask()
    n_dead = int(dead.sum())
    if n_dead:
        v, i = (pre * dead).topk(min(sae.k_aux, n_dead), dim=-1)
        residual = (x - x_hat).detach()
        loss = loss + aux_weight * ((sae.dense_codes(v, i) @ sae.W_dec - residual) ** 2).sum()
    return loss


def sparse_loss(sae: TopKSAE, x: torch.Tensor, aux_weight: float) -> torch.Tensor:
    out = sae(x)
    return ((out.x_hat - x) ** 2).sum() + aux_weight * sae.aux_sse(x, out.x_hat, out.pre, out.u)


@pytest.mark.parametrize("encoder_input", ["centred", "whitened"])
def test_sparse_backward_equals_dense_autograd_with_and_without_dead_atoms(encoder_input):
    torch.manual_seed(0)
    sae = TopKSAE(24, 96, 6, k_aux=12, dead_window=10, seed=0, encoder_input=encoder_input)
    x = torch.randn(300, 24) * torch.logspace(1, -1, 24)
    sae.init_b_pre(x, "mean")
    sae.init_encoder_whitener(x)
    with torch.no_grad():
        sae.b_enc.uniform_(-0.2, 0.2)
    params = [sae.W_enc, sae.b_enc, sae.b_pre, sae.W_dec]
    for dead in (False, True):
        if dead:
            counts = torch.zeros(96)
            counts[:40] = 1
            sae.update_dead(counts, 20)  # atoms 40.. are dead
            assert sae.dead_mask().sum() == 56
        ref = dense_reference(sae, x, 1 / 32)
        got = sparse_loss(sae, x, 1 / 32)
        torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-5)
        g_ref = torch.autograd.grad(ref, params)
        g_got = torch.autograd.grad(got, params)
        for p, a, b in zip(("W_enc", "b_enc", "b_pre", "W_dec"), g_got, g_ref):
            assert b.abs().max() > 0, p
            rel = (a - b).norm() / b.norm()
            assert rel < 1e-5, f"{p} (dead atoms: {dead}): relative difference {rel:.2e}"
