"""Shared test fixtures: offline W&B in a temp dir, tiny CLI overrides, and a subprocess runner."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
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
    from inr_lightning.main import main

    cwd = os.getcwd()
    os.chdir(ROOT)  # configs are given relative to the repository
    try:
        main(args)
    finally:
        os.chdir(cwd)


def start_cli(args: list[str]) -> subprocess.Popen:
    """``python -m inr_lightning *args`` started in the repository, its output piped as text."""
    return subprocess.Popen([sys.executable, "-m", "inr_lightning", *args], cwd=ROOT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_subprocess(args: list[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "inr_lightning", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def read_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def twin(case: str, tmp_path: Path, launch: Path) -> tuple[dict, dict, Path, Path]:
    """``case`` of tests/ddp_twins.py with 1 process (this one, in ``tmp_path/single``) and its 2-process run from
    the background launch (``launch``: its folder, the ``ddp_twins`` fixture) → (state_dicts 1 and 2, run dirs)."""
    import torch
    from ddp_twins import case_args

    single, ddp = tmp_path / "single", launch / case / "ddp"
    run_cli(["fit", *case_args(case, tmp_path), "--trainer.devices=1", f"--trainer.default_root_dir={single}"])
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


# Background jobs: the end-to-end studies, run the way a long CPU study runs (scripts/cpu_study.sh: one-thread
# halves, then the call that reuses every run and writes the report), and the 2-process halves of the DDP
# equivalence tests (tests/ddp_twins.py: one launch for every case).  Each starts as soon as collection shows a
# test that needs it, so it runs beside the rest of the suite; its fixture waits for it.  Under pytest-xdist
# (`make test` runs two workers) every worker collects the same tests: the first to create the job's folder starts
# it, and any worker waits for the exit status the job leaves there.  name → the command, given the job's folder.
def _study(profile: str, export: bool = False):
    return lambda base: ["bash", str(ROOT / "scripts" / "cpu_study.sh"), profile, str(base / profile),
                         *(["--export", str(base / "docs")] if export else [])]


JOBS = {"tiny_study": _study("tiny"), "finding2_study": _study("finding2_tiny", export=True),
        "regime_study": _study("regime_tiny"),
        "ddp_twins": lambda base: [sys.executable, str(ROOT / "tests" / "ddp_twins.py"), str(base / "out")]}
JOBS_ENV = "INR_LIGHTNING_TEST_JOBS"   # the folder of this test run's jobs (set by the controller)


def pytest_configure(config) -> None:
    import torch

    torch.set_num_threads(1)   # tiny problems: one thread is faster, and leaves a core to the runs beside them
    if not hasattr(config, "workerinput"):   # the controller (or a run without xdist); workers inherit the env
        os.environ[JOBS_ENV] = tempfile.mkdtemp(prefix="inr_lightning_jobs_")


def pytest_collection_modifyitems(items) -> None:
    """Long runs first (they pack the cores best), tests that wait for a background job last (it has time to
    finish meanwhile); the order within each group is kept."""
    def rank(item) -> int:
        if any(name in JOBS for name in getattr(item, "fixturenames", ())):
            return 2
        return 0 if item.get_closest_marker("slow") else 1
    items.sort(key=rank)


def pytest_collection_finish(session) -> None:
    if session.config.getoption("collectonly"):
        return
    wanted = {name for item in session.items for name in getattr(item, "fixturenames", ()) if name in JOBS}
    for name in sorted(wanted):
        base = Path(os.environ[JOBS_ENV]) / name
        try:
            base.mkdir()
        except FileExistsError:   # another worker started it
            continue
        env = {**os.environ, "PYTHON": sys.executable, "WANDB_MODE": "offline", "WANDB_DIR": str(base / "wandb_home"),
               "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "JOB_BASE": str(base)}
        script = '"$@" > "$JOB_BASE/script.log" 2>&1; echo $? > "$JOB_BASE/rc"'
        proc = subprocess.Popen(["bash", "-c", script, "job", *JOBS[name](base)], cwd=ROOT, env=env,
                                start_new_session=True)
        (base / "pgid").write_text(str(proc.pid))


def pytest_sessionfinish(session) -> None:
    if hasattr(session.config, "workerinput"):
        return
    root = Path(os.environ[JOBS_ENV])
    # A run stopped early (-x, Ctrl-C) leaves no job behind, nor a failed launch its other rank.
    for pgid in root.glob("*/pgid"):
        try:
            os.killpg(int(pgid.read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(root, ignore_errors=True)


def finished_job(name: str, timeout: float = 1200) -> tuple[subprocess.CompletedProcess, Path]:
    """The background job ``name`` once it has finished → (its exit status and ``script.log`` as ``subprocess.run``
    returns them; its folder: a study's ``<profile>/``, the halves' ``<profile>.<dataset>.log`` and ``docs/``
    with ``--export``; the DDP launch's ``out/``; ``script.log``)."""
    base = Path(os.environ[JOBS_ENV]) / name
    rc, waited = base / "rc", 0.0
    while not (rc.exists() and rc.read_text().strip()):
        log = base / "script.log"
        assert waited < timeout, f"the {name} job did not finish within {timeout:.0f} s; its log ends:\n" + (
            log.read_text()[-3000:] if log.exists() else "(no log)")
        time.sleep(0.5)
        waited += 0.5
    log = (base / "script.log").read_text()
    return subprocess.CompletedProcess(JOBS[name](base), int(rc.read_text()), log, log), base


@pytest.fixture(scope="session")
def tiny_study() -> tuple[subprocess.CompletedProcess, Path]:
    """The tiny study profile through ``scripts/cpu_study.sh`` (its half in a one-thread process, then the call that
    reuses every run and writes the report) → (the script's process, the study folder).  tests/study and
    tests/scripts share it."""
    proc, base = finished_job("tiny_study")
    return proc, base / "tiny"


@pytest.fixture(scope="session")
def regime_study() -> Path:
    """The tiny regime profile (two 16-px cells, one per half) through ``scripts/cpu_study.sh`` → its folder."""
    proc, base = finished_job("regime_study")
    assert proc.returncode == 0, proc.stdout[-3000:]
    return base / "regime_tiny"


@pytest.fixture(scope="session")
def ddp_twins() -> Path:
    """The 2-process runs of every case of tests/ddp_twins.py (one background launch) → its folder."""
    proc, base = finished_job("ddp_twins", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return base / "out"


@pytest.fixture(scope="session")
def finding2_study() -> tuple[Path, Path, Path]:
    """The tiny finding-2 profile through ``scripts/cpu_study.sh`` (its two datasets side by side) → (out, export,
    report)."""
    proc, base = finished_job("finding2_study")
    assert proc.returncode == 0, proc.stdout[-3000:]
    return base / "finding2_tiny", base / "docs", base / "finding2_tiny" / "report.md"
