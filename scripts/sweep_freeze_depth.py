"""Freeze-depth sweep: does the layer of highest stable rank pick the best freeze depth (SCIENCE.md §3)?

For each backbone, fits the held-out signals once per protocol — ``scratch``, ``freeze k`` for every shared
encoder layer k, ``finetune``, ``auto`` under both readings (``through``, ``below``) — each protocol as one
batched run of ``configs/fit/<backbone>.yaml`` (all signals side by side, the same seed, so the heads start
identical across protocols).  Writes to ``--out``:

- ``sweep.csv``: one row per backbone × protocol × signal × recorded step (``step = final`` for the end);
- ``sweep.png``: mean PSNR vs freeze depth at every recorded step, the stable-rank profile beside it;
- ``report.json`` and the printed report: best depth per signal and overall, the stable-rank argmax, the
  Spearman correlation between stable rank and final PSNR across depths, ``auto − finetune`` in dB (mean and
  worst signal) for both readings;
- a W&B table of the rows (offline unless ``--wandb online``; ``--wandb disabled`` for none).

Usage (after the cohort stage of each backbone)::

    python scripts/sweep_freeze_depth.py --backbones siren ffmlp
    python scripts/sweep_freeze_depth.py --backbones siren -- --data.init_args.resolution=128

Everything after ``--`` is passed to every fit run (any ``python -m inr_lightning fit`` override);
``--overwrite`` re-runs into an ``--out`` that already holds a sweep.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inr_lightning.cli import main as cli_main  # noqa: E402
from inr_lightning.cli import split_overrides  # noqa: E402


def protocols(num_layers: int) -> list[tuple[str, list[str]]]:
    """(label, CLI overrides) of every run of one backbone."""
    freeze = "inr_lightning.callbacks.StableRankFreeze"
    runs = [("scratch", ["--model.init_args.protocol=scratch"])]
    runs += [(f"freeze_{k}", ["--model.init_args.protocol=freeze", f"--model.init_args.freeze_depth={k}"])
             for k in range(num_layers)]
    runs += [("finetune", ["--model.init_args.protocol=finetune"])]
    for rule in ("through", "below"):
        callback = f'[{{"class_path": "{freeze}", "init_args": {{"rule": "{rule}"}}}}]'
        runs.append((f"auto_{rule}", ["--model.init_args.protocol=auto", f"--trainer.callbacks={callback}"]))
    return runs


def fit(backbone: str, label: str, overrides: list[str], out: Path, extra: list[str], study: str,
        cohort_ckpt: str | None, overwrite: bool = False) -> dict:
    run = out / backbone / label
    args = ["fit", "--config", str(ROOT / "configs" / "fit" / f"{backbone}.yaml"), f"--study={study}",
            f"--trainer.default_root_dir={run}", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
            # one StableRankFreeze (reports the profile, decides the depth for auto) and nothing else
            '--trainer.callbacks=[{"class_path": "inr_lightning.callbacks.StableRankFreeze"}]']
    if cohort_ckpt:
        args.append(f"--model.init_args.cohort_ckpt={cohort_ckpt}")
    if overwrite:
        args.append("--overwrite=true")
    argv, sys.argv = sys.argv, sys.argv[:1]  # the fit gets its arguments from ``args`` only
    try:
        cli_main(args + overrides + extra)
    finally:
        sys.argv = argv
    return json.loads((run / "summary.json").read_text())


def spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(spearmanr(x, y).statistic)


def analyse(backbone: str, summaries: dict[str, dict]) -> dict:
    profile = summaries["finetune"]["freeze/stable_rank"]
    layers = len(profile)
    final = {label: s["fit/psnr_final"] for label, s in summaries.items()}
    n = len(final["finetune"])
    depth_psnr = [final[f"freeze_{k}"] for k in range(layers)]  # [k][signal]
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    best_per_signal = [max(range(layers), key=lambda k: depth_psnr[k][i]) for i in range(n)]
    mean_by_depth = [mean(v) for v in depth_psnr]
    report = {
        "backbone": backbone,
        "stable_rank": profile,
        "argmax_stable_rank": max(range(layers), key=profile.__getitem__),
        "best_depth_per_signal": best_per_signal,
        "best_depth_overall": max(range(layers), key=mean_by_depth.__getitem__),
        "mean_final_psnr": {label: mean(v) for label, v in final.items()},
        "spearman_stable_rank_vs_final_psnr": spearman(profile, mean_by_depth),
        "spearman_per_signal": [spearman(profile, [depth_psnr[k][i] for k in range(layers)]) for i in range(n)],
    }
    for rule in ("through", "below"):
        diff = [a - b for a, b in zip(final[f"auto_{rule}"], final["finetune"])]
        report[f"auto_{rule}_depth"] = summaries[f"auto_{rule}"]["fit/freeze_depth"]
        report[f"auto_{rule}_minus_finetune_db"] = {"mean": mean(diff), "worst": min(diff)}
    return report


def rows_of(backbone: str, summaries: dict[str, dict]) -> list[dict]:
    rows = []
    profile = summaries["finetune"]["freeze/stable_rank"]
    for label, s in summaries.items():
        depth = s.get("fit/freeze_depth")
        srank = profile[depth] if label.startswith("freeze_") else None
        steps = [(step, values) for step, values in s["fit/psnr_at_step"].items()]
        steps.append(("final", s["fit/psnr_final"]))
        for step, values in steps:
            for i, psnr in enumerate(values):
                rows.append({"backbone": backbone, "protocol": label, "freeze_depth": depth, "signal": i,
                             "step": step, "psnr": psnr, "stable_rank": srank})
    return rows


def plot(reports: list[dict], all_summaries: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(reports), 2, figsize=(11, 4 * len(reports)), squeeze=False)
    for row, report in enumerate(reports):
        summaries = all_summaries[report["backbone"]]
        layers = len(report["stable_rank"])
        labels = ["scratch", *[f"freeze_{k}" for k in range(layers)], "finetune"]
        ticks = ["scratch", *[str(k) for k in range(layers)], "finetune"]
        ax = axes[row][0]
        steps = list(summaries["finetune"]["fit/psnr_at_step"])
        for step in steps:
            ys = [sum(summaries[lb]["fit/psnr_at_step"][step]) / len(summaries[lb]["fit/psnr_at_step"][step])
                  for lb in labels]
            ax.plot(range(len(labels)), ys, marker="o", label=f"step {step}")
        ys = [report["mean_final_psnr"][lb] for lb in labels]
        ax.plot(range(len(labels)), ys, marker="s", color="k", label="final")
        for rule, style in (("through", "--"), ("below", ":")):
            ax.axhline(report["mean_final_psnr"][f"auto_{rule}"], color="gray", linestyle=style,
                       label=f"auto ({rule}), final")
        ax.set_xticks(range(len(labels)), ticks)
        ax.set_xlabel("freeze depth (layers 0..k frozen)")
        ax.set_ylabel("mean PSNR [dB]")
        ax.set_title(f"{report['backbone']}: PSNR vs freeze depth")
        ax.legend(fontsize=7)
        ax = axes[row][1]
        colors = ["C3" if k == report["argmax_stable_rank"] else "C0" for k in range(layers)]
        ax.bar(range(layers), report["stable_rank"], color=colors)
        ax.set_xticks(range(layers))
        ax.set_xlabel("encoder layer")
        ax.set_ylabel("stable rank")
        ax.set_title(f"{report['backbone']}: stable rank of the cohort encoder")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_report(report: dict) -> None:
    fmt = lambda v: f"{v:+.2f}"  # noqa: E731
    print(f"\n== {report['backbone']} ==")
    print("stable rank per layer: " + ", ".join(f"{s:.2f}" for s in report["stable_rank"]))
    print(f"argmax stable rank: layer {report['argmax_stable_rank']}")
    print(f"best depth per signal (final PSNR): {report['best_depth_per_signal']}; "
          f"overall (mean): {report['best_depth_overall']}")
    print("mean final PSNR: " + ", ".join(f"{k} {v:.2f}" for k, v in report["mean_final_psnr"].items()))
    print(f"Spearman(stable rank, final PSNR) across depths: {report['spearman_stable_rank_vs_final_psnr']:.3f}")
    for rule in ("through", "below"):
        d = report[f"auto_{rule}_minus_finetune_db"]
        print(f"auto ({rule}, depth {report[f'auto_{rule}_depth']}) − finetune: mean {fmt(d['mean'])} dB, "
              f"worst signal {fmt(d['worst'])} dB")
    # Finding 1 has two halves: the best depth is the argmax, and freezing there matches or beats finetune
    # (within 0.05 dB on average) — checked per reading of "freeze at the argmax".
    same = report["best_depth_overall"] == report["argmax_stable_rank"]
    matches = {rule: report[f"auto_{rule}_minus_finetune_db"]["mean"] >= -0.05 for rule in ("through", "below")}
    print(f"finding 1: best depth = argmax stable rank: {'yes' if same else 'no'}; auto matches or beats "
          f"finetune: through {'yes' if matches['through'] else 'no'}, below {'yes' if matches['below'] else 'no'}")


def log_wandb(mode: str, study: str, out: Path, rows: list[dict], reports: list[dict]) -> None:
    if mode == "disabled":
        return
    import wandb

    run = wandb.init(project="inr_lightning", group=study, job_type="sweep", dir=str(out), mode=mode,
                     config={"reports": reports})
    columns = list(rows[0])
    run.log({"sweep/table": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows]),
             "sweep/plot": wandb.Image(str(out / "sweep.png"))})
    run.finish()


def main(argv: list[str] | None = None) -> list[dict]:
    argv, extra = split_overrides(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["siren", "ffmlp"], choices=["siren", "ffmlp"])
    parser.add_argument("--study", default="mri")
    parser.add_argument("--cohort_ckpt", nargs="*", default=None,
                        help="one per backbone (default: runs/<study>/cohort/<backbone>/checkpoints/last.ckpt)")
    parser.add_argument("--out", default=None, help="default: runs/<study>/sweep")
    parser.add_argument("--wandb", default="offline", choices=["offline", "online", "disabled"])
    parser.add_argument("--overwrite", action="store_true", help="re-run into an --out that holds an earlier sweep")
    args = parser.parse_args(argv)
    if args.cohort_ckpt and len(args.cohort_ckpt) != len(args.backbones):
        parser.error(f"--cohort_ckpt takes one path per backbone ({len(args.backbones)}), got {len(args.cohort_ckpt)}")
    out = Path(args.out or ROOT / "runs" / args.study / "sweep")
    out.mkdir(parents=True, exist_ok=True)

    import torch

    rows, reports, all_summaries = [], [], {}
    for b, backbone in enumerate(args.backbones):
        ckpt = args.cohort_ckpt[b] if args.cohort_ckpt else None
        path = Path(ckpt) if ckpt else ROOT / "runs" / args.study / "cohort" / backbone / "checkpoints" / "last.ckpt"
        if not path.is_file():
            parser.error(f"cohort checkpoint {path} does not exist; run the cohort stage of {backbone} first")
        layers = torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"]["net"]["shared_layers"]
        summaries = {}
        for label, overrides in protocols(layers):
            print(f"[sweep] {backbone}: {label}", flush=True)
            summaries[label] = fit(backbone, label, overrides, out, extra, args.study, str(path), args.overwrite)
        all_summaries[backbone] = summaries
        rows += rows_of(backbone, summaries)
        reports.append(analyse(backbone, summaries))

    with (out / "sweep.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "report.json").write_text(json.dumps(reports, indent=2))
    plot(reports, all_summaries, out / "sweep.png")
    for report in reports:
        print_report(report)
    log_wandb(args.wandb, args.study, out, rows, reports)
    print(f"\n{out / 'sweep.csv'}\n{out / 'sweep.png'}\n{out / 'report.json'}")
    return reports


if __name__ == "__main__":
    main()
