"""DataModule for SAEs: coordinates → frozen cohort encoder up to one layer → activations.

Training coordinates come from the pixel grid (``coords: grid``; activations precomputed once), the continuous
square [−1, 1]² (``continuous``: new every step) or a fixed ``pool`` of uniform coordinates; a disjoint
held-out set measures held-out FVU.  Draws depend only on (seed, epoch, step), so DDP ranks take disjoint shards
of one global batch.  The cohort images and data settings come from the cohort run; ``readout`` is what the
SAE module receives (the CLI links ``data.readout`` into the model).  Background: ``docs/sae.md``, "Training".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal, get_args

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from inr_lightning.checkpoints import load_cohort
from inr_lightning.data.cohort import CohortRunDataModule, SignalDataModule
from inr_lightning.data.grid import StepStream, rank_and_world, step_generator, step_indices
from inr_lightning.data.provenance import run_dir_of
from inr_lightning.errors import InputError, check_choice
from inr_lightning.nn.readout import LayerReadout

Coords = Literal["grid", "continuous", "pool"]
COORDS = get_args(Coords)
POOL_STREAM, HELDOUT_STREAM = 11, 13   # seed offsets of the pool and the held-out draws (step draws use others)


def uniform_coordinates(n: int, seed: int, stream: int) -> Tensor:
    """``(n, 2)`` uniform on [−1, 1]², a function of (seed, stream) only (the step draws never use this seed)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + 500_009 * int(stream) + 1)
    return torch.rand(int(n), 2, generator=g) * 2 - 1


def disjoint_from(candidates: Tensor, train: Tensor | None) -> Tensor:
    """The rows of ``candidates (M, 2)`` that are no row of ``train (P, 2)`` (exact float equality), order kept."""
    if train is None or not len(train) or not len(candidates):
        return candidates
    seen = set(map(tuple, train.tolist()))
    keep = [i for i, row in enumerate(candidates.tolist()) if tuple(row) not in seen]
    return candidates[torch.tensor(keep, dtype=torch.long)]


def cohort_data_from_run(ckpt_path: str, resolution: int | list[int] | None = None) -> CohortRunDataModule:
    """The cohort images of the run that wrote ``ckpt_path`` (``<run>/checkpoints/x.ckpt``), every setting
    from its ``config.yaml``; ``resolution`` overrides the run's (printed and recorded as an override)."""
    return CohortRunDataModule(ckpt_path, split="cohort", resolution=resolution, allow_cohort_signals=True)


def step_coordinates(coords: Tensor, mode: str, batch_size: int, seed: int, epoch: int, step: int) -> Tensor:
    """Global coordinates of one training step (identical on every rank)."""
    if mode == "grid":
        return coords[step_indices(len(coords), batch_size, seed, epoch, step)]
    g = step_generator(seed, epoch, step)
    return torch.rand(batch_size, 2, generator=g) * 2 - 1


class ActivationSteps(StepStream):
    """``steps`` batches of this rank's shard of each step's B coordinates: ``{"index": (b,), "num_samples": B}``
    (rows of the grid) with ``indices: true``, else ``{"coords": (b, 2), "num_samples": B}``."""

    def __init__(self, coords: Tensor, mode: str, batch_size: int, steps: int, seed: int,
                 epoch_fn: Callable[[], int], indices: bool = False) -> None:
        super().__init__(steps, seed, epoch_fn)
        self.coords, self.mode, self.batch_size, self.indices = coords, mode, batch_size, indices

    def batch(self, epoch: int, step: int, rank: int, world: int) -> dict:
        if self.indices:  # grid mode: the same draw as ``step_coordinates``, as row indices
            glob = step_indices(len(self.coords), self.batch_size, self.seed, epoch, step)
            return {"index": glob[rank::world], "num_samples": len(glob)}
        glob = step_coordinates(self.coords, self.mode, self.batch_size, self.seed, epoch, step)
        return {"coords": glob[rank::world], "num_samples": len(glob)}


