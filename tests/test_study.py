"""scripts/study.py end to end at tiny size: every stage runs and report.md holds numbers and figures."""

import re

from conftest import load_script


def test_quick_study_path_writes_a_report_with_numbers_and_figures(tmp_path):
    study = load_script("study")
    out = tmp_path / "study"
    report = study.main(["--profile", "tiny", "--out", str(out), "--wandb", "disabled"])
    text = report.read_text()
    for heading in ("## Cohort training", "## Finding 1", "## Finding 2", "## SAE quality per depth"):
        assert heading in text
    # Every backbone has its finding-1 row with a stable-rank profile and an auto − finetune difference in dB.
    for backbone in ("siren", "ffmlp"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {backbone} | ") and " dB (" in line)
        assert re.search(r"\d: [+-]\d+\.\d\d / [+-]\d+\.\d\d dB \((yes|no)\)", row)
    # SAE rows: 3 depths + 1 control per backbone, each traceable to its run directory.
    sae_rows = [line for line in text.splitlines() if re.match(r"\| (siren|ffmlp) \| \d \| (cohort|untrained) \|", line)]
    assert len(sae_rows) == 2 * 2 * 4  # finding-2 table and SAE-quality table
    for run in re.findall(r"`(sae/[a-z]+/(?:control_)?layer\d)`", text):
        assert (out / run / "summary.json").is_file()
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (out / image).is_file() and (out / image).stat().st_size > 1000, image
    assert (out / "figures" / "localization.png").is_file() and (out / "sweep" / "sweep.png").is_file()
    # Numbers, not placeholders, in the SAE quality table.
    assert all(re.search(r"\| \d\.\d{4} \|", line) for line in sae_rows)
