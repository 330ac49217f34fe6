"""The study's ``report.md``: every number a mean with its 95 % interval and n, every table traced to its runs.

The header names the command and the commit that made the report; "What this profile cuts" lists every way
the profile departs from the study's protocol.  Finding 1 is judged per dataset, held-out set, backbone,
reading and form of the rule (``verdicts``); finding 2 from the SAE runs' ``summary.json``.
"""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path

from inr_lightning.study.verdicts import (
    CAP_DB,
    CEILING_SHARE,
    CONVERGED_DB,
    FORM_TEXT,
    FORMS,
    MARGIN_DB,
    READINGS,
    TRIVIAL_SHARE,
    Runs,
    capped,
    cohort_gate as judge_cohorts,
    control_differences,
    gates,
    held,
    interval,
    protocol_mean,
    row_words,
    rule_verdict,
    spearman_depth,
    steps_saved,
)


def fmt(d: dict | float | None, spec: str = "+.2f") -> str:
    """``mean ± ci (n)`` for an interval, a plain number otherwise; '—' for nothing."""
    if d is None:
        return "—"
    if isinstance(d, dict):
        if d["n"] == 0 or math.isnan(d["mean"]):
            return "—"
        ci = "" if math.isnan(d["ci"]) else f" ± {format(d['ci'], spec.lstrip('+'))}"
        return f"{format(d['mean'], spec)}{ci} (n={d['n']})"
    return "—" if isinstance(d, float) and math.isnan(d) else format(d, spec)


def rel(path: str | Path, out: Path) -> str:
    try:
        return Path(path).resolve().relative_to(out.resolve()).as_posix()
    except ValueError:
        return str(path)


def git_commit() -> str:
    """The commit of this checkout, read from ``.git`` (no subprocess); in a ``git worktree`` ``.git`` is a file
    naming the worktree's own git directory, whose ``commondir`` holds the shared refs."""
    git = Path(__file__).resolve().parents[2] / ".git"
    try:
        if git.is_file() and git.read_text().startswith("gitdir: "):
            git = (git.parent / git.read_text()[8:].strip()).resolve()
        common = (git / (git / "commondir").read_text().strip()).resolve() if (git / "commondir").is_file() else git
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        for root in (git, common):
            if (root / ref).is_file():
                return (root / ref).read_text().strip()[:12]
        for line in (common / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:12]
    except OSError:
        pass
    return "unknown (not a git checkout)"


def wall_minutes(stages: list[dict]) -> float:
    return sum(float(s.get("seconds", 0)) for s in stages) / 60


def cpu_minutes(stages: list[dict]) -> float:
    """CPU time of ``stage.json`` records; one recorded before CPU time was (no ``cpu_seconds``) counts its
    wall-clock."""
    return sum(float(s.get("cpu_seconds", s.get("seconds", 0))) for s in stages) / 60


def pre_cpu_note(stages: list[dict]) -> str:
    old = sum("cpu_seconds" not in s for s in stages)
    return f"{old} runs recorded before CPU time was count their wall-clock" if old else ""


def run_cost(stages: list[dict]) -> str:
    """``"took W min of wall-clock in all, C min of CPU time (…)"`` over the ``stage.json`` records of a run
    (``cpu_minutes``); a resumed stage counts the part after its resume."""
    wall = wall_minutes(stages)
    resumed = sum(bool(s.get("resumed")) for s in stages)
    notes = [f"{resumed} resumed after an interruption: only their last part is counted"] if resumed else []
    if not any("cpu_seconds" in s for s in stages):
        return f"took {wall:.1f} min in all" + (f" ({notes[0]})" if notes else "")
    notes = ["each run's process, every thread; on CPU, what they cost on an idle machine"] + notes + (
        [pre_cpu_note(stages)] if pre_cpu_note(stages) else [])
    return f"took {wall:.1f} min of wall-clock in all, {cpu_minutes(stages):.1f} min of CPU time ({'; '.join(notes)})"


def step_name(step: int) -> str:
    return "final" if step == Runs.FINAL else f"step {step}"


# -- finding 1 ---------------------------------------------------------------------------------------------
def lower(d: dict) -> str:
    return "—" if d["n"] < 2 else f"{d['lower']:+.2f}"


def gate_lines(g: dict, level: float) -> list[str]:
    """The gates of one sweep, with their numbers, printed before any verdict."""
    c, tr = g["cohort"], g["transfer"]
    yes = lambda ok: "**passes**" if ok else "fails"  # noqa: E731
    rows = [("cohorts fit comparably", ", ".join(f"{b} {m:.2f} dB" for b, m in c["means"].items())
             + f" (mean over cohorts, capped at {CAP_DB:.0f} dB); gap {c['gap']:.2f} dB; needs every backbone ≥ "
             f"{c['level']:.0f} dB and a gap ≤ {c['max_gap']:.0f} dB", c["passes"])] if c["means"] else \
        [("cohorts fit comparably", "not checked here: one cohort run per backbone (`study` checks it)", True)]
    for label, conv in g["convergence"].items():
        rows.append((f"{label} converged", f"mean gain from step {conv['from']} to {conv.get('to')}: "
                     f"{fmt(conv['gain'])} dB; needs < {CONVERGED_DB} dB", conv["passes"]))
    st = tr["steps"]
    rows.append(("transfer exists", f"finetune − scratch at the budget {fmt(tr['budget'])} dB (one-sided lower bound "
                 f"{lower(tr['budget'])}); steps to {level:.0f} dB saved by finetune {fmt(st, '+.0f')} (lower bound "
                 f"{lower(st) if st['n'] < 2 else format(st['lower'], '+.0f')}"
                 + (f"; finetune never reached it on {st['faster_never']} pairs: void" if st["faster_never"] else "")
                 + "); needs either lower bound > 0", tr["passes"]))
    return ["| gate | numbers | verdict |", "|---|---|---|"] + [f"| {a} | {b} | {yes(ok)} |" for a, b, ok in rows]


