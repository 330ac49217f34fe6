"""The statistics behind the study's verdicts: pure functions of the runs' recorded PSNR, no I/O.

Finding 1 says: the best number of frozen encoder layers is the layer of highest stable rank, and freezing
there matches or beats fine-tuning everything.  "Freeze at layer j" has two readings — *through* (layers
0..j frozen) and *below* (0..j−1; j = 0 freezes nothing) — and each reading has its own candidates:

- through: ``freeze_0 … freeze_{L−1}``;
- below:   ``finetune`` (nothing frozen), ``freeze_0 … freeze_{L−2}``.

The rule picks a layer in one of three forms (``FORMS``); ``auto`` is the candidate it names.  Differences
between protocols are paired — same signal, same seed — and summarised as a mean with a 95 % t-interval.
"auto holds" means auto ≥ finetune − δ for *every* signal and seed, δ being the seed-to-seed spread of
finetune itself (the smallest difference the study can tell from noise); it needs ≥ 2 seeds.
"""

from __future__ import annotations

import math
from statistics import mean, stdev

READINGS = ("through", "below")
FORMS = ("raw", "relative", "no_first")
FORM_TEXT = {"raw": "raw argmax", "relative": "argmax of srank / srank at init", "no_first": "argmax without layer 0"}


def interval(values: list[float]) -> dict:
    """Mean, 95 % t-interval half-width and n (half-width NaN for n < 2)."""
    from scipy.stats import t

    vals = [v for v in values if v is not None and not math.isnan(v)]
    n = len(vals)
    if n == 0:
        return {"mean": math.nan, "ci": math.nan, "n": 0}
    half = t.ppf(0.975, n - 1) * stdev(vals) / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean(vals), "ci": half, "n": n}


def candidates(reading: str, layers: int) -> list[tuple[int, str]]:
    """``(layer j, run label)`` for every choice of j under ``reading``."""
    if reading == "through":
        return [(j, f"freeze_{j}") for j in range(layers)]
    return [(j, "finetune" if j == 0 else f"freeze_{j - 1}") for j in range(layers)]


def rule_layer(profile: list[float], init_profile: list[float] | None, form: str) -> int | None:
    """The layer the stable-rank rule picks in ``form`` (None when the form cannot be computed)."""
    if form == "relative":
        if not init_profile:
            return None
        scores = [p / i for p, i in zip(profile, init_profile)]
    else:
        scores = list(profile)
    first = 1 if form == "no_first" and len(scores) > 1 else 0
    return first + max(range(len(scores) - first), key=lambda i: scores[first + i])


def steps_to(curve: dict[int, float], level: float) -> int | None:
    """The first recorded step at which PSNR ≥ ``level`` (None: never)."""
    for step in sorted(curve):
        if curve[step] >= level:
            return step
    return None


class Runs:
    """The recorded PSNR of one sweep: ``psnr[seed][label][step] = [per signal]`` (``step`` ints; the final
    value under ``FINAL``), plus each seed's stable-rank profile (trained and at init)."""

    FINAL = -1

    def __init__(self) -> None:
        self.psnr: dict[int, dict[str, dict[int, list[float]]]] = {}
        self.profile: dict[int, list[float]] = {}
        self.init_profile: dict[int, list[float] | None] = {}

    def add(self, seed: int, label: str, summary: dict) -> None:
        curve = {int(s): list(v) for s, v in summary["fit/psnr_at_step"].items()}
        curve[self.FINAL] = list(summary["fit/psnr_final"])
        self.psnr.setdefault(seed, {})[label] = curve
        if label == "finetune":
            self.profile[seed] = list(summary["freeze/stable_rank"])
            self.init_profile[seed] = summary.get("freeze/stable_rank_init")

    @property
    def seeds(self) -> list[int]:
        return sorted(self.psnr)

    @property
    def labels(self) -> list[str]:
        return list(self.psnr[self.seeds[0]])

    @property
    def steps(self) -> list[int]:
        return sorted(s for s in self.psnr[self.seeds[0]]["finetune"] if s != self.FINAL) + [self.FINAL]

    @property
    def layers(self) -> int:
        return len(self.profile[self.seeds[0]])

    def values(self, label: str, step: int = FINAL) -> list[float]:
        """Every (seed, signal) value of one protocol at one step, in a fixed order (pairs across labels)."""
        return [v for seed in self.seeds for v in self.psnr[seed][label][step]]

    def diff(self, a: str, b: str, step: int = FINAL) -> list[float]:
        return [x - y for x, y in zip(self.values(a, step), self.values(b, step))]


