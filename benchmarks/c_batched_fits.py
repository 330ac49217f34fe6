"""c. Many signals at once.

Measures 16 signals fitted as one batched ``SignalFitModule`` (finetune, full grid) in a real ``Trainer.fit``.
Baseline: 16 single-signal fits one after another, each its own ``Trainer.fit`` (no logger, checkpoints or
validation on either side).  Throughput = signal-steps per second in steady state (the median interval between
training steps after the first two, a 12-step fit each; repeats interleaved); each single fit's fixed cost
(Trainer, checkpoint, data) is reported in a note, not counted.  Target ≥ 1.0, at 64×64 (c1, the study's
size) and 32×32 (c2).  c3/c4: the same comparison as bare training steps without a Trainer (the kernels'
share: both sides run the same GEMMs, so on a CPU batching wins only on per-op and per-step overhead).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import lightning as L

from benchmarks.harness import Ctx, Row, cohort_ckpt, fit_module, grid_batch, interleaved, module_stepper
from inr_lightning.checkpoints import load_cohort
from inr_lightning.data import SignalDataModule, Synthetic
from inr_lightning.models import SignalFitModule
from inr_lightning.nn import INRConfig


class StepClock(L.Callback):
    """Wall-clock at the end of every training step (after a device sync): the interval between two is one
    whole step of the fit loop — data, hooks, logging, forward, backward, optimizer."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx, self.ends = ctx, []

    def on_train_batch_end(self, *args) -> None:
        self.ctx.sync()
        self.ends.append(time.perf_counter())


def trainer_fit(ctx: Ctx, ckpt: Path, res: int, num_signals: int, steps: int, seed: int = 0) -> tuple[float, float]:
    """One ``Trainer.fit`` of ``num_signals`` synthetic images (finetune, full grid) for ``steps`` steps, nothing
    written: (median step interval after the first two steps, wall-clock of the whole fit incl. setup)."""
    t0 = time.perf_counter()
    clock = StepClock(ctx)
    data = SignalDataModule(Synthetic(size=res, num_images=num_signals, seed=seed), resolution=res,
                            num_signals=num_signals, steps_per_epoch=steps)
    model = SignalFitModule(load_cohort(ckpt)[0], protocol="finetune", num_signals=num_signals, record_steps=[])
    trainer = L.Trainer(accelerator=ctx.device.type, devices=1, max_steps=steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[clock],
                        precision="bf16-mixed" if ctx.args.bf16 else "32-true")
    trainer.fit(model, data)
    ctx.sync()
    return statistics.median(b - a for a, b in zip(clock.ends[2:], clock.ends[3:])), time.perf_counter() - t0


def run(ctx: Ctx) -> list[Row]:
    s = ctx.s
    cfg = INRConfig(width=s["width"], shared_layers=s["layers"])
    ckpt = cohort_ckpt(ctx.tmp / "c.ckpt", cfg, 4)
    n, steps, fits, bare = s["batched"], s["batched_steps"], [], []
    for res in s["batched_res"]:
        # Whole fits, as users run them: one batched fit vs n fits one after another, in interleaved repeats.
        trainer_fit(ctx, ckpt, res, 1, steps)  # warm-up
        times = {"batched": [], "sequential": [], "setup": []}
        for _ in range(s["fit_repeats"]):
            times["batched"].append(trainer_fit(ctx, ckpt, res, n, steps)[0])
            singles = [trainer_fit(ctx, ckpt, res, 1, steps, seed=1 + j) for j in range(n)]  # an image each
            times["sequential"].append(sum(step for step, _ in singles))
            times["setup"].append(statistics.mean(wall - steps * step for step, wall in singles))
        a, b = (n / statistics.median(times[k]) for k in ("batched", "sequential"))
        fits.append(Row(f"c{len(fits) + 1}", f"{n} signals as one batched fit vs {n} sequential fits (Trainer.fit, "
                                             f"finetune, {res}²), signal-steps/s", a, b, a / b,
                        *ctx.target(a / b, "≥", 1.0)))
        ctx.notes.append(f"c ({res}²): fits of {steps} steps, throughput from the median step interval after the "
                         f"first two; each single fit's fixed cost (Trainer, checkpoint, data, first steps: "
                         f"{statistics.median(times['setup']) * 1e3:.0f} ms) is not in the ratio")
        # The bare training steps (no Trainer): the kernels' share of the comparison.
        batch = grid_batch(ctx, res, n)
        batched = module_stepper(ctx, fit_module(ctx, ckpt, n, "finetune"), batch)
        singles = [module_stepper(ctx, fit_module(ctx, ckpt, 1, "finetune"),
                                  {**batch, "target": batch["target"][j:j + 1]}) for j in range(n)]

        def sequential(singles=singles):
            for step in singles:
                step()
        t = interleaved(ctx, {"batched": batched, "sequential": sequential}, repeats=s["repeats"])
        a, b = n / t["batched"], n / t["sequential"]
        bare.append(Row(f"c{len(s['batched_res']) + len(bare) + 1}",
                        f"the same as bare training steps (no Trainer, {res}²), signal-steps/s", a, b, a / b,
                        "report", None))
    return fits + bare
