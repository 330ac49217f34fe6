"""``python -m inr_lightning study | sweep | sae-depths``: the study's stages as commands.

    python -m inr_lightning study --quick                 # ≤ 10 min on 2 CPU cores → runs/study_quick/report.md
    python -m inr_lightning study --profile small         # every dataset and view at the quick sizes
    python -m inr_lightning study --profile decisive      # finding 1 where a CPU can decide it (hours)
    python -m inr_lightning study --profile reference     # our GPU profile (128×128, width 256)
    python -m inr_lightning sweep --cohort_ckpt runs/mri/cohort/siren/checkpoints/last.ckpt --seeds 3
    python -m inr_lightning sae-depths --cohort_ckpt runs/mri/cohort/siren/checkpoints/last.ckpt

Every run of a study lands under ``--out``; running the same command again reuses what finished, resumes what
was interrupted and refuses (one line) a directory holding runs of another config unless ``--overwrite``.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from pathlib import Path
from typing import Literal

from inr_lightning.checkpoints import load_cohort
from inr_lightning.errors import InputError
from inr_lightning.study import report as reporting
from inr_lightning.study.profiles import DATASETS, PROFILES, Profile
from inr_lightning.study.stages import PROGRESS, run_stage
from inr_lightning.study.sweep import protocols, run_sweep, write_rows
from inr_lightning.study.verdicts import Runs, capped

BACKBONES = ("siren", "ffmlp")
Backbone = Literal["siren", "ffmlp"]
Logger = Literal["offline", "online", "disabled"]


def config_path(stage: str, backbone: str) -> Path:
    """A shipped stage config: ``configs/<stage>/<backbone>.yaml`` of this checkout."""
    path = Path(__file__).resolve().parents[2] / "configs" / stage / f"{backbone}.yaml"
    if not path.is_file():
        raise InputError(f"no shipped config {path}; run the study from a checkout of inr_lightning")
    return path


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """``[own args…] -- [fit overrides…]``."""
    if "--" not in argv:
        return list(argv), []
    i = argv.index("--")
    return list(argv[:i]), list(argv[i + 1:])


def _parser(prog: str, doc: str):
    """A jsonargparse parser like the CLI's: a bad value is one line naming it and what is allowed."""
    from inr_lightning.cli import OneLineErrorParser

    return OneLineErrorParser(prog=f"python -m inr_lightning {prog}", description=doc)


# -- the whole study -------------------------------------------------------------------------------------
def run_cohort(backbone: str, run: Path, profile: Profile, dataset: str, seed: int, study: str, lr: float | None,
               logger: str, overwrite: bool) -> tuple[Path, dict]:
    args = [*profile.cohort_args(), *DATASETS[dataset].cohort, f"--seed_everything={seed}", f"--study={study}"]
    if lr is not None:
        args.append(f"--model.init_args.lr={lr}")
    summary = run_stage(config_path("cohort", backbone), run, args, logger=logger, overwrite=overwrite)
    return run / "checkpoints" / "last.ckpt", summary


def mean_psnr(summaries: list[dict]) -> dict:
    """``val/psnr`` and ``val/psnr_capped`` (each run capped at ``CAP_DB`` first) averaged over runs."""
    return {"val/psnr": sum(s["val/psnr"] for s in summaries) / len(summaries),
            "val/psnr_capped": sum(capped(s["val/psnr"]) for s in summaries) / len(summaries)}


def _capped(summary: dict) -> float:
    return summary.get("val/psnr_capped", capped(summary["val/psnr"]))


