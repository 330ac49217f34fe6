"""Finding 1's statistics on crafted numbers whose right answer is known: intervals over cohorts, the cap,
non-inferiority, the best set, the gates and the frozen share."""

import math
import random

import pytest
from scipy.stats import t

from inr_lightning.study.verdicts import (
    CAP_DB,
    Runs,
    best_depths,
    candidates,
    cohort_gate,
    convergence_gate,
    frozen_share,
    gates,
    held,
    interval,
    paired,
    row_verdict,
    rule_layer,
    rule_verdict,
    steps_saved,
    transfer_gate,
)

NET = {"backbone": "siren", "width": 10, "shared_layers": 3, "num_frequencies": 4}


def summary(final, curve=None, profile=None, init=None, step=100):
    s = {"fit/psnr_final": list(final), "fit/final_step": step, "fit/net": NET,
         "fit/psnr_at_step": {str(k): list(v) for k, v in (curve or {80: final}).items()}}
    if profile is not None:
        s.update({"freeze/stable_rank": list(profile), "freeze/stable_rank_init": list(init or profile)})
    return s


def crafted(values: dict[str, list[list[float]]], profile=(2.0, 30.0, 20.0), init=(2.0, 60.0, 10.0)) -> Runs:
    """``values[label][cohort]`` = final PSNR per signal; the curve at step 80 equals the end (converged)."""
    runs = Runs()
    for label, by_cohort in values.items():
        for c, final in enumerate(by_cohort):
            runs.add(c, label, summary(final, profile=profile if label == "finetune" else None, init=init))
    return runs


def test_interval_gives_two_sided_and_one_sided_bounds():
    d = interval([1.0, 2.0, 4.0])
    sd = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    assert d["mean"] == pytest.approx(7 / 3) and d["n"] == 3
    assert d["ci"] == pytest.approx(t.ppf(0.975, 2) * sd / math.sqrt(3))
    assert d["lower"] == pytest.approx(7 / 3 - t.ppf(0.95, 2) * sd / math.sqrt(3))
    assert math.isnan(interval([5.0])["ci"]) and interval([])["n"] == 0


def simulate(rng, cohorts, signals, mu, sd_cohort, signal_effects, sd_noise):
    """One crossed data set: the same signals (fixed effects) under every cohort (random effect)."""
    runs = Runs()
    for c in range(cohorts):
        a = rng.gauss(0, sd_cohort)
        diff = [mu + a + b + rng.gauss(0, sd_noise) for b in signal_effects]
        runs.add(c, "finetune", summary([40.0] * signals, profile=[1.0, 2.0, 3.0]))
        runs.add(c, "freeze_0", summary([40.0 + d for d in diff]))
    return runs


def test_intervals_over_cohort_means_cover_the_truth_where_pooled_pairs_do_not():
    """Crossed design with a real cohort effect: the interval over cohort means covers the true mean
    difference ~95 % of the time; treating the 5 × 10 pairs as independent (df 49) covers far less."""
    rng = random.Random(0)
    signal_effects = [rng.gauss(0, 1.0) for _ in range(10)]
    mu = 1.0 + sum(signal_effects) / 10          # the estimand for this held-out set
    hits_cohort = hits_pooled = trials = 0
    for _ in range(600):
        runs = simulate(rng, 5, 10, 1.0, 1.0, signal_effects, 0.5)
        d = paired(runs, "freeze_0", "finetune")
        hits_cohort += abs(d["mean"] - mu) <= d["ci"]
        pooled = interval(runs.diff("freeze_0", "finetune"))
        hits_pooled += abs(pooled["mean"] - mu) <= pooled["ci"]
        trials += 1
    assert 0.92 <= hits_cohort / trials <= 0.98
    assert hits_pooled / trials < 0.6
    assert d["n"] == 5 and d["signals"] == 10 and d["pairs"] == 50


def test_the_cap_keeps_one_90_db_signal_from_deciding_a_mean():
    # signal 1 sits at 90+ dB under both protocols and jumps by 20 dB: capped, it contributes nothing
    runs = crafted({"finetune": [[40.0, 91.5], [41.0, 80.0]], "freeze_0": [[39.0, 111.5], [40.0, 100.0]]})
    d = paired(runs, "freeze_0", "finetune")
    assert d["mean"] == pytest.approx((-1 + 0) / 2) and CAP_DB == 60.0


