"""Finding 2, claim by claim, from the SAE runs' summaries: pure functions of the rows, no I/O.

The study claims four things about SAE atoms on cohort INR activations; each is judged here by the number that
decides it (definitions of the metrics: ``docs/sae.md``):

1. SIREN atoms are localized and tile the coordinate plane independent of content — the 90 %-mass radius below
   FFMLP's at every depth, centroids spread more evenly than random points (tiling ratio's 95 % range above 1),
   and content alignment no higher than in the untrained-encoder control (the control's interval reaches it);
2. FFMLP atoms span the image and trace the memorized signals — radius above SIREN's at every depth *and* above
   the untrained FFMLP control's (else the breadth comes from the architecture, not the training), and edge
   alignment above the control's interval;
3. one FFMLP atom can cost up to 10.6 dB — the worst single-atom PSNR drop over every FFMLP depth;
4. SIREN ablations stay local — an ablation changes only the coordinates where the atom fires (an INR is
   pointwise), so what decides it is the size of that region: the radius of the most damaging SIREN atoms
   against the most damaging FFMLP atoms'.

``rows`` are ``run_sae_depths`` rows (``kind`` depth | seed | size | control); ``worst_r90`` (added by the
report from each run's ``atoms.csv``) is the median radius of a run's most damaging atoms.
"""

from __future__ import annotations

import math

PAPER_MAX_DROP_DB = 10.6


def depth_rows(rows: list[dict], backbone: str, kind: str = "depth") -> dict[int, dict]:
    """``{layer: row}`` of one backbone's seed-0 runs of ``kind``."""
    return {r["layer"]: r for r in rows if r["backbone"] == backbone and r.get("kind", "depth") == kind
            and r["seed"] == 0}


def _v(row: dict | None, key: str) -> float:
    value = None if row is None else row.get(key)
    return float(value) if isinstance(value, (int, float)) else math.nan


