"""DataModule for SAEs: coordinates → frozen cohort encoder up to one layer → activations.

Training batches are coordinates drawn per step — from the pixel grid (without replacement) or uniformly
from the continuous square [−1, 1]² — and the activations of encoder layer ``layer`` at them.  As in
``data/grid.py`` the draw depends only on (seed, epoch, step), so under DDP every rank knows the global
batch and takes the disjoint shard ``[rank::world]``.  Evaluation serves the full grid (each rank its
shard), with the cohort images, so a module can measure the PSNR through an SAE spliced in at that layer.

The activations are computed on the training device in ``on_after_batch_transfer`` (the frozen network
lives here and follows the batch's device), so batches only carry coordinates through the loader.

The cohort images come from the cohort run's ``config.yaml`` beside ``checkpoints/`` (its ``data``
section, forced to ``split: cohort``), or from ``cohort_data`` when given.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from inr_lightning.checkpoints import load_cohort
from inr_lightning.data.cohort import SignalDataModule
from inr_lightning.data.grid import StepStream, rank_and_world, step_indices
from inr_lightning.errors import InputError
from inr_lightning.nn import CohortINR

COORDS = ("grid", "continuous")


def _instantiate(spec: Any) -> Any:
    """``{class_path, init_args}`` specs of a saved config → objects (recursively)."""
    if isinstance(spec, dict) and "class_path" in spec:
        module, _, name = spec["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{k: _instantiate(v) for k, v in (spec.get("init_args") or {}).items()})
    if isinstance(spec, dict):
        return {k: _instantiate(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_instantiate(v) for v in spec]
    return spec


def cohort_data_from_run(ckpt_path: str | Path, resolution: int | list[int] | None = None) -> SignalDataModule:
    """Rebuild the cohort's ``SignalDataModule`` from ``<run>/config.yaml`` (``<run>/checkpoints/x.ckpt``)."""
    config = Path(ckpt_path).resolve().parent.parent / "config.yaml"
    if not config.is_file():
        raise InputError(f"no config.yaml beside the cohort checkpoint's run ({config}); "
                         "give the cohort images as data.init_args.cohort_data")
    data = (yaml.safe_load(config.read_text()) or {}).get("data")
    if not isinstance(data, dict) or "class_path" not in data:
        raise InputError(f"{config} has no data section with a class_path")
    data = {**data, "init_args": {**(data.get("init_args") or {}), "split": "cohort"}}
    if resolution is not None:
        data["init_args"]["resolution"] = resolution
    module = _instantiate(data)
    if not isinstance(module, SignalDataModule):
        raise InputError(f"{config}: data is {type(module).__name__}, expected a SignalDataModule")
    return module


def step_coordinates(coords: Tensor, mode: str, batch_size: int, seed: int, epoch: int, step: int) -> Tensor:
    """Global coordinates of one training step (identical on every rank)."""
    if mode == "grid":
        return coords[step_indices(len(coords), batch_size, seed, epoch, step)]
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + step)
    return torch.rand(batch_size, 2, generator=g) * 2 - 1


class ActivationSteps(StepStream):
    """``steps`` batches ``{"coords": (b, 2), "num_samples": B}``: this rank's shard of each step's B coordinates."""

    def __init__(self, coords: Tensor, mode: str, batch_size: int, steps: int, seed: int,
                 epoch_fn: Callable[[], int]) -> None:
        super().__init__(steps, seed, epoch_fn)
        self.coords, self.mode, self.batch_size = coords, mode, batch_size

    def batch(self, epoch: int, step: int, rank: int, world: int) -> dict:
        glob = step_coordinates(self.coords, self.mode, self.batch_size, self.seed, epoch, step)
        return {"coords": glob[rank::world], "num_samples": len(glob)}


class GridShard(IterableDataset):
    """One evaluation batch: this rank's shard ``[rank::world]`` of the full grid and the cohort targets there."""

    def __init__(self, coords: Tensor, targets: Tensor, shape: tuple[int, int]) -> None:
        self.coords, self.targets, self.shape = coords, targets, shape

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[dict]:
        rank, world = rank_and_world()
        yield {"coords": self.coords[rank::world], "target": self.targets[:, rank::world],
               "num_coords": len(self.coords), "shape": self.shape}