def test_best_set_and_the_two_rows():
    # three cohorts, two signals; freeze_1 is top, freeze_0 is within noise of it, freeze_2 clearly worse
    runs = crafted({
        "finetune": [[40.0, 30.0], [41.0, 31.0], [40.5, 30.2]],
        "freeze_0": [[40.2, 30.1], [40.6, 31.4], [41.0, 30.6]],
        "freeze_1": [[40.6, 30.4], [41.3, 31.1], [40.4, 30.6]],
        "freeze_2": [[30.0, 20.0], [31.0, 21.0], [30.5, 20.5]],
    })
    best = best_depths(runs, "through")
    assert best["top"] == 1 and best["best"] == [0, 1]
    v = rule_verdict(runs, "through", "raw")              # srank argmax: layer 1 → freeze_1
    assert v["picks"] == {0: 1, 1: 1, 2: 1} and v["picks_best"] is True
    assert v["auto_minus_finetune"]["mean"] == pytest.approx(0.85 / 3) and v["noninferior"] is True
    assert v["superior"] is False                          # +0.28 dB is not significantly above 0
    relative = rule_verdict(runs, "through", "relative")  # 20 / 10 wins: layer 2 → freeze_2, 10 dB worse
    assert relative["picks"][0] == 2 and relative["picks_best"] is False and relative["noninferior"] is False
    below = rule_verdict(runs, "below", "raw")            # below: layer 1 means freeze_0
    assert below["picks"][0] == 1 and below["auto_minus_finetune"]["mean"] == pytest.approx(0.2)


def test_a_consistent_small_loss_fails_non_inferiority_and_a_rule_freezing_little_is_near_trivial():
    # auto loses 0.8 ± 0.1 dB on every pair: outside the 0.5 dB margin, a clear fail (not a tie)
    runs = crafted({
        "finetune": [[40.0, 30.0], [41.0, 31.0], [40.0, 30.0]],
        "freeze_0": [[39.2, 29.1], [40.1, 30.3], [39.3, 29.2]],
        "freeze_1": [[20.0, 20.0]] * 3, "freeze_2": [[20.0, 20.0]] * 3,
    }, profile=(30.0, 2.0, 1.0))
    v = rule_verdict(runs, "through", "raw")
    assert v["picks"][0] == 0 and v["noninferior"] is False
    # SIREN layer 0 holds 2·10 + 10 of the encoder's 30 + 110 + 110 parameters
    assert v["frozen_share"] == pytest.approx(30 / 250) and frozen_share(NET, 1) == pytest.approx(0.12)
    assert frozen_share({**NET, "width": 100}, 1) == pytest.approx(300 / (300 + 2 * 10100))
    assert row_verdict(False, None, False, 0.12) == "fails"
    assert row_verdict(True, None, True, 0.012).startswith("**holds**, near-trivial (freezes 1.2 %")
    assert row_verdict(True, "not converged at 100 steps", False, 0.5) == "not converged at 100 steps"


def test_a_hold_with_both_sides_at_the_cap_is_not_a_measurement_but_a_loss_at_the_cap_is():
    # every protocol reaches the cap except freeze_2: auto (freeze_1) = finetune = 60 dB by construction
    runs = crafted({"finetune": [[72.0, 65.0]] * 3, "freeze_0": [[70.0, 61.0]] * 3, "freeze_1": [[66.0, 80.0]] * 3,
                    "freeze_2": [[50.0, 40.0], [51.0, 41.0], [50.5, 40.5]]})
    v = rule_verdict(runs, "through", "raw")               # srank argmax: layer 1
    assert v["picks_best"] is True and v["noninferior"] is True           # the statistics alone would say "holds"
    assert v["auto_at_cap"] == 1.0 and v["picks_at_cap"] == 1.0
    assert not held(v, "noninferior") and not held(v, "picks_best")
    assert row_verdict(True, None, False, 0.3, v["auto_at_cap"]).startswith("at the cap (both sides reach 60 dB in 100 %")
    # half the pairs below the cap: a measurement again
    assert row_verdict(True, None, False, 0.3, 0.4) == "**holds**"
    # a fail with finetune at the cap stands: it could have come out the other way
    worse = crafted({"finetune": [[72.0, 65.0]] * 3, "freeze_0": [[70.0, 61.0]] * 3,
                     "freeze_1": [[50.0, 45.0], [51.0, 46.0], [50.5, 44.0]], "freeze_2": [[40.0, 40.0]] * 3})
    w = rule_verdict(worse, "through", "raw")
    assert w["noninferior"] is False and w["auto_at_cap"] == 0.0
    assert row_verdict(w["noninferior"], None, False, 0.3, w["auto_at_cap"]) == "fails"


