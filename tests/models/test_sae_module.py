"""SAE stage end to end: activations data, the shipped configs, one-line errors, and DDP equal to one process."""


import pytest
import torch
from conftest import TINY, assert_relative_close, fit_single_and_ddp, read_summary, run_cli

from inr_lightning.data import ActivationDataModule
from inr_lightning.data.activations import step_coordinates

SAE_TINY = ["--model.init_args.n_atoms=64", "--model.init_args.k=4", "--model.init_args.warmup_steps=2",
            "--model.init_args.dead_window=300", "--data.init_args.batch_size=96", "--data.init_args.steps_per_epoch=2",
            "--trainer.max_steps=4", "--trainer.enable_progress_bar=false", "--trainer.callbacks.init_args.top_atoms=4"]


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """Tiny cohort checkpoints (16 px, width 16) for both backbones."""
    root = tmp_path_factory.mktemp("cohorts")
    out = {}
    for backbone in ("siren", "ffmlp"):
        run = root / backbone
        run_cli(["fit", "--config", f"configs/cohort/{backbone}.yaml", f"--trainer.default_root_dir={run}", *TINY,
                 "--trainer.logger=false"])
        out[backbone] = run / "checkpoints" / "last.ckpt"
    return out


def test_activation_data_shards_and_control(cohorts):
    dm = ActivationDataModule(str(cohorts["ffmlp"]), layer=1, batch_size=50, coords="continuous", steps_per_epoch=2)
    assert dm.d_in == 16 and dm.targets.shape == (10, 256, 1) and dm.resolution == (16, 16)
    acts = dm.net.activations(dm.coords)[1][0]
    torch.testing.assert_close(dm.grid_activations(), acts)
    glob = step_coordinates(dm.coords, "continuous", 50, 0, 0, 1)
    assert glob.shape == (50, 2) and glob.abs().max() <= 1
    shards = [glob[r::2] for r in range(2)]  # what two ranks take: disjoint, together the global batch
    assert sum(len(s) for s in shards) == 50 and not set(map(tuple, shards[0].tolist())) & set(map(tuple, shards[1].tolist()))
    batch = dm.on_after_batch_transfer({"coords": glob, "num_samples": 50}, 0)
    torch.testing.assert_close(batch["x"], dm.net.activations(glob)[1][0])
    control = ActivationDataModule(str(cohorts["ffmlp"]), layer=1, untrained_control=True)
    torch.testing.assert_close(control.net.encoder.features.B, dm.net.encoder.features.B)  # fixed features kept
    assert not torch.allclose(control.net.encoder.linear(0).weight, dm.net.encoder.linear(0).weight)
    torch.testing.assert_close(control.net.heads.out.weight, dm.net.heads.out.weight)


