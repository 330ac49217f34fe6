"""SAE stage end to end: activations data, the shipped configs, one-line errors, learning on crafted data, and
DDP equal to one process."""

import math

import lightning as L
import pytest
import torch
from conftest import TINY, assert_names, assert_relative_close, cli_error, raises_naming, read_summary, run_cli, twin
from torch.utils.data import DataLoader

from inr_lightning.callbacks.outputs import read_metrics
from inr_lightning.data import ActivationDataModule
from inr_lightning.data.activations import step_coordinates
from inr_lightning.data.grid import step_indices
from inr_lightning.errors import InputError
from inr_lightning.models import SAEModule
from inr_lightning.models.sae import lr_factor
from inr_lightning.nn.readout import SampledActivations

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


def test_activation_data_table_shards_and_provenance(cohorts, capsys):
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
    # Grid mode: batches carry row indices, the rows come from the table computed once.
    grid = ActivationDataModule(str(cohorts["ffmlp"]), layer=1, batch_size=50, steps_per_epoch=2, backbone="ffmlp")
    train = next(iter(grid.train_dataloader()))
    assert "coords" not in train and train["index"].shape == (50,) and train["num_samples"] == 50
    torch.testing.assert_close(train["index"], step_indices(256, 50, 0, 0, 0))
    x = grid.on_after_batch_transfer(dict(train), 0)["x"]
    torch.testing.assert_close(x, dm.net.activations(grid.coords[train["index"]])[1][0])
    table = grid.grid_activations()
    assert grid.grid_activations() is table  # computed once
    # The initialisation sample the SAE receives through the readout: the data's own draw, bit for bit.
    assert torch.equal(grid.readout.sample(40), table[step_indices(256, 40, 0, -1, 0)])
    g = torch.Generator().manual_seed(0 * 1_000_003 + 7)
    drawn = torch.rand(40, 2, generator=g) * 2 - 1
    assert torch.equal(dm.readout.sample(40), dm.activations_at(drawn))
    torch.testing.assert_close(dm.readout.sample(40), dm.net.activations(drawn)[1][0])
    assert grid.readout.net is grid.net and grid.readout.layer == 1 and grid.d_in == grid.readout.width == 16
    fresh = ActivationDataModule(str(cohorts["ffmlp"]), layer=1, batch_size=50, precompute=False)
    torch.testing.assert_close(fresh.on_after_batch_transfer(
        {"coords": grid.coords[train["index"]], "num_samples": 50}, 0)["x"], x)
    extra = grid.summary()
    assert extra["data/cohort_run"] == str(cohorts["ffmlp"].parent.parent) and extra["data/resolution"] == [16, 16]
    assert extra["data/source"] == "MRISlices(min_brain_fraction=0.15, axis=axial)" and extra["data/overrides"] == {}
    assert extra["sae/encoder"] == "cohort" and grid.describe() == "FFMLP layer 1 (cohort encoder)"
    # An explicit resolution that differs from the cohort's: one line, and recorded.
    capsys.readouterr()
    low = ActivationDataModule(str(cohorts["ffmlp"]), layer=1, resolution=8)
    err = [line for line in capsys.readouterr().err.splitlines() if "resolution" in line]
    assert len(err) == 1 and "[8, 8]" in err[0] and "[16, 16]" in err[0]
    assert low.summary()["data/overrides"]["resolution"] == {"value": [8, 8], "cohort": [16, 16]}
    assert low.summary()["data/resolution"] == [8, 8] and low.grid_activations().shape == (64, 16)


def test_backbone_mismatch_is_a_one_line_error(cohorts):
    with raises_naming(InputError, "'siren'", "ffmlp") as info:
        ActivationDataModule(str(cohorts["ffmlp"]), backbone="siren")
    assert "\n" not in str(info.value)


class _LowRank(L.LightningDataModule):
    """Crafted activations: every sample is a non-negative mix of 2 of 12 fixed directions in 24 dims, plus an
    offset, times ``scale`` — an SAE with ≥ 12 atoms and k ≥ 2 can reconstruct it almost exactly, a bias
    cannot (FVU 1)."""

    d_in = 24

    def __init__(self, scale: float = 1.0, steps: int = 200, batch: int = 256) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        dirs = torch.randn(12, self.d_in, generator=g)
        codes = torch.zeros(4096, 12)
        for row, pair in enumerate(torch.randint(0, 12, (4096, 2), generator=g)):
            codes[row, pair] = torch.rand(2, generator=g) + 0.5
        self.x = (codes @ dirs + torch.randn(self.d_in, generator=g)) * scale
        self.steps, self.batch = steps, batch

    def init_sample(self, n, device="cpu"):
        return self.x[:n].to(device)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(1)
        idx = [torch.randint(0, len(self.x), (self.batch,), generator=g) for _ in range(self.steps)]
        return DataLoader([{"x": self.x[i], "num_samples": self.batch} for i in idx], batch_size=None)


