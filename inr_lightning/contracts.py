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
class ActivationData(Protocol):
    """What ``SAEModule``, ``AtomReport`` and the Python API read from an SAE's data: the frozen cohort network
    and the layer whose activations are served, the grid, the cohort images, and the activations themselves."""

    net: object            # the cohort's ``CohortINR`` (frozen)
    layer: int             # the encoder layer the activations come from
    coords: Tensor         # (H·W, 2) evaluation grid
    resolution: tuple[int, int]

    @property
    def d_in(self) -> int: ...

    def describe(self) -> str: ...

    def init_sample(self, n: int, device=...) -> Tensor: ...

    def grid_activations(self, device=...) -> Tensor: ...