class ActivationDataModule(L.LightningDataModule):
    """Activations of one encoder layer of a cohort INR, for training SAEs.

    Args:
        cohort_ckpt: path of a cohort checkpoint (``runs/<study>/cohort/<backbone>/checkpoints/last.ckpt``).
        layer: encoder layer (0-based) whose post-nonlinearity activations are served.
        resolution: evaluation grid (and ``grid`` training grid), ``H`` or ``[H, W]``; ``None`` = the cohort's.
        batch_size: coordinates per training step (all ranks together).
        coords: ``grid`` (pixel grid, no replacement within a step) or ``continuous`` (uniform on [−1, 1]²).
        steps_per_epoch: training steps between two evaluations.
        seed: seed of the coordinate draws.
        untrained_control: replace the encoder's layers by a random initialisation of the same architecture
            (the control of SCIENCE.md §5; FFMLP keeps its fixed Fourier features; heads stay trained, so
            PSNR through this encoder is not meaningful, only the SAE's own metrics and atoms are).
        control_seed: seed of that random initialisation.
        eval_chunk: coordinates per forward pass when computing evaluation activations.
        cohort_data: the cohort images; ``None`` = rebuilt from the cohort run's ``config.yaml``.
    """

    def __init__(self, cohort_ckpt: str, layer: int = 2, resolution: int | list[int] | None = None,
                 batch_size: int = 8192, coords: str = "grid", steps_per_epoch: int = 100, seed: int = 0,
                 untrained_control: bool = False, control_seed: int = 0, eval_chunk: int = 65536,
                 cohort_data: SignalDataModule | None = None) -> None:
        super().__init__()
        if coords not in COORDS:
            raise InputError(f"coords must be one of {', '.join(COORDS)}, got {coords!r}")
        for name, value in (("batch_size", batch_size), ("steps_per_epoch", steps_per_epoch), ("eval_chunk", eval_chunk)):
            if int(value) < 1:
                raise InputError(f"{name} must be ≥ 1, got {value!r}")
        self.cohort_ckpt, self.mode, self.batch_size = str(cohort_ckpt), coords, int(batch_size)
        self.steps_per_epoch, self.seed, self.eval_chunk = int(steps_per_epoch), int(seed), int(eval_chunk)
        self.untrained_control = bool(untrained_control)
        self.net, self.cohort_hparams = load_cohort(cohort_ckpt)
        depth = len(self.net.encoder)
        if not 0 <= int(layer) < depth:
            raise InputError(f"layer={layer!r} is out of range: the cohort encoder has layers 0..{depth - 1}")
        self.layer = int(layer)
        if self.untrained_control:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(control_seed)
                fresh = CohortINR(self.net.cfg, self.net.num_signals, self.net.out_channels)
            self.net.encoder.layers.load_state_dict(fresh.encoder.layers.state_dict())
        cohort = cohort_data if cohort_data is not None else cohort_data_from_run(cohort_ckpt, resolution)
        if cohort.num_signals != self.net.num_signals or cohort.num_channels != self.net.out_channels:
            raise InputError(f"cohort data has {cohort.num_signals} signals × {cohort.num_channels} channels, the "
                             f"checkpoint {self.net.num_signals} × {self.net.out_channels}")
        self.images = cohort.images            # (N, C, H, W) on [−1, 1]
        self.coords = cohort.coords             # (H·W, 2)
        self.targets = cohort.targets           # (N, H·W, C)
        self.resolution = cohort.resolution

    # -- facts for the model ----------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.net.cfg.width

    # No ``num_signals``/``num_channels`` attributes on purpose: the CLI links those into the model when the data
    # has them, and an SAE has no heads to size (the cohort's count is ``len(self.images)``).

    @torch.no_grad()
    def activations_at(self, coords: Tensor) -> Tensor:
        """``(P, 2)`` → ``(P, width)`` activations of ``layer``, on ``coords``' device, in chunks."""
        self.net.to(coords.device)
        out = [self.net.encoder(c.unsqueeze(0), stop=self.layer + 1)[0] for c in coords.split(self.eval_chunk)]
        return torch.cat(out) if out else coords.new_zeros(0, self.d_in)

    def grid_activations(self, device: torch.device | str = "cpu") -> Tensor:
        """Activations on the full evaluation grid ``(H·W, width)``."""
        return self.activations_at(self.coords.to(device))

    def init_sample(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        """A deterministic sample of ≤ ``n`` activations from the training distribution (same on every rank)."""
        if self.mode == "grid":
            idx = step_indices(len(self.coords), n, self.seed, -1, 0)
            return self.activations_at(self.coords[idx].to(device))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7)
        return self.activations_at((torch.rand(n, 2, generator=g) * 2 - 1).to(device))

    # -- loaders ----------------------------------------------------------------------------------
    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        steps = ActivationSteps(self.coords, self.mode, self.batch_size, self.steps_per_epoch, self.seed, self._epoch)
        return DataLoader(steps, batch_size=None)

    def _full_grid(self) -> DataLoader:
        return DataLoader(GridShard(self.coords, self.targets, self.resolution), batch_size=None)

    val_dataloader = _full_grid
    test_dataloader = _full_grid

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if isinstance(batch, dict) and "coords" in batch and "x" not in batch:
            batch["x"] = self.activations_at(batch["coords"])
        return batch
