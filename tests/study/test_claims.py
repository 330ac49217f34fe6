"""Finding 2's claim-by-claim verdicts on crafted SAE rows."""

from inr_lightning.study.claims import judge


def row(backbone, layer, kind="depth", **values):
    base = {"backbone": backbone, "layer": layer, "seed": 0, "encoder": "untrained" if kind == "control" else "cohort",
            "kind": kind, "run": f"{backbone}/{kind}{layer}"}
    return {**base, **values}


def study_rows(ffmlp_r90=0.4, control_r90=0.2, ffmlp_drop=12.0, siren_tiling_low=1.1):
    rows = []
    for j in (0, 1):
        rows.append(row("siren", j, **{"atoms/mass_radius90_median": 0.05, "atoms/tiling_ratio": 1.2,
                                       "atoms/tiling_ratio_random_range95": [siren_tiling_low, 1.3],
                                       "atoms/content_alignment_median": 0.10, "ablation/max_drop_db": 2.0,
                                       "worst_r90": 0.04}))
        rows.append(row("siren", j, "control", **{"atoms/content_alignment_median": 0.09,
                                                  "atoms/content_alignment_median_ci95": [0.07, 0.12]}))
        rows.append(row("ffmlp", j, **{"atoms/mass_radius90_median": ffmlp_r90, "atoms/align_edges_median": 0.5,
                                       "ablation/max_drop_db": ffmlp_drop if j else 3.0, "worst_r90": 0.5}))
        rows.append(row("ffmlp", j, "control", **{"atoms/mass_radius90_median": control_r90,
                                                  "atoms/mass_radius90_median_ci95": [control_r90 - 0.02,
                                                                                      control_r90 + 0.02],
                                                  "atoms/align_edges_median": 0.1,
                                                  "atoms/align_edges_median_ci95": [0.08, 0.12],
                                                  "ablation/max_drop_db": 0.3}))
    return rows


# Each claim by a phrase of its text (never by its position in the list).
CLAIMS = {"localized": "SIREN atoms are localized", "tiling": "tile the plane", "content": "independent of content",
          "span": "FFMLP atoms span", "contours": "memorized contours", "worst_atom": "FFMLP atom can cost",
          "local_ablation": "ablations stay local"}


def by_name(rows) -> dict[str, dict]:
    claims = judge(rows)
    named = {name: [c for c in claims if phrase in c["claim"]] for name, phrase in CLAIMS.items()}
    assert all(len(found) == 1 for found in named.values()) and len(claims) == len(CLAIMS), claims
    return {name: found[0] for name, found in named.items()}


def verdicts(rows) -> dict[str, str]:
    return {name: claim["verdict"] for name, claim in by_name(rows).items()}


def test_every_claim_holds_on_rows_that_show_it():
    claims = by_name(study_rows())
    assert all(c["verdict"] == "**holds**" for c in claims.values()), claims
    assert "12.00 dB" in claims["worst_atom"]["numbers"] and "L0 0.05" in claims["localized"]["numbers"]


def test_breadth_that_an_untrained_encoder_has_too_is_not_learned():
    v = verdicts(study_rows(control_r90=0.45))
    assert v["localized"] == "**holds**" and v["span"] == "fails"   # broader than SIREN, not than its own control


def test_a_smaller_worst_atom_and_random_placement_are_reported_as_such():
    v = verdicts(study_rows(ffmlp_drop=6.0, siren_tiling_low=0.9))
    assert v["worst_atom"].startswith("smaller here") and v["tiling"] == "fails"
    assert verdicts(study_rows(ffmlp_drop=2.0))["worst_atom"] == "fails"


def test_missing_runs_say_no_data():
    rows = [r for r in study_rows() if r["kind"] != "control"]
    v = verdicts(rows)
    assert v["content"] == v["span"] == v["contours"] == "no data"
