"""Safe loading of cohort checkpoints, shared by every stage that starts from one.

``torch.load(..., weights_only=True)`` only: a checkpoint that would need to unpickle arbitrary objects is
refused.  The architecture is rebuilt from the checkpoint's plain hyper-parameters (``net`` is an
``INRConfig`` dict), never from a pickled module.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inr_lightning.errors import InputError
from inr_lightning.nn import CohortINR, INRConfig


def load_cohort(path: str | Path) -> tuple[CohortINR, dict]:
    """A cohort-stage checkpoint → (the ``CohortINR`` with its weights, frozen and in eval mode; its
    hyper-parameters).  Every way a path can be wrong is an ``InputError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cohort checkpoint '{path}' does not exist; run the cohort stage first "
                         "(python -m inr_lightning fit --config configs/cohort/<backbone>.yaml) or fix the path")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 — any unreadable file is the same user error
        raise InputError(f"cohort checkpoint '{path}' is not a readable checkpoint ({type(err).__name__}); "
                         "only checkpoints that load with weights_only=True are accepted") from None
    hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    state = ckpt.get("state_dict", {}) if isinstance(ckpt, dict) else {}
    class_path = str(hp.get("_class_path", "CohortINRModule"))
    if not class_path.endswith("CohortINRModule") or not isinstance(hp.get("net"), dict) \
            or "num_signals" not in hp or "out_channels" not in hp:
        raise InputError(f"'{path}' is not a cohort-stage checkpoint (model {class_path}); expected one written "
                         "by inr_lightning.models.CohortINRModule")
    cfg = INRConfig(**hp["net"])
    net = CohortINR(cfg, int(hp["num_signals"]), int(hp["out_channels"]))
    try:
        net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    except RuntimeError as err:
        raise InputError(f"cohort checkpoint '{path}': weights do not match its architecture ({cfg.backbone}, "
                         f"{cfg.shared_layers}×{cfg.width}): {str(err).splitlines()[-1].strip()}") from None
    return net.eval().requires_grad_(False), hp
