"""h. Where a sweep's time goes, at the decisive profile's sizes (48×48, width 128, 5 layers, 10 signals).

Each protocol of a sweep is one stage: ``run_stage`` resolves its config (``--print_config``), starts a
``Trainer.fit`` through the CLI (parser, Trainer, cohort checkpoint loading, data, set-up), trains, evaluates
the full grid at every record step and writes its records.  Measured on real stages: T(1) and T(N) with one
record step, and T(N) with ten (medians of three); steps = (T(N) − T(1)) / (N − 1); one evaluation = the
difference of the last two / 9, measured on ``freeze_4`` (cheapest steps; the evaluation is the same forward
under every protocol); fixed = T(1) − one step.  Rows give each part's share of a projected decisive fit (600 steps, 17
records) for ``finetune`` (the dearest step) and ``freeze_4`` (the cheapest, where fixed costs weigh most).
Reported, no target: batching every protocol of a sweep into one model would remove at most the fixed share.
"""

from __future__ import annotations

import statistics
import time

from benchmarks.harness import Ctx, Row
from inr_lightning.study.commands import config_path
from inr_lightning.study.profiles import DECISIVE_RECORD, PROFILES
from inr_lightning.study.stages import resolved_config, run_stage


def run(ctx: Ctx) -> list[Row]:
    decisive = PROFILES["decisive"]
    res, width, signals, n = (16, 16, 3, 6) if ctx.quick else (decisive.resolution, decisive.width, 10, 60)
    cohort = ctx.tmp / "h_cohort"
    run_stage(config_path("cohort", "siren"), cohort,
              [f"--model.init_args.net.width={width}", f"--data.init_args.resolution={res}", "--trainer.max_steps=2",
               "--data.init_args.steps_per_epoch=2", f"--data.init_args.num_heldout={signals}"])
    ckpt = cohort / "checkpoints" / "last.ckpt"

    def args(protocol: list[str], steps: int, records: list[int]) -> list[str]:
        return [f"--data.init_args.cohort_ckpt={ckpt}", *protocol, f"--trainer.max_steps={steps}",
                f"--model.init_args.record_steps=[{', '.join(map(str, records))}]", "--trainer.callbacks=[]",
                f"--data.init_args.steps_per_epoch={steps}", "--trainer.logger=false",
                "--trainer.enable_progress_bar=false"]

    repeats = 1 if ctx.quick else 3

    def stage(name: str, *a) -> float:
        """Median wall-clock of ``repeats`` fresh stages (a loaded machine moves one run by seconds)."""
        times = []
        for r in range(repeats):
            start = time.perf_counter()
            run_stage(config_path("fit", "siren"), ctx.tmp / f"{name}_{r}", args(*a))
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    rows, measured = [], {}
    for key, label, protocol in (("h2", "freeze_4", ["--model.init_args.protocol=freeze",
                                                     "--model.init_args.last_frozen_layer=4"]),
                                 ("h1", "finetune", ["--model.init_args.protocol=finetune"])):
        start = time.perf_counter()
        resolved_config(["fit", "--config", str(config_path("fit", "siren")), *args(protocol, n, [n])])
        resolve = time.perf_counter() - start
        t1 = stage(f"{key}_1", protocol, 1, [1])
        tn = stage(f"{key}_n", protocol, n, [n])
        if "evaluation" not in measured:   # the same full-grid forward under every protocol: measured where the
            tr = stage(f"{key}_r", protocol, n, [round(n * (i + 1) / 10) for i in range(10)])  # steps are cheapest
            measured["evaluation"] = max(tr - tn, 0.0) / 9
        step, evaluation = max(tn - t1, 0.0) / (n - 1), measured["evaluation"]
        fixed = t1 - step                       # resolve + CLI + Trainer + loading + set-up + writing
        steps_total = decisive.fit_steps * step
        evals_total = len(DECISIVE_RECORD) * evaluation
        total = fixed + steps_total + evals_total
        rows.append(Row(key, f"{label}: fixed cost per stage (of which resolving the config {resolve:.1f} s) / a "
                        f"projected {decisive.fit_steps}-step decisive fit [s]", fixed, total, fixed / total, "report",
                        None))
        rows.append(Row(f"{key}e", f"{label}: {len(DECISIVE_RECORD)} record-step evaluations / the same fit [s]",
                        evals_total, total, evals_total / total, "report", None))
        ctx.notes.append(f"{key} ({label}, {res}×{res}, width {width}, {signals} signals): one step {step * 1e3:.0f} ms, "
                         f"one evaluation {evaluation * 1e3:.0f} ms, fixed {fixed:.1f} s per stage; steps are "
                         f"{100 * steps_total / total:.0f} % of a decisive fit")
    return sorted(rows, key=lambda r: r.key)
