"""Where a later stage's data comes from: the cohort run it starts from.

A fit or SAE is only meaningful on the data its cohort was trained on — same source, resolution, channels,
aspect and held-out and validation splits.  These helpers read a cohort run's resolved ``config.yaml`` (beside its
``checkpoints/`` folder) so that later stages take those settings from the run itself, never from a second
copy in their own config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.cli import instantiate_class

from inr_lightning.errors import InputError

# The settings that decide which images a run sees and how: a later stage inherits them from its cohort run.
DATA_KEYS = ("source", "resolution", "channels", "aspect", "num_signals", "num_heldout", "num_validation", "seed")


def run_dir_of(ckpt: str | Path) -> Path:
    """``<run>/checkpoints/x.ckpt`` → ``<run>``; a folder written by ``export`` → itself."""
    path = Path(ckpt).resolve()
    return path if path.is_dir() else path.parent.parent   # an exported folder holds its own config.yaml


def run_data_config(ckpt: str | Path) -> tuple[Path, dict]:
    """The ``data`` section (``class_path`` + ``init_args``) of the run that wrote checkpoint ``ckpt``."""
    config = run_dir_of(ckpt) / "config.yaml"
    if not config.is_file():
        raise InputError(f"no config.yaml in the cohort run '{config.parent}' of checkpoint '{ckpt}': the data "
                         "settings are read from the run that trained the cohort; give a checkpoint inside a run "
                         "directory written by `python -m inr_lightning fit`")
    data = (yaml.safe_load(config.read_text()) or {}).get("data")
    if not isinstance(data, dict) or "class_path" not in data:
        raise InputError(f"{config} has no data section with a class_path")
    return config, {"class_path": data["class_path"], "init_args": dict(data.get("init_args") or {})}


def instantiate(spec: dict) -> Any:
    """A saved ``{class_path, init_args}`` spec (plain init arguments) → the object, by Lightning's
    ``instantiate_class``."""
    return instantiate_class((), {"class_path": spec["class_path"], "init_args": dict(spec.get("init_args") or {})})


def same_source(obj: Any, spec: Any) -> bool:
    """Whether a source object is the one a saved ``{class_path, init_args}`` spec describes."""
    if not isinstance(spec, dict) or "class_path" not in spec:
        return False
    cls = type(obj)
    if f"{cls.__module__}.{cls.__qualname__}" != spec["class_path"] and cls.__qualname__ != \
            spec["class_path"].rpartition(".")[2]:
        return False
    given = instantiate(spec)
    return {k: str(v) for k, v in vars(given).items()} == {k: str(v) for k, v in vars(obj).items()}


def describe_source(spec_or_obj: Any) -> str:
    """A short, readable name of a source: ``MRISlices(axis=coronal)``."""
    if isinstance(spec_or_obj, dict):
        args = spec_or_obj.get("init_args") or {}
        name = spec_or_obj["class_path"].rpartition(".")[2]
    else:
        args, name = vars(spec_or_obj), type(spec_or_obj).__name__
    return name + "(" + ", ".join(f"{k}={v}" for k, v in args.items()) + ")"
