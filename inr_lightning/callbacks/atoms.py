"""Atom galleries, per-atom tables and all-atom ablation reports of an SAE run.

At the end of training rank 0 writes ``<run>/atoms/``: ``gallery.png``, ``atoms.csv`` (per-atom locality,
content alignment and worst ablation drops), ``distributions.png``, ``ablation.csv`` (per atom and image) and
``worst_atoms.png``; its numbers, including the memorisation checks, go to ``summary.json`` through
``summary()``.  ``write_atom_report`` does the same outside a Trainer: ``measure_atoms`` → ``plot_atom_figures``
→ ``write_atom_tables``.  What each number means: ``docs/sae.md``, "What the metrics mean".
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger

from inr_lightning.analysis.ablation import (
    ablate_all,
    ablated_output,
    atom_map,
    atom_statistics,
    encode_grid,
)
from inr_lightning.analysis.locality import (
    content_signals,
    damage_distribution,
    damage_per_support,
    edge_memorisation,
    mass_radius,
    max_abs,
    median_ci,
    pearson_with,
    pixel_tiling_ratio,
    tiling_ratio,
    uniform_mass_radius,
)
from inr_lightning.analysis.sae_metrics import generalisation
from inr_lightning.nn.inr import to_unit

ATOM_COLUMNS = ["atom", "support_fraction", "mean_activation", "spread", "mass_radius90", "components",
                "centroid_row", "centroid_col", "content_alignment", "align_image", "align_edges", "align_foreground",
                "max_drop_db",
                "mean_drop_db", "max_drop_ep_db", "damage_per_support", "damage_ep_per_support"]
INT_COLUMNS = ("atom", "components")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _show_image(ax, image: torch.Tensor) -> None:
    """``(C, H, W)`` on [0, 1]."""
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).numpy().clip(0, 1))
    ax.set_xticks([])
    ax.set_yticks([])


def _to_images(values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``(N, P, C)`` on [−1, 1] → ``(N, C, H, W)`` on [0, 1]."""
    n, _, c = values.shape
    return to_unit(values.double().cpu().transpose(1, 2).reshape(n, c, *shape))


