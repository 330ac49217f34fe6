"""a. A cohort training step against the hardware.

Measures ``CohortINRModule.training_step`` + backward + Adam (SIREN, width 256, 5 shared layers, 10 linear
heads, 4096 coordinates), eager (the hand-fused SIREN layer, ``nn/fused.py``) and with ``compile: true``.
Baseline: the very same list of GEMMs (same shapes and shared-input/batched layouts, ``harness.step_gemms``)
as bare ``matmul``/``bmm`` calls on preallocated tensors.  Ratio = the step's FLOP rate / the GEMMs' rate;
target ≥ 0.8.
"""

from __future__ import annotations

import time

import torch

from benchmarks.harness import (Ctx, Row, coords_batch, fmt, gemm_flops, gemm_runner, interleaved, module_stepper,
                                step_gemms)
from inr_lightning.models import CohortINRModule
from inr_lightning.nn import INRConfig

QUICK_REASON = "a 32-wide step is per-op overhead, not GEMMs"


def run(ctx: Ctx) -> list[Row]:
    s = ctx.s
    cfg = INRConfig(width=s["width"], shared_layers=s["layers"])
    batch = coords_batch(ctx, s["coords"], s["signals"])
    gemms = step_gemms(cfg, s["coords"], s["signals"])
    flops = gemm_flops(gemms)
    fns = {"matmul": gemm_runner(ctx, gemms)}
    torch.manual_seed(0)
    fns["eager"] = module_stepper(ctx, CohortINRModule(cfg, num_signals=s["signals"]), batch)
    compiled_ok = not ctx.args.no_compile
    if compiled_ok:
        torch.manual_seed(0)
        try:
            step = module_stepper(ctx, CohortINRModule(cfg, num_signals=s["signals"], compile=True), batch)
            t0 = time.perf_counter()
            step()  # compiles
            ctx.notes.append(f"a: torch.compile took {time.perf_counter() - t0:.1f} s (first step, excluded)")
            fns["compiled"] = step
        except Exception as err:  # noqa: BLE001 — no compiler here: report why, time eager only
            compiled_ok = False
            ctx.notes.append(f"a: torch.compile unavailable: {type(err).__name__}: {str(err).splitlines()[0][:160]}")
    # One sample is one ~30 ms step: many of them, or the median moves by ±2 % from run to run.
    t = interleaved(ctx, fns, repeats=s["step_repeats"], warmup=3)
    rate = {k: flops / v / 1e9 for k, v in t.items()}
    what = (f"cohort step FLOP rate vs matmul of its GEMMs (SIREN {s['width']}×{s['layers']}, {s['signals']} "
            f"signals, {s['coords']} coords), GFLOP/s")
    ratio = rate["eager"] / rate["matmul"]
    rows = [Row("a1", f"{what}, eager", rate["eager"], rate["matmul"], ratio,
                *ctx.target(ratio, "≥", 0.8, quick_reason=QUICK_REASON))]
    if compiled_ok:
        ratio = rate["compiled"] / rate["matmul"]
        rows.append(Row("a2", f"{what}, compile: true", rate["compiled"], rate["matmul"], ratio,
                        *ctx.target(ratio, "≥", 0.8, quick_reason=QUICK_REASON)))
        rows.append(Row("a3", "cohort step time, eager / compiled (ms; ratio = speed-up of compile)",
                        t["compiled"] * 1e3, t["eager"] * 1e3, t["eager"] / t["compiled"], "report", None))
    ctx.notes.append(f"a: {fmt(flops / 1e9)} GFLOP per step counted ({len(gemms)} GEMMs); step "
                     f"{t['eager'] * 1e3:.1f} ms eager, GEMMs alone {t['matmul'] * 1e3:.1f} ms")
    return rows
