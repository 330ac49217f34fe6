"""The whole study at tiny size, checked across stages: every fit and SAE ran on its cohort's data, every
number of the report comes from a run that exists, and a second call reuses what finished."""

import csv
import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, raises_naming

from inr_lightning.errors import InputError
from inr_lightning.study.commands import run_study, study
from inr_lightning.study.profiles import PROFILES


pytestmark = pytest.mark.slow   # whole studies


@pytest.fixture(scope="module")
def tiny(tiny_study):
    """The tiny study (conftest.tiny_study: through scripts/cpu_study.sh, once per session) → (out, report)."""
    proc, out = tiny_study
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, out / "report.md"


def runs(out: Path):
    """(run dir, its config) of every run under ``out``."""
    for config in sorted(out.rglob("config.yaml")):
        yield config.parent, yaml.safe_load(config.read_text())


def test_every_later_stage_runs_at_its_cohorts_resolution_and_source(tiny):
    out, _ = tiny
    cohorts = {run: cfg for run, cfg in runs(out) if cfg["model"]["class_path"].endswith("CohortINRModule")}
    later = [(run, cfg) for run, cfg in runs(out) if run not in cohorts]
    assert len(cohorts) >= 3 and len(later) >= 2 * 2 * 8 + 4   # 2 views × 2 backbones × 8 protocols, SAEs
    for run, cfg in later:
        summary = json.loads((run / "summary.json").read_text())
        cohort_run = Path(summary["data/cohort_run"])
        cohort_data = cohorts[cohort_run]["data"]["init_args"]
        assert summary["data/resolution"] == [cohort_data["resolution"]] * 2 == [16, 16], run
        if "sweep_coronal" in run.parts:   # the other view: the source differs on purpose and says so
            assert summary["data/overrides"]["source"]["value"].startswith("MRISlices(") and \
                "axis=coronal" in summary["data/overrides"]["source"]["value"]
        elif "data/overrides" in summary:
            assert summary["data/overrides"] == {}, run
        if (run / "signals.csv").is_file() and "sweep" in run.parts:   # held-out signals the cohort never saw
            fitted = {r["name"] for r in csv.DictReader((run / "signals.csv").open())}
            trained = {r["name"] for r in csv.DictReader((cohort_run / "signals.csv").open())}
            assert len(fitted) == 5 and not fitted & trained, run


def test_report_traces_every_number_to_a_run_and_says_what_made_it(tiny):
    out, report = tiny
    text = report.read_text()
    assert re.search(r"Made by `python -m inr_lightning study --profile tiny --out \S+ --wandb disabled` at "
                     r"commit `[0-9a-f]{12}`", text)
    assert "## What this profile cuts" in text and "## Finding 1 at a glance" in text
    glance = [line for line in text.splitlines() if re.match(r"\| mri \| (heldout|coronal) \| (siren|ffmlp) \|", line)]
    assert len(glance) == 2 * 2 * 2 and all(re.search(r"\| [+-]\d+\.\d\d", line) for line in glance)
    # 16-px cohorts of 4 steps fit nothing: the first gate fails, and every verdict says so instead of judging
    assert all("| untestable: the cohorts do not fit comparably |" in line and line.endswith("| — |")
               for line in glance)
    assert text.index("| gate | numbers | verdict |") < text.index("| reading | rule | rule's layer")
    for path in re.findall(r"`((?:mri)/[^`*]+)`", text):
        assert (out / path).exists(), path
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (out / image).is_file() and (out / image).stat().st_size > 1000, image
    for section in ("Matched quality", "freeze_k − random_k (transfer)", "reinit_k − freeze_k", "steps to 40 dB saved",
                    "### Finding 2"):
        assert section in text
    assert re.search(r"Fits: full grid every step, 3 steps, Adam lr [0-9.e-]+, loss sum over signals", text)
    rows = list(csv.DictReader((out / "mri" / "sweep.csv").open()))
    assert {r["protocol"] for r in rows} >= {"scratch", "finetune", "freeze_0", "freeze_1", "random_0", "random_1",
                                            "reinit_0", "auto"}


def test_the_learning_rate_chosen_on_validation_signals_is_the_one_every_sweep_fit_ran(tiny):
    """Across stages: the search fitted validation signals (neither cohort nor held-out), and each backbone's
    sweep fits ran at the rate its report row marks as used."""
    out, report = tiny
    text = report.read_text()
    chosen = dict(re.findall(r"\| (siren|ffmlp) \| ([0-9.e-]+) \| [^|]+ \| [^|]+ \| [^|]+ \| \*\*yes\*\* \|", text))
    assert set(chosen) == {"siren", "ffmlp"}
    for backbone, lr in chosen.items():
        search = out / "mri" / "lr_search" / backbone
        validation = {r["name"] for r in csv.DictReader((search / f"lr{lr}" / "finetune" / "signals.csv").open())}
        held = {r["name"] for r in csv.DictReader((out / "mri" / "seed0" / "sweep" / backbone / "finetune" /
                                                   "signals.csv").open())}
        cohort = {r["name"] for r in csv.DictReader((out / "mri" / "seed0" / "cohort" / "siren" / "signals.csv").open())}
        assert len(validation) == 1 and not validation & held and not validation & cohort
        for config in (out / "mri").glob(f"seed*/sweep/{backbone}/*/config.yaml"):
            assert float(yaml.safe_load(config.read_text())["model"]["init_args"]["lr"]) == float(lr), config


