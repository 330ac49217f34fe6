"""Interruption and resume, every stage: a real ``python -m inr_lightning`` process is stopped with SIGTERM once
its first checkpoint exists, resumed with ``--ckpt_path=last``, killed with SIGKILL once the resumed run has
written a newer checkpoint, resumed again, and must end with the weights of an uninterrupted run (1e-6) —
with the SAE's dead-atom counters, the fit's frozen layers and its recorded-PSNR history.

Each epoch is 2 steps, so a checkpoint (written after every validation) comes every 2 steps.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, TINY, assert_names, read_summary, run_cli, start_cli

from inr_lightning.callbacks.outputs import read_metrics
from inr_lightning.study.stages import config_diff, resolved_config, with_checkpoint_hparams

pytestmark = pytest.mark.slow   # real processes, stopped and resumed

STEPS = 40
FIT = ["--data.init_args.resolution=16", "--data.init_args.steps_per_epoch=2", "--trainer.enable_progress_bar=false",
       "--data.init_args.coords_per_step=101", "--model.init_args.record_steps=[2, 4, 30, 40]",
       "--model.init_args.protocol=freeze", "--model.init_args.last_frozen_layer=1"]
SAE = ["--model.init_args.n_atoms=64", "--model.init_args.k=2", "--model.init_args.warmup_steps=6",
       "--model.init_args.dead_window=150", "--data.init_args.batch_size=96", "--data.init_args.steps_per_epoch=2",
       "--trainer.enable_progress_bar=false", "--trainer.callbacks=[]"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cohort") / "run"
    run_cli(["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={run}", *TINY,
             "--trainer.logger=false"])
    return run / "checkpoints" / "last.ckpt"


def stage_args(stage: str, run: Path, cohort: Path) -> list[str]:
    common = [f"--trainer.default_root_dir={run}", f"--trainer.max_steps={STEPS}", "--trainer.logger=false"]
    if stage == "cohort":  # (the config first: later arguments override it)
        return ["fit", "--config", "configs/cohort/siren.yaml", *TINY, *common, "--data.init_args.coords_per_step=101",
                "--trainer.callbacks=[]"]
    if stage == "fit":
        return ["fit", "--config", "configs/fit/siren.yaml", f"--data.init_args.cohort_ckpt={cohort}", *FIT, *common]
    return ["fit", "--config", "configs/sae/siren.yaml", f"--data.init_args.cohort_ckpt={cohort}", *SAE, *common]


def kill_after_checkpoint(proc: subprocess.Popen, last: Path, sig: int, newer_than: int = -1,
                          timeout: float = 240) -> tuple[int, str]:
    """Wait until ``last`` exists (and is newer than ``newer_than`` ns), then send ``sig``; → (exit code, stderr)."""
    deadline = time.monotonic() + timeout
    while not (last.exists() and last.stat().st_mtime_ns > newer_than):
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint appeared")
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def step_of(ckpt: Path) -> int:
    return torch.load(ckpt, weights_only=True)["global_step"]


@pytest.mark.parametrize("stage", ["cohort", "fit", "sae"])
def test_a_run_killed_by_sigterm_and_sigkill_resumes_to_the_uninterrupted_weights(stage, cohort, tmp_path):
    reference, run = tmp_path / "reference", tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"

    # SIGTERM: Lightning finishes the step it is in; the CLI says where it stopped, exit status 143.
    code, err = kill_after_checkpoint(start_cli(stage_args(stage, run, cohort)), last, signal.SIGTERM)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 143 and len(errors) == 1 and "Traceback" not in err, err[-3000:]
    first_stop = step_of(last)
    # what stopped it, the step of the checkpoint kept, the checkpoint, and how to go on
    assert_names(errors[0], "SIGTERM", last, "--ckpt_path=last")
    assert 0 < first_stop < STEPS

    # Resume, then SIGKILL (no handler runs) once the resumed run has written a newer checkpoint.
    mtime = last.stat().st_mtime_ns
    code, err = kill_after_checkpoint(start_cli([*stage_args(stage, run, cohort), "--ckpt_path=last"]), last,
                                      signal.SIGKILL, newer_than=mtime)
    assert code == -signal.SIGKILL, err[-3000:]
    assert first_stop < step_of(last) < STEPS

    # The last resume and the uninterrupted reference need no process of their own.
    run_cli([*stage_args(stage, run, cohort), "--ckpt_path=last"])
    run_cli(stage_args(stage, reference, cohort))

    a = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["global_step"] == b["global_step"] == STEPS
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert (value.double() - b["state_dict"][key].double()).abs().max() <= 1e-6, key
    ra, rb = read_summary(reference), read_summary(run)
    if stage == "sae":  # the dead-atom counters came back and kept counting
        counters = b["state_dict"]["sae.samples_since_fired"]
        assert torch.equal(a["state_dict"]["sae.samples_since_fired"], counters) and counters.max() > 0
        assert rb["sae/dead_fraction"] == ra["sae/dead_fraction"]
        # Lightning resumed with the checkpoint's hyper-parameters over the model's arguments: the run records the
        # d_in it resolved where the request left None. A study stage is still the same run (stages.run_stage).
        recorded = yaml.safe_load((run / "config.yaml").read_text())
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(ROOT)
            requested = resolved_config(stage_args(stage, run, cohort))
        assert recorded["model"]["init_args"]["d_in"] == 16 and requested["model"]["init_args"]["d_in"] is None
        assert config_diff(recorded, with_checkpoint_hparams(requested, recorded["ckpt_path"])) == []
    if stage == "fit":  # the frozen layers stayed frozen (the cohort's weights) and the PSNR history is whole
        c = torch.load(cohort, weights_only=True)["state_dict"]
        for j in (0, 1):
            key = f"encoder.layers.{j}.linear.weight"
            assert torch.equal(b["state_dict"][f"net.{key}"], c[f"net.{key}"].expand_as(b["state_dict"][f"net.{key}"]))
        assert rb["fit/frozen_layers"] == [0, 1] and set(rb["fit/psnr_at_step"]) == {"2", "4", "30", "40"}
        for s, values in ra["fit/psnr_at_step"].items():
            assert rb["fit/psnr_at_step"][s] == pytest.approx(values, abs=1e-4), s
    key = "val/psnr" if stage != "sae" else "sae/fvu"
    assert rb[key] == pytest.approx(ra[key], abs=1e-5)
    # metrics.csv survived both stops: one evaluation per epoch, each step once, the last one the summary's.
    curve = read_metrics(run)[key]
    assert [step for step, _ in curve] == list(range(2, STEPS + 1, 2))
    assert curve[-1][1] == pytest.approx(rb[key], abs=1e-6)
