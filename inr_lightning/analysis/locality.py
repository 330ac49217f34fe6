"""Locality metrics of SAE atoms that TopK sparsity does not fix, and their summaries.

TopK fixes every atom's mean firing frequency at k/n_atoms on average, so the share of the grid an atom
covers cannot tell two encoders apart.  These measure *where* and *how* an atom fires instead.  Inputs are
the codes on the full grid, ``vals (P, k)`` and ``idx (P, k)`` (rows in row-major pixel order of ``shape``),
as ``analysis.ablation.encode_grid`` returns them.  Plain torch/numpy/scipy; arrays of length ``n_atoms``,
NaN for atoms that never fire.

- ``mass_radius``: radius around the activation-weighted centroid holding ``fraction`` of the atom's
  activation mass, as a fraction of the image diagonal (compact atoms: small).
- ``tiling_ratio``: mean nearest-neighbour distance of the live atoms' centroids over that of the same
  number of uniform random points in the same rectangle (Clark–Evans style: ≈ 1 random, > 1 regular /
  tiling, < 1 clustered), with the interval the random reference spans.
- ``pearson_with``: Pearson correlation of every atom map with each of several signals on the grid,
  computed from the sparse codes (no dense atom maps).  ``content_signals`` builds the signals the atom
  table uses: the cohort images, their edge magnitude (kornia Sobel) and their foreground masks.
- ``damage_per_support``: a single-atom PSNR drop divided by the atom's support fraction.
- ``median_ci``: median with a percentile-bootstrap 95 % interval.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor


def _pairs(vals: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(row, atom, value) of every firing (z > 0) pair, float64 values on the CPU."""
    vals, idx = vals.detach().double().cpu(), idx.detach().cpu()
    rows, slots = (vals > 0).nonzero(as_tuple=True)
    return rows, idx[rows, slots], vals[rows, slots]


