"""Finding 2 decided over cohorts: each backbone against its own untrained control, content independence
across datasets, memorisation against held-out images, PSNR comparability, dictionary size — on crafted rows
whose answer is known."""

import math

import numpy as np
import pytest

from inr_lightning.study.claims import (
    between_backbones,
    comparable,
    content_independence,
    judge_cohorts,
    memorisation,
    sae_gates,
    size_dependence,
    versus_own_control,
    worst_atom,
)
from inr_lightning.study.verdicts import interval, welch_interval

JITTER = (-0.01, 0.0, 0.01)   # cohort-to-cohort spread of every crafted value


def rows_for(dataset="mri", siren_r90=0.2, siren_ctl_r90=0.6, ffmlp_r90=0.9, ffmlp_ctl_r90=0.7, memorised=0.05,
             siren_tiling=1.3, ctl_psnr=31.5, drop=12.0, layers=(0, 1), shift=0.0, ctl_memorised=0.0):
    rows = []
    for c, e in enumerate(JITTER):
        for j in layers:
            def add(backbone, kind, **v):
                rows.append({"dataset": dataset, "cohort": c, "backbone": backbone, "layer": j, "kind": kind,
                             "encoder": "untrained" if kind == "control" else "cohort", "n_atoms": 64,
                             "run": f"{dataset}/{backbone}/{kind}{j}/c{c}", **v})
            add("siren", "depth", **{"atoms/mass_radius90_rel_uniform_median": siren_r90 + e + shift,
                                     "atoms/tiling_ratio_subpixel": siren_tiling + e, "sae/inr_psnr": 32.0 + e,
                                     "ablation/max_drop_db": 2.0, "worst_r90": 0.05 + e,
                                     "atoms/align_edges_memorised_median": 0.0 + e})
            add("siren", "control", **{"atoms/mass_radius90_rel_uniform_median": siren_ctl_r90 + e,
                                       "atoms/tiling_ratio_subpixel": 1.0 + e, "sae/inr_psnr": ctl_psnr})
            add("ffmlp", "depth", **{"atoms/mass_radius90_rel_uniform_median": ffmlp_r90 + e,
                                     "atoms/tiling_ratio_subpixel": 0.9, "sae/inr_psnr": 32.2 + e,
                                     "ablation/max_drop_db": drop + 10 * e if j else 1.0,
                                     "ablation/atom_max_drop_q50": 0.001, "ablation/atom_max_drop_q99": 3.0 + e,
                                     "worst_r90": 0.6 + e, "atoms/align_edges_memorised_median": memorised + e})
            add("ffmlp", "control", **{"atoms/mass_radius90_rel_uniform_median": ffmlp_ctl_r90 + e,
                                       "sae/inr_psnr": ctl_psnr, "atoms/align_edges_memorised_median": ctl_memorised + e})
    return rows


def verdicts(rows, dataset="mri"):
    return [c["verdict"] for c in judge_cohorts(rows, dataset)]


def test_every_claim_holds_where_the_crafted_cohorts_show_it():
    claims = judge_cohorts(rows_for(), "mri")
    assert len(claims) == 7 and [c["verdict"] for c in claims] == ["**holds**"] * 7, claims
    assert "L0 0.200 ± 0.025 (n=3) vs 0.600 ± 0.025 (n=3): -0.400 ± 0.000 (n=3)" in claims[0]["numbers"]


