"""Dataset-level SAE metrics, accumulated in float64 as mergeable sums (chunks, DDP ranks).

``batch_sums`` turns one chunk into sums; sums of several chunks (or ranks) are added elementwise; then
``metrics_from_sums`` gives

- FVU = Σ‖x − x̂‖² / Σ‖x − μ‖² (explained variance = 1 − FVU), μ the dataset mean;
- L0: mean number of atoms with z > 0 per sample;
- dead fraction: atoms that never fire (z > 0) on the data; dense fraction: atoms firing on more than
  ``dense_threshold`` of the samples;
- cosine: mean per-sample cos(x, x̂); relative bias: E‖x̂‖² / E⟨x, x̂⟩.

The one-shot functions (``fvu``, ``l0``, …) compute the same from whole tensors, for tests and notebooks.
PSNR helpers work on the training range [−1, 1] and report PSNR on [0, 1] (mapped and clamped).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from inr_lightning.nn.inr import to_unit

SUM_KEYS = ("n", "sum_x", "sum_sq", "sse", "l0", "cos", "xhat_sq", "x_dot_xhat", "fire")


def _unit(x: Tensor) -> Tensor:
    return to_unit(x.double())


def fire_counts(vals: Tensor, idx: Tensor, n_atoms: int) -> Tensor:
    """How often each atom has z > 0, ``(n_atoms,)`` float64."""
    return torch.bincount(idx[vals > 0], minlength=n_atoms).double()


def batch_sums(x: Tensor, x_hat: Tensor, vals: Tensor, idx: Tensor, n_atoms: int) -> dict[str, Tensor]:
    x, x_hat = x.double(), x_hat.double()
    dot = (x * x_hat).sum(-1)
    cos = dot / (x.norm(dim=-1) * x_hat.norm(dim=-1)).clamp_min(1e-30)
    return {
        "n": torch.tensor(float(x.shape[0]), dtype=torch.float64, device=x.device),
        "sum_x": x.sum(0),
        "sum_sq": (x ** 2).sum(),
        "sse": ((x - x_hat) ** 2).sum(),
        "l0": (vals > 0).sum().double(),
        "cos": cos.sum(),
        "xhat_sq": (x_hat ** 2).sum(),
        "x_dot_xhat": dot.sum(),
        "fire": fire_counts(vals, idx, n_atoms),
    }


def add_sums(a: dict[str, Tensor] | None, b: dict[str, Tensor]) -> dict[str, Tensor]:
    return dict(b) if a is None else {key: a[key] + b[key] for key in b}


def metrics_from_sums(s: dict[str, Tensor], dense_threshold: float = 0.1) -> dict[str, float]:
    n = float(s["n"])
    total_var = float(s["sum_sq"] - (s["sum_x"] ** 2).sum() / n)
    fvu_value = float(s["sse"]) / total_var if total_var > 0 else math.nan
    fire = s["fire"]
    return {
        "fvu": fvu_value,
        "explained_variance": 1.0 - fvu_value,
        "l0": float(s["l0"]) / n,
        "dead_fraction": float((fire == 0).double().mean()),
        "dense_fraction": float((fire > dense_threshold * n).double().mean()),
        "cosine": float(s["cos"]) / n,
        "rel_bias": float(s["xhat_sq"] / s["x_dot_xhat"]),
    }


# -- one-shot versions ---------------------------------------------------------------------------------
def fvu(x: Tensor, x_hat: Tensor) -> float:
    x, x_hat = x.double(), x_hat.double()
    return float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def l0(vals: Tensor) -> float:
    return float((vals > 0).double().sum(-1).mean())


def dead_fraction(counts: Tensor) -> float:
    return float((counts == 0).double().mean())


def dense_fraction(counts: Tensor, num_samples: int, threshold: float = 0.1) -> float:
    return float((counts > threshold * num_samples).double().mean())


def cosine(x: Tensor, x_hat: Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(x.double(), x_hat.double(), dim=-1).mean())


def relative_bias(x: Tensor, x_hat: Tensor) -> float:
    x, x_hat = x.double(), x_hat.double()
    return float((x_hat ** 2).sum() / (x * x_hat).sum())


# -- PSNR ----------------------------------------------------------------------------------------------
def sse_per_image(pred: Tensor, target: Tensor) -> Tensor:
    """``(N, P, C)`` on [−1, 1] → ``(N,)`` float64 sums of squared errors on [0, 1] (clamped)."""
    return ((_unit(pred) - _unit(target)) ** 2).sum(dim=(1, 2))


def psnr_from_sse(sse: Tensor, count: int | float | Tensor) -> Tensor:
    """PSNR on [0, 1] from a sum of squared errors over ``count`` values (elementwise)."""
    if isinstance(count, Tensor):
        count = count.to(device=sse.device, dtype=torch.float64)
    return 10 * torch.log10(count / sse.double())


# -- memorisation --------------------------------------------------------------------------------------
def parameter_count(module: torch.nn.Module) -> int:
    """Trainable parameters of ``module`` (a ``TopKSAE``: 2·n_atoms·d_in + n_atoms + d_in); buffers (the input
    scale, the whitener) are statistics of the data, not fitted by gradient, and are not counted."""
    return int(sum(p.numel() for p in module.parameters()))


def values_per_parameter(train_values: int | None, parameters: int) -> float:
    """Activation values the SAE trained on (distinct coordinates × width) per SAE parameter: below ~1 a
    dictionary can store its training set; NaN when the count is unknown."""
    return math.nan if not train_values or parameters <= 0 else float(train_values) / float(parameters)


@torch.no_grad()
def sae_fvu(sae, x: Tensor, chunk: int = 65536) -> float:
    """FVU (float64) of ``sae`` on the activations ``x (P, d)``, against ``x``'s own mean, in chunks."""
    sums = None
    for start in range(0, len(x), chunk):
        xc = x[start:start + chunk]
        out = sae(xc)
        sums = add_sums(sums, batch_sums(xc, out.x_hat, out.vals, out.idx, sae.n_atoms))
    return metrics_from_sums(sums)["fvu"] if sums is not None else math.nan


def generalisation(sae, train_x: Tensor, heldout_x: Tensor, train_values: int | None, chunk: int = 65536) -> dict:
    """``summary.json`` entries of the memorisation check: FVU on training coordinates and on held-out ones
    (disjoint), their ratio, and activation values per SAE parameter."""
    params = parameter_count(sae)
    train, held = sae_fvu(sae, train_x, chunk), sae_fvu(sae, heldout_x, chunk) if len(heldout_x) else math.nan
    return {"sae/fvu_train_coords": train, "sae/fvu_heldout_coords": held,
            "sae/fvu_heldout_over_train": held / train if train > 0 else math.nan,
            "sae/heldout_coords": int(len(heldout_x)), "sae/parameters": params,
            "sae/train_values": train_values, "sae/values_per_parameter": values_per_parameter(train_values, params)}
