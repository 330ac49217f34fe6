"""Two CPU processes under DDP reach the weights one process reaches on the same global coordinates."""

import pytest
from conftest import assert_relative_close, fit_single_and_ddp, read_summary

pytestmark = pytest.mark.slow   # a 2-process DDP run

ARGS = ["--config", "configs/cohort/siren.yaml", "--trainer.accelerator=cpu", "--trainer.max_steps=5",
        "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--model.init_args.net.width=32", "--model.init_args.net.shared_layers=3",
        "--data.init_args.source=inr_lightning.data.Synthetic", "--data.init_args.source.init_args.size=24",
        "--data.init_args.source.init_args.num_images=6", "--data.init_args.num_signals=4",
        "--data.init_args.num_heldout=0", "--data.init_args.resolution=16",
        "--data.init_args.coords_per_step=101",  # a random subset, not divisible by 2: uneven shards
        "--data.init_args.steps_per_epoch=5",
        # SGD, not Adam: Adam is blind to a constant factor in the gradient, SGD shows any normalisation error.
        "--optimizer=torch.optim.SGD", "--optimizer.lr=0.01"]


def test_two_process_ddp_equals_one_process(tmp_path):
    a, b, single, ddp = fit_single_and_ddp(ARGS, tmp_path)
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
