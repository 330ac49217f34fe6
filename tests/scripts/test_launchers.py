"""Past one process: ``scripts/torchrun.sh`` (a 2-process CPU gloo run of the shipped ``ddp_cpu.yaml`` equals one
process), ``scripts/slurm.sbatch`` (parses; its ``srun`` line runs what the torchrun line runs),
``scripts/gpu_study.sh`` (one study process per GPU on disjoint datasets), the trainer presets, the W&B sweep
configs (each one's command runs one trial offline) and the study's refusal of DDP."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT, assert_relative_close, cli_error, cohort_run, read_summary, run_cli

from inr_lightning.nn import CohortINR, INRConfig

SCRIPTS = ROOT / "scripts"
STAGE = ["fit", "--config", "configs/cohort/siren.yaml", "--config", "configs/trainer/ddp_cpu.yaml",
         "--model.init_args.net.width=16", "--model.init_args.net.shared_layers=3",
         "--data.init_args.source=inr_lightning.data.Synthetic", "--data.init_args.source.init_args.size=20",
         "--data.init_args.source.init_args.num_images=6", "--data.init_args.num_signals=4",
         "--data.init_args.num_heldout=0", "--data.init_args.resolution=16", "--data.init_args.coords_per_step=101",
         "--data.init_args.steps_per_epoch=3", "--trainer.max_steps=3", "--trainer.enable_progress_bar=false",
         "--trainer.logger=false", "--optimizer=torch.optim.SGD", "--optimizer.lr=0.01"]


def script(name: str, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(["bash", str(SCRIPTS / name), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_torchrun_script_runs_the_shipped_ddp_cpu_preset_as_two_processes_equal_to_one(tmp_path):
    two = script("torchrun.sh", *STAGE, f"--trainer.default_root_dir={tmp_path / 'two'}", env={"NPROC": "2"})
    assert two.returncode == 0, two.stderr[-3000:]
    run_cli([*STAGE, "--trainer.devices=1", "--trainer.strategy=auto", f"--trainer.default_root_dir={tmp_path / 'one'}"])
    a, b = (torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
            for run in ("one", "two"))
    assert_relative_close(a, b)   # SGD: a shard or normalisation error would show
    config = yaml.safe_load((tmp_path / "two" / "config.yaml").read_text())["trainer"]
    assert (str(config["devices"]), config["num_nodes"], config["strategy"], config["accelerator"]) == \
        ("2", 1, "ddp", "cpu")
    assert read_summary(tmp_path / "two")["trainer/global_step"] == 3


def stage_command(line: str) -> list[str]:
    """What follows ``python -m inr_lightning`` in a launcher's command line."""
    words = shlex.split(line)
    i = words.index("inr_lightning")
    assert words[i - 1] == "-m"
    return words[i + 1:]


def test_slurm_script_parses_and_its_srun_line_runs_what_the_torchrun_line_runs():
    assert subprocess.run(["bash", "-n", str(SCRIPTS / "slurm.sbatch")]).returncode == 0
    assert subprocess.run(["bash", "-n", str(SCRIPTS / "torchrun.sh")]).returncode == 0
    args = ["fit", "--config", "configs/sae/siren.yaml", "--config", "configs/trainer/gpu.yaml"]
    slurm = script("slurm.sbatch", *args, env={"DRY_RUN": "1", "SLURM_JOB_NUM_NODES": "2",
                                                "SLURM_NTASKS_PER_NODE": "4(x2)"})
    torchrun = script("torchrun.sh", *args, env={"DRY_RUN": "1", "NPROC": "4", "NNODES": "2", "NODE_RANK": "1",
                                                  "MASTER_ADDR": "node0"})
    assert slurm.returncode == torchrun.returncode == 0, slurm.stderr + torchrun.stderr
    assert slurm.stdout.startswith("srun --kill-on-bad-exit=1 ")
    assert stage_command(slurm.stdout) == stage_command(torchrun.stdout) == [
        *args, "--trainer.devices=4", "--trainer.num_nodes=2", "--ckpt_path=last"]
    assert "--nnodes=2 --node_rank=1 --master_addr=node0 --master_port=29500 --nproc_per_node=4" in torchrun.stdout
    # A --ckpt_path of the user's is kept (no second one), and a bad process count is one line.
    own = script("torchrun.sh", *args, "--ckpt_path=best", env={"DRY_RUN": "1", "NPROC": "2"})
    assert stage_command(own.stdout)[-3:] == ["--ckpt_path=best", "--trainer.devices=2", "--trainer.num_nodes=1"]
    bad = script("torchrun.sh", *args, env={"DRY_RUN": "1", "NPROC": "two"})
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: NPROC and NNODES must be whole numbers ≥ 1, got 'two'"
    outside = script("slurm.sbatch", *args, env={"DRY_RUN": "1", "SLURM_JOB_NUM_NODES": ""})
    assert outside.returncode != 0 and "run this script with sbatch" in outside.stderr


