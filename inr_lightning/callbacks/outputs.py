"""What every run leaves in its directory besides checkpoints: ``summary.json``, ``config.yaml``,
``metrics.csv`` and ``curves.png``.

The run directory is ``trainer.default_root_dir``; checkpoints go to ``<run>/checkpoints`` and W&B files to
``<run>/wandb`` (the shipped configs point the logger there), so one folder holds a whole run.

``summary.json`` is the record of training: the last *real* evaluation (never Lightning's sanity check) and
the training metrics of the last step.  ``FinalValidation`` makes sure that evaluation is of the final
weights.  ``validate``/``test`` write ``validate_summary.json``/``test_summary.json`` instead and never touch
the training record.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

SUMMARY_FILES = {"fit": "summary.json", "validate": "validate_summary.json", "test": "test_summary.json"}
METRICS_FILE, CURVES_FILE = "metrics.csv", "curves.png"
# Panels of curves.png, in this order; a panel appears when at least one of its keys was logged.
CURVE_PANELS = (
    ("loss", ("train/loss", "train/mse"), True),
    ("PSNR (dB)", ("train/psnr", "val/psnr"), False),
    ("SAE FVU", ("train/fvu", "sae/fvu"), True),
    ("SAE dead fraction", ("sae/dead_fraction",), False),
    ("PSNR through the SAE (dB)", ("sae/psnr", "sae/inr_psnr"), False),
)

_INDEXED = re.compile(r"^(?P<prefix>.+)/(?P<index>\d+)$")


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write to a temporary file and rename, so a crash mid-write never leaves a truncated JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=True))
    os.replace(tmp, path)


def _scalar(value: Any) -> float | None:
    """A one-element tensor or a number → float; anything else (bools included) → None."""
    if isinstance(value, torch.Tensor):
        return float(value) if value.numel() == 1 else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def summarize(metrics: dict[str, Any]) -> dict[str, Any]:
    """Every scalar under its log key, plus one list per indexed family: ``val/psnr_per_signal/3`` also
    lands at index 3 of ``val/psnr_per_signal``, ``encoder/stable_rank/2`` at index 2 of ``encoder/stable_rank``."""
    out: dict[str, Any] = {}
    families: dict[str, dict[int, float]] = {}
    for key, value in metrics.items():
        v = _scalar(value)
        if v is None:
            continue
        out[key] = v
        m = _INDEXED.match(key)
        if m:
            families.setdefault(m["prefix"], {})[int(m["index"])] = v
    for prefix, items in families.items():
        if prefix not in out:
            out[prefix] = [items.get(i, math.nan) for i in range(max(items) + 1)]
    return out


def component_summary(component: Any) -> dict:
    """``component.summary()`` when it has one (a dict of ``summary.json`` entries), else nothing."""
    report = getattr(component, "summary", None)
    entries = report() if callable(report) else None
    return dict(entries) if isinstance(entries, dict) else {}


def collect_summaries(trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
    """The entries every component reports, in order: the data module, the model, the callbacks."""
    payload: dict = {}
    for component in (trainer.datamodule, pl_module, *trainer.callbacks):
        if component is not None:
            payload.update(component_summary(component))
    return payload


class RunSummary(L.Callback):
    """Writes the run's record: the latest value of every logged scalar and the entries that the data module,
    the model and every callback report through ``summary() -> dict`` (``collect_summaries``).

    Under ``fit``: ``<run>/summary.json``, refreshed after each real validation (so an interrupted run still
    has one) and at the end; the sanity check's step-0 values never enter it.  Under ``validate``/``test``:
    ``validate_summary.json``/``test_summary.json`` with the evaluated checkpoint (``eval/ckpt_path``)."""

    def __init__(self) -> None:
        self.metrics: dict[str, Any] = {}

    @staticmethod
    def filename(trainer: L.Trainer) -> str | None:
        fn = getattr(trainer.state.fn, "value", trainer.state.fn)
        return SUMMARY_FILES.get(str(fn))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """``<run>/signals.csv`` from the data module's ``signal_table()``: which image is signal *i*."""
        table = getattr(trainer.datamodule, "signal_table", None)
        if stage != "fit" or not trainer.is_global_zero or table is None:
            return
        rows = table()
        path = Path(trainer.default_root_dir) / "signals.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["index", "name"])
            writer.writeheader()
            writer.writerows(rows)

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.metrics.update({k: v for k, v in trainer.callback_metrics.items()})
        filename = self.filename(trainer)
        if not trainer.is_global_zero or filename is None:
            return
        payload = summarize(self.metrics)
        # What the data module, the model and the callbacks report: provenance of the data, recorded PSNR history, …
        payload.update(collect_summaries(trainer, pl_module))
        payload["trainer/global_step"] = trainer.global_step
        payload["trainer/epoch"] = trainer.current_epoch
        if filename != SUMMARY_FILES["fit"]:
            payload["eval/ckpt_path"] = str(trainer.ckpt_path) if trainer.ckpt_path else None
        write_json_atomic(Path(trainer.default_root_dir) / filename, payload)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module)

    def on_test_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module)