def mass_radius(vals: Tensor, idx: Tensor, n_atoms: int, shape: tuple[int, int], fraction: float = 0.9) -> np.ndarray:
    """Per atom: the smallest radius r (in units of the image diagonal) such that the pixels within r of the
    atom's activation-weighted centroid hold ≥ ``fraction`` of its activation mass Σ z_a."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    height, width = shape
    rows, atoms, w = _pairs(vals, idx)
    y, x = (rows // width).double(), (rows % width).double()
    mass = torch.zeros(n_atoms, dtype=torch.float64).index_add_(0, atoms, w)
    cy = torch.zeros(n_atoms, dtype=torch.float64).index_add_(0, atoms, w * y) / mass
    cx = torch.zeros(n_atoms, dtype=torch.float64).index_add_(0, atoms, w * x) / mass
    dist = torch.sqrt((y - cy[atoms]) ** 2 + (x - cx[atoms]) ** 2).numpy()
    a, wn = atoms.numpy(), w.numpy()
    order = np.lexsort((dist, a))                      # by atom, then by distance
    a, dist, wn = a[order], dist[order], wn[order]
    out = np.full(n_atoms, math.nan)
    if len(a) == 0:
        return out
    starts = np.flatnonzero(np.r_[True, np.diff(a) != 0])
    ends = np.r_[starts[1:], len(a)]
    cum = np.cumsum(wn)
    diagonal = math.hypot(height - 1, width - 1) or 1.0
    for s, e in zip(starts, ends):
        before = cum[s - 1] if s > 0 else 0.0
        part = cum[s:e] - before
        j = int(np.searchsorted(part, fraction * part[-1] * (1 - 1e-12)))
        out[a[s]] = dist[s + min(j, e - s - 1)] / diagonal
    return out


def tiling_ratio(points: np.ndarray, extent: tuple[float, float] = (1.0, 1.0), draws: int = 200,
                 seed: int = 0) -> dict[str, float]:
    """Clark–Evans-style ratio of ``points (n, 2)`` in the rectangle [0, extent[0]] × [0, extent[1]].

    ``ratio``: mean nearest-neighbour distance of the points / its mean over ``draws`` sets of n uniform random
    points in the same rectangle (edge effects are the same on both sides); ``ci_low``/``ci_high``: the ratio
    against the 97.5 % and 2.5 % quantiles of the random sets — a ratio outside them is not random at 95 %.
    NaN for fewer than 2 points.
    """
    points = np.asarray(points, dtype=np.float64)
    points = points[np.isfinite(points).all(1)] if len(points) else points.reshape(0, 2)
    n = len(points)
    if n < 2:
        return {"ratio": math.nan, "ci_low": math.nan, "ci_high": math.nan, "points": n}

    def mean_nn(p: np.ndarray) -> float:
        d, _ = cKDTree(p).query(p, k=2)
        return float(d[:, 1].mean())

    rng = np.random.default_rng(seed)
    ref = np.array([mean_nn(rng.random((n, 2)) * np.asarray(extent)) for _ in range(draws)])
    observed = mean_nn(points)
    return {"ratio": observed / float(ref.mean()), "ci_low": observed / float(np.quantile(ref, 0.975)),
            "ci_high": observed / float(np.quantile(ref, 0.025)), "points": n}


@torch.no_grad()
def content_signals(images: Tensor, threshold: float = 0.05) -> dict[str, Tensor]:
    """Per-pixel signals ``(N, H·W)`` float64 of cohort images ``(N, C, H, W)`` on [−1, 1]: ``image`` (channel
    mean on [0, 1]), ``edges`` (kornia Sobel magnitude of it) and ``foreground`` (image > ``threshold``, 0/1)."""
    import kornia

    unit = ((images.detach().double().cpu() + 1) * 0.5).clamp(0, 1).mean(1, keepdim=True)   # (N, 1, H, W)
    edges = kornia.filters.sobel(unit)
    return {"image": unit.flatten(1), "edges": edges.flatten(1), "foreground": (unit > threshold).double().flatten(1)}


@torch.no_grad()
def pearson_with(vals: Tensor, idx: Tensor, n_atoms: int, signals: Tensor) -> np.ndarray:
    """Pearson correlation ``(n_atoms, M)`` of each atom map z_a (over the P grid points) with each of the
    signals ``(M, P)``; NaN where either is constant (an atom that never fires, an empty mask)."""
    signals = signals.detach().double().cpu()
    num = signals.shape[1]
    rows, atoms, w = _pairs(vals, idx)
    s1 = torch.zeros(n_atoms, dtype=torch.float64).index_add_(0, atoms, w)
    s2 = torch.zeros(n_atoms, dtype=torch.float64).index_add_(0, atoms, w * w)
    cross = torch.zeros(n_atoms, signals.shape[0], dtype=torch.float64)
    for start in range(0, len(rows), 1 << 18):      # bounded memory: (pairs, M) at a time
        r, a, v = rows[start:start + (1 << 18)], atoms[start:start + (1 << 18)], w[start:start + (1 << 18)]
        cross.index_add_(0, a, v[:, None] * signals[:, r].T)
    mean_z = s1 / num
    var_z = (s2 / num - mean_z ** 2).clamp_min(0)
    mean_y, var_y = signals.mean(1), signals.var(1, unbiased=False)
    cov = cross / num - mean_z[:, None] * mean_y[None, :]
    denom = torch.sqrt(var_z[:, None] * var_y[None, :])
    r = torch.where(denom > 1e-300, cov / denom, torch.full_like(cov, math.nan))
    return r.clamp(-1, 1).numpy()


def max_abs(r: np.ndarray) -> np.ndarray:
    """Per row, the largest |r| over the columns (NaN if the row is all NaN)."""
    out = np.full(r.shape[0], math.nan)
    finite = np.isfinite(r).any(1)
    out[finite] = np.nanmax(np.abs(r[finite]), axis=1)
    return out


def damage_per_support(drop_db: np.ndarray, support_fraction: np.ndarray) -> np.ndarray:
    """PSNR drop (dB) per unit support fraction; NaN for atoms that never fire."""
    drop_db, support_fraction = np.asarray(drop_db, dtype=np.float64), np.asarray(support_fraction, dtype=np.float64)
    out = np.full(drop_db.shape, math.nan)
    ok = support_fraction > 0
    out[ok] = drop_db[ok] / support_fraction[ok]
    return out


def median_ci(values, level: float = 0.95, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(median, low, high): the median of the finite values and its percentile-bootstrap ``level`` interval."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    boots = np.median(v[rng.integers(0, len(v), size=(n_boot, len(v)))], axis=1)
    tail = (1 - level) / 2
    return float(np.median(v)), float(np.quantile(boots, tail)), float(np.quantile(boots, 1 - tail))
