"""scripts/sweep_freeze_depth.py at tiny size: every protocol runs, and the CSV, PNG and report agree."""

import csv
import json

import pytest
import torch
from conftest import load_script

from inr_lightning.nn import CohortINR, INRConfig


def test_sweep_runs_every_protocol_and_reports(tmp_path, capsys):
    torch.manual_seed(0)
    cfg = INRConfig(backbone="siren", width=16, shared_layers=2)
    net = CohortINR(cfg, 3, 1)
    ckpt = tmp_path / "cohort.ckpt"
    torch.save({"hyper_parameters": {"net": cfg.to_dict(), "num_signals": 3, "out_channels": 1,
                                     "_class_path": "inr_lightning.models.CohortINRModule"},
                "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    out = tmp_path / "sweep"
    reports = load_script("sweep_freeze_depth").main([
        "--backbones", "siren", "--cohort_ckpt", str(ckpt), "--out", str(out), "--", "--trainer.max_steps=3",
        "--data.init_args.source=inr_lightning.data.Synthetic", "--data.init_args.source.init_args.size=16",
        "--data.init_args.source.init_args.num_images=5", "--data.init_args.num_signals=3",
        "--data.init_args.num_heldout=2", "--data.init_args.resolution=16", "--data.init_args.steps_per_epoch=3",
        "--model.init_args.lr=1e-3", "--model.init_args.record_steps=[1, 3]"])
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    labels = ["scratch", "freeze_0", "freeze_1", "finetune", "auto_through", "auto_below"]
    assert sorted({r["protocol"] for r in rows}) == sorted(labels)
    assert len(rows) == len(labels) * 2 * 3  # protocols × signals × (steps 1, 3, final)
    assert (out / "sweep.png").stat().st_size > 1000 and list((out / "wandb").glob("offline-run-*"))
    report = reports[0]
    assert json.loads((out / "report.json").read_text())[0]["argmax_stable_rank"] == report["argmax_stable_rank"]
    argmax = report["argmax_stable_rank"]
    assert report["auto_through_depth"] == argmax and report["auto_below_depth"] == argmax - 1
    final = {(r["protocol"], r["signal"]): float(r["psnr"]) for r in rows if r["step"] == "final"}
    diffs = [final["auto_through", s] - final["finetune", s] for s in ("0", "1")]
    assert report["auto_through_minus_finetune_db"]["mean"] == pytest.approx(sum(diffs) / 2, abs=1e-9)
    assert report["auto_through_minus_finetune_db"]["worst"] == pytest.approx(min(diffs), abs=1e-9)
    # auto (through) freezes the same layers as freeze_<argmax>: identical fits
    assert final["auto_through", "0"] == pytest.approx(final[f"freeze_{argmax}", "0"], abs=1e-6)
    text = capsys.readouterr().out
    assert "argmax stable rank: layer" in text and "Spearman" in text and "finding 1" in text
    # A second sweep into the same folder refuses to overwrite the runs unless asked to.
    with pytest.raises(SystemExit):
        load_script("sweep_freeze_depth").main(["--backbones", "siren", "--cohort_ckpt", str(ckpt), "--out", str(out), "--wandb",
                            "disabled", "--", "--trainer.max_steps=1"])
    assert "already holds checkpoints" in capsys.readouterr().err