def test_gates_converged_transfer_and_cohort():
    runs = Runs()
    for c in range(3):
        # finetune reaches 45 dB by step 40 and is flat from step 80 on; scratch reaches it at 80 and still climbs
        runs.add(c, "finetune", summary([50.0, 50.2], {40: [45.0, 45.5], 80: [49.9, 50.0]}, profile=[1, 2, 3]))
        runs.add(c, "scratch", summary([49.0 + 0.1 * c, 49.5], {40: [30.0, 31.0], 80: [45.2, 46.0]}))
    conv = convergence_gate(runs, "scratch")
    assert conv["from"] == 80 and conv["gain"]["mean"] == pytest.approx(3.7) and conv["passes"] is False
    assert convergence_gate(runs, "finetune")["passes"] is True
    steps = steps_saved(runs, 45.0)
    assert steps["mean"] == pytest.approx(40.0) and steps["faster_never"] == 0
    tr = transfer_gate(runs, 45.0)
    assert tr["by_budget"] and tr["by_steps"] and tr["passes"]
    never = steps_saved(runs, 50.1)        # finetune's signal 0 never gets there: the steps test is void
    assert never["faster_never"] == 3
    ok = cohort_gate({"siren": [44.0, 44.4], "ffmlp": [43.6, 43.9]})
    assert ok["passes"] and ok["gap"] == pytest.approx(0.45)
    assert not cohort_gate({"siren": [44.0], "ffmlp": [42.5]})["passes"]        # 1.5 dB apart
    assert not cohort_gate({"siren": [38.0], "ffmlp": [38.2]})["passes"]        # below 40 dB
    assert cohort_gate({"siren": [62.0, 75.0], "ffmlp": [59.4, 64.0]})["gap"] == pytest.approx(0.3)  # capped
    g = gates(runs, ok, 45.0)
    assert g["failed"] == "not converged at 100 steps"


def test_no_transfer_when_scratch_is_as_good():
    runs = crafted({"finetune": [[40.0, 30.0], [41.0, 31.0], [40.0, 30.5]],
                    "scratch": [[40.3, 30.1], [40.9, 31.2], [40.1, 30.4]]})
    tr = transfer_gate(runs, 35.0)
    assert not tr["by_budget"] and not tr["passes"]


def test_readings_and_rule_forms():
    assert candidates("through", 3) == [(0, "freeze_0"), (1, "freeze_1"), (2, "freeze_2")]
    assert candidates("below", 3) == [(0, "finetune"), (1, "freeze_0"), (2, "freeze_1")]
    profile, init = [90.0, 30.0, 20.0], [88.0, 60.0, 10.0]
    assert rule_layer(profile, init, "raw") == 0
    assert rule_layer(profile, init, "no_first") == 1
    assert rule_layer(profile, init, "relative") == 2
    assert rule_layer(profile, None, "relative") is None


def test_a_budget_is_the_same_fits_judged_at_an_earlier_recorded_step():
    runs = Runs()
    for c in range(2):
        runs.add(c, "finetune", summary([50.0, 51.0], {40: [45.0, 46.0], 80: [49.0, 50.0]}, profile=[1, 2, 3]))
        runs.add(c, "scratch", summary([49.0, 50.0], {40: [30.0, 31.0], 80: [44.0, 45.0]}))
    early = runs.truncated(80)
    assert early.final_step == 80 and early.steps == [40, 80, Runs.FINAL]
    assert early.psnr[1]["scratch"][Runs.FINAL] == [44.0, 45.0]
    assert convergence_gate(early, "scratch")["gain"]["mean"] == pytest.approx(14.0)   # 40 → 80
    assert runs.psnr[1]["scratch"][Runs.FINAL] == [49.0, 50.0]                        # the original is untouched
