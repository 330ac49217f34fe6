"""What a researcher meets in the first week: run records that stay true, local curves, ``compare``, ``render``
and ``predict``, the Python API (the example in docs/api.md, executed) and one-line errors for the usual slips.

One module-scoped set of tiny runs (16 px, width 16) serves every test: a cohort run that stops mid-epoch (3
steps, epochs of 2) with offline W&B, an SAE run whose only real validation is the final one (3 steps, epochs
of 50) and a fit run, all laid out as ``runs/mri/<stage>/siren`` so that the docs example runs as written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY, assert_names, cli_error, read_summary, run_cli

NO_LOG = ["--trainer.logger=false"]
SAE_TINY = ["--model.init_args.n_atoms=32", "--model.init_args.k=2", "--model.init_args.warmup_steps=2",
            "--data.init_args.batch_size=64", "--trainer.enable_progress_bar=false", "--trainer.callbacks=[]"]
FIT_TINY = ["--data.init_args.resolution=16", "--data.init_args.steps_per_epoch=2", "--trainer.max_steps=2",
            "--trainer.enable_progress_bar=false", "--model.init_args.protocol=finetune", "--trainer.callbacks=[]"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("first_week")
    cohort = base / "runs/mri/cohort/siren"
    sae = base / "runs/mri/sae/siren/layer2"
    fit = base / "runs/mri/fit/siren"
    with pytest.MonkeyPatch.context() as mp:  # the autouse offline-W&B fixture is per test; this is per module
        for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(base / "wandb_home"),
                           "WANDB_CACHE_DIR": str(base / "wandb_cache"), "WANDB_CONFIG_DIR": str(base / "wandb_cfg"),
                           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}.items():
            mp.setenv(key, value)
        run_cli(["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={cohort}", *TINY,
                 "--trainer.max_steps=3", "--trainer.log_every_n_steps=1"])
        ckpt = cohort / "checkpoints" / "last.ckpt"
        run_cli(["fit", "--config", "configs/sae/siren.yaml", f"--trainer.default_root_dir={sae}",
                 f"--data.init_args.cohort_ckpt={ckpt}", *SAE_TINY, "--data.init_args.steps_per_epoch=50",
                 "--trainer.max_steps=3", "--trainer.log_every_n_steps=1", *NO_LOG])
        run_cli(["fit", "--config", "configs/fit/siren.yaml", f"--trainer.default_root_dir={fit}",
                 f"--data.init_args.cohort_ckpt={ckpt}", *FIT_TINY, *NO_LOG])
    return {"base": base, "cohort": cohort, "sae": sae, "fit": fit}


def metric_rows(run: Path) -> list[tuple[int, str, float]]:
    lines = (run / "metrics.csv").read_text().splitlines()
    assert lines[0] == "step,key,value"
    return [(int(s), k, float(v)) for s, k, v in (line.split(",") for line in lines[1:])]


def last_ckpt(run: Path) -> str:
    return str(run / "checkpoints" / "last.ckpt")


# -- 1. run records -------------------------------------------------------------------------------------------
def test_a_fit_ends_with_a_real_evaluation_and_eval_commands_keep_their_own_records(runs):
    cohort, sae = runs["cohort"], runs["sae"]
    record = {run: (run / "summary.json").read_bytes() for run in (cohort, sae)}
    for run in (cohort, sae):
        s = read_summary(run)
        assert s["trainer/global_step"] == 3 and torch.load(last_ckpt(run), weights_only=True)["global_step"] == 3
    # Re-evaluating the final weights gives the recorded numbers: the record is of step 3, not of the sanity
    # check (for the SAE, the only validation before the end was the sanity check of the untrained SAE).
    run_cli(["validate", "--config", str(sae / "config.yaml"), f"--ckpt_path={last_ckpt(sae)}", *NO_LOG])
    again = json.loads((sae / "validate_summary.json").read_text())
    assert again["sae/fvu"] == pytest.approx(read_summary(sae)["sae/fvu"], rel=1e-5)
    assert again["sae/dead_fraction"] == read_summary(sae)["sae/dead_fraction"]
    assert again["eval/ckpt_path"] == last_ckpt(sae)
    run_cli(["test", "--config", str(cohort / "config.yaml"), f"--ckpt_path={last_ckpt(cohort)}"])
    tested = json.loads((cohort / "test_summary.json").read_text())
    assert tested["test/psnr"] == pytest.approx(read_summary(cohort)["val/psnr"], abs=1e-4)
    assert "test/psnr" not in read_summary(cohort)
    assert {run: (run / "summary.json").read_bytes() for run in (cohort, sae)} == record  # untouched
    # The test run logged to W&B under <run>/eval/, beside (not inside) the training run's wandb/.
    assert len(list((cohort / "wandb").glob("offline-run-*"))) == 1
    assert len(list((cohort / "eval" / "wandb").glob("offline-run-*"))) == 1
    # The curve ends with the final evaluation, and no value of the sanity check (step 0) is in it.
    val = [(step, value) for step, key, value in metric_rows(cohort) if key == "val/psnr"]
    assert [step for step, _ in val] == [2, 3] and val[-1][1] == pytest.approx(read_summary(cohort)["val/psnr"])


def test_every_run_writes_metrics_csv_and_curves_png_with_or_without_wandb(runs):
    keys = {"cohort": {"train/loss", "train/psnr", "val/psnr", "val/ssim", "encoder/stable_rank/0"},
            "sae": {"train/mse", "sae/fvu", "sae/dead_fraction", "sae/psnr"},  # the SAE ran with --trainer.logger=false
            "fit": {"val/psnr"}}
    for stage, expected in keys.items():
        run = runs[stage]
        rows = metric_rows(run)
        assert expected <= {key for _, key, _ in rows}, stage
        assert all(1 <= step <= read_summary(run)["trainer/global_step"] for step, _, _ in rows)
        assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    train = [step for step, key, _ in metric_rows(runs["cohort"]) if key == "train/loss"]
    assert train == [1, 2, 3]  # log_every_n_steps=1: one row per step, steps counted as in summary.json


# -- 2. compare -----------------------------------------------------------------------------------------------
def test_compare_prints_one_table_and_plots_one_metric(runs, tmp_path, capsys):
    out = tmp_path / "cmp.png"
    capsys.readouterr()
    run_cli(["compare", str(runs["base"] / "runs/mri/[cf]*/siren"), str(runs["sae"]), "--out", str(out)])
    text = capsys.readouterr().out
    table = [line for line in text.splitlines() if line.startswith("| mri")]
    assert [line.split("|")[2].strip() for line in table] == ["cohort", "fit", "sae"]  # grouped by stage
    cohort_row = next(line for line in table if f"| {runs['cohort']} " in line)
    assert f"| {read_summary(runs['cohort'])['val/psnr']:.4g} " in cohort_row
    assert out.read_bytes()[:4] == b"\x89PNG" and "val/psnr curve of 2 run(s)" in text
    run_cli(["compare", str(runs["sae"]), "--out", str(out)])  # an SAE alone: its own metric by default
    assert "| sae/fvu " in capsys.readouterr().out.splitlines()[0]


def test_compare_names_what_is_wrong(runs, tmp_path, capsys):
    line = cli_error(["compare", str(runs["cohort"]), "--metric", "val/psrn"], capsys)
    assert_names(line, "'val/psrn'", "val/psnr")          # the typo and the metric it should have been
    line = cli_error(["compare", str(runs["cohort"]), str(tmp_path)], capsys)
    assert_names(line, f"'{tmp_path}'", "summary.json")
    line = cli_error(["compare", str(tmp_path / "nothing*")], capsys)
    assert_names(line, f"'{tmp_path / 'nothing*'}'")


# -- 3. render and predict ------------------------------------------------------------------------------------
def test_render_writes_every_signal_at_any_resolution_or_region(runs, tmp_path):
    from inr_lightning import load_run

    cohort = runs["cohort"]
    run_cli(["render", str(cohort), "--scale", "2", "--out", str(tmp_path / "x2")])
    images = torch.load(tmp_path / "x2" / "signals.pt", weights_only=True)
    assert images.shape == (10, 1, 32, 32) and 0 <= images.min() and images.max() <= 1
    assert len(list((tmp_path / "x2").glob("signal_*.png"))) == 10 and (tmp_path / "x2" / "mosaic.png").is_file()
    # At the training grid the render is what validation measured.
    run_cli(["render", str(cohort), "--out", str(tmp_path / "x1")])
    pred = torch.load(tmp_path / "x1" / "signals.pt", weights_only=True).double()
    target = load_run(runs["sae"]).targets.double()  # the cohort images, rebuilt as the SAE stage does
    psnr = (10 * torch.log10(1 / ((pred - target) ** 2).mean(dim=(1, 2, 3)))).mean()
    assert float(psnr) == pytest.approx(read_summary(cohort)["val/psnr"], abs=1e-3)
    # A region is a window of the same continuous function: the top-left quarter of a 15×15 grid is an 8×8 grid.
    run_cli(["render", str(cohort), "--resolution", "8", "--region", "-1", "0", "-1", "0",
             "--out", str(tmp_path / "q")])
    run_cli(["render", str(cohort), "--resolution", "15", "--out", str(tmp_path / "full")])
    quarter = torch.load(tmp_path / "q" / "signals.pt", weights_only=True)
    full = torch.load(tmp_path / "full" / "signals.pt", weights_only=True)
    torch.testing.assert_close(quarter, full[..., :8, :8], atol=1e-5, rtol=0)
    # predict writes the same files, from the checkpoint, under <run>/predict/.
    run_cli(["predict", "--config", str(cohort / "config.yaml"), f"--ckpt_path={last_ckpt(cohort)}", *NO_LOG])
    torch.testing.assert_close(torch.load(cohort / "predict" / "signals.pt", weights_only=True), pred.float(),
                               atol=1e-5, rtol=0)
    fit = runs["fit"]  # a fit run: one encoder per held-out signal
    run_cli(["render", str(fit), "--resolution", "12", "20", "--out", str(tmp_path / "fit")])
    assert torch.load(tmp_path / "fit" / "signals.pt", weights_only=True).shape == (5, 1, 12, 20)


def test_render_and_predict_errors_are_one_line(runs, capsys):
    cohort, sae = runs["cohort"], runs["sae"]
    line = cli_error(["render", str(cohort), "--region", "0.5", "0.5", "-1", "1"], capsys)
    assert_names(line, "region", "y0 < y1")                 # the bad option and the rule it broke
    line = cli_error(["render", str(cohort), "--scale", "four"], capsys)
    assert_names(line, "scale", "four")
    line = cli_error(["render", str(cohort), "--scale", "0"], capsys)
    assert_names(line, "--scale", 0)
    line = cli_error(["render", str(sae)], capsys)
    assert_names(line, f"'{sae}'", "sae", cohort)           # the run, its stage, and the run to render instead
    line = cli_error(["render", str(cohort / "checkpoints")], capsys)
    assert_names(line, f"'{cohort / 'checkpoints'}'")
    line = cli_error(["predict", "--config", str(cohort / "config.yaml"), *NO_LOG], capsys)
    assert_names(line, "predict", "--ckpt_path")
    line = cli_error(["predict", "--config", str(sae / "config.yaml"), f"--ckpt_path={last_ckpt(sae)}", *NO_LOG],
                     capsys)
    assert_names(line, "predict", "sae")


# -- 4. the Python API ----------------------------------------------------------------------------------------
def test_the_api_example_in_the_docs_runs_and_agrees_with_the_analysis_code(runs, monkeypatch, capsys):
    from inr_lightning import load_run
    from inr_lightning.analysis.ablation import ablate_naive

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(runs["base"])
    scope: dict = {}
    exec(compile(blocks[0], "docs/api.md", "exec"), scope)
    assert scope["images"].shape == (10, 1, 64, 64) and scope["zoom"].shape == (1, 128, 128)
    assert scope["h"].shape == (1024, 16) and "zeroing it costs slice 0" in capsys.readouterr().out
    sae, x, z, hit = scope["sae"], scope["x"], scope["z"], scope["hit"]
    # encode/decode are the SAE's own forward pass; ablate is the analysis module's single-atom ablation.
    torch.testing.assert_close(sae.decode(z), sae.sae(x).x_hat, atol=1e-5, rtol=1e-5)
    assert int((z > 0).sum(1).max()) <= 2
    targets = sae.data.targets
    drop, _ = ablate_naive(sae.sae, sae.net, sae.layer, x, targets, hit.atom)
    assert hit.drop == pytest.approx(float(drop[0]), abs=1e-4) and hit.image.shape == (1, 16, 16)
    fit = load_run(runs["fit"])
    assert fit.stage == "fit" and fit.activations(1, torch.zeros(7, 2)).shape == (5, 7, 16)
    torch.testing.assert_close(sae.activations(sae.layer), load_run(runs["cohort"]).activations(sae.layer))


# -- 5. one-line errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("subcommand", ["fit", "test", "validate", "predict"])
def test_a_missing_ckpt_path_is_one_line(subcommand, runs, tmp_path, capsys):
    missing = tmp_path / "nope.ckpt"
    line = cli_error([subcommand, "--config", str(runs["cohort"] / "config.yaml"), f"--ckpt_path={missing}",
                      f"--trainer.default_root_dir={tmp_path / 'r'}", *NO_LOG], capsys)
    assert_names(line, "--ckpt_path", f"'{missing}'")


@pytest.mark.parametrize("subcommand", ["test", "validate", "predict"])
def test_a_checkpoint_of_another_stage_is_one_line(subcommand, runs, tmp_path, capsys):
    sae = runs["sae"]
    line = cli_error([subcommand, "--config", str(runs["cohort"] / "config.yaml"), f"--ckpt_path={last_ckpt(sae)}",
                      f"--trainer.default_root_dir={tmp_path / 'r'}", *NO_LOG], capsys)
    # the checkpoint, both stages, and the config that fits it
    assert_names(line, f"'{last_ckpt(sae)}'", "SAEModule", "CohortINRModule", sae / "config.yaml")


def test_the_early_stopping_preset_serves_every_stage(runs, tmp_path, capsys):
    ckpt = last_ckpt(runs["cohort"])
    sae_fit = ["fit", "--config", "configs/sae/siren.yaml", f"--data.init_args.cohort_ckpt={ckpt}", *SAE_TINY,
               "--data.init_args.steps_per_epoch=1", "--trainer.max_steps=2", *NO_LOG]
    run_cli([*sae_fit, f"--trainer.default_root_dir={tmp_path / 'sae'}", "--config", "callbacks/early_stopping.yaml"])
    keys = torch.load(tmp_path / "sae/checkpoints/last.ckpt", weights_only=True)["callbacks"]
    assert any(k.startswith("EarlyStopping") and "sae/fvu" in k for k in keys), keys  # it watched the SAE's FVU
    preset = tmp_path / "watch_psnr.yaml"
    preset.write_text("trainer:\n  callbacks+:\n    - class_path: inr_lightning.callbacks.EarlyStopping\n"
                      "      init_args:\n        monitor: val/psnr\n        mode: max\n")
    line = cli_error([*sae_fit, f"--trainer.default_root_dir={tmp_path / 'bad'}", "--config", str(preset)], capsys)
    assert_names(line, "EarlyStopping", "'val/psnr'", "sae/fvu")   # the bad key and one the stage does log


@pytest.mark.slow   # two fresh processes: torch and Lightning say each thing once per process
def test_third_party_messages_that_say_nothing_are_silenced(tmp_path):
    """A real ``python -m inr_lightning`` run of the SAE stage (the one whose backward builds torch's sparse CSR
    tensor), with W&B's own warnings on, prints none of the messages ``main.SILENCED`` and ``drop_tips`` remove;
    the same tensor in a bare process does print torch's note, so the check can fail."""
    import os
    import subprocess
    import sys

    from conftest import cohort_run

    from inr_lightning.nn import CohortINR, INRConfig

    ckpt = cohort_run(tmp_path / "cohort", CohortINR(INRConfig(width=16, shared_layers=3), 3, 1))
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SILENT"} | {"PYTHONUNBUFFERED": "1"}
    run = subprocess.run([sys.executable, "-m", "inr_lightning", "fit", "--config", "configs/sae/siren.yaml",
                          f"--data.init_args.cohort_ckpt={ckpt}", f"--trainer.default_root_dir={tmp_path / 'sae'}",
                          "--model.init_args.n_atoms=64", "--model.init_args.k=4", "--model.init_args.warmup_steps=2",
                          "--data.init_args.batch_size=96", "--data.init_args.steps_per_epoch=2",
                          "--trainer.max_steps=4", "--trainer.callbacks.init_args.top_atoms=4"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "run: " in run.stdout   # the run itself did print
    # (W&B's "anonymous setting has no effect" stays: Lightning's WandbLogger passes anonymous=None, and only its
    # private _wandb_init could drop it; the package uses Lightning's public API only.)
    for message in ("LightningCLI's args parameter", "LeafSpec", "💡 Tip", "will override existing callbacks",
                    "Sparse CSR tensor support is in beta", "Sparse invariant checks"):
        assert message not in run.stdout + run.stderr, message
    bare = subprocess.run([sys.executable, "-c", "import torch; torch.sparse_csr_tensor(torch.tensor([0, 1]), "
                           "torch.tensor([0]), torch.tensor([1.0]), size=(1, 1))"], capture_output=True, text=True,
                          timeout=120)
    assert "Sparse CSR tensor support is in beta" in bare.stderr
