"""SAE at every encoder depth: quality, localization and ablation cost per backbone, plus the untrained control.

For each backbone, trains ``configs/sae/<backbone>.yaml`` on every shared-encoder layer of the cohort
checkpoint (and on ``--control_layers`` of a randomly initialised encoder of the same architecture), then
collects every run's ``summary.json`` into ``--out/sae_depths.csv`` and prints one markdown table beside the
reference numbers of SCIENCE.md §4 (SIREN 5×256, CelebA, 10k steps).

Usage (after the cohort stage of each backbone)::

    python scripts/sae_depths.py --backbones siren ffmlp
    python scripts/sae_depths.py --backbones siren --cohort_ckpt runs/mri/cohort/siren/checkpoints/last.ckpt \\
        -- --trainer.max_steps=500

Everything after ``--`` goes to every SAE run (any ``python -m inr_lightning fit`` override).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inr_lightning.cli import main as cli_main  # noqa: E402
from inr_lightning.cli import split_overrides  # noqa: E402

# SCIENCE.md §4, reference [R]: SIREN 5×256, 10 CelebA images, k = 32, 4096 atoms, 10k steps, by depth 0→4.
REFERENCE_SIREN = {
    "explained_variance": [0.99992, 0.99978, 0.99853, 0.98636, 0.93874],
    "dead_fraction": [0.409, 0.077, 0.0105, 0.00024, 0.00024],
    "psnr": [33.69, 33.92, 32.83, 30.34, 29.99],
}
COLUMNS = ["backbone", "layer", "encoder", "sae/fvu", "sae/explained_variance", "sae/l0", "sae/dead_fraction",
           "sae/dense_fraction", "sae/cosine", "sae/rel_bias", "sae/psnr", "sae/inr_psnr", "sae/psnr_drop",
           "atoms/alive", "atoms/support_fraction_median", "atoms/spread_median", "atoms/components_median",
           "ablation/max_drop_db", "ablation/max_drop_support_fraction", "ablation/atom_max_drop_q99",
           "ablation/drop_vs_support_spearman", "run"]


def run_sae(backbone: str, layer: int, control: bool, ckpt: Path, out: Path, extra: list[str],
            study: str = "mri") -> dict:
    """One SAE run: skipped when it finished before (its summary has the atom report), resumed from
    ``last.ckpt`` when it was interrupted, so a killed sweep continues where it stopped."""
    run = out / backbone / (f"control_layer{layer}" if control else f"layer{layer}")
    summary_path = run / "summary.json"
    done = summary_path.is_file() and "atoms/alive" in json.loads(summary_path.read_text())
    if not done:
        resume = ["--ckpt_path=last"] if (run / "checkpoints" / "last.ckpt").is_file() else []
        cli_main(["fit", "--config", str(ROOT / "configs" / "sae" / f"{backbone}.yaml"), f"--study={study}",
                  f"--trainer.default_root_dir={run}", f"--data.init_args.cohort_ckpt={ckpt}",
                  f"--data.init_args.layer={layer}", f"--data.init_args.untrained_control={str(control).lower()}",
                  "--trainer.enable_progress_bar=false", *extra, *resume])
    summary = json.loads((run / "summary.json").read_text())
    row = {"backbone": backbone, "layer": layer, "encoder": "untrained" if control else "cohort", "run": str(run)}
    row.update({key: summary.get(key) for key in COLUMNS if key not in row})
    return row


def markdown(rows: list[dict]) -> str:
    head = ["backbone", "layer", "encoder", "FVU", "L0", "dead", "PSNR via SAE", "INR PSNR", "support (median)",
            "components (median)", "max atom drop dB (its support)", "ref EV / dead / PSNR [R]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ref = "—"
        if r["backbone"] == "siren" and r["encoder"] == "cohort" and r["layer"] < 5:
            j = r["layer"]
            ref = (f"{REFERENCE_SIREN['explained_variance'][j]} / {REFERENCE_SIREN['dead_fraction'][j]} / "
                   f"{REFERENCE_SIREN['psnr'][j]}")

        def f(key: str, fmt: str = ".4f", row: dict = r) -> str:
            value = row.get(key)
            return "—" if value is None else format(value, fmt)

        lines.append("| " + " | ".join([
            r["backbone"], str(r["layer"]), r["encoder"], f("sae/fvu"), f("sae/l0", ".1f"),
            f("sae/dead_fraction"), f("sae/psnr", ".2f"), f("sae/inr_psnr", ".2f"),
            f("atoms/support_fraction_median"), f("atoms/components_median", ".1f"),
            f"{f('ablation/max_drop_db', '.2f')} ({f('ablation/max_drop_support_fraction', '.3f')})", ref]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    argv, extra = split_overrides(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["siren", "ffmlp"], choices=["siren", "ffmlp"])
    parser.add_argument("--study", default="mri")
    parser.add_argument("--cohort_ckpt", nargs="*", default=None, help="one per backbone")
    parser.add_argument("--layers", nargs="*", type=int, default=None, help="default: every shared layer")
    parser.add_argument("--control_layers", nargs="*", type=int, default=[2],
                        help="layers that also get the untrained-encoder control")
    parser.add_argument("--out", default=None, help="default: runs/<study>/sae_depths")
    args = parser.parse_args(argv)
    if args.cohort_ckpt and len(args.cohort_ckpt) != len(args.backbones):
        parser.error(f"--cohort_ckpt takes one path per backbone ({len(args.backbones)}), got {len(args.cohort_ckpt)}")
    out = Path(args.out or ROOT / "runs" / args.study / "sae_depths")
    rows = []
    for b, backbone in enumerate(args.backbones):
        ckpt = Path(args.cohort_ckpt[b]) if args.cohort_ckpt else \
            ROOT / "runs" / args.study / "cohort" / backbone / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            parser.error(f"cohort checkpoint {ckpt} does not exist; run the cohort stage of {backbone} first")
        depth = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]["net"]["shared_layers"]
        for layer in (args.layers if args.layers is not None else range(depth)):
            print(f"[sae] {backbone} layer {layer}", flush=True)
            rows.append(run_sae(backbone, layer, False, ckpt, out, extra, args.study))
        for layer in args.control_layers:
            print(f"[sae] {backbone} layer {layer} (untrained control)", flush=True)
            rows.append(run_sae(backbone, layer, True, ckpt, out, extra, args.study))
    out.mkdir(parents=True, exist_ok=True)
    with (out / "sae_depths.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    table = markdown(rows)
    (out / "sae_depths.md").write_text(table + "\n")
    print(f"\n{table}\n\n{out / 'sae_depths.csv'}")
    return rows


if __name__ == "__main__":
    main()