def test_a_backbone_is_judged_against_its_own_control_at_every_depth():
    # SIREN as local as its own random encoder: the claim fails although SIREN is far more local than FFMLP.
    v = verdicts(rows_for(siren_ctl_r90=0.2))
    assert v[0] == "fails" and v[1] == "**holds**"
    d = versus_own_control(rows_for(siren_ctl_r90=0.2), "atoms/mass_radius90_rel_uniform_median", "mri", "siren",
                           "below")
    assert [x["layer"] for x in d] == [0, 1] and d[0]["diff"]["mean"] == pytest.approx(0.0, abs=1e-12)
    # Breadth the untrained FFMLP has too: not learned.
    assert verdicts(rows_for(ffmlp_ctl_r90=0.95))[3] == "fails"
    # Tiling that the control reproduces: fails though the ratio is above 1.
    rows = [dict(r, **{"atoms/tiling_ratio_subpixel": r["atoms/tiling_ratio_subpixel"] + 0.3})
            if r["kind"] == "control" and r["backbone"] == "siren" else r for r in rows_for()]
    assert verdicts(rows)[2] == "fails"


def test_the_difference_must_clear_the_interval_over_cohorts():
    # A mean difference inside the cohort spread is no claim: one cohort reversed.
    rows = [dict(r, **{"atoms/mass_radius90_rel_uniform_median": r["atoms/mass_radius90_rel_uniform_median"] + 0.43})
            if r["kind"] == "depth" and r["backbone"] == "siren" and r["cohort"] == 2 else r
            for r in rows_for(siren_r90=0.55, siren_ctl_r90=0.6)]   # differences −0.05, −0.05, +0.38
    d = versus_own_control(rows, "atoms/mass_radius90_rel_uniform_median", "mri", "siren", "below")
    assert d[0]["diff"]["mean"] == pytest.approx(0.28 / 3) and d[0]["holds"] is False
    rows = rows_for(siren_r90=0.55, siren_ctl_r90=0.6)   # −0.05 in every cohort: beyond the interval
    assert versus_own_control(rows, "atoms/mass_radius90_rel_uniform_median", "mri", "siren", "below")[0]["holds"]
    # One cohort: no interval, no verdict.
    one = [r for r in rows_for() if r["cohort"] == 0]
    assert verdicts(one)[0] == "undecided (needs ≥ 2 cohorts)"


def test_paired_and_welch_intervals_are_the_textbook_ones():
    a, b = [1.0, 2.0, 4.0], [0.5, 1.0, 2.5]
    from scipy.stats import ttest_ind

    w = welch_interval(a, b)
    res = ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert w["mean"] == pytest.approx(np.mean(a) - np.mean(b)) and w["n"] == (3, 3)
    assert w["mean"] - w["ci"] == pytest.approx(ci.low) and w["mean"] + w["ci"] == pytest.approx(ci.high)
    assert math.isnan(welch_interval([1.0], [2.0, 3.0])["ci"])
    same = interval([x - y for x, y in zip(a, b)])
    assert same["mean"] == pytest.approx(1.0)


def test_content_independence_is_equal_within_the_interval_or_not():
    rows = rows_for("mri") + rows_for("natural")
    d = content_independence(rows, "atoms/mass_radius90_rel_uniform_median", "siren", ("mri", "natural"))
    assert [x["same"] for x in d] == [True, True] and d[0]["diff"]["mean"] == pytest.approx(0.0, abs=1e-12)
    rows = rows_for("mri") + rows_for("natural", shift=0.2)
    d = content_independence(rows, "atoms/mass_radius90_rel_uniform_median", "siren", ("mri", "natural"))
    assert [x["same"] for x in d] == [False, False] and d[1]["diff"]["mean"] == pytest.approx(-0.2)


