"""Plain PyTorch networks (no Lightning below this line)."""

from inr_lightning.nn.inr import BACKBONES, CohortINR, Encoder, Heads, INRConfig, to_unit
from inr_lightning.nn.layers import BatchedLinear, FourierFeatures, ReLULayer, SineLayer
from inr_lightning.nn.readout import LayerReadout, SampledActivations
from inr_lightning.nn.sae import TopKSAE

__all__ = ["BACKBONES", "BatchedLinear", "CohortINR", "Encoder", "FourierFeatures", "Heads", "INRConfig",
           "LayerReadout", "ReLULayer", "SampledActivations", "SineLayer", "TopKSAE", "to_unit"]
