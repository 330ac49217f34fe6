"""f. Time to quality of the fitting protocols.

A SIREN cohort (width 256, 5 layers) is trained here on the 10 cohort MRI slices at 32×32 (short, for time);
then the 5 held-out slices are fitted with ``auto`` (stable-rank depth, rule ``through``) + caching.
Baselines: ``finetune`` and ``scratch`` (Adam 1e-4, full grid), run in round-robin chunks of steps so that
load hits all three alike.  Time = training wall-clock (evaluation excluded) until the mean PSNR of the 5
slices reaches 30 dB, or the best level all three reach.  Reported, no target: at this size every protocol
gets there in a few dozen steps, so the ratio is the cost of a step; the step-count comparison is the
freeze-depth sweep's.
"""

from __future__ import annotations

import time

import torch

from benchmarks.harness import Ctx, Row, fit_module, module_stepper, prime_cache, psnr_of
from inr_lightning.analysis import stable_rank
from inr_lightning.callbacks.freeze import choose_last_frozen_layer
from inr_lightning.checkpoints import load_cohort, save_cohort
from inr_lightning.data import MRISlices, SignalDataModule
from inr_lightning.models import CohortINRModule, SignalFitModule
from inr_lightning.nn import INRConfig


def run(ctx: Ctx) -> list[Row]:
    s = ctx.s
    res, cfg = s["ttq_res"], INRConfig(width=s["width"], shared_layers=s["layers"])
    kw = dict(resolution=res, channels=1, aspect="pad", num_signals=10, num_heldout=5)
    source = MRISlices()
    cohort_dm = SignalDataModule(source, split="cohort", **kw)
    held_dm = SignalDataModule(source, split="heldout", **kw)

    def full(dm):
        return {"coords": dm.coords.to(ctx.device), "target": dm.targets.to(ctx.device),
                "num_coords": len(dm.coords), "index": torch.arange(len(dm.coords), device=ctx.device)}

    torch.manual_seed(0)
    cohort = CohortINRModule(cfg, num_signals=cohort_dm.num_signals)
    step = module_stepper(ctx, cohort, full(cohort_dm))
    t0 = time.perf_counter()
    for _ in range(s["ttq_cohort_steps"]):
        step()
    cohort_psnr = psnr_of(cohort, full(cohort_dm))
    ctx.notes.append(f"f: cohort stage {s['ttq_cohort_steps']} steps at {res}² in {time.perf_counter() - t0:.0f} s, "
                     f"cohort PSNR {cohort_psnr:.1f} dB")
    ckpt = save_cohort(ctx.tmp / "f.ckpt", cohort.net)
    batch = full(held_dm)
    m = held_dm.num_signals
    modules = {}
    torch.manual_seed(2)
    auto = SignalFitModule(load_cohort(ckpt)[0], protocol="auto", num_signals=m, record_steps=[])
    profile = [stable_rank(w) for w in auto.loaded_encoder_weights]
    auto.set_last_frozen_layer(choose_last_frozen_layer(profile, "through")[1])
    auto.setup("fit")
    auto.to(ctx.device)
    prime_cache(auto, batch)
    modules["auto+cache"] = auto
    for protocol in ("finetune", "scratch"):
        torch.manual_seed(2)
        modules[protocol] = fit_module(ctx, ckpt, m, protocol)
    steppers = {k: module_stepper(ctx, v, batch) for k, v in modules.items()}
    curves = {k: [(0.0, psnr_of(v, batch))] for k, v in modules.items()}
    clock = {k: 0.0 for k in modules}
    every, level = s["ttq_every"], s["ttq_db"]
    for _ in range(0, s["ttq_max_steps"], every):  # round-robin chunks: load hits all protocols alike
        active = [k for k in modules if curves[k][-1][1] < level]
        if not active:
            break
        for k in active:
            ctx.sync()
            t0 = time.perf_counter()
            for _ in range(every):
                steppers[k]()
            ctx.sync()
            clock[k] += time.perf_counter() - t0
            curves[k].append((clock[k], psnr_of(modules[k], batch)))
    best = {k: max(p for _, p in c) for k, c in curves.items()}
    shared = min(level, min(best.values()))
    tt = {k: next(t for t, p in curves[k] if p >= shared) for k in modules}
    steps_to = {k: every * next(i for i, (_, p) in enumerate(curves[k]) if p >= shared) for k in modules}
    ctx.notes.append(f"f: auto froze layers 0..{auto.last_frozen_layer} (stable ranks "
                     f"{', '.join(f'{r:.1f}' for r in profile)}); level {shared:.1f} dB "
                     f"({'30 dB' if shared == level else 'best level all three reach'}), checked every {every} "
                     f"steps; best PSNR " + ", ".join(f"{k} {v:.1f}" for k, v in best.items()) +
                     "; steps to level " + ", ".join(f"{k} {v}" for k, v in steps_to.items()))
    what = f"time to {shared:.1f} dB, 5 held-out MRI slices at {res}², s"
    return [
        Row("f1", f"{what}: auto+cache vs finetune (ratio = speed-up)", tt["auto+cache"], tt["finetune"],
            tt["finetune"] / max(tt["auto+cache"], 1e-9), "report", None),
        Row("f2", f"{what}: auto+cache vs scratch (ratio = speed-up)", tt["auto+cache"], tt["scratch"],
            tt["scratch"] / max(tt["auto+cache"], 1e-9), "report", None),
    ]