def delta(runs: Runs) -> float:
    """δ: the pooled seed-to-seed standard deviation of finetune's final PSNR per signal (NaN with one seed)."""
    if len(runs.seeds) < 2:
        return math.nan
    per_signal = list(zip(*(runs.psnr[s]["finetune"][Runs.FINAL] for s in runs.seeds)))
    return math.sqrt(mean(stdev(v) ** 2 for v in per_signal))


def reading_verdict(runs: Runs, reading: str, form: str) -> dict:
    """Finding 1 under one reading and one form of the rule (see the module docstring)."""
    layers = runs.layers
    cands = candidates(reading, layers)
    finals = {label: runs.values(label) for _, label in cands}
    n = len(finals[cands[0][1]])
    best_per_pair = [max(cands, key=lambda c: finals[c[1]][i])[0] for i in range(n)]
    best_overall = max(cands, key=lambda c: mean(finals[c[1]]))[0]
    picks = {s: rule_layer(runs.profile[s], runs.init_profile.get(s), form) for s in runs.seeds}
    if any(p is None for p in picks.values()):
        return {"reading": reading, "form": form, "available": False}
    label_of = dict(cands)
    seed_of = [s for s in runs.seeds for _ in runs.psnr[s]["finetune"][Runs.FINAL]]  # (seed, signal) order

    def auto_values(step: int) -> list[float]:  # per (seed, signal): the candidate its seed's rule picks
        return [v for s in runs.seeds for v in runs.psnr[s][label_of[picks[s]]][step]]

    diffs = [a - f for a, f in zip(auto_values(Runs.FINAL), runs.values("finetune"))]
    d = delta(runs)
    wins = None if math.isnan(d) else sum(x > d for x in diffs)
    losses = None if math.isnan(d) else sum(x < -d for x in diffs)
    by_step = {step: interval([a - f for a, f in zip(auto_values(step), runs.values("finetune", step))])
               for step in runs.steps}
    holds_auto = None if math.isnan(d) else losses == 0
    picks_best = all(p == best_overall for p in picks.values())
    freezes_nothing = all(label_of[p] == "finetune" for p in picks.values())
    return {
        "reading": reading, "form": form, "available": True, "picks": picks, "best_overall": best_overall,
        "best_per_pair": best_per_pair,
        "pick_is_best_share": mean(b == picks[s] for b, s in zip(best_per_pair, seed_of)),
        "auto_minus_finetune": interval(diffs), "auto_minus_finetune_by_step": by_step, "delta": d,
        "wins": wins, "ties": None if wins is None else n - wins - losses, "losses": losses, "n": n,
        "worst": min(diffs), "holds_auto_ge_finetune": holds_auto, "pick_is_best": picks_best,
        "holds": None if holds_auto is None else (holds_auto and picks_best),
        "freezes_nothing": freezes_nothing,   # auto is finetune itself: a "hold" then says nothing about freezing
    }


def control_differences(runs: Runs, prefix_a: str, prefix_b: str) -> dict[int, dict]:
    """Paired final-PSNR difference ``{prefix_a}{k} − {prefix_b}{k}`` per depth k where both ran."""
    out = {}
    for k in range(runs.layers):
        a, b = f"{prefix_a}{k}", f"{prefix_b}{k}"
        if a in runs.labels and b in runs.labels:
            out[k] = interval(runs.diff(a, b))
    return out


def steps_to_levels(runs: Runs, label: str, levels: tuple[float, ...]) -> dict[float, dict]:
    """Per level: the steps each (seed, signal) needs to reach it, as an interval over those that did, and how
    many never did within the run."""
    out = {}
    for level in levels:
        reached, never = [], 0
        for seed in runs.seeds:
            curves = runs.psnr[seed][label]
            recorded = [s for s in curves if s != Runs.FINAL]
            for i in range(len(curves[Runs.FINAL])):
                step = steps_to({s: curves[s][i] for s in recorded}, level)
                if step is None:
                    never += 1
                else:
                    reached.append(float(step))
        out[level] = {**interval(reached), "never": never}
    return out


def spearman_depth(runs: Runs) -> float:
    """Spearman correlation across depths between the stable rank and the mean final PSNR of freeze_k."""
    from scipy.stats import spearmanr

    profile = [mean(runs.profile[s][k] for s in runs.seeds) for k in range(runs.layers)]
    psnr = [mean(runs.values(f"freeze_{k}")) for k in range(runs.layers)]
    if len(set(profile)) < 2 or len(set(psnr)) < 2:
        return math.nan
    return float(spearmanr(profile, psnr).statistic)
