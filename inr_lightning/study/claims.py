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