def finding1_lines(backbone: str, runs: Runs, out: Path, runs_dir: str = "", cohort_gate: dict | None = None,
                   level: float = 40.0) -> tuple[list[str], dict, dict]:
    """One backbone's sweep: gates first, then the two rows of finding 1 per reading and form, then the data.
    Returns the lines, the gates and the verdicts ``{(reading, form): rule_verdict}``."""
    layers = runs.layers
    n = len(runs.cohorts)
    cohort_gate = cohort_gate or {"means": {}, "gap": math.nan, "level": 40.0, "max_gap": 1.0, "passes": True}
    g = gates(runs, cohort_gate, level)
    mean_profile = [sum(runs.profile[c][k] for c in runs.cohorts) / n for k in range(layers)]
    lines = [f"#### {backbone}", ""]
    if runs_dir:
        lines += [f"Runs: `{runs_dir}` (one folder per protocol and cohort; `summary.json` holds every signal's "
                  "PSNR at every recorded step).", ""]
    lines += ["Gates (a verdict is given only where all pass):", ""] + gate_lines(g, level) + [""]
    inits = [runs.init_profile.get(c) for c in runs.cohorts]
    profile_line = "Stable rank per encoder layer (mean over cohorts): " + ", ".join(f"{v:.1f}" for v in mean_profile)
    if all(inits):
        init_mean = [sum(p[k] for p in inits) / len(inits) for k in range(layers)]
        profile_line += "; at initialisation: " + ", ".join(f"{v:.1f}" for v in init_mean) + \
            "; ratio: " + ", ".join(f"{a / b:.2f}" for a, b in zip(mean_profile, init_mean))
    lines += [profile_line + f". Spearman(stable rank, final PSNR of freeze k) across depths: "
              f"{fmt(spearman_depth(runs), '.2f')}.", ""]
    lines += ["| reading | rule | rule's layer (per cohort) | top layer | best set | share frozen | rule picks a best "
              "depth | auto − finetune [dB] (lower bound) | auto matches or beats finetune |",
              "|---|---|---|---|---|---|---|---|---|"]
    verdicts = {}
    for reading in READINGS:
        for form in FORMS:
            v = rule_verdict(runs, reading, form)
            if not v["available"]:
                continue
            verdicts[reading, form] = v
            share = v["frozen_share"]
            picks, auto = row_words(v, "picks_best", g["failed"]), row_words(v, "noninferior", g["failed"])
            if v["superior"] and not g["failed"]:
                auto = auto.replace("**holds**", "**holds** (beats)")
            lines.append(f"| {reading} | {FORM_TEXT[form]} | {', '.join(str(p) for p in v['picks'].values())} | "
                         f"{v['top']} | {', '.join(map(str, v['best']))} | {100 * share:.1f} % | {picks} | "
                         f"{fmt(v['auto_minus_finetune'])} ({lower(v['auto_minus_finetune'])}) | {auto} |")
    lines += ["", f"PSNR capped at {CAP_DB:.0f} dB; intervals over the {n} cohort means (df = {n - 1}), signals "
              f"averaged within each cohort. *Best set*: every candidate whose mean is not significantly below the "
              f"top one (one-sided 95 %). *Auto matches or beats finetune*: the one-sided 95 % lower bound of "
              f"auto − finetune above −{MARGIN_DB} dB. A rule freezing < {100 * TRIVIAL_SHARE:.0f} % of the "
              "encoder's parameters is near-trivial. *At the cap*: the row would hold, but both of its sides "
              f"reach {CAP_DB:.0f} dB in ≥ {100 * CEILING_SHARE:.0f} % of the (cohort, signal) pairs, where the capped "
              "difference is 0 by construction — see auto − finetune at the earlier steps below. *through* freezes "
              "layers 0..j, *below* 0..j−1.", ""]
    lines += ["auto − finetune [dB] at every recorded step (raw rule):", "",
              "| step | " + " | ".join(READINGS) + " |", "|---|" + "---|" * len(READINGS)]
    for step in runs.steps:
        lines.append(f"| {step_name(step)} | " + " | ".join(
            fmt(verdicts[r, "raw"]["auto_minus_finetune_by_step"][step]) for r in READINGS) + " |")
    labels = [lb for lb in runs.labels if lb != "auto"]
    lines += ["", f"Capped PSNR per protocol [dB] (mean ± 95 % interval over cohorts), and the steps saved against "
              f"scratch in reaching {level:.0f} dB:", "",
              "| protocol | " + " | ".join(step_name(s) for s in runs.steps) + f" | steps to {level:.0f} dB saved |",
              "|---|" + "---|" * (len(runs.steps) + 1)]
    for label in labels:
        cells = [fmt(protocol_mean(runs, label, s), ".2f") for s in runs.steps]
        saved = "—" if label == "scratch" else fmt(steps_saved(runs, level, label), "+.0f")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {saved} |")
    transfer = control_differences(runs, "freeze_", "random_")
    reinit = control_differences(runs, "reinit_", "freeze_")
    if transfer or reinit:
        lines += ["", "Controls, paired capped final-PSNR differences [dB]: *transfer* = cohort layers 0..k frozen − "
                  "random layers 0..k frozen (what the cohort's weights add beyond freezing itself); *reinit* = "
                  "layers above k re-initialised − fine-tuned from the cohort.", "",
                  "| k | freeze_k − random_k (transfer) | reinit_k − freeze_k |", "|---|---|---|"]
        for k in range(layers):
            lines.append(f"| {k} | {fmt(transfer.get(k))} | {fmt(reinit.get(k))} |")
    if "auto" in runs.labels:
        picks = verdicts["through", "raw"]["picks"]
        gaps = [abs(a - b) for c in runs.cohorts
                for a, b in zip(runs.psnr[c]["auto"][Runs.FINAL], runs.psnr[c][f"freeze_{picks[c]}"][Runs.FINAL])]
        lines += ["", f"Check: the `auto` run (StableRankFreeze, through, raw) equals the freeze run it names within "
                  f"{max(gaps):.2g} dB, so every *auto* above is that run."]
    return lines + [""], g, verdicts