def test_a_second_call_reuses_and_another_profile_is_refused(tiny):
    out, report = tiny
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("stage.json")}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        study(["--profile", "tiny", "--out", str(out), "--wandb", "disabled"])
        assert {p: p.stat().st_mtime_ns for p in out.rglob("stage.json")} == stamps   # nothing re-ran
        longer = dataclasses.replace(PROFILES["tiny"], fit_steps=4)
        with raises_naming(InputError, "trainer.max_steps", 3, 4):
            run_study(longer, out, ["siren", "ffmlp"], ["mri"], 1, "disabled", False, "test")


def test_export_keeps_every_record_the_report_names_and_no_checkpoint(tiny, tmp_path):
    from inr_lightning.study.commands import export

    out, report = tiny
    copied = export(out, tmp_path / "docs")
    text = copied.read_text()
    assert text == report.read_text() and not list((tmp_path / "docs").rglob("*.ckpt"))
    for path in re.findall(r"`((?:mri)/[^`*]+)`", text):
        assert (tmp_path / "docs" / path / "summary.json").is_file() or (tmp_path / "docs" / path).is_file(), path
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (tmp_path / "docs" / image).is_file(), image
    with raises_naming(InputError, f"'{tmp_path / 'docs'}'"):
        export(out, tmp_path / "docs")
    fresh = tmp_path / "fresh"   # a study whose export folder is taken is refused before it runs anything
    with raises_naming(InputError, "--export", f"'{tmp_path / 'docs'}'"):
        study(["--profile", "tiny", "--out", str(fresh), "--wandb", "disabled", "--export", str(tmp_path / "docs")])
    assert not fresh.exists()


def test_the_regime_map_judges_every_cell_and_budget_from_its_own_runs(regime_study):
    """Across stages: each (resolution, width) cell trains its own cohorts and sweeps at that size, and the map
    has one row per cell × backbone × budget, each naming the gate it fails (16-px cohorts fit nothing).  The
    cells ran in the script's two halves (conftest.regime_study); its last call wrote the map."""
    tmp_path = regime_study
    text = (tmp_path / "report.md").read_text()
    rows = [line for line in text.splitlines() if re.match(r"\| 16² \| (8|16) \|", line)]
    assert len(rows) == 2 * 2 * 2
    assert all(line.count("untestable: the cohorts do not fit comparably") == 2 for line in rows)
    assert (tmp_path / "figures" / "regime_map.png").stat().st_size > 1000
    for width in (8, 16):   # what each cell cost: its own runs' CPU time, as both halves of the script recorded it
        cpu = sum(json.loads(p.read_text())["cpu_seconds"] for p in (tmp_path / f"r16_w{width}").glob("**/stage.json"))
        assert f"| 16², width {width} | " in text and f"16x{width}: {cpu / 60:.1f} CPU-min" in text
    for width in (8, 16):
        cohort = yaml.safe_load((tmp_path / f"r16_w{width}" / "mri" / "seed0" / "cohort" / "siren" /
                                 "config.yaml").read_text())
        assert cohort["model"]["init_args"]["net"]["width"] == width
        fit = json.loads((tmp_path / f"r16_w{width}" / "mri" / "seed0" / "sweep" / "ffmlp" / "freeze_0" /
                          "summary.json").read_text())
        assert fit["fit/net"]["width"] == width and fit["data/resolution"] == [16, 16]


def test_the_finding2_section_is_recomputed_from_the_export_alone(tiny, tmp_path):
    """Every finding-2 number of the tiny report (medians, claims, "r90 of the 5 worst atoms") from what
    ``--export`` keeps: the runs' index, their summary.json and the compact atom table — no atoms.csv."""
    from inr_lightning.study.commands import export
    from inr_lightning.study.report import finding2_lines, load_finding2_rows

    out, report = tiny
    docs = export(out, tmp_path / "docs").parent
    assert not list(docs.rglob("atoms.csv")) and (docs / "finding2_atoms.csv").is_file()
    rows = load_finding2_rows(docs)
    assert all(math.isfinite(r["worst_r90"]) for r in rows)
    text = report.read_text()
    for ds in sorted({r["dataset"] for r in rows}):
        lines = finding2_lines([r for r in rows if r["dataset"] == ds], docs)
        assert "\n".join(lines).strip() in text, ds


def test_the_shipped_regime_maps_cost_is_summed_from_its_exported_runs():
    """docs/study_regime: the "What it cost" section (the README's cost bullet quotes it) from the exported
    stage.json records alone, and the slower half within the 180 minutes of two idle cores the profile is sized for."""
    from inr_lightning.study.profiles import PROFILES
    from inr_lightning.study.report import regime_cost_lines

    docs = ROOT / "docs" / "study_regime"
    records = {p.relative_to(docs): json.loads(p.read_text()) for p in docs.glob("**/stage.json")}
    lines = regime_cost_lines(records, PROFILES["regime"])
    assert "\n".join(lines).strip() in (docs / "report.md").read_text()
    slower = float(re.search(r"about its slower half, ([\d.]+) min", lines[-2]).group(1))
    assert 0 < slower <= 180
