"""One thin LightningModule per stage; the networks come from ``inr_lightning.nn``."""

from inr_lightning.models.cohort import CohortINRModule

__all__ = ["CohortINRModule"]
