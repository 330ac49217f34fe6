"""The finding-2 profile at tiny size, across stages: cohorts on two datasets and two seeds → SAEs on a pool
of continuous coordinates and each backbone's own untrained control → a report whose finding-2 section shows
gates, controls and intervals over cohorts with real numbers, and which the export alone recomputes."""

import csv
import json
import math
import re

import pytest
from conftest import ROOT

from inr_lightning.study.finding2 import STAGE_SECONDS, estimated_minutes, planned_stages, stage_seconds
from inr_lightning.study.profiles import PROFILES
from inr_lightning.study.report import finding2_report_body, finding2_section


@pytest.fixture
def finding2(finding2_study):
    """(out, export, report) of the tiny finding-2 study (conftest: through scripts/cpu_study.sh, in the
    background from the session's start)."""
    return finding2_study


@pytest.mark.slow   # the tiny finding-2 study, cohorts to report
def test_every_cohort_seed_gets_saes_and_its_own_controls_on_both_datasets(finding2):
    out, _, _ = finding2
    with open(out / "finding2_runs.csv") as f:
        index = list(csv.DictReader(f))
    kinds = {(r["dataset"], r["cohort"], r["backbone"], r["layer"], r["kind"]) for r in index}
    for ds in ("mri", "coronal"):
        for cohort in ("0", "1"):
            for backbone in ("siren", "ffmlp"):
                assert {(ds, cohort, backbone, layer, "depth") for layer in ("0", "1")} <= kinds
                assert (ds, cohort, backbone, "1", "control") in kinds
                # the control SAE reads a cohort of the same seed whose layers 0..1 stayed random
                run = next(r["run"] for r in index if (r["dataset"], r["cohort"], r["backbone"], r["kind"]) ==
                           (ds, cohort, backbone, "control"))
                s = json.loads((out / run / "summary.json").read_text())
                assert s["sae/encoder"] == "untrained" and s["data/freeze_random_prefix"] == 1
                assert f"{ds}/seed{cohort}/control/{backbone}" in s["data/cohort_run"]
    # every stage of the run is one of the kinds the budget counts
    assert set(stage_seconds(out)) == {"cohort", "control", "sae", "sae_atoms16"}
    sizes = [r for r in index if r["kind"] == "size"]
    assert {r["n_atoms"] for r in sizes} == {"16"} and {r["dataset"] for r in sizes} == {"mri"} and len(sizes) == 4
    for r in index:   # every SAE trained on the pool, held-out FVU and the ratio recorded
        s = json.loads((out / r["run"] / "summary.json").read_text())
        assert s["data/coords"] == "pool" and s["data/train_coords"] == 2000 and s["sae/heldout_coords"] == 500
        assert s["sae/values_per_parameter"] == pytest.approx(2000 * 16 / s["sae/parameters"])
        assert math.isfinite(s["sae/fvu_heldout_coords"]) and math.isfinite(s["atoms/align_edges_memorised_median"])


@pytest.mark.slow   # the tiny finding-2 study, cohorts to report
def test_the_section_shows_gates_controls_and_intervals_with_real_numbers(finding2):
    _, _, report = finding2
    text = report.read_text()
    section = finding2_section(text)
    for heading in ("#### SAE gates", "#### Each backbone against its own untrained control",
                    "#### Memorisation", "#### The worst atom is an extreme value", "#### Dictionary size",
                    "#### Claim by claim (over cohorts)", "## Finding 2 across datasets"):
        assert heading in section, heading
    # intervals over the two cohorts, in the gate and control tables
    gate = [line for line in section.splitlines() if line.startswith("| siren | cohort | 1 |")]
    assert len(gate) == 2 and all(re.search(r"\d\.\d{5} ± \d\.\d{5} \(n=2\)", line) for line in gate)
    control = [line for line in section.splitlines() if re.match(r"\| (siren|ffmlp) \| 1 \| \d+\.\d\d / \d+\.\d\d \|", line)]
    assert len(control) == 4   # 2 datasets × 2 backbones at the control depth, each INR's PSNR beside it
    assert all("(n=2)" in line for line in control)
    claims = [line for line in section.splitlines() if line.startswith("| SIREN atoms are localised")]
    assert len(claims) == 2 and all(re.search(r"L1 -?\d\.\d{3} ± \d\.\d{3} \(n=2\)", line) for line in claims)
    assert "same within the interval" in section and "| siren | r90 / uniform | 0 |" in section
    assert "no freeze-depth sweeps: finding 1 is not measured by this profile" in text


