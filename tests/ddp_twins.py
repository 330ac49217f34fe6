"""The 2-process halves of the DDP equivalence tests, as one launch: ``python tests/ddp_twins.py OUT`` runs every
case of ``TWINS`` under 2-process CPU DDP (``OUT/<case>/ddp``), then ``ddp_parts.main`` (``OUT/sae_init``).

One launch, not one per test: a launch is two interpreters importing Lightning and a gloo rendezvous, most of
a tiny case's time.  conftest starts it in the background when a test asks for the ``ddp_twins`` fixture; each test
runs its one-process twin in its own process (``twin``) and compares.  The inputs a case reads (a crafted cohort)
are made by ``case_args`` from a fixed seed, so the test's copy and the launch's are the same bytes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SYNTHETIC = ["--data.init_args.source=inr_lightning.data.Synthetic", "--data.init_args.source.init_args.size=24",
              "--data.init_args.source.init_args.num_images=6", "--data.init_args.num_signals=4",
              "--data.init_args.resolution=16"]
QUIET = ["--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", "--trainer.logger=false"]
_SGD = ["--optimizer=torch.optim.SGD"]
# SGD, not Adam, where a case says so: Adam is blind to a constant factor in the gradient, SGD shows any
# normalisation error.
TWINS = {
    # every stage with SGD: any normalisation error shows
    "cohort_sgd": ["--config", "configs/cohort/siren.yaml", *QUIET, "--trainer.max_steps=5",
                   "--model.init_args.net.width=32", "--model.init_args.net.shared_layers=3", *SYNTHETIC,
                   "--data.init_args.num_heldout=0",
                   "--data.init_args.coords_per_step=101",  # a random subset, not divisible by 2: uneven shards
                   "--data.init_args.steps_per_epoch=5", *_SGD, "--optimizer.lr=0.01"],
    "fit_sgd": ["--config", "configs/fit/siren.yaml", *QUIET, "--trainer.max_steps=4", "--trainer.callbacks=[]",
                "{cohort}", "--model.init_args.protocol=freeze", "--model.init_args.last_frozen_layer=0",
                "--model.init_args.record_steps=[2]", "--data.init_args.coords_per_step=101",
                "--data.init_args.steps_per_epoch=4",
                "--model.init_args.step_chunk=16",  # chunked steps (uneven: 101 and ~50 per rank) under DDP too
                *_SGD, "--optimizer.lr=0.01"],
    # 256 atoms, k = 2, window 150: atoms die within the run, so AuxK and the dead counts take part.
    "sae_sgd": ["--config", "configs/sae/siren.yaml", *QUIET, "{cohort}", "--model.init_args.n_atoms=256",
                "--model.init_args.k=2", "--model.init_args.warmup_steps=2", "--model.init_args.dead_window=150",
                "--data.init_args.batch_size=101", "--data.init_args.steps_per_epoch=5", "--trainer.max_steps=5",
                "--trainer.callbacks.init_args.top_atoms=4", "--trainer.callbacks.init_args.ablation=false",
                "--trainer.callbacks.init_args.figures=false", *_SGD, "--optimizer.lr=0.5"],
    # every stage with its shipped optimiser (Adam, schedules, parameter groups); only the sizes shrunk
    "cohort_adam": ["--config", "configs/cohort/siren.yaml", *QUIET, *SYNTHETIC, "--data.init_args.num_heldout=2",
                    "--model.init_args.net.width=32", "--model.init_args.net.shared_layers=3",
                    "--data.init_args.coords_per_step=101", "--data.init_args.steps_per_epoch=3",
                    "--trainer.max_steps=6", "--model.init_args.lr_schedule=cosine"],
    "fit_adam": ["--config", "configs/fit/siren.yaml", *QUIET, "--trainer.max_steps=6", "{cohort}",
                 "--model.init_args.protocol=auto", "--model.init_args.record_steps=[3,6]",
                 "--data.init_args.coords_per_step=101", "--data.init_args.steps_per_epoch=3"],
    "sae_adam": ["--config", "configs/sae/siren.yaml", *QUIET, "{cohort}", "--model.init_args.n_atoms=64",
                 "--model.init_args.k=4", "--model.init_args.warmup_steps=2", "--data.init_args.batch_size=101",
                 "--data.init_args.steps_per_epoch=3", "--trainer.max_steps=6",
                 "--trainer.callbacks.init_args.top_atoms=4", "--trainer.callbacks.init_args.ablation=false",
                 "--trainer.callbacks.init_args.figures=false"],
}


def crafted_cohort(folder: Path) -> Path:
    """A crafted cohort run (3 + 2 synthetic 16×16 images, SIREN width 32, 3 shared layers, seed 0) → its
    checkpoint; the same bytes wherever it is made."""
    import torch
    from conftest import cohort_run

    from inr_lightning.nn import CohortINR, INRConfig

    torch.manual_seed(0)
    return cohort_run(folder, CohortINR(INRConfig(backbone="siren", width=32, shared_layers=3), 3, 1))


def case_args(case: str, folder: Path, make: bool = True) -> list[str]:
    """The CLI arguments of ``case`` (no devices, strategy or run folder) with its inputs under ``folder``
    (made there unless ``make`` is false)."""
    args = TWINS[case]
    if "{cohort}" in args:
        ckpt = crafted_cohort(folder / "cohort") if make else folder / "cohort" / "checkpoints" / "last.ckpt"
        args = [f"--data.init_args.cohort_ckpt={ckpt}" if a == "{cohort}" else a for a in args]
    return list(args)


def main(out: str) -> None:
    from ddp_parts import main as sae_init
    from inr_lightning.main import main as cli

    out = Path(out)
    os.chdir(ROOT)
    if "LOCAL_RANK" not in os.environ:   # the launching process: every input before the first fit starts rank 1
        for case in TWINS:
            case_args(case, out / case)
    for case in TWINS:
        args = case_args(case, out / case, make=False)
        cli(["fit", *args, "--trainer.devices=2", "--trainer.strategy=ddp",
             f"--trainer.default_root_dir={out / case / 'ddp'}"])
    (out / "sae_init").mkdir(exist_ok=True)
    sae_init(out / "sae_init")


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    main(sys.argv[1])