def match_learning_rate(train, lrs: tuple[float, ...], target: float | None, tolerance: float = 1.0,
                        refinements: int = 2) -> dict[float, tuple[Path, dict]]:
    """Trains the FFMLP cohort at each of ``lrs``; while no run is within ``tolerance`` dB of the SIREN cohort's
    PSNR (``target``; both capped at ``CAP_DB``), tries the geometric mean of the two neighbouring rates that
    bracket it; when every run is below it, the geometric mean of the best rate and the next faster one tried
    (which overshot), or √10 above the fastest; when every run is above it, √10 below the worst;
    ``refinements`` times."""
    tried = {lr: train(lr) for lr in lrs}
    if target is None:
        return tried
    target = capped(target)   # above the cap every cohort reproduces its images; differences there are noise
    for _ in range(refinements):
        psnr = {lr: _capped(run[1]) for lr, run in tried.items()}
        if min(abs(v - target) for v in psnr.values()) <= tolerance:
            break
        ordered = sorted(psnr)
        pairs = [(a, b) for a, b in zip(ordered, ordered[1:]) if min(psnr[a], psnr[b]) <= target <= max(psnr[a], psnr[b])]
        if pairs:
            lr = math.sqrt(pairs[0][0] * pairs[0][1])
        elif all(v < target for v in psnr.values()):  # every run below: PSNR is unimodal in the rate, so the
            best = max(ordered, key=psnr.__getitem__)   # peak lies between the best rate and a faster one (tried
            higher = ordered[ordered.index(best) + 1:]  # and worse: it overshot) or beyond the fastest tried
            lr = math.sqrt(best * higher[0]) if higher else best * math.sqrt(10)
        else:  # every run above: one step slower than the worst
            lr = min(ordered, key=psnr.__getitem__) / math.sqrt(10)
        lr = float(f"{lr:.2g}")
        if lr in tried:
            break
        tried[lr] = train(lr)
    return tried


def run_study(profile: Profile, out: Path, backbones: list[str], datasets: list[str], seeds: int, logger: str,
              overwrite: bool, command: str) -> Path:
    start = time.perf_counter()
    study = f"study_{profile.name}"
    if profile.grid:
        return run_regime(profile, out, backbones, datasets, seeds, logger, overwrite, command)
    if profile.finding2:   # finding 2 over cohorts, no sweeps (study/finding2.py)
        from inr_lightning.study.finding2 import run_finding2

        return run_finding2(profile, out, backbones, datasets, seeds, logger, overwrite, command)
    PROGRESS.plan(planned_runs(profile, backbones, datasets, seeds))
    results = {ds: run_dataset(profile, out / ds, ds, backbones, seeds, study, logger, overwrite, ds == datasets[0])
               for ds in datasets}
    elapsed = time.perf_counter() - start
    return reporting.write_study_report(out, profile, results, backbones, seeds, elapsed, command)


def run_regime(profile: Profile, out: Path, backbones: list[str], datasets: list[str], seeds: int, logger: str,
               overwrite: bool, command: str) -> Path:
    """Finding 1 on every (resolution, width) cell of ``profile.grid``: each cell is the profile at that size,
    run like a study in ``out/r<R>_w<W>/<dataset>``; the report judges every cell at every budget."""
    import dataclasses

    start = time.perf_counter()
    cells = [dataclasses.replace(profile, resolution=r, width=w, grid=()) for r, w in profile.grid]
    PROGRESS.plan(sum(planned_runs(c, backbones, datasets, seeds) for c in cells))
    results = {}
    for cell in cells:
        for ds in datasets:
            results[cell.resolution, cell.width, ds] = run_dataset(
                cell, out / f"r{cell.resolution}_w{cell.width}" / ds, ds, backbones, seeds, f"study_{profile.name}",
                logger, overwrite, first=False)
    elapsed = time.perf_counter() - start
    return reporting.write_regime_report(out, profile, results, backbones, seeds, elapsed, command)


