"""Nothing lost, every error clear: bad input through the CLI, non-finite losses, W&B failing,
malicious checkpoints, and identical summaries for the same config and seed.

Cases already covered elsewhere are not repeated here: unknown backbone, bad learning rates and an unknown
model key of the cohort stage, missing/empty folders and the no-overwrite guard (test_cli.py); freeze depth
out of range (models/test_fitting.py); k > n_atoms, layer out of range, unknown SAE type (models/test_sae_module.py).
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import SYNTHETIC_DATA, TINY, assert_names, cli_error, cohort_run, read_summary, run_cli, run_subprocess
from PIL import Image

from inr_lightning.nn import CohortINR, INRConfig

FIT_TINY = ["--data.init_args.resolution=16", "--data.init_args.steps_per_epoch=2", "--trainer.max_steps=4",
            "--trainer.enable_progress_bar=false", "--model.init_args.record_steps=[2, 4]"]
SAE_TINY = ["--model.init_args.n_atoms=64", "--model.init_args.k=4", "--model.init_args.warmup_steps=2",
            "--model.init_args.dead_window=300", "--data.init_args.batch_size=96", "--data.init_args.steps_per_epoch=2",
            "--trainer.max_steps=4", "--trainer.enable_progress_bar=false", "--trainer.callbacks.init_args.top_atoms=4",
            "--trainer.callbacks.init_args.figures=false"]   # numbers only: the atom figures are tested in tests/models
NO_LOG = ["--trainer.logger=false"]


def fake_cohort_ckpt(path: Path, backbone: str = "siren", class_path: str = "inr_lightning.models.CohortINRModule",
                     layers: int = 3) -> Path:
    """A cohort run folder named after ``path`` around a checkpoint in the layout the cohort stage writes
    (hyper-parameters + ``net.`` state dict), with the ``config.yaml`` later stages read their data from."""
    cfg = INRConfig(backbone=backbone, width=16, shared_layers=layers, num_frequencies=8)
    data = {**SYNTHETIC_DATA, "num_signals": 4, "source": {"class_path": "inr_lightning.data.Synthetic",
                                                           "init_args": {"size": 16, "num_images": 6}}}
    return cohort_run(path.with_suffix(""), CohortINR(cfg, 4, 1), data, class_path=class_path)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """A tiny cohort run (SIREN, 16 px, width 16, 4 steps); its last.ckpt feeds the fit and SAE stages."""
    run = tmp_path_factory.mktemp("cohort") / "run"
    run_cli(["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={run}", *TINY, *NO_LOG])
    return run


def fit_args(run: Path, ckpt: Path, *extra: str) -> list[str]:
    return ["fit", "--config", "configs/fit/siren.yaml", f"--trainer.default_root_dir={run}",
            f"--data.init_args.cohort_ckpt={ckpt}", *FIT_TINY, *NO_LOG, *extra]


def sae_args(run: Path, ckpt: Path, *extra: str) -> list[str]:
    return ["fit", "--config", "configs/sae/siren.yaml", f"--trainer.default_root_dir={run}",
            f"--data.init_args.cohort_ckpt={ckpt}", *SAE_TINY, *NO_LOG, *extra]


def cohort_args(run: Path, *extra: str) -> list[str]:
    return ["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={run}", *TINY, *NO_LOG,
            *extra]


def image_folder(folder: Path, sizes=((20, 24, "RGB"), (20, 24, "RGB"), (20, 24, "RGB"))) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (w, h, mode) in enumerate(sizes):
        shape = (h, w, 3) if mode == "RGB" else (h, w)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode).save(folder / f"img{i}.png")
    return folder


def folder_args(run: Path, folder: Path, *extra: str) -> list[str]:
    return cohort_args(run, "--data.init_args.source=inr_lightning.data.ImageFolder",
                       f"--data.init_args.source.init_args.path={folder}", "--data.init_args.num_signals=null",
                       "--data.init_args.num_heldout=0", *extra)


# -- 1. bad input → one line ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["not_an_image", "truncated"])
def test_a_bad_file_among_good_images_fails_by_default(kind, tmp_path, capsys):
    folder = image_folder(tmp_path / "imgs")
    bad = folder / "b_bad.png"
    if kind == "not_an_image":
        bad.write_text("this is a text file with an image's extension")
    else:
        bad.write_bytes((folder / "img0.png").read_bytes()[:200])  # a real PNG cut short
    line = cli_error(folder_args(tmp_path / "r", folder), capsys)
    assert_names(line, f"'{bad}'", "on_bad_file")   # the bad file and the way past it
    assert not (tmp_path / "r").exists()


def test_on_bad_file_skip_trains_on_the_good_images_with_a_warning(tmp_path, caplog):
    folder = image_folder(tmp_path / "imgs")
    (folder / "b_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    run = tmp_path / "r"
    with caplog.at_level(logging.WARNING, logger="inr_lightning.data.sources"):
        run_cli(folder_args(run, folder, "--data.init_args.source.init_args.on_bad_file=skip",
                            "--trainer.max_steps=2"))
    assert any("skipping" in r.message and "b_bad.png" in r.getMessage() for r in caplog.records)
    assert len(read_summary(run)["val/psnr_per_signal"]) == 3


def test_mixed_sizes_and_channels_follow_the_documented_policy(tmp_path, capsys):
    """RGB 20×24 and grayscale 40×40 in one folder: padded to the aspect, resized, converted to the configured
    channels; a channel count other than 1 or 3 is a one-line error."""
    folder = image_folder(tmp_path / "mixed", sizes=((20, 24, "RGB"), (40, 40, "L")))
    run = tmp_path / "r"
    run_cli(folder_args(run, folder, "--data.init_args.channels=3", "--data.init_args.aspect=pad",
                        "--trainer.max_steps=2"))
    hp = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert hp["num_signals"] == 2 and hp["out_channels"] == 3
    line = cli_error(folder_args(tmp_path / "r2", folder, "--data.init_args.channels=2"), capsys)
    assert_names(line, "channels", 2, 1, 3)


def test_unknown_protocol_is_one_line(tmp_path, capsys):
    ckpt = fake_cohort_ckpt(tmp_path / "c.ckpt")
    line = cli_error(fit_args(tmp_path / "r", ckpt, "--model.init_args.protocol=half"), capsys)
    assert_names(line, "half", "scratch", "finetune", "freeze", "auto")


@pytest.mark.parametrize("stage,case", [("fit", "wrong_stage"), ("fit", "wrong_architecture"), ("fit", "wrong_backbone"),
                                        ("sae", "wrong_stage"), ("sae", "wrong_architecture")])
def test_a_checkpoint_of_the_wrong_stage_or_architecture_is_one_line(stage, case, tmp_path, capsys):
    if case == "wrong_stage":
        ckpt = fake_cohort_ckpt(tmp_path / "s.ckpt", class_path="inr_lightning.models.SAEModule")
        named = [f"'{ckpt}'", "SAEModule"]
    elif case == "wrong_architecture":
        ckpt = fake_cohort_ckpt(tmp_path / "a.ckpt")
        state = torch.load(ckpt, weights_only=True)
        state["hyper_parameters"]["net"]["width"] = 32  # the weights are 16 wide
        torch.save(state, ckpt)
        named = [f"'{ckpt}'", "3×32"]
    else:  # (the SAE stage takes any backbone: its config's backbone only names the run)
        ckpt = fake_cohort_ckpt(tmp_path / "f.ckpt", backbone="ffmlp")
        named = ["data.cohort_ckpt", "ffmlp", "siren"]
    args = fit_args(tmp_path / "r", ckpt) if stage == "fit" else sae_args(tmp_path / "r", ckpt)
    assert_names(cli_error(args, capsys), *named)


@pytest.mark.parametrize("stage", ["cohort", "fit", "sae"])
@pytest.mark.parametrize("where", ["data", "trainer_file"])
def test_an_unknown_config_key_is_one_line_in_every_stage(stage, where, tmp_path, capsys):
    ckpt = tmp_path / "never_read.ckpt"  # parsing fails before anything is loaded
    if where == "data":
        extra, key = ["--data.init_args.no_such_key=3"], "no_such_key"
    else:
        typo = tmp_path / "typo.yaml"
        typo.write_text("trainer:\n  max_step: 3\n")  # max_steps, misspelt
        extra, key = ["--config", str(typo)], "max_step"
    args = {"cohort": cohort_args(tmp_path / "r"), "fit": fit_args(tmp_path / "r", ckpt),
            "sae": sae_args(tmp_path / "r", ckpt)}[stage]
    line = cli_error([*args, *extra], capsys)
    assert_names(line, key, "--help")   # the unknown key, and where the accepted ones are listed
    if stage != "cohort":  # the model's keys too (the cohort stage's is in test_cli.py)
        assert_names(cli_error([*args, "--model.init_args.no_such_key=3"], capsys), "no_such_key")


# -- 4. non-finite loss ------------------------------------------------------------------------------------
class PoisonWeights(L.Callback):
    """Test helper: puts a NaN into the first trainable parameter right before step ``step``."""

    def __init__(self, step: int = 3) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(p for p in pl_module.parameters() if p.requires_grad).view(-1)[0] = math.nan


class PoisonGradient(L.Callback):
    """Test helper: a finite loss whose gradient overflows at step 3 (an inf in the first trainable gradient)."""

    def on_after_backward(self, trainer, pl_module) -> None:
        if trainer.global_step == 3:
            next(p for p in pl_module.parameters() if p.requires_grad).grad.view(-1)[0] = math.inf


def test_a_non_finite_gradient_stops_the_run_before_the_step(tmp_path, capsys):
    run = tmp_path / "r"
    line = cli_error([*cohort_args(run), "--trainer.max_steps=10", "--trainer.callbacks+=test_errors.PoisonGradient",
                      "--trainer.gradient_clip_val=1.0"], capsys, code=1)
    assert_names(line, "gradient", "step 3", run / "checkpoints" / "last.ckpt")   # what, when, what is kept


@pytest.mark.parametrize("stage", ["cohort", "fit", "sae"])
def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(stage, cohort, tmp_path, capsys):
    run, ckpt = tmp_path / "r", cohort / "checkpoints" / "last.ckpt"
    args = {"cohort": cohort_args(run), "fit": fit_args(run, ckpt), "sae": sae_args(run, ckpt)}[stage]
    line = cli_error([*args, "--trainer.max_steps=10", "--trainer.callbacks+=test_errors.PoisonWeights"],
                     capsys, code=1)
    last = run / "checkpoints" / "last.ckpt"
    assert_names(line, "nan", "step 3", stage, last, "--ckpt_path=last")   # what, when, where, what is kept, how on
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 2  # written after the first epoch's validation
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
    assert read_summary(run)["trainer/global_step"] == 2


# -- 3. W&B failing --------------------------------------------------------------------------------------
def snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("failure", [pytest.param("online_without_credentials", marks=pytest.mark.slow),  # a process
                                     "unwritable_wandb_dir"])
def test_wandb_failing_keeps_the_local_outputs_of_the_run(failure, tmp_path, monkeypatch, capsys):
    run = tmp_path / "r"
    run_cli(cohort_args(run))
    before = snapshot(run)
    assert {"config.yaml", "summary.json", "checkpoints/last.ckpt"} <= set(before)
    resume = [arg for arg in cohort_args(run) if arg not in NO_LOG] + ["--ckpt_path=last", "--trainer.max_steps=6"]
    if failure == "online_without_credentials":
        monkeypatch.setenv("WANDB_MODE", "online")
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
        monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
        resume.append("--trainer.logger.init_args.offline=false")
        cause = "UsageError"
    else:
        (run / "wandb").write_text("a file where W&B wants its folder")
        before = snapshot(run)
        cause = "NotADirectoryError"
    if failure == "online_without_credentials":  # in its own process: wandb keeps global settings once set up
        out = run_subprocess(resume)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
        errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, out.stderr[-3000:]
        line = errors[0]
    else:
        line = cli_error(resume, capsys)
    assert_names(line, "W&B", cause, f"'{run}'", "kept")   # who failed, why, and that the run's files are kept
    assert snapshot(run) == before


# -- 6. malicious checkpoints ---------------------------------------------------------------------------
class Payload:
    """Unpickling this object would create ``marker`` (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_copy(source: Path, path: Path, marker: Path) -> Path:
    """A real checkpoint plus an object whose unpickling would create ``marker``."""
    ckpt = torch.load(source, weights_only=True)
    ckpt["hyper_parameters"]["extra"] = Payload(marker)
    torch.save(ckpt, path)
    assert not marker.exists()
    return path


@pytest.mark.parametrize("via", ["cohort_ckpt", "ckpt_path", "ckpt_path=last"])
def test_a_checkpoint_carrying_a_malicious_pickle_is_refused(via, cohort, tmp_path, capsys):
    """``--ckpt_path=last`` (what ``make demo`` passes) is read by Lightning itself: refused since Lightning
    2.6 loads it with the ``weights_only=True`` the CLI passes (2.5 unpickles it: pyproject's floor)."""
    marker = tmp_path / "pwned"
    (tmp_path / "evil" / "checkpoints").mkdir(parents=True)   # a run folder: the fit reads its config.yaml
    shutil.copy(cohort / "config.yaml", tmp_path / "evil" / "config.yaml")
    evil = malicious_copy(cohort / "checkpoints" / "last.ckpt", tmp_path / "evil" / "checkpoints" / "last.ckpt", marker)
    if via == "cohort_ckpt":
        line = cli_error(fit_args(tmp_path / "r", evil), capsys)
        assert_names(line, f"'{evil}'", "weights_only=True")
    elif via == "ckpt_path":
        line = cli_error(cohort_args(tmp_path / "r", f"--ckpt_path={evil}"), capsys)
        assert_names(line, f"'{evil}'", "weights_only=True")
    else:
        line = cli_error(cohort_args(tmp_path / "evil", "--ckpt_path=last"), capsys)
        assert_names(line, "'last'", "weights_only=True")
    assert not marker.exists()


# -- 5. reproducibility -----------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["cohort", "fit", "sae"])
def test_same_config_and_seed_give_an_identical_summary(stage, cohort, tmp_path):
    ckpt = cohort / "checkpoints" / "last.ckpt"
    summaries = []
    for name in ("a", "b"):
        run = tmp_path / name
        if stage == "cohort" and name == "a":
            summaries.append(read_summary(cohort))  # the fixture's run, made the same way
            continue
        run_cli({"cohort": cohort_args(run), "fit": fit_args(run, ckpt), "sae": sae_args(run, ckpt)}[stage])
        summaries.append(read_summary(run))
    assert summaries[0] == summaries[1]
    assert summaries[0]["trainer/global_step"] == 4


def test_a_damaged_ckpt_path_is_one_line(tmp_path, capsys):
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"not a checkpoint at all")
    line = cli_error(cohort_args(tmp_path / "r", f"--ckpt_path={damaged}"), capsys)
    assert_names(line, "--ckpt_path", f"'{damaged}'")
