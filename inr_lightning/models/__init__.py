"""One thin LightningModule per stage; the networks come from ``inr_lightning.nn``."""

from inr_lightning.models.cohort import CohortINRModule
from inr_lightning.models.fitting import SignalFitModule
from inr_lightning.models.sae import SAEModule

__all__ = ["CohortINRModule", "SAEModule", "SignalFitModule"]