def run_cohorts(profile: Profile, root: Path, ds: str, backbones: list[str], seeds: int, study: str, logger: str,
                overwrite: bool) -> tuple[dict, list[dict], float | None]:
    """Every seed's cohort per backbone, SIREN first; the FFMLP's learning rate matched to SIREN on the mean of
    ``profile.match_seeds`` seeds → (cohorts by (backbone, seed), the matching table, the FFMLP rate)."""
    cohorts: dict[tuple[str, int], tuple[Path, dict]] = {}
    matching: list[dict] = []
    ffmlp_lr = None
    if "siren" in backbones:  # first: the FFMLP is matched to them
        for seed in range(seeds):
            cohorts["siren", seed] = run_cohort("siren", root / f"seed{seed}" / "cohort" / "siren", profile, ds, seed,
                                                study, profile.siren_cohort_lr, logger, overwrite)
    if "ffmlp" in backbones:
        matched = range(min(profile.match_seeds, seeds))

        ran: dict[tuple[float, int], tuple[Path, dict]] = {}

        def ffmlp(lr: float, seed: int) -> tuple[Path, dict]:  # each (rate, seed) runs once
            if (lr, seed) not in ran:
                ran[lr, seed] = run_cohort("ffmlp", root / f"seed{seed}" / "cohort" / f"ffmlp_lr{lr:g}", profile, ds,
                                           seed, study, lr, logger, overwrite)
            return ran[lr, seed]

        def train(lr: float) -> tuple[Path, dict]:  # one rate on every matched seed: its mean PSNR
            if lr not in profile.ffmlp_lrs:
                PROGRESS.extend(len(matched))
            runs = [ffmlp(lr, seed) for seed in matched]
            return runs[0][0], mean_psnr([s for _, s in runs])

        siren = mean_psnr([cohorts["siren", seed][1] for seed in matched]) if "siren" in backbones else None
        tried = match_learning_rate(train, profile.ffmlp_lrs, siren and siren["val/psnr_capped"])
        if siren is None:  # no SIREN to match: the best FFMLP cohort
            ffmlp_lr = max(tried, key=lambda lr: tried[lr][1]["val/psnr"])
        else:
            ffmlp_lr = min(tried, key=lambda lr: abs(_capped(tried[lr][1]) - siren["val/psnr_capped"]))
            matching = [{"lr": lr, "psnr": s["val/psnr"], "siren": siren["val/psnr"], "run": str(c.parent.parent),
                         "psnr_capped": _capped(s), "siren_capped": siren["val/psnr_capped"],
                         "chosen": lr == ffmlp_lr, "seeds": len(matched)} for lr, (c, s) in sorted(tried.items())]
        for seed in range(seeds):  # matched seeds at the chosen rate are reused
            cohorts["ffmlp", seed] = ffmlp(ffmlp_lr, seed)
    return cohorts, matching, ffmlp_lr


def run_dataset(profile: Profile, root: Path, ds: str, backbones: list[str], seeds: int, study: str, logger: str,
                overwrite: bool, first: bool) -> dict:
    """One dataset of a study: cohorts (FFMLP matched to SIREN), the fit learning-rate search, the sweeps of
    every seed and view, and the SAEs (``first``: the extra SAE seeds and dictionary sizes too)."""
    cohorts, matching, ffmlp_lr = run_cohorts(profile, root, ds, backbones, seeds, study, logger, overwrite)
    fit_lr = {}
    searches = {}
    for backbone in backbones:
        if profile.fit_lr_grid(backbone):
            searches[backbone] = search_fit_lr(backbone, cohorts[backbone, 0][0], root / "lr_search" / backbone,
                                               profile, study, logger, overwrite)
            fit_lr[backbone] = next(r["lr"] for r in searches[backbone] if r["chosen"])
    sweeps: dict[tuple, dict] = {}
    views = DATASETS[ds].views.items() if profile.views else ()
    for view, data_overrides in [("heldout", []), *views]:
        for backbone in backbones:
            for seed in range(seeds):
                ckpt = cohorts[backbone, seed][0]
                name = "sweep" if view == "heldout" else f"sweep_{view}"
                lr = [f"--model.init_args.lr={fit_lr[backbone]}"] if backbone in fit_lr else []
                sweeps[ds, view, backbone, seed] = run_sweep(
                    config_path("fit", backbone), ckpt, root / f"seed{seed}" / name / backbone, profile.layers,
                    seed=seed, overrides=[*profile.fit_args(), f"--study={study}", *lr],
                    data_overrides=data_overrides, controls=profile.controls, logger=logger, overwrite=overwrite)
    write_rows(root / "sweep.csv", sweeps)
    sae_rows = run_sae_depths({b: cohorts[b, 0][0] for b in backbones}, root, layers=profile.sae_layers,
                              # seeds and dictionary sizes on the first dataset only (the profile says so)
                              sae_seeds=profile.sae_seeds if first else 1,
                              control_layers=profile.control_layers,
                              dict_sizes=profile.dict_sizes if first else (),
                              overrides=profile.sae, study=study, logger=logger, overwrite=overwrite)
    return {"cohorts": cohorts, "matching": matching, "ffmlp_lr": ffmlp_lr, "sweeps": sweeps, "sae": sae_rows,
            "lr_search": searches}


