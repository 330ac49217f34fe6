"""SignalFitModule: protocols, frozen layers, batched = single fits, input errors, configs, DDP."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
import yaml
from conftest import ROOT, assert_names, assert_relative_close, cohort_run, raises_naming, read_summary, run_cli, twin

from inr_lightning.checkpoints import load_cohort, save_cohort
from inr_lightning.data import SignalDataModule, Synthetic
from inr_lightning.errors import InputError
from inr_lightning.models import SignalFitModule
from inr_lightning.nn import CohortINR, INRConfig

LAYERS = 3


def make_cohort_ckpt(path, backbone: str = "siren", width: int = 16, layers: int = LAYERS, seed: int = 0,
                     class_path: str = "inr_lightning.models.CohortINRModule"):
    """A cohort-stage checkpoint in the layout Lightning writes (hyper-parameters + ``net.`` state dict)."""
    torch.manual_seed(seed)
    cfg = INRConfig(backbone=backbone, width=width, shared_layers=layers, num_frequencies=8)
    return save_cohort(path, CohortINR(cfg, 4, 1), class_path=class_path)


def datamodule(num_heldout: int = 3, seed: int = 0) -> SignalDataModule:
    return SignalDataModule(Synthetic(size=16, num_images=num_heldout + 3, seed=seed), resolution=16,
                            num_signals=3, num_heldout=num_heldout, split="heldout", steps_per_epoch=3)


def fit(module, dm, steps: int = 3, callbacks=()) -> L.Trainer:
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=list(callbacks), accelerator="cpu", devices=1)
    trainer.fit(module, datamodule=dm)
    return trainer


def encoder_weights(module) -> list[torch.Tensor]:
    return [module.net.encoder.linear(j).weight.detach().clone() for j in range(len(module.net.encoder))]


@pytest.fixture
def ckpt(tmp_path):
    return make_cohort_ckpt(tmp_path / "cohort.ckpt")


def cohort_weight(path, j) -> torch.Tensor:
    return torch.load(path, weights_only=True)["state_dict"][f"net.encoder.layers.{j}.linear.weight"]


# -- protocols -------------------------------------------------------------------------------------
@pytest.mark.parametrize("above", ["finetune", "reinit"])
def test_frozen_parameters_stay_bit_identical(ckpt, above):
    module = SignalFitModule(load_cohort(ckpt)[0], protocol="freeze", last_frozen_layer=1, above=above, num_signals=3,
                             lr=1e-2, record_steps=[1, 3])
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = fit(module, datamodule())
    for j in range(LAYERS):
        for name in ("weight", "bias"):
            key = f"net.encoder.layers.{j}.linear.{name}"
            p = module.state_dict()[key]
            if j <= 1:
                assert torch.equal(p, before[key]), key  # bit-identical
                assert not dict(module.named_parameters())[key].requires_grad
            else:
                assert not torch.equal(p, before[key]), key
    for j in range(2):  # the frozen layers hold the cohort weights in every copy
        assert torch.equal(module.net.encoder.linear(j).weight, cohort_weight(ckpt, j).expand(3, -1, -1))
    in_optimizer = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    frozen = [p for j in range(2) for p in module.net.encoder.layers[j].parameters()]
    assert frozen and not any(id(p) in in_optimizer for p in frozen)
    summary = module.summary()
    assert summary["fit/last_frozen_layer"] == 1 and summary["fit/frozen_layers"] == [0, 1]
    assert set(summary["fit/psnr_at_step"]) == {"1", "3"} and len(summary["fit/psnr_final"]) == 3
    assert summary["fit/psnr_final"] == summary["fit/psnr_at_step"]["3"]


def test_reinit_redraws_the_layers_above_the_last_frozen_one(ckpt):
    module = SignalFitModule(load_cohort(ckpt)[0], protocol="freeze", last_frozen_layer=0, above="reinit",
                             num_signals=3)
    module.apply_freeze(0)
    assert torch.equal(module.net.encoder.linear(0).weight[0], cohort_weight(ckpt, 0)[0])
    for j in (1, 2):
        w = module.net.encoder.linear(j).weight
        assert not torch.equal(w[0], cohort_weight(ckpt, j)[0])
        assert not torch.equal(w[0], w[1])  # independent draws per signal, like scratch


def test_finetune_moves_every_layer(ckpt):
    module = SignalFitModule(load_cohort(ckpt)[0], protocol="finetune", num_signals=3, lr=1e-2, record_steps=[])
    start = encoder_weights(module)
    for j in range(LAYERS):  # starts from the cohort encoder in every copy
        assert torch.equal(start[j], cohort_weight(ckpt, j).expand(3, -1, -1))
    heads = module.net.heads.out.weight.detach().clone()
    fit(module, datamodule())
    assert all(p.requires_grad for p in module.parameters())
    for j, (a, b) in enumerate(zip(start, encoder_weights(module))):
        assert not torch.equal(a, b), f"layer {j} did not move"
        assert (a - b).flatten(1).abs().amax(1).min() > 0, f"layer {j}: a signal's copy did not move"
    assert not torch.equal(heads, module.net.heads.out.weight)


@pytest.mark.parametrize("backbone", ["siren", "ffmlp"])
def test_scratch_transfers_nothing_learned(tmp_path, backbone):
    path = make_cohort_ckpt(tmp_path / "c.ckpt", backbone)
    module = SignalFitModule(load_cohort(path)[0], protocol="scratch", num_signals=2)
    for j in range(LAYERS):
        assert not torch.equal(module.net.encoder.linear(j).weight[0], cohort_weight(path, j)[0])
    if backbone == "ffmlp":  # the fixed Fourier matrix is architecture, kept from the cohort
        b = torch.load(path, weights_only=True)["state_dict"]["net.encoder.features.B"]
        assert torch.equal(module.net.encoder.features.B, b)


@pytest.mark.parametrize("backbone,protocol", [("siren", "finetune"), ("ffmlp", "freeze")])
def test_batched_fits_equal_single_fits(tmp_path, backbone, protocol):
    path = make_cohort_ckpt(tmp_path / "c.ckpt", backbone)
    depth = 0 if protocol == "freeze" else None
    kwargs = dict(protocol=protocol, last_frozen_layer=depth, lr=1e-3, record_steps=[])
    torch.manual_seed(1)
    batched = SignalFitModule(load_cohort(path)[0], num_signals=3, **kwargs)
    init = {k: v.clone() for k, v in batched.state_dict().items()}
    fit(batched, datamodule(), steps=4)
    for i in range(3):
        single = SignalFitModule(load_cohort(path)[0], num_signals=1, **kwargs)
        with torch.no_grad():  # the same init as copy i of the batched model
            for key, value in single.state_dict().items():
                if key in init and init[key].dim() == 3:
                    value.copy_(init[key][i:i + 1])
        dm = datamodule()
        dm.images, dm.targets = dm.images[i:i + 1], dm.targets[i:i + 1]
        fit(single, dm, steps=4)
        for key, value in single.state_dict().items():
            if key in init and init[key].dim() == 3:
                diff = (value[0] - batched.state_dict()[key][i]).abs().max()
                assert diff <= 1e-5, f"signal {i} {key}: {diff:.2e}"


# -- bad input -------------------------------------------------------------------------------------
def test_bad_inputs_are_one_line_errors(tmp_path, ckpt):
    cases = [
        (dict(protocol="half"), ["'half'", "scratch", "finetune", "freeze", "auto"]),   # bad value, allowed ones
        (dict(above="keep"), ["'keep'", "finetune", "reinit"]),
        (dict(protocol="freeze", last_frozen_layer=3), [3, "0..2"]),
        (dict(protocol="freeze", last_frozen_layer=-1), [-1, "0..2"]),
        (dict(protocol="freeze"), ["freeze", "last_frozen_layer"]),
        (dict(protocol="finetune", last_frozen_layer=1), ["last_frozen_layer", "finetune"]),
        (dict(backbone="ffmlp"), ["siren", "ffmlp"]),
        (dict(record_steps=[-5]), ["record_steps", -5]),
    ]
    cohort = load_cohort(ckpt)[0]
    for kwargs, named in cases:
        with raises_naming(InputError, *named) as info:
            SignalFitModule(cohort, **kwargs)
        assert "\n" not in str(info.value)
    fitted = CohortINR(cohort.cfg, 2, 1, encoder_copies=2)   # a fit's network (one encoder per signal)
    with raises_naming(InputError, "cohort", "CohortINR"):
        SignalFitModule(fitted)
    with raises_naming(InputError, "cohort", "str"):
        SignalFitModule(str(ckpt))


def test_a_cohort_path_that_is_wrong_is_one_line_naming_it(tmp_path, ckpt):
    """Every way ``data.cohort_ckpt`` can be wrong is an ``InputError`` naming the path (``load_cohort``)."""
    with raises_naming(InputError, "missing.ckpt"):
        load_cohort(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with raises_naming(InputError, "junk.ckpt"):
        load_cohort(tmp_path / "junk.ckpt")
    wrong = make_cohort_ckpt(tmp_path / "fit.ckpt", class_path="inr_lightning.models.SignalFitModule")
    with raises_naming(InputError, "fit.ckpt", "SignalFitModule"):
        load_cohort(wrong)
    bad = torch.load(ckpt, weights_only=True)
    bad["state_dict"]["net.encoder.layers.1.linear.weight"] = torch.zeros(1, 5, 5)
    torch.save(bad, tmp_path / "bad.ckpt")
    with raises_naming(InputError, "bad.ckpt", "architecture"):
        load_cohort(tmp_path / "bad.ckpt")


def test_auto_without_the_callback_is_an_error(ckpt):
    module = SignalFitModule(load_cohort(ckpt)[0], protocol="auto", num_signals=3)
    with raises_naming(InputError, "auto", "StableRankFreeze"):
        fit(module, datamodule(), steps=1)


class GridProbe(L.Callback):
    """What the fit module was handed: (its grid is the data module's, the grid's target shape, grid in hparams)."""
    seen: list = []

    def on_train_start(self, trainer, pl_module) -> None:
        grid = pl_module.grid
        GridProbe.seen.append((torch.equal(grid["coords"], trainer.datamodule.coords), tuple(grid["target"].shape),
                               "grid" in pl_module.hparams))


# -- shipped configs ---------------------------------------------------------------------------------
FIT_TINY = ["--data.init_args.resolution=16", "--data.init_args.steps_per_epoch=2", "--trainer.max_steps=4",
            "--trainer.enable_progress_bar=false", "--model.init_args.record_steps=[2, 4]"]


@pytest.mark.parametrize("backbone", ["siren", "ffmlp"])
def test_fit_config_runs_a_tiny_fit_from_a_cohort_run(tmp_path, backbone, capsys):
    cohort, run = tmp_path / "cohort", tmp_path / "fit"
    run_cli(["fit", "--config", f"configs/cohort/{backbone}.yaml", f"--trainer.default_root_dir={cohort}",
             "--model.init_args.net.width=16", "--model.init_args.net.num_frequencies=8",
             "--data.init_args.resolution=16", "--data.init_args.steps_per_epoch=2", "--trainer.max_steps=2",
             "--trainer.enable_progress_bar=false", "--trainer.logger=false"])
    ckpt = cohort / "checkpoints" / "last.ckpt"
    run_cli(["fit", "--config", f"configs/fit/{backbone}.yaml", f"--trainer.default_root_dir={run}",
             f"--data.init_args.cohort_ckpt={ckpt}", *FIT_TINY])
    summary = read_summary(run)
    assert summary["trainer/global_step"] == 4 and len(summary["val/psnr_per_signal"]) == 5
    assert summary["fit/protocol"] == "auto" and summary["freeze/rule"] == "through"
    profile = summary["freeze/stable_rank"]
    assert len(profile) == 5 and summary["freeze/argmax"] == max(range(5), key=profile.__getitem__)
    assert summary["fit/last_frozen_layer"] == summary["freeze/last_frozen_layer"] == summary["freeze/argmax"]
    assert set(summary["fit/psnr_at_step"]) == {"2", "4"}
    assert summary["fit/psnr_final"] == pytest.approx(summary["val/psnr_per_signal"], abs=1e-4)
    assert list((run / "wandb").glob("offline-run-*"))
    hp = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert hp["num_signals"] == 5 and not {"cohort", "cohort_ckpt", "grid"} & set(hp)   # inputs, not settings
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["init_args"]["cohort_ckpt"] == str(ckpt)
    if backbone == "siren":
        # The fit checkpoint evaluates again through `test --ckpt_path` (hyper-parameters are init args only).
        run_cli(["test", "--config", str(run / "config.yaml"), f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                 "--trainer.logger=false"])
        tested = json.loads((run / "test_summary.json").read_text())
        assert tested["test/psnr"] == pytest.approx(summary["val/psnr"], abs=1e-4)
        assert read_summary(run) == summary   # the training record is untouched by `test`
        # The CLI hands the module the data module's full grid (frozen-prefix cache, recorded PSNR); no module
        # reads ``trainer.datamodule``.
        GridProbe.seen.clear()
        run_cli(["fit", "--config", "configs/fit/siren.yaml", f"--trainer.default_root_dir={tmp_path / 'probed'}",
                 f"--data.init_args.cohort_ckpt={ckpt}", *FIT_TINY, "--trainer.callbacks+=test_fitting.GridProbe"])
        assert GridProbe.seen == [(True, (5, 256, 1), False)]
        for path in (ROOT / "inr_lightning" / "models").glob("*.py"):
            assert "datamodule" not in path.read_text(), path.name
        # lr_schedule: cosine — the fit's rate decays to 0 at max_steps (a settled final step); constant keeps it.
        for schedule, end in (("cosine", 0.0), ("constant", hp["lr"])):
            settled = tmp_path / f"fit_{schedule}"
            run_cli(["fit", "--config", "configs/fit/siren.yaml", f"--trainer.default_root_dir={settled}",
                     f"--data.init_args.cohort_ckpt={ckpt}", f"--model.init_args.lr_schedule={schedule}", *FIT_TINY])
            state = torch.load(settled / "checkpoints" / "last.ckpt", weights_only=True)
            assert state["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(end, abs=1e-12)
        # A depth out of range reaches the user as one line naming the valid range, exit status 2.
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            run_cli(["fit", "--config", "configs/fit/siren.yaml", f"--trainer.default_root_dir={tmp_path / 'x'}",
                     f"--data.init_args.cohort_ckpt={ckpt}", "--model.init_args.protocol=freeze",
                     "--model.init_args.last_frozen_layer=9", *FIT_TINY])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error:")
        assert_names(err[-1], 9, "0..4")   # the bad depth and the valid ones


# -- DDP -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fit_stage_two_process_ddp_equals_one_process(tmp_path, ddp_twins):
    """Freeze, chunked steps (uneven: 101 and ~50 coordinates per rank), SGD: tests/ddp_twins.py ``fit_sgd``."""
    a, b, single, ddp = twin("fit_sgd", tmp_path, ddp_twins)
    assert_relative_close(a, b)
    path = tmp_path / "cohort" / "checkpoints" / "last.ckpt"
    frozen = cohort_weight(path, 0).expand(2, -1, -1)
    assert torch.equal(a["net.encoder.layers.0.linear.weight"], frozen)
    assert torch.equal(b["net.encoder.layers.0.linear.weight"], frozen)
    assert not torch.equal(a["net.encoder.layers.1.linear.weight"], cohort_weight(path, 1).expand(2, -1, -1))
    s1, s2 = read_summary(single), read_summary(ddp)
    assert s1["trainer/global_step"] == s2["trainer/global_step"] == 4
    assert s1["fit/psnr_at_step"]["2"] == pytest.approx(s2["fit/psnr_at_step"]["2"], abs=1e-4)
