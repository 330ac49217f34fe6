"""e. All-atom ablation.

Measures ``ablate_all`` (both variants: zeroed and error-preserving) for 4096 atoms × 10 images at 64×64.
Baseline: ``ablate_naive`` (both variants), one full recomputation per atom, timed on a sample of firing atoms
and extrapolated to all atoms (time per atom × atoms).  Target ≥ 50× faster; the sampled atoms' PSNR drops
must equal the fast path's (≤ 1e-3 dB).
"""

from __future__ import annotations

import time

import torch

from benchmarks.harness import Ctx, Row
from inr_lightning.analysis.ablation import ablate_all, ablate_naive
from inr_lightning.data.grid import make_grid
from inr_lightning.nn import CohortINR, INRConfig
from inr_lightning.nn.sae import TopKSAE


def ablation_setup(ctx: Ctx):
    """A random SIREN cohort, an SAE on one of its layers, the layer's activations and random targets."""
    s = ctx.s
    torch.manual_seed(0)
    cfg = INRConfig(width=s["width"], shared_layers=s["layers"])
    net = CohortINR(cfg, s["abl_images"], 1).to(ctx.device).eval().requires_grad_(False)
    coords = make_grid(s["abl_res"], s["abl_res"]).to(ctx.device)
    x = net.activations(coords)[s["abl_layer"]][0]
    target = (torch.rand(s["abl_images"], len(coords), 1, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    sae = TopKSAE(s["width"], s["abl_atoms"], s["sae_k"], seed=0).to(ctx.device).requires_grad_(False)
    sae.init_b_pre(x, "mean")
    return net, sae, x, target.to(ctx.device)


def run(ctx: Ctx) -> list[Row]:
    s = ctx.s
    net, sae, x, target = ablation_setup(ctx)
    layer = s["abl_layer"]
    ctx.sync()
    t0 = time.perf_counter()
    fast = ablate_all(sae, net, layer, x, target)
    ctx.sync()
    t_fast = time.perf_counter() - t0
    firing = torch.nonzero(fast["support_count"] > 0).flatten()
    sample = firing[torch.linspace(0, len(firing) - 1, s["abl_sample"]).round().long()].tolist()
    err = 0.0
    ctx.sync()
    t0 = time.perf_counter()
    for atom in sample:
        for ep in (False, True):
            drop, drop_support = ablate_naive(sae, net, layer, x, target, atom, error_preserving=ep)
            ref = (fast["drop_ep"], fast["drop_ep_support"]) if ep else (fast["drop"], fast["drop_support"])
            err = max(err, float((drop.double() - ref[0][atom]).abs().max()),
                      float((drop_support.double() - ref[1][atom]).abs().max()))
    ctx.sync()
    t_naive = (time.perf_counter() - t0) / len(sample) * s["abl_atoms"]
    ctx.notes.append(f"e: naive timed on {len(sample)} atoms (both variants each) and extrapolated ×"
                     f"{s['abl_atoms'] / len(sample):.0f} to all {s['abl_atoms']}; fast path forwarded "
                     f"{fast['pairs']} (coordinate, atom) rows per variant")
    return [
        Row("e1", f"all-atom ablation, fast vs naive ({s['abl_atoms']} atoms × {s['abl_images']} images, "
                  f"{s['abl_res']}², both variants), s; naive extrapolated", t_fast, t_naive, t_naive / t_fast,
            *ctx.target(t_naive / t_fast, "≥", 50)),
        Row("e2", "ablation fast = naive: max abs Δ PSNR drop on the sampled atoms, dB", err, 0.0, None,
            *ctx.target(err, "≤", 1e-3)),
    ]
