"""Finding 1's statistics: pure functions of the runs' recorded PSNR, no I/O.

Design: C cohorts (cohort seed = cohort init + fit seed; the unit of replication) × S held-out signals, the
same S under every cohort (crossed).  A protocol difference is paired per (cohort, signal) on PSNR capped at
``CAP_DB``, averaged over the signals of each cohort, and its interval is a t-interval over the C cohort
means (df = C − 1): it generalises over cohorts for this held-out set.  Why each choice: ``docs/study.md``.

Finding 1 under a *reading* (through: freeze 0..j; below: 0..j−1) and a *form* of the rule is two rows:

- **rule picks a best depth**: every cohort's pick is in the best set — the candidates whose mean is not
  significantly below the top candidate's (one-sided 95 %);
- **auto matches or beats finetune**: non-inferiority, the one-sided 95 % lower bound of auto − finetune
  above −``MARGIN_DB``.

Both are judged only where the gates pass: cohorts fit, fits converged, transfer exists.  A row that holds
only because both of its sides sit at ``CAP_DB`` (in ≥ ``CEILING_SHARE`` of the pairs) reads "at the cap": equal
by construction, not measured.
"""

from __future__ import annotations

import math
from statistics import mean, stdev

READINGS = ("through", "below")
FORMS = ("raw", "relative", "no_first")
FORM_TEXT = {"raw": "raw argmax", "relative": "argmax of srank / srank at init", "no_first": "argmax without layer 0"}

CAP_DB = 60.0          # PSNR cap: RMS error < 0.1 % of the range, finer than 8-bit data (58.9 dB) can show
MARGIN_DB = 0.5        # non-inferiority margin of auto vs finetune
TRIVIAL_SHARE = 0.05   # a rule freezing less of the encoder than this is "near-trivial"
CONVERGED_DB = 0.5     # mean gain over the last 20 % of steps below this: converged
LAST_SHARE = 0.2
COHORT_LEVEL_DB = 40.0
COHORT_GAP_DB = 1.0
CEILING_SHARE = 0.5    # a hold with both sides at the cap in this share of (cohort, signal) pairs is the cap's


def capped(v: float, cap: float = CAP_DB) -> float:
    return min(v, cap)


def interval(values: list[float]) -> dict:
    """Mean, two-sided 95 % t half-width ``ci``, one-sided 95 % bounds ``lower``/``upper`` and n (NaN for n < 2)."""
    from scipy.stats import t

    vals = [v for v in values if v is not None and not math.isnan(v)]
    n = len(vals)
    if n == 0:
        return {"mean": math.nan, "ci": math.nan, "lower": math.nan, "upper": math.nan, "n": 0}
    m = mean(vals)
    if n < 2:
        return {"mean": m, "ci": math.nan, "lower": math.nan, "upper": math.nan, "n": 1}
    se = stdev(vals) / math.sqrt(n)
    one = t.ppf(0.95, n - 1) * se
    return {"mean": m, "ci": t.ppf(0.975, n - 1) * se, "lower": m - one, "upper": m + one, "n": n}


def candidates(reading: str, layers: int) -> list[tuple[int, str]]:
    """``(layer j, run label)`` for every choice of j under ``reading``."""
    if reading == "through":
        return [(j, f"freeze_{j}") for j in range(layers)]
    return [(j, "finetune" if j == 0 else f"freeze_{j - 1}") for j in range(layers)]


def frozen_layers(reading: str, j: int) -> int:
    """How many encoder layers (0..n−1) freezing "at layer j" freezes under ``reading``."""
    return j + 1 if reading == "through" else j


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


def layer_parameters(net: dict) -> list[int]:
    """Parameters (weight + bias) of each encoder layer of an ``INRConfig`` dict."""
    width, layers = int(net["width"]), int(net["shared_layers"])
    first_in = 2 if net["backbone"] == "siren" else 2 * int(net["num_frequencies"])
    return [(first_in if j == 0 else width) * width + width for j in range(layers)]