def planned_runs(profile: Profile, backbones: list[str], datasets: list[str], seeds: int) -> int:
    """How many stages ``run_study`` runs (for the ETA; a FFMLP learning-rate refinement extends the plan when it runs)."""
    sweep = len(protocols(profile.layers, profile.controls))
    total = 0
    for ds in datasets:
        views = 1 + (len(DATASETS[ds].views) if profile.views else 0)
        matched = min(profile.match_seeds, seeds)
        total += seeds * len(backbones) + ("ffmlp" in backbones) * (len(profile.ffmlp_lrs) - 1) * matched
        total += sum(2 * len(profile.fit_lr_grid(b)) for b in backbones)
        total += views * len(backbones) * seeds * sweep
        if profile.sae_layers != ():
            layers = profile.layers if profile.sae_layers is None else len(profile.sae_layers)
            controls = layers if profile.control_layers is None else len(profile.control_layers)
            first = ds == datasets[0]
            total += len(backbones) * (layers + 2 * controls
                                       + first * (profile.sae_seeds - 1 + len(profile.dict_sizes)))
    return total


def search_fit_lr(backbone: str, cohort_ckpt: Path, root: Path, profile: Profile, study: str, logger: str,
                  overwrite: bool) -> list[dict]:
    """The fit learning rate of one backbone: ``scratch`` and ``finetune`` fits of the cohort run's
    *validation* signals (neither cohort nor held-out) at every rate of the profile's grid, for the profile's
    fit budget; the rate with the highest mean capped final PSNR of the two is used by every fit.  One row
    per rate: ``lr``, ``scratch``, ``finetune``, ``score``, ``chosen``, ``run``."""
    from statistics import mean

    rows = []
    for lr in profile.fit_lr_grid(backbone):
        row = {"lr": lr, "run": str(root / f"lr{lr:g}")}
        for protocol in ("scratch", "finetune"):
            print(f"[lr search] {root}: lr {lr:g} {protocol}", flush=True)
            summary = run_stage(config_path("fit", backbone), root / f"lr{lr:g}" / protocol,
                                [f"--data.init_args.cohort_ckpt={cohort_ckpt}", "--seed_everything=0",
                                 f"--model.init_args.protocol={protocol}", f"--model.init_args.lr={lr}",
                                 "--data.init_args.split=validation", "--trainer.callbacks=[]",
                                 *profile.fit_args(), f"--study={study}"], logger=logger, overwrite=overwrite)
            row[protocol] = mean(capped(v) for v in summary["fit/psnr_final"])
        row["score"] = (row["scratch"] + row["finetune"]) / 2
        rows.append(row)
    best = max(rows, key=lambda r: r["score"])
    return [dict(r, chosen=r is best) for r in rows]


