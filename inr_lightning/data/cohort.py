"""DataModules for cohort, held-out and validation signals (the splits: docs/architecture.md, "The stages").

``SignalDataModule`` is configured in full (the cohort stage); ``CohortRunDataModule`` serves the data of a
cohort *run*, every setting read from its ``config.yaml`` unless given (the fit stage).  Both report their
settings (``summary()``) and which image is signal *i* (``signal_table`` → ``signals.csv``).
"""

from __future__ import annotations

import inspect
import sys
from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from inr_lightning.checkpoints import load_cohort
from inr_lightning.data.grid import CoordinateSteps, make_grid
from inr_lightning.data.provenance import DATA_KEYS, describe_source, instantiate, run_data_config, same_source
from inr_lightning.data.sources import SignalSource
from inr_lightning.data.transforms import Aspect, prepare
from inr_lightning.errors import InputError, check_choice
from inr_lightning.nn import CohortINR

Split = Literal["cohort", "heldout", "validation"]
SPLITS = get_args(Split)


def heldout_positions(total: int, num_heldout: int) -> list[int]:
    """Indices of the held-out images among ``total``: evenly spaced, never the first or the last."""
    if num_heldout == 0:
        return []
    return [int(round(x)) for x in np.linspace(0, total - 1, num_heldout + 2)[1:-1]]


def validation_positions(total: int, num_heldout: int, num_validation: int) -> list[int]:
    """Indices of the validation images among ``total``: evenly spaced among the images not held out, never
    the first or the last of those (``heldout_positions`` over what the held-out ones leave)."""
    held = set(heldout_positions(total, num_heldout))
    rest = [i for i in range(total) if i not in held]
    return [rest[j] for j in heldout_positions(len(rest), num_validation)]


def split_images(source: SignalSource, num_signals: int | None, num_heldout: int, split: str,
                 num_validation: int = 0) -> list[tuple]:
    """The (name, raw image) pairs of one split: ``num_signals`` cohort images, ``num_heldout`` held out and
    ``num_validation`` for validation, from the source's first ``num_signals + num_heldout + num_validation``."""
    named = source.load_named(None if num_signals is None else num_signals + num_heldout + num_validation)
    if num_heldout + num_validation >= len(named):
        if num_validation == 0:
            raise InputError(f"num_heldout={num_heldout} leaves no cohort among {len(named)} images")
        raise InputError(f"num_heldout={num_heldout} and num_validation={num_validation} leave no cohort among "
                         f"{len(named)} images")
    positions = {"heldout": set(heldout_positions(len(named), num_heldout)),
                 "validation": set(validation_positions(len(named), num_heldout, num_validation))}
    if split != "cohort":
        return [item for i, item in enumerate(named) if i in positions[split]]
    return [item for i, item in enumerate(named) if i not in positions["heldout"] | positions["validation"]]