def frozen_share(net: dict, n_frozen: int) -> float:
    """Share of the encoder's parameters in its first ``n_frozen`` layers."""
    sizes = layer_parameters(net)
    return sum(sizes[:n_frozen]) / sum(sizes)


class Runs:
    """The recorded PSNR of one sweep: ``psnr[cohort][label][step] = [per signal]`` (``FINAL`` for the end),
    each cohort's stable-rank profile (trained and at init), the encoder's architecture and the last step."""

    FINAL = -1

    def __init__(self) -> None:
        self.psnr: dict[int, dict[str, dict[int, list[float]]]] = {}
        self.profile: dict[int, list[float]] = {}
        self.init_profile: dict[int, list[float] | None] = {}
        self.net: dict | None = None
        self.final_step: int | None = None

    def add(self, cohort: int, label: str, summary: dict) -> None:
        curve = {int(s): list(v) for s, v in summary["fit/psnr_at_step"].items()}
        curve[self.FINAL] = list(summary["fit/psnr_final"])
        self.psnr.setdefault(cohort, {})[label] = curve
        self.net = summary.get("fit/net", self.net)
        self.final_step = summary.get("fit/final_step", self.final_step)
        if label == "finetune":
            self.profile[cohort] = list(summary["freeze/stable_rank"])
            self.init_profile[cohort] = summary.get("freeze/stable_rank_init")

    @property
    def cohorts(self) -> list[int]:
        return sorted(self.psnr)

    seeds = cohorts  # the study's cohort seed is also its fit seed

    @property
    def labels(self) -> list[str]:
        return list(self.psnr[self.cohorts[0]])

    @property
    def steps(self) -> list[int]:
        return sorted(s for s in self.psnr[self.cohorts[0]]["finetune"] if s != self.FINAL) + [self.FINAL]

    @property
    def layers(self) -> int:
        return len(self.profile[self.cohorts[0]])

    def truncated(self, budget: int) -> Runs:
        """The same fits judged at ``budget`` steps (a recorded step): with a constant learning rate a fit's
        first ``budget`` steps are a fit of that budget."""
        out = Runs()
        out.profile, out.init_profile, out.net, out.final_step = self.profile, self.init_profile, self.net, budget
        for c, labels in self.psnr.items():
            out.psnr[c] = {label: {**{s: v for s, v in curve.items() if 0 <= s <= budget}, self.FINAL: curve[budget]}
                           for label, curve in labels.items()}
        return out

    def values(self, label: str, step: int = FINAL) -> list[float]:
        """Every (cohort, signal) value of one protocol at one step, uncapped, in a fixed order."""
        return [v for c in self.cohorts for v in self.psnr[c][label][step]]

    def diff(self, a: str, b: str, step: int = FINAL) -> list[float]:
        return [x - y for x, y in zip(self.values(a, step), self.values(b, step))]


def cohort_means(per_cohort: dict[int, list[float]]) -> list[float]:
    return [mean(v) for _, v in sorted(per_cohort.items()) if v]


def paired(runs: Runs, a: str | dict[int, str], b: str, step: int = Runs.FINAL) -> dict:
    """Capped ``a − b`` per (cohort, signal), as an interval over cohort means; ``a`` may name one label per
    cohort (the rule's pick).  Adds ``signals`` (per cohort) and ``positive`` / ``pairs`` counts."""
    per = {}
    for c in runs.cohorts:
        la = a[c] if isinstance(a, dict) else a
        per[c] = [capped(x) - capped(y) for x, y in zip(runs.psnr[c][la][step], runs.psnr[c][b][step])]
    flat = [d for v in per.values() for d in v]
    return {**interval(cohort_means(per)), "signals": len(per[runs.cohorts[0]]),
            "positive": sum(d > 0 for d in flat), "pairs": len(flat)}


