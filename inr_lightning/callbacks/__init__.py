"""Lightning callbacks: run outputs (summary.json, config.yaml), monitors, freeze depth, atom reports."""

from inr_lightning.callbacks.atoms import AtomReport
from inr_lightning.callbacks.freeze import StableRankFreeze
from inr_lightning.callbacks.guards import FiniteLoss
from inr_lightning.callbacks.monitors import ReconstructionImages
from inr_lightning.callbacks.outputs import RunConfig, RunSummary

__all__ = ["AtomReport", "FiniteLoss", "ReconstructionImages", "RunConfig", "RunSummary", "StableRankFreeze"]
