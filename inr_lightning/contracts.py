"""What the stages' modules and callbacks may read from the data module they train on.

Lightning hands a module ``trainer.datamodule`` as an untyped object; these protocols name what each stage
reads from it, so a data module of one's own works when it has these members (checked with ``isinstance``)
and a missing one is a clear error instead of an ``AttributeError`` mid-run.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class GridData(Protocol):
    """What a fitting module reads: the full coordinate grid that training batches' ``index`` refers to, and
    that grid as one evaluation batch (``{"coords", "target", "num_coords", "shape"}``)."""

    coords: Tensor  # (H·W, 2) on [−1, 1]

    def full_grid_batch(self) -> dict: ...


@runtime_checkable
class ActivationBatches(Protocol):
    """What ``SAEModule`` needs to train: the width of the activations and a sample of them to initialise from
    (training batches carry the activations themselves as ``batch["x"]``)."""

    d_in: int

    def init_sample(self, n: int, device=...) -> Tensor: ...


@runtime_checkable
class ActivationData(ActivationBatches, Protocol):
    """What the SAE's evaluation, ``AtomReport`` and the Python API read as well: the frozen cohort network and
    the layer whose activations are served, the grid and the activations on it."""

    net: object            # the cohort's ``CohortINR`` (frozen)
    layer: int             # the encoder layer the activations come from
    coords: Tensor         # (H·W, 2) evaluation grid
    resolution: tuple[int, int]

    def describe(self) -> str: ...

    def grid_activations(self, device=...) -> Tensor: ...
