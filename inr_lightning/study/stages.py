"""Run one stage of a study as a function, reusing it only when it is exactly the run asked for.

A stage is ``python -m inr_lightning fit --config <stage config> <overrides…>`` in this process.  Where an earlier
run left a ``config.yaml`` in the same directory, the requested config is resolved in this process first
(``cli.resolve``: every file, override and interpolation) and compared with it:

- no earlier run → run it;
- same config, finished (``stage.json`` written after a successful fit, with its wall-clock and CPU time) → reuse its
  ``summary.json``;
- same config, interrupted → resume from ``checkpoints/last.ckpt`` (a resumed run records its checkpoint's
  hyper-parameters, which Lightning puts over the model's arguments: the request is compared as it would resume);
- another config → one line naming what differs; ``overwrite=True`` deletes that run and starts anew.
"""

from __future__ import annotations

import importlib
import inspect
import json
import shutil
import time
from pathlib import Path

import yaml

from inr_lightning.errors import InputError

# Keys that say where a run logs or how it was started, not what it computes.
IGNORED = ("ckpt_path", "weights_only", "overwrite", "print_config", "trainer.enable_progress_bar", "trainer.logger",
           "trainer.log_every_n_steps")
MARKER = "stage.json"
MISSING = object()


def _cli(args: list[str]) -> None:
    from inr_lightning.main import main  # main imports the study's commands lazily; no cycle at import

    main(args, exit_on_error=False)  # a bad value is the parser's own ``InputError``, raised to the caller


def flatten(tree, prefix: str = "") -> dict:
    """Nested config → ``{"a.b.c": value}`` (lists stay values)."""
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}."))
    return out


def class_default(config: dict, key: str):
    """The default of ``<section>.init_args.<name>`` in the signature of the section's ``class_path`` (``MISSING``
    when there is none): a run recorded before that argument existed ran with it."""
    section, _, name = key.partition(".init_args.")
    path = (config.get(section) or {}).get("class_path") if name and "." not in name else None
    if not path:
        return MISSING
    module, _, cls = path.rpartition(".")
    try:
        param = inspect.signature(getattr(importlib.import_module(module), cls)).parameters.get(name)
    except (ImportError, AttributeError, ValueError):
        return MISSING
    return MISSING if param is None or param.default is inspect.Parameter.empty else param.default


def config_diff(recorded: dict, requested: dict) -> list[str]:
    """``key: recorded → requested`` for every result-relevant key that differs; a key the recorded config lacks
    is the same when the request sets it to its class's default (an argument added since that run)."""
    a, b = flatten(recorded), flatten(requested)
    keep = lambda k: not any(k == i or k.startswith(i + ".") for i in IGNORED)  # noqa: E731
    added = lambda k: k not in a and k in b and b[k] == class_default(requested, k)  # noqa: E731
    return [f"{k}: {a.get(k, '(absent)')!r} → {b.get(k, '(absent)')!r}"
            for k in sorted(set(a) | set(b)) if keep(k) and a.get(k) != b.get(k) and not added(k)]


def with_checkpoint_hparams(config: dict, ckpt_path: str | Path) -> dict:
    """``config`` as Lightning resumes it from ``ckpt_path``: LightningCLI puts the checkpoint's saved
    hyperparameters over the model's arguments, so a resumed run records e.g. the SAE's ``d_in`` that it resolved
    from the data where the request left ``None``."""
    from inr_lightning.checkpoints import read_checkpoint

    hparams = read_checkpoint(ckpt_path).get("hyper_parameters") or {}
    model = dict(config.get("model") or {})
    args = dict(model.get("init_args") or {})
    args.update({key: value for key, value in hparams.items() if key in args})
    return {**config, "model": {**model, "init_args": args}}


def resolved_config(args: list[str]) -> dict:
    """The config a ``fit`` with ``args`` would run, fully resolved in this process without running it; a value
    the parser rejects is an ``InputError`` with the parser's own line."""
    from inr_lightning.cli import resolve  # the CLI imports the study's commands lazily; no cycle at import

    return resolve(args)


