"""Locality metrics on crafted atom maps: mass radius, tiling ratio, content alignment, damage per support."""

import csv
import math

import numpy as np
import pytest
import torch

from inr_lightning.analysis.locality import (
    content_signals,
    damage_per_support,
    mass_radius,
    max_abs,
    median_ci,
    pearson_with,
    tiling_ratio,
)
from inr_lightning.callbacks.atoms import write_atom_report
from inr_lightning.data.grid import make_grid
from inr_lightning.nn import CohortINR, INRConfig
from inr_lightning.nn.sae import TopKSAE


def _codes(entries: dict[int, list[tuple[int, float]]], num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k = 1 codes on ``num`` pixels: ``entries[atom] = [(pixel, value), …]``; other pixels fire atom 9 at 0."""
    vals, idx = torch.zeros(num, 1), torch.full((num, 1), 9)
    for atom, pixels in entries.items():
        for p, v in pixels:
            vals[p, 0], idx[p, 0] = v, atom
    return vals, idx


def test_mass_radius_on_crafted_maps():
    # 11×11 grid, diagonal 10·√2.  atom 0: one pixel; atom 1: two equal pixels 6 apart on a row (radius 3);
    # atom 2: 96 % of its mass at one pixel, 4 % far away (90 % within radius 0); atom 3: never fires.
    w = 11
    vals, idx = _codes({0: [(60, 1.0)], 1: [(2 * w + 2, 2.0), (2 * w + 8, 2.0)],
                        2: [(5 * w + 0, 9.6), (10 * w + 10, 0.4)]}, w * w)
    r = mass_radius(vals, idx, 4, (w, w))
    diag = 10 * math.sqrt(2)
    assert r[0] == 0 and r[1] == pytest.approx(3 / diag) and math.isnan(r[3])
    centroid = np.array([5 * 0.96 + 10 * 0.04, 0 * 0.96 + 10 * 0.04])
    assert r[2] == pytest.approx(np.hypot(*(centroid - [5, 0])) / diag)
    # With fraction 1 the far pixel counts too.
    assert mass_radius(vals, idx, 4, (w, w), fraction=1.0)[2] == pytest.approx(np.hypot(*(centroid - [10, 10])) / diag)


def test_tiling_ratio_separates_lattice_random_and_clusters():
    lattice = np.stack(np.meshgrid(np.arange(10) + 0.5, np.arange(10) + 0.5), -1).reshape(-1, 2) / 10
    rng = np.random.default_rng(1)
    clusters = np.concatenate([c + 0.01 * rng.standard_normal((25, 2)) for c in rng.random((4, 2))])
    random = rng.random((100, 2))
    t_lattice, t_clusters, t_random = (tiling_ratio(p, draws=100) for p in (lattice, clusters, random))
    assert t_lattice["ratio"] > 1.5 and t_lattice["ci_low"] > 1
    assert t_clusters["ratio"] < 0.3 and t_clusters["ci_high"] < 1
    assert t_random["ci_low"] <= 1.15 and t_random["ci_high"] >= 0.85 and 0.8 < t_random["ratio"] < 1.2
    assert math.isnan(tiling_ratio(np.zeros((1, 2)))["ratio"])


def test_pearson_from_sparse_codes_equals_dense_corrcoef():
    g = torch.Generator().manual_seed(0)
    num, n_atoms, k = 200, 12, 3
    vals = torch.rand(num, k, generator=g) * (torch.rand(num, k, generator=g) > 0.3)
    idx = torch.stack([torch.randperm(n_atoms, generator=g)[:k] for _ in range(num)])
    signals = torch.randn(4, num, generator=g, dtype=torch.float64)
    r = pearson_with(vals, idx, n_atoms, signals)
    dense = torch.zeros(num, n_atoms, dtype=torch.float64).scatter_add_(1, idx, vals.double())
    for a in range(n_atoms):
        for m in range(4):
            expected = np.corrcoef(dense[:, a].numpy(), signals[m].numpy())[0, 1]
            assert r[a, m] == pytest.approx(expected, abs=1e-10)
    # An atom that never fires and a constant signal give NaN, not a number.
    idx[idx == 5] = 6
    r = pearson_with(vals, idx, n_atoms, torch.cat([signals, torch.ones(1, num, dtype=torch.float64)]))
    assert np.isnan(r[5]).all() and np.isnan(r[:, 4]).all()
    assert max_abs(np.array([[0.2, -0.7], [np.nan, np.nan]]))[0] == 0.7 and np.isnan(max_abs(np.full((1, 2), np.nan)))[0]


def test_content_signals_and_alignment_of_a_mask_shaped_atom():
    image = -torch.ones(1, 1, 8, 8)
    image[..., 2:6, 2:6] = 1.0                     # a bright square on black
    s = content_signals(image, threshold=0.05)
    fg = s["foreground"].reshape(8, 8)
    assert fg[2:6, 2:6].eq(1).all() and fg.sum() == 16
    assert s["edges"].reshape(8, 8)[0, 0] < 0.01 < s["edges"].reshape(8, 8)[3, 1]  # flat corner; next to the square
    # An atom firing exactly on the square aligns perfectly with the foreground and the image.
    inside = [(r * 8 + c, 1.0) for r in range(2, 6) for c in range(2, 6)]
    vals, idx = _codes({0: inside}, 64)
    r = pearson_with(vals, idx, 10, torch.cat([s["image"], s["edges"], s["foreground"]]))
    assert r[0, 0] == pytest.approx(1.0) and r[0, 2] == pytest.approx(1.0) and abs(r[0, 1]) < 0.9


def test_damage_per_support_and_median_ci():
    d = damage_per_support(np.array([2.0, 1.0, 0.0]), np.array([0.5, 0.0, 0.25]))
    assert d[0] == 4.0 and math.isnan(d[1]) and d[2] == 0.0
    med, lo, hi = median_ci(np.r_[np.arange(101.0), np.nan])
    assert med == 50 and lo < 50 < hi and hi - lo < 30
    assert median_ci([3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0) and all(map(math.isnan, median_ci([])))


def test_atom_report_columns_and_summary_agree(tmp_path):
    torch.manual_seed(0)
    net = CohortINR(INRConfig(backbone="siren", width=16, shared_layers=3), 2, 1).eval()
    coords = make_grid(12, 12)
    x = net.activations(coords)[1][0].detach()
    target = torch.rand(2, len(coords), 1) * 2 - 1
    images = target.transpose(1, 2).reshape(2, 1, 12, 12)
    sae = TopKSAE(16, n_atoms=48, k=3)
    sae.init_input_scale(x)
    sae.init_b_pre(x, "mean")
    summary, _ = write_atom_report(sae, net, 1, x, target, images, (12, 12), tmp_path, top_atoms=4, worst_atoms=2,
                                   title="SIREN layer 1 (cohort encoder)")
    rows = list(csv.DictReader((tmp_path / "atoms.csv").open()))
    live = [r for r in rows if float(r["support_fraction"]) > 0]
    assert summary["atoms/alive"] == len(live) and "fire_frequency" not in rows[0]
    for r in live:
        assert float(r["damage_per_support"]) == pytest.approx(float(r["max_drop_db"]) / float(r["support_fraction"]),
                                                               rel=1e-4, abs=1e-6)
    for key, column in (("ablation/damage_per_support", "damage_per_support"), ("atoms/mass_radius90", "mass_radius90"),
                        ("atoms/align_edges", "align_edges"), ("atoms/content_alignment", "content_alignment")):
        values = np.array([float(r[column]) for r in live])
        assert summary[key + "_median"] == pytest.approx(float(np.median(values)), rel=1e-4)
        lo, hi = summary[key + "_median_ci95"]
        assert lo <= summary[key + "_median"] <= hi
    random_atoms = summary["atoms/gallery_random_atoms"]
    assert len(random_atoms) == 4 and all(float(rows[a]["support_fraction"]) > 0 for a in random_atoms)
    again, _ = write_atom_report(sae, net, 1, x, target, images, (12, 12), tmp_path / "b", top_atoms=4, worst_atoms=2)
    assert again["atoms/gallery_random_atoms"] == random_atoms  # seeded
    assert {"gallery.png", "worst_atoms.png", "distributions.png"} <= {p.name for p in tmp_path.iterdir()}
