"""Every shipped stage config instantiates and runs a tiny fit, and leaves a complete run directory."""

import pytest
import torch
import yaml
from conftest import CONFIGS, TINY, read_summary, run_cli


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.startswith("configs/cohort/")])
def test_cohort_config_runs_a_tiny_fit(config, tmp_path):
    run = tmp_path / "run"
    run_cli(["fit", "--config", config, f"--trainer.default_root_dir={run}", *TINY])
    summary = read_summary(run)
    assert summary["trainer/global_step"] == 4
    assert len(summary["val/psnr_per_signal"]) == 10 and len(summary["encoder/stable_rank"]) == 5
    assert summary["val/psnr"] == pytest.approx(sum(summary["val/psnr_per_signal"]) / 10, rel=1e-5)
    assert 0 < summary["val/ssim"] <= 1 and summary["val/psnr"] > 5
    assert {"last.ckpt", "best.ckpt"} <= {p.name for p in (run / "checkpoints").iterdir()}
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["trainer"]["default_root_dir"] == str(run)  # resolved, interpolations included
    assert saved["trainer"]["logger"]["init_args"]["save_dir"] == str(run)
    assert list((run / "wandb").glob("offline-run-*"))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # no pickled objects inside
    assert ckpt["hyper_parameters"]["num_signals"] == 10  # the head count came from the data


def test_callback_presets_add_to_the_config_callbacks(tmp_path):
    run = tmp_path / "run"
    run_cli(["fit", "--config", "configs/cohort/siren.yaml", "--config", "callbacks/early_stopping.yaml",
             "--config", "callbacks/lr_monitor.yaml", f"--trainer.default_root_dir={run}", *TINY])
    callbacks = yaml.safe_load((run / "config.yaml").read_text())["trainer"]["callbacks"]
    names = [c["class_path"].rsplit(".", 1)[-1] for c in callbacks]
    assert names == ["ReconstructionImages", "EarlyStopping", "LearningRateMonitor"]


def test_wandb_run_carries_the_resolved_config_group_job_type_and_tags(tmp_path, monkeypatch):
    import wandb

    seen = {}
    real_finish = wandb.finish

    def finish(*args, **kwargs):  # read the run just before the CLI closes it
        run = wandb.run
        seen.update(config=dict(run.config), group=run.group, job_type=run.job_type, tags=tuple(run.tags),
                    project=run.project, offline=run.settings.mode)
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(wandb, "finish", finish)
    run_cli(["fit", "--config", "configs/cohort/ffmlp.yaml", "--study=brains",
             f"--trainer.default_root_dir={tmp_path / 'run'}", *TINY])
    assert seen["group"] == "brains" and seen["job_type"] == "cohort" and seen["tags"] == ("ffmlp",)
    assert seen["project"] == "inr_lightning" and seen["offline"] in ("offline", "dryrun")
    config = seen["config"]
    assert config["model"]["class_path"] == "inr_lightning.models.CohortINRModule"
    assert config["model"]["init_args"]["net"]["backbone"] == "ffmlp"  # interpolation resolved
    assert config["model"]["init_args"]["num_signals"] == 10  # the linked value, not the default
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == str(tmp_path / "run")


def resolved(config: str, capsys) -> dict:
    """``fit --config <config> --print_config``: every file, default and interpolation applied."""
    with pytest.raises(SystemExit) as stop:
        run_cli(["fit", "--config", config, "--print_config"])
    assert stop.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


@pytest.mark.parametrize("stage", ["cohort", "fit", "sae"])
def test_backbone_files_hold_only_the_backbone(stage, capsys):
    """configs/<stage>/{siren,ffmlp}.yaml include the stage's base.yaml: the resolved configs differ only where
    the backbone is named (and in the FFMLP fit's learning rate)."""
    siren, ffmlp = (flat(resolved(f"configs/{stage}/{b}.yaml", capsys)) for b in ("siren", "ffmlp"))
    assert siren.keys() == ffmlp.keys()
    differ = {k for k in siren if siren[k] != ffmlp[k]}
    assert all("siren" in str(siren[k]) and str(siren[k]).replace("siren", "ffmlp") == str(ffmlp[k])
               for k in differ - {"model.init_args.lr"}), differ
    assert "backbone" in differ and ("model.init_args.lr" in differ) == (stage == "fit")
    if stage == "fit":
        assert (siren["model.init_args.lr"], ffmlp["model.init_args.lr"]) == (1e-4, 1e-3)


def _hparams(module) -> dict:
    return {k: v for k, v in module.hparams.items() if not k.startswith("_")}


def _same_state(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_class_defaults_are_the_shipped_settings(tmp_path, capsys):
    """Each stage's module built from Python with its defaults equals the one its shipped config builds
    (same hyper-parameters, same initial state): Python users and CLI users get the same model."""
    from conftest import cohort_run

    from inr_lightning.checkpoints import load_cohort
    from inr_lightning.models import CohortINRModule, SAEModule, SignalFitModule
    from inr_lightning.nn import CohortINR, INRConfig

    cohort = resolved("configs/cohort/siren.yaml", capsys)["model"]["init_args"]
    torch.manual_seed(0)
    default = CohortINRModule()
    torch.manual_seed(0)
    shipped = CohortINRModule(**{**cohort, "net": INRConfig(**cohort["net"])})
    assert _hparams(default) == _hparams(shipped) and default.hparams["net"]["width"] == 256
    _same_state(default, shipped)

    ckpt = cohort_run(tmp_path / "cohort", CohortINR(INRConfig(), 3, 1))
    fit = resolved("configs/fit/siren.yaml", capsys)["model"]["init_args"]
    # backbone: the config's own check that the cohort holds the named backbone (no default can know it).
    cohort_net = load_cohort(ckpt)[0]   # loaded before the seed: building it draws random numbers
    fit = {k: v for k, v in fit.items() if k != "backbone"} | {"cohort": cohort_net}
    torch.manual_seed(0)
    default = SignalFitModule(cohort=cohort_net)
    torch.manual_seed(0)
    shipped = SignalFitModule(**fit)
    assert _hparams(default) == _hparams(shipped) and default.record_steps == [50, 100, 250, 500, 1000, 2000]
    _same_state(default, shipped)

    sae = resolved("configs/sae/siren.yaml", capsys)["model"]["init_args"]
    default, shipped = SAEModule(d_in=16), SAEModule(**{**sae, "d_in": 16})
    assert _hparams(default) == _hparams(shipped)
    assert (default.hparams["encoder_input"], default.hparams["decoder_init"], default.hparams["downstream_weight"]) \
        == ("whitened", "data", 1.0)
    _same_state(default, shipped)


def test_data_module_defaults_are_the_shipped_settings(capsys):
    """The fit and SAE data modules' defaults are their configs' settings; the cohort config's data settings
    beyond SignalDataModule's defaults are the MRI dataset's (its source, padding, held-out count)."""
    import inspect

    from inr_lightning.data import ActivationDataModule, CohortRunDataModule, SignalDataModule

    for stage, cls, own in (("cohort", SignalDataModule, {"source", "aspect", "num_heldout"}),
                            ("fit", CohortRunDataModule, {"cohort_ckpt"}),
                            ("sae", ActivationDataModule, {"cohort_ckpt", "backbone"})):
        shipped = resolved(f"configs/{stage}/siren.yaml", capsys)["data"]["init_args"]
        defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
        assert shipped.keys() == defaults.keys(), stage
        differ = {k for k in shipped if shipped[k] != defaults[k]}
        assert differ == own, (stage, differ)
