"""Shared test fixtures: offline W&B in a temp dir, tiny CLI overrides, and a subprocess runner."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import lightning.pytorch  # noqa: F401  its log handlers bind sys.stderr at import: before any test captures it
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
    # jsonargparse shows one deprecation per kind per process: Lightning's would hide ours of the same kind.
    monkeypatch.setenv("JSONARGPARSE_DEPRECATION_WARNINGS", "all")


def train_cohort(run: Path, backbone: str = "siren", *overrides: str) -> Path:
    """A tiny cohort run trained through the CLI in ``run`` (``TINY`` + ``overrides``); its ``last.ckpt``."""
    run_cli(["fit", "--config", f"configs/cohort/{backbone}.yaml", f"--trainer.default_root_dir={run}", *TINY,
             *overrides])
    return Path(run) / "checkpoints" / "last.ckpt"


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


def fit_single_and_ddp(args: list[str], tmp_path: Path) -> tuple[dict, dict, Path, Path]:
    """The same fit with 1 process (this one) and with 2 CPU processes under DDP → (state_dict 1, state_dict 2,
    run dirs)."""
    import torch

    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run_cli(["fit", *args, "--trainer.devices=1", f"--trainer.default_root_dir={single}"])
    two = run_subprocess(["fit", *args, "--trainer.devices=2", "--trainer.strategy=ddp",
                          f"--trainer.default_root_dir={ddp}"])
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = (torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for run in (single, ddp))
    assert a.keys() == b.keys()
    return a, b, single, ddp


def assert_relative_close(a: dict, b: dict, keys=None, tol: float = 1e-5) -> None:
    for key in keys or a:
        rel = (a[key] - b[key]).norm() / a[key].norm().clamp_min(1e-12)
        assert rel <= tol, f"{key}: relative difference {rel:.2e}"


SYNTHETIC_DATA = {"source": {"class_path": "inr_lightning.data.Synthetic",
                             "init_args": {"size": 16, "num_images": 5}},
                  "resolution": 16, "channels": 1, "aspect": "crop", "num_signals": 3, "num_heldout": 2, "seed": 0}


def cohort_run(run_dir: Path, net, data: dict | None = None,
               class_path: str = "inr_lightning.models.CohortINRModule") -> Path:
    """A cohort run folder around a crafted ``net``: ``checkpoints/last.ckpt`` and the ``config.yaml`` whose data
    section later stages read (default: 3 + 2 synthetic 16×16 images).  Returns the checkpoint path."""
    import yaml

    from inr_lightning.checkpoints import save_cohort

    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    ckpt = save_cohort(run_dir / "checkpoints" / "last.ckpt", net, class_path=class_path)
    config = {"data": {"class_path": "inr_lightning.data.SignalDataModule", "init_args": data or SYNTHETIC_DATA}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return ckpt


def cli_error(args: list[str], capsys, code: int = 2) -> str:
    """Runs the CLI expecting a failure: exit ``code``, exactly one ``error:`` line, no traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_cli(args)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert info.value.code == code, err[-3000:]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    return errors[0]


def assert_names(message: str, *values) -> None:
    """``message`` names each of ``values`` (the bad value, the allowed ones, a key word; a number as a number).  Error tests check the
    exception type and the values, never whole sentences: wording may change, the values it names may not."""
    message = str(message)
    numbers = [float(n) for n in re.findall(r"(?<![\w.])-?(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|nan|inf)(?![\w])", message)]

    def named(value) -> bool:
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # 0 is named by "0" or "0.0"
            return any(n == value or (math.isnan(n) and math.isnan(value)) for n in numbers)
        return str(value) in message

    missing = [v for v in values if not named(v)]
    assert not missing, f"{missing} not named in: {message}"


@contextmanager
def raises_naming(exc_type: type[BaseException], *values):
    """``pytest.raises(exc_type)`` whose message must name each of ``values`` (see ``assert_names``)."""
    with pytest.raises(exc_type) as info:
        yield info
    assert_names(str(info.value), *values)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """The tiny study profile, run once per session the way a long CPU study runs: ``scripts/cpu_study.sh``
    (its half in a one-thread ``python -m inr_lightning study`` process, then the call that reuses every run and
    writes the report) → (the script's process, the study folder).  tests/study and tests/scripts share it."""
    base = tmp_path_factory.mktemp("tiny_study")
    env = {**os.environ, "PYTHON": sys.executable, "WANDB_MODE": "offline", "WANDB_DIR": str(base / "wandb_home"),
           "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = base / "tiny"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "cpu_study.sh"), "tiny", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    return proc, out


@pytest.fixture
def one_thread():
    """Tiny problems: one thread is faster, and steadier on a loaded machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
