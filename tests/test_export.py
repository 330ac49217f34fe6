"""Sharing a cohort: ``export`` writes model.safetensors, the resolved config and a model card; the folder is a
cohort checkpoint for ``load_run``, the fit stage and the SAE stage, with the same results as the checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import cli_error, read_summary, run_cli, train_cohort

from inr_lightning import load_run
from inr_lightning.analysis.stable_rank import stable_rank
from inr_lightning.checkpoints import load_cohort
from inr_lightning.data import ActivationDataModule


SYNTH = ["--data.init_args.source=inr_lightning.data.Synthetic", "--data.init_args.source.init_args.size=20",
         "--data.init_args.source.init_args.num_images=6", "--data.init_args.num_signals=4",
         "--data.init_args.num_heldout=2", "--trainer.logger=false"]
FIT = ["--trainer.max_steps=4", "--data.init_args.steps_per_epoch=2", "--trainer.enable_progress_bar=false",
       "--trainer.logger=false", "--model.init_args.record_steps=[2,4]", "--model.init_args.protocol=auto"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return train_cohort(tmp_path_factory.mktemp("export") / "cohort", "siren", *SYNTH).parent.parent


def test_export_round_trips_to_a_fit_with_the_same_result(cohort, tmp_path):
    out = tmp_path / "shared"
    run_cli(["export", str(cohort), str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.yaml", "model.safetensors", "signals.csv",
                                                      "summary.json"]
    # The folder rebuilds the same network as the checkpoint (no pickle: safetensors + JSON metadata).
    (a, hp_a), (b, hp_b) = load_cohort(cohort / "checkpoints" / "last.ckpt"), load_cohort(out)
    assert hp_a["net"] == hp_b["net"] and hp_a["num_signals"] == hp_b["num_signals"] == 4
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    # load_run on the folder: a CohortRun rendering the same images.
    run_a, run_b = load_run(cohort), load_run(out)
    assert run_b.stage == "cohort" and run_b.resolution == (16, 16)
    torch.testing.assert_close(run_a.render(resolution=24), run_b.render(resolution=24), rtol=0, atol=0)
    # A fit of the held-out signals from the folder = the same fit from the checkpoint.
    fits = {}
    for name, ckpt in (("ckpt", cohort / "checkpoints" / "last.ckpt"), ("folder", out)):
        fits[name] = tmp_path / f"fit_{name}"
        run_cli(["fit", "--config", "configs/fit/siren.yaml", f"--trainer.default_root_dir={fits[name]}",
                 f"--data.init_args.cohort_ckpt={ckpt}", *FIT])
    sa, sb = (torch.load(fits[n] / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for n in fits)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    s1, s2 = read_summary(fits["ckpt"]), read_summary(fits["folder"])
    assert s1["val/psnr"] == s2["val/psnr"] and s1["freeze/last_frozen_layer"] == s2["freeze/last_frozen_layer"]
    assert (fits["ckpt"] / "signals.csv").read_text() == (fits["folder"] / "signals.csv").read_text()
    # The SAE stage reads the folder too: the same activations as from the checkpoint.
    dm_a = ActivationDataModule(str(cohort / "checkpoints" / "last.ckpt"), layer=1, batch_size=32, steps_per_epoch=1)
    dm_b = ActivationDataModule(str(out), layer=1, batch_size=32, steps_per_epoch=1)
    torch.testing.assert_close(dm_a.grid_activations(), dm_b.grid_activations(), rtol=0, atol=0)


def test_the_model_card_is_generated_from_the_run(cohort, tmp_path):
    out = tmp_path / "card"
    run_cli(["export", str(cohort), str(out)])
    card = (out / "README.md").read_text()
    summary = json.loads((cohort / "summary.json").read_text())
    net, _ = load_cohort(out)
    ranks = [float(stable_rank(net.encoder.linear(j).weight)[0]) for j in range(len(net.encoder))]
    assert "SIREN cohort encoder (4 signals, 16×16)" in card
    assert f"{summary['val/psnr']:.2f} dB" in card
    assert "| stable rank | " + " | ".join(f"{r:.2f}" for r in ranks) + " |" in card
    # The card's table is the profile the cohort run recorded at its last validation (same weights).
    assert [round(r, 2) for r in ranks] == [round(r, 2) for r in summary["encoder/stable_rank"]]
    assert "Synthetic" in card and "Adam, lr 0.0001" in card and "4 steps of the full grid" in card
    assert f"--data.init_args.cohort_ckpt={out.name}" in card
    assert (out / "config.yaml").read_text() == (cohort / "config.yaml").read_text()


def test_bad_exports_are_one_line_and_write_nothing(cohort, tmp_path, capsys):
    line = cli_error(["export", str(tmp_path / "missing"), str(tmp_path / "o")], capsys)
    assert line == f"error: run folder '{tmp_path / 'missing'}' does not exist"
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    line = cli_error(["export", str(cohort), str(out)], capsys)
    assert line == f"error: '{out}' exists and is not empty; choose another OUT or pass --overwrite"
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    fake = tmp_path / "fake"
    fake.mkdir()
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(fake / "model.safetensors"))
    with pytest.raises(Exception, match="was not written by inr_lightning export"):
        load_cohort(fake)