def at_cap(runs: Runs, a: str | dict[int, str], b: str, step: int = Runs.FINAL) -> float:
    """The share of (cohort, signal) pairs in which both ``a`` (one label per cohort allowed) and ``b`` reach
    ``CAP_DB``: where it is high, their capped difference is 0 by construction."""
    both = [capped(x) >= CAP_DB and capped(y) >= CAP_DB for c in runs.cohorts
            for x, y in zip(runs.psnr[c][a[c] if isinstance(a, dict) else a][step], runs.psnr[c][b][step])]
    return sum(both) / len(both) if both else 0.0


def protocol_mean(runs: Runs, label: str, step: int = Runs.FINAL) -> dict:
    """Capped PSNR of one protocol, as an interval over cohort means."""
    return interval(cohort_means({c: [capped(v) for v in runs.psnr[c][label][step]] for c in runs.cohorts}))


# -- gates -------------------------------------------------------------------------------------------------
def cohort_gate(psnr: dict[str, list[float]], level: float = COHORT_LEVEL_DB, gap: float = COHORT_GAP_DB) -> dict:
    """``psnr[backbone]`` = cohort PSNR of each cohort seed.  Passes when every backbone's mean (of PSNR capped at
    ``CAP_DB``, like every fit) ≥ ``level`` and the backbones' means lie within ``gap`` dB."""
    means = {b: mean(capped(x) for x in v) for b, v in psnr.items() if v}
    spread = max(means.values()) - min(means.values()) if means else math.nan
    return {"means": means, "gap": spread, "level": level, "max_gap": gap,
            "passes": bool(means) and all(m >= level for m in means.values()) and bool(spread <= gap)}


def step_before_end(runs: Runs, share: float = LAST_SHARE) -> int | None:
    """The recorded step closest to ``(1 − share)`` of the fit (None: nothing recorded before the end)."""
    end = runs.final_step or max(s for s in runs.steps if s != Runs.FINAL)
    earlier = [s for s in runs.steps if s != Runs.FINAL and s < end]
    return min(earlier, key=lambda s: abs(s - (1 - share) * end)) if earlier else None


def convergence_gate(runs: Runs, label: str, threshold: float = CONVERGED_DB) -> dict:
    """Mean capped gain of ``label`` over the last 20 % of its steps; passes below ``threshold`` dB."""
    start = step_before_end(runs)
    if start is None:
        return {"label": label, "from": None, "gain": interval([]), "passes": False}
    per = {c: [capped(e) - capped(s) for e, s in zip(runs.psnr[c][label][Runs.FINAL], runs.psnr[c][label][start])]
           for c in runs.cohorts}
    gain = interval(cohort_means(per))
    return {"label": label, "from": start, "to": runs.final_step, "gain": gain, "passes": bool(gain["mean"] < threshold)}


def steps_to(curve: dict[int, float], level: float) -> int | None:
    """The first recorded step at which PSNR ≥ ``level`` (None: never)."""
    for step in sorted(s for s in curve if s != Runs.FINAL):
        if curve[step] >= level:
            return step
    return None


def steps_saved(runs: Runs, level: float, faster: str = "finetune", slower: str = "scratch") -> dict:
    """Steps ``slower`` needs to reach ``level`` minus the steps ``faster`` needs, per (cohort, signal), as an
    interval over cohort means.  A run that never reaches it counts as ``final_step + 1``; ``faster`` failing
    to reach it anywhere is reported (``faster_never``) and voids the test (the bound would favour it)."""
    end = (runs.final_step or max(runs.steps)) + 1

    def steps(curves: dict[int, list[float]], i: int) -> int | None:   # the final value counts at the last step
        return steps_to({(end - 1 if s == Runs.FINAL else s): v[i] for s, v in curves.items()}, level)

    per, never = {}, 0
    for c in runs.cohorts:
        fa, sl = runs.psnr[c][faster], runs.psnr[c][slower]
        per[c] = []
        for i in range(len(fa[Runs.FINAL])):
            f, s = steps(fa, i), steps(sl, i)
            never += f is None
            per[c].append((end if s is None else s) - (end if f is None else f))
    return {**interval(cohort_means(per)), "level": level, "faster_never": never}


