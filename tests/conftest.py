"""Shared test fixtures: offline W&B in a temp dir, tiny CLI overrides, and a subprocess runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").glob("*/*.yaml")
                 if p.parent.name not in ("trainer", "logger"))

# Shrink any shipped cohort config to a few seconds: tiny width, 16 px, a handful of steps.
TINY = ["--model.init_args.net.width=16", "--model.init_args.net.num_frequencies=8", "--data.init_args.resolution=16",
        "--data.init_args.steps_per_epoch=2", "--trainer.max_steps=4", "--trainer.enable_progress_bar=false"]


@pytest.fixture(autouse=True)
def offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))


def run_cli(args: list[str]) -> None:
    """The CLI in this process (tiny fits only; DDP runs go through ``run_subprocess``)."""
    from inr_lightning.cli import main

    cwd = os.getcwd()
    os.chdir(ROOT)  # configs are given relative to the repository
    try:
        main(args)
    finally:
        os.chdir(cwd)


def run_subprocess(args: list[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "inr_lightning", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def read_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())