class SignalDataModule(L.LightningDataModule):
    """Serves one set of signals: training steps over coordinates, and the full grid for val/test.

    Args:
        source: where images come from (``inr_lightning.data.sources``).
        resolution: output size, ``H`` or ``[H, W]``.
        channels: 1 (grayscale) or 3 (RGB).
        aspect: ``crop``, ``pad`` or ``stretch`` (see ``transforms``).
        num_signals: cohort size; ``None`` takes every image the source has, minus the held-out and validation ones.
        num_heldout: images held out for the fitting stage.
        num_validation: images kept for choosing the fitting stage's settings (neither cohort nor held out).
        split: ``cohort``, ``heldout`` or ``validation``: which of the three sets this module serves.
        coords_per_step: coordinates per training step (shared by all signals); ``None`` = full grid.
        steps_per_epoch: training steps between two validations.
        seed: seed of the coordinate draws.
    """

    def __init__(self, source: SignalSource, resolution: int | list[int] = 64, channels: int = 1,
                 aspect: Aspect = "crop", num_signals: int | None = 10, num_heldout: int = 0, num_validation: int = 0,
                 split: Split = "cohort", coords_per_step: int | None = None, steps_per_epoch: int = 100,
                 seed: int = 0) -> None:
        super().__init__()
        check_choice("split", split, SPLITS)
        res = [resolution, resolution] if isinstance(resolution, int) else list(resolution)
        if len(res) != 2 or min(res) < 2:
            raise InputError(f"resolution must be an integer ≥ 2 or [height, width], got {resolution!r}")
        for name, value, low in (("num_signals", num_signals, 1), ("num_heldout", num_heldout, 0),
                                 ("num_validation", num_validation, 0), ("coords_per_step", coords_per_step, 1),
                                 ("steps_per_epoch", steps_per_epoch, 1)):
            if value is not None and value < low:
                raise InputError(f"{name} must be ≥ {low}, got {value!r}")
        if split == "heldout" and num_heldout == 0:
            raise InputError("split: heldout needs num_heldout ≥ 1")
        if split == "validation" and num_validation == 0:
            raise InputError("split: validation needs num_validation ≥ 1")
        self.source, self.resolution, self.channels, self.aspect = source, (res[0], res[1]), channels, aspect
        self.num_cohort, self.num_heldout, self.num_validation = num_signals, num_heldout, num_validation
        self.split = split
        self.coords_per_step, self.steps_per_epoch, self.seed = coords_per_step, steps_per_epoch, seed
        # Loaded eagerly: the model's head count is linked to ``num_signals`` before training starts,
        # and a bad folder or image should fail at start-up, not after the first epoch.
        named = split_images(source, num_signals, num_heldout, split, num_validation)
        self.signal_names = [name for name, _ in named]
        self.images = prepare([image for _, image in named], self.resolution, self.channels, self.aspect)
        self.coords = make_grid(*self.resolution)
        # (N, H·W, C): every signal's values at every grid coordinate, the layout the loss uses.
        self.targets = self.images.flatten(2).transpose(1, 2).contiguous()
        self._summary: dict = {
            "data/source": describe_source(source), "data/resolution": list(self.resolution),
            "data/channels": channels, "data/aspect": aspect, "data/split": split,
            "data/num_signals": num_signals, "data/num_heldout": num_heldout, "data/num_validation": num_validation,
            "data/served": self.num_signals, "data/seed": seed}

    def summary(self) -> dict:
        """Entries for ``summary.json``: the data settings used (and, for a cohort run's data, where from)."""
        return dict(self._summary)

    def signal_table(self) -> list[dict]:
        """One row per served signal: which image it is, its split and its preprocessing (``signals.csv``)."""
        size = "x".join(map(str, self.resolution))
        return [{"index": i, "name": name, "split": self.split, "resolution": size, "channels": self.channels,
                 "aspect": self.aspect} for i, name in enumerate(self.signal_names)]

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

    def full_grid_batch(self) -> dict:
        """Every coordinate and every signal as one batch (``contracts.GridData``); models evaluate it in chunks."""
        return {"coords": self.coords, "target": self.targets, "num_coords": len(self.coords),
                "shape": self.resolution}

    def _full_grid(self) -> DataLoader:
        return DataLoader([self.full_grid_batch()], batch_size=None)

    val_dataloader = _full_grid
    test_dataloader = _full_grid
    predict_dataloader = _full_grid


def _normal(key: str, value):
    """A data setting in the form two configs can be compared in."""
    if key == "resolution" and isinstance(value, int):
        return [value, value]
    return list(value) if isinstance(value, tuple) else value