@pytest.mark.parametrize("backbone", ["siren", "ffmlp"])
def test_sae_config_runs_a_tiny_fit(backbone, cohorts, tmp_path):
    run = tmp_path / "run"
    run_cli(["fit", "--config", f"configs/sae/{backbone}.yaml", f"--trainer.default_root_dir={run}",
             f"--data.init_args.cohort_ckpt={cohorts[backbone]}", *SAE_TINY])
    s = read_summary(run)
    assert s["trainer/global_step"] == 4
    for key in ("fvu", "explained_variance", "l0", "dead_fraction", "dense_fraction", "cosine", "rel_bias", "psnr",
                "inr_psnr", "psnr_drop"):
        assert f"sae/{key}" in s, key
    assert 0 < s["sae/fvu"] < 1.5 and s["sae/l0"] <= 4 and 0 <= s["sae/dead_fraction"] <= 1
    assert s["sae/psnr_drop"] == pytest.approx(s["sae/inr_psnr"] - s["sae/psnr"], abs=1e-4)
    assert s["ablation/rows_forwarded_per_grid"] <= 4  # all atoms cost ≤ k passes
    assert s["ablation/psnr_sae"] == pytest.approx(s["sae/psnr"], abs=1e-3)
    assert len(s["ablation/worst_atoms"]) == 5 and "atoms/spread_median" in s
    atoms = run / "atoms"
    assert {"gallery.png", "worst_atoms.png", "atoms.csv", "ablation.csv"} <= {p.name for p in atoms.iterdir()}
    assert len((atoms / "atoms.csv").read_text().splitlines()) == 65
    assert list((run / "wandb").glob("offline-run-*"))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["d_in"] == 16 and ckpt["hyper_parameters"]["n_atoms"] == 64
    w = ckpt["state_dict"]["sae.W_dec"]
    torch.testing.assert_close(w.norm(dim=1), torch.ones(64))  # unit rows after the last step
    assert not any(k.startswith("net.") for k in ckpt["state_dict"])  # the frozen INR is not duplicated
    if backbone == "siren":  # the validate stage rebuilds the SAE from the checkpoint: same full-grid metrics
        run_cli(["validate", "--config", f"configs/sae/{backbone}.yaml", f"--trainer.default_root_dir={run}",
                 f"--data.init_args.cohort_ckpt={cohorts[backbone]}", *SAE_TINY, "--trainer.logger=false",
                 f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
        again = read_summary(run)
        assert again["sae/fvu"] == pytest.approx(s["sae/fvu"], rel=1e-6)
        assert again["sae/psnr"] == pytest.approx(s["sae/psnr"], abs=1e-5)


@pytest.mark.parametrize("override,message", [
    ("--model.init_args.k=65", "error: k=65 must be between 1 and n_atoms=64"),
    ("--data.init_args.layer=7", "error: layer=7 is out of range: the cohort encoder has layers 0..4"),
    ("--model.init_args.sae_type=gated", "error: unknown SAE type 'gated'; expected one of: topk"),
    ("--data.init_args.cohort_ckpt=configs/sae/siren.yaml", "error: cohort checkpoint 'configs/sae/siren.yaml' is not a readable checkpoint"),
])
def test_bad_sae_values_are_one_line_errors(override, message, cohorts, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", "configs/sae/siren.yaml", f"--trainer.default_root_dir={tmp_path}/r",
                 f"--data.init_args.cohort_ckpt={cohorts['siren']}", *SAE_TINY, override])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_sae_two_process_ddp_equals_one_process(cohorts, tmp_path):
    args = ["--config", "configs/sae/siren.yaml", "--trainer.accelerator=cpu", "--trainer.logger=false",
            f"--data.init_args.cohort_ckpt={cohorts['siren']}", *SAE_TINY, "--trainer.max_steps=5",
            "--data.init_args.steps_per_epoch=5", "--data.init_args.batch_size=101",  # uneven shards
            # 256 atoms, k = 2, window 150: atoms die within the run, so AuxK and the dead counts take part.
            "--model.init_args.n_atoms=256", "--model.init_args.k=2", "--model.init_args.dead_window=150",
            "--trainer.callbacks.init_args.ablation=false",
            # SGD, not Adam: Adam is blind to a constant factor in the gradient, SGD shows any normalisation error.
            "--optimizer=torch.optim.SGD", "--optimizer.lr=0.5"]
    a, b, single, ddp = fit_single_and_ddp(args, tmp_path)
    assert torch.equal(a["sae.samples_since_fired"], b["sae.samples_since_fired"])
    assert a["sae.samples_since_fired"].max() >= 150  # some atoms were dead during the run
    assert_relative_close(a, b, keys=("sae.W_dec", "sae.W_enc", "sae.b_enc", "sae.b_pre"))
    assert not torch.allclose(a["sae.W_enc"], a["sae.W_dec"])  # it trained
    s1, s2 = read_summary(single), read_summary(ddp)
    assert s1["trainer/global_step"] == s2["trainer/global_step"] == 5
    for key in ("sae/fvu", "sae/l0", "sae/dead_fraction", "sae/psnr", "train/mse", "train/aux_mse"):
        assert s1[key] == pytest.approx(s2[key], rel=1e-5, abs=1e-6), key
    assert s1["atoms/alive"] == s2["atoms/alive"]
