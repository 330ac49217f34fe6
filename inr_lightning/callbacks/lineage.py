"""``WandbLineage``: named W&B runs, the cohort checkpoint as an artifact, and every later run declaring it.

- Run names: ``<study>/<stage>/<backbone>/<variant>`` (``mri/fit/siren/freeze2``): study = the W&B group, stage
  from the module, backbone from its network, variant = the run folder below ``<stage>/<backbone>/`` (the shipped
  layout ``runs/<study>/<stage>/<backbone>/<variant>``), else ``seed<N>`` (cohort), the protocol and freeze
  depth (fit) or ``layer<j>`` (SAE).
- Metric summaries (``define_metric``): ``val/psnr`` max, ``sae/fvu`` min, … (``SUMMARIES``), so a run's
  summary holds its best value, not its last one.
- A cohort run logs ``checkpoints/last.ckpt`` at the end of its fit as the artifact ``cohort-<study>-<backbone>-
  <variant>`` (type ``model``, online or offline).  A fit or SAE run declares the checkpoint it reads
  (``cohort_ckpt``: a ``.ckpt`` or an exported folder) as its input with ``use_artifact``: an artifact of the
  same name and files, which W&B matches by content to the version the cohort run logged, so the W&B graph
  shows which cohort each result came from.  W&B refuses ``use_artifact`` offline: an offline run records the
  artifact's name and digest in its config (``lineage/*``) instead; log online for the graph.

Rank 0 only; without a ``WandbLogger`` the callback does nothing.  The CLI adds it to every run.
"""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from inr_lightning.callbacks.guards import stage_name

SUMMARIES = {"val/psnr": "max", "val/ssim": "max", "train/loss": "min", "train/psnr": "max",
             "sae/fvu": "min", "sae/psnr": "max", "sae/psnr_drop": "min", "sae/dead_fraction": "min",
             "train/fvu": "min"}
STAGE_DIRS = ("cohort", "fit", "sae")


def variant_of(root: str | Path, stage: str, backbone: str) -> str:
    """The part of run folder ``root`` below ``…/<stage>/<backbone>/`` (``""`` if none or another layout)."""
    parts = Path(root).parts
    for i in range(len(parts) - 1, 0, -1):
        if parts[i - 1] == stage and parts[i] == backbone:
            return "/".join(parts[i + 1:])
    return ""


def artifact_name(study: str, backbone: str, variant: str) -> str:
    """The cohort artifact's name: ``cohort-<study>-<backbone>-<variant>`` in W&B's alphabet."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"cohort-{study}-{backbone}-{variant}").strip("_")


def cohort_artifact_name(config: dict) -> str:
    """The artifact name of the cohort run whose resolved ``config.yaml`` is ``config`` (what both the cohort
    run, which logs it, and every run that reads it compute)."""
    study, backbone = str(config.get("study", "default")), str(config.get("backbone", "siren"))
    root = (config.get("trainer") or {}).get("default_root_dir") or ""
    return artifact_name(study, backbone,
                         variant_of(root, "cohort", backbone) or f"seed{config.get('seed_everything', 0)}")


def _cohort_files(ckpt: Path) -> list[Path]:
    """The files that make the cohort a run reads: the ``.ckpt``, or an exported folder's weights and config."""
    if ckpt.is_dir():
        return [p for p in (ckpt / "model.safetensors", ckpt / "config.yaml") if p.is_file()]
    return [ckpt]


class WandbLineage(L.Callback):
    """See the module docstring.  ``variant``: the run name's last part (default: from the folder or module)."""

    def __init__(self, variant: str | None = None) -> None:
        self.variant = variant
        self.logged = None   # the cohort artifact this run logged (wandb.Artifact), if any
        self.used = None     # the cohort artifact this run declared as its input, if any

    @staticmethod
    def _run(trainer: L.Trainer):
        logger = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        return None if logger is None else logger.experiment

    @staticmethod
    def _backbone(pl_module: L.LightningModule) -> str:
        net = getattr(pl_module, "net", None) or getattr(getattr(pl_module, "readout", None), "net", None)
        return str(net.cfg.backbone) if net is not None else "inr"

    def _variant(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, backbone: str) -> str:
        if self.variant:
            return self.variant
        found = variant_of(trainer.default_root_dir, stage, backbone)
        if found:
            return found
        hp = pl_module.hparams
        if stage == "fit":
            depth = hp.get("last_frozen_layer")
            return f"{hp.get('protocol', 'fit')}{depth if hp.get('protocol') == 'freeze' and depth is not None else ''}"
        if stage == "sae":
            return f"layer{getattr(getattr(pl_module, 'readout', None), 'layer', '?')}"
        import os

        return f"seed{os.environ.get('PL_GLOBAL_SEED', 0)}"

    @rank_zero_only
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        run = self._run(trainer)
        if run is None:
            return
        name, backbone = stage_name(pl_module), self._backbone(pl_module)
        run.name = f"{run.group or 'default'}/{name}/{backbone}/{self._variant(trainer, pl_module, name, backbone)}"
        for key, summary in SUMMARIES.items():
            run.define_metric(key, summary=summary)
        ckpt = self._cohort_ckpt(trainer)
        if ckpt is not None:
            self.declare_input(run, ckpt)

    @staticmethod
    def _cohort_ckpt(trainer: L.Trainer) -> Path | None:
        """The cohort checkpoint a fit or SAE run reads (``data.cohort_ckpt``)."""
        path = getattr(trainer.datamodule, "cohort_ckpt", None)
        return Path(path) if path and Path(path).exists() else None

    def declare_input(self, run, ckpt: Path) -> None:
        import wandb

        from inr_lightning.data.provenance import run_dir_of

        config_path = run_dir_of(ckpt) / "config.yaml"
        config = (yaml.safe_load(config_path.read_text()) or {}) if config_path.is_file() else {}
        artifact = wandb.Artifact(cohort_artifact_name(config), type="model")
        for path in _cohort_files(ckpt):
            artifact.add_file(str(path), name=path.name)
        if run.offline:
            # W&B declares inputs only online; the name and content digest say which cohort version it was.
            run.config.update({"lineage/cohort_artifact": artifact.name, "lineage/cohort_digest": artifact.digest,
                               "lineage/cohort_ckpt": str(ckpt)}, allow_val_change=True)
        else:
            run.use_artifact(artifact)
        self.used = artifact

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if stage_name(pl_module) != "cohort":
            return
        run = self._run(trainer)
        root = Path(trainer.default_root_dir)
        last = root / "checkpoints" / "last.ckpt"
        if run is None or not last.is_file():
            return
        config_path = root / "config.yaml"
        config = (yaml.safe_load(config_path.read_text()) or {}) if config_path.is_file() else {}
        summary = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("val/psnr", "val/ssim")}
        artifact = wandb_artifact(cohort_artifact_name(config), last, {
            "run_dir": str(root), "net": dict(pl_module.net.cfg.to_dict()),
            "num_signals": int(pl_module.net.num_signals), "global_step": int(trainer.global_step), **summary})
        self.logged = run.log_artifact(artifact, aliases=["latest", f"step{trainer.global_step}"])


def wandb_artifact(name: str, path: Path, metadata: dict):
    """A ``model`` artifact holding the file ``path`` (as its own name) with ``metadata``."""
    import wandb

    artifact = wandb.Artifact(name, type="model", metadata=metadata)
    artifact.add_file(str(path), name=path.name)
    return artifact
