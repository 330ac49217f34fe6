"""inr_lightning: cohort-trained implicit neural representations with PyTorch Lightning."""

__version__ = "0.1.0"
