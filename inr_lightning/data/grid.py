"""Coordinate grids and the coordinates each training step uses.

A step uses the full grid or ``coords_per_step`` coordinates drawn without replacement — the same
coordinates for every signal.  The draw depends only on (seed, epoch, step), never on the process, so
under DDP every rank knows the step's global coordinate set and takes the disjoint shard ``idx[rank::world]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import IterableDataset


def make_grid(height: int, width: int) -> Tensor:
    """Uniform grid on [−1, 1]² (both ends included, as SIREN and STRAINER) as ``(H·W, 2)`` rows of (y, x),
    row-major like the image."""
    ys, xs = torch.linspace(-1, 1, height), torch.linspace(-1, 1, width)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The random generator of one training step: a function of (seed, epoch, step) only, so every rank and
    every resumed run draws the same numbers for that step."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + step)


def step_indices(num_coords: int, coords_per_step: int | None, seed: int, epoch: int, step: int) -> Tensor:
    """Global coordinate indices of one training step (identical on every rank)."""
    if coords_per_step is None or coords_per_step >= num_coords:
        return torch.arange(num_coords)
    return torch.randperm(num_coords, generator=step_generator(seed, epoch, step))[:coords_per_step]


class StepStream(IterableDataset):
    """One epoch of ``steps`` training batches whose global content depends only on (seed, epoch, step);
    subclasses build a step's batch for this rank in ``batch``."""

    def __init__(self, steps: int, seed: int, epoch_fn: Callable[[], int]) -> None:
        self.steps, self.seed, self.epoch_fn = steps, seed, epoch_fn

    def __len__(self) -> int:
        return self.steps

    def batch(self, epoch: int, step: int, rank: int, world: int) -> dict:
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict]:
        rank, world = rank_and_world()
        epoch = self.epoch_fn()
        for step in range(self.steps):
            yield self.batch(epoch, step, rank, world)


class CoordinateSteps(StepStream):
    """``steps`` training batches of one epoch: coordinates and every signal's targets at them.

    Each batch is ``{"coords": (p, 2), "target": (N, p, C), "num_coords": P, "index": (p,)}`` where ``p`` is
    this rank's shard, ``P`` the global number of coordinates of the step (the loss normalises by ``P``) and
    ``index`` the rows of ``coords`` (the full grid) the shard was taken from — what a model that caches
    activations on the full grid (frozen-prefix caching) gathers with.
    """

    def __init__(self, coords: Tensor, targets: Tensor, coords_per_step: int | None, steps: int, seed: int,
                 epoch_fn: Callable[[], int]) -> None:
        super().__init__(steps, seed, epoch_fn)
        self.coords, self.targets, self.coords_per_step = coords, targets, coords_per_step

    def batch(self, epoch: int, step: int, rank: int, world: int) -> dict:
        idx = step_indices(len(self.coords), self.coords_per_step, self.seed, epoch, step)
        local = idx[rank::world]
        return {"coords": self.coords[local], "target": self.targets[:, local], "num_coords": len(idx),
                "index": local}
