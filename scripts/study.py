"""The whole study in one command, on the bundled MRI cohort: do the two findings hold here?

    cohort training (SIREN, FFMLP) → freeze-depth sweep → an SAE at every encoder depth + the untrained
    control → atom galleries and all-atom ablations → report.md with its figures and tables

Usage::

    python scripts/study.py --quick          # ≤ 10 min on 2 CPU cores: 32×32, width 128, short runs
    python scripts/study.py                  # the full mode: 128×128, width 256, 71 min on 2 CPU cores
    python scripts/study.py --profile reference   # paper-length runs (2000 fit / 5000 SAE steps): for a GPU

Everything lands in ``runs/<study>/`` (``--study``, default ``mri``; ``mri_quick`` for ``--quick``):
``cohort/<backbone>``, ``sweep/``, ``sae/<backbone>/layer<j>`` and ``report.md`` + ``figures/``.  Every number
in the report names the run directory whose ``summary.json`` it comes from.  Stages that finished before are
reused, so an interrupted study continues where it stopped.  All runs share one W&B group (the study) with
one ``job_type`` per stage and the backbone as a tag.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inr_lightning.cli import main as cli_main  # noqa: E402

# Each profile: the cohort, fit and SAE overrides of every run.  ``tiny`` exists for the test suite.
PROFILES: dict[str, dict] = {
    # 128×128, width 256, sized for 2 CPU cores (71 min measured): each fit step sees a random eighth of
    # the grid (2048 coordinates per slice) for 1000 steps, each SAE 1000 steps of 4096 activations.
    "full": {
        "resolution": 128, "layers": 5, "cohort_steps": 2000,
        "cohort": ["--model.init_args.net.width=256"],
        "fit": ["--trainer.max_steps=1000", "--data.init_args.coords_per_step=2048",
                "--model.init_args.record_steps=[50, 100, 250, 500, 1000]"],
        "sae": ["--trainer.max_steps=1000", "--data.init_args.batch_size=4096", "--model.init_args.warmup_steps=50"],
    },
    # The paper-length protocol (full grid every step, 2000 fit steps, 5000 SAE steps of 8192): for a GPU.
    "reference": {
        "resolution": 128, "layers": 5, "cohort_steps": 2000,
        "cohort": ["--model.init_args.net.width=256"],
        "fit": ["--trainer.max_steps=2000"],
        "sae": ["--trainer.max_steps=5000"],
    },
    "quick": {
        "resolution": 32, "layers": 5, "cohort_steps": 2000,
        "cohort": ["--model.init_args.net.width=128", "--model.init_args.net.num_frequencies=128"],
        "fit": ["--trainer.max_steps=300", "--model.init_args.record_steps=[50, 100, 300]"],
        "sae": ["--model.init_args.n_atoms=1024", "--model.init_args.k=16", "--model.init_args.lr=8e-4",
                "--model.init_args.warmup_steps=20", "--model.init_args.init_samples=1024",
                "--data.init_args.batch_size=1024", "--data.init_args.steps_per_epoch=200",
                "--trainer.max_steps=400", "--trainer.callbacks.init_args.top_atoms=12"],
    },
    "tiny": {
        "resolution": 16, "layers": 3, "cohort_steps": 4,
        "cohort": ["--model.init_args.net.width=16", "--model.init_args.net.num_frequencies=8",
                   "--model.init_args.net.shared_layers=3", "--data.init_args.steps_per_epoch=2"],
        "fit": ["--trainer.max_steps=3", "--data.init_args.steps_per_epoch=3", "--model.init_args.record_steps=[1, 3]"],
        "sae": ["--model.init_args.n_atoms=32", "--model.init_args.k=4", "--model.init_args.warmup_steps=1",
                "--model.init_args.init_samples=64", "--data.init_args.batch_size=64",
                "--data.init_args.steps_per_epoch=2", "--trainer.max_steps=2", "--trainer.callbacks.init_args.top_atoms=2"],
    },
}
BACKBONES = ("siren", "ffmlp")


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def run_cohort(backbone: str, study: str, out: Path, profile: dict, wandb: str) -> Path:
    run = out / "cohort" / backbone
    ckpt = run / "checkpoints" / "last.ckpt"
    summary = run / "summary.json"
    finished = summary.is_file() and ckpt.is_file() and \
        _read(summary).get("trainer/global_step", 0) >= profile["cohort_steps"]
    if not finished:
        logger = ["--trainer.logger=false"] if wandb == "disabled" else \
            [f"--trainer.logger.init_args.offline={str(wandb != 'online').lower()}"]
        resume = ["--ckpt_path=last"] if ckpt.is_file() else []
        cli_main(["fit", "--config", str(ROOT / "configs" / "cohort" / f"{backbone}.yaml"), f"--study={study}",
                  f"--trainer.default_root_dir={run}", f"--data.init_args.resolution={profile['resolution']}",
                  f"--trainer.max_steps={profile['cohort_steps']}", "--trainer.enable_progress_bar=false", *logger,
                  *profile["cohort"], *resume])
    return ckpt


# -- figures -------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def localization_figure(sae_rows: list[dict], path: Path) -> None:
    """Support fraction and connected components of every live atom: SIREN vs FFMLP vs the untrained control."""
    plt = _plt()
    groups: dict[str, dict[str, list[float]]] = {}
    for row in sae_rows:
        atoms = Path(row["run"]) / "atoms" / "atoms.csv"
        if not atoms.is_file():
            continue
        label = f"{row['backbone']} L{row['layer']}" + (" untrained" if row["encoder"] == "untrained" else "")
        table = [r for r in csv.DictReader(atoms.open()) if float(r["fire_frequency"]) > 0]
        groups[label] = {"support": [float(r["support_fraction"]) for r in table],
                         "components": [float(r["components"]) for r in table],
                         "drop": [float(r["max_drop_db"]) for r in table if r["max_drop_db"] != "nan"]}
    if not groups:
        return
    labels = list(groups)
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.35 * len(labels) + 2.5))
    for ax, key, title in zip(axes, ("support", "components", "drop"),
                              ("support fraction (share of the grid where z_a > 0)",
                               "connected components of the support", "worst single-atom ablation drop [dB]")):
        data = [groups[lb][key] or [math.nan] for lb in labels]
        ax.boxplot(data, orientation="horizontal", showfliers=False)
        ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=7)
        ax.set_title(title, fontsize=9)
        if key == "support":
            ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- report --------------------------------------------------------------------------------------------
def _fmt(value, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec)


def _rel(path: str | Path, out: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path)


def finding1_section(reports: list[dict], out: Path) -> list[str]:
    lines = ["## Finding 1: freeze at the layer of highest stable rank", "",
             "Each held-out slice is fitted from the cohort encoder under every protocol (`sweep/sweep.csv`, "
             "`sweep/<backbone>/<protocol>/summary.json`). *through* freezes layers 0..argmax, *below* 0..argmax−1.",
             "", "Finding 1 holds where the best depth equals the argmax *and* auto matches or beats finetune "
             "(mean difference ≥ −0.05 dB) under a reading.", "",
             "| backbone | stable rank per layer | argmax | best depth per signal | best overall | best = argmax? "
             "| Spearman(srank, PSNR) | auto (through): depth: mean / worst vs finetune | auto (below): same |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        cells = [r["backbone"], ", ".join(f"{v:.1f}" for v in r["stable_rank"]), str(r["argmax_stable_rank"]),
                 str(r["best_depth_per_signal"]), str(r["best_depth_overall"]),
                 "yes" if r["best_depth_overall"] == r["argmax_stable_rank"] else "no",
                 _fmt(r["spearman_stable_rank_vs_final_psnr"])]
        for rule in ("through", "below"):
            d = r[f"auto_{rule}_minus_finetune_db"]
            # "matches or beats fine-tuning": within 0.05 dB on average counts as matching.
            ok = "yes" if d["mean"] >= -0.05 else "no"
            cells.append(f"{r[f'auto_{rule}_depth']}: {d['mean']:+.2f} / {d['worst']:+.2f} dB ({ok})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Mean final PSNR per protocol [dB]:", "",
              "| backbone | " + " | ".join(reports[0]["mean_final_psnr"]) + " |",
              "|---|" + "---|" * len(reports[0]["mean_final_psnr"])]
    for r in reports:
        lines.append(f"| {r['backbone']} | " + " | ".join(f"{v:.2f}" for v in r["mean_final_psnr"].values()) + " |")
    lines += ["", "![freeze-depth sweep](sweep/sweep.png)", ""]
    return lines


def finding2_section(sae_rows: list[dict], out: Path) -> list[str]:
    lines = ["## Finding 2: what the SAE atoms look like, and what one atom costs", "",
             "Localization of the live atoms (medians over atoms) and the largest single-atom ablation drop "
             "(vs the un-ablated SAE path, over a whole image), with the support fraction of that atom.", "",
             "| backbone | layer | encoder | support fraction | spatial spread | components | max drop [dB] "
             "| its support | 99th pct. of per-atom max drop | Spearman(support, mean drop) | run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sae_rows:
        lines.append(
            f"| {r['backbone']} | {r['layer']} | {r['encoder']} | {_fmt(r.get('atoms/support_fraction_median'), '.4f')} | "
            f"{_fmt(r.get('atoms/spread_median'), '.3f')} | {_fmt(r.get('atoms/components_median'), '.0f')} | "
            f"{_fmt(r.get('ablation/max_drop_db'))} | {_fmt(r.get('ablation/max_drop_support_fraction'), '.4f')} | "
            f"{_fmt(r.get('ablation/atom_max_drop_q99'))} | {_fmt(r.get('ablation/drop_vs_support_spearman'))} | "
            f"`{_rel(r['run'], out)}` |")
    lines += ["", "![localization](figures/localization.png)", ""]
    for r in sae_rows:
        if r["encoder"] == "untrained" or not (Path(r["run"]) / "atoms" / "gallery.png").is_file():
            continue
        if r["layer"] == max(x["layer"] for x in sae_rows if x["backbone"] == r["backbone"]) // 2:
            lines.append(f"![{r['backbone']} atoms, layer {r['layer']}]({_rel(Path(r['run']) / 'atoms' / 'gallery.png', out)})")
            lines.append(f"![{r['backbone']} most damaging atoms]({_rel(Path(r['run']) / 'atoms' / 'worst_atoms.png', out)})")
    return lines + [""]


def sae_quality_section(sae_rows: list[dict], sae_depths) -> list[str]:
    return ["## SAE quality per depth", "",
            "Evaluated on the full grid (float64 sums). The reference column is SCIENCE.md §4 [R]: SIREN 5×256 on "
            "10 CelebA images, 4096 atoms, k = 32, 10k steps — a different dataset and a much longer run.", "",
            sae_depths.markdown(sae_rows), ""]


def write_report(out: Path, profile_name: str, reports: list[dict], sae_rows: list[dict], cohorts: dict[str, Path],
                 elapsed: float, sae_depths) -> Path:
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    localization_figure(sae_rows, figures / "localization.png")
    lines = [f"# Cohort INR study: `{out.name}` ({profile_name} profile)", "",
             f"Bundled MRI cohort (MNI152 axial slices, 10 cohort + 5 held-out), {PROFILES[profile_name]['resolution']} px. "
             f"Wall-clock time: {elapsed / 60:.1f} min on {platform.machine()} ({platform.processor() or 'CPU'}), "
             f"{time.strftime('%Y-%m-%d %H:%M')}.", "",
             "## Cohort training", "", "| backbone | val/psnr [dB] | val/ssim | steps | run |", "|---|---|---|---|---|"]
    pictures = []
    for backbone, ckpt in cohorts.items():
        run = ckpt.parent.parent
        s = _read(run / "summary.json")
        lines.append(f"| {backbone} | {s['val/psnr']:.2f} | {s['val/ssim']:.4f} | {s['trainer/global_step']} | "
                     f"`{_rel(run, out)}` |")
        recon = sorted((run / "reconstructions").glob("*.png"))
        if recon:
            shutil.copy(recon[-1], figures / f"cohort_{backbone}.png")
            pictures.append(f"![{backbone} cohort: targets (top) over reconstructions](figures/cohort_{backbone}.png)")
    lines += [""] + pictures
    lines += [""] + finding1_section(reports, out) + finding2_section(sae_rows, out) + \
        sae_quality_section(sae_rows, sae_depths)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the ≤ 10-minute profile (32×32, short runs)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None, help="overrides --quick")
    parser.add_argument("--study", default=None, help="study name: W&B group and runs/<study>")
    parser.add_argument("--out", default=None, help="default: runs/<study>")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--control_layers", nargs="*", type=int, default=None,
                        help="layers that also get the untrained control (default: the middle layer)")
    parser.add_argument("--wandb", choices=["offline", "online", "disabled"], default="offline")
    args = parser.parse_args(argv)
    name = args.profile or ("quick" if args.quick else "full")
    profile = PROFILES[name]
    study = args.study or ("mri" if name == "full" else f"mri_{name}")
    out = Path(args.out or ROOT / "runs" / study)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    argv_saved, sys.argv = sys.argv, sys.argv[:1]  # every stage reads its arguments from its own list only
    try:
        cohorts = {b: run_cohort(b, study, out, profile, args.wandb) for b in args.backbones}
        sweep_dir = out / "sweep"
        if (sweep_dir / "report.json").is_file():
            reports = _read(sweep_dir / "report.json")
        else:
            reports = _load_script("sweep_freeze_depth").main(
                ["--backbones", *args.backbones, "--cohort_ckpt", *map(str, cohorts.values()), "--out", str(sweep_dir),
                 "--study", study, "--wandb", args.wandb, "--overwrite", "--", *profile["fit"]])
        sae_depths = _load_script("sae_depths")
        control = args.control_layers if args.control_layers is not None else [profile["layers"] // 2]
        sae_extra = ["--trainer.logger=false"] if args.wandb == "disabled" else []
        sae_rows = sae_depths.main(
            ["--backbones", *args.backbones, "--cohort_ckpt", *map(str, cohorts.values()), "--out", str(out / "sae"),
             "--study", study, "--control_layers", *map(str, control), "--", *profile["sae"], *sae_extra])
    finally:
        sys.argv = argv_saved
    report = write_report(out, name, reports, sae_rows, cohorts, time.perf_counter() - start, sae_depths)
    print(f"\nreport: {report}  ({(time.perf_counter() - start) / 60:.1f} min)")
    return report


if __name__ == "__main__":
    main()