def _gallery(path: Path, groups: list[tuple[str, list[tuple[int, np.ndarray, float]]]], image: torch.Tensor,
             image_index: int, title: str, per_row: int = 8) -> None:
    """One block of rows per selection (top by activation, random), at most ``per_row`` atoms a row, the cohort
    image at the start of each block; every atom map on ONE colour scale with one colour bar."""
    plt = _plt()
    blocks = [(label, [maps[i:i + per_row] for i in range(0, len(maps), per_row)] or [[]]) for label, maps in groups]
    n_rows = sum(len(rows) for _, rows in blocks)
    cols = min(per_row, max([len(maps) for _, maps in groups] + [1])) + 1
    w, h = 1.9 * cols + 0.8, 2.0 * n_rows + 0.4
    fig, axes = plt.subplots(n_rows, cols, figsize=(w, h), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    vmax = max([float(z.max()) for _, maps in groups for _, z, _ in maps] + [1e-12])
    im, r = None, 0
    for label, rows in blocks:
        _show_image(axes[r, 0], image)
        axes[r, 0].axis("on")
        axes[r, 0].set_title(f"cohort image {image_index}", fontsize=7)
        axes[r, 0].set_ylabel(label, fontsize=8)
        for maps in rows:
            for ax, (atom, z, support) in zip(axes[r, 1:], maps):
                ax.axis("on")
                im = ax.imshow(z, cmap="magma", vmin=0, vmax=vmax)
                ax.set_title(f"atom {atom} · support {100 * support:.1f}%", fontsize=7)
                ax.set_xticks([])
                ax.set_yticks([])
            r += 1
    fig.suptitle(title, fontsize=9)
    # Fixed margins (inches), no tight_layout: it draws the figure once more, and a study writes hundreds.
    fig.subplots_adjust(left=0.35 / w, right=0.92, bottom=0.1 / h, top=1 - 0.45 / h, wspace=0.12, hspace=0.3)
    if im is not None:
        cax = fig.add_axes((0.94, 0.15, 0.012, 0.7))
        fig.colorbar(im, cax=cax).set_label("activation z_a (one scale for every map)", fontsize=7)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _worst(path: Path, rows: list[dict], title: str) -> None:
    """Per damaging atom: its map, the un-ablated SAE-path image, the ablated image and |difference|; maps
    share one colour scale, differences another."""
    plt = _plt()
    h = 2.5 * len(rows) + 0.5
    fig, axes = plt.subplots(len(rows), 4, figsize=(10.4, h), squeeze=False)
    zmax = max([float(r["map"].max()) for r in rows] + [1e-12])
    dmax = max([float(r["diff"].max()) for r in rows] + [1e-12])
    im_z = im_d = None
    for ax_row, r in zip(axes, rows):
        im_z = ax_row[0].imshow(r["map"], cmap="magma", vmin=0, vmax=zmax)
        ax_row[0].set_title(f"atom {r['atom']} (support {100 * r['support']:.1f}%)", fontsize=8)
        _show_image(ax_row[1], r["base"])
        ax_row[1].set_title(f"un-ablated SAE path, image {r['image']}", fontsize=8)
        _show_image(ax_row[2], r["ablated"])
        ax_row[2].set_title(f"atom ablated: −{r['drop']:.2f} dB", fontsize=8)
        im_d = ax_row[3].imshow(r["diff"], cmap="viridis", vmin=0, vmax=dmax)
        ax_row[3].set_title("|ablated − un-ablated|", fontsize=8)
        for ax in ax_row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.89, bottom=0.1 / h, top=1 - 0.75 / h, wspace=0.08, hspace=0.3)
    if im_z is not None:
        fig.colorbar(im_z, cax=fig.add_axes((0.905, 0.55, 0.012, 0.35))).set_label("z_a", fontsize=7)
        fig.colorbar(im_d, cax=fig.add_axes((0.905, 0.1, 0.012, 0.35))).set_label("|Δ| on [0, 1]", fontsize=7)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _distributions(path: Path, columns: dict[str, np.ndarray], title: str) -> None:
    """Box plots of per-atom metrics over the live atoms, every outlier drawn (``showfliers``)."""
    plt = _plt()
    names = [n for n, v in columns.items() if np.isfinite(v).any()]
    if not names:
        return
    w = 1.9 * len(names) + 0.5
    fig, axes = plt.subplots(1, len(names), figsize=(w, 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        v = columns[name][np.isfinite(columns[name])]
        ax.boxplot(v, showfliers=True, whis=1.5, flierprops={"markersize": 2, "alpha": 0.5})
        ax.set_title(f"{name}\n(n = {len(v)})", fontsize=7)
        ax.set_xticks([])
        if name in ("damage_per_support", "damage_ep_per_support", "components") and (v > 0).all():
            ax.set_yscale("log")
        ax.tick_params(which="both", labelsize=7)
    fig.suptitle(title + " — live atoms, every outlier shown", fontsize=9)
    fig.subplots_adjust(left=0.5 / w, right=1 - 0.1 / w, bottom=0.05, top=0.8, wspace=0.6)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _median_entries(prefix: str, values: np.ndarray) -> dict:
    """``<prefix>_median`` and ``<prefix>_median_ci95`` ([low, high], percentile bootstrap)."""
    med, lo, hi = median_ci(values)
    return {f"{prefix}_median": med, f"{prefix}_median_ci95": [lo, hi]}


@dataclass
class AtomMeasures:
    """What ``measure_atoms`` finds, by name: ``columns`` (``ATOM_COLUMNS`` → a ``(n_atoms,)`` array each), the
    ``summary`` entries, the per-atom-and-image ``ablation`` arrays (``drop``, ``drop_support``, ``drop_ep``,
    ``drop_ep_support``: ``(n_atoms, N)``; ``None`` without ablations), and what the figures show."""

    columns: dict[str, np.ndarray]
    summary: dict
    alive: np.ndarray                                  # (n_atoms,) bool: fires somewhere on the grid
    title: str                                         # "<backbone layer>, <n> atoms, k = <k>"
    gallery: list[tuple[str, list[tuple[int, np.ndarray, float]]]]
    image: torch.Tensor                                # the cohort image beside the gallery, (C, H, W) on [0, 1]
    image_index: int
    distributions: dict[str, np.ndarray]               # per-metric values over the live atoms
    worst: list[dict] = field(default_factory=list)    # the most damaging atoms' maps and images
    ablation: dict[str, np.ndarray] | None = None

    def rows(self) -> list[list]:
        """The atom table, one row per atom in ``ATOM_COLUMNS`` order, each value taken by its column's name."""
        n = len(self.columns["atom"])
        return [[(int if name in INT_COLUMNS else float)(self.columns[name][a]) for name in ATOM_COLUMNS]
                for a in range(n)]


@torch.no_grad()
def measure_atoms(sae, net, layer: int, x: torch.Tensor, target: torch.Tensor, images: torch.Tensor,
                  shape: tuple[int, int], top_atoms: int = 16, worst_atoms: int = 5, ablation: bool = True,
                  image_index: int = 0, chunk: int = 65536, random_atoms: int | None = None, seed: int = 0,
                  title: str = "SAE", foreground_threshold: float = 0.05,
                  heldout_images: torch.Tensor | None = None) -> AtomMeasures:
    """Every atom's statistics, locality, content alignment and (``ablation``) ablation drops; no files.
    Arguments as ``write_atom_report``."""
    n_atoms = sae.n_atoms
    what = f"{title}, {n_atoms} atoms, k = {sae.k}"
    vals, idx = encode_grid(sae, x, chunk)
    stats = atom_statistics(vals, idx, n_atoms, shape)
    alive = stats["fire_count"] > 0
    image_index = min(max(image_index, 0), images.shape[0] - 1)
    order = [int(a) for a in np.argsort(-stats["mean_activation"], kind="stable")[:top_atoms] if alive[a]]
    live = np.flatnonzero(alive)
    n_random = min(top_atoms if random_atoms is None else random_atoms, len(live))
    chosen = sorted(int(a) for a in np.random.default_rng(seed).choice(live, size=n_random, replace=False)) \
        if n_random else []

    def maps(atoms):
        return [(a, atom_map(vals, idx, a, shape).cpu().numpy(), float(stats["support_fraction"][a])) for a in atoms]

    gallery = [("top by mean activation", maps(order)), (f"random live atoms (seed {seed})", maps(chosen))]

    # Locality beyond the support fraction (which TopK fixes on average).
    radius = mass_radius(vals, idx, n_atoms, shape)
    signals = content_signals(images, foreground_threshold)
    n_img = images.shape[0]
    corr = pearson_with(vals, idx, n_atoms, torch.cat([signals["image"], signals["edges"], signals["foreground"]]))
    align = {name: max_abs(corr[:, i * n_img:(i + 1) * n_img]) for i, name in enumerate(("image", "edges", "foreground"))}
    align["content"] = max_abs(np.stack([align["image"], align["edges"], align["foreground"]], 1))
    height, width = shape
    centroids = np.stack([stats["centroid_row"][alive] * (height - 1), stats["centroid_col"][alive] * (width - 1)], 1)
    tiling = tiling_ratio(centroids, (height - 1, width - 1), seed=seed)
    # Nulls on the same pixel grid: conservative for "clustered", for "tiles", and matched to the quantisation.
    tiling_grid = {name: pixel_tiling_ratio(centroids, shape, seed=seed, null=null)
                   for name, null in (("pixel", "iid"), ("pixel_distinct", "distinct"), ("subpixel", "subpixel"))}
    radius_uniform = uniform_mass_radius(shape)

    summary = {
        "atoms/alive": int(alive.sum()),
        "atoms/support_fraction_median": float(np.median(stats["support_fraction"][alive])) if alive.any() else math.nan,
        "atoms/spread_median": float(np.median(stats["spread"][alive])) if alive.any() else math.nan,
        "atoms/components_median": float(np.median(stats["components"][alive])) if alive.any() else math.nan,
        "atoms/components_mean": float(np.mean(stats["components"][alive])) if alive.any() else math.nan,
        **_median_entries("atoms/mass_radius90", radius[alive]),
        "atoms/mass_radius90_uniform": radius_uniform,
        **_median_entries("atoms/mass_radius90_rel_uniform", radius[alive] / radius_uniform),
        **_median_entries("atoms/components", stats["components"][alive]),
        "atoms/tiling_ratio": tiling["ratio"],
        "atoms/tiling_ratio_random_range95": [tiling["ci_low"], tiling["ci_high"]],
        **_median_entries("atoms/content_alignment", align["content"][alive]),
        **_median_entries("atoms/align_image", align["image"][alive]),
        **_median_entries("atoms/align_edges", align["edges"][alive]),
        **_median_entries("atoms/align_foreground", align["foreground"][alive]),
        "atoms/gallery_random_atoms": chosen,
    }
    if heldout_images is not None and len(heldout_images):
        mem = edge_memorisation(vals, idx, n_atoms, images, heldout_images)
        summary.update({**_median_entries("atoms/align_edges_own_matched", mem["own"][alive]),
                        **_median_entries("atoms/align_edges_heldout", mem["heldout"][alive]),
                        **_median_entries("atoms/align_edges_memorised", mem["memorised"][alive]),
                        "atoms/align_edges_memorised_images": mem["images"]})
    for name, t in tiling_grid.items():
        summary[f"atoms/tiling_ratio_{name}"] = t["ratio"]
        summary[f"atoms/tiling_ratio_{name}_random_range95"] = [t["ci_low"], t["ci_high"]]
    nan = np.full(n_atoms, math.nan)
    max_drop, mean_drop, max_drop_ep = nan, nan, nan
    worst_rows, ablation_arrays = [], None
    if ablation:
        abl = ablate_all(sae, net, layer, x, target, chunk)
        drop, drop_ep = abl["drop"].numpy(), abl["drop_ep"].numpy()
        ablation_arrays = {"drop": drop, "drop_support": np.asarray(abl["drop_support"]), "drop_ep": drop_ep,
                           "drop_ep_support": np.asarray(abl["drop_ep_support"])}
        max_drop, mean_drop, max_drop_ep = drop.max(1), drop.mean(1), drop_ep.max(1)
        a_max, i_max = np.unravel_index(int(np.argmax(drop)), drop.shape)
        worst = np.argsort(-max_drop, kind="stable")[:worst_atoms]
        dist = damage_distribution(max_drop[alive], stats["support_fraction"][alive])
        rho = math.nan
        if alive.sum() > 2:
            from scipy.stats import spearmanr

            rho = float(spearmanr(stats["support_fraction"][alive], mean_drop[alive]).statistic)
        damage = damage_per_support(max_drop, stats["support_fraction"])
        damage_ep = damage_per_support(max_drop_ep, stats["support_fraction"])
        summary.update({
            "ablation/max_drop_db": float(drop[a_max, i_max]),
            "ablation/max_drop_atom": int(a_max),
            "ablation/max_drop_image": int(i_max),
            "ablation/max_drop_support_fraction": float(stats["support_fraction"][a_max]),
            "ablation/max_drop_ep_db": float(drop_ep.max()),
            "ablation/atom_max_drop_q50": dist["median"],
            "ablation/atom_max_drop_q90": dist["q90"],
            "ablation/atom_max_drop_q99": dist["q99"],
            "ablation/atom_max_drop_top1pct_n": dist["top_n"],
            "ablation/atom_max_drop_top1pct_support_median": dist["top_support_median"],
            "ablation/max_drop_support_rel_median": dist["max_support"] / dist["support_median"]
            if dist["support_median"] > 0 else math.nan,
            "ablation/drop_vs_support_spearman": rho,
            **_median_entries("ablation/damage_per_support", damage[alive]),
            **_median_entries("ablation/damage_ep_per_support", damage_ep[alive]),
            "ablation/worst_atoms": [int(a) for a in worst],
            "ablation/worst_atoms_drop_db": [float(max_drop[a]) for a in worst],
            "ablation/worst_atoms_support_fraction": [float(stats["support_fraction"][a]) for a in worst],
            "ablation/psnr_sae": float(abl["psnr_sae"].mean()),
            "ablation/psnr_inr": float(abl["psnr_inr"].mean()),
            "ablation/rows_forwarded_per_grid": abl["pairs"] / len(x),
        })
        x_hat = torch.cat([sae.decode(vals[s:s + chunk], idx[s:s + chunk]) for s in range(0, len(x), chunk)])
        base = _to_images(torch.cat([net.forward_from(x_hat[s:s + chunk].unsqueeze(0), layer)
                                     for s in range(0, len(x), chunk)], dim=1), shape)
        for a in worst:
            i = int(np.argmax(drop[a]))
            ablated = _to_images(ablated_output(sae, net, layer, x, int(a), chunk=chunk)[i:i + 1], shape)[0]
            worst_rows.append({"atom": int(a), "image": i, "drop": float(drop[a, i]),
                               "support": float(stats["support_fraction"][a]),
                               "map": atom_map(vals, idx, int(a), shape).cpu().numpy(), "base": base[i],
                               "ablated": ablated, "diff": (ablated - base[i]).abs().mean(0).numpy()})
    else:
        damage = damage_ep = nan

    distributions = {
        "support_fraction": stats["support_fraction"][alive], "mass_radius90": radius[alive],
        "components": stats["components"][alive], "content_alignment": align["content"][alive],
        "align_image": align["image"][alive],
        "align_edges": align["edges"][alive], "align_foreground": align["foreground"][alive],
        "max_drop_db": max_drop[alive], "damage_per_support": damage[alive]}
    columns = {
        "atom": np.arange(n_atoms), "support_fraction": stats["support_fraction"],
        "mean_activation": stats["mean_activation"], "spread": stats["spread"], "mass_radius90": radius,
        "components": stats["components"], "centroid_row": stats["centroid_row"], "centroid_col": stats["centroid_col"],
        "content_alignment": align["content"], "align_image": align["image"], "align_edges": align["edges"],
        "align_foreground": align["foreground"], "max_drop_db": max_drop, "mean_drop_db": mean_drop,
        "max_drop_ep_db": max_drop_ep, "damage_per_support": damage, "damage_ep_per_support": damage_ep}
    assert list(columns) == ATOM_COLUMNS, "every column of the atom table is measured, by name"
    return AtomMeasures(columns=columns, summary=summary, alive=alive, title=what, gallery=gallery,
                        image=to_unit(images[image_index].cpu()), image_index=image_index,
                        distributions=distributions, worst=worst_rows, ablation=ablation_arrays)


def plot_atom_figures(m: AtomMeasures, out_dir: str | Path) -> None:
    """``gallery.png``, ``worst_atoms.png`` (with ablations) and ``distributions.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _gallery(out_dir / "gallery.png", m.gallery, m.image, m.image_index, f"{m.title}: atom maps z_a over the grid")
    if m.worst:
        _worst(out_dir / "worst_atoms.png", m.worst, f"{m.title}: the most damaging single-atom ablations")
    _distributions(out_dir / "distributions.png", m.distributions, m.title)


def write_atom_tables(m: AtomMeasures, out_dir: str | Path) -> list[list]:
    """``atoms.csv`` (``ATOM_COLUMNS``, one row per atom) and, with ablations, ``ablation.csv`` (one row per live
    atom and cohort image) into ``out_dir``; returns the atom table's rows."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if m.ablation is not None:
        abl, support = m.ablation, m.columns["support_fraction"]
        with open(out_dir / "ablation.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["atom", "image", "support_fraction", "drop_db", "drop_support_db", "drop_ep_db",
                        "drop_ep_support_db"])
            for a in np.flatnonzero(m.alive):
                for i in range(abl["drop"].shape[1]):
                    w.writerow([int(a), i, f"{support[a]:.6g}", f"{abl['drop'][a, i]:.6g}",
                                f"{abl['drop_support'][a, i]:.6g}", f"{abl['drop_ep'][a, i]:.6g}",
                                f"{abl['drop_ep_support'][a, i]:.6g}"])
    table = m.rows()
    with open(out_dir / "atoms.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(ATOM_COLUMNS)
        w.writerows([[f"{v:.6g}" if isinstance(v, float) else v for v in row] for row in table])
    return table


def write_atom_report(sae, net, layer: int, x: torch.Tensor, target: torch.Tensor, images: torch.Tensor,
                      shape: tuple[int, int], out_dir: str | Path, top_atoms: int = 16, worst_atoms: int = 5,
                      ablation: bool = True, image_index: int = 0, chunk: int = 65536, random_atoms: int | None = None,
                      seed: int = 0, title: str = "SAE", foreground_threshold: float = 0.05,
                      heldout_images: torch.Tensor | None = None, figures: bool = True) -> tuple[dict, list[list]]:
    """Measures the atoms, draws the figures (unless ``figures`` is false) and writes the tables into ``out_dir``
    (``measure_atoms`` → ``plot_atom_figures`` → ``write_atom_tables``); returns (summary entries, rows of the atom
    table).

    ``x``: activations on the full grid ``(P, d)``; ``target``: ``(N, P, C)`` on [−1, 1]; ``images``:
    ``(N, C, H, W)`` on [−1, 1] (display and content alignment); ``title``: names the backbone and layer
    (the figures add the dictionary size and k); ``random_atoms``: typical atoms drawn (seeded) from the live
    ones for the gallery's second row (``None`` = ``top_atoms``); ``heldout_images``: ``(M, C, H, W)`` images
    the cohort never saw, for the memorisation control (``atoms/align_edges_heldout_*``, ``atoms/align_edges_memorised_*``).
    """
    measures = measure_atoms(sae, net, layer, x, target, images, shape, top_atoms, worst_atoms, ablation, image_index,
                             chunk, random_atoms, seed, title, foreground_threshold, heldout_images)
    if figures:
        plot_atom_figures(measures, out_dir)
    table = write_atom_tables(measures, out_dir)
    return measures.summary, table


class AtomReport(L.Callback):
    """Writes the atom gallery, atom table and ablation report of an SAE run (see the module docstring).

    Args:
        top_atoms: atoms in each gallery row (top by mean activation over the grid; random live atoms).
        worst_atoms: most damaging atoms shown in ``worst_atoms.png``.
        ablation: run the all-atom ablations (≈ k full-grid passes).
        image_index: cohort image shown beside the gallery.
        chunk: coordinates per forward pass.
        dirname: sub-folder of the run directory.
        seed: seed of the gallery's random atoms.
        foreground_threshold: a pixel is foreground where the image (on [0, 1]) exceeds this.
        figures: draw the PNGs; false keeps every number and table (sweeps of many SAEs, where the figures are
            most of a small run's time).
    """

    def __init__(self, top_atoms: int = 16, worst_atoms: int = 5, ablation: bool = True, image_index: int = 0,
                 chunk: int = 65536, dirname: str = "atoms", seed: int = 0, foreground_threshold: float = 0.05,
                 figures: bool = True) -> None:
        self.top_atoms, self.worst_atoms, self.ablation, self.figures = top_atoms, worst_atoms, ablation, figures
        self.image_index, self.chunk, self.dirname = image_index, chunk, dirname
        self.seed, self.foreground_threshold = seed, foreground_threshold
        self._summary: dict = {}

    def summary(self) -> dict:
        """The report's numbers (``atoms/…``, ``ablation/…``) for ``summary.json``; empty before the report."""
        return dict(self._summary)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        # The frozen INR at the layer is the one the module received; the grid, its activations and the cohort
        # images are the data module's public tensors (contracts.ActivationData).
        readout, dm = pl_module.readout, trainer.datamodule
        device = pl_module.device
        sae = pl_module.sae
        was_training = sae.training
        sae.eval()
        out_dir = Path(trainer.default_root_dir) / self.dirname
        x = dm.grid_activations(device)
        heldout_images = dm.heldout_images() if hasattr(dm, "heldout_images") else None
        self._summary, table = write_atom_report(
            sae, readout.to(device).net, readout.layer, x, dm.targets.to(device), dm.images, dm.resolution, out_dir,
            self.top_atoms, self.worst_atoms, self.ablation, self.image_index, self.chunk, seed=self.seed,
            title=readout.describe(), foreground_threshold=self.foreground_threshold, heldout_images=heldout_images,
            figures=self.figures)
        if hasattr(dm, "heldout_activations") and dm.num_heldout_coords > 0:
            # Memorisation: FVU at coordinates training never drew vs at training coordinates (same count).
            held = dm.heldout_activations(device)
            self._summary.update(generalisation(sae, dm.train_sample_activations(len(held), device), held,
                                                dm.summary()["data/train_values"], self.chunk))
        sae.train(was_training)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                for name in ("gallery", "worst_atoms", "distributions"):  # separate keys: the pictures differ in size
                    if (out_dir / f"{name}.png").exists():
                        logger.log_image(f"atoms/{name}", [str(out_dir / f"{name}.png")], step=trainer.global_step)
                logger.log_table("atoms/table", columns=ATOM_COLUMNS,
                                 data=[[None if isinstance(v, float) and not math.isfinite(v) else v for v in row]
                                       for row in table], step=trainer.global_step)