def run_sae_depths(cohorts: dict[str, Path], root: Path, *, layers: tuple[int, ...] | None, sae_seeds: int = 1,
                   control_layers: tuple[int, ...] | None = None, dict_sizes: tuple[int, ...] = (),
                   overrides: list[str] = (), study: str = "sae", logger: str = "disabled",
                   overwrite: bool = False) -> list[dict]:
    """An SAE at every depth of each cohort (``layers``; None: all); at the middle layer ``sae_seeds`` seeds
    (the SAE's initialisation and batch order) and one SAE per dictionary size in ``dict_sizes``; and the
    untrained-encoder control (a cohort whose layers 0..j stay random and frozen, everything above trained on
    the same data) at ``control_layers`` (None: every SAE layer).  Each row: the run's ``summary.json`` plus
    ``backbone``, ``layer``, ``seed``, ``encoder`` (cohort | untrained), ``n_atoms``, ``kind`` (depth | seed | size
    | control) and ``run``."""
    import yaml

    rows = []
    for backbone, ckpt in cohorts.items():
        depth = _backbone_of(ckpt)[1]
        middle = depth // 2
        chosen = layers if layers is not None else tuple(range(depth))
        runs = [(j, 0, "cohort", None, "depth") for j in chosen]
        runs += [(middle, s, "cohort", None, "seed") for s in range(1, sae_seeds)]
        runs += [(middle, 0, "cohort", n, "size") for n in dict_sizes]
        controls = control_layers if control_layers is not None else chosen
        runs += [(j, 0, "untrained", None, "control") for j in controls]
        for layer, seed, encoder, n_atoms, kind in runs:
            source, name = ckpt, f"layer{layer}" + (f"_seed{seed}" if seed else "")
            extra = [] if n_atoms is None else [f"--model.init_args.n_atoms={n_atoms}"]
            if n_atoms is not None:
                name += f"_atoms{n_atoms}"
            if encoder == "untrained":
                source = run_cohort_control(ckpt, layer, root / "control" / backbone / f"cohort_layer{layer}",
                                            logger, overwrite)
                name = f"control_layer{layer}"
            print(f"[sae] {root}: {backbone} {name}", flush=True)
            run = root / "sae" / backbone / name
            summary = run_stage(config_path("sae", backbone), run,
                                [*overrides, *extra, f"--study={study}", f"--data.init_args.cohort_ckpt={source}",
                                 f"--data.init_args.layer={layer}", f"--seed_everything={seed}",
                                 f"--model.init_args.init_seed={seed}"],
                                logger=logger, overwrite=overwrite)
            atoms = yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["n_atoms"]
            rows.append({"backbone": backbone, "layer": layer, "seed": seed, "encoder": encoder, "run": str(run),
                         "n_atoms": int(atoms), "kind": kind, **summary})
    return rows


def run_cohort_control(cohort_ckpt: Path, layer: int, run: Path, logger: str, overwrite: bool) -> Path:
    """The untrained-encoder control's cohort: the cohort run's own resolved config, with encoder layers
    0..``layer`` kept at their random initialisation and frozen."""
    config = Path(cohort_ckpt).parent.parent / "config.yaml"
    args = [f"--model.init_args.freeze_random_prefix={layer}"]
    if logger != "disabled":
        args.append(f"--trainer.logger.init_args.save_dir={run}")
    run_stage(config, run, args, logger=logger, overwrite=overwrite)
    return run / "checkpoints" / "last.ckpt"