class GridShard(IterableDataset):
    """One evaluation batch: this rank's shard ``[rank::world]`` of the full grid (coordinates and row indices)
    and the cohort targets there (the activations ``x`` are added after the transfer to the device)."""

    def __init__(self, coords: Tensor, targets: Tensor, shape: tuple[int, int]) -> None:
        self.coords, self.targets, self.shape = coords, targets, shape

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[dict]:
        rank, world = rank_and_world()
        yield {"coords": self.coords[rank::world], "index": torch.arange(len(self.coords))[rank::world],
               "target": self.targets[:, rank::world], "num_coords": len(self.coords), "shape": self.shape}


class ActivationDataModule(L.LightningDataModule):
    """Activations of one encoder layer of a cohort INR, for training SAEs.

    Args:
        cohort_ckpt: path of a cohort checkpoint (``runs/<study>/cohort/<backbone>/checkpoints/last.ckpt``);
            for the untrained-encoder control, one of a cohort run with ``freeze_random_prefix ≥ layer``.
        layer: encoder layer (0-based) whose post-nonlinearity activations are served.
        resolution: evaluation grid (and ``grid`` training grid), ``H`` or ``[H, W]``; ``None`` = the cohort's.
        batch_size: coordinates per training step (all ranks together).
        coords: ``grid`` (pixel grid, no replacement within a step), ``continuous`` (uniform on [−1, 1]², new
            every step) or ``pool`` (rows of a fixed set of ``pool_size`` uniform coordinates, no replacement
            within a step; the pool's activations are computed once with ``precompute``).
        steps_per_epoch: training steps between two evaluations.
        seed: seed of the coordinate draws.
        backbone: the backbone the config expects (``${backbone}`` in the shipped configs); a checkpoint of
            another backbone is refused.  ``None``: not checked.
        precompute: with ``coords: grid``, compute the layer's activations on the grid once and gather rows.
        eval_chunk: coordinates per forward pass when computing activations.
        cohort_data: the cohort images; ``None`` = rebuilt from the cohort run's ``config.yaml``.
        pool_size: coordinates in the ``pool`` (2¹⁷ by default: ≥ 10⁵ distinct training samples).
        heldout_coords: uniform coordinates, disjoint from the training ones, for the held-out FVU (0: none).
    """

    def __init__(self, cohort_ckpt: str, layer: int = 2, resolution: int | list[int] | None = None,
                 batch_size: int = 4096, coords: Coords = "grid", steps_per_epoch: int = 250, seed: int = 0,
                 backbone: str | None = None, precompute: bool = True,
                 eval_chunk: int = 65536, cohort_data: SignalDataModule | None = None, pool_size: int = 131072,
                 heldout_coords: int = 16384) -> None:
        super().__init__()
        check_choice("coords", coords, COORDS)
        for name, value in (("batch_size", batch_size), ("steps_per_epoch", steps_per_epoch), ("eval_chunk", eval_chunk),
                            ("pool_size", pool_size)):
            if int(value) < 1:
                raise InputError(f"{name} must be ≥ 1, got {value!r}")
        if int(heldout_coords) < 0:
            raise InputError(f"heldout_coords must be ≥ 0, got {heldout_coords!r}")
        self.cohort_ckpt, self.mode, self.batch_size = str(cohort_ckpt), coords, int(batch_size)
        self.steps_per_epoch, self.seed, self.eval_chunk = int(steps_per_epoch), int(seed), int(eval_chunk)
        self.precompute = bool(precompute)
        self.pool_size, self.num_heldout_coords = int(pool_size), int(heldout_coords)
        self.net, self.cohort_hparams = load_cohort(cohort_ckpt)
        self.backbone = self.net.cfg.backbone
        if backbone is not None and backbone != self.backbone:
            raise InputError(f"backbone '{backbone}' of the config disagrees with the cohort checkpoint "
                             f"'{cohort_ckpt}' ({self.backbone}); set backbone: {self.backbone} or use a "
                             f"{backbone} cohort checkpoint")
        depth = len(self.net.encoder)
        if not 0 <= int(layer) < depth:
            raise InputError(f"layer={layer!r} is out of range: the cohort encoder has layers 0..{depth - 1}")
        self.layer = int(layer)
        prefix = self.cohort_hparams.get("freeze_random_prefix")
        self.random_prefix = None if prefix is None else int(prefix)
        self.encoder = "untrained" if self.random_prefix is not None and self.layer <= self.random_prefix else "cohort"
        cohort = cohort_data if cohort_data is not None else cohort_data_from_run(cohort_ckpt, resolution)
        if cohort.num_signals != self.net.num_signals or cohort.num_channels != self.net.out_channels:
            raise InputError(f"cohort data has {cohort.num_signals} signals × {cohort.num_channels} channels, the "
                             f"checkpoint {self.net.num_signals} × {self.net.out_channels}")
        self.images = cohort.images            # (N, C, H, W) on [−1, 1]
        self.coords = cohort.coords             # (H·W, 2)
        self.targets = cohort.targets           # (N, H·W, C)
        self.resolution = cohort.resolution
        self.signal_table = getattr(cohort, "signal_table", None)   # the cohort images: signals.csv
        self._table: Tensor | None = None       # the layer's activations on the grid (precompute)
        self.pool = uniform_coordinates(self.pool_size, self.seed, POOL_STREAM) if coords == "pool" else None
        self._pool_table: Tensor | None = None  # the layer's activations on the pool (precompute)
        self.readout = LayerReadout(self.net, self.layer, chunk=self.eval_chunk, sampler=self.init_sample,
                                    encoder=self.encoder)
        summary = getattr(cohort, "summary", None)
        cohort_extra = dict(summary() if callable(summary) else {})
        self._summary: dict = {
            "data/cohort_ckpt": str(cohort_ckpt),
            "data/cohort_run": str(getattr(cohort, "cohort_run", run_dir_of(cohort_ckpt))),
            "data/source": cohort_extra.get("data/source"),
            "data/resolution": list(self.resolution),
            "data/overrides": cohort_extra.get("data/overrides", {}),
            "data/backbone": self.backbone,
            "data/layer": self.layer,
            "data/coords": self.mode,
            "data/pool_size": self.pool_size if self.mode == "pool" else None,
            "data/freeze_random_prefix": self.random_prefix,
            "sae/encoder": self.encoder,
        }

    def summary(self) -> dict:
        """Entries for ``summary.json``: where the data came from, which encoder the SAE reads, and how many
        distinct training coordinates (``data/train_coords``: the grid, the pool, or steps × batch when
        continuous) and activation values (× width) it saw."""
        out = dict(self._summary)
        distinct = self.train_coords_distinct()
        out["data/train_coords"] = distinct
        out["data/train_values"] = None if distinct is None else distinct * self.d_in
        return out

    def train_coordinates(self) -> Tensor | None:
        """Every coordinate training can draw (the grid or the pool); ``None`` when continuous (unbounded)."""
        return {"grid": self.coords, "pool": self.pool}.get(self.mode)

    def train_coords_distinct(self) -> int | None:
        """Distinct training coordinates: the grid's or the pool's size; when continuous, every step's batch is
        new, so steps × batch (``None`` before a trainer sets the steps)."""
        finite = self.train_coordinates()
        if finite is not None:
            return len(finite)
        trainer = self.trainer
        steps = int(trainer.global_step) if trainer is not None else 0
        return steps * self.batch_size if steps > 0 else None

    def heldout_coordinates(self) -> Tensor:
        """``heldout_coords`` uniform coordinates that no training step draws: a stream of their own, minus any
        coordinate of the grid or pool (continuous training draws come from other generators, so a shared
        point has probability 0)."""
        drawn = uniform_coordinates(self.num_heldout_coords, self.seed, HELDOUT_STREAM)
        return disjoint_from(drawn, self.train_coordinates())

    def heldout_activations(self, device: torch.device | str = "cpu") -> Tensor:
        """The layer's activations at ``heldout_coordinates()``, ``(M, width)``."""
        return self.activations_at(self.heldout_coordinates().to(device))

    def heldout_images(self) -> Tensor | None:
        """``(M, C, H, W)`` on [−1, 1]: the cohort run's held-out images (never trained on) at this grid, for the
        memorisation control (edge alignment with them vs with the cohort's own); ``None`` when the run has
        none or its data cannot be rebuilt."""
        if getattr(self, "_heldout_images", False) is False:
            try:
                from inr_lightning.data.cohort import CohortRunDataModule

                own = not self._summary["data/overrides"].get("resolution")   # the cohort's grid: no override line
                self._heldout_images = CohortRunDataModule(self.cohort_ckpt, split="heldout",
                                                           resolution=None if own else list(self.resolution)).images
            except (InputError, OSError, KeyError, ValueError):
                self._heldout_images = None
        return self._heldout_images

    def train_sample_activations(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        """≤ ``n`` activations at training coordinates (grid or pool rows; when continuous, the coordinates of
        the first training step): what the training FVU is measured on, beside the held-out one."""
        finite = self.train_coordinates()
        if finite is None:
            return self.activations_at(step_coordinates(self.coords, "continuous", n, self.seed, 0, 0).to(device))
        idx = step_indices(len(finite), n, self.seed, -2, 0)
        return self._train_table(device)[idx.to(device)] if self.precompute else self.activations_at(finite[idx].to(device))

    def _train_table(self, device: torch.device | str) -> Tensor:
        """The precomputed activations of the training set (the grid's or the pool's)."""
        if self.mode != "pool":
            return self.grid_activations(device)
        if self._pool_table is None or self._pool_table.device != torch.device(device):
            self._pool_table = self.activations_at(self.pool.to(device))
        return self._pool_table

    # -- facts ------------------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.readout.width

    def describe(self) -> str:
        """``SIREN layer 2 (cohort encoder)``: what a figure title names."""
        return self.readout.describe()

    # No ``num_signals``/``num_channels`` attributes on purpose: the CLI links those into the model when the data
    # has them, and an SAE has no heads to size (the cohort's count is ``len(self.images)``).

    def activations_at(self, coords: Tensor) -> Tensor:
        """``(P, 2)`` → ``(P, width)`` activations of ``layer``, on ``coords``' device, in chunks."""
        return self.readout.activations(coords)

    def grid_activations(self, device: torch.device | str = "cpu") -> Tensor:
        """Activations on the full grid ``(H·W, width)``: the precomputed table (computed on first use, moved
        to ``device``), or computed afresh with ``precompute: false``."""
        if not self.precompute:
            return self.activations_at(self.coords.to(device))
        if self._table is None or self._table.device != torch.device(device):
            self._table = self.activations_at(self.coords.to(device))
        return self._table

    def init_sample(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        """A deterministic sample of ≤ ``n`` activations from the training distribution (same on every rank)."""
        finite = self.train_coordinates()
        if finite is not None:
            idx = step_indices(len(finite), n, self.seed, -1, 0)
            if self.precompute:
                return self._train_table(device)[idx.to(device)]
            return self.activations_at(finite[idx].to(device))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7)
        return self.activations_at((torch.rand(n, 2, generator=g) * 2 - 1).to(device))

    # -- loaders ----------------------------------------------------------------------------------
    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        finite = self.train_coordinates()   # grid or pool: rows of a finite set, drawn like the grid's
        steps = ActivationSteps(self.coords if finite is None else finite, "continuous" if finite is None else "grid",
                                self.batch_size, self.steps_per_epoch, self.seed, self._epoch,
                                indices=finite is not None and self.precompute)
        return DataLoader(steps, batch_size=None)

    def _full_grid(self) -> DataLoader:
        return DataLoader(GridShard(self.coords, self.targets, self.resolution), batch_size=None)

    val_dataloader = _full_grid
    test_dataloader = _full_grid

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Adds the activations ``x``: to training batches, and to evaluation batches (beside ``target``)."""
        if not isinstance(batch, dict) or "x" in batch:
            return batch
        if "index" in batch and self.precompute:   # training rows of the grid or pool; evaluation rows of the grid
            table = self._train_table if "target" not in batch else self.grid_activations
            batch["x"] = table(batch["index"].device)[batch["index"]]
        elif "coords" in batch:
            batch["x"] = self.activations_at(batch["coords"])
        return batch