class CohortRunDataModule(SignalDataModule):
    """The data of a cohort run — by default its held-out signals — for the stages that start from it.

    Every data setting (``source``, ``resolution``, ``channels``, ``aspect``, ``num_signals``, ``num_heldout``,
    ``num_validation``, ``seed``) is read from the cohort run's resolved ``config.yaml`` (``<run>/config.yaml``
    beside ``<run>/checkpoints/``); a setting the config lacks is ``SignalDataModule``'s default.  A setting
    given here overrides it: each one that differs is printed and recorded (``data/overrides``).  Fitting images the cohort was trained on is refused unless
    ``allow_cohort_signals`` is true.

    Args:
        cohort_ckpt: a checkpoint of the cohort run, or a folder written by ``export``: its network is ``cohort``.
        split: ``heldout`` (default), ``validation`` (needs a cohort run with ``num_validation ≥ 1``) or
            ``cohort`` (needs ``allow_cohort_signals: true``).
        source, resolution, channels, aspect, num_signals, num_heldout, num_validation, seed: ``null`` = the
            cohort run's.
        coords_per_step, steps_per_epoch: this stage's own (see ``SignalDataModule``).
        allow_cohort_signals: allow a split or override that serves images the cohort was trained on.
    """

    @property
    def full_grid(self) -> dict:
        """The full grid as one batch, which the CLI hands to the fitting module (``SignalFitModule(grid=…)``);
        only the later stages' data has it, so the cohort stage's module is never handed one."""
        return self.full_grid_batch()

    @cached_property
    def cohort(self) -> CohortINR:
        """The cohort run's network (``load_cohort``), which the CLI hands to the fitting module
        (``SignalFitModule(cohort=…)``): the path is given once, here.  Loaded once (jsonargparse reads a link's
        source twice; building the network draws from the seeded random stream)."""
        return load_cohort(self.cohort_ckpt)[0]

    def __init__(self, cohort_ckpt: str, split: Split = "heldout", source: SignalSource | None = None,
                 resolution: int | list[int] | None = None, channels: int | None = None, aspect: Aspect | None = None,
                 num_signals: int | None = None, num_heldout: int | None = None, num_validation: int | None = None,
                 seed: int | None = None, coords_per_step: int | None = None, steps_per_epoch: int = 100,
                 allow_cohort_signals: bool = False) -> None:
        config, spec = run_data_config(cohort_ckpt)
        self.cohort_ckpt = str(cohort_ckpt)
        cohort = dict(spec["init_args"])
        for key, param in inspect.signature(SignalDataModule).parameters.items():  # a data section written by hand
            if key in DATA_KEYS and key not in cohort and param.default is not inspect.Parameter.empty:
                cohort[key] = param.default
        given = {"source": source, "resolution": resolution, "channels": channels, "aspect": aspect,
                 "num_signals": num_signals, "num_heldout": num_heldout, "num_validation": num_validation,
                 "seed": seed}
        overrides = {}
        for key in DATA_KEYS:
            value = given[key]
            if value is None:
                continue
            if key == "source":
                if not same_source(value, cohort.get("source")):
                    overrides[key] = {"value": describe_source(value), "cohort": describe_source(cohort["source"])}
            elif _normal(key, value) != _normal(key, cohort.get(key)):
                overrides[key] = {"value": _normal(key, value), "cohort": _normal(key, cohort.get(key))}
        settings = {k: cohort.get(k) if given[k] is None else given[k] for k in DATA_KEYS}
        if source is None:
            settings["source"] = instantiate(cohort["source"])
        self.cohort_run, self.overrides = config.parent, overrides
        for key, o in overrides.items():
            print(f"data: {key} = {o['value']} overrides the cohort run's {o['cohort']} ({config})", file=sys.stderr)
        super().__init__(settings["source"], settings["resolution"] or 64, settings["channels"], settings["aspect"],
                         settings["num_signals"], settings["num_heldout"], settings["num_validation"], split,
                         coords_per_step, steps_per_epoch, settings["seed"])
        if not allow_cohort_signals:
            self._refuse_cohort_images(settings, cohort, config)
        self._summary.update({"data/cohort_run": str(config.parent), "data/overrides": overrides,
                                   "data/allow_cohort_signals": allow_cohort_signals})

    def _refuse_cohort_images(self, settings: dict, cohort: dict, config: Path) -> None:
        """Refuses to serve an image the cohort was trained on (compared as loaded, before resizing)."""
        how = "set allow_cohort_signals: true if that is what you want"
        if self.split == "cohort":
            raise InputError(f"split: cohort serves the images the cohort run '{config.parent}' was trained on; "
                             f"use split: heldout, or {how}")
        if "source" in self.overrides:
            print(f"data: source differs from the cohort run's; its images are not checked against the cohort's "
                  f"({config})", file=sys.stderr)
            return
        if not ({"num_signals", "num_heldout", "num_validation"} & set(self.overrides)):
            return  # the cohort run's own split: its held-out and validation images are not in its cohort
        # Compared as loaded, before resizing: loaded once more, only when the split sizes were overridden.
        trained = split_images(settings["source"], cohort.get("num_signals"), cohort["num_heldout"], "cohort",
                               cohort["num_validation"])
        served = split_images(settings["source"], settings["num_signals"], settings["num_heldout"], self.split,
                              settings["num_validation"])
        for name, image in served:
            if any(t.shape == image.shape and torch.equal(t, image) for _, t in trained):
                raise InputError(f"signal {name!r} was in the training cohort of '{config.parent}' (num_signals="
                                 f"{cohort.get('num_signals')}, num_heldout={cohort['num_heldout']}, num_validation="
                                 f"{cohort['num_validation']}): this split would fit a signal the cohort was trained "
                                 f"on; keep the cohort run's num_signals, num_heldout and num_validation, or {how}")