def _ci(row: dict, key: str) -> tuple[float, float]:
    ci = row.get(f"{key}_ci95")
    return (float(ci[0]), float(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (math.nan, math.nan)


def _verdict(flags: list[bool]) -> str:
    if not flags:
        return "no data"
    return "**holds**" if all(flags) else ("fails" if not any(flags) else f"partly ({sum(flags)} of {len(flags)})")


def _per_layer(values: dict[int, float], spec: str = ".2f") -> str:
    return ", ".join(f"L{j} {format(v, spec)}" for j, v in sorted(values.items()))


def _versus_control(trained: dict[int, dict], control: dict[int, dict], key: str, layers: list[int]) -> str:
    """``trained L0 …; control L0 … (upper ends L0 …)`` of ``key`` at ``layers``."""
    return (f"trained {_per_layer({j: _v(trained[j], key) for j in layers}, '.3f')}; control "
            f"{_per_layer({j: _v(control[j], key) for j in layers}, '.3f')} (upper ends "
            f"{_per_layer({j: _ci(control[j], key)[1] for j in layers}, '.3f')})")


def judge(rows: list[dict]) -> list[dict]:
    """``[{claim, numbers, verdict}]`` for the study's claims (see the module docstring)."""
    siren, ffmlp = depth_rows(rows, "siren"), depth_rows(rows, "ffmlp")
    siren_ctl, ffmlp_ctl = depth_rows(rows, "siren", "control"), depth_rows(rows, "ffmlp", "control")
    both = sorted(set(siren) & set(ffmlp))
    r90 = "atoms/mass_radius90_median"
    out = []

    s_r = {j: _v(siren[j], r90) for j in both}
    f_r = {j: _v(ffmlp[j], r90) for j in both}
    out.append({"claim": "SIREN atoms are localized (90 %-mass radius below FFMLP's)",
                "numbers": f"SIREN {_per_layer(s_r)}; FFMLP {_per_layer(f_r)}",
                "verdict": _verdict([s_r[j] < f_r[j] for j in both])})

    tiles = {j: siren[j].get("atoms/tiling_ratio_random_range95") for j in sorted(siren)}
    ratio = {j: _v(siren[j], "atoms/tiling_ratio") for j in sorted(siren)}
    out.append({"claim": "SIREN atoms tile the plane (centroids more even than random: the ratio's 95 % range > 1)",
                "numbers": "ratio " + _per_layer(ratio) + "; lower end of the range " +
                           _per_layer({j: (t[0] if t else math.nan) for j, t in tiles.items()}),
                "verdict": _verdict([bool(t) and t[0] > 1 for t in tiles.values()])})

    key = "atoms/content_alignment_median"
    layers = sorted(set(siren) & set(siren_ctl))
    out.append({"claim": "SIREN atoms are independent of content (alignment no higher than the untrained control's "
                         "95 % interval)",
                "numbers": _versus_control(siren, siren_ctl, key, layers),
                "verdict": _verdict([_v(siren[j], key) <= _ci(siren_ctl[j], key)[1] for j in layers])})

    layers = sorted(set(ffmlp) & set(ffmlp_ctl))
    out.append({"claim": "FFMLP atoms span the image because of training (radius above SIREN's at every depth and "
                         "above the untrained FFMLP control's interval)",
                "numbers": _versus_control(ffmlp, ffmlp_ctl, r90, layers),
                "verdict": _verdict([f_r.get(j, math.nan) > s_r.get(j, math.nan) and
                                     _v(ffmlp[j], r90) > _ci(ffmlp_ctl[j], r90)[1] for j in layers])})

    key = "atoms/align_edges_median"
    out.append({"claim": "FFMLP atoms trace the memorized contours (edge alignment above the untrained control's "
                         "95 % interval)",
                "numbers": _versus_control(ffmlp, ffmlp_ctl, key, layers),
                "verdict": _verdict([_v(ffmlp[j], key) > _ci(ffmlp_ctl[j], key)[1] for j in layers])})

    drop = "ablation/max_drop_db"
    worst_f = max((_v(r, drop) for r in ffmlp.values()), default=math.nan)
    worst_s = max((_v(r, drop) for r in siren.values()), default=math.nan)
    worst_c = max((_v(r, drop) for r in ffmlp_ctl.values()), default=math.nan)
    verdict = "no data" if math.isnan(worst_f) else (
        "**holds**" if worst_f >= PAPER_MAX_DROP_DB else
        f"smaller here (≥ {PAPER_MAX_DROP_DB / 2:g} dB: same order)" if worst_f >= PAPER_MAX_DROP_DB / 2 else "fails")
    out.append({"claim": f"One FFMLP atom can cost up to {PAPER_MAX_DROP_DB} dB",
                "numbers": f"worst FFMLP atom {worst_f:.2f} dB (per depth "
                           f"{_per_layer({j: _v(r, drop) for j, r in ffmlp.items()})}); worst SIREN atom "
                           f"{worst_s:.2f} dB; untrained FFMLP control {worst_c:.2f} dB",
                "verdict": verdict})

    s_w = {j: _v(siren[j], "worst_r90") for j in both}
    f_w = {j: _v(ffmlp[j], "worst_r90") for j in both}
    out.append({"claim": "SIREN ablations stay local (the most damaging SIREN atoms' radius below the most damaging "
                         "FFMLP atoms')",
                "numbers": f"SIREN {_per_layer(s_w, '.3f')}; FFMLP {_per_layer(f_w, '.3f')}",
                "verdict": _verdict([s_w[j] < f_w[j] for j in both if not math.isnan(s_w[j] + f_w[j])])})
    return out


# -- finding 2 with cohorts as the unit ---------------------------------------------------------------------
# Rows of the finding-2 profile (``study.finding2``): each an SAE run's ``summary.json`` plus ``dataset``,
# ``cohort`` (the cohort seed: the unit of replication), ``backbone``, ``layer``, ``encoder`` (cohort |
# untrained), ``kind`` (depth | control | size), ``n_atoms`` and ``run``.  Every interval below is over cohort
# values (one SAE per cohort and depth; its per-atom median is the cohort's value), like finding 1's: the
# per-atom bootstrap of a single SAE describes that SAE and decides nothing.

COMPARABLE_GAP_DB = 1.0     # two INRs' PSNR (or ablation damage) are compared only when their PSNR is this close
# The smallest memorisation effect called one: trained − own control of (own − held-out edge alignment), in |r|.
# An atom's edge alignment is about 0.1 (align_edges medians); 0.005 is 5 % of it.  Set with the first finding2
# run in view, where untrained encoders alone gave differences of 1e-5 to 1e-4 that a t-interval can clear.
MEMORISED_MIN = 0.005
R90_REL = "atoms/mass_radius90_rel_uniform_median"
TILING = "atoms/tiling_ratio_subpixel"
MEMORISED = "atoms/align_edges_memorised_median"
INR_PSNR = "sae/inr_psnr"
# The 128×128 benchmark's targets (BENCHMARKS.md, "SAE training"): 2 × the reference FVU at SIREN depths 0–2,
# dead atoms, the PSNR cost of splicing the SAE in; and no memorisation gap (held-out / training FVU).
SAE_TARGETS = {"siren_fvu": {0: 0.00016, 1: 0.0004, 2: 0.00294}, "dead": 0.05, "psnr_drop": 3.0,
               "heldout_over_train": 1.5}


def cohort_values(rows: list[dict], key: str, *, dataset: str, backbone: str, layer: int | None = None,
                  kind: str = "depth", n_atoms: int | None = None) -> dict[int, float]:
    """``{cohort: value of key}`` of the matching rows (one SAE per cohort)."""
    return {int(r["cohort"]): _v(r, key) for r in rows
            if r.get("dataset") == dataset and r["backbone"] == backbone and r.get("kind", "depth") == kind
            and (layer is None or r["layer"] == layer) and (n_atoms is None or r.get("n_atoms") == n_atoms)}


def layers_of(rows: list[dict], dataset: str, backbone: str, kind: str = "depth") -> list[int]:
    return sorted({r["layer"] for r in rows if r.get("dataset") == dataset and r["backbone"] == backbone
                   and r.get("kind", "depth") == kind})


def over_cohorts(values: dict[int, float]) -> dict:
    from inr_lightning.study.verdicts import interval

    return interval([values[c] for c in sorted(values)])


def paired_over_cohorts(a: dict[int, float], b: dict[int, float]) -> dict:
    """``a − b`` per cohort present in both, as an interval over cohorts (``verdicts.interval``)."""
    return over_cohorts({c: a[c] - b[c] for c in a if c in b})


def beyond(d: dict, direction: str, than: float = 0.0) -> bool | None:
    """``above``: the one-sided 95 % lower bound > ``than``; ``below``: the upper bound < ``than``; None with
    fewer than 2 cohorts (no interval)."""
    n = d["n"] if isinstance(d["n"], int) else min(d["n"])
    if n < 2 or math.isnan(d["lower"]):
        return None
    return bool(d["lower"] > than) if direction == "above" else bool(d["upper"] < than)


def iv(d: dict, spec: str = ".3f") -> str:
    """``mean ± half-width (n)``; '—' for no data."""
    if math.isnan(d["mean"]):
        return "—"
    n = d["n"] if isinstance(d["n"], int) else "+".join(map(str, d["n"]))
    ci = "" if math.isnan(d["ci"]) else f" ± {format(d['ci'], spec.lstrip('+'))}"
    return f"{format(d['mean'], spec)}{ci} (n={n})"


def comparable(psnr_a: dict[int, float], psnr_b: dict[int, float], gap: float = COMPARABLE_GAP_DB) -> dict:
    """Two INRs' mean PSNR over cohorts and whether they lie within ``gap`` dB (else their PSNR and ablation
    damage are not compared)."""
    a, b = over_cohorts(psnr_a)["mean"], over_cohorts(psnr_b)["mean"]
    return {"a": a, "b": b, "gap": abs(a - b), "max_gap": gap, "comparable": bool(abs(a - b) <= gap)}


def versus_own_control(rows: list[dict], key: str, dataset: str, backbone: str, direction: str,
                       than: float = 0.0) -> list[dict]:
    """Per depth with both: the trained SAEs' ``key`` and the backbone's own untrained control's (same cohort
    seed: paired), the difference trained − control over cohorts, whether it lies ``direction`` (above |
    below) ``than`` beyond the interval, and both INRs' PSNR with their comparability."""
    out = []
    for j in sorted(set(layers_of(rows, dataset, backbone)) & set(layers_of(rows, dataset, backbone, "control"))):
        t = cohort_values(rows, key, dataset=dataset, backbone=backbone, layer=j)
        c = cohort_values(rows, key, dataset=dataset, backbone=backbone, layer=j, kind="control")
        diff = paired_over_cohorts(t, c)
        psnr = comparable(cohort_values(rows, INR_PSNR, dataset=dataset, backbone=backbone, layer=j),
                          cohort_values(rows, INR_PSNR, dataset=dataset, backbone=backbone, layer=j, kind="control"))
        out.append({"layer": j, "trained": over_cohorts(t), "control": over_cohorts(c), "diff": diff,
                    "holds": beyond(diff, direction, than), "psnr": psnr})
    return out


def between_backbones(rows: list[dict], key: str, dataset: str, direction: str, a: str = "siren",
                      b: str = "ffmlp") -> list[dict]:
    """Per depth: backbone ``a`` − backbone ``b`` (independent cohorts: Welch), beyond the interval in
    ``direction``; and the two INRs' PSNR (for damage comparisons)."""
    from inr_lightning.study.verdicts import welch_interval

    out = []
    for j in sorted(set(layers_of(rows, dataset, a)) & set(layers_of(rows, dataset, b))):
        va = cohort_values(rows, key, dataset=dataset, backbone=a, layer=j)
        vb = cohort_values(rows, key, dataset=dataset, backbone=b, layer=j)
        diff = welch_interval(list(va.values()), list(vb.values()))
        psnr = comparable(cohort_values(rows, INR_PSNR, dataset=dataset, backbone=a, layer=j),
                          cohort_values(rows, INR_PSNR, dataset=dataset, backbone=b, layer=j))
        out.append({"layer": j, a: over_cohorts(va), b: over_cohorts(vb), "diff": diff,
                    "holds": beyond(diff, direction), "psnr": psnr})
    return out


def content_independence(rows: list[dict], key: str, backbone: str, datasets: tuple[str, str]) -> list[dict]:
    """Per depth: the same architecture's cohorts on two datasets (independent: Welch interval of the
    difference).  ``same`` = the two-sided 95 % interval contains 0 (no difference this study can see; its
    half-width says how large a difference it could miss); ``differs`` otherwise."""
    from inr_lightning.study.verdicts import welch_interval

    a, b = datasets
    out = []
    for j in sorted(set(layers_of(rows, a, backbone)) & set(layers_of(rows, b, backbone))):
        va = cohort_values(rows, key, dataset=a, backbone=backbone, layer=j)
        vb = cohort_values(rows, key, dataset=b, backbone=backbone, layer=j)
        d = welch_interval(list(va.values()), list(vb.values()))
        same = None if math.isnan(d["ci"]) else bool(d["mean"] - d["ci"] <= 0 <= d["mean"] + d["ci"])
        out.append({"layer": j, a: over_cohorts(va), b: over_cohorts(vb), "diff": d, "same": same})
    return out


def memorisation(rows: list[dict], dataset: str, backbone: str, kind: str = "depth") -> list[dict]:
    """Per depth: edge alignment with the cohort's own images − with held-out images (per-atom difference,
    median per SAE), over cohorts (``diff``).  The held-out images' edges can differ from the cohort's by
    themselves, so a trained SAE's difference holds only where it is above 0 *and* above its own untrained
    control's by more than ``MEMORISED_MIN`` (paired, ``versus_control``), each beyond the interval; no control
    at that depth: undecided."""
    ctl = versus_own_control(rows, MEMORISED, dataset, backbone, "above", MEMORISED_MIN) if kind == "depth" else []
    controls = {d["layer"]: d for d in ctl}
    out = []
    for j in layers_of(rows, dataset, backbone, kind):
        d = over_cohorts(cohort_values(rows, MEMORISED, dataset=dataset, backbone=backbone, layer=j, kind=kind))
        above, control = beyond(d, "above"), controls.get(j)
        if kind != "depth":
            holds = above
        elif control is None or above is None or control["holds"] is None:
            holds = None
        else:
            holds = above and control["holds"]
        out.append({"layer": j, "diff": d, "holds": holds, "versus_control": control["diff"] if control else None})
    return out


def worst_atom(rows: list[dict], dataset: str, backbone: str, kind: str = "depth") -> dict:
    """The largest single-atom drop over every depth, per cohort, over cohorts; beside it the per-atom
    distribution's median and 99th percentile (each SAE's, the largest over depths per cohort)."""
    per: dict[str, dict[int, float]] = {"max": {}, "q50": {}, "q99": {}}
    for r in rows:
        if r.get("dataset") != dataset or r["backbone"] != backbone or r.get("kind", "depth") != kind:
            continue
        c = int(r["cohort"])
        for name, key in (("max", "ablation/max_drop_db"), ("q50", "ablation/atom_max_drop_q50"),
                          ("q99", "ablation/atom_max_drop_q99")):
            v = _v(r, key)
            if not math.isnan(v):
                per[name][c] = max(per[name].get(c, -math.inf), v)
    return {name: over_cohorts(v) for name, v in per.items()}


def size_dependence(rows: list[dict], key: str, dataset: str, backbone: str) -> dict[int, dict]:
    """``{n_atoms: interval over cohorts}`` of ``key`` at the depth of the ``size`` runs (the ``depth`` run at
    that layer gives the default size)."""
    sized = [r for r in rows if r.get("dataset") == dataset and r["backbone"] == backbone and r.get("kind") == "size"]
    if not sized:
        return {}
    layer = sized[0]["layer"]
    sizes = sorted({r.get("n_atoms") for r in rows if r.get("dataset") == dataset and r["backbone"] == backbone
                    and r["layer"] == layer and r.get("kind", "depth") in ("depth", "size")})
    out = {}
    for n in sizes:
        values = {**cohort_values(rows, key, dataset=dataset, backbone=backbone, layer=layer, n_atoms=n),
                  **cohort_values(rows, key, dataset=dataset, backbone=backbone, layer=layer, kind="size", n_atoms=n)}
        out[n] = over_cohorts(values)
    return out


def sae_gates(rows: list[dict], dataset: str, backbone: str, layer: int, kind: str = "depth") -> dict:
    """The SAEs' quality at one depth, means over cohorts, against ``SAE_TARGETS``; ``misses`` names each
    target missed (the SIREN FVU target only at depths 0–2, where the benchmark sets one)."""
    def mean_of(key):
        return over_cohorts(cohort_values(rows, key, dataset=dataset, backbone=backbone, layer=layer, kind=kind))

    g = {name: mean_of(key) for name, key in (
        ("fvu", "sae/fvu"), ("fvu_train", "sae/fvu_train_coords"), ("fvu_heldout", "sae/fvu_heldout_coords"),
        ("ratio", "sae/fvu_heldout_over_train"), ("values_per_parameter", "sae/values_per_parameter"),
        ("dead", "sae/dead_fraction"), ("psnr_drop", "sae/psnr_drop"), ("inr_psnr", INR_PSNR))}
    misses = []
    target = SAE_TARGETS["siren_fvu"].get(layer) if backbone == "siren" else None
    if target is not None and g["fvu"]["mean"] > target:
        misses.append(f"FVU {g['fvu']['mean']:.5f} > {target:g}")
    if g["dead"]["mean"] > SAE_TARGETS["dead"]:
        misses.append(f"dead {100 * g['dead']['mean']:.1f} % > {100 * SAE_TARGETS['dead']:.0f} %")
    if g["psnr_drop"]["mean"] > SAE_TARGETS["psnr_drop"]:
        misses.append(f"PSNR cost {g['psnr_drop']['mean']:.2f} dB > {SAE_TARGETS['psnr_drop']:g} dB")
    if g["ratio"]["mean"] > SAE_TARGETS["heldout_over_train"]:
        misses.append(f"held-out / training FVU {g['ratio']['mean']:.2f} > {SAE_TARGETS['heldout_over_train']:g}")
    return {**g, "target_fvu": target, "misses": misses}


def _per_depth(items: list[dict], flag: str = "holds") -> str:
    return _verdict_or_undecided([it[flag] for it in items])


def _verdict_or_undecided(flags: list[bool | None]) -> str:
    if flags and all(f is None for f in flags):
        return "undecided (needs ≥ 2 cohorts)"
    return _verdict([bool(f) for f in flags if f is not None])


def judge_cohorts(rows: list[dict], dataset: str) -> list[dict]:
    """Finding 2's claims on one dataset, each decided over cohorts (``[{claim, numbers, verdict}]``)."""
    out = []
    s_ctl = versus_own_control(rows, R90_REL, dataset, "siren", "below")
    out.append({"claim": "SIREN atoms are localised: r90 / uniform below SIREN's own untrained control (trained − "
                         "control < 0 beyond the interval, every depth)",
                "numbers": "; ".join(f"L{d['layer']} {iv(d['trained'])} vs {iv(d['control'])}: {iv(d['diff'], '+.3f')}"
                                     for d in s_ctl), "verdict": _per_depth(s_ctl)})
    sf = between_backbones(rows, R90_REL, dataset, "below")
    out.append({"claim": "SIREN atoms are more local than FFMLP's (SIREN − FFMLP r90 / uniform < 0 beyond the "
                         "interval, every depth)",
                "numbers": "; ".join(f"L{d['layer']} {iv(d['diff'], '+.3f')}" for d in sf), "verdict": _per_depth(sf)})
    tiles = []
    for d in versus_own_control(rows, TILING, dataset, "siren", "above"):
        d["above_one"] = beyond(d["trained"], "above", 1.0)
        d["both"] = None if d["above_one"] is None or d["holds"] is None else d["above_one"] and d["holds"]
        tiles.append(d)
    out.append({"claim": "SIREN atoms tile the plane: tiling ratio (sub-pixel null) above 1 and above SIREN's own "
                         "control, beyond the interval, every depth",
                "numbers": "; ".join(f"L{d['layer']} {iv(d['trained'], '.2f')} vs control {iv(d['control'], '.2f')}"
                                     for d in tiles), "verdict": _per_depth(tiles, "both")})
    f_ctl = versus_own_control(rows, R90_REL, dataset, "ffmlp", "above")
    out.append({"claim": "FFMLP atoms span the image because of training: r90 / uniform above FFMLP's own untrained "
                         "control beyond the interval, every depth",
                "numbers": "; ".join(f"L{d['layer']} {iv(d['trained'])} vs {iv(d['control'])}: {iv(d['diff'], '+.3f')}"
                                     for d in f_ctl), "verdict": _per_depth(f_ctl)})
    mem = memorisation(rows, dataset, "ffmlp")
    out.append({"claim": "FFMLP atoms trace the memorised contours: edge alignment with the cohort's own images − "
                         f"with held-out images above 0, and above FFMLP's own untrained control's by more than "
                         f"{MEMORISED_MIN:g}, beyond the interval, every depth",
                "numbers": "; ".join(f"L{d['layer']} {iv(d['diff'], '+.4f')}, − control "
                                     f"{iv(d['versus_control'], '+.4f') if d['versus_control'] else '—'}"
                                     for d in mem),
                "verdict": _per_depth(mem)})
    w = worst_atom(rows, dataset, "ffmlp")
    top = w["max"]
    verdict = "no data" if math.isnan(top["mean"]) else (
        "**holds**" if beyond(top, "above", PAPER_MAX_DROP_DB - 1e-12) else
        "reached by the mean over cohorts, not beyond the interval" if top["mean"] >= PAPER_MAX_DROP_DB else
        f"smaller here (≥ {PAPER_MAX_DROP_DB / 2:g} dB: same order)" if top["mean"] >= PAPER_MAX_DROP_DB / 2 else "fails")
    out.append({"claim": f"One FFMLP atom can cost up to {PAPER_MAX_DROP_DB} dB (an extreme value: the largest of "
                         "every atom's worst drop)",
                "numbers": f"largest single-atom drop per cohort {iv(top, '.2f')} dB; per-atom median "
                           f"{iv(w['q50'], '.4f')} dB, 99th percentile {iv(w['q99'], '.2f')} dB",
                "verdict": verdict})
    loc = between_backbones(rows, "worst_r90", dataset, "below")
    for d in loc:
        if not d["psnr"]["comparable"]:
            d["holds"] = None
    out.append({"claim": "SIREN ablations stay local: r90 of the most damaging SIREN atoms below FFMLP's (only "
                         f"where the two INRs' PSNR are within {COMPARABLE_GAP_DB:g} dB)",
                "numbers": "; ".join(f"L{d['layer']} {iv(d['diff'], '+.3f')}" + (
                    "" if d["psnr"]["comparable"] else f" (not comparable: PSNR {d['psnr']['a']:.1f} vs "
                                                       f"{d['psnr']['b']:.1f} dB)") for d in loc),
                "verdict": _per_depth(loc) if any(d["psnr"]["comparable"] for d in loc) else "not comparable"})
    return out
