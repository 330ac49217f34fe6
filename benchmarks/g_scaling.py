"""g. Scaling and peak memory.

Measures the cohort step time as coordinates grow 4096 → 65 536 (10 signals; ``step_chunk: 4096``, so a big
step runs as chunks of the reference size) and as the cohort grows 10 → 100 signals (4096 coordinates).
Baseline: the step at the reference size.  Target: at most linear (ratio ≤ 1.25 × the size ratio).  g1b: the
65 536-coordinate step in one piece, reported.  g3–g7: peak memory of each stage at the reference sizes, on a
CPU the peak RSS increase over two steps (each stage in a fresh process), on CUDA ``max_memory_allocated``.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.d_sae import sae_stepper
from benchmarks.e_ablation import ablation_setup
from benchmarks.harness import (Ctx, Row, cohort_ckpt, coords_batch, fit_module, grid_batch, interleaved, module_stepper,
                                prime_cache)
from inr_lightning.analysis.ablation import ablate_all
from inr_lightning.models import CohortINRModule
from inr_lightning.nn import INRConfig
from inr_lightning.nn.sae import TopKSAE

ROOT = Path(__file__).resolve().parents[1]
QUICK_REASON_G1 = "a 256-coordinate chunk is per-op overhead, paid once per chunk"


def run(ctx: Ctx) -> list[Row]:
    s = ctx.s
    cfg = INRConfig(width=s["width"], shared_layers=s["layers"])
    fns = {}
    for p in s["scale_coords"]:
        torch.manual_seed(0)
        # step_chunk = the reference size: steps beyond it run in chunks of it; unchunked at the reference
        fns[f"P{p}"] = module_stepper(ctx, CohortINRModule(cfg, num_signals=s["signals"], step_chunk=s["coords"]),
                                      coords_batch(ctx, p, s["signals"]))
    p0, p1 = s["scale_coords"][0], s["scale_coords"][-1]
    torch.manual_seed(0)
    fns["whole"] = module_stepper(ctx, CohortINRModule(cfg, num_signals=s["signals"]),
                                  coords_batch(ctx, p1, s["signals"]))
    for n in s["scale_signals"][1:]:
        torch.manual_seed(0)
        fns[f"N{n}"] = module_stepper(ctx, CohortINRModule(cfg, num_signals=n), coords_batch(ctx, s["coords"], n))
    t = interleaved(ctx, fns, repeats=s["scale_repeats"], warmup=1)
    n0, n1 = s["scale_signals"][0], s["scale_signals"][-1]
    t_n0 = t[f"P{s['coords']}"]  # the reference step: s["coords"] coordinates, n0 signals
    ctx.notes.append("g: step ms by coordinates (step_chunk " + str(s["coords"]) + ") "
                     + ", ".join(f"{p}: {t[f'P{p}'] * 1e3:.1f}" for p in s["scale_coords"])
                     + f"; by signals ({s['coords']} coords) {n0}: {t_n0 * 1e3:.1f}, "
                     + ", ".join(f"{n}: {t[f'N{n}'] * 1e3:.1f}" for n in s["scale_signals"][1:]))
    rp, rn, rw = t[f"P{p1}"] / t[f"P{p0}"], t[f"N{n1}"] / t_n0, t["whole"] / t[f"P{p0}"]
    rows = [
        Row("g1", f"cohort step, {p1} vs {p0} coordinates ({s['signals']} signals; step_chunk={s['coords']}), ms; "
                  f"linear = {p1 // p0}", t[f"P{p1}"] * 1e3, t[f"P{p0}"] * 1e3, rp,
            *ctx.target(rp, "≤", 1.25 * p1 / p0, f"≤ {1.25 * p1 / p0:.0f} (≤ linear)", quick_reason=QUICK_REASON_G1)),
        Row("g1b", f"the same, {p1} coordinates as one whole step (no step_chunk), ms", t["whole"] * 1e3,
            t[f"P{p0}"] * 1e3, rw, "report", None),
        Row("g2", f"cohort step, {n1} vs {n0} signals ({s['coords']} coords), ms; linear = {n1 // n0}",
            t[f"N{n1}"] * 1e3, t_n0 * 1e3, rn,
            *ctx.target(rn, "≤", 1.25 * n1 / n0, f"≤ {1.25 * n1 / n0:.1f} (≤ linear)")),
    ]
    labels = {"cohort": f"cohort step ({s['signals']} signals, {s['coords']} coords)",
              "finetune": f"fit step, finetune ({s['fit_signals']} signals, {s['fit_res']}²)",
              "cached": f"fit step, layers 0..{s['depth']} frozen + cache (incl. the cache)",
              "sae": f"SAE step (batch {s['sae_batch']}, {s['sae_atoms']} atoms)",
              "ablation": f"all-atom ablation ({s['abl_atoms']} atoms × {s['abl_images']} images, {s['abl_res']}²)"}
    peaks = peak_memory(ctx, list(labels))
    for i, (stage, label) in enumerate(labels.items()):
        rows.append(Row(f"g{3 + i}", f"peak memory, {label}, MB", peaks[stage], None, None, "report", None))
    ctx.notes.append("g: peak memory = " + ("CUDA max_memory_allocated over 2 steps" if ctx.cuda else
                                           "peak RSS increase over 2 steps, each stage in a fresh process"))
    return rows


def peak_memory(ctx: Ctx, stages: list[str]) -> dict[str, float]:
    """Each stage's peak memory (MB): in this process on CUDA; on a CPU each in a fresh ``python -m benchmarks``,
    all at once (a process's peak RSS is its own, whatever runs beside it)."""
    if ctx.cuda:
        return {stage: memory_stage(ctx, stage) for stage in stages}
    a = ctx.args
    flags = ["--device", "cpu"] + (["--quick"] if a.quick else []) + ([f"--threads={a.threads}"] if a.threads else []) \
        + (["--no-retain"] if a.no_retain else [])
    procs = {stage: subprocess.Popen([sys.executable, "-m", "benchmarks", "--_memory", stage, *flags], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for stage in stages}
    peaks = {}
    for stage, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"memory stage {stage} failed: {err[-500:]}")
        peaks[stage] = float(out.strip().splitlines()[-1])
    return peaks


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM), so imports do not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_stage(ctx: Ctx, stage: str) -> float:
    """Build one stage at the reference size, run it twice, return its peak memory (MB)."""
    s = ctx.s
    cfg = INRConfig(width=s["width"], shared_layers=s["layers"])
    if stage == "cohort":
        run = module_stepper(ctx, CohortINRModule(cfg, num_signals=s["signals"]),
                             coords_batch(ctx, s["coords"], s["signals"]))
    elif stage in ("finetune", "cached"):
        ckpt = cohort_ckpt(ctx.tmp / "m.ckpt", cfg, 4)
        batch = grid_batch(ctx, s["fit_res"], s["fit_signals"])
        module = fit_module(ctx, ckpt, s["fit_signals"], "finetune" if stage == "finetune" else "freeze",
                            s["depth"], cache=True)
        step = module_stepper(ctx, module, batch)

        def run():
            prime_cache(module, batch)
            step()
    elif stage == "sae":
        x = torch.randn(s["sae_batch"], s["sae_d"]).to(ctx.device)
        sae = TopKSAE(s["sae_d"], s["sae_atoms"], s["sae_k"], seed=0).to(ctx.device)
        sae.init_b_pre(x[:1024], "mean")
        run = sae_stepper(ctx, sae, x, dense=False)[0]
    elif stage == "ablation":
        net, sae, x, target = ablation_setup(ctx)

        def run():
            ablate_all(sae, net, s["abl_layer"], x, target)
    else:
        raise ValueError(f"unknown memory stage {stage!r}")
    ctx.sync()
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
        base = torch.cuda.memory_allocated(ctx.device)
        run()
        run()
        ctx.sync()
        return (torch.cuda.max_memory_allocated(ctx.device) - base) / 2**20
    base = _rss_mb()
    reset = _reset_peak_rss()
    run()
    run()
    peak = _peak_rss_mb() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return max(0.0, peak - base)
