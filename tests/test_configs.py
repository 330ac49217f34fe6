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
