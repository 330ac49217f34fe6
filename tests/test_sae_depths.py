"""scripts/sae_depths.py at tiny size: an SAE per depth plus the control, one table from their summaries."""

import csv
import json

from conftest import ROOT, TINY, load_script, run_cli


def test_sae_depths_collects_every_run(tmp_path, capsys):
    cohort = tmp_path / "cohort"
    run_cli(["fit", "--config", "configs/cohort/ffmlp.yaml", f"--trainer.default_root_dir={cohort}", *TINY,
             "--trainer.logger=false", "--model.init_args.net.shared_layers=2"])
    out = tmp_path / "sae"
    rows = load_script("sae_depths").main([
        "--backbones", "ffmlp", "--cohort_ckpt", str(cohort / "checkpoints" / "last.ckpt"), "--out", str(out),
        "--control_layers", "1", "--", "--trainer.logger=false", "--model.init_args.n_atoms=32",
        "--model.init_args.k=4", "--model.init_args.warmup_steps=1", "--data.init_args.batch_size=64",
        "--data.init_args.steps_per_epoch=2", "--trainer.max_steps=2", "--trainer.callbacks.init_args.top_atoms=2"])
    assert [(r["layer"], r["encoder"]) for r in rows] == [(0, "cohort"), (1, "cohort"), (1, "untrained")]
    table = list(csv.DictReader((out / "sae_depths.csv").open()))
    for row in table:
        summary = json.loads((ROOT / row["run"] / "summary.json").read_text())
        assert float(row["sae/fvu"]) == summary["sae/fvu"] and 0 <= summary["sae/fvu"]
        assert float(row["sae/l0"]) <= 4 + 1e-9 and float(row["ablation/max_drop_db"]) == summary["ablation/max_drop_db"]
    text = capsys.readouterr().out
    assert "| ffmlp | 1 | untrained |" in text and (out / "sae_depths.md").is_file()