def check_one_process(devices: int) -> None:
    """The study runs its stages in this process, so it refuses DDP (``--devices`` > 1, or a launch under
    torchrun/SLURM with several ranks): each rank would run the whole study.  Its stages are small (one cohort
    fits one GPU), so several GPUs serve it best as independent processes on disjoint datasets."""
    import os

    world = int(os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_STEP_NUM_TASKS") or 1)   # torchrun, srun
    if devices > 1 or world > 1:
        given = f"--devices {devices}" if devices > 1 else f"a launch with {world} ranks"
        raise InputError(f"study runs every stage in one process and does not take {given}: run it once per GPU "
                         "on disjoint --datasets (scripts/gpu_study.sh does), or one stage on several GPUs with "
                         "scripts/torchrun.sh")


def study(argv: list[str]) -> Path:
    parser = _parser("study", "The whole study: cohorts → freeze-depth sweeps with controls → SAEs → report.md")
    parser.add_argument("--profile", type=Literal[tuple(sorted(PROFILES))], default="full")
    parser.add_argument("--quick", action="store_true", help="the same as --profile quick (≤ 10 min on 2 CPU cores)")
    parser.add_argument("--out", default=None, help="default: runs/study_<profile>")
    parser.add_argument("--backbones", nargs="+", type=Backbone, default=list(BACKBONES))
    parser.add_argument("--datasets", nargs="+", type=Literal[tuple(sorted(DATASETS))], default=None,
                        help="default: the profile's")
    parser.add_argument("--seeds", type=int, default=None, help="cohort and fit seeds (default: the profile's)")
    parser.add_argument("--wandb", type=Logger, default="offline")
    parser.add_argument("--overwrite", action="store_true", help="replace runs of another config under --out")
    parser.add_argument("--cells", nargs="+", default=None, metavar="RxW",
                        help="a regime profile's cells to run, e.g. 32x64 48x128 (default: all); two processes on "
                             "disjoint cells share one --out, and a last call without --cells writes the map")
    parser.add_argument("--export", default=None,
                        help="also copy the report, its figures and every run's records (no checkpoints) here")
    parser.add_argument("--devices", type=int, default=1, help="refused above 1: see scripts/gpu_study.sh")
    args = parser.parse_args(argv)
    check_one_process(args.devices)
    profile = PROFILES["quick" if args.quick else args.profile]
    if args.cells is not None:
        profile = with_cells(profile, args.cells)
    seeds = args.seeds or profile.seeds
    if seeds < 1:
        raise InputError(f"--seeds must be ≥ 1, got {seeds}")
    out = Path(args.out or f"runs/study_{profile.name}")
    if args.export:
        _check_export(Path(args.export))   # before the study runs, not after it
    command = "python -m inr_lightning study " + " ".join(shlex.quote(a) for a in argv)
    report = run_study(profile, out, args.backbones, args.datasets or list(profile.datasets), seeds, args.wandb,
                       args.overwrite, command)
    print(f"\nreport: {report}")
    if args.export:
        print(f"exported: {export(out, Path(args.export))}")
    return report


def with_cells(profile: Profile, cells: list[str]) -> Profile:
    """``profile`` restricted to ``cells`` (``RxW`` strings) of its regime grid."""
    import dataclasses

    if not profile.grid:
        raise InputError(f"--cells needs a regime profile (one with a grid, e.g. regime); {profile.name!r} has none")
    allowed = [f"{r}x{w}" for r, w in profile.grid]
    bad = [c for c in cells if c not in allowed]
    if bad:
        raise InputError(f"--cells {' '.join(bad)}: not in the {profile.name} grid; allowed: {' '.join(allowed)}")
    return dataclasses.replace(profile, grid=tuple(g for g, name in zip(profile.grid, allowed) if name in cells))


# What a study's export keeps: the report, its figures and tables, each run's records and the images the report
# shows — enough to trace every number to its run — but no checkpoints, logs or per-atom tables (atoms.csv,
# ablation.csv: half a megabyte per 4096-atom SAE; their medians are in summary.json, the rows in --out).
EXPORTED = ("report.md", "*.csv", "*/sweep.csv", "figures/*.png", "**/config.yaml", "**/summary.json",
            "**/signals.csv", "**/stage.json")


def _check_export(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InputError(f"--export folder '{dest}' is not empty; give a new folder")


def export(out: Path, dest: Path) -> Path:
    """Copies the report and every run's records from ``out`` to ``dest`` (paths kept, so its links work)."""
    import re
    import shutil

    _check_export(dest)
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (out / "report.md").read_text())
    paths = [p for pattern in EXPORTED for p in out.glob(pattern)] + [out / link for link in linked]
    for path in paths:
        if not path.is_file() or "checkpoints" in path.parts or "wandb" in path.parts:
            continue
        target = dest / path.relative_to(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest / "report.md"


# -- one sweep, one SAE-depth table --------------------------------------------------------------------
def _backbone_of(ckpt: str) -> tuple[str, int]:
    _, hp = load_cohort(ckpt)
    return hp["net"]["backbone"], int(hp["net"]["shared_layers"])


def sweep(argv: list[str]) -> list[dict]:
    own, extra = _split(argv)
    parser = _parser("sweep", "Freeze-depth sweep (every protocol and control) of cohort runs, with verdicts; "
                              "arguments after -- go to every fit")
    parser.add_argument("--cohort_ckpt", nargs="+", required=True, help="cohort checkpoints (one sweep each)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, default=1, help="fit seeds (paired across protocols)")
    parser.add_argument("--no_controls", action="store_true", help="skip the random-weights and reinit controls")
    parser.add_argument("--wandb", type=Logger, default="disabled")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(own)
    out = Path(args.out)
    sweeps, verdicts = {}, []
    for ckpt in args.cohort_ckpt:
        backbone, layers = _backbone_of(ckpt)
        runs = Runs()
        for seed in range(args.seeds):
            summaries = run_sweep(config_path("fit", backbone), ckpt, out / backbone / f"seed{seed}", layers,
                                  seed=seed, overrides=extra, controls=not args.no_controls, logger=args.wandb,
                                  overwrite=args.overwrite)
            sweeps["cli", "heldout", backbone, seed] = summaries
            for label, s in summaries.items():
                runs.add(seed, label, s)
        verdicts.append({"backbone": backbone, "runs": runs})
    write_rows(out / "sweep.csv", sweeps)
    text = "\n".join(line for v in verdicts for line in reporting.finding1_lines(v["backbone"], v["runs"], out)[0])
    note = ("Here the replicates are fit seeds of one cohort: every interval (and n) below is over fit seeds and "
            "says nothing about other cohorts; `study` replicates over cohort seeds.")
    (out / "report.md").write_text(f"# Freeze-depth sweep\n\n{note}\n\n{text}\n")
    print(text)
    print(f"\n{out / 'sweep.csv'}\n{out / 'report.md'}")
    return verdicts


def sae_depths(argv: list[str]) -> list[dict]:
    own, extra = _split(argv)
    parser = _parser("sae-depths", "An SAE at every encoder depth of cohort runs, plus the untrained-encoder "
                                   "control; arguments after -- go to every SAE run")
    parser.add_argument("--cohort_ckpt", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--layers", nargs="*", type=int, default=None, help="default: every encoder layer")
    parser.add_argument("--control_layers", nargs="*", type=int, default=None, help="default: the middle layer")
    parser.add_argument("--sae_seeds", type=int, default=1, help="SAE seeds at the middle layer")
    parser.add_argument("--dict_sizes", nargs="*", type=int, default=(),
                        help="extra dictionary sizes at the middle layer (e.g. 1024 16384)")
    parser.add_argument("--wandb", type=Logger, default="disabled")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(own)
    cohorts = {_backbone_of(ckpt)[0]: Path(ckpt) for ckpt in args.cohort_ckpt}
    middle = _backbone_of(args.cohort_ckpt[0])[1] // 2
    rows = run_sae_depths(cohorts, Path(args.out), layers=None if args.layers is None else tuple(args.layers),
                          control_layers=(middle,) if args.control_layers is None else tuple(args.control_layers),
                          sae_seeds=args.sae_seeds, dict_sizes=tuple(args.dict_sizes), overrides=extra,
                          logger=args.wandb, overwrite=args.overwrite)
    table = reporting.sae_table(rows, Path(args.out))
    (Path(args.out) / "sae_depths.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return rows