def transfer_gate(runs: Runs, level: float) -> dict:
    """Transfer exists when finetune beats scratch, one-sided 95 % over cohorts, at the budget (capped final
    PSNR) or in the steps to ``level`` dB."""
    budget = paired(runs, "finetune", "scratch")
    steps = steps_saved(runs, level)
    by_budget = bool(budget["lower"] > 0)
    by_steps = bool(steps["lower"] > 0 and steps["faster_never"] == 0)
    return {"budget": budget, "steps": steps, "by_budget": by_budget, "by_steps": by_steps,
            "passes": bool(by_budget or by_steps)}


def gates(runs: Runs, cohort: dict, level: float) -> dict:
    """Every gate of one sweep; ``failed`` names the first one that fails (None: all pass)."""
    conv = {label: convergence_gate(runs, label) for label in ("finetune", "scratch")}
    transfer = transfer_gate(runs, level)
    failed = None
    if not cohort["passes"]:
        failed = "untestable: the cohorts do not fit comparably"
    elif not all(g["passes"] for g in conv.values()):
        failed = f"not converged at {runs.final_step} steps"
    elif not transfer["passes"]:
        failed = "untestable: the cohort does not transfer here"
    return {"cohort": cohort, "convergence": conv, "transfer": transfer, "failed": failed}


# -- finding 1 -------------------------------------------------------------------------------------------
def best_depths(runs: Runs, reading: str, step: int = Runs.FINAL) -> dict:
    """The top candidate (highest mean capped PSNR over cohort means) and the best set: every candidate
    not significantly below it (one-sided 95 % lower bound of top − candidate ≤ 0)."""
    cands = candidates(reading, runs.layers)
    means = {j: protocol_mean(runs, label, step)["mean"] for j, label in cands}
    top = max(means, key=means.__getitem__)
    label = dict(cands)
    worse = {j: paired(runs, label[top], label[j], step) for j in means if j != top}
    best = sorted([top] + [j for j, d in worse.items() if not d["lower"] > 0])
    return {"top": top, "best": best, "means": means, "top_minus": worse}


def rule_verdict(runs: Runs, reading: str, form: str, margin: float = MARGIN_DB) -> dict:
    """Finding 1 under one reading and form: the two rows of the module docstring, with the share of the
    encoder the rule freezes."""
    picks = {c: rule_layer(runs.profile[c], runs.init_profile.get(c), form) for c in runs.cohorts}
    if any(p is None for p in picks.values()):
        return {"reading": reading, "form": form, "available": False}
    label = dict(candidates(reading, runs.layers))
    best = best_depths(runs, reading)
    auto_labels = {c: label[p] for c, p in picks.items()}
    auto = paired(runs, auto_labels, "finetune")
    shares = [frozen_share(runs.net, frozen_layers(reading, p)) for p in picks.values()] if runs.net else []
    share = max(shares) if shares else math.nan
    by_step = {s: paired(runs, auto_labels, "finetune", s) for s in runs.steps}
    enough = len(runs.cohorts) >= 2
    return {
        "reading": reading, "form": form, "available": True, "picks": picks, **best,
        "picks_best": all(p in best["best"] for p in picks.values()) if enough else None,
        "auto_minus_finetune": auto, "auto_minus_finetune_by_step": by_step, "margin": margin,
        "noninferior": bool(auto["lower"] > -margin) if enough else None,
        "superior": bool(auto["lower"] > 0) if enough else None,
        "picks_at_cap": at_cap(runs, {c: label[p] for c, p in picks.items()}, label[best["top"]]),
        "auto_at_cap": at_cap(runs, auto_labels, "finetune"),
        "frozen_share": share, "near_trivial": bool(share < TRIVIAL_SHARE),
        "freezes_nothing": all(frozen_layers(reading, p) == 0 for p in picks.values()),
    }