def test_gpu_study_script_runs_one_study_per_gpu_on_disjoint_datasets(tmp_path):
    out = script("gpu_study.sh", str(tmp_path / "s"), "--wandb", "online", env={"DRY_RUN": "1", "GPUS": "0 1 2"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    study = f"-m inr_lightning study --profile reference --out {tmp_path / 's'}"
    # The reference profile has two datasets: two of the three GPUs get one each, then one call reuses them all.
    assert lines == [f"CUDA_VISIBLE_DEVICES=0 {sys.executable} {study} --datasets mri --wandb online &",
                     f"CUDA_VISIBLE_DEVICES=1 {sys.executable} {study} --datasets natural --wandb online &",
                     f"{sys.executable} {study} --wandb online"]
    one = script("gpu_study.sh", str(tmp_path / "s"), env={"DRY_RUN": "1", "GPUS": "0"})
    assert one.stdout.splitlines() == [f"{sys.executable} {study}"]
    assert "Expected wall-clock: not yet measured" in (SCRIPTS / "gpu_study.sh").read_text()


def test_the_study_refuses_ddp_with_one_line(capsys, monkeypatch):
    line = cli_error(["study", "--quick", "--devices", "2"], capsys)
    assert line.startswith("error: study runs every stage in one process and does not take --devices 2: run it "
                           "once per GPU on disjoint --datasets (scripts/gpu_study.sh does)")
    monkeypatch.setenv("WORLD_SIZE", "4")   # launched under torchrun: every rank would run the whole study
    line = cli_error(["study", "--quick"], capsys)
    assert "does not take a launch with 4 ranks" in line


@pytest.mark.parametrize("preset, expected", [("ddp_cpu", ("cpu", 2, "ddp")), ("gpu", ("gpu", -1, "ddp"))])
def test_trainer_presets_load_onto_every_stage(preset, expected, tmp_path, capsys):
    ckpt = cohort_run(tmp_path / "cohort", CohortINR(INRConfig(width=16, shared_layers=3), 3, 1))
    extra = {"cohort": [], "fit": [f"--data.init_args.cohort_ckpt={ckpt}"],
             "sae": [f"--data.init_args.cohort_ckpt={ckpt}"]}
    for stage, args in extra.items():
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            run_cli(["fit", "--config", f"configs/{stage}/siren.yaml", "--config", f"configs/trainer/{preset}.yaml",
                     *args, "--print_config"])
        assert info.value.code in (0, None)
        config = yaml.safe_load(capsys.readouterr().out)
        trainer = config["trainer"]
        assert (trainer["accelerator"], trainer["devices"], trainer["strategy"]) == expected, stage
        # The stage's own settings survive the preset.
        assert config["model"]["class_path"].rpartition(".")[2] == {
            "cohort": "CohortINRModule", "fit": "SignalFitModule", "sae": "SAEModule"}[stage]
        assert trainer["default_root_dir"].startswith(f"runs/mri/{stage}/siren")


# -- W&B sweeps ------------------------------------------------------------------------------------------------
def trial_command(sweep: dict, run_id: str) -> list[str]:
    """The command a ``wandb agent`` runs for the sweep's first grid point, expanded with W&B's own helpers (the
    agent's macro substitution: ``${env}``, ``${interpreter}``, ``${args}``)."""
    from wandb.sdk.launch.sweeps import utils

    point = {name: {"value": spec["values"][0]} for name, spec in sweep["parameters"].items()}
    macros = utils.create_sweep_command_args({"args": point})
    macros.update(env=[], interpreter=[sys.executable])
    out = []
    for word in utils.create_sweep_command(list(sweep["command"])):
        word = str(word)
        out += macros.get(word[2:-1], []) if word.startswith("${") and word.endswith("}") else [word]
    return out


@pytest.mark.parametrize("name", ["fit_lr_depth", "sae_k_atoms"])
def test_a_sweep_config_parses_and_its_command_runs_one_trial(name, tmp_path, monkeypatch):
    from wandb.sdk.launch.sweeps.utils import load_sweep_config

    sweep = load_sweep_config(str(ROOT / "configs" / "sweeps" / f"{name}.yaml"))
    assert sweep["method"] in ("grid", "random", "bayes") and sweep["metric"]["goal"] in ("maximize", "minimize")
    assert all(spec["values"] for spec in sweep["parameters"].values())
    command = trial_command(sweep, "trial0")
    assert command[:4] == [sys.executable, "-m", "inr_lightning", "fit"]
    first = {k: v["values"][0] for k, v in sweep["parameters"].items()}
    assert command[-len(first):] == [f"--{k}={v}" for k, v in first.items()]
    # One trial, offline and tiny: the agent's environment names the run; our overrides shrink the stage.
    ckpt = cohort_run(tmp_path / "cohort", CohortINR(INRConfig(width=16, shared_layers=5), 3, 1))
    tiny = {"fit_lr_depth": [f"--data.init_args.cohort_ckpt={ckpt}", "--model.init_args.record_steps=[2]"],
            "sae_k_atoms": [f"--data.init_args.cohort_ckpt={ckpt}", "--data.init_args.batch_size=64",
                            "--model.init_args.warmup_steps=1", "--trainer.callbacks.init_args.top_atoms=4",
                            "--trainer.callbacks.init_args.ablation=false"]}[name]
    # The agent's environment names the run; the trial runs in this process from a checkout (runs/ lands there).
    for key, value in {"WANDB_MODE": "offline", "WANDB_RUN_ID": "trial0"}.items():
        monkeypatch.setenv(key, value)
    work = tmp_path / "work"
    work.mkdir()
    (work / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(work)
    import wandb

    from inr_lightning.main import main

    wandb.teardown()   # W&B reads its environment once per set-up: the agent's run id must reach this one
    try:
        main([*command[3:], *tiny, "--trainer.max_steps=2", "--data.init_args.steps_per_epoch=2",
              "--trainer.enable_progress_bar=false"])
    finally:
        wandb.teardown()   # and the tests after this one see theirs
    run = work / "runs" / "sweeps" / name / "trial0"
    summary = read_summary(run)
    assert summary["trainer/global_step"] == 2
    config = yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]
    for key, value in first.items():
        assert config[key.removeprefix("model.init_args.")] == value, key
    assert list((run / "wandb").glob("offline-run-*-trial0"))   # the W&B run is the agent's
