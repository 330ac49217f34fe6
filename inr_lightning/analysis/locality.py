"""Locality metrics of SAE atoms that TopK sparsity does not fix, and their summaries.

TopK fixes every atom's mean firing frequency at k/n_atoms on average, so the share of the grid an atom
covers cannot tell two encoders apart.  These measure *where* and *how* an atom fires instead.  Inputs are
the codes on the full grid, ``vals (P, k)`` and ``idx (P, k)`` (rows in row-major pixel order of ``shape``),
as ``analysis.ablation.encode_grid`` returns them.  Plain torch/numpy/scipy; arrays of length ``n_atoms``,
NaN for atoms that never fire.

- ``mass_radius``: radius around the activation-weighted centroid holding ``fraction`` of the atom's
  activation mass, as a fraction of the image diagonal (compact atoms: small).
- ``uniform_mass_radius``: the mass radius of a perfectly uniform map on the same pixel grid — the ceiling
  of a broad atom (≈ 0.40 of the diagonal for ``fraction`` 0.9); r90 / it compares atoms across grids.
- ``tiling_ratio``: mean nearest-neighbour distance of the live atoms' centroids over that of the same
  number of uniform random points in the same rectangle (Clark–Evans style: ≈ 1 random, > 1 regular /
  tiling, < 1 clustered), with the interval the random reference spans.
- ``pixel_tiling_ratio``: the same against random pixel centres of the same grid (centroids of small atoms
  snap to pixels; a continuous null then calls plain quantisation "clustered").
- ``pearson_with``: Pearson correlation of every atom map with each of several signals on the grid,
  computed from the sparse codes (no dense atom maps).  ``content_signals`` builds the signals the atom
  table uses: the cohort images, their edge magnitude (kornia Sobel) and their foreground masks.
- ``damage_per_support``: a single-atom PSNR drop divided by the atom's support fraction.
- ``damage_distribution``: quantiles of the single-atom damage over the live atoms and the support of the
  most damaging ones, so a maximum can be read as the extreme value it is.
- ``median_ci``: median with a percentile-bootstrap 95 % interval.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from inr_lightning.nn.inr import to_unit


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


def uniform_mass_radius(shape: tuple[int, int], fraction: float = 0.9) -> float:
    """``mass_radius`` of a map equal to 1 on every pixel of the ``(H, W)`` grid, in the same units (fraction of
    the diagonal hypot(H − 1, W − 1)).  Why: the largest r90 a broad atom can reach on this grid (≈ 0.40 for
    0.9: the disc around the centre holding 90 % of a square), so r90 / this is comparable across grids.
    Computed by ``mass_radius`` itself, so the two cannot drift apart."""
    num = shape[0] * shape[1]
    ones = torch.ones(num, 1, dtype=torch.float64)
    return float(mass_radius(ones, torch.zeros(num, 1, dtype=torch.long), 1, shape, fraction)[0])


def _mean_nn(p: np.ndarray) -> float:
    """Mean distance of each point to its nearest other point (coincident points: 0)."""
    d, _ = cKDTree(p).query(p, k=2)
    return float(d[:, 1].mean())


def _against(points: np.ndarray, draw, draws: int, seed: int) -> dict[str, float]:
    """Observed mean NN distance of ``points`` over that of ``draws`` reference sets ``draw(rng, n)``."""
    n = len(points)
    rng = np.random.default_rng(seed)
    ref = np.array([_mean_nn(draw(rng, n)) for _ in range(draws)])
    observed = _mean_nn(points)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio, low, high = observed / np.array([ref.mean(), np.quantile(ref, 0.975), np.quantile(ref, 0.025)])
    return {"ratio": float(ratio), "ci_low": float(low), "ci_high": float(high), "points": n}


def _finite_points(points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points[np.isfinite(points).all(1)] if len(points) else points.reshape(0, 2)


def tiling_ratio(points: np.ndarray, extent: tuple[float, float] = (1.0, 1.0), draws: int = 200,
                 seed: int = 0) -> dict[str, float]:
    """Clark–Evans-style ratio of ``points (n, 2)`` in the rectangle [0, extent[0]] × [0, extent[1]].

    ``ratio``: mean nearest-neighbour distance of the points / its mean over ``draws`` sets of n uniform random
    points in the same rectangle (edge effects are the same on both sides); ``ci_low``/``ci_high``: the ratio
    against the 97.5 % and 2.5 % quantiles of the random sets — a ratio outside them is not random at 95 %.
    NaN for fewer than 2 points.  This continuous null is fair for centroids that move freely (broad atoms);
    for centroids that snap to pixels see ``pixel_tiling_ratio``.
    """
    points = _finite_points(points)
    if len(points) < 2:
        return {"ratio": math.nan, "ci_low": math.nan, "ci_high": math.nan, "points": len(points)}
    size = np.asarray(extent, dtype=np.float64)
    return _against(points, lambda rng, n: rng.random((n, 2)) * size, draws, seed)


def pixel_tiling_ratio(points: np.ndarray, shape: tuple[int, int], draws: int = 200, seed: int = 0,
                       null: str = "iid") -> dict[str, float]:
    """``tiling_ratio`` of ``points (n, 2)`` in pixel units (row, col; pixel centres at 0..H−1, 0..W−1) against
    n random points on the pixels of the same ``(H, W)`` grid; same keys.

    Why: the centroid of a one-pixel atom is a pixel centre, and several atoms can share one, so the observed
    distances are quantised; against continuous points, n independent random pixel centres alone read as
    "clustered" once n is a sizeable share of H·W (≈ 0.81 at n = 2000 on 48²).  ``null``:

    - ``"iid"``: n independent uniform pixel centres, coincidences allowed (complete spatial randomness on
      the grid).  Once n exceeds about a fifth of H·W, the smallest reference distances of all nulls, so the
      conservative one for a claim of *clustering*; far too lenient for "tiles" when centroids are not on
      pixels.  (Sparser, all nulls agree within a few %.)
    - ``"distinct"``: n distinct pixel centres (a hard core of one pixel).  The largest reference distances,
      so the conservative one for a claim of *tiling*.  NaN when n > H·W.
    - ``"subpixel"``: each reference point keeps one observed point's sub-pixel offset (its distance to the
      nearest pixel centre, per axis) and moves to a uniform random pixel, staying inside [0, H−1] × [0, W−1].
      Quantisation is then the same on both sides — one-pixel atoms stay on pixels and may coincide, broad
      atoms keep their in-between positions — so it is the fair null in both directions (as far as the grid
      goes; it keeps no other property of the atoms).

    The continuous null of ``tiling_ratio`` lies between ``iid`` and ``distinct`` (for dense draws).
    """
    if null not in ("iid", "distinct", "subpixel"):
        raise ValueError(f"null must be 'iid', 'distinct' or 'subpixel', got {null!r}")
    points = _finite_points(points)
    n, (height, width) = len(points), shape
    if n < 2 or (null == "distinct" and n > height * width):
        return {"ratio": math.nan, "ci_low": math.nan, "ci_high": math.nan, "points": n}
    offset = points - np.round(points)                                  # in [−0.5, 0.5] per axis
    low = (offset < 0).astype(np.int64)                                 # a negative offset needs pixel ≥ 1,
    span = np.array([height, width]) - low - (offset > 0)               # a positive one pixel ≤ size − 2

    def draw(rng, k):
        if null == "subpixel":
            return low + np.floor(rng.random((k, 2)) * span) + offset
        num = height * width
        flat = rng.choice(num, size=k, replace=False) if null == "distinct" else rng.integers(0, num, k)
        return np.stack([flat // width, flat % width], 1).astype(np.float64)

    return _against(points, draw, draws, seed)


@torch.no_grad()
def content_signals(images: Tensor, threshold: float = 0.05) -> dict[str, Tensor]:
    """Per-pixel signals ``(N, H·W)`` float64 of cohort images ``(N, C, H, W)`` on [−1, 1]: ``image`` (channel
    mean on [0, 1]), ``edges`` (kornia Sobel magnitude of it) and ``foreground`` (image > ``threshold``, 0/1)."""
    import kornia

    unit = to_unit(images.detach().double().cpu()).mean(1, keepdim=True)   # (N, 1, H, W)
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


def edge_memorisation(vals: Tensor, idx: Tensor, n_atoms: int, own: Tensor, heldout: Tensor) -> dict[str, np.ndarray]:
    """Per atom, the edge alignment (max over images of |Pearson r| with the Sobel edge magnitude) with the
    cohort's own images ``own (N, C, H, W)`` and with images it never saw ``heldout (M, C, H, W)``, each over
    the first min(N, M) images so both maxima are over as many images (a max over more images is larger by
    chance alone).  ``memorised`` = own − held-out: > 0 where an atom follows the trained images' contours
    more than it follows contours in general."""
    m = min(len(own), len(heldout))
    edges = torch.cat([content_signals(own[:m])["edges"], content_signals(heldout[:m])["edges"]])
    r = pearson_with(vals, idx, n_atoms, edges)
    own_max, held_max = max_abs(r[:, :m]), max_abs(r[:, m:])
    return {"own": own_max, "heldout": held_max, "memorised": own_max - held_max, "images": m}


def damage_per_support(drop_db: np.ndarray, support_fraction: np.ndarray) -> np.ndarray:
    """PSNR drop (dB) per unit support fraction; NaN for atoms that never fire."""
    drop_db, support_fraction = np.asarray(drop_db, dtype=np.float64), np.asarray(support_fraction, dtype=np.float64)
    out = np.full(drop_db.shape, math.nan)
    ok = support_fraction > 0
    out[ok] = drop_db[ok] / support_fraction[ok]
    return out


def damage_distribution(max_drop_db, support_fraction, top: float = 0.01) -> dict[str, float]:
    """Single-atom damage over the live atoms: ``max_drop_db (n,)`` (each atom's worst PSNR drop) and its
    ``support_fraction (n,)``; non-finite entries are dropped.  Returns ``n``, ``median``, ``q90``, ``q99``,
    ``max`` of the damage, ``max_support`` (support of the most damaging atom), ``top_n`` and
    ``top_support_median`` (the ⌈top · n⌉ most damaging atoms, at least one) and ``support_median`` (all live
    atoms).  Why: the largest drop alone is an extreme value; this says how far it is from the typical atom
    and whether the damaging atoms are the broad ones.  NaN entries for no atoms."""
    drop = np.asarray(max_drop_db, dtype=np.float64)
    support = np.asarray(support_fraction, dtype=np.float64)
    ok = np.isfinite(drop) & np.isfinite(support)
    drop, support = drop[ok], support[ok]
    n = len(drop)
    if n == 0:
        return {"n": 0, "median": math.nan, "q90": math.nan, "q99": math.nan, "max": math.nan,
                "max_support": math.nan, "top_n": 0, "top_support_median": math.nan, "support_median": math.nan}
    order = np.argsort(-drop, kind="stable")
    top_n = max(1, math.ceil(top * n - 1e-9))
    q50, q90, q99 = np.quantile(drop, [0.5, 0.9, 0.99])
    return {"n": n, "median": float(q50), "q90": float(q90), "q99": float(q99), "max": float(drop[order[0]]),
            "max_support": float(support[order[0]]), "top_n": top_n,
            "top_support_median": float(np.median(support[order[:top_n]])), "support_median": float(np.median(support))}


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
