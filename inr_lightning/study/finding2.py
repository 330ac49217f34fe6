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

import json
import time
from pathlib import Path
from statistics import median

from inr_lightning.study.profiles import DATASETS, Profile

# Seconds of one stage in a one-thread process (scripts/cpu_study.sh runs one per dataset, two at a time on 2 CPU
# cores): ``stage_seconds`` of this profile's exported run (docs/study_finding2; tests/study/test_finding2_study.py
# checks the two agree; a few stages ran while tests shared the machine: medians, not means), plus start-up and
# config resolution per stage.  Other dictionary sizes: linear from 4096.
STAGE_SECONDS = {"cohort": 10.1, "control": 8.7, "sae": 46.2, "sae_atoms1024": 25.3, "sae_atoms16384": 143.3,
                 "overhead": 5.0}


def stage_kind(stage: Path) -> str:
    """``cohort`` | ``control`` | ``sae`` | ``sae_atoms<N>`` of a finding-2 stage folder
    (``<dataset>/seed<s>/{cohort/<name>, control/<backbone>/cohort_layer<j>, sae/<backbone>/<name>}``)."""
    group = stage.parent.parent.name if stage.parent.name in ("siren", "ffmlp") else stage.parent.name
    if group == "sae" and "_atoms" in stage.name:
        return "sae_atoms" + stage.name.rsplit("_atoms", 1)[1]
    return group


def stage_seconds(out: Path) -> dict[str, float]:
    """Median seconds per stage kind (``stage_kind``) over the ``stage.json`` of a finding-2 run under ``out``
    (a run folder or its export)."""
    times: dict[str, list[float]] = {}
    for marker in Path(out).glob("*/seed*/**/stage.json"):
        times.setdefault(stage_kind(marker.parent), []).append(json.loads(marker.read_text())["seconds"])
    return {kind: round(median(values), 1) for kind, values in sorted(times.items())}


def planned_stages(profile: Profile, backbones: list[str], datasets: list[str], seeds: int) -> dict[str, int]:
    """How many stages of each kind the profile runs (the FFMLP learning-rate refinements may add two cohorts
    per dataset)."""
    layers = profile.layers if profile.sae_layers is None else len(profile.sae_layers)
    controls = layers if profile.control_layers is None else len(profile.control_layers)
    counts = {"cohort": 0, "control": 0, "sae": 0, **{f"sae_atoms{n}": 0 for n in profile.dict_sizes}}
    for ds in datasets:
        counts["cohort"] += seeds * len(backbones) + ("ffmlp" in backbones) * (len(profile.ffmlp_lrs) - 1)
        counts["control"] += seeds * len(backbones) * controls
        counts["sae"] += seeds * len(backbones) * (layers + controls)
        for n in profile.dict_sizes if ds == profile.datasets[0] else ():
            counts[f"sae_atoms{n}"] += seeds * len(backbones)
    return counts


def estimated_minutes(counts: dict[str, int], seconds: dict[str, float] = STAGE_SECONDS) -> float:
    """Minutes one one-thread process needs for the stages ``counts`` from measured per-stage times (an unmeasured
    dictionary size scales linearly).  The study's wall-clock on 2 cores is its slower dataset's."""
    total = 0.0
    for kind, n in counts.items():
        per = seconds.get(kind)
        if per is None:   # sae_atoms<N>: linear in the dictionary size from the 4096-atom SAE
            per = seconds["sae"] * int(kind.removeprefix("sae_atoms")) / 4096
        total += n * (per + seconds["overhead"])
    return total / 60


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
          f"estimated {estimated_minutes(counts):.0f} min in one one-thread process from measured per-stage times",
          flush=True)
    PROGRESS.plan(sum(counts.values()))
    results, rows = {}, []
    for ds in datasets:
        root = out / ds
        cohorts, matching, _ = run_cohorts(profile, root, ds, backbones, seeds, study, logger, overwrite)
        for seed in range(seeds):
            sae = run_sae_depths({b: cohorts[b, seed][0] for b in backbones}, root / f"seed{seed}",
                                 layers=profile.sae_layers, control_layers=profile.control_layers,
                                 dict_sizes=profile.dict_sizes if ds == profile.datasets[0] else (),
                                 overrides=profile.sae, study=study, logger=logger, overwrite=overwrite)
            rows += [dict(r, dataset=ds, cohort=seed) for r in sae]
        results[ds] = {"cohorts": cohorts, "matching": matching}
    elapsed = time.perf_counter() - start
    return reporting.write_finding2_report(out, profile, results, rows, backbones, seeds, elapsed, command)


def dataset_label(ds: str) -> str:
    return DATASETS[ds].label