@pytest.mark.slow   # the tiny finding-2 study, cohorts to report
def test_every_finding2_number_is_recomputed_from_the_export_alone(finding2):
    out, docs, report = finding2
    assert (docs / "finding2_runs.csv").is_file() and (docs / "finding2_atoms.csv").is_file()
    assert not list(docs.rglob("atoms.csv")) and not list(docs.rglob("*.ckpt"))
    section = finding2_section(report.read_text())
    recomputed = "\n".join(finding2_report_body(docs, {}, ["siren", "ffmlp"]))
    assert finding2_section(recomputed).strip() == section.strip()
    # the compact atom table holds each run's most damaging atoms, as its atoms.csv has them
    with open(docs / "finding2_atoms.csv") as f:
        compact = list(csv.DictReader(f))
    run = compact[0]["run"]
    with open(out / run / "atoms" / "atoms.csv") as f:
        full = {r["atom"]: r for r in csv.DictReader(f)}
    worst = json.loads((out / run / "summary.json").read_text())["ablation/worst_atoms"]
    mine = [r for r in compact if r["run"] == run]
    assert sorted(int(r["atom"]) for r in mine) == sorted(worst)
    assert all(r["mass_radius90"] == full[r["atom"]]["mass_radius90"] for r in mine)


def test_the_finding2_profile_fits_the_cpu_budget_from_measured_stage_times():
    profile = PROFILES["finding2"]
    counts = planned_stages(profile, ["siren", "ffmlp"], list(profile.datasets), profile.seeds)
    assert profile.seeds >= 3 and set(profile.datasets) == {"mri", "natural"} and profile.sae_layers is None
    assert profile.control_layers is None and set(profile.dict_sizes) == {1024, 16384}
    # 2 datasets × 3 seeds × 2 backbones: 12 cohorts (+2 learning rates tried per dataset), a control cohort at
    # each of 5 depths, 5 SAEs + 5 control SAEs each, and 2 × 3 × 2 SAEs of other dictionary sizes on MRI
    assert counts == {"cohort": 16, "control": 60, "sae": 120, "sae_atoms1024": 6, "sae_atoms16384": 6}
    # scripts/cpu_study.sh runs one dataset per process: the dictionary sizes stay on the profile's first dataset
    halves = [planned_stages(profile, ["siren", "ffmlp"], [ds], profile.seeds) for ds in profile.datasets]
    assert [h["sae_atoms16384"] for h in halves] == [6, 0]
    assert all(sum(h[k] for h in halves) == n for k, n in counts.items())
    # the wall-clock on 2 cores is the slower half's (MRI: it has the dictionary sizes)
    minutes = [estimated_minutes(h) for h in halves]
    t = STAGE_SECONDS
    mri = (8 * t["cohort"] + 30 * t["control"] + 60 * t["sae"] + 6 * t["sae_atoms1024"] + 6 * t["sae_atoms16384"]
           + 110 * t["overhead"]) / 60
    assert minutes[0] == pytest.approx(mri) == pytest.approx(77.9, abs=0.1) and minutes[1] < minutes[0]   # docs/study.md
    assert minutes[0] + 2 * (t["cohort"] + t["overhead"]) / 60 <= 180   # and two learning-rate refinements
    assert "--data.init_args.coords=pool" in profile.sae


def test_the_stage_times_are_the_medians_of_the_exported_run():
    """STAGE_SECONDS (what the budget above uses) are the medians of docs/study_finding2's stage.json files."""
    measured = stage_seconds(ROOT / "docs" / "study_finding2")
    assert measured == {k: v for k, v in STAGE_SECONDS.items() if k != "overhead"}


def test_the_shipped_finding2_report_is_recomputed_from_its_export():
    """docs/study_finding2: every finding-2 number of the report from the exported records alone."""
    docs = ROOT / "docs" / "study_finding2"
    section = finding2_section((docs / "report.md").read_text())
    recomputed = "\n".join(finding2_report_body(docs, {}, ["siren", "ffmlp"]))
    assert "#### Claim by claim (over cohorts)" in section
    assert finding2_section(recomputed).strip() == section.strip()