def row_verdict(holds: bool | None, gate_failed: str | None, near_trivial: bool, share: float,
                at_cap_share: float = 0.0) -> str:
    """The words of one verdict cell; a hold with both sides at the cap in ≥ ``CEILING_SHARE`` of the pairs
    reads "at the cap" (a fail stands: it could have come out the other way)."""
    if gate_failed:
        return gate_failed
    if holds is None:
        return "undecided (needs ≥ 2 cohorts)"
    word = "**holds**" if holds else "fails"
    if holds and at_cap_share >= CEILING_SHARE:
        word = f"at the cap (both sides reach {CAP_DB:.0f} dB in {100 * at_cap_share:.0f} % of pairs: not measured)"
    if near_trivial:
        word += f", near-trivial (freezes {100 * share:.1f} % of the encoder)"
    return word


AT_CAP = {"picks_best": "picks_at_cap", "noninferior": "auto_at_cap"}  # a row of ``rule_verdict`` → its cap share


def row_words(v: dict, key: str, gate_failed: str | None = None) -> str:
    """``row_verdict`` of one row (``picks_best`` or ``noninferior``) of a ``rule_verdict``."""
    return row_verdict(v[key], gate_failed, v["near_trivial"], v["frozen_share"], v[AT_CAP[key]])


def held(v: dict, key: str) -> bool:
    """A row of ``rule_verdict`` that holds by measurement (not by the cap): ``picks_best`` or ``noninferior``."""
    return bool(v[key]) and v[AT_CAP[key]] < CEILING_SHARE


def control_differences(runs: Runs, prefix_a: str, prefix_b: str) -> dict[int, dict]:
    """Capped paired final-PSNR difference ``{prefix_a}{k} − {prefix_b}{k}`` per depth k where both ran."""
    return {k: paired(runs, f"{prefix_a}{k}", f"{prefix_b}{k}") for k in range(runs.layers)
            if f"{prefix_a}{k}" in runs.labels and f"{prefix_b}{k}" in runs.labels}


def spearman_depth(runs: Runs) -> float:
    """Spearman correlation across depths between the stable rank and the mean capped final PSNR of freeze_k."""
    from scipy.stats import spearmanr

    profile = [mean(runs.profile[c][k] for c in runs.cohorts) for k in range(runs.layers)]
    psnr = [protocol_mean(runs, f"freeze_{k}")["mean"] for k in range(runs.layers)]
    if len(set(profile)) < 2 or len(set(psnr)) < 2:
        return math.nan
    return float(spearmanr(profile, psnr).statistic)


def welch_interval(a: list[float], b: list[float]) -> dict:
    """Mean of ``a`` − mean of ``b`` for two independent groups of cohort values (e.g. cohorts trained on two
    datasets), with a Welch t interval like ``interval``'s: two-sided 95 % half-width ``ci``, one-sided 95 %
    ``lower``/``upper``, ``n`` = (len a, len b); NaN bounds when either group has < 2 values."""
    from scipy.stats import t

    a = [v for v in a if v is not None and not math.isnan(v)]
    b = [v for v in b if v is not None and not math.isnan(v)]
    n = (len(a), len(b))
    if not a or not b:
        return {"mean": math.nan, "ci": math.nan, "lower": math.nan, "upper": math.nan, "n": n}
    diff = mean(a) - mean(b)
    if min(n) < 2:
        return {"mean": diff, "ci": math.nan, "lower": math.nan, "upper": math.nan, "n": n}
    va, vb = stdev(a) ** 2 / n[0], stdev(b) ** 2 / n[1]
    se = math.sqrt(va + vb)
    if se == 0:
        return {"mean": diff, "ci": 0.0, "lower": diff, "upper": diff, "n": n}
    df = (va + vb) ** 2 / (va ** 2 / (n[0] - 1) + vb ** 2 / (n[1] - 1))
    one = t.ppf(0.95, df) * se
    return {"mean": diff, "ci": t.ppf(0.975, df) * se, "lower": diff - one, "upper": diff + one, "n": n}
