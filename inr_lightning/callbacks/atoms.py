"""Atom galleries, per-atom localization tables and all-atom ablation reports of an SAE run.

At the end of training (``on_train_end``, so ``RunSummary`` writes the summary afterwards), rank 0 writes to
``<run>/atoms/``:

- ``gallery.png``: the top atoms by mean activation (z_a over the grid, perceptual colour map, colour bars)
  beside a cohort image;
- ``atoms.csv``: per atom — firing frequency / support fraction, mean activation, activation-weighted spatial
  spread, connected components of the support, centroid, and its worst ablation drops;
- ``ablation.csv``: per atom and cohort image — PSNR drop over the whole image and on the atom's support, vs
  the un-ablated SAE path, and the error-preserving variant (x − z_a·d_a) vs the INR path;
- ``worst_atoms.png``: the most damaging atoms: map, ablated reconstruction, |difference|;

fills ``pl_module.summary_extra`` (→ ``summary.json``) and, with a WandbLogger, logs both images and the
atom table.  ``write_atom_report`` does the same outside a Trainer.
"""

from __future__ import annotations

import csv
import math
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

ATOM_COLUMNS = ["atom", "fire_frequency", "support_fraction", "mean_activation", "spread", "components",
                "centroid_row", "centroid_col", "max_drop_db", "mean_drop_db", "max_drop_ep_db"]


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
    return ((values.double().cpu().transpose(1, 2).reshape(n, c, *shape) + 1) * 0.5).clamp(0, 1)


