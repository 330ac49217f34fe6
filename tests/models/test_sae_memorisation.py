"""SAEs that cannot memorise the grid: a large fixed pool of continuous coordinates, a held-out set disjoint
from every training coordinate, the activation-values-per-parameter ratio, and a fit on the pool that still
reconstructs held-out coordinates far better than its bias alone."""

import math

import pytest
import torch
from conftest import read_summary, run_cli, train_cohort

from inr_lightning.analysis.sae_metrics import parameter_count, sae_fvu, values_per_parameter
from inr_lightning.data import ActivationDataModule
from inr_lightning.data.activations import disjoint_from
from inr_lightning.nn.sae import TopKSAE



@pytest.fixture(scope="module")
def siren(tmp_path_factory):
    return train_cohort(tmp_path_factory.mktemp("cohort") / "siren", "siren", "--trainer.max_steps=60",
                        "--trainer.logger=false")


def test_pool_batches_and_heldout_coordinates_disjoint_from_training(siren):
    dm = ActivationDataModule(str(siren), layer=1, batch_size=300, coords="pool", pool_size=4000, heldout_coords=500,
                              steps_per_epoch=2)
    assert dm.pool.shape == (4000, 2) and dm.pool.abs().max() <= 1 and len(torch.unique(dm.pool, dim=0)) == 4000
    held = dm.heldout_coordinates()
    assert held.shape == (500, 2)
    assert not set(map(tuple, held.tolist())) & set(map(tuple, dm.pool.tolist()))
    assert not set(map(tuple, held.tolist())) & set(map(tuple, dm.coords.tolist()))   # nor the pixel grid
    # The filter drops planted training coordinates and keeps the rest in order.
    planted = torch.cat([held[:3], dm.pool[:7], held[3:10]])
    torch.testing.assert_close(disjoint_from(planted, dm.pool), held[:10])
    # Training batches are rows of the pool, their activations gathered from the pool's table.
    batch = next(iter(dm.train_dataloader()))
    assert batch["index"].shape == (300,) and int(batch["index"].max()) < 4000 and len(set(batch["index"].tolist())) == 300
    x = dm.on_after_batch_transfer(dict(batch), 0)["x"]
    torch.testing.assert_close(x, dm.activations_at(dm.pool[batch["index"]]))
    # Evaluation batches stay on the image grid.
    ev = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    torch.testing.assert_close(ev["x"], dm.grid_activations())
    torch.testing.assert_close(dm.heldout_activations(), dm.activations_at(held))
    s = dm.summary()
    assert s["data/coords"] == "pool" and s["data/pool_size"] == 4000
    assert s["data/train_coords"] == 4000 and s["data/train_values"] == 4000 * 16
    grid = ActivationDataModule(str(siren), layer=1, batch_size=64)
    assert grid.summary()["data/train_coords"] == 256 and grid.summary()["data/train_values"] == 256 * 16
    assert len(grid.heldout_coordinates()) == 16384   # the default held-out set, none a pixel centre


def test_values_per_parameter_of_a_crafted_size():
    sae = TopKSAE(16, 32, 4)
    assert parameter_count(sae) == 2 * 32 * 16 + 32 + 16 == 1072   # W_enc, W_dec, b_enc, b_pre; no buffers
    assert values_per_parameter(4000 * 16, parameter_count(sae)) == pytest.approx(64000 / 1072)
    assert math.isnan(values_per_parameter(None, 1072))
    # The study's grid SAE (issue): 4096 atoms × width 64 on a 48×48 grid — fewer values than parameters.
    big = 2 * 4096 * 64 + 4096 + 64
    assert values_per_parameter(48 * 48 * 64, big) == pytest.approx(147456 / 528448)   # ≈ 0.28
    assert values_per_parameter(131072 * 64, big) > 15    # the pool of 2¹⁷ coordinates


def test_sae_on_pool_coordinates_beats_its_bias_on_heldout_coordinates(siren, tmp_path):
    run = tmp_path / "sae"
    run_cli(["fit", "--config", "configs/sae/siren.yaml", f"--trainer.default_root_dir={run}",
             f"--data.init_args.cohort_ckpt={siren}", "--data.init_args.layer=1", "--data.init_args.coords=pool",
             "--data.init_args.pool_size=20000", "--data.init_args.heldout_coords=2000", "--data.init_args.batch_size=512",
             "--data.init_args.steps_per_epoch=60", "--trainer.max_steps=60", "--model.init_args.n_atoms=64",
             "--model.init_args.k=8", "--model.init_args.warmup_steps=5", "--model.init_args.init_samples=2048",
             "--trainer.callbacks.init_args.top_atoms=2", "--trainer.callbacks.init_args.figures=false",
             "--trainer.enable_progress_bar=false", "--trainer.logger=false"])
    s = read_summary(run)
    assert s["data/coords"] == "pool" and s["data/train_coords"] == 20000 and s["sae/heldout_coords"] == 2000
    assert s["sae/parameters"] == 2 * 64 * 16 + 64 + 16
    assert s["sae/values_per_parameter"] == pytest.approx(20000 * 16 / s["sae/parameters"])
    # A bias-only SAE (x̂ = mean) has FVU 1; this one explains most of the variance where it never trained.
    assert s["sae/fvu_heldout_coords"] < 0.3 and s["sae/fvu_train_coords"] < 0.3
    assert s["sae/fvu_heldout_over_train"] == pytest.approx(s["sae/fvu_heldout_coords"] / s["sae/fvu_train_coords"])
    assert 0.5 < s["sae/fvu_heldout_over_train"] < 2    # no memorisation gap at 300 values per parameter
    assert math.isfinite(s["atoms/mass_radius90_median"])   # atom maps still measured on the image grid
    assert len((run / "atoms" / "atoms.csv").read_text().splitlines()) == 65
    # The held-out FVU is the SAE's FVU on the data module's held-out coordinates, recomputed here.
    from inr_lightning.models import SAEModule

    dm = ActivationDataModule(str(siren), layer=1, coords="pool", pool_size=20000, heldout_coords=2000)
    model = SAEModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", readout=dm.readout)
    assert sae_fvu(model.sae.eval(), dm.heldout_activations()) == pytest.approx(s["sae/fvu_heldout_coords"], rel=1e-6)
    # Memorisation control: edge alignment with the cohort's own vs its held-out images, recorded per atom.
    assert math.isfinite(s["atoms/align_edges_memorised_median"]) and s["atoms/align_edges_memorised_images"] == 5
