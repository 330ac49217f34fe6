"""Checkpoints: the one safe reader (``read_checkpoint``), the one ``last``/``best`` resolver
(``checkpoint_path``), and the cohort writer/loader every later stage uses.

``torch.load(..., weights_only=True)`` only: a checkpoint that needs arbitrary objects unpickled is refused.
Networks are rebuilt from plain hyper-parameters (``net`` is an ``INRConfig`` dict), never unpickled.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inr_lightning.errors import InputError
from inr_lightning.nn import CohortINR, INRConfig


COHORT_CLASS_PATH = "inr_lightning.models.CohortINRModule"
CKPT_NAMES = ("last", "best")


def checkpoint_path(run: str | Path, ckpt: str | Path = "last") -> Path:
    """``last``/``best`` → ``<run>/checkpoints/<ckpt>.ckpt`` (what Lightning's ``ModelCheckpoint`` writes there);
    any other value is a path of its own."""
    return Path(run) / "checkpoints" / f"{ckpt}.ckpt" if str(ckpt) in CKPT_NAMES else Path(ckpt)


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict:
    """``torch.load(path, weights_only=True)`` on the CPU; an unreadable or refused file is one ``InputError``
    naming ``what`` and the path."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 — any unreadable file is the same user error
        raise InputError(f"{what} '{path}' is not a readable checkpoint ({type(err).__name__}); "
                         "only checkpoints that load with weights_only=True are accepted") from None
    if not isinstance(ckpt, dict):
        raise InputError(f"{what} '{path}' is not a checkpoint written by Lightning (a {type(ckpt).__name__})")
    return ckpt


def save_cohort(path: str | Path, net: CohortINR, class_path: str = COHORT_CLASS_PATH) -> Path:
    """Writes ``net`` as a cohort-stage checkpoint in the layout the cohort stage's Lightning run writes:
    ``hyper_parameters`` (``_class_path``, ``net`` as a plain ``INRConfig`` dict, ``num_signals``,
    ``out_channels``) and ``state_dict`` with ``net.`` prefixes, on the CPU.  ``class_path`` names the
    module that wrote it (another stage's name makes a checkpoint ``load_cohort`` refuses)."""
    path = Path(path)
    if net.encoder.copies != 1:
        raise InputError(f"save_cohort writes a cohort (one shared encoder); this network has "
                         f"{net.encoder.copies} encoder copies, expected 1")
    hp = {"_class_path": class_path, "net": net.cfg.to_dict(), "num_signals": net.num_signals,
          "out_channels": net.out_channels}
    state = {f"net.{k}": v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save({"hyper_parameters": hp, "state_dict": state}, path)
    return path


def load_cohort(path: str | Path) -> tuple[CohortINR, dict]:
    """A cohort-stage checkpoint, or a folder written by ``export`` → (the ``CohortINR`` with its weights, frozen
    and in eval mode; its hyper-parameters).  Every way a path can be wrong is an ``InputError`` naming it."""
    path = Path(path)
    if path.is_dir() and (path / "model.safetensors").is_file():   # a folder written by `export`
        from inr_lightning.export import read_folder

        return _cohort_from(read_folder(path), path)
    if not path.is_file():
        raise InputError(f"cohort checkpoint '{path}' does not exist; run the cohort stage first "
                         "(python -m inr_lightning fit --config configs/cohort/<backbone>.yaml) or fix the path")
    return _cohort_from(read_checkpoint(path, "cohort checkpoint"), path)


def _cohort_from(ckpt: dict, path: Path) -> tuple[CohortINR, dict]:
    """The network of a loaded cohort checkpoint (or exported folder) ``ckpt`` read from ``path``."""
    hp, state = ckpt.get("hyper_parameters") or {}, ckpt.get("state_dict") or {}
    class_path = str(hp.get("_class_path", COHORT_CLASS_PATH))
    if not class_path.endswith(COHORT_CLASS_PATH.rsplit(".", 1)[-1]) or not isinstance(hp.get("net"), dict) \
            or "num_signals" not in hp or "out_channels" not in hp:
        raise InputError(f"'{path}' is not a cohort-stage checkpoint (model {class_path}); expected one written "
                         "by inr_lightning.models.CohortINRModule")
    net = load_net(INRConfig(**hp["net"]), state, int(hp["num_signals"]), int(hp["out_channels"]), 1, path,
                   "cohort checkpoint")
    return net, hp


def load_net(cfg: INRConfig, state: dict, num_signals: int, out_channels: int, copies: int, path: str | Path,
             what: str = "checkpoint") -> CohortINR:
    """A ``CohortINR`` (``copies`` encoder copies) with the ``net.*`` weights of a Lightning ``state_dict``, frozen
    and in eval mode; weights of another architecture are one ``InputError``."""
    net = CohortINR(cfg, num_signals, out_channels, encoder_copies=copies)
    try:
        net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    except RuntimeError as err:
        raise InputError(f"{what} '{path}': weights do not match its architecture ({cfg.backbone}, "
                         f"{cfg.shared_layers}×{cfg.width}): {str(err).splitlines()[-1].strip()}") from None
    return net.eval().requires_grad_(False)
