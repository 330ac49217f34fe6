"""Atom maps, localization statistics and single-atom ablations of an SAE spliced into a cohort INR.

Everything here is plain torch/numpy/scipy (no Lightning).  Inputs: a ``TopKSAE``, the frozen ``CohortINR``,
the layer the SAE reads, the activations ``x (P, d)`` of that layer on the full grid, and the cohort targets
``(N, P, C)`` on [−1, 1].  PSNR is measured on [0, 1] (mapped, clamped), as everywhere in the project.

**Ablation of atom a**: z_a = 0 everywhere, decode, splice in at the layer, run the rest of
the encoder and every head, compare with the *un-ablated SAE path*.  The error-preserving variant uses
x' = x − z_a·d_a instead (the SAE's error stays in), compared with the plain INR path (x itself).

**Fast path.**  Every layer after the SAE acts on each coordinate separately, so ablating atom a changes the
output only at coordinates where z_a > 0.  ``ablate_all`` therefore forwards one row per (coordinate, firing
atom) pair — at most k rows per coordinate, i.e. all atoms together cost ≤ k full-grid passes instead of
n_atoms — and accumulates per-atom, per-image squared errors on each atom's support.  The whole-image error
of an ablation is the un-ablated total minus the un-ablated error on the support plus the ablated error on
the support.  ``ablate_naive`` recomputes the full grid for one atom (the reference the tests compare with).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from inr_lightning.analysis.sae_metrics import _unit


def _chunks(n: int, chunk: int):
    return ((s, min(s + chunk, n)) for s in range(0, n, chunk))


@torch.no_grad()
def encode_grid(sae, x: Tensor, chunk: int = 65536) -> tuple[Tensor, Tensor]:
    """``(vals, idx)`` of every row of ``x``, each ``(P, k)``."""
    parts = [sae.encode(x[a:b]) for a, b in _chunks(len(x), chunk)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.no_grad()
def _forward_rows(net, layer: int, h: Tensor, chunk: int) -> Tensor:
    """Remaining layers and every head on rows ``h (m, d)`` → ``(N, m, C)``."""
    return torch.cat([net.forward_from(h[a:b].unsqueeze(0), layer) for a, b in _chunks(len(h), chunk)], dim=1)


def _sq_err(pred: Tensor, target: Tensor) -> Tensor:
    """``(N, m, C)`` pairs → ``(N, m)`` float64 squared errors on [0, 1], summed over channels."""
    return ((_unit(pred) - _unit(target)) ** 2).sum(-1)


def _db(ratio: Tensor) -> Tensor:
    return 10 * torch.log10(ratio)


@torch.no_grad()
def ablate_all(sae, net, layer: int, x: Tensor, target: Tensor, chunk: int = 65536) -> dict[str, Tensor]:
    """Every single-atom ablation on every image, by the fast path.

    Returns (float64, CPU): ``support_count (A,)``, ``support_fraction (A,)``; ``drop (A, N)`` PSNR drop over the
    whole image vs the un-ablated SAE path, ``drop_support (A, N)`` the same measured on the atom's support
    only (NaN for atoms that never fire); ``drop_ep``/``drop_ep_support`` for the error-preserving variant
    (vs the INR path); ``psnr_sae (N,)`` and ``psnr_inr (N,)``; ``pairs``: rows forwarded.
    """
    num_coords, (n_img, _, channels) = len(x), target.shape
    n_atoms, device = sae.n_atoms, x.device
    vals, idx = encode_grid(sae, x, chunk)
    x_hat = torch.cat([sae.decode(vals[a:b], idx[a:b]) for a, b in _chunks(num_coords, chunk)])
    err_sae = _sq_err(_forward_rows(net, layer, x_hat, chunk), target)  # (N, P)
    err_inr = _sq_err(_forward_rows(net, layer, x, chunk), target)
    rows, slots = (vals > 0).nonzero(as_tuple=True)
    atoms = idx[rows, slots]
    acc = {name: torch.zeros(n_atoms, n_img, dtype=torch.float64, device=device)
           for name in ("abl", "base", "ep", "base_ep")}
    for a, b in _chunks(len(rows), chunk):
        r, s, at = rows[a:b], slots[a:b], atoms[a:b]
        v = vals[r].clone()
        v[torch.arange(len(r), device=device), s] = 0
        h = sae.decode(v, idx[r])                                 # x̂ without atom a, at a's support
        h_ep = x[r] - vals[r, s, None] * sae.W_dec[at]            # x − z_a·d_a
        tgt = target[:, r]
        acc["abl"].index_add_(0, at, _sq_err(_forward_rows(net, layer, h, chunk), tgt).T)
        acc["ep"].index_add_(0, at, _sq_err(_forward_rows(net, layer, h_ep, chunk), tgt).T)
        acc["base"].index_add_(0, at, err_sae[:, r].T)
        acc["base_ep"].index_add_(0, at, err_inr[:, r].T)
    count = torch.bincount(atoms, minlength=n_atoms).double()
    total_sae, total_inr = err_sae.sum(1), err_inr.sum(1)                      # (N,)
    fires = (count > 0)[:, None]
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=device)
    out = {
        "support_count": count,
        "support_fraction": count / num_coords,
        "drop": _db((total_sae - acc["base"] + acc["abl"]) / total_sae),
        "drop_support": torch.where(fires, _db(acc["abl"] / acc["base"]), nan),
        "drop_ep": _db((total_inr - acc["base_ep"] + acc["ep"]) / total_inr),
        "drop_ep_support": torch.where(fires, _db(acc["ep"] / acc["base_ep"]), nan),
        "psnr_sae": _db(num_coords * channels / total_sae),
        "psnr_inr": _db(num_coords * channels / total_inr),
    }
    out = {k: v.cpu() for k, v in out.items()}
    out["pairs"] = len(rows)
    return out


@torch.no_grad()
def ablated_output(sae, net, layer: int, x: Tensor, atom: int, error_preserving: bool = False,
                   chunk: int = 65536) -> Tensor:
    """The full-grid output ``(N, P, C)`` with atom ``atom`` ablated, recomputed everywhere (reference path)."""
    vals, idx = encode_grid(sae, x, chunk)
    if error_preserving:
        z_a = (vals * (idx == atom)).sum(-1, keepdim=True)
        h = x - z_a * sae.W_dec[atom]
    else:
        v = vals.masked_fill(idx == atom, 0)
        h = torch.cat([sae.decode(v[a:b], idx[a:b]) for a, b in _chunks(len(x), chunk)])
    return _forward_rows(net, layer, h, chunk)


@torch.no_grad()
def ablate_naive(sae, net, layer: int, x: Tensor, target: Tensor, atom: int, error_preserving: bool = False,
                 chunk: int = 65536) -> tuple[Tensor, Tensor]:
    """One atom by full recomputation: ``(drop (N,), drop_support (N,))`` as in ``ablate_all``."""
    vals, idx = encode_grid(sae, x, chunk)
    support = ((idx == atom) & (vals > 0)).any(-1)
    if error_preserving:
        base = _forward_rows(net, layer, x, chunk)
    else:
        x_hat = torch.cat([sae.decode(vals[a:b], idx[a:b]) for a, b in _chunks(len(x), chunk)])
        base = _forward_rows(net, layer, x_hat, chunk)
    err_base = _sq_err(base, target)
    err_abl = _sq_err(ablated_output(sae, net, layer, x, atom, error_preserving, chunk), target)
    drop = _db(err_abl.sum(1) / err_base.sum(1))
    drop_support = _db(err_abl[:, support].sum(1) / err_base[:, support].sum(1))
    return drop.cpu(), drop_support.cpu()


# -- atom maps and localization ------------------------------------------------------------------------
def atom_map(vals: Tensor, idx: Tensor, atom: int, shape: tuple[int, int]) -> Tensor:
    """z_a over the grid, ``(H, W)``."""
    return (vals * (idx == atom)).sum(-1).reshape(shape)


def atom_statistics(vals: Tensor, idx: Tensor, n_atoms: int, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Per-atom localization statistics on the grid (arrays of length ``n_atoms``, float64):

    - ``fire_count``: coordinates where z_a > 0; ``support_fraction``: the same as a share of the grid
      (= firing frequency on the grid);
    - ``mean_activation``: mean of z_a over the grid (how the gallery ranks atoms);
    - ``centroid_row``, ``centroid_col``: activation-weighted centroid in [0, 1] image units;
    - ``spread``: activation-weighted RMS distance from the centroid, in image units (side = 1);
    - ``components``: connected components of the support (8-connectivity).
    Atoms that never fire get 0 counts and NaN for centroid and spread.
    """
    height, width = shape
    vals, idx = vals.detach().double().cpu(), idx.detach().cpu()
    num_coords = vals.shape[0]
    pos = torch.arange(num_coords)
    row = (pos // width).double() / max(height - 1, 1)
    col = (pos % width).double() / max(width - 1, 1)
    fired = vals > 0
    r, s = fired.nonzero(as_tuple=True)
    atoms, w = idx[r, s], vals[r, s]

    def wsum(values: Tensor) -> Tensor:
        return torch.zeros(n_atoms, dtype=torch.float64).index_add_(0, atoms, values)

    count = torch.bincount(atoms, minlength=n_atoms).double()
    mass = wsum(w)
    cy, cx = wsum(w * row[r]) / mass, wsum(w * col[r]) / mass
    var = wsum(w * (row[r] ** 2 + col[r] ** 2)) / mass - cy ** 2 - cx ** 2
    components = np.zeros(n_atoms)
    order = torch.argsort(atoms, stable=True)
    sorted_atoms, sorted_rows = atoms[order].numpy(), r[order].numpy()
    bounds = np.flatnonzero(np.diff(sorted_atoms)) + 1
    structure = np.ones((3, 3), dtype=bool)
    for group in np.split(np.arange(len(sorted_atoms)), bounds):
        if len(group) == 0:
            continue
        mask = np.zeros(num_coords, dtype=bool)
        mask[sorted_rows[group]] = True
        components[sorted_atoms[group[0]]] = ndimage.label(mask.reshape(height, width), structure=structure)[1]
    return {
        "fire_count": count.numpy(),
        "support_fraction": (count / num_coords).numpy(),
        "mean_activation": (mass / num_coords).numpy(),
        "centroid_row": cy.numpy(),
        "centroid_col": cx.numpy(),
        "spread": var.clamp_min(0).sqrt().numpy(),
        "components": components,
    }
