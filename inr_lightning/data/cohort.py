"""DataModule for cohort signals and held-out signals.

The source's images are split deterministically: ``num_heldout`` of them, spread evenly through the
source's order (for MRI: through the brain), are held out for fitting new signals; the other
``num_signals`` form the cohort.  ``split`` picks which of the two this module serves.
"""

from __future__ import annotations

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from inr_lightning.data.grid import CoordinateSteps, make_grid
from inr_lightning.data.sources import SignalSource
from inr_lightning.data.transforms import prepare
from inr_lightning.errors import InputError

SPLITS = ("cohort", "heldout")


def heldout_positions(total: int, num_heldout: int) -> list[int]:
    """Indices of the held-out images among ``total``: evenly spaced, never the first or the last."""
    if num_heldout == 0:
        return []
    return [int(round(x)) for x in np.linspace(0, total - 1, num_heldout + 2)[1:-1]]


class SignalDataModule(L.LightningDataModule):
    """Serves one set of signals: training steps over coordinates, and the full grid for val/test.

    Args:
        source: where images come from (``inr_lightning.data.sources``).
        resolution: output size, ``H`` or ``[H, W]``.
        channels: 1 (grayscale) or 3 (RGB).
        aspect: ``crop``, ``pad`` or ``stretch`` (see ``transforms``).
        num_signals: cohort size; ``None`` takes every image the source has, minus the held-out ones.
        num_heldout: images held out for the fitting stage.
        split: ``cohort`` or ``heldout``: which of the two sets this module serves.
        coords_per_step: coordinates per training step (shared by all signals); ``None`` = full grid.
        steps_per_epoch: training steps between two validations.
        seed: seed of the coordinate draws.
    """

    def __init__(self, source: SignalSource, resolution: int | list[int] = 64, channels: int = 1,
                 aspect: str = "crop", num_signals: int | None = 10, num_heldout: int = 0, split: str = "cohort",
                 coords_per_step: int | None = None, steps_per_epoch: int = 100, seed: int = 0) -> None:
        super().__init__()
        if split not in SPLITS:
            raise InputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        res = [resolution, resolution] if isinstance(resolution, int) else list(resolution)
        if len(res) != 2 or min(res) < 2:
            raise InputError(f"resolution must be an integer ≥ 2 or [height, width], got {resolution!r}")
        for name, value, low in (("num_signals", num_signals, 1), ("num_heldout", num_heldout, 0),
                                 ("coords_per_step", coords_per_step, 1), ("steps_per_epoch", steps_per_epoch, 1)):
            if value is not None and value < low:
                raise InputError(f"{name} must be ≥ {low}, got {value!r}")
        if split == "heldout" and num_heldout == 0:
            raise InputError("split: heldout needs num_heldout ≥ 1")
        self.source, self.resolution, self.channels, self.aspect = source, (res[0], res[1]), channels, aspect
        self.num_cohort, self.num_heldout, self.split = num_signals, num_heldout, split
        self.coords_per_step, self.steps_per_epoch, self.seed = coords_per_step, steps_per_epoch, seed
        # Loaded eagerly: the model's head count is linked to ``num_signals`` before training starts,
        # and a bad folder or image should fail at start-up, not after the first epoch.
        self.images = self._load()
        self.coords = make_grid(*self.resolution)
        # (N, H·W, C): every signal's values at every grid coordinate, the layout the loss uses.
        self.targets = self.images.flatten(2).transpose(1, 2).contiguous()

    def _load(self):
        count = None if self.num_cohort is None else self.num_cohort + self.num_heldout
        images = self.source.load(count)
        if self.num_heldout >= len(images):
            raise InputError(f"num_heldout={self.num_heldout} leaves no cohort among {len(images)} images")
        held = set(heldout_positions(len(images), self.num_heldout))
        keep = [i for i in range(len(images)) if (i in held) == (self.split == "heldout")]
        return prepare([images[i] for i in keep], self.resolution, self.channels, self.aspect)

    @property
    def num_signals(self) -> int:
        return self.images.shape[0]

    @property
    def num_channels(self) -> int:
        return self.images.shape[1]

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        steps = CoordinateSteps(self.coords, self.targets, self.coords_per_step, self.steps_per_epoch, self.seed,
                                self._epoch)
        return DataLoader(steps, batch_size=None)

    def _full_grid(self) -> DataLoader:
        # One batch: every coordinate and every signal; the model evaluates it in chunks.
        batch = {"coords": self.coords, "target": self.targets, "num_coords": len(self.coords),
                 "shape": self.resolution}
        return DataLoader([batch], batch_size=None)

    val_dataloader = _full_grid
    test_dataloader = _full_grid
    predict_dataloader = _full_grid
