"""The finding-2 study (``--profile finding2``): SAEs on every cohort seed, each backbone beside its own
untrained control at every depth, on two datasets, with cohorts as the unit of replication.

Per dataset: the cohorts of every seed (the FFMLP's learning rate matched to SIREN's cohort PSNR on seed 0, as
in the finding-1 profiles), then per cohort seed ``run_sae_depths``: an SAE at every depth, the untrained-
encoder control (its own cohort run with layers 0..j random and frozen) at every depth, and on the first
dataset the dictionary sizes at the middle depth.  No finding-1 sweeps.  ``write_finding2_report`` judges the
claims over cohorts (``claims.judge_cohorts``).  Runs land under ``<out>/<dataset>/seed<s>/…``; a second call
reuses what finished and resumes what was interrupted (``stages.run_stage``).
"""

from __future__ import annotations

import time
from pathlib import Path

from inr_lightning.study.profiles import DATASETS, Profile

# Seconds of one stage in a one-thread process (two at a time on 2 CPU cores, as scripts/cpu_study.sh runs them),
# measured on this profile's first runs at 48×48, width 64 (stage.json): a cohort (mean of 6 SIREN ≈ 480 s and
# 10 FFMLP ≈ 300 s), a control cohort (layer 0: the dearest), an SAE of 4096 atoms (300 steps of 2304 coordinates,
# atom report included) and of 1024 / 16384, plus start-up and config resolution.  Cohorts and controls scale
# with the pixel count (``MEASURED_AT``); SAEs train on a fixed batch and are kept as measured (an upper bound).
STAGE_SECONDS = {"cohort": 367.0, "control": 280.0, "sae": 90.0, "sae_atoms1024": 48.0, "sae_atoms16384": 320.0,
                 "overhead": 5.0}
MEASURED_AT, PER_PIXEL = 48, ("cohort", "control")


def planned_stages(profile: Profile, backbones: list[str], datasets: list[str], seeds: int) -> dict[str, int]:
    """How many stages of each kind the profile runs (the FFMLP learning-rate refinements may add two cohorts
    per dataset)."""
    layers = profile.layers if profile.sae_layers is None else len(profile.sae_layers)
    controls = layers if profile.control_layers is None else len(profile.control_layers)
    counts = {"cohort": 0, "control": 0, "sae": 0, **{f"sae_atoms{n}": 0 for n in profile.dict_sizes}}
    for i, _ in enumerate(datasets):
        counts["cohort"] += seeds * len(backbones) + ("ffmlp" in backbones) * (len(profile.ffmlp_lrs) - 1)
        counts["control"] += seeds * len(backbones) * controls
        counts["sae"] += seeds * len(backbones) * (layers + controls)
        for n in profile.dict_sizes if i == 0 else ():
            counts[f"sae_atoms{n}"] += seeds * len(backbones)
    return counts


def estimated_minutes(counts: dict[str, int], resolution: int = MEASURED_AT,
                      seconds: dict[str, float] = STAGE_SECONDS) -> float:
    """Wall-clock minutes of the plan on 2 CPU cores (two one-thread processes) from measured per-stage times;
    cohorts and controls scaled by pixel count to ``resolution``, an unmeasured dictionary size linearly."""
    total = 0.0
    for kind, n in counts.items():
        per = seconds.get(kind)
        if per is None:   # sae_atoms<N>: linear in the dictionary size from the 4096-atom SAE
            per = seconds["sae"] * int(kind.removeprefix("sae_atoms")) / 4096
        per *= (resolution / MEASURED_AT) ** 2 if kind in PER_PIXEL else 1.0
        total += n * (per + seconds["overhead"])
    return total / 60 / 2


def run_finding2(profile: Profile, out: Path, backbones: list[str], datasets: list[str], seeds: int, logger: str,
                 overwrite: bool, command: str) -> Path:
    """Runs (or reuses) every stage of the finding-2 profile and writes ``<out>/report.md``."""
    from inr_lightning.study import report as reporting
    from inr_lightning.study.commands import run_cohorts, run_sae_depths
    from inr_lightning.study.stages import PROGRESS

    start = time.perf_counter()
    study = f"study_{profile.name}"
    counts = planned_stages(profile, backbones, datasets, seeds)
    print(f"[finding2] {sum(counts.values())} stages planned ({', '.join(f'{n} {k}' for k, n in counts.items())}); "
          f"estimated {estimated_minutes(counts, profile.resolution):.0f} min on 2 CPU cores (two one-thread "
          f"processes) from measured per-stage times", flush=True)
    PROGRESS.plan(sum(counts.values()))
    results, rows = {}, []
    for i, ds in enumerate(datasets):
        root = out / ds
        cohorts, matching, _ = run_cohorts(profile, root, ds, backbones, seeds, study, logger, overwrite)
        for seed in range(seeds):
            sae = run_sae_depths({b: cohorts[b, seed][0] for b in backbones}, root / f"seed{seed}",
                                 layers=profile.sae_layers, control_layers=profile.control_layers,
                                 dict_sizes=profile.dict_sizes if i == 0 else (), overrides=profile.sae, study=study,
                                 logger=logger, overwrite=overwrite)
            rows += [dict(r, dataset=ds, cohort=seed) for r in sae]
        results[ds] = {"cohorts": cohorts, "matching": matching}
    elapsed = time.perf_counter() - start
    return reporting.write_finding2_report(out, profile, results, rows, backbones, seeds, elapsed, command)


def dataset_label(ds: str) -> str:
    return DATASETS[ds].label
