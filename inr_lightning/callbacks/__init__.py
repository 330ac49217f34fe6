"""Lightning callbacks: run outputs (summary.json, config.yaml) and monitors."""

from inr_lightning.callbacks.monitors import ReconstructionImages
from inr_lightning.callbacks.outputs import RunConfig, RunSummary

__all__ = ["ReconstructionImages", "RunConfig", "RunSummary"]
