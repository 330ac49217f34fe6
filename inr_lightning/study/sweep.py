"""The freeze-depth sweep: every protocol of the fitting stage on one cohort run's held-out signals.

Runs, each one batched fit of every held-out signal (same seed, so heads start identical across protocols):

- ``scratch``; ``finetune``; ``freeze_k`` for every encoder layer k (layers above fine-tuned);
- controls (``controls=True``): ``random_k`` — the same layers frozen at a *random* initialisation (what
  freezing does without transfer) — and ``reinit_k`` — cohort layers 0..k frozen, the layers above
  re-initialised instead of fine-tuned;
- ``auto`` — ``StableRankFreeze`` choosing the depth (rule *through*, raw argmax): a check that the callback's
  run equals the ``freeze_k`` run it names.

The data comes from the cohort run (``CohortRunDataModule``); ``data_overrides`` fit another set of signals
(e.g. another view of the same volume) and are recorded in every run's ``summary.json``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from inr_lightning.study.stages import run_stage

FREEZE = "inr_lightning.callbacks.StableRankFreeze"


def protocols(layers: int, controls: bool = True) -> list[tuple[str, list[str]]]:
    """(label, CLI overrides) of every run of one sweep."""
    m = "--model.init_args."
    runs = [("scratch", [f"{m}protocol=scratch"]), ("finetune", [f"{m}protocol=finetune"])]
    runs += [(f"freeze_{k}", [f"{m}protocol=freeze", f"{m}last_frozen_layer={k}"]) for k in range(layers)]
    if controls:
        runs += [(f"random_{k}", [f"{m}protocol=freeze", f"{m}last_frozen_layer={k}", f"{m}encoder_weights=random"])
                 for k in range(layers)]
        runs += [(f"reinit_{k}", [f"{m}protocol=freeze", f"{m}last_frozen_layer={k}", f"{m}above=reinit"])
                 for k in range(layers - 1)]
    runs.append(("auto", [f"{m}protocol=auto"]))
    return runs


def run_sweep(fit_config: str | Path, cohort_ckpt: str | Path, out: str | Path, layers: int, *, seed: int = 0,
              overrides: list[str] = (), data_overrides: list[str] = (), controls: bool = True,
              logger: str = "disabled", overwrite: bool = False) -> dict[str, dict]:
    """Every protocol of one sweep → ``{label: summary}`` (runs in ``out/<label>``)."""
    out = Path(out)
    summaries = {}
    for label, args in protocols(layers, controls):
        print(f"[sweep] {out}: {label}", flush=True)
        summaries[label] = run_stage(
            fit_config, out / label,
            [f"--data.init_args.cohort_ckpt={cohort_ckpt}", f"--seed_everything={seed}",
             # one StableRankFreeze: reports the profile everywhere, decides the depth for auto
             f'--trainer.callbacks=[{{"class_path": "{FREEZE}"}}]', *overrides, *data_overrides, *args],
            logger=logger, overwrite=overwrite)
    return summaries


def write_rows(path: Path, sweeps: dict[tuple, dict[str, dict]]) -> None:
    """``sweep.csv``: one row per (sweep key, protocol, seed, signal, step); ``step = final`` for the end."""
    rows = []
    for key, summaries in sweeps.items():
        for label, s in summaries.items():
            steps = list(s["fit/psnr_at_step"].items()) + [("final", s["fit/psnr_final"])]
            for step, values in steps:
                for i, psnr in enumerate(values):
                    rows.append({"dataset": key[0], "view": key[1], "backbone": key[2], "seed": key[3],
                                 "protocol": label, "last_frozen_layer": s.get("fit/last_frozen_layer"), "signal": i,
                                 "step": step, "psnr": psnr})
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
