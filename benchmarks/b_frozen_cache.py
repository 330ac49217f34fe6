"""b. Frozen-prefix caching.

Measures a ``SignalFitModule`` step (5 signals, 64×64) with encoder layers 0..k frozen and their output on the
grid cached (``cache_frozen_prefix``).  Baseline: the ``finetune`` step of the same fit.  Target: cached /
finetune ≤ the trainable FLOP share (layers k+1.. and the heads, counted as in ``harness``) × 1.10.
Also reported: cached vs uncached at the same depth, and the largest weight difference after 3 steps (≤ 1e-6).
"""

from __future__ import annotations

import torch

from benchmarks.harness import (Ctx, Row, cohort_ckpt, fit_module, gemm_flops, grid_batch, interleaved, module_stepper,
                                prime_cache, step_gemms)
from inr_lightning.nn import INRConfig

QUICK_REASON = "at 16×16 and width 32 a step is per-op overhead, not FLOPs"


def run(ctx: Ctx) -> list[Row]:
    s = ctx.s
    cfg = INRConfig(width=s["width"], shared_layers=s["layers"])
    ckpt = cohort_ckpt(ctx.tmp / "b.ckpt", cfg, 4)
    m, k, P = s["fit_signals"], s["depth"], s["fit_res"] ** 2
    batch = grid_batch(ctx, s["fit_res"], m)
    torch.manual_seed(1)
    finetune = fit_module(ctx, ckpt, m, "finetune")
    torch.manual_seed(1)
    cached = fit_module(ctx, ckpt, m, "freeze", k, cache=True)
    prime_cache(cached, batch)
    torch.manual_seed(1)
    plain = fit_module(ctx, ckpt, m, "freeze", k, cache=False)
    # Equality first, from identical starting weights: 3 steps cached vs uncached.
    steps = {"cached": module_stepper(ctx, cached, batch), "plain": module_stepper(ctx, plain, batch)}
    for _ in range(3):
        steps["cached"]()
        steps["plain"]()
    diff = max(float((a - b).abs().max()) for a, b in zip(cached.state_dict().values(), plain.state_dict().values())
               if a.is_floating_point())
    steps["finetune"] = module_stepper(ctx, finetune, batch)
    t = interleaved(ctx, steps, repeats=s["repeats"], warmup=1)
    full = step_gemms(cfg, P, m, encoder_copies=m)
    share = gemm_flops([g for g in full if not g[4].startswith("enc") or int(g[4].split()[0][3:]) > k]) \
        / gemm_flops(full)
    ratio, bound = t["cached"] / t["finetune"], share * 1.10
    return [
        Row("b1", f"step with layers 0..{k} frozen + cached vs finetune step ({m} signals, {s['fit_res']}², "
                  f"trainable share {share:.2f}), ms", t["cached"] * 1e3, t["finetune"] * 1e3, ratio,
            *ctx.target(ratio, "≤", bound, f"≤ {bound:.2f} (share × 1.10)", quick_reason=QUICK_REASON)),
        Row("b2", f"cached vs uncached step, same depth {k} (ms; ratio = speed-up)", t["cached"] * 1e3,
            t["plain"] * 1e3, t["plain"] / t["cached"], "report", None),
        Row("b3", "cached = uncached: max abs Δ weight after 3 steps", diff, 0.0, None, *ctx.target(diff, "≤", 1e-6)),
    ]
