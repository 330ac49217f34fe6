"""What every run leaves in its directory besides checkpoints: ``summary.json`` and ``config.yaml``.

The run directory is ``trainer.default_root_dir``; checkpoints go to ``<run>/checkpoints`` and W&B files to
``<run>/wandb`` (the shipped configs point the logger there), so one folder holds a whole run.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

_INDEXED = re.compile(r"^(?P<prefix>.+)/(?P<index>\d+)$")


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write to a temporary file and rename, so a crash mid-write never leaves a truncated JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=True))
    os.replace(tmp, path)


def _scalar(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        return float(value) if value.numel() == 1 else None
    return float(value) if isinstance(value, (int, float)) else None


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


class RunSummary(L.Callback):
    """Writes ``<run>/summary.json``: the latest value of every logged scalar (refreshed after each
    validation, so an interrupted run still has one) and ``extra`` entries a module or callback adds
    through ``pl_module.summary_extra``."""

    filename = "summary.json"

    def __init__(self) -> None:
        self.metrics: dict[str, Any] = {}

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metrics.update({k: v for k, v in trainer.callback_metrics.items()})
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        payload = summarize(self.metrics)
        # What the data module and the model add: provenance of the data, recorded PSNR history, …
        payload.update(getattr(trainer.datamodule, "summary_extra", None) or {})
        payload.update(getattr(pl_module, "summary_extra", {}))
        payload["trainer/global_step"] = trainer.global_step
        payload["trainer/epoch"] = trainer.current_epoch
        write_json_atomic(Path(trainer.default_root_dir) / self.filename, payload)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module)

    def on_test_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module)


class RunConfig(SaveConfigCallback):
    """Saves the fully resolved config as ``<run>/config.yaml`` when a fit starts, and puts the same config
    into the W&B run's config, so the W&B UI can filter and group runs by any value."""

    def __init__(self, parser, config, **kwargs) -> None:
        super().__init__(parser, config, save_to_log_dir=False, **kwargs)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            path = Path(trainer.default_root_dir) / self.config_filename
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=False)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                resolved = json.loads(self.parser.dump(self.config, skip_none=False, format="json"))
                # Values linked from the data (num_signals, out_channels) are set at instantiation and are
                # absent from the parsed config; the module's hyper-parameters hold them.
                model_args = resolved.get("model", {}).setdefault("init_args", {})
                model_args.update({k: v for k, v in pl_module.hparams.items() if not k.startswith("_")})
                logger.experiment.config.update(resolved, allow_val_change=True)