def test_memorisation_is_own_minus_heldout_edge_alignment_beyond_the_own_control():
    assert [m["holds"] for m in memorisation(rows_for(), "mri", "ffmlp")] == [True, True]
    assert verdicts(rows_for(memorised=0.0))[4] == "fails"   # as aligned with unseen contours: nothing memorised
    assert [m["holds"] for m in memorisation(rows_for(), "mri", "ffmlp", "control")] == [False, False]   # centred on 0
    # The held-out images' edges differ from the cohort's by themselves: an untrained encoder shows the same
    # positive difference, so the trained one's is no memorisation.
    same = memorisation(rows_for(ctl_memorised=0.05), "mri", "ffmlp")
    assert [m["holds"] for m in same] == [False, False] and same[0]["diff"]["lower"] > 0
    assert same[0]["versus_control"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert verdicts(rows_for(ctl_memorised=0.05))[4] == "fails"
    # a difference beyond the interval but below the stated smallest effect (0.005 in |r|) is not memorisation
    tiny = memorisation(rows_for(memorised=0.003, ctl_memorised=0.0), "mri", "ffmlp")
    assert tiny[0]["versus_control"]["lower"] > 0 and [m["holds"] for m in tiny] == [False, False]
    # no control at a depth: undecided there
    alone = [r for r in rows_for() if not (r["backbone"] == "ffmlp" and r["kind"] == "control" and r["layer"] == 1)]
    assert [m["holds"] for m in memorisation(alone, "mri", "ffmlp")] == [True, None]


def test_psnr_comparisons_only_within_the_stated_gap():
    c = comparable({0: 32.0, 1: 32.4}, {0: 31.5, 1: 31.6})
    assert c["comparable"] and c["gap"] == pytest.approx(0.65)
    assert not comparable({0: 32.0}, {0: 21.4})["comparable"]
    d = versus_own_control(rows_for(ctl_psnr=21.4), "atoms/mass_radius90_rel_uniform_median", "mri", "ffmlp", "above")
    assert not d[0]["psnr"]["comparable"] and d[0]["psnr"]["b"] == pytest.approx(21.4)
    # SIREN and FFMLP INRs 10 dB apart: the ablation-locality claim is "not comparable", not a verdict.
    rows = [dict(r, **{"sae/inr_psnr": 22.0}) if r["backbone"] == "ffmlp" and r["kind"] == "depth" else r
            for r in rows_for()]
    assert verdicts(rows)[6] == "not comparable"
    assert all(not d["psnr"]["comparable"] for d in between_backbones(rows, "worst_r90", "mri", "below"))


def test_the_worst_atom_is_an_extreme_value_beside_its_distribution():
    w = worst_atom(rows_for(drop=12.0), "mri", "ffmlp")
    assert w["max"]["mean"] == pytest.approx(12.0) and w["q50"]["mean"] == pytest.approx(0.001)
    assert w["max"]["n"] == 3 and w["q99"]["mean"] == pytest.approx(3.0)
    assert verdicts(rows_for(drop=6.0))[5].startswith("smaller here")
    assert verdicts(rows_for(drop=10.7))[5].startswith("reached by the mean")   # 10.7 ± 0.25: not beyond 10.6


def test_dictionary_size_dependence_and_sae_gates():
    rows = rows_for()
    for c, e in enumerate(JITTER):
        for n, r90 in ((16, 0.1), (256, 0.4)):
            rows.append({"dataset": "mri", "cohort": c, "backbone": "siren", "layer": 1, "kind": "size",
                         "encoder": "cohort", "n_atoms": n, "run": f"s{n}c{c}",
                         "atoms/mass_radius90_rel_uniform_median": r90 + e})
    d = size_dependence(rows, "atoms/mass_radius90_rel_uniform_median", "mri", "siren")
    assert list(d) == [16, 64, 256] and [round(x["mean"], 6) for x in d.values()] == [0.1, 0.2, 0.4]
    g = [dict(r, **{"sae/fvu": 0.001, "sae/dead_fraction": 0.08, "sae/psnr_drop": 1.0,
                    "sae/fvu_heldout_over_train": 1.1}) for r in rows]
    gates = sae_gates(g, "mri", "siren", 1)
    assert gates["misses"] == ["FVU 0.00100 > 0.0004", "dead 8.0 % > 5 %"] and gates["target_fvu"] == 0.0004
    assert sae_gates(g, "mri", "ffmlp", 1)["misses"] == ["dead 8.0 % > 5 %"]   # no FVU target for FFMLP