class FinalValidation(L.Callback):
    """Makes the fit end with a validation of its final weights.

    A fit that stops mid-epoch (``max_steps`` not a multiple of the epoch) or between two scheduled validations
    would otherwise end with an older evaluation (or only the sanity check's) beside the final training loss.
    At the fit's last batch this asks Lightning to stop (``trainer.should_stop``), and Lightning validates a
    stopping fit right after that batch, before ``ModelCheckpoint`` saves and at the same logging step as the
    batch's training metrics, so ``summary.json``, ``last.ckpt`` and ``best.ckpt`` all see it.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        max_steps, max_epochs = trainer.max_steps, trainer.max_epochs
        last_step = max_steps is not None and 0 <= max_steps <= trainer.global_step
        last_epoch = max_epochs is not None and 0 <= max_epochs <= trainer.current_epoch + 1 \
            and batch_idx + 1 >= trainer.num_training_batches
        if not (last_step or last_epoch) or not trainer.enable_validation:
            return
        trainer.should_stop = True
        n = trainer.check_val_every_n_epoch
        if n is not None and (trainer.current_epoch + 1) % n:  # Lightning validates only in its scheduled epochs
            trainer.check_val_every_n_epoch = 1


class SignalWriter(BasePredictionWriter):
    """``predict``: every signal of the run on the data's grid (``predict_step``: ``(N, C, H, W)`` on [0, 1])
    written as ``render`` writes them, under ``<run>/predict/``."""

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions, batch_indices) -> None:
        from inr_lightning.render import write_signals

        if not trainer.is_global_zero or not predictions:
            return
        images = torch.cat([p.cpu() for p in predictions])
        written = write_signals(images, Path(trainer.default_root_dir) / "predict")
        print(f"predict: {len(images)} signals at {images.shape[-2]}×{images.shape[-1]} → {written}")


class LocalMetrics(Logger):
    """Every scalar the run logs, kept in the run folder whatever other logger runs (or none).

    ``<run>/metrics.csv`` (long format: ``step,key,value``; ``step`` = optimizer steps done when the value
    was logged, the same count as ``trainer/global_step`` in ``summary.json``), appended as values arrive so
    an interrupted run keeps its curves; ``<run>/curves.png`` (the main curves) when the run ends.  A resumed
    run appends; a fresh run starts the file anew.
    """

    def __init__(self, save_dir: str | Path, resume: bool = False) -> None:
        super().__init__()
        self._dir, self._resume, self._started = Path(save_dir), resume, False
        self.trainer: L.Trainer | None = None  # set by the CLI: steps are read from it

    @property
    def name(self) -> str:
        return "local"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self._dir)

    @property
    def path(self) -> Path:
        return self._dir / METRICS_FILE

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        return None  # config.yaml holds them

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self.trainer is not None:
            step = self.trainer.global_step
        rows = [(step, key, v) for key, value in metrics.items()
                if key != "epoch" and (v := _scalar(value)) is not None]
        if not rows:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        fresh = not self._started and not self._resume
        self._started = True
        new_file = fresh or not self.path.is_file()
        with self.path.open("w" if fresh else "a", newline="") as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(["step", "key", "value"])
            writer.writerows(rows)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._started and self.path.is_file():  # only a run that logged something redraws its curves
            plot_curves(read_metrics(self._dir), self._dir / CURVES_FILE, title=self._dir.name)


def read_metrics(run: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``<run>/metrics.csv`` → ``{key: [(step, value), …]}`` sorted by step; where a resumed run logged a
    step again, the later value wins."""
    path = Path(run) / METRICS_FILE
    series: dict[str, dict[int, float]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                series.setdefault(row["key"], {})[int(row["step"])] = float(row["value"])
            except (KeyError, TypeError, ValueError):
                continue
    return {key: sorted(points.items()) for key, points in series.items()}


def plot_curves(series: dict[str, list[tuple[int, float]]], out: Path, title: str = "") -> Path | None:
    """The main curves of one run (the panels of ``CURVE_PANELS`` whose keys exist) as one PNG."""
    panels = [(label, [k for k in keys if series.get(k)], log) for label, keys, log in CURVE_PANELS]
    panels = [p for p in panels if p[1]]
    if not panels:  # a stage with other keys: its first few
        panels = [(key, [key], False) for key in sorted(series)[:4] if series[key]]
    if not panels:
        return None
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, safe in any process

    # Fixed margins (inches) and legend corner: a layout engine or loc="best" doubles the time of every run's
    # figure, and a study writes hundreds.
    width = 4.2 * len(panels)
    fig = Figure(figsize=(width, 3.2))
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=0.16, top=0.8 if title else 0.88,
                        wspace=0.28)
    for ax, (label, keys, log) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for key in keys:
            steps, values = zip(*series[key])
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=key)
        if log and all(v > 0 for key in keys for _, v in series[key]):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=8, loc="upper right" if log else "lower right")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    return out


class RunConfig(SaveConfigCallback):
    """Saves the fully resolved config as ``<run>/config.yaml`` when a fit starts, and puts the same config
    into the W&B run's config, so the W&B UI can filter and group runs by any value."""

    def __init__(self, parser, config, **kwargs) -> None:
        super().__init__(parser, config, save_to_log_dir=False, **kwargs)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            path = Path(trainer.default_root_dir) / self.config_filename
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(path), skip_unset=False, overwrite=True, multifile=False)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                resolved = json.loads(self.parser.dump(self.config, skip_unset=False, format="json"))
                # Values linked from the data (num_signals, out_channels) are set at instantiation and are
                # absent from the parsed config; the module's hyper-parameters hold them.
                model_args = resolved.get("model", {}).setdefault("init_args", {})
                model_args.update({k: v for k, v in pl_module.hparams.items() if not k.startswith("_")})
                logger.experiment.config.update(resolved, allow_val_change=True)