def _gallery(path: Path, maps: list[tuple[int, np.ndarray, float]], image: torch.Tensor, image_index: int) -> None:
    plt = _plt()
    panels = len(maps) + 1
    cols = min(panels, 6)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    _show_image(axes.flat[0], image)
    axes.flat[0].axis("on")
    axes.flat[0].set_title(f"cohort image {image_index}", fontsize=8)
    for ax, (atom, z, support) in zip(axes.flat[1:], maps):
        ax.axis("on")
        im = ax.imshow(z, cmap="magma")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        ax.set_title(f"atom {atom} · support {100 * support:.1f}%", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("top atoms by mean activation (z over the grid)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _worst(path: Path, rows: list[dict]) -> None:
    plt = _plt()
    fig, axes = plt.subplots(len(rows), 3, figsize=(8.4, 2.5 * len(rows)), squeeze=False)
    for ax_row, r in zip(axes, rows):
        im = ax_row[0].imshow(r["map"], cmap="magma")
        fig.colorbar(im, ax=ax_row[0], fraction=0.046, pad=0.03)
        ax_row[0].set_title(f"atom {r['atom']} (support {100 * r['support']:.1f}%)", fontsize=8)
        _show_image(ax_row[1], r["ablated"])
        ax_row[1].set_title(f"ablated, image {r['image']}: −{r['drop']:.2f} dB", fontsize=8)
        im = ax_row[2].imshow(r["diff"], cmap="magma")
        fig.colorbar(im, ax=ax_row[2], fraction=0.046, pad=0.03)
        ax_row[2].set_title("|ablated − SAE path|", fontsize=8)
        for ax in ax_row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _finite(values) -> list[float]:
    return [float(v) for v in values if math.isfinite(float(v))]


@torch.no_grad()
def write_atom_report(sae, net, layer: int, x: torch.Tensor, target: torch.Tensor, images: torch.Tensor,
                      shape: tuple[int, int], out_dir: str | Path, top_atoms: int = 16, worst_atoms: int = 5,
                      ablation: bool = True, image_index: int = 0, chunk: int = 65536) -> tuple[dict, list[list]]:
    """Writes the report files into ``out_dir``; returns (summary entries, rows of the atom table).

    ``x``: activations on the full grid ``(P, d)``; ``target``: ``(N, P, C)`` on [−1, 1]; ``images``:
    ``(N, C, H, W)`` on [−1, 1] (only for display).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_atoms = sae.n_atoms
    vals, idx = encode_grid(sae, x, chunk)
    stats = atom_statistics(vals, idx, n_atoms, shape)
    image_index = min(max(image_index, 0), images.shape[0] - 1)
    order = np.argsort(-stats["mean_activation"], kind="stable")[:top_atoms]
    maps = [(int(a), atom_map(vals, idx, int(a), shape).cpu().numpy(), float(stats["support_fraction"][a]))
            for a in order if stats["fire_count"][a] > 0]
    _gallery(out_dir / "gallery.png", maps, ((images[image_index].cpu() + 1) * 0.5).clamp(0, 1), image_index)

    alive = stats["fire_count"] > 0
    summary = {
        "atoms/alive": int(alive.sum()),
        "atoms/support_fraction_median": float(np.median(stats["support_fraction"][alive])) if alive.any() else math.nan,
        "atoms/spread_median": float(np.median(stats["spread"][alive])) if alive.any() else math.nan,
        "atoms/components_median": float(np.median(stats["components"][alive])) if alive.any() else math.nan,
        "atoms/components_mean": float(np.mean(stats["components"][alive])) if alive.any() else math.nan,
    }
    nan = np.full(n_atoms, math.nan)
    max_drop, mean_drop, max_drop_ep = nan, nan, nan
    if ablation:
        abl = ablate_all(sae, net, layer, x, target, chunk)
        drop, drop_ep = abl["drop"].numpy(), abl["drop_ep"].numpy()
        max_drop, mean_drop, max_drop_ep = drop.max(1), drop.mean(1), drop_ep.max(1)
        with open(out_dir / "ablation.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["atom", "image", "support_fraction", "drop_db", "drop_support_db", "drop_ep_db",
                        "drop_ep_support_db"])
            for a in np.flatnonzero(alive):
                for i in range(drop.shape[1]):
                    w.writerow([int(a), i, f"{stats['support_fraction'][a]:.6g}", f"{drop[a, i]:.6g}",
                                f"{abl['drop_support'][a, i]:.6g}", f"{drop_ep[a, i]:.6g}",
                                f"{abl['drop_ep_support'][a, i]:.6g}"])
        a_max, i_max = np.unravel_index(int(np.argmax(drop)), drop.shape)
        worst = np.argsort(-max_drop, kind="stable")[:worst_atoms]
        alive_max = max_drop[alive]
        rho = math.nan
        if alive.sum() > 2:
            from scipy.stats import spearmanr

            rho = float(spearmanr(stats["support_fraction"][alive], mean_drop[alive]).statistic)
        summary.update({
            "ablation/max_drop_db": float(drop[a_max, i_max]),
            "ablation/max_drop_atom": int(a_max),
            "ablation/max_drop_image": int(i_max),
            "ablation/max_drop_support_fraction": float(stats["support_fraction"][a_max]),
            "ablation/max_drop_ep_db": float(drop_ep.max()),
            "ablation/atom_max_drop_q50": float(np.quantile(alive_max, 0.5)) if alive.any() else math.nan,
            "ablation/atom_max_drop_q90": float(np.quantile(alive_max, 0.9)) if alive.any() else math.nan,
            "ablation/atom_max_drop_q99": float(np.quantile(alive_max, 0.99)) if alive.any() else math.nan,
            "ablation/drop_vs_support_spearman": rho,
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
        rows = []
        for a in worst:
            i = int(np.argmax(drop[a]))
            ablated = _to_images(ablated_output(sae, net, layer, x, int(a), chunk=chunk)[i:i + 1], shape)[0]
            rows.append({"atom": int(a), "image": i, "drop": float(drop[a, i]),
                         "support": float(stats["support_fraction"][a]),
                         "map": atom_map(vals, idx, int(a), shape).cpu().numpy(), "ablated": ablated,
                         "diff": (ablated - base[i]).abs().mean(0).numpy()})
        if rows:
            _worst(out_dir / "worst_atoms.png", rows)

    table = []
    for a in range(n_atoms):
        table.append([a, float(stats["support_fraction"][a]), float(stats["support_fraction"][a]),
                      float(stats["mean_activation"][a]), float(stats["spread"][a]), int(stats["components"][a]),
                      float(stats["centroid_row"][a]), float(stats["centroid_col"][a]), float(max_drop[a]),
                      float(mean_drop[a]), float(max_drop_ep[a])])
    with open(out_dir / "atoms.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(ATOM_COLUMNS)
        w.writerows([[f"{v:.6g}" if isinstance(v, float) else v for v in row] for row in table])
    return summary, table


class AtomReport(L.Callback):
    """Writes the atom gallery, atom table and ablation report of an SAE run (see the module docstring).

    Args:
        top_atoms: atoms in the gallery (by mean activation over the grid).
        worst_atoms: most damaging atoms shown in ``worst_atoms.png``.
        ablation: run the all-atom ablations (≈ k full-grid passes).
        image_index: cohort image shown beside the gallery.
        chunk: coordinates per forward pass.
        dirname: sub-folder of the run directory.
    """

    def __init__(self, top_atoms: int = 16, worst_atoms: int = 5, ablation: bool = True, image_index: int = 0,
                 chunk: int = 65536, dirname: str = "atoms") -> None:
        self.top_atoms, self.worst_atoms, self.ablation = top_atoms, worst_atoms, ablation
        self.image_index, self.chunk, self.dirname = image_index, chunk, dirname
        self.summary: dict = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        device = pl_module.device
        sae, net = pl_module.sae, dm.net.to(device)
        was_training = sae.training
        sae.eval()
        out_dir = Path(trainer.default_root_dir) / self.dirname
        x = dm.grid_activations(device)
        self.summary, table = write_atom_report(
            sae, net, dm.layer, x, dm.targets.to(device), dm.images, dm.resolution, out_dir, self.top_atoms,
            self.worst_atoms, self.ablation, self.image_index, self.chunk)
        sae.train(was_training)
        extra = getattr(pl_module, "summary_extra", None)
        if isinstance(extra, dict):
            extra.update(self.summary)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                for name in ("gallery", "worst_atoms"):  # separate keys: the two pictures differ in size
                    if (out_dir / f"{name}.png").exists():
                        logger.log_image(f"atoms/{name}", [str(out_dir / f"{name}.png")], step=trainer.global_step)
                logger.log_table("atoms/table", columns=ATOM_COLUMNS,
                                 data=[[None if isinstance(v, float) and not math.isfinite(v) else v for v in row]
                                       for row in table], step=trainer.global_step)
