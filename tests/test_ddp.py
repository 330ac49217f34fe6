"""Two CPU processes under DDP reach the weights one process reaches on the same global coordinates: every stage,
with SGD (any normalisation error shows) and with its shipped Adam; the SAE's data initialisation is rank 0's on
every rank; a NaN on one rank stops every rank.  The 2-process runs are one background launch
(tests/ddp_twins.py, the ``ddp_twins`` fixture); each test runs the 1-process twin."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, assert_relative_close, read_summary, twin
from ddp_twins import QUIET, SYNTHETIC

pytestmark = pytest.mark.slow   # a 2-process DDP run


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(tmp_path, ddp_twins):
    a, b, single, ddp = twin("cohort_sgd", tmp_path, ddp_twins)
    assert_relative_close(a, b)
    s1, s2 = read_summary(single), read_summary(ddp)
    assert s1["trainer/global_step"] == s2["trainer/global_step"] == 5
    # The logged loss is the global one (shards all-reduced), so both runs report the same numbers.
    assert abs(s1["train/loss"] - s2["train/loss"]) <= 1e-5 * s1["train/loss"]
    assert abs(s1["val/psnr"] - s2["val/psnr"]) <= 1e-4
    # Rank 0 alone wrote the run's files (reconstructions/: the config's ReconstructionImages callback).
    assert sorted(p.name for p in ddp.iterdir()) == ["checkpoints", "config.yaml", "curves.png", "metrics.csv",
                                                     "reconstructions", "signals.csv", "summary.json"]
    assert len(list((ddp / "reconstructions").iterdir())) == 1


# -- every stage with its shipped optimiser (Adam) -----------------------------------------------------------
# Adam divides each step by √v, so it hides a constant factor in the gradient (the SGD tests catch that) but not
# a wrong shard, a missing all-reduce, a wrong parameter group or schedule. Tolerance: the weights of 1 and 2
# processes agree to ADAM_TOL relative (float32 sums over the shards in another order, which Adam's m/√v
# amplifies where a gradient is near 0). Measured on these tiny runs (6 steps): cohort 1.3e-8, fit 1.7e-8, SAE
# 2.0e-7 (a wrong shard or group changes the gradient itself, far beyond rounding).
ADAM_TOL = 1e-5
SUBPROCESS_ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
TINY_COHORT = [*QUIET, *SYNTHETIC, "--data.init_args.num_heldout=2"]


def assert_adam_run(case: str, tmp_path: Path, ddp_twins: Path, steps: int, keys=None) -> tuple[dict, dict]:
    a, b, single, ddp = twin(case, tmp_path, ddp_twins)
    assert_relative_close(a, b, keys=keys, tol=ADAM_TOL)
    s1, s2 = read_summary(single), read_summary(ddp)
    assert s1["trainer/global_step"] == s2["trainer/global_step"] == steps
    return s1, s2


@pytest.mark.slow
def test_cohort_stage_with_shipped_adam_two_processes_equal_one(tmp_path, ddp_twins):
    s1, s2 = assert_adam_run("cohort_adam", tmp_path, ddp_twins, 6)
    first = torch.load(tmp_path / "single" / "checkpoints" / "last.ckpt", weights_only=True)
    assert first["optimizer_states"][0]["state"][0]["step"] == 6   # Adam ran every step
    assert first["lr_schedulers"] and first["lr_schedulers"][0]["last_epoch"] == 6   # and the schedule with it
    assert s1["val/psnr"] == pytest.approx(s2["val/psnr"], abs=1e-3)


@pytest.mark.slow
def test_fit_stage_with_shipped_adam_two_processes_equal_one(tmp_path, ddp_twins):
    s1, s2 = assert_adam_run("fit_adam", tmp_path, ddp_twins, 6)
    assert s1["freeze/last_frozen_layer"] == s2["freeze/last_frozen_layer"]   # the rule froze the same layers
    assert s1["fit/psnr_at_step"]["6"] == pytest.approx(s2["fit/psnr_at_step"]["6"], abs=1e-3)


@pytest.mark.slow
def test_sae_stage_with_shipped_adam_two_processes_equal_one(tmp_path, ddp_twins):
    # The shipped SAE: Adam with the encoder bias in its own group (bias_lr_scale), warm-up then linear decay,
    # data initialisation, whitened encoder input, the downstream term; only the sizes are shrunk.
    keys = ("sae.W_dec", "sae.W_enc", "sae.b_enc", "sae.b_pre")
    s1, s2 = assert_adam_run("sae_adam", tmp_path, ddp_twins, 6, keys=keys)
    for key in ("sae/fvu", "sae/l0", "sae/psnr", "train/fvu", "train/downstream_fvu"):
        assert s1[key] == pytest.approx(s2[key], rel=1e-4, abs=1e-5), key


@pytest.mark.slow
def test_sae_data_initialisation_is_rank_zeros_on_every_rank(ddp_twins):
    """Each rank's initialisation sample differs (RankSample); after setup every rank holds rank 0's SAE."""
    from ddp_parts import SAE_ARGS, RankSample, activations

    from inr_lightning.models import SAEModule

    ranks = [torch.load(ddp_twins / "sae_init" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    alone = []
    for rank in (0, 1):   # what each rank computes from its own sample (SAEModule.on_fit_start without DDP)
        module = SAEModule(readout=RankSample(activations(), rank=rank), **SAE_ARGS)
        module.on_fit_start()
        alone.append(module.sae.state_dict())
    assert not torch.allclose(alone[0]["W_dec"], alone[1]["W_dec"])   # the ranks would start apart
    for key in ("W_dec", "W_enc", "b_pre", "b_enc", "input_scale", "enc_mean", "enc_whitener"):
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        torch.testing.assert_close(ranks[1][key], alone[0][key], msg=key)


@pytest.mark.slow
def test_a_nan_on_one_rank_stops_every_rank(tmp_path):
    run = tmp_path / "run"
    args = ["fit", "--config", "configs/cohort/siren.yaml", *TINY_COHORT, "--model.init_args.net.width=16",
            "--data.init_args.steps_per_epoch=2", "--trainer.max_steps=10", "--trainer.devices=2",
            "--trainer.strategy=ddp", f"--trainer.default_root_dir={run}",
            "--trainer.callbacks+=ddp_parts.NaNOnRank", "--trainer.callbacks.init_args.step=3"]
    out = subprocess.run([sys.executable, "-m", "inr_lightning", *args], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, **SUBPROCESS_ENV, "PYTHONUNBUFFERED": "1"}, timeout=300)
    assert out.returncode == 1, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    last = run / "checkpoints" / "last.ckpt"
    # Both ranks stop at the same step with the same line, naming the rank whose loss was NaN.
    assert errors and set(errors) == {
        f"error: non-finite training loss (nan on rank 1 of 2) at step 3 (epoch 1) of the cohort stage; the step was "
        f"not applied and the last good checkpoint is {last}. Lower the learning rate (model.init_args.lr) or clip "
        "gradients (trainer.gradient_clip_val), then resume with --ckpt_path=last or start again"}, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
