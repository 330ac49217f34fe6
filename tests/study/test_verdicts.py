"""The study's statistics on crafted numbers: readings, rule forms, δ, paired intervals, steps to a level."""

import math

import pytest
from scipy.stats import t

from inr_lightning.study.verdicts import (
    Runs,
    candidates,
    control_differences,
    delta,
    interval,
    reading_verdict,
    rule_layer,
    steps_to_levels,
)


def summary(final, at=None, profile=None, init=None):
    s = {"fit/psnr_final": final, "fit/psnr_at_step": at or {"10": [v - 5 for v in final]}}
    if profile is not None:
        s.update({"freeze/stable_rank": profile, "freeze/stable_rank_init": init})
    return s


def crafted(finetune_by_seed, freeze_by_seed, profile=(2.0, 30.0, 20.0), init=(2.0, 60.0, 10.0)):
    """Two signals per seed; ``freeze_by_seed[seed][k]`` the two final PSNRs of freeze_k."""
    runs = Runs()
    for seed, ft in enumerate(finetune_by_seed):
        runs.add(seed, "finetune", summary(ft, profile=list(profile), init=list(init)))
        for k, values in enumerate(freeze_by_seed[seed]):
            runs.add(seed, f"freeze_{k}", summary(values))
    return runs


def test_interval_is_a_t_interval():
    d = interval([1.0, 2.0, 4.0])
    sd = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    assert d["mean"] == pytest.approx(7 / 3) and d["n"] == 3
    assert d["ci"] == pytest.approx(t.ppf(0.975, 2) * sd / math.sqrt(3))
    assert math.isnan(interval([5.0])["ci"]) and interval([])["n"] == 0


def test_each_reading_has_its_own_candidates():
    assert candidates("through", 3) == [(0, "freeze_0"), (1, "freeze_1"), (2, "freeze_2")]
    assert candidates("below", 3) == [(0, "finetune"), (1, "freeze_0"), (2, "freeze_1")]


def test_rule_forms():
    profile, init = [90.0, 30.0, 20.0], [88.0, 60.0, 10.0]
    assert rule_layer(profile, init, "raw") == 0          # decided by shape: layer 0
    assert rule_layer(profile, init, "no_first") == 1
    assert rule_layer(profile, init, "relative") == 2     # 20 / 10 is the largest growth over init
    assert rule_layer(profile, None, "relative") is None


def test_delta_is_finetunes_pooled_seed_spread_and_decides_wins_ties_losses():
    # finetune: signal 0 at 40 / 42, signal 1 at 30 / 30 → per-signal SDs √2 and 0 → δ = 1
    runs = crafted([[40.0, 30.0], [42.0, 30.0]],
                   [[[39.5, 31.5], [38.0, 33.0], [10.0, 10.0]],
                    [[41.0, 30.5], [44.0, 28.5], [10.0, 10.0]]])
    assert delta(runs) == pytest.approx(1.0)
    v = reading_verdict(runs, "through", "raw")   # argmax = layer 1 → freeze_1
    assert v["picks"] == {0: 1, 1: 1}
    diffs = [38.0 - 40.0, 33.0 - 30.0, 44.0 - 42.0, 28.5 - 30.0]
    assert v["auto_minus_finetune"]["mean"] == pytest.approx(sum(diffs) / 4) and v["n"] == 4
    assert (v["wins"], v["ties"], v["losses"]) == (2, 0, 2)   # +3, +2 win; −2, −1.5 lose (|x| > δ = 1)
    assert v["holds_auto_ge_finetune"] is False and v["holds"] is False
    # the rule names the best layer (freeze_1: mean 35.875 vs 35.625), yet auto loses to finetune on two pairs
    assert v["best_overall"] == 1 and v["pick_is_best"] is True
    assert v["best_per_pair"] == [0, 1, 1, 0] and v["pick_is_best_share"] == 0.5


def test_below_counts_finetune_as_a_candidate_and_holds_only_without_losses():
    # Every freeze loses to finetune by far: under *below*, the argmax layer 0 means "freeze nothing".
    runs = crafted([[40.0, 30.0], [40.5, 30.5]],
                   [[[20.0, 20.0], [21.0, 21.0], [22.0, 22.0]], [[20.0, 20.0], [21.0, 21.0], [22.0, 22.0]]],
                   profile=(90.0, 30.0, 20.0))
    below = reading_verdict(runs, "below", "raw")
    assert below["picks"] == {0: 0, 1: 0} and below["best_overall"] == 0
    assert below["auto_minus_finetune"]["mean"] == 0 and below["losses"] == 0 and below["holds"] is True
    assert below["freezes_nothing"] is True   # …which says nothing about freezing: the report flags it
    through = reading_verdict(runs, "through", "raw")
    assert through["holds"] is False and through["losses"] == 4
    one_seed = crafted([[40.0, 30.0]], [[[20.0, 20.0], [21.0, 21.0], [22.0, 22.0]]])
    assert reading_verdict(one_seed, "below", "raw")["holds"] is None   # δ needs two seeds


def test_paired_control_differences_and_steps_to_level():
    runs = Runs()
    for seed in (0, 1):
        runs.add(seed, "finetune", summary([30.0, 30.0], profile=[1.0, 2.0], init=[1.0, 1.0]))
        runs.add(seed, "freeze_0", summary([35.0, 31.0], {"10": [29.0, 20.0], "20": [35.0, 31.0]}))
        runs.add(seed, "random_0", summary([33.0, 30.0]))
    transfer = control_differences(runs, "freeze_", "random_")
    assert list(transfer) == [0] and transfer[0]["mean"] == pytest.approx(1.5) and transfer[0]["n"] == 4
    to = steps_to_levels(runs, "freeze_0", (30.0,))[30.0]
    assert to["mean"] == pytest.approx(20.0) and to["never"] == 0 and to["n"] == 4
