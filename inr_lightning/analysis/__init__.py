"""Pure functions on trained networks (no Lightning): stable rank, image metrics."""

from inr_lightning.analysis.stable_rank import stable_rank

__all__ = ["stable_rank"]