class Progress:
    """``[k/N] run — elapsed, ETA`` after every stage of a planned sequence.  The ETA extrapolates the mean
    wall-clock of the stages that ran (reused ones cost nothing) to the stages left."""

    def __init__(self) -> None:
        self.plan(0)

    def plan(self, total: int) -> None:
        self.total, self.done, self.ran, self.seconds, self.start = total, 0, 0, 0.0, time.perf_counter()

    def extend(self, stages: int) -> None:
        """``stages`` more than planned (a learning-rate refinement the plan could not know of)."""
        if self.total:
            self.total += stages

    def step(self, run_dir: Path, seconds: float | None) -> None:
        if not self.total:
            return
        self.done += 1
        if seconds is not None:
            self.ran, self.seconds = self.ran + 1, self.seconds + seconds
        left = max(self.total - self.done, 0)
        eta = f"{left * self.seconds / self.ran / 60:.0f} min" if self.ran else "?"
        print(f"[{self.done}/{self.total}] {run_dir} — {(time.perf_counter() - self.start) / 60:.1f} min, ETA {eta}",
              flush=True)


PROGRESS = Progress()


def run_stage(config: str | Path, run_dir: str | Path, overrides: list[str] = (), *, logger: str = "disabled",
              overwrite: bool = False, quiet: bool = True) -> dict:
    """Runs (or reuses, or resumes) one fit of ``config`` in ``run_dir``; returns its ``summary.json``.

    ``logger``: ``disabled`` (no W&B), ``offline`` or ``online`` W&B.
    """
    run_dir = Path(run_dir)
    args = ["fit", "--config", str(config), f"--trainer.default_root_dir={run_dir}", *overrides]
    if quiet:
        args.append("--trainer.enable_progress_bar=false")
    if logger == "disabled":
        args.append("--trainer.logger=false")
    else:
        args.append(f"--trainer.logger.init_args.offline={str(logger != 'online').lower()}")
    recorded_path, marker = run_dir / "config.yaml", run_dir / MARKER
    resume = []
    if recorded_path.is_file():  # only then is the request resolved (a fresh run parses once, when it runs)
        recorded, requested = yaml.safe_load(recorded_path.read_text()) or {}, resolved_config(args)
        if recorded.get("ckpt_path") and Path(recorded["ckpt_path"]).is_file():   # the recorded run was resumed
            requested = with_checkpoint_hparams(requested, recorded["ckpt_path"])
        diff = config_diff(recorded, requested)
        if diff and not overwrite:
            shown = "; ".join(diff[:3]) + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
            raise InputError(f"'{run_dir}' holds a run of another config ({shown}); pass --overwrite to replace "
                             "it, or choose another --out")
        if diff:
            shutil.rmtree(run_dir)
        elif marker.is_file():
            PROGRESS.step(run_dir, None)
            return json.loads((run_dir / "summary.json").read_text())
        elif (run_dir / "checkpoints" / "last.ckpt").is_file():
            resume = ["--ckpt_path=last"]
    elif run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            raise InputError(f"'{run_dir}' holds files but no config.yaml of a run; pass --overwrite to replace "
                             "it, or choose another --out")
        shutil.rmtree(run_dir)
    start, cpu = time.perf_counter(), time.process_time()
    _cli([*args, *resume])
    # Of this call only (a resumed run's earlier part is lost).  CPU time is this process's, every thread: what
    # the stage costs whatever else the machine runs (wall-clock grows with the load beside it).
    seconds, cpu_seconds = round(time.perf_counter() - start, 2), round(time.process_time() - cpu, 2)
    summary = json.loads((run_dir / "summary.json").read_text())
    PROGRESS.step(run_dir, seconds)
    marker.write_text(json.dumps({"finished": True, "resumed": bool(resume), "seconds": seconds,
                                  "cpu_seconds": cpu_seconds, "args": args[1:]}, indent=1))
    return summary
