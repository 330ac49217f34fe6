"""Signals, their preprocessing, coordinate grids and the DataModules."""

from inr_lightning.data.activations import ActivationDataModule
from inr_lightning.data.cohort import CohortRunDataModule, SignalDataModule
from inr_lightning.data.sources import (
                                        HuggingFaceImages,
                                        ImageFolder,
                                        LFWFaces,
                                        MRISlices,
                                        SignalSource,
                                        SkimageImages,
                                        Synthetic,
)

__all__ = ["ActivationDataModule", "CohortRunDataModule", "HuggingFaceImages", "ImageFolder", "LFWFaces", "MRISlices", "SignalDataModule",
           "SignalSource", "SkimageImages", "Synthetic"]
