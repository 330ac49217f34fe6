"""What the stages' modules receive and what modules and callbacks may read from the data module.

Lightning hands a module ``trainer.datamodule`` as an untyped object; these protocols name what each stage
reads from it or is handed (the SAE module receives its ``readout``: ``ActivationSource``/``LayerOutputs``, and
reads batches only), so an object of one's own works when it has these members (checked with ``isinstance``)
and a missing one is a clear error instead of an ``AttributeError`` mid-run.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class GridData(Protocol):
    """What a fitting stage's data module serves besides batches: the full coordinate grid that training
    batches' ``index`` refers to, as one evaluation batch (``{"coords", "target", "num_coords", "shape"}``);
    the CLI hands it to the module (``SignalFitModule(grid=…)``, from ``CohortRunDataModule.full_grid``)."""

    coords: Tensor  # (H·W, 2) on [−1, 1]

    def full_grid_batch(self) -> dict: ...


@runtime_checkable
class ActivationSource(Protocol):
    """What ``SAEModule`` needs to train, handed to it as ``readout``: the width of the activations and a
    deterministic sample of them to initialise from (training batches carry the activations themselves as
    ``batch["x"]``).  ``nn.readout.LayerReadout`` and ``nn.readout.SampledActivations`` have it."""

    @property
    def width(self) -> int: ...

    def sample(self, n: int, device=...) -> Tensor: ...


@runtime_checkable
class LayerOutputs(ActivationSource, Protocol):
    """What the SAE's downstream term and evaluation read as well (``nn.readout.LayerReadout``): the frozen cohort
    network from the layer on, ``(P, width)`` activations → ``(N, P, C)`` outputs of every head."""

    layer: int

    def outputs_from(self, x: Tensor) -> Tensor: ...

    def describe(self) -> str: ...


@runtime_checkable
class ActivationData(Protocol):
    """What ``AtomReport`` and the Python API read from an SAE run's data module besides batches: the readout,
    the grid, the activations and the cohort images on it."""

    readout: LayerOutputs
    layer: int             # the encoder layer the activations come from
    coords: Tensor         # (H·W, 2) evaluation grid
    targets: Tensor        # (N, H·W, C) on [−1, 1]
    images: Tensor         # (N, C, H, W) on [−1, 1]
    resolution: tuple[int, int]

    def describe(self) -> str: ...

    def grid_activations(self, device=...) -> Tensor: ...