def sweep_figure(runs_by_backbone: dict[str, Runs], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs_by_backbone), figsize=(6 * len(runs_by_backbone), 4), squeeze=False)
    for ax, (backbone, runs) in zip(axes[0], runs_by_backbone.items()):
        ks = list(range(runs.layers))
        for prefix, name, color in (("freeze_", "cohort layers 0..k frozen", "C0"),
                                    ("random_", "random layers 0..k frozen", "C3"),
                                    ("reinit_", "cohort 0..k frozen, above re-initialised", "C2")):
            pts = [(k, protocol_mean(runs, f"{prefix}{k}")) for k in ks if f"{prefix}{k}" in runs.labels]
            if pts:
                ax.errorbar([k for k, _ in pts], [d["mean"] for _, d in pts],
                            yerr=[0 if math.isnan(d["ci"]) else d["ci"] for _, d in pts], marker="o", capsize=3,
                            color=color, label=name)
        for label, style in (("finetune", "--"), ("scratch", ":")):
            if label in runs.labels:
                ax.axhline(protocol_mean(runs, label)["mean"], color="k", linestyle=style, label=label)
        ax.set_xticks(ks)
        ax.set_xlabel("k (last frozen encoder layer)")
        ax.set_ylabel(f"final PSNR [dB, capped at {CAP_DB:.0f}], mean ± 95 % CI over cohorts")
        ax.set_title(f"{title}: {backbone}", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- finding 2 ---------------------------------------------------------------------------------------------
SAE_COLUMNS = [("sae/fvu", "FVU", ".5f"), ("sae/dead_fraction", "dead", ".3f"),
               ("sae/psnr_drop", "PSNR drop via SAE", ".2f"),
               ("atoms/mass_radius90_median", "r90 (median)", ".3f"),
               ("atoms/components_median", "components (median)", ".1f"),
               ("atoms/tiling_ratio", "tiling ratio", ".2f"),
               ("atoms/content_alignment_median", "content alignment", ".3f"),
               ("atoms/align_edges_median", "edge alignment", ".3f"),
               ("ablation/max_drop_db", "max atom drop [dB]", ".2f"),
               ("ablation/max_drop_ep_db", "max drop, error-preserving [dB]", ".2f"),
               ("ablation/damage_per_support_median", "damage / support (median)", ".1f"),
               ("worst_r90", "r90 of the 5 worst atoms", ".3f")]


def _cell(v, spec: str) -> str:
    return "—" if not isinstance(v, (int, float)) or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def sae_table(rows: list[dict], out: Path) -> list[str]:
    cols = [c for c in SAE_COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    lines = ["| backbone | layer | encoder | atoms | seed | " + " | ".join(c[1] for c in cols) + " | run |",
             "|---|---|---|---|---|" + "---|" * len(cols) + "---|"]
    for r in rows:
        cells = [_cell(r.get(key), spec) for key, _, spec in cols]
        lines.append(f"| {r['backbone']} | {r['layer']} | {r['encoder']} | {r.get('n_atoms', '—')} | {r['seed']} | "
                     + " | ".join(cells) + f" | `{rel(r['run'], out)}` |")
    return lines


def worst_atoms_r90(run: str | Path, atoms: list[int]) -> float:
    """Median 90 %-mass radius of ``atoms`` (a run's most damaging ones) from its ``atoms/atoms.csv``."""
    import csv
    from statistics import median

    path = Path(run) / "atoms" / "atoms.csv"
    if not atoms or not path.is_file():
        return math.nan
    wanted = set(atoms)
    with open(path) as f:
        radii = [float(r["mass_radius90"]) for r in csv.DictReader(f) if int(r["atom"]) in wanted]
    return median(radii) if radii else math.nan


def _seed_lines(rows: list[dict]) -> list[str]:
    """Mean ± 95 % interval over SAE seeds (initialisation and batch order) at the middle layer."""
    lines = []
    for backbone in sorted({r["backbone"] for r in rows}):
        seeds = [r for r in rows if r["backbone"] == backbone and r.get("kind") in ("depth", "seed")]
        layer = next((r["layer"] for r in seeds if r.get("kind") == "seed"), None)
        if layer is None:
            continue
        group = [r for r in seeds if r["layer"] == layer]
        if not lines:
            cols = [c for c in SAE_COLUMNS if any(r.get(c[0]) is not None for r in group)]
            lines += ["| backbone | layer | " + " | ".join(c[1] for c in cols) + " |",
                      "|---|---|" + "---|" * len(cols)]
        cells = [fmt(interval([r.get(key) if isinstance(r.get(key), (int, float)) else math.nan for r in group]),
                     spec.lstrip("+")) for key, _, spec in cols]
        lines.append(f"| {backbone} | {layer} | " + " | ".join(cells) + " |")
    if lines:
        lines = ["SAE seeds (each its own initialisation and batch order) at the middle layer, mean ± 95 % interval "
                 "(n = seeds):", ""] + lines + [""]
    return lines


def _size_lines(rows: list[dict], out: Path) -> list[str]:
    """Dictionary size at the middle layer: do the locality numbers depend on it?"""
    sizes = [r for r in rows if r.get("kind") == "size"]
    if not sizes:
        return []
    keys = [("sae/fvu", "FVU", ".5f"), ("sae/dead_fraction", "dead", ".3f"),
            ("atoms/mass_radius90_median", "r90 (median)", ".3f"), ("atoms/tiling_ratio", "tiling ratio", ".2f"),
            ("atoms/content_alignment_median", "content alignment", ".3f"),
            ("ablation/max_drop_db", "max atom drop [dB]", ".2f")]
    lines = ["Dictionary size at the middle layer (seed 0):", "",
             "| backbone | layer | atoms | " + " | ".join(k[1] for k in keys) + " | run |",
             "|---|---|---|" + "---|" * len(keys) + "---|"]
    for backbone in sorted({r["backbone"] for r in sizes}):
        layer = next(r["layer"] for r in sizes if r["backbone"] == backbone)
        group = [r for r in rows if r["backbone"] == backbone and r["layer"] == layer and r["seed"] == 0
                 and r.get("kind") in ("depth", "size")]
        for r in sorted(group, key=lambda r: r.get("n_atoms", 0)):
            lines.append(f"| {backbone} | {layer} | {r.get('n_atoms', '—')} | "
                         + " | ".join(_cell(r.get(k), spec) for k, _, spec in keys) + f" | `{rel(r['run'], out)}` |")
        radii = [r["atoms/mass_radius90_median"] for r in group
                 if isinstance(r.get("atoms/mass_radius90_median"), float)]
        if len(radii) > 1 and min(radii) > 0:
            lines.append(f"| {backbone} | {layer} | largest / smallest r90 | {max(radii) / min(radii):.2f} × |"
                         + " |" * len(keys))
    return lines + [""]


# -- finding 2: what the report reads, written beside it (and exported) so every number can be recomputed ------
INDEX_FILE, ATOMS_FILE = "finding2_runs.csv", "finding2_atoms.csv"
INDEX_COLUMNS = ["dataset", "cohort", "backbone", "layer", "encoder", "kind", "n_atoms", "seed", "run"]
COMPACT_ATOM_COLUMNS = ["atom", "support_fraction", "mass_radius90", "max_drop_db", "align_edges"]


def write_finding2_tables(out: Path, rows: list[dict]) -> None:
    """``finding2_runs.csv`` (one row per SAE run: what it is and where, relative to ``out``) and
    ``finding2_atoms.csv`` (the per-atom columns the report reads: each run's most damaging atoms, rows of its
    ``atoms/atoms.csv``).  Everything else the finding-2 section states is in each run's ``summary.json``."""
    import csv

    with open(out / INDEX_FILE, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(INDEX_COLUMNS)
        for r in rows:
            w.writerow([r.get("dataset", ""), r.get("cohort", 0), r["backbone"], r["layer"], r["encoder"],
                        r.get("kind", "depth"), r.get("n_atoms", ""), r["seed"], rel(r["run"], out)])
    with open(out / ATOMS_FILE, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", *COMPACT_ATOM_COLUMNS])
        for r in rows:
            table = Path(r["run"]) / "atoms" / "atoms.csv"
            wanted = set(r.get("ablation/worst_atoms") or [])
            if not wanted or not table.is_file():
                continue
            with open(table) as t:
                for a in csv.DictReader(t):
                    if int(a["atom"]) in wanted:
                        w.writerow([rel(r["run"], out), *(a[c] for c in COMPACT_ATOM_COLUMNS)])


def load_finding2_rows(root: Path) -> list[dict]:
    """The finding-2 rows from ``root`` (a study's ``--out`` or its ``--export``): ``finding2_runs.csv``, each
    run's ``summary.json``, and ``worst_r90`` (median 90 %-mass radius of the run's most damaging atoms) from
    ``finding2_atoms.csv``."""
    import csv
    import json
    from statistics import median

    radii: dict[str, list[float]] = {}
    with open(root / ATOMS_FILE) as f:
        for a in csv.DictReader(f):
            radii.setdefault(a["run"], []).append(float(a["mass_radius90"]))
    rows = []
    with open(root / INDEX_FILE) as f:
        for r in csv.DictReader(f):
            summary = json.loads((root / r["run"] / "summary.json").read_text())
            rows.append({**summary, "dataset": r["dataset"], "cohort": int(r["cohort"]), "backbone": r["backbone"],
                         "layer": int(r["layer"]), "encoder": r["encoder"], "kind": r["kind"],
                         "n_atoms": int(r["n_atoms"]) if r["n_atoms"] else None, "seed": int(r["seed"]),
                         "run": str(root / r["run"]),
                         "worst_r90": median(radii[r["run"]]) if radii.get(r["run"]) else math.nan})
    return rows


def finding2_lines(rows: list[dict], out: Path) -> list[str]:
    from inr_lightning.study.claims import judge

    if rows and "worst_r90" not in rows[0]:   # rows straight from the runs (``sae-depths``): read atoms.csv
        rows = [dict(r, worst_r90=worst_atoms_r90(r["run"], r.get("ablation/worst_atoms") or [])) for r in rows]
    lines = ["SAEs on the encoder activations of the seed-0 cohorts at each depth; the untrained control at each "
             "control depth is a cohort whose layers 0..j kept their random initialisation, frozen, with everything "
             "above trained on the same images. Its INR PSNR (`sae/inr_psnr`, in the table) is usually far below "
             "the trained cohort's, so its PSNR and ablations are not comparable with the trained SAE's; the "
             "`finding2` profile decides the claims over cohorts with each backbone's own control. Metrics on the "
             f"full grid; definitions in `docs/sae.md`; per-atom numbers from `{ATOMS_FILE}`.", "",
             "#### Claim by claim", "",
             "| claim | deciding numbers | verdict |", "|---|---|---|"]
    lines += [f"| {c['claim']} | {c['numbers']} | {c['verdict']} |" for c in judge(rows)]
    lines += ["", "#### Every SAE", ""]
    depth = [r for r in rows if r.get("kind", "depth") in ("depth", "control")]
    lines += sae_table(depth, out) + [""]
    lines += _seed_lines(rows) + _size_lines(rows, out)
    for r in depth:
        for name in ("atoms/gallery.png", "atoms/worst_atoms.png", "curves.png"):
            image = Path(r["run"]) / name
            if image.is_file():
                lines.append(f"![{r['backbone']} layer {r['layer']} ({r['encoder']}): {image.name}]({rel(image, out)})")
    return lines + [""]


# -- finding 2 over cohorts (the finding2 profile) ---------------------------------------------------------
def _iv(d: dict, spec: str = ".3f") -> str:
    from inr_lightning.study.claims import iv

    return iv(d, spec)


def _word(flag: bool | None, yes: str = "**yes**", no: str = "no") -> str:
    return "—" if flag is None else (yes if flag else no)


def finding2_cohort_lines(rows: list[dict], ds: str, out: Path, backbones: list[str]) -> list[str]:
    """One dataset's finding 2 over cohorts: SAE gates, each backbone against its own control at every depth
    (with both INRs' PSNR), memorisation, the worst atom, dictionary size, the claims; one SAE's per-atom
    bootstrap only as a description."""
    from inr_lightning.study import claims as c

    mine = [r for r in rows if r.get("dataset") == ds]
    n = len({r["cohort"] for r in mine})
    lines = [f"Unit of replication: the cohort ({n} cohort seeds per backbone, one SAE per cohort and depth); each "
             "number is a mean over cohorts ± the 95 % t half-width (n = cohorts), differences paired by cohort "
             "seed where both come from it (trained vs its own control), Welch where the cohorts are independent "
             "(SIREN vs FFMLP, dataset vs dataset). A claim holds at a depth only where the difference clears the "
             "one-sided 95 % bound. The per-atom medians are each SAE's value; their bootstrap intervals describe "
             f"one SAE (last table) and decide nothing. Per-run records: `{INDEX_FILE}`, each run's `summary.json`, "
             f"per-atom rows `{ATOMS_FILE}`. Definitions and nulls: `docs/sae.md`.", "",
             "#### SAE gates (means over cohorts)", "",
             "SAEs train on a fixed pool of continuous coordinates (`data/train_coords` of them) and are measured "
             "on the image grid; *held-out FVU* is at coordinates no training step drew. Targets (the 128×128 "
             f"benchmark's): FVU ≤ {', '.join(f'{v:g}' for v in c.SAE_TARGETS['siren_fvu'].values())} at SIREN "
             f"depths 0–2, dead ≤ {100 * c.SAE_TARGETS['dead']:.0f} %, PSNR cost ≤ {c.SAE_TARGETS['psnr_drop']:g} dB, "
             f"held-out / training FVU ≤ {c.SAE_TARGETS['heldout_over_train']:g} (the FVU targets were set at "
             "128×128, width 256: at another size they are a yardstick, not a gate).", "",
             "| backbone | encoder | layer | FVU (grid) | FVU training coords | FVU held-out coords | held-out / training "
             "| values per parameter | dead | INR PSNR [dB] | PSNR cost [dB] | misses |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for backbone in backbones:
        for kind, encoder in (("depth", "cohort"), ("control", "untrained")):
            for j in c.layers_of(mine, ds, backbone, kind):
                g = c.sae_gates(mine, ds, backbone, j, kind)
                lines.append(f"| {backbone} | {encoder} | {j} | {_iv(g['fvu'], '.5f')} | {_iv(g['fvu_train'], '.5f')} | "
                             f"{_iv(g['fvu_heldout'], '.5f')} | {_iv(g['ratio'], '.2f')} | "
                             f"{_iv(g['values_per_parameter'], '.1f')} | {_iv(g['dead'], '.3f')} | "
                             f"{_iv(g['inr_psnr'], '.2f')} | {_iv(g['psnr_drop'], '.2f')} | "
                             f"{'; '.join(g['misses']) or 'none'} |")
    lines += ["", f"#### Each backbone against its own untrained control (PSNR and ablations compared only where the "
              f"two INRs lie within {c.COMPARABLE_GAP_DB:g} dB)", "",
              "| backbone | layer | INR PSNR trained / control [dB] | r90 / uniform: trained, control, trained − control "
              "| tiling ratio (sub-pixel null): trained, control | worst atom [dB]: trained, control |",
              "|---|---|---|---|---|---|"]
    for backbone in backbones:
        r90 = c.versus_own_control(mine, c.R90_REL, ds, backbone, "below")
        tiles = {d["layer"]: d for d in c.versus_own_control(mine, c.TILING, ds, backbone, "above")}
        for d in r90:
            j, p = d["layer"], d["psnr"]
            worst = [c.over_cohorts(c.cohort_values(mine, "ablation/max_drop_db", dataset=ds, backbone=backbone,
                                                    layer=j, kind=k)) for k in ("depth", "control")]
            damage = f"{_iv(worst[0], '.2f')}, {_iv(worst[1], '.2f')}" if p["comparable"] else \
                f"not comparable (PSNR gap {p['gap']:.1f} dB)"
            t = tiles.get(j)
            lines.append(f"| {backbone} | {j} | {p['a']:.2f} / {p['b']:.2f} | {_iv(d['trained'])}, {_iv(d['control'])}, "
                         f"{_iv(d['diff'], '+.3f')} | "
                         + (f"{_iv(t['trained'], '.2f')}, {_iv(t['control'], '.2f')}" if t else "—")
                         + f" | {damage} |")
    lines += ["", "#### Memorisation: edge alignment with the cohort's own images − with its held-out images", "",
              "Per atom, the largest |Pearson r| with the Sobel edges of the cohort's own images minus that with as "
              "many held-out images; the SAE's median, over cohorts.", "",
              "| backbone | layer | trained | untrained control |", "|---|---|---|---|"]
    for backbone in backbones:
        trained = {d["layer"]: d for d in c.memorisation(mine, ds, backbone)}
        control = {d["layer"]: d for d in c.memorisation(mine, ds, backbone, "control")}
        for j in sorted(trained):
            lines.append(f"| {backbone} | {j} | {_iv(trained[j]['diff'], '+.4f')} | "
                         f"{_iv(control[j]['diff'], '+.4f') if j in control else '—'} |")
    lines += ["", "#### The worst atom is an extreme value", "",
              "| backbone | largest single-atom drop (per cohort, over depths) [dB] | per-atom median [dB] | "
              "per-atom 99th percentile [dB] |", "|---|---|---|---|"]
    for backbone in backbones:
        w = c.worst_atom(mine, ds, backbone)
        lines.append(f"| {backbone} | {_iv(w['max'], '.2f')} | {_iv(w['q50'], '.4f')} | {_iv(w['q99'], '.2f')} |")
    lines += ["", f"The paper's \"up to {c.PAPER_MAX_DROP_DB} dB\" is the maximum of this kind: the one worst atom of "
              "a whole dictionary, not what an atom typically costs.", ""]
    sized = [b for b in backbones if c.size_dependence(mine, c.R90_REL, ds, b)]
    if sized:
        lines += ["#### Dictionary size (middle depth, means over cohorts)", "",
                  "| backbone | atoms | r90 / uniform | tiling ratio (sub-pixel null) | FVU held-out coords | values per "
                  "parameter |", "|---|---|---|---|---|---|"]
        for backbone in sized:
            cols = [c.size_dependence(mine, key, ds, backbone) for key in
                    (c.R90_REL, c.TILING, "sae/fvu_heldout_coords", "sae/values_per_parameter")]
            for size in cols[0]:
                lines.append(f"| {backbone} | {size} | {_iv(cols[0][size])} | {_iv(cols[1][size], '.2f')} | "
                             f"{_iv(cols[2][size], '.5f')} | {_iv(cols[3][size], '.1f')} |")
        lines += [""]
    lines += ["#### Claim by claim (over cohorts)", "", "| claim | deciding numbers | verdict |", "|---|---|---|"]
    lines += [f"| {x['claim']} | {x['numbers']} | {x['verdict']} |" for x in c.judge_cohorts(mine, ds)]
    first = sorted(r for r in {x["cohort"] for x in mine})[0] if mine else 0
    one = [r for r in mine if r["cohort"] == first and r.get("kind", "depth") in ("depth", "control")]
    lines += ["", f"#### One SAE per depth, described (cohort seed {first}; medians with per-atom bootstrap "
              "intervals in its `summary.json`)", ""] + sae_table(one, out) + [""]
    return lines


def finding2_across_lines(rows: list[dict], datasets: list[str], backbones: list[str]) -> list[str]:
    """Content independence: each architecture's locality and tiling on two datasets' cohorts."""
    from inr_lightning.study import claims as c

    if len(datasets) < 2:
        return []
    pair = (datasets[0], datasets[1])
    lines = [f"## Finding 2 across datasets: does the content change the atoms? (`{pair[0]}` − `{pair[1]}`)", "",
             "Independent cohorts (Welch interval of the difference of cohort means). *Same within the interval*: "
             "the two-sided 95 % interval contains 0 — no difference this many cohorts can see, up to its half-width.",
             "", "| backbone | metric | layer | " + " | ".join(f"`{d}`" for d in pair) + " | difference | same within "
             "the interval |", "|---|---|---|---|---|---|---|"]
    verdicts = {}
    for backbone in backbones:
        for key, name, spec in ((c.R90_REL, "r90 / uniform", ".3f"), (c.TILING, "tiling ratio (sub-pixel)", ".2f")):
            for d in c.content_independence(rows, key, backbone, pair):
                verdicts.setdefault(backbone, []).append(d["same"])
                lines.append(f"| {backbone} | {name} | {d['layer']} | {_iv(d[pair[0]], spec)} | {_iv(d[pair[1]], spec)} "
                             f"| {_iv(d['diff'], '+' + spec)} | {_word(d['same'], '**same**', 'differs')} |")
    siren = verdicts.get("siren", [])
    lines += ["", "Claim *SIREN atoms tile independent of the cohort's content*: "
              + ("undecided (needs ≥ 2 cohorts per dataset)" if not siren or all(v is None for v in siren) else
                 "**holds** (same within the interval at every depth, both metrics)" if all(siren) else
                 f"fails ({sum(not v for v in siren if v is not None)} of {len(siren)} depth × metric cells differ)"),
              ""]
    return lines


def write_finding2_report(out: Path, profile, results: dict, rows: list[dict], backbones: list[str], seeds: int,
                          elapsed: float, command: str) -> Path:
    """``report.md`` of the finding-2 profile, from the tables it writes first (``write_finding2_tables``) and
    reads back (``load_finding2_rows``): the same function on an ``--export`` gives the same section."""
    import json

    write_finding2_tables(out, rows)
    stages = [json.loads(p.read_text()) for p in out.glob("**/stage.json")]
    datasets = list(results)
    lines = [f"# Finding 2 over cohorts: the `{profile.name}` profile", "",
             f"Made by `{command}` at commit `{git_commit()}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
             f"wall-clock {elapsed / 60:.1f} min for this command on {platform.machine()} "
             f"({os.environ.get('OMP_NUM_THREADS') or os.cpu_count()} CPU threads); its {len(stages)} runs "
             f"{run_cost(stages)}. Encoders: {profile.layers} shared "
             f"layers of width {profile.width} + a linear head per image, {profile.resolution}×{profile.resolution} px; "
             f"{seeds} cohort seeds per backbone and dataset. Paths are relative to this file.", "",
             "## What this profile cuts", ""]
    lines += [f"- {x}" for x in profile.generated_cuts(seeds) + list(profile.cuts)] + [""]
    lines += finding2_report_body(out, results, backbones)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def finding2_report_body(root: Path, results: dict, backbones: list[str]) -> list[str]:
    """Everything below the header: cohorts, then finding 2 per dataset and across datasets, read from
    ``root``'s tables (``load_finding2_rows``)."""
    from inr_lightning.study.profiles import DATASETS

    rows = load_finding2_rows(root)
    datasets = list(results) or list(dict.fromkeys(r["dataset"] for r in rows))
    body = []
    for ds in datasets:   # the cohorts first: the finding-2 part below reads only the exported tables
        cohorts = (results.get(ds) or {}).get("cohorts") or {}
        if cohorts:
            body += [f"## Cohorts of `{ds}`: {DATASETS[ds].label}", "",
                     "| backbone | seed | lr | val/psnr [dB] | run |", "|---|---|---|---|---|"]
            for (backbone, seed), (ckpt, s) in sorted(cohorts.items()):
                body.append(f"| {backbone} | {seed} | {_lr(ckpt):g} | {s['val/psnr']:.2f} | "
                            f"`{rel(ckpt.parent.parent, root)}` |")
            body.append("")
    for ds in datasets:
        body += [f"### Finding 2 (`{ds}`): {DATASETS[ds].label}", ""] + finding2_cohort_lines(rows, ds, root, backbones)
    return body + finding2_across_lines(rows, datasets, backbones)


def finding2_section(text: str) -> str:
    """The finding-2 part of a finding-2 report (from the first dataset's finding-2 heading to the end)."""
    start = text.index("### Finding 2 (")
    return text[start:]


def cohort_quality(result: dict, backbones: list[str]) -> dict:
    """The cohort gate of one dataset's result (``run_dataset``): every cohort seed's PSNR per backbone."""
    return judge_cohorts({b: [s["val/psnr"] for (bb, _), (_, s) in sorted(result["cohorts"].items()) if bb == b]
                          for b in backbones})


def sweep_runs(result: dict, ds: str, view: str, backbone: str, seeds: int) -> Runs:
    """Every cohort seed's sweep of one backbone and held-out set, as ``Runs``."""
    runs = Runs()
    for seed in range(seeds):
        for label, s in result["sweeps"][ds, view, backbone, seed].items():
            runs.add(seed, label, s)
    return runs


# -- the whole report --------------------------------------------------------------------------------------
def write_study_report(out: Path, profile, results: dict, backbones: list[str], seeds: int, elapsed: float,
                       command: str) -> Path:
    from inr_lightning.study.profiles import DATASETS

    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    threads = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count())
    import json

    stages = [json.loads(p.read_text()) for p in out.glob("**/stage.json")]
    lines = [f"# Cohort INR study: `{profile.name}` profile", "",
             f"Made by `{command}` at commit `{git_commit()}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
             f"wall-clock {elapsed / 60:.1f} min for this command on {platform.machine()} ({threads} CPU threads); "
             f"its {len(stages)} runs {run_cost(stages)}. "
             f"Encoders: {profile.layers} shared layers of width {profile.width} + a linear head per image, "
             f"{profile.resolution}×{profile.resolution} px; {seeds} cohort seed(s), each also its fits' seed; "
             f"learning-rate schedule {profile.cohort_schedule} for the cohorts, {profile.fit_schedule} for the fits. "
             "Finding 1 treats the cohort as the unit of replication: every interval is a 95 % t-interval over "
             "cohort means (signals averaged within each cohort), n = cohorts; protocol differences are paired "
             "(same signal, same cohort). Paths are relative to this file.", "",
             "## What this profile cuts", ""]
    cuts = profile.generated_cuts(seeds) + list(profile.cuts)
    if not profile.claims:
        cuts.append(f"fits see {profile.coords_per_step} random coordinates per step, not the full grid: "
                    "its finding-1 tables claim nothing")
    lines += [f"- {c}" for c in cuts] or ["- nothing: the reference protocol (our GPU profile)"]
    lines += [""]
    glance = ["## Finding 1 at a glance", "",
              "Raw rule (argmax of stable rank); every form and reading is in the dataset's section.", "",
              "| dataset | held-out signals | backbone | gates | reading | share frozen | rule picks a best depth | "
              "auto − finetune [dB] (lower bound) | auto matches or beats finetune |",
              "|---|---|---|---|---|---|---|---|---|"]
    body = []
    sae_rows = [dict(r, dataset=ds, cohort=0) for ds, res in results.items() for r in res["sae"]]
    if sae_rows:   # the section reads what it exports: the runs' index, their summaries, the compact atom table
        write_finding2_tables(out, sae_rows)
        sae_rows = load_finding2_rows(out)
    for ds, res in results.items():
        split = next(s for (b, seed), (_, s) in sorted(res["cohorts"].items()) if seed == 0)
        body += [f"## Dataset `{ds}`: {DATASETS[ds].label}", "",
                 f"Split (from the cohort runs' data): {split['data/served']} images in each cohort, "
                 f"{split['data/num_heldout']} held out, {split.get('data/num_validation', 0)} for validation.", "",
                 "### Cohorts", "",
                 "| backbone | seed | lr | val/psnr [dB] | val/ssim | steps | run |", "|---|---|---|---|---|---|---|"]
        for (backbone, seed), (ckpt, s) in sorted(res["cohorts"].items()):
            lr = _lr(ckpt)
            body.append(f"| {backbone} | {seed} | {lr:g} | {s['val/psnr']:.2f} | {s.get('val/ssim', math.nan):.4f} | "
                        f"{s['trainer/global_step']} | `{rel(ckpt.parent.parent, out)}` |")
        if res["matching"]:
            n = res["matching"][0].get("seeds", 1)
            on = "seed 0" if n == 1 else f"the mean over seeds 0–{n - 1}"
            body += ["", f"Matched quality: the FFMLP cohort learning rate was chosen ({on}, PSNR capped at "
                     f"{CAP_DB:.0f} dB) as the one whose cohort PSNR comes closest to the SIREN cohort's; every later "
                     "section uses it for every seed.", "",
                     "| FFMLP lr | FFMLP val/psnr | SIREN val/psnr | gap [dB] | used |", "|---|---|---|---|---|"]
            for m in res["matching"]:
                body.append(f"| {m['lr']:g} | {m['psnr']:.2f} | {m['siren']:.2f} | {m['psnr'] - m['siren']:+.2f} | "
                            f"{'**yes**' if m['chosen'] else 'no'} |")
            chosen = next(m for m in res["matching"] if m["chosen"])
            raw = chosen["psnr"] - chosen["siren"]
            gap = chosen.get("psnr_capped", capped(chosen["psnr"])) - chosen.get("siren_capped", capped(chosen["siren"]))
            body.append("")
            body.append(f"Gap of the chosen FFMLP ({on}): {raw:+.2f} dB, {gap:+.2f} dB with both capped at "
                        f"{CAP_DB:.0f} dB (matching compares capped values{', each run capped before the mean' if n > 1 else ''}) — " + (
                            "within 1 dB." if abs(gap) <= 1 else "**not** within 1 dB: no tried learning rate "
                            "matches; the backbones are compared at unequal cohort quality."))
        cohort_gate = cohort_quality(res, backbones)
        body += ["", f"Cohort quality (mean over {seeds} cohort seed(s) of PSNR capped at {CAP_DB:.0f} dB): "
                 + ", ".join(f"{b} {m:.2f} dB" for b, m in cohort_gate["means"].items())
                 + f"; gap {cohort_gate['gap']:.2f} dB (the gate asks ≥ {cohort_gate['level']:.0f} dB each and ≤ "
                 f"{cohort_gate['max_gap']:.0f} dB apart: {'passes' if cohort_gate['passes'] else 'fails'})."]
        body += lr_search_lines(res.get("lr_search") or {}, out)
        views = sorted({key[1] for key in res["sweeps"]}, key=lambda v: v != "heldout")
        for view in views:
            what = "the cohort run's held-out signals" if view == "heldout" else \
                f"{view} slices of the same volume (the cohort saw only axial ones)"
            body += ["", f"### Finding 1 on {what}", ""]
            by_backbone = {}
            for backbone in backbones:
                runs = by_backbone[backbone] = sweep_runs(res, ds, view, backbone, seeds)
                sweep = "sweep" if view == "heldout" else f"sweep_{view}"
                body += [fit_protocol_line(out / ds / "seed0" / sweep / backbone / "finetune", profile.claims), ""]
                lines1, g, verdicts = finding1_lines(backbone, runs, out, f"{ds}/seed*/{sweep}/{backbone}",
                                                     cohort_gate, profile.transfer_level)
                body += lines1
                gate_word = "pass" if not g["failed"] else g["failed"]
                for reading in READINGS:
                    v = verdicts[reading, "raw"]
                    share = v["frozen_share"]
                    rows = ["—", "—"] if g["failed"] else [row_words(v, k) for k in ("picks_best", "noninferior")]
                    glance.append(
                        f"| {ds} | {view} | {backbone} | {gate_word} | {reading} | {100 * share:.1f} % | {rows[0]} | "
                        f"{fmt(v['auto_minus_finetune'])} ({lower(v['auto_minus_finetune'])}) | {rows[1]} |")
            figure = figures / f"sweep_{ds}_{view}.png"
            sweep_figure(by_backbone, figure, f"{ds}, {view}")
            body += [f"![final PSNR per freeze depth, {ds} {view}]({rel(figure, out)})", ""]
        if res["sae"]:
            body += [f"### Finding 2 (`{ds}`)", ""] + finding2_lines([r for r in sae_rows if r["dataset"] == ds], out)
    text = "\n".join(lines + glance + [""] + body)
    path = out / "report.md"
    path.write_text(text + "\n")
    return path


def fit_protocol_line(run: Path, claims: bool) -> str:
    """How the fits ran, read from one fit run's resolved ``config.yaml`` (not typed)."""
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    grid = "full grid every step" if data.get("coords_per_step") is None else \
        f"**{data['coords_per_step']} random coordinates per step** (claims nothing)"
    return (f"Fits: {grid}, {cfg['trainer']['max_steps']} steps, Adam lr {float(model['lr']):g}, loss "
            f"{model['loss_reduction']} over signals; PSNR recorded at steps "
            f"{', '.join(map(str, model['record_steps']))} (from `{run.name}/config.yaml` of each sweep)."
            + ("" if claims else " This profile claims nothing."))


def lr_search_lines(searches: dict[str, list[dict]], out: Path) -> list[str]:
    """The fit learning-rate search of each backbone (validation signals, cohort seed 0)."""
    if not searches:
        return []
    lines = ["", "Fit learning rate per backbone: `scratch` and `finetune` fits of the cohort run's *validation* "
             f"signals (neither cohort nor held-out; cohort seed 0) at each rate; the rate with the highest mean capped "
             "final PSNR of the two is used by every fit of that backbone below.", "",
             "| backbone | lr | scratch [dB] | finetune [dB] | mean | used | runs |", "|---|---|---|---|---|---|---|"]
    for backbone, rows in searches.items():
        for r in rows:
            lines.append(f"| {backbone} | {r['lr']:g} | {r['scratch']:.2f} | {r['finetune']:.2f} | {r['score']:.2f} | "
                         f"{'**yes**' if r['chosen'] else 'no'} | `{rel(r['run'], out)}/scratch`, `{rel(r['run'], out)}/finetune` |")
    return lines


def _lr(ckpt: Path) -> float:
    import yaml

    cfg = yaml.safe_load((ckpt.parent.parent / "config.yaml").read_text())
    return float(cfg["model"]["init_args"]["lr"])


# -- the regime map ----------------------------------------------------------------------------------------
OUTCOMES = {"holds": "both rows hold", "partly": "one row holds", "fails": "both rows fail",
            "not converged": "gate: not converged", "no transfer": "gate: no transfer",
            "cohorts": "gate: cohorts not comparable", "at the cap": "a row holds only at the cap"}


def regime_cell(runs: Runs, cohort: dict, level: float, reading: str = "through") -> dict:
    """Gates and the two rows of finding 1 (raw rule) for one cell, backbone and budget."""
    g = gates(runs, cohort, level)
    v = rule_verdict(runs, reading, "raw")
    if g["failed"]:
        outcome = ("cohorts" if "cohorts" in g["failed"] else "not converged" if "converged" in g["failed"]
                   else "no transfer")
    else:
        rows = [held(v, "picks_best"), held(v, "noninferior")]
        by_cap = bool(v["picks_best"]) != rows[0] or bool(v["noninferior"]) != rows[1]
        outcome = "at the cap" if by_cap else "holds" if all(rows) else "partly" if any(rows) else "fails"
    return {"gates": g, "verdict": v, "outcome": outcome}


def regime_figure(cells: dict, path: Path, resolutions: list[int], widths: list[int], budgets: list[int],
                  backbones: list[str]) -> None:
    """One panel per (backbone, budget): resolution × width, each cell coloured by its outcome."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    names = list(OUTCOMES)
    cmap = ListedColormap(["#2ca02c", "#bcbd22", "#d62728", "#7f7f7f", "#9467bd", "#c7c7c7", "#17becf"])
    fig, axes = plt.subplots(len(backbones), len(budgets), figsize=(3.2 * len(budgets), 2.8 * len(backbones)),
                             squeeze=False)
    for i, backbone in enumerate(backbones):
        for j, budget in enumerate(budgets):
            ax = axes[i][j]
            grid = [[names.index(cells[r, w, backbone, budget]["outcome"]) if (r, w, backbone, budget) in cells
                     else math.nan for r in resolutions] for w in widths]
            ax.imshow(grid, cmap=cmap, vmin=0, vmax=len(names) - 1, origin="lower")
            for a, w in enumerate(widths):
                for b, r in enumerate(resolutions):
                    if (r, w, backbone, budget) in cells:
                        ax.text(b, a, cells[r, w, backbone, budget]["outcome"], ha="center", va="center", fontsize=7)
            ax.set_xticks(range(len(resolutions)), [f"{r}²" for r in resolutions])
            ax.set_yticks(range(len(widths)), [str(w) for w in widths])
            ax.set_xlabel("resolution")
            ax.set_ylabel("width")
            ax.set_title(f"{backbone}, {budget} fit steps", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def regime_cost_lines(records: dict[Path, dict], profile) -> list[str]:
    """``## What it cost``: CPU time and wall-clock per cell (``records``: ``stage.json`` by path under the map's
    folder, ``r<R>_w<W>/…``) and per half of ``scripts/cpu_study.sh`` (``Profile.halves``): on two idle cores the
    map takes about its slower half's CPU time."""
    per = {f"{r}x{w}": [s for p, s in records.items() if p.parts[0] == f"r{r}_w{w}"] for r, w in profile.grid}
    lines = ["## What it cost", "",
             "CPU time is each run's process, every thread: what the run costs on an idle machine; wall-clock also "
             "counts what shared the machine. A resumed run counts only its part after the last interruption.", "",
             "| cell | runs | resumed | CPU time [min] | wall-clock [min] |", "|---|---|---|---|---|"]
    for cell, stages in per.items():
        resumed = sum(bool(s.get("resumed")) for s in stages)
        lines.append(f"| {cell.replace('x', '², width ', 1)} | {len(stages)} | {resumed} | "
                     f"{cpu_minutes(stages):.1f} | {wall_minutes(stages):.1f} |")
    halves = [(h[1:], sum(cpu_minutes(per[c]) for c in h[1:])) for h in profile.halves()]
    lines += ["", "`scripts/cpu_study.sh` runs the cells as two one-thread processes side by side: "
              + "; ".join(f"{', '.join(cells)}: {minutes:.1f} CPU-min" for cells, minutes in halves)
              + f". On two idle cores the map takes about its slower half, {max(m for _, m in halves):.1f} min."]
    if note := pre_cpu_note(list(records.values())):
        lines[-1] += f" {note}."
    return lines + [""]


def write_regime_report(out: Path, profile, results: dict, backbones: list[str], seeds: int, elapsed: float,
                        command: str) -> Path:
    """``report.md`` of a regime map: finding 1 (raw rule, *through*) per (resolution, width, backbone, budget),
    every cell passing its gates or naming the one it fails, as one table and one figure."""
    import json

    records = {p.relative_to(out): json.loads(p.read_text()) for p in out.glob("**/stage.json")}
    stages = list(records.values())
    cells, rows = {}, []
    for (res, width, ds), result in sorted(results.items()):
        cohort = cohort_quality(result, backbones)
        for backbone in backbones:
            full = sweep_runs(result, ds, "heldout", backbone, seeds)
            lr = next((r["lr"] for r in (result["lr_search"] or {}).get(backbone, []) if r["chosen"]), None)
            for budget in profile.budgets:
                c = regime_cell(full.truncated(budget) if budget != full.final_step else full, cohort,
                                profile.transfer_level)
                cells[res, width, backbone, budget] = c
                g, v = c["gates"], c["verdict"]
                conv = max(x["gain"]["mean"] for x in g["convergence"].values())
                rows.append(
                    f"| {res}² | {width} | {backbone} | {budget} | {'—' if lr is None else f'{lr:g}'} | "
                    f"{cohort['means'][backbone]:.1f} (gap {cohort['gap']:.1f}) | {conv:+.2f} | "
                    f"{fmt(g['transfer']['budget'])} | {fmt(v['auto_minus_finetune'])} ({lower(v['auto_minus_finetune'])}) "
                    f"| {', '.join(map(str, v['picks'].values()))} / {', '.join(map(str, v['best']))} | "
                    f"{row_words(v, 'picks_best', g['failed'])} | {row_words(v, 'noninferior', g['failed'])} | "
                    f"`r{res}_w{width}/{ds}` |")
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    resolutions = sorted({r for r, _ in profile.grid})
    widths = sorted({w for _, w in profile.grid})
    figure = figures / "regime_map.png"
    regime_figure(cells, figure, resolutions, widths, list(profile.budgets), backbones)
    counts = {o: sum(c["outcome"] == o for c in cells.values()) for o in OUTCOMES}
    lines = [f"# Where finding 1 holds: the `{profile.name}` regime map", "",
             f"Made by `{command}` at commit `{git_commit()}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
             f"wall-clock {elapsed / 60:.1f} min for this command on {platform.machine()} "
             f"({os.environ.get('OMP_NUM_THREADS') or os.cpu_count()} CPU threads); its {len(stages)} runs "
             f"{run_cost(stages)}. Each cell is the profile's "
             f"protocol at that resolution and width ({profile.layers} layers), {seeds} cohort seeds per cell "
             f"(intervals over cohorts, df = {seeds - 1}), judged at {' and '.join(map(str, profile.budgets))} fit "
             "steps (the same fits: the learning rate is constant). Rule: raw argmax of stable rank, *through* "
             "reading. Definitions of the gates and rows: `docs/study.md`.", "",
             "## What this profile cuts", ""]
    lines += [f"- {c}" for c in profile.generated_cuts(seeds) + list(profile.cuts)]
    lines += ["", "## The map", "", f"![finding 1 per cell]({rel(figure, out)})", "",
              "Cells: " + ", ".join(f"{OUTCOMES[o]} {n}" for o, n in counts.items() if n) + ".", "",
              "| resolution | width | backbone | budget | fit lr | cohort PSNR [dB] | worst last-20 % gain [dB] | "
              "finetune − scratch [dB] | auto − finetune [dB] (lower bound) | picks / best set | rule picks a best "
              "depth | auto matches or beats finetune | runs |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|", *rows, ""]
    lines += regime_cost_lines(records, profile)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