class _LoggedFVU(L.Callback):
    """``train/fvu`` as logged at every training step (the curve the loggers receive)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.values.append(float(trainer.callback_metrics["train/fvu"]))


def _fit_low_rank(scale: float, tmp_path, steps: int = 200, **kwargs) -> tuple[SAEModule, _LowRank]:
    L.seed_everything(0)
    data = _LowRank(scale, steps)
    model = SAEModule(**{"readout": SampledActivations(data.x), "n_atoms": 32, "k": 4, "warmup_steps": 10,
                         "lr": 3e-3, "dead_window": 2048, "decay_fraction": 0.2, "decoder_init": "random",
                         "encoder_input": "centred", "downstream_weight": 0.0, "bias_lr_scale": 1.0, **kwargs})
    logged = _LoggedFVU()
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
                        gradient_clip_val=1.0, callbacks=[logged])
    trainer.fit(model, data)
    data.train_fvu = logged.values
    return model, data


def _fvu(x, x_hat):
    return float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def test_sae_learns_crafted_low_rank_data_far_beyond_its_bias(tmp_path):
    model, data = _fit_low_rank(1.0, tmp_path)
    sae, x = model.sae.eval(), data.x
    with torch.no_grad():
        out = sae(x)
        bias_only = sae.decode(torch.zeros_like(out.vals), out.idx).expand_as(x)  # what a bias-only SAE outputs
    fvu, fvu_bias = _fvu(x, out.x_hat), _fvu(x, bias_only)
    assert fvu <= 0.05, fvu
    assert fvu_bias >= 0.99 and 1 - fvu >= 0.95  # explained variance vs the bias-only baseline (≤ 0.01)
    assert len(data.train_fvu) == 200 and data.train_fvu[-1] <= 0.1 < data.train_fvu[0]
    # Input normalisation: the scale is the data's mean norm, stored in the state, undone on decode.
    torch.testing.assert_close(sae.input_scale, x.norm(dim=1)[:16384].mean(), rtol=1e-5, atol=0)
    assert "input_scale" in sae.state_dict()


def test_input_normalisation_makes_training_scale_free(tmp_path):
    small, data = _fit_low_rank(1.0, tmp_path / "a", steps=40)
    large, data_large = _fit_low_rank(1000.0, tmp_path / "b", steps=40)
    torch.testing.assert_close(large.sae.input_scale / small.sae.input_scale, torch.tensor(1000.0), rtol=1e-5, atol=0)
    torch.testing.assert_close(large.sae.W_dec, small.sae.W_dec, rtol=1e-3, atol=1e-4)
    with torch.no_grad():
        a, b = small.sae(data.x), large.sae(data_large.x)
    torch.testing.assert_close(b.x_hat / 1000, a.x_hat, rtol=1e-3, atol=1e-3)  # reported in the original units
    torch.testing.assert_close(b.vals / 1000, a.vals, rtol=1e-3, atol=1e-3)
    assert _fvu(data_large.x, b.x_hat) == pytest.approx(_fvu(data.x, a.x_hat), rel=1e-2)


class _Dominated(L.LightningDataModule):
    """INR-like crafted activations on a 24×24 grid: two global directions 10× larger than 24 local bumps
    (plus 6 directions the data never moves in), rotated into 32 dims: the shape of a deep FFMLP layer."""

    d_in = 32

    def __init__(self, steps: int = 300) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        ax = torch.linspace(-1, 1, 24)
        p = torch.stack(torch.meshgrid(ax, ax, indexing="ij"), -1).reshape(-1, 2)
        self.bumps = torch.exp(-((p[:, None] - (torch.rand(24, 2, generator=g) * 2 - 1)) ** 2).sum(-1) / 0.05)
        big = torch.stack([p[:, 0] + p[:, 1], p[:, 0] - p[:, 1]], 1) * 10
        self.rotation = torch.linalg.qr(torch.randn(32, 32, generator=g))[0]
        self.x = torch.cat([big, self.bumps, torch.zeros(len(p), 6)], 1) @ self.rotation.T + 2
        self.steps = steps

    init_sample = _LowRank.init_sample

    def train_dataloader(self):
        g = torch.Generator().manual_seed(1)
        idx = [torch.randint(0, len(self.x), (256,), generator=g) for _ in range(self.steps)]
        return DataLoader([{"x": self.x[i], "num_samples": 256} for i in idx], batch_size=None)


def test_whitened_encoder_input_keeps_atoms_alive_on_activations_ruled_by_a_few_directions(tmp_path):
    data, result = _Dominated(), {}
    for encoder_input in ("centred", "whitened"):
        L.seed_everything(0)
        model = SAEModule(SampledActivations(data.x), n_atoms=64, k=4, lr=3e-3, warmup_steps=10, dead_window=2048,
                          decoder_init="data", encoder_input=encoder_input, decay_fraction=0.2,
                          downstream_weight=0.0, bias_lr_scale=1.0)
        L.Trainer(max_steps=data.steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
                  gradient_clip_val=1.0).fit(model, data)
        with torch.no_grad():
            out = model.sae(data.x)
            dead = float((torch.bincount(out.idx[out.vals > 0], minlength=64) == 0).float().mean())
            local = ((out.x_hat - data.x) @ data.rotation)[:, 2:26]        # the error in the bumps' directions
            result[encoder_input] = dead, float((local ** 2).sum() / ((data.bumps - data.bumps.mean(0)) ** 2).sum())
    (dead_c, local_c), (dead_w, local_w) = result["centred"], result["whitened"]
    # Centred, TopK picks by the two big directions: most atoms never fire and the bumps are mostly lost
    # (measured 0.83 dead, FVU 0.69 on them); whitened, the bumps get their own atoms (0.17, 0.08).
    assert dead_w <= 0.3 < 0.7 <= dead_c, result
    assert local_w <= 0.2 < 0.5 <= local_c, result


@pytest.fixture(scope="module")
def fitted_siren(tmp_path_factory):
    """A small SIREN cohort trained far enough (24 px, width 32, 300 steps: ~27 dB) that an SAE's PSNR cost
    through the rest of the network is measurable."""
    run = tmp_path_factory.mktemp("fitted") / "siren"
    run_cli(["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={run}",
             "--model.init_args.net.width=32", "--model.init_args.lr=1e-3", "--data.init_args.resolution=24",
             "--data.init_args.steps_per_epoch=50", "--trainer.max_steps=300", "--trainer.enable_progress_bar=false",
             "--trainer.logger=false"])
    return run / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_downstream_term_cuts_the_psnr_cost_of_splicing_the_sae_in(fitted_siren, tmp_path):
    result = {}
    for weight in (0.0, 1.0):
        run = tmp_path / f"w{weight}"
        run_cli(["fit", "--config", "configs/sae/siren.yaml", f"--trainer.default_root_dir={run}",
                 f"--data.init_args.cohort_ckpt={fitted_siren}", "--model.init_args.n_atoms=128",
                 "--model.init_args.k=4", "--model.init_args.warmup_steps=10", "--model.init_args.dead_window=2000",
                 "--data.init_args.batch_size=144", "--data.init_args.steps_per_epoch=50", "--trainer.max_steps=200",
                 "--trainer.enable_progress_bar=false", "--trainer.logger=false",
                 "--trainer.callbacks=[]",   # the PSNR cost is the module's own evaluation; no atom report
                 f"--model.init_args.downstream_weight={weight}"])
        result[weight] = read_summary(run)
    plain, down = result[0.0], result[1.0]
    assert plain["sae/inr_psnr"] >= 25 and "train/downstream_fvu" in down and "train/downstream_fvu" not in plain
    # Measured: 2.35 dB without the term, 1.07 dB with it; FVU 0.075 and 0.085.
    assert down["sae/psnr_drop"] <= 0.7 * plain["sae/psnr_drop"] and plain["sae/psnr_drop"] >= 0.5, result
    assert down["sae/fvu"] <= 1.5 * plain["sae/fvu"], result


def test_downstream_term_without_an_inr_is_a_one_line_error(tmp_path):
    with raises_naming(InputError, "downstream_weight", "SampledActivations"):
        SAEModule(SampledActivations(_LowRank(1.0, 1).x), n_atoms=32, k=4, downstream_weight=1.0)
    model = SAEModule(n_atoms=32, k=4, d_in=24, downstream_weight=1.0)   # no readout at all: at fit time
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    with raises_naming(InputError, "downstream_weight", "NoneType"):
        trainer.fit(model, _LowRank(1.0, 1))


def test_bias_learning_rate_scale_reaches_the_encoder_bias_and_the_schedule():
    model = SAEModule(n_atoms=64, k=4, lr=1e-3, warmup_steps=0, decay="none", bias_lr_scale=0.25, d_in=8)
    rest, bias = model.configure_optimizers().param_groups
    assert bias["lr"] == pytest.approx(2.5e-4) and rest["lr"] == pytest.approx(1e-3)
    assert len(bias["params"]) == 1 and bias["params"][0] is model.sae.b_enc
    assert {id(p) for p in rest["params"]} == {id(p) for p in model.sae.parameters()} - {id(model.sae.b_enc)}
    model = SAEModule(n_atoms=64, k=4, lr=1e-3, warmup_steps=10, bias_lr_scale=0.25, d_in=8)
    sched = model.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert [g["lr"] for g in sched.optimizer.param_groups] == pytest.approx([1e-4, 2.5e-5])  # warm-up step 0: 1/10


def test_learning_rate_schedule_and_dictionary_sizes():
    total, warm = 1000, 100
    f = [lr_factor(s, total, warm, "linear", 0.2) for s in range(total)]
    assert f[0] == pytest.approx(0.01) and f[99] == 1 and f[500] == 1 and f[799] == 1
    assert f[900] == pytest.approx(0.5) and f[-1] == pytest.approx(1 / 200) and all(a >= b for a, b in zip(f[100:], f[101:]))
    assert lr_factor(900, total, warm, "cosine", 0.2) == pytest.approx(0.5)
    assert lr_factor(850, total, warm, "cosine", 0.2) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(999, total, warm, "none", 0.2) == 1
    for n_atoms, lr in ((1024, 8e-4), (4096, 4e-4), (16384, 2e-4)):  # the reference rule, by config alone
        assert SAEModule(n_atoms=n_atoms, k=32, d_in=16, lr_base=2e-4).lr == pytest.approx(lr)
        assert SAEModule(n_atoms=n_atoms, k=32).lr == pytest.approx(5 * lr)   # the shipped lr_base, 1e-3
    with raises_naming(InputError, "'step'", "none", "linear", "cosine"):
        SAEModule(decay="step")


@pytest.mark.parametrize("backbone", ["siren", "ffmlp"])
def test_sae_config_runs_a_tiny_fit(backbone, cohorts, tmp_path):
    run = tmp_path / "run"
    run_cli(["fit", "--config", f"configs/sae/{backbone}.yaml", f"--trainer.default_root_dir={run}",
             f"--data.init_args.cohort_ckpt={cohorts[backbone]}", *SAE_TINY])
    s = read_summary(run)
    assert s["trainer/global_step"] == 4
    for key in ("fvu", "explained_variance", "l0", "dead_fraction", "dense_fraction", "cosine", "rel_bias", "psnr",
                "inr_psnr", "psnr_drop", "input_scale"):
        assert f"sae/{key}" in s, key
    assert s["sae/l0"] <= 4 and 0 <= s["sae/dead_fraction"] <= 1 and s["sae/encoder"] == "cohort"
    assert s["data/cohort_run"] == str(cohorts[backbone].parent.parent) and s["data/resolution"] == [16, 16]
    assert s["data/backbone"] == backbone and s["data/layer"] == 2
    for key in ("atoms/mass_radius90_median", "atoms/tiling_ratio", "atoms/content_alignment_median",
                "atoms/align_image_median", "atoms/align_edges_median",
                "atoms/align_foreground_median", "ablation/damage_per_support_median",
                "ablation/damage_ep_per_support_median"):
        assert math.isfinite(s[key]) and len(s[key + "_ci95" if "tiling" not in key else key + "_random_range95"]) == 2, key
    # Curves through the loggers: train/fvu every step, sae/fvu and the dead fraction every evaluation, and the picture.
    curves = read_metrics(run)
    assert [step for step, _ in curves["train/fvu"]] == [1, 2, 3, 4]
    assert [step for step, _ in curves["sae/fvu"]] == [2, 4] and len(curves["sae/dead_fraction"]) == 2
    assert curves["sae/fvu"][-1][1] == pytest.approx(s["sae/fvu"], rel=1e-6)
    assert (run / "curves.png").stat().st_size > 10_000 and not (run / "sae_curves.csv").exists()
    assert s["ablation/rows_forwarded_per_grid"] <= 4  # all atoms cost ≤ k passes
    assert s["ablation/psnr_sae"] == pytest.approx(s["sae/psnr"], abs=1e-3)
    assert len(s["ablation/worst_atoms"]) == 5 and "atoms/spread_median" in s
    atoms = run / "atoms"
    assert {"gallery.png", "worst_atoms.png", "atoms.csv", "ablation.csv", "distributions.png"} <= \
        {p.name for p in atoms.iterdir()}
    rows = (atoms / "atoms.csv").read_text().splitlines()
    assert len(rows) == 65 and "fire_frequency" not in rows[0]
    assert "mass_radius90" in rows[0] and "content_alignment" in rows[0]
    assert list((run / "wandb").glob("offline-run-*"))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["d_in"] == 16 and ckpt["hyper_parameters"]["n_atoms"] == 64
    w = ckpt["state_dict"]["sae.W_dec"]
    torch.testing.assert_close(w.norm(dim=1), torch.ones(64))  # unit rows after the last step
    assert all(k.startswith("sae.") for k in ckpt["state_dict"])  # the SAE alone: the frozen INR is not duplicated
    assert "sae_curves" not in ckpt
    if backbone == "siren":  # the validate stage rebuilds the SAE from the checkpoint: same full-grid metrics
        run_cli(["validate", "--config", f"configs/sae/{backbone}.yaml", f"--trainer.default_root_dir={run}",
                 f"--data.init_args.cohort_ckpt={cohorts[backbone]}", *SAE_TINY, "--trainer.logger=false",
                 f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
        again = read_summary(run)
        assert again["sae/fvu"] == pytest.approx(s["sae/fvu"], rel=1e-6)
        assert again["sae/psnr"] == pytest.approx(s["sae/psnr"], abs=1e-5)


@pytest.mark.parametrize("override,named", [   # the bad value (and the allowed ones where they are few)
    ("--model.init_args.k=65", [65, 64]),
    ("--data.init_args.layer=7", [7, "0..4"]),
    ("--data.init_args.cohort_ckpt=configs/sae/siren.yaml", ["'configs/sae/siren.yaml'"]),
    ("--backbone=ffmlp", ["'ffmlp'", "siren"]),
    ("--model.init_args.decay=step", ["step", "none", "linear", "cosine"]),
    ("--model.init_args.encoder_input=pca", ["pca", "centred", "whitened"]),
    ("--model.init_args.whiten_eps=0", ["whiten_eps", 0]),
    ("--model.init_args.downstream_weight=-1", ["downstream_weight", -1]),
    ("--model.init_args.bias_lr_scale=0", ["bias_lr_scale", 0]),
])
def test_bad_sae_values_are_one_line_errors(override, named, cohorts, tmp_path, capsys):
    line = cli_error(["fit", "--config", "configs/sae/siren.yaml", f"--trainer.default_root_dir={tmp_path}/r",
                      f"--data.init_args.cohort_ckpt={cohorts['siren']}", *SAE_TINY, override], capsys)
    assert_names(line, *named)


@pytest.mark.slow
def test_sae_two_process_ddp_equals_one_process(tmp_path, ddp_twins):
    """SGD, uneven shards (101), 256 atoms at k = 2 that die within the window: tests/ddp_twins.py ``sae_sgd``."""
    a, b, single, ddp = twin("sae_sgd", tmp_path, ddp_twins)
    assert torch.equal(a["sae.samples_since_fired"], b["sae.samples_since_fired"])
    assert a["sae.samples_since_fired"].max() >= 150  # some atoms were dead during the run
    assert_relative_close(a, b, keys=("sae.W_dec", "sae.W_enc", "sae.b_enc", "sae.b_pre"))
    assert not torch.allclose(a["sae.W_enc"], a["sae.W_dec"])  # it trained
    s1, s2 = read_summary(single), read_summary(ddp)
    assert s1["trainer/global_step"] == s2["trainer/global_step"] == 5
    for key in ("sae/fvu", "sae/l0", "sae/dead_fraction", "sae/psnr", "train/mse", "train/aux_mse", "train/fvu",
                "train/aux_loss", "train/downstream_fvu"):
        assert s1[key] == pytest.approx(s2[key], rel=1e-5, abs=1e-6), key
    assert s1["atoms/alive"] == s2["atoms/alive"]
