"""``python -m inr_lightning compare RUN_DIR… [--metric val/psnr] [--out compare.png]``: runs side by side.

Prints one table of final metrics, read from each run's ``summary.json`` and grouped by study, stage and
backbone (``study``, the W&B logger's ``job_type`` and ``backbone`` of the run's ``config.yaml``), and writes
one plot of the chosen metric's curve in every run (from ``metrics.csv``).  Run folders may be given as
globs (``'runs/mri/*/siren'``).
"""

from __future__ import annotations

import glob
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from inr_lightning.callbacks.outputs import METRICS_FILE, read_metrics
from inr_lightning.errors import InputError

# Columns of the table, when at least one run has them (the chosen metric always comes first).
COLUMNS = ("val/psnr", "val/ssim", "train/psnr", "train/loss", "sae/fvu", "sae/l0", "sae/dead_fraction",
           "sae/psnr_drop", "fit/last_frozen_layer", "trainer/global_step")
DEFAULT_METRICS = ("val/psnr", "sae/fvu")


@dataclass
class RunInfo:
    path: Path
    study: str
    stage: str
    backbone: str
    summary: dict
    curves: dict | None  # key → [(step, value)] from metrics.csv; None when the run has none

    @property
    def group(self) -> tuple[str, str, str]:
        return self.study, self.stage, self.backbone


def _logger_job_type(config: dict) -> str | None:
    loggers = (config.get("trainer") or {}).get("logger")
    for spec in loggers if isinstance(loggers, list) else [loggers]:
        if isinstance(spec, dict):
            job = (spec.get("init_args") or {}).get("job_type")
            if job:
                return str(job)
    return None


def _stage_from_model(config: dict) -> str:
    name = str((config.get("model") or {}).get("class_path", "")).rpartition(".")[2]
    return {"CohortINRModule": "cohort", "SignalFitModule": "fit", "SAEModule": "sae"}.get(name, name or "?")


def read_run(path: Path) -> RunInfo:
    """A run folder → its metadata, final metrics and curves; a folder that is not a run is an ``InputError``."""
    summary, config = path / "summary.json", path / "config.yaml"
    if not path.is_dir() or not summary.is_file() or not config.is_file():
        missing = "does not exist" if not path.is_dir() else \
            f"has no {'summary.json' if not summary.is_file() else 'config.yaml'}"
        raise InputError(f"'{path}' is not a run folder ({missing}); give folders written by "
                         "`python -m inr_lightning fit` (their trainer.default_root_dir)")
    cfg = yaml.safe_load(config.read_text()) or {}
    curves = read_metrics(path) if (path / METRICS_FILE).is_file() else None
    return RunInfo(path, str(cfg.get("study", "?")), _logger_job_type(cfg) or _stage_from_model(cfg),
                   str(cfg.get("backbone", "?")), json.loads(summary.read_text()), curves)


def expand(patterns: list[str]) -> list[Path]:
    """Folders and globs → folders, in the given order, each once."""
    out: list[Path] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise InputError(f"'{pattern}' matches no folder; give run folders or globs that match them")
            paths = [Path(m) for m in matches]
        else:
            paths = [Path(pattern)]
        out += [p for p in paths if p not in out]
    return out


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else (f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}")
    return str(value)


def table(runs: list[RunInfo], metric: str) -> str:
    """One markdown table: a row per run, sorted by (study, stage, backbone), the chosen metric first."""
    columns = [metric] + [c for c in COLUMNS if c != metric and any(c in r.summary for r in runs)]
    head = ["study", "stage", "backbone", "run", *columns]
    rows = [[*r.group, str(r.path), *(_fmt(r.summary.get(c)) for c in columns)]
            for r in sorted(runs, key=lambda r: r.group)]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in rows]
    return "\n".join(lines)


def plot(runs: list[RunInfo], metric: str, out: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    for r in sorted(runs, key=lambda r: r.group):
        points = (r.curves or {}).get(metric)
        if not points:
            continue
        steps, values = zip(*points)
        label = f"{'/'.join(r.group)}: {r.path.name}"
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def parse_args(argv: list[str]):
    from inr_lightning.cli import OneLineErrorParser

    parser = OneLineErrorParser(prog="python -m inr_lightning compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders or globs")
    parser.add_argument("--metric", help="logged key to compare (default: val/psnr, or sae/fvu for SAE runs)")
    parser.add_argument("--out", type=Path, default=Path("compare.png"), help="the plot (default: compare.png)")
    return parser.parse_args(argv)


def compare(argv: list[str]) -> None:
    args = parse_args(argv)
    runs = [read_run(p) for p in expand(args.runs)]
    known = sorted({k for r in runs for k, v in r.summary.items()
                    if isinstance(v, (int, float)) and not k.startswith(("data/", "trainer/"))}
                   | {k for r in runs for k in (r.curves or {})})
    metric = args.metric or next((m for m in DEFAULT_METRICS if any(m in r.summary for r in runs)), None)
    if metric is None or metric not in known:
        shown = ", ".join(k for k in known if not k.rpartition("/")[2].isdigit())
        raise InputError(f"unknown metric {args.metric or metric!r} for these runs; they log: {shown}")
    print(table(runs, metric))
    with_curve = [r for r in runs if (r.curves or {}).get(metric)]
    for r in runs:
        if r not in with_curve:
            print(f"(no {metric} curve in {r.path / METRICS_FILE}; left out of the plot)")
    if with_curve:
        print(f"\n{metric} curve of {len(with_curve)} run(s) → {plot(with_curve, metric, args.out)}")
