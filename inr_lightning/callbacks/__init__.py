"""Lightning callbacks: run outputs (summary.json, config.yaml, metrics.csv), monitors, early stopping, freeze
depth, atom reports."""

from inr_lightning.callbacks.atoms import AtomReport
from inr_lightning.callbacks.freeze import StableRankFreeze
from inr_lightning.callbacks.guards import EarlyStopping, FiniteLoss
from inr_lightning.callbacks.lineage import WandbLineage
from inr_lightning.callbacks.monitors import ReconstructionImages
from inr_lightning.callbacks.outputs import FinalValidation, LocalMetrics, RunConfig, RunSummary

__all__ = ["AtomReport", "EarlyStopping", "FinalValidation", "FiniteLoss", "LocalMetrics", "ReconstructionImages",
           "RunConfig", "RunSummary", "StableRankFreeze", "WandbLineage"]
