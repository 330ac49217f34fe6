"""Locality metrics on crafted atom maps: mass radius (and its uniform-map ceiling), tiling ratio against
continuous and pixel-grid nulls, content alignment, damage per support and its distribution."""

import csv
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from inr_lightning.analysis import locality
from inr_lightning.analysis.locality import (
    content_signals,
    damage_distribution,
    damage_per_support,
    mass_radius,
    max_abs,
    median_ci,
    pearson_with,
    pixel_tiling_ratio,
    tiling_ratio,
    uniform_mass_radius,
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


def _disc_in_square(r: float, side: float) -> float:
    """Area of a disc of radius r (side/2 ≤ r ≤ side/√2) centred in a square: the disc less four segments."""
    h = side / 2
    return math.pi * r * r - 4 * (r * r * math.acos(h / r) - h * math.sqrt(r * r - h * h))


def test_uniform_mass_radius_ceiling():
    h = w = 48
    u = uniform_mass_radius((h, w))
    diag = math.hypot(h - 1, w - 1)
    # Brute force over pixels: the ⌈0.9·P⌉-th smallest distance of a pixel centre from the grid centre.
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    dist = np.sort(np.hypot(rows - (h - 1) / 2, cols - (w - 1) / 2).ravel())
    assert u == pytest.approx(dist[math.ceil(0.9 * h * w) - 1] / diag, abs=1e-12)
    # Continuous limit: pixels as unit cells tile the square of side 48 around the centre.  The cells whose
    # centres lie within r contain the disc of radius r − √2/2 and lie inside that of radius r + √2/2 (half a
    # cell diagonal), so the pixel r90 is within √2/2 pixel of the radius r_c whose disc holds 90 % of the square.
    r_c = brentq(lambda r: _disc_in_square(r, h) - 0.9 * h * h, h / 2, h / math.sqrt(2))
    assert abs(u * diag - r_c) <= math.sqrt(0.5)
    assert 0.39 < u < 0.41                        # r_c / diag = 0.4026 ± 0.0106 from the bound above
    # A uniform map relative to it is 1 exactly, a single-pixel atom 0; the ratio does not see n_atoms.
    vals, idx = _codes({0: [(p, 1.0) for p in range(h * w)]}, h * w)
    one_px, _ = _codes({3: [(100, 2.5)]}, h * w)
    for n_atoms in (10, 4096):
        assert mass_radius(vals, idx, n_atoms, (h, w))[0] / u == 1.0
        assert mass_radius(one_px, _codes({3: [(100, 2.5)]}, h * w)[1], n_atoms, (h, w))[3] / u == 0.0
    # Larger grids approach the continuous limit from above (0.3942 of the diagonal for a square).
    limit = brentq(lambda r: _disc_in_square(r, 1.0) - 0.9, 0.5, 1 / math.sqrt(2)) / math.sqrt(2)
    assert uniform_mass_radius((32, 32)) > u > uniform_mass_radius((128, 128)) > limit
    assert uniform_mass_radius((128, 128)) - limit < 0.005


def _pixels(flat: np.ndarray, width: int) -> np.ndarray:
    return np.stack([flat // width, flat % width], 1).astype(np.float64)


def test_pixel_null_removes_the_quantisation_bias():
    h = w = 48
    rng = np.random.default_rng(3)
    # n independent random pixel centres (coincidences allowed, as centroids of one-pixel atoms can be):
    # random against the pixel null, "clustered" against the continuous one — quantisation alone.
    iid = _pixels(rng.integers(0, h * w, 2000), w)
    pixel, cont = pixel_tiling_ratio(iid, (h, w), draws=100), tiling_ratio(iid, (h - 1, w - 1), draws=100)
    assert pixel["ci_low"] <= 1 <= pixel["ci_high"] and 0.9 < pixel["ratio"] < 1.1
    assert cont["ci_high"] < 1 and cont["ratio"] < 0.9
    # n distinct random pixel centres: random against the distinct-pixel null, "regular" against the
    # continuous one (no two closer than a pixel) — so "tiles" must beat the distinct null.
    distinct = _pixels(rng.choice(h * w, 1000, replace=False), w)
    d_pixel = pixel_tiling_ratio(distinct, (h, w), draws=100, null="distinct")
    d_cont = tiling_ratio(distinct, (h - 1, w - 1), draws=100)
    assert d_pixel["ci_low"] <= 1 <= d_pixel["ci_high"] and 0.95 < d_pixel["ratio"] < 1.05
    assert d_cont["ci_low"] > 1 and d_cont["ratio"] > 1.25
    # The same iid draw against the distinct null reads as strongly "clustered" (its coincident points sit at
    # distance 0; the distinct reference never goes below 1 pixel): that null is no test of clustering.
    assert pixel_tiling_ratio(iid, (h, w), draws=20, null="distinct")["ci_high"] < 0.6
    # More points than pixels cannot be distinct: NaN, not a number.
    assert math.isnan(pixel_tiling_ratio(_pixels(np.arange(2305) % 2304, w), (h, w), null="distinct")["ratio"])


def test_subpixel_null_matches_the_quantisation_of_the_points(monkeypatch):
    h = w = 48
    rng = np.random.default_rng(4)
    # Half the points on pixel centres (one-pixel atoms, coincidences allowed), half anywhere (broad atoms):
    # random for the null that keeps each point's sub-pixel offset; the two bracketing nulls disagree.
    mixed = np.concatenate([_pixels(rng.integers(0, h * w, 1500), w), rng.random((1500, 2)) * (h - 1)])
    sub = pixel_tiling_ratio(mixed, (h, w), draws=100, null="subpixel")
    assert sub["ci_low"] <= 1 <= sub["ci_high"] and 0.93 < sub["ratio"] < 1.07
    assert pixel_tiling_ratio(mixed, (h, w), draws=20, null="iid")["ci_low"] > 1.1
    assert tiling_ratio(mixed, (h - 1, w - 1), draws=20)["ci_high"] < 0.95
    # The reference stays on the grid's rectangle and keeps the offsets: a point at (0.3, 46.6) can only move
    # to (i + 0.3, j − 0.4) with 0 ≤ i ≤ 46, 1 ≤ j ≤ 47; one on a pixel centre to any pixel centre.
    ref, tree = [], locality.cKDTree   # every point set whose nearest-neighbour distances are measured
    monkeypatch.setattr(locality, "cKDTree", lambda p: ref.append(p.copy()) or tree(p))
    pixel_tiling_ratio(np.array([[0.3, 46.6], [0.0, 47.0]]), (h, w), draws=300, null="subpixel")
    assert len(ref) == 301
    drawn = np.concatenate(ref[:-1])                 # the last call is the observed points
    first, second = drawn[0::2], drawn[1::2]
    assert np.allclose(first[:, 0] % 1, 0.3) and np.allclose(first[:, 1] % 1, 0.6)
    assert first[:, 0].max() <= 46.3 + 1e-9 and first[:, 1].min() >= 0.6 - 1e-9 and first[:, 1].max() <= 46.6 + 1e-9
    assert np.allclose(second % 1, 0) and second.min() == 0 and second.max() == 47   # on pixels, the whole grid


def test_pixel_null_separates_lattice_and_clusters():
    h = w = 48
    lattice = np.stack(np.meshgrid(np.arange(1, h, 3), np.arange(1, w, 3), indexing="ij"), -1).reshape(-1, 2) * 1.0
    rng = np.random.default_rng(1)
    centres = rng.integers(6, 42, size=(4, 2))
    clusters = np.concatenate([np.clip(np.round(c + 1.5 * rng.standard_normal((50, 2))), 0, 47) for c in centres])
    for null in ("iid", "distinct", "subpixel"):
        t_lat = pixel_tiling_ratio(lattice, (h, w), draws=100, null=null)
        t_clu = pixel_tiling_ratio(clusters, (h, w), draws=100, null=null)
        assert t_lat["ci_low"] > 1 and t_lat["ratio"] > 1.5           # spacing 3 vs ≈ 1.5 for 256 random pixels
        assert t_clu["ci_high"] < 1 and t_clu["ratio"] < 0.6
    assert math.isnan(pixel_tiling_ratio(lattice[:1], (h, w))["ratio"])


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


def test_damage_distribution_on_known_quantiles():
    # 201 atoms: damage 0..200 dB (median 100, q90 180, q99 198, max 200); support 0.001·(1 + i mod 10), except
    # the three most damaging atoms (⌈1 % of 201⌉ = 3) fire on 0.5, 0.4 and 0.3 of the grid.  Atoms 0..197 hold
    # 0.001..0.005 twenty times each (100 atoms), so the 101st smallest support, the median, is 0.006.
    drop = np.arange(201.0)
    support = 0.001 * (1 + np.arange(201) % 10)
    support[[200, 199, 198]] = [0.5, 0.4, 0.3]
    perm = np.random.default_rng(0).permutation(201)
    d = damage_distribution(np.r_[drop[perm], np.nan], np.r_[support[perm], 0.2])   # a dead atom: ignored
    assert (d["n"], d["median"], d["q90"], d["q99"], d["max"]) == (201, 100.0, 180.0, 198.0, 200.0)
    assert d["max_support"] == 0.5 and d["top_n"] == 3 and d["top_support_median"] == 0.4
    assert d["support_median"] == pytest.approx(0.006)
    assert damage_distribution([1.0, 3.0], [0.1, 0.2], top=0.5)["top_support_median"] == 0.2
    assert damage_distribution([], [])["n"] == 0 and math.isnan(damage_distribution([], [])["max"])


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
    radii = np.array([float(r["mass_radius90"]) for r in live])
    assert summary["atoms/mass_radius90_uniform"] == uniform_mass_radius((12, 12))
    assert summary["atoms/mass_radius90_rel_uniform_median"] == pytest.approx(
        float(np.median(radii)) / uniform_mass_radius((12, 12)), rel=1e-4)
    lo, hi = summary["atoms/mass_radius90_rel_uniform_median_ci95"]
    assert lo <= summary["atoms/mass_radius90_rel_uniform_median"] <= hi
    centroids = np.array([[float(r["centroid_row"]) * 11, float(r["centroid_col"]) * 11] for r in live])
    for key, null in (("atoms/tiling_ratio_pixel", "iid"), ("atoms/tiling_ratio_pixel_distinct", "distinct"),
                      ("atoms/tiling_ratio_subpixel", "subpixel")):
        t = pixel_tiling_ratio(centroids, (12, 12), null=null)
        assert summary[key] == pytest.approx(t["ratio"], rel=1e-3)
        assert summary[key + "_random_range95"] == pytest.approx([t["ci_low"], t["ci_high"]], rel=1e-3)
    drops = np.array([float(r["max_drop_db"]) for r in live])
    support = np.array([float(r["support_fraction"]) for r in live])
    assert summary["ablation/atom_max_drop_q90"] == pytest.approx(float(np.quantile(drops, 0.9)), rel=1e-4, abs=1e-6)
    assert summary["ablation/atom_max_drop_top1pct_n"] == math.ceil(0.01 * len(live))
    top = support[np.argsort(-drops, kind="stable")[:summary["ablation/atom_max_drop_top1pct_n"]]]
    assert summary["ablation/atom_max_drop_top1pct_support_median"] == pytest.approx(float(np.median(top)), rel=1e-4)
    assert summary["ablation/max_drop_support_rel_median"] == pytest.approx(
        summary["ablation/max_drop_support_fraction"] / float(np.median(support)), rel=1e-4)
    random_atoms = summary["atoms/gallery_random_atoms"]
    assert len(random_atoms) == 4 and all(float(rows[a]["support_fraction"]) > 0 for a in random_atoms)
    again, _ = write_atom_report(sae, net, 1, x, target, images, (12, 12), tmp_path / "b", top_atoms=4, worst_atoms=2)
    assert again["atoms/gallery_random_atoms"] == random_atoms  # seeded
    assert {"gallery.png", "worst_atoms.png", "distributions.png"} <= {p.name for p in tmp_path.iterdir()}


def test_atom_report_is_measure_then_plot_then_write_and_the_table_is_built_by_column_name(tmp_path):
    from inr_lightning.callbacks.atoms import (
        ATOM_COLUMNS,
        measure_atoms,
        plot_atom_figures,
        write_atom_tables,
    )

    torch.manual_seed(0)
    net = CohortINR(INRConfig(backbone="siren", width=16, shared_layers=3), 2, 1).eval()
    coords = make_grid(12, 12)
    x = net.activations(coords)[1][0].detach()
    target = torch.rand(2, len(coords), 1) * 2 - 1
    images = target.transpose(1, 2).reshape(2, 1, 12, 12)
    sae = TopKSAE(16, n_atoms=48, k=3)
    sae.init_input_scale(x)
    sae.init_b_pre(x, "mean")
    m = measure_atoms(sae, net, 1, x, target, images, (12, 12), top_atoms=4, worst_atoms=2)
    assert not list(tmp_path.iterdir())   # measuring writes nothing
    assert list(m.columns) == ATOM_COLUMNS and all(len(v) == 48 for v in m.columns.values())
    assert m.ablation["drop"].shape == (48, 2) and len(m.worst) == 2
    plot_atom_figures(m, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"gallery.png", "worst_atoms.png", "distributions.png"}
    table = write_atom_tables(m, tmp_path)
    rows = list(csv.DictReader((tmp_path / "atoms.csv").open()))
    for name in ("support_fraction", "mass_radius90", "max_drop_db", "damage_ep_per_support"):
        for a in (0, 17, 47):
            assert float(rows[a][name]) == pytest.approx(float(m.columns[name][a]), rel=1e-5, nan_ok=True), name
            assert table[a][ATOM_COLUMNS.index(name)] == float(m.columns[name][a]) or math.isnan(table[a][ATOM_COLUMNS.index(name)])
    assert [int(r["atom"]) for r in rows] == list(range(48)) and isinstance(table[3][ATOM_COLUMNS.index("components")], int)
    summary, again = write_atom_report(sae, net, 1, x, target, images, (12, 12), tmp_path / "b", top_atoms=4,
                                       worst_atoms=2)
    assert summary == m.summary and again == table
    assert (tmp_path / "b" / "atoms.csv").read_text() == (tmp_path / "atoms.csv").read_text()
    # figures=False (AtomReport(figures=false)): the same numbers and tables, no PNG
    summary, _ = write_atom_report(sae, net, 1, x, target, images, (12, 12), tmp_path / "c", top_atoms=4,
                                   worst_atoms=2, figures=False)
    assert summary == m.summary and not list((tmp_path / "c").glob("*.png"))
    for name in ("atoms.csv", "ablation.csv"):
        assert (tmp_path / "c" / name).read_text() == (tmp_path / name).read_text()
