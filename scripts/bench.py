#!/usr/bin/env python
"""One command for every speed claim of inr_lightning (issue 5): prints one table, optionally writes it.

    python scripts/bench.py                 # full sizes, ≤ 10 min on a 2-core CPU
    python scripts/bench.py --quick         # tiny sizes, seconds (what tests/test_bench.py runs)
    python scripts/bench.py --device cuda --bf16 --out gpu.md   # on a GPU (compile is on by default)

Every ratio is measured *within the run*: the two sides are timed in interleaved repeats (A, B, A, B, …)
after a warm-up and the median of each is taken, so background load hits both alike.  Times are wall-clock
around whole training steps (forward, backward, optimizer step), with ``cuda.synchronize`` on a GPU.

Rows (ids as in the issue):

a. **Training step vs the hardware.**  A cohort step (``CohortINRModule.training_step`` + backward + Adam;
   SIREN, width 256, 5 shared layers, 10 linear heads, 4096 coordinates).  FLOPs counted: only the linear
   layers' GEMMs, 2·P·in·out per forward product; backward adds 2·P·in·out for the weight gradient of every
   trainable layer and 2·P·in·out for the input gradient of every layer that has a trainable layer below it
   (not the first layer: coordinates need no gradient).  Sines, the loss, Adam and bias additions are *not*
   counted (they are real cost that the step pays and the baseline does not).  Baseline: the very same list of
   GEMMs (same shapes, same shared-input/batched layouts) as bare ``torch.matmul``/``bmm`` calls on
   preallocated tensors.  Ratio = the step's FLOP rate / the GEMMs' rate; target ≥ 0.8.  Measured eager (the
   hand-fused SIREN layer, ``nn/fused.py``) and with ``compile: true`` (``torch.compile`` of the training
   forward, plain ops for inductor to fuse).
b. **Frozen-prefix caching.**  ``SignalFitModule`` (5 signals, 64×64) with layers 0..k frozen and the
   cached prefix vs ``protocol: finetune``.  The *trainable share* is the FLOP share (as in a.) of layers
   k+1.. and the heads in the finetune step; target: cached / finetune ≤ share + 10 % of it (× 1.10).
   Also: cached vs uncached step at the same depth, and the largest weight difference after 3 steps.
c. **Many signals at once.**  16 signals as one batched ``SignalFitModule`` (finetune, full grid) vs 16
   single-signal fits one after another, each a real ``Trainer.fit`` (no logger, checkpoints or validation:
   the same for both).  Throughput = signal-steps per second in steady state (the median interval between
   training steps after the first two, a 12-step fit each; repeats interleaved); the fixed cost of each
   single fit (Trainer, checkpoint, data) is reported in a note, not counted.  Target ≥ 1.0, at 64×64 (c1,
   the study's size) and 32×32 (c2).  c3/c4: the same comparison as bare training steps without a Trainer, for
   the kernels' share: on a CPU both sides run the same GEMMs, so batching wins only on per-op overhead and
   where the copy-blocked SIREN layer (``nn/fused.py``) keeps each group of signals in cache.
d. **SAE step.**  TopK SAE (4096 atoms, k = 32, d = 256, batch 8192): the step of ``SAEModule`` (forward,
   MSE + AuxK, backward, decoder-gradient projection, Adam, renormalisation) with the sparse decode
   (``embedding_bag`` over the k selected rows) vs the same step decoding dense codes (``z @ W_dec``);
   equal loss and gradients within fp32 tolerance.  Target ≥ 2×.
e. **All-atom ablation.**  ``ablate_all`` (both variants) for 4096 atoms × 10 images at 64×64 vs
   ``ablate_naive`` (both variants) per atom.  Naive is timed on a sample of firing atoms and *extrapolated*
   to all 4096 (time per atom × 4096); the sampled atoms' drops must equal the fast path's.  Target ≥ 50×.
f. **Time to quality.**  A SIREN cohort (width 256, 5 layers) is trained here on the 10 cohort MRI slices at
   32×32 (short, for time); then the 5 held-out slices are fitted with ``auto`` (stable-rank depth, rule
   ``through``) + caching, ``finetune`` and ``scratch`` (Adam 1e-4, full grid), in round-robin chunks of steps
   so that load hits all three alike.  Time = training wall-clock (evaluation excluded) until the mean PSNR of
   the 5 slices reaches 30 dB — or, if one protocol never gets there, the best level all three reach; PSNR is
   checked every few steps (the granularity is in the note).
g. **Scaling.**  Cohort step time as coordinates grow 4096 → 65 536 (10 signals; ``step_chunk: 4096``, so
   a big step runs as chunks of the reference size, ``INRFitModule``) and the cohort grows 10 → 100 signals
   (4096 coordinates); target: at most linear (ratio ≤ 1.25 × the size ratio).  ``g1b``: the 65 536-coordinate
   step in one piece, for comparison (its activations leave the cache).  Peak memory
   of each stage at the reference sizes: on CPU the peak RSS increase over the stage's steps (each stage in a
   fresh subprocess, ``ru_maxrss``), on CUDA ``max_memory_allocated``.

Like the CLI, the benchmark keeps freed memory for reuse (``inr_lightning/runtime.py``); ``--no-retain``
measures glibc's default, which page-faults every big activation in anew each step.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from inr_lightning.analysis import stable_rank  # noqa: E402
from inr_lightning.analysis.ablation import ablate_all, ablate_naive  # noqa: E402
from inr_lightning.callbacks.freeze import choose_freeze_depth  # noqa: E402
from inr_lightning.data import SignalDataModule, Synthetic  # noqa: E402
from inr_lightning.data.grid import make_grid  # noqa: E402
from inr_lightning.models import CohortINRModule, SignalFitModule  # noqa: E402
from inr_lightning.models.base import to_unit  # noqa: E402
from inr_lightning.nn import CohortINR, INRConfig  # noqa: E402
from inr_lightning.nn.sae import TopKSAE  # noqa: E402
from inr_lightning.runtime import retain_freed_memory  # noqa: E402

warnings.filterwarnings("ignore")  # ``self.log`` outside a Trainer warns once per key; nothing else is expected
logging.getLogger("lightning").setLevel(logging.ERROR)  # row c runs ~100 short Trainer fits: no banners

FULL = dict(width=256, layers=5, signals=10, coords=4096, depth=2, fit_signals=5, fit_res=64, batched=16,
            batched_res=(64, 32), batched_steps=12, sae_atoms=4096, sae_k=32, sae_d=256, sae_batch=8192, abl_atoms=4096, abl_images=10,
            abl_res=64, abl_layer=2, abl_sample=6, ttq_res=32, ttq_cohort_steps=250, ttq_max_steps=300,
            ttq_every=5, ttq_db=30.0, scale_coords=(4096, 16384, 65536), scale_signals=(10, 30, 100), repeats=5,
            step_repeats=40)
QUICK = dict(width=32, layers=3, signals=4, coords=256, depth=1, fit_signals=3, fit_res=16, batched=4,
             batched_res=(16, 8), batched_steps=6, sae_atoms=256, sae_k=8, sae_d=32, sae_batch=512, abl_atoms=256, abl_images=3,
             abl_res=16, abl_layer=1, abl_sample=3, ttq_res=16, ttq_cohort_steps=20, ttq_max_steps=20,
             ttq_every=10, ttq_db=30.0, scale_coords=(256, 1024), scale_signals=(4, 16), repeats=3,
             step_repeats=5)


# -- plumbing ---------------------------------------------------------------------------------------------------
@dataclass
class Row:
    key: str
    what: str
    this: float
    base: float | None
    ratio: float | None
    target: str
    ok: bool | None
    unit: str = ""


class Ctx:
    def __init__(self, args, sizes: dict) -> None:
        self.args, self.s = args, sizes
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.notes: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="inr_bench_"))

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def amp(self):
        if self.args.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def interleaved(ctx: Ctx, fns: dict, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, timed A, B, A, B, … after ``warmup`` calls of each."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    ctx.sync()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            ctx.sync()
            t0 = time.perf_counter()
            fn()
            ctx.sync()
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def write_cohort_ckpt(path: Path, cfg: INRConfig, num_signals: int, net: CohortINR | None = None, seed: int = 0):
    """A cohort-stage checkpoint in Lightning's layout (what ``SignalFitModule`` loads)."""
    if net is None:
        torch.manual_seed(seed)
        net = CohortINR(cfg, num_signals, 1)
    torch.save({"hyper_parameters": {"net": cfg.to_dict(), "num_signals": num_signals, "out_channels": 1,
                                     "_class_path": "inr_lightning.models.CohortINRModule"},
                "state_dict": {f"net.{k}": v.detach().cpu() for k, v in net.state_dict().items()}}, path)
    return path


def grid_batch(ctx: Ctx, res: int, num_signals: int, seed: int = 0) -> dict:
    coords = make_grid(res, res)
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(num_signals, len(coords), 1, generator=g) * 2 - 1
    return {"coords": coords.to(ctx.device), "target": target.to(ctx.device), "num_coords": len(coords),
            "index": torch.arange(len(coords), device=ctx.device)}


def coords_batch(ctx: Ctx, num_coords: int, num_signals: int) -> dict:
    side = int(math.isqrt(num_coords))
    assert side * side == num_coords, num_coords
    return grid_batch(ctx, side, num_signals)


def module_stepper(ctx: Ctx, module, batch: dict):
    """One training step of an ``INRFitModule`` outside a Trainer: hooks, step, backward, Adam."""
    module.to(ctx.device).train()
    opt = module.configure_optimizers()
    hook = getattr(module, "on_train_batch_start", None)

    def step():
        hook(batch, 0)
        with ctx.amp():
            loss = module.training_step(batch, 0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def fit_module(ctx: Ctx, ckpt: Path, num_signals: int, protocol: str, depth: int | None = None,
               cache: bool = True, compile: bool = False) -> SignalFitModule:
    module = SignalFitModule(str(ckpt), protocol=protocol, freeze_depth=depth if protocol == "freeze" else None,
                             num_signals=num_signals, record_steps=[], cache_frozen_prefix=cache, compile=compile)
    module.setup("fit")  # freezes (protocol freeze) or freezes nothing (finetune / scratch)
    return module.to(ctx.device)


def prime_cache(module: SignalFitModule, batch: dict) -> None:
    if module.cache_frozen_prefix and module.freeze_depth is not None and module.freeze_depth >= 0:
        module.build_prefix_cache(batch["coords"])


# -- FLOP accounting ---------------------------------------------------------------------------------------------
def step_gemms(cfg: INRConfig, num_coords: int, num_signals: int, encoder_copies: int = 1, first_trainable: int = 0,
               skip_frozen: bool = False, out_channels: int = 1) -> list[tuple[int, int, int, int, str]]:
    """The GEMMs of one training step as ``(batch, m, k, n, layer)`` (FLOPs 2·b·m·k·n each), in the layouts
    ``BatchedLinear`` uses.  Layers below ``first_trainable`` are frozen: forward only (none if
    ``skip_frozen``, i.e. cached), no gradients."""
    assert cfg.backbone == "siren", "FLOP accounting is written for the SIREN benchmark"
    P, W, c = num_coords, cfg.width, encoder_copies
    gemms = []

    def linear(fin, fout, copies, shared_input, trainable, input_grad, name):
        if shared_input:  # x (P, in) @ W (in, copies·out)
            gemms.append((1, P, fin, copies * fout, f"{name} fwd"))
            if trainable:
                gemms.append((1, copies * fout, P, fin, f"{name} dW"))
            if input_grad:
                gemms.append((1, P, copies * fout, fin, f"{name} dx"))
        else:             # bmm over copies
            gemms.append((copies, P, fin, fout, f"{name} fwd"))
            if trainable:
                gemms.append((copies, fout, P, fin, f"{name} dW"))
            if input_grad:
                gemms.append((copies, P, fout, fin, f"{name} dx"))

    for j in range(cfg.shared_layers):
        trainable = j >= first_trainable
        if not trainable and skip_frozen:
            continue
        linear(2 if j == 0 else W, W, c, shared_input=j == 0 or c == 1, trainable=trainable,
               input_grad=j > first_trainable, name=f"enc{j}")
    n = num_signals
    for h in range(cfg.head_layers - 1):
        linear(W, W, n, shared_input=h == 0 and c == 1, trainable=True, input_grad=True, name=f"head{h}")
    linear(W, out_channels, n, shared_input=cfg.head_layers == 1 and c == 1, trainable=True,
           input_grad=first_trainable < cfg.shared_layers or cfg.head_layers > 1, name="out")
    return gemms


def gemm_flops(gemms) -> float:
    return float(sum(2 * b * m * k * n for b, m, k, n, _ in gemms))


def gemm_runner(ctx: Ctx, gemms):
    dtype = torch.bfloat16 if ctx.args.bf16 else torch.float32
    ops = []
    for b, m, k, n, _ in gemms:
        x = torch.randn(b, m, k, device=ctx.device, dtype=dtype)
        y = torch.randn(b, k, n, device=ctx.device, dtype=dtype)
        ops.append((x[0], y[0]) if b == 1 else (x, y))

    def run():
        for x, y in ops:
            torch.matmul(x, y)
    return run


# -- a: step vs hardware ---------------------------------------------------------------------------------------
def bench_a(ctx: Ctx) -> list[Row]:
    s = ctx.s
    cfg = INRConfig(width=s["width"], shared_layers=s["layers"])
    batch = coords_batch(ctx, s["coords"], s["signals"])
    gemms = step_gemms(cfg, s["coords"], s["signals"])
    flops = gemm_flops(gemms)
    fns = {"matmul": gemm_runner(ctx, gemms)}
    torch.manual_seed(0)
    fns["eager"] = module_stepper(ctx, CohortINRModule(cfg, num_signals=s["signals"]), batch)
    compiled_ok = not ctx.args.no_compile
    if compiled_ok:
        torch.manual_seed(0)
        try:
            step = module_stepper(ctx, CohortINRModule(cfg, num_signals=s["signals"], compile=True), batch)
            t0 = time.perf_counter()
            step()  # compiles
            ctx.notes.append(f"a: torch.compile took {time.perf_counter() - t0:.1f} s (first step, excluded)")
            fns["compiled"] = step
        except Exception as err:  # noqa: BLE001
            compiled_ok = False
            ctx.notes.append(f"a: torch.compile unavailable: {type(err).__name__}: {str(err).splitlines()[0][:160]}")
    # One sample is one ~30 ms step: many of them, or the median moves by ±2 % from run to run.
    t = interleaved(ctx, fns, repeats=s["step_repeats"], warmup=3)
    rate = {k: flops / v / 1e9 for k, v in t.items()}
    what = (f"cohort step FLOP rate vs matmul of its GEMMs (SIREN {s['width']}×{s['layers']}, {s['signals']} "
            f"signals, {s['coords']} coords), GFLOP/s")
    rows = [Row("a1", f"{what}, eager", rate["eager"], rate["matmul"], rate["eager"] / rate["matmul"], "≥ 0.8",
                rate["eager"] / rate["matmul"] >= 0.8)]
    if compiled_ok:
        rows.append(Row("a2", f"{what}, compile: true", rate["compiled"], rate["matmul"],
                        rate["compiled"] / rate["matmul"], "≥ 0.8", rate["compiled"] / rate["matmul"] >= 0.8))
        rows.append(Row("a3", "cohort step time, eager / compiled (ms; ratio = speed-up of compile)",
                        t["compiled"] * 1e3, t["eager"] * 1e3, t["eager"] / t["compiled"], "report", None))
    ctx.notes.append(f"a: {fmt(flops / 1e9)} GFLOP per step counted ({len(gemms)} GEMMs); step "
                     f"{t['eager'] * 1e3:.1f} ms eager, GEMMs alone {t['matmul'] * 1e3:.1f} ms")
    return rows


# -- b: frozen-prefix caching ----------------------------------------------------------------------------------
def bench_b(ctx: Ctx) -> list[Row]:
    s = ctx.s
    cfg = INRConfig(width=s["width"], shared_layers=s["layers"])
    ckpt = write_cohort_ckpt(ctx.tmp / "b.ckpt", cfg, 4)
    m, k, P = s["fit_signals"], s["depth"], s["fit_res"] ** 2
    batch = grid_batch(ctx, s["fit_res"], m)
    torch.manual_seed(1)
    finetune = fit_module(ctx, ckpt, m, "finetune")
    torch.manual_seed(1)
    cached = fit_module(ctx, ckpt, m, "freeze", k, cache=True)
    prime_cache(cached, batch)
    torch.manual_seed(1)
    plain = fit_module(ctx, ckpt, m, "freeze", k, cache=False)
    # Equality first, from identical starting weights: 3 steps cached vs uncached.
    steps = {"cached": module_stepper(ctx, cached, batch), "plain": module_stepper(ctx, plain, batch)}
    for _ in range(3):
        steps["cached"]()
        steps["plain"]()
    diff = max(float((a - b).abs().max()) for a, b in zip(cached.state_dict().values(), plain.state_dict().values())
               if a.is_floating_point())
    steps["finetune"] = module_stepper(ctx, finetune, batch)
    t = interleaved(ctx, steps, repeats=s["repeats"], warmup=1)
    full = step_gemms(cfg, P, m, encoder_copies=m)
    share = gemm_flops([g for g in full if not g[4].startswith("enc") or int(g[4].split()[0][3:]) > k]) \
        / gemm_flops(full)
    ratio = t["cached"] / t["finetune"]
    bound = share * 1.10
    return [
        Row("b1", f"step with layers 0..{k} frozen + cached vs finetune step ({m} signals, {s['fit_res']}², "
                  f"trainable share {share:.2f}), ms", t["cached"] * 1e3, t["finetune"] * 1e3, ratio,
            f"≤ {bound:.2f} (share × 1.10)", ratio <= bound),
        Row("b2", f"cached vs uncached step, same depth {k} (ms; ratio = speed-up)", t["cached"] * 1e3,
            t["plain"] * 1e3, t["plain"] / t["cached"], "report", None),
        Row("b3", "cached = uncached: max abs Δ weight after 3 steps", diff, 0.0, None, "≤ 1e-6", diff <= 1e-6),
    ]


# -- c: batched vs sequential --------------------------------------------------------------------------------
class StepClock(L.Callback):
    """Wall-clock at the end of every training step (after a device sync): the interval between two is one
    whole step of the fit loop — data, hooks, logging, forward, backward, optimizer."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx, self.ends = ctx, []

    def on_train_batch_end(self, *args) -> None:
        self.ctx.sync()
        self.ends.append(time.perf_counter())


def trainer_fit(ctx: Ctx, ckpt: Path, res: int, num_signals: int, steps: int, seed: int = 0) -> tuple[float, float]:
    """One ``Trainer.fit`` of ``num_signals`` synthetic images (finetune, full grid) for ``steps`` steps, nothing
    written: (median step interval after the first two steps, wall-clock of the whole fit incl. setup)."""
    t0 = time.perf_counter()
    clock = StepClock(ctx)
    data = SignalDataModule(Synthetic(size=res, num_images=num_signals, seed=seed), resolution=res,
                            num_signals=num_signals, steps_per_epoch=steps)
    model = SignalFitModule(str(ckpt), protocol="finetune", num_signals=num_signals, record_steps=[])
    trainer = L.Trainer(accelerator=ctx.device.type, devices=1, max_steps=steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[clock],
                        precision="bf16-mixed" if ctx.args.bf16 else "32-true")
    trainer.fit(model, data)
    ctx.sync()
    return statistics.median(b - a for a, b in zip(clock.ends[2:], clock.ends[3:])), time.perf_counter() - t0


def bench_c(ctx: Ctx) -> list[Row]:
    s = ctx.s
    cfg = INRConfig(width=s["width"], shared_layers=s["layers"])
    ckpt = write_cohort_ckpt(ctx.tmp / "c.ckpt", cfg, 4)
    n, steps, fits, bare = s["batched"], s["batched_steps"], [], []
    for res in s["batched_res"]:
        # Whole fits, as users run them: one batched fit vs n fits one after another, in interleaved repeats.
        trainer_fit(ctx, ckpt, res, 1, steps)  # warm-up
        times = {"batched": [], "sequential": [], "setup": []}
        for _ in range(s["repeats"]):
            times["batched"].append(trainer_fit(ctx, ckpt, res, n, steps)[0])
            singles = [trainer_fit(ctx, ckpt, res, 1, steps, seed=1 + j) for j in range(n)]  # an image each
            times["sequential"].append(sum(step for step, _ in singles))
            times["setup"].append(statistics.mean(wall - steps * step for step, wall in singles))
        a, b = (n / statistics.median(times[k]) for k in ("batched", "sequential"))
        fits.append(Row(f"c{len(fits) + 1}", f"{n} signals as one batched fit vs {n} sequential fits (Trainer.fit, "
                                             f"finetune, {res}²), signal-steps/s", a, b, a / b, "≥ 1.0", a / b >= 1.0))
        ctx.notes.append(f"c ({res}²): fits of {steps} steps, throughput from the median step interval after the "
                         f"first two; each single fit's fixed cost (Trainer, checkpoint, data, first steps: "
                         f"{statistics.median(times['setup']) * 1e3:.0f} ms) is not in the ratio")
        # The bare training steps (no Trainer): the kernels' share of the comparison.
        batch = grid_batch(ctx, res, n)
        batched = module_stepper(ctx, fit_module(ctx, ckpt, n, "finetune"), batch)
        singles = [module_stepper(ctx, fit_module(ctx, ckpt, 1, "finetune"), {**batch, "target": batch["target"][j:j + 1]})
                   for j in range(n)]

        def sequential(singles=singles):
            for step in singles:
                step()
        t = interleaved(ctx, {"batched": batched, "sequential": sequential}, repeats=s["repeats"])
        a, b = n / t["batched"], n / t["sequential"]
        bare.append(Row(f"c{len(s['batched_res']) + len(bare) + 1}", f"the same as bare training steps (no Trainer, "
                                                                      f"{res}²), signal-steps/s", a, b, a / b,
                        "report", None))
    return fits + bare


# -- d: SAE sparse vs dense ------------------------------------------------------------------------------------
def sae_stepper(ctx: Ctx, sae: TopKSAE, x: torch.Tensor, dense: bool, aux_weight: float = 1 / 32):
    """``SAEModule.training_step`` + ``on_before_optimizer_step`` + ``optimizer_step`` without a Trainer."""
    opt = torch.optim.Adam(sae.parameters(), lr=4e-4)

    def loss_fn():
        if dense:
            pre = sae.pre_activations(x)
            vals, idx = pre.topk(sae.k, dim=-1)
            x_hat = sae.decode_dense(sae.dense_codes(vals, idx))
        else:
            x_hat, vals, idx, pre = sae(x)
        sse = ((x_hat - x) ** 2).sum()
        aux = sae.aux_sse(x, x_hat, pre)
        return (sse + aux_weight * aux) / (x.shape[0] * x.shape[1])

    def step():
        loss = loss_fn()
        loss.backward()
        sae.project_decoder_grad()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sae.normalize_decoder()
        with torch.no_grad():
            sae.update_dead(torch.ones(sae.n_atoms, device=x.device), x.shape[0])
    return step, loss_fn


def bench_d(ctx: Ctx) -> list[Row]:
    s = ctx.s
    g = torch.Generator().manual_seed(0)
    x = torch.randn(s["sae_batch"], s["sae_d"], generator=g).to(ctx.device)
    saes = {}
    for name in ("sparse", "dense"):
        sae = TopKSAE(s["sae_d"], s["sae_atoms"], s["sae_k"], seed=0).to(ctx.device)
        sae.init_b_pre(x[:1024], "mean")
        saes[name] = sae
    # Equal results: loss and gradients of the same model, both decodes.
    grads, losses = {}, {}
    for name, sae in saes.items():
        _, loss_fn = sae_stepper(ctx, sae, x, dense=name == "dense")
        loss = loss_fn()
        loss.backward()
        losses[name] = float(loss)
        grads[name] = {k: p.grad.clone() for k, p in sae.named_parameters()}
        sae.zero_grad(set_to_none=True)
    rel = max(float((grads["sparse"][k] - grads["dense"][k]).norm() / grads["dense"][k].norm().clamp_min(1e-30))
              for k in grads["dense"])
    rel = max(rel, abs(losses["sparse"] - losses["dense"]) / abs(losses["dense"]))
    fns = {name: sae_stepper(ctx, sae, x, dense=name == "dense")[0] for name, sae in saes.items()}
    t = interleaved(ctx, fns, repeats=s["repeats"], warmup=1)
    return [
        Row("d1", f"SAE step, sparse vs dense decode ({s['sae_atoms']} atoms, k={s['sae_k']}, batch "
                  f"{s['sae_batch']}, d={s['sae_d']}), ms; ratio = speed-up", t["sparse"] * 1e3, t["dense"] * 1e3,
            t["dense"] / t["sparse"], "≥ 2", t["dense"] / t["sparse"] >= 2),
        Row("d2", "SAE sparse = dense: max relative difference of loss and gradients", rel, 0.0, None, "≤ 1e-5",
            rel <= 1e-5),
    ]


# -- e: all-atom ablation ----------------------------------------------------------------------------------------
def ablation_setup(ctx: Ctx):
    s = ctx.s
    torch.manual_seed(0)
    cfg = INRConfig(width=s["width"], shared_layers=s["layers"])
    net = CohortINR(cfg, s["abl_images"], 1).to(ctx.device).eval().requires_grad_(False)
    coords = make_grid(s["abl_res"], s["abl_res"]).to(ctx.device)
    x = net.activations(coords)[s["abl_layer"]][0]
    target = (torch.rand(s["abl_images"], len(coords), 1, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    sae = TopKSAE(s["width"], s["abl_atoms"], s["sae_k"], seed=0).to(ctx.device).requires_grad_(False)
    sae.init_b_pre(x, "mean")
    return net, sae, x, target.to(ctx.device)


def bench_e(ctx: Ctx) -> list[Row]:
    s = ctx.s
    net, sae, x, target = ablation_setup(ctx)
    layer = s["abl_layer"]
    ctx.sync()
    t0 = time.perf_counter()
    fast = ablate_all(sae, net, layer, x, target)
    ctx.sync()
    t_fast = time.perf_counter() - t0
    firing = torch.nonzero(fast["support_count"] > 0).flatten()
    sample = firing[torch.linspace(0, len(firing) - 1, s["abl_sample"]).round().long()].tolist()
    err = 0.0
    ctx.sync()
    t0 = time.perf_counter()
    for atom in sample:
        for ep in (False, True):
            drop, drop_support = ablate_naive(sae, net, layer, x, target, atom, error_preserving=ep)
            ref = (fast["drop_ep"], fast["drop_ep_support"]) if ep else (fast["drop"], fast["drop_support"])
            err = max(err, float((drop.double() - ref[0][atom]).abs().max()),
                      float((drop_support.double() - ref[1][atom]).abs().max()))
    ctx.sync()
    t_naive = (time.perf_counter() - t0) / len(sample) * s["abl_atoms"]
    ctx.notes.append(f"e: naive timed on {len(sample)} atoms (both variants each) and extrapolated ×"
                     f"{s['abl_atoms'] / len(sample):.0f} to all {s['abl_atoms']}; fast path forwarded "
                     f"{fast['pairs']} (coordinate, atom) rows per variant")
    return [
        Row("e1", f"all-atom ablation, fast vs naive ({s['abl_atoms']} atoms × {s['abl_images']} images, "
                  f"{s['abl_res']}², both variants), s; naive extrapolated", t_fast, t_naive, t_naive / t_fast,
            "≥ 50", t_naive / t_fast >= 50),
        Row("e2", "ablation fast = naive: max abs Δ PSNR drop on the sampled atoms, dB", err, 0.0, None, "≤ 1e-3",
            err <= 1e-3),
    ]


# -- f: time to quality ------------------------------------------------------------------------------------------
def bench_f(ctx: Ctx) -> list[Row]:
    from inr_lightning.data import MRISlices, SignalDataModule

    s = ctx.s
    res, cfg = s["ttq_res"], INRConfig(width=s["width"], shared_layers=s["layers"])
    kw = dict(resolution=res, channels=1, aspect="pad", num_signals=10, num_heldout=5)
    source = MRISlices()
    cohort_dm = SignalDataModule(source, split="cohort", **kw)
    held_dm = SignalDataModule(source, split="heldout", **kw)

    def full(dm):
        return {"coords": dm.coords.to(ctx.device), "target": dm.targets.to(ctx.device),
                "num_coords": len(dm.coords), "index": torch.arange(len(dm.coords), device=ctx.device)}

    torch.manual_seed(0)
    cohort = CohortINRModule(cfg, num_signals=cohort_dm.num_signals)
    step = module_stepper(ctx, cohort, full(cohort_dm))
    t0 = time.perf_counter()
    for _ in range(s["ttq_cohort_steps"]):
        step()
    cohort_psnr = psnr_of(cohort, full(cohort_dm))
    ctx.notes.append(f"f: cohort stage {s['ttq_cohort_steps']} steps at {res}² in {time.perf_counter() - t0:.0f} s, "
                     f"cohort PSNR {cohort_psnr:.1f} dB")
    ckpt = write_cohort_ckpt(ctx.tmp / "f.ckpt", cfg, cohort_dm.num_signals, net=cohort.net)
    batch = full(held_dm)
    m = held_dm.num_signals
    modules = {}
    torch.manual_seed(2)
    auto = SignalFitModule(str(ckpt), protocol="auto", num_signals=m, record_steps=[])
    profile = [stable_rank(w) for w in auto.loaded_encoder_weights]
    auto.set_freeze_depth(choose_freeze_depth(profile, "through")[1])
    auto.setup("fit")
    auto.to(ctx.device)
    prime_cache(auto, batch)
    modules["auto+cache"] = auto
    for protocol in ("finetune", "scratch"):
        torch.manual_seed(2)
        modules[protocol] = fit_module(ctx, ckpt, m, protocol)
    steppers = {k: module_stepper(ctx, v, batch) for k, v in modules.items()}
    curves = {k: [(0.0, psnr_of(v, batch))] for k, v in modules.items()}
    clock = {k: 0.0 for k in modules}
    every, level = s["ttq_every"], s["ttq_db"]
    for _ in range(0, s["ttq_max_steps"], every):  # round-robin chunks: load hits all protocols alike
        active = [k for k in modules if curves[k][-1][1] < level]
        if not active:
            break
        for k in active:
            ctx.sync()
            t0 = time.perf_counter()
            for _ in range(every):
                steppers[k]()
            ctx.sync()
            clock[k] += time.perf_counter() - t0
            curves[k].append((clock[k], psnr_of(modules[k], batch)))
    best = {k: max(p for _, p in c) for k, c in curves.items()}
    shared = min(level, min(best.values()))

    def time_to(k):
        return next(t for t, p in curves[k] if p >= shared)
    tt = {k: time_to(k) for k in modules}
    ctx.notes.append(f"f: auto froze layers 0..{auto.freeze_depth} (stable ranks "
                     f"{', '.join(f'{r:.1f}' for r in profile)}); level {shared:.1f} dB "
                     f"({'30 dB' if shared == level else 'best level all three reach'}), checked every {every} "
                     f"steps; best PSNR " + ", ".join(f"{k} {v:.1f}" for k, v in best.items()) +
                     "; steps to level " + ", ".join(f"{k} {every * next(i for i, (_, p) in enumerate(curves[k]) if p >= shared)}"
                                                      for k in modules))
    what = f"time to {shared:.1f} dB, 5 held-out MRI slices at {res}², s"
    return [
        Row("f1", f"{what}: auto+cache vs finetune (ratio = speed-up)", tt["auto+cache"], tt["finetune"],
            tt["finetune"] / max(tt["auto+cache"], 1e-9), "report", None),
        Row("f2", f"{what}: auto+cache vs scratch (ratio = speed-up)", tt["auto+cache"], tt["scratch"],
            tt["scratch"] / max(tt["auto+cache"], 1e-9), "report", None),
    ]


@torch.no_grad()
def psnr_of(module, batch) -> float:
    pred = to_unit(module.predict_grid(batch["coords"]))
    mse = ((pred - to_unit(batch["target"])) ** 2).mean(dim=(1, 2))
    return float((-10 * torch.log10(mse)).mean())


# -- g: scaling and memory ---------------------------------------------------------------------------------------
def bench_g(ctx: Ctx) -> list[Row]:
    s = ctx.s
    cfg = INRConfig(width=s["width"], shared_layers=s["layers"])
    fns = {}
    for p in s["scale_coords"]:
        torch.manual_seed(0)
        # step_chunk = the reference size: steps beyond it run in chunks of it (INRFitModule); unchunked below
        fns[f"P{p}"] = module_stepper(ctx, CohortINRModule(cfg, num_signals=s["signals"], step_chunk=s["coords"]),
                                      coords_batch(ctx, p, s["signals"]))
    p1 = s["scale_coords"][-1]
    torch.manual_seed(0)
    fns["whole"] = module_stepper(ctx, CohortINRModule(cfg, num_signals=s["signals"]), coords_batch(ctx, p1, s["signals"]))
    for n in s["scale_signals"][1:]:
        torch.manual_seed(0)
        fns[f"N{n}"] = module_stepper(ctx, CohortINRModule(cfg, num_signals=n), coords_batch(ctx, s["coords"], n))
    t = interleaved(ctx, fns, repeats=max(2, s["repeats"] - 2), warmup=1)
    p0 = s["scale_coords"][0]
    n0, n1 = s["scale_signals"][0], s["scale_signals"][-1]
    t_n0 = t[f"P{s['coords']}"] if f"P{s['coords']}" in t else t[f"P{p0}"]
    ctx.notes.append("g: step ms by coordinates (step_chunk " + str(s["coords"]) + ") "
                     + ", ".join(f"{p}: {t[f'P{p}'] * 1e3:.1f}" for p in s["scale_coords"])
                     + f"; by signals ({s['coords']} coords) {n0}: {t_n0 * 1e3:.1f}, "
                     + ", ".join(f"{n}: {t[f'N{n}'] * 1e3:.1f}" for n in s["scale_signals"][1:]))
    rp, rn = t[f"P{p1}"] / t[f"P{p0}"], t[f"N{n1}"] / t_n0
    rw = t["whole"] / t[f"P{p0}"]
    rows = [
        Row("g1", f"cohort step, {p1} vs {p0} coordinates ({s['signals']} signals; step_chunk={s['coords']}), ms; "
                  f"linear = {p1 // p0}", t[f"P{p1}"] * 1e3, t[f"P{p0}"] * 1e3, rp, f"≤ {1.25 * p1 / p0:.0f} (≤ linear)",
            rp <= 1.25 * p1 / p0),
        Row("g1b", f"the same, {p1} coordinates as one whole step (no step_chunk), ms", t["whole"] * 1e3,
            t[f"P{p0}"] * 1e3, rw, "report", None),
        Row("g2", f"cohort step, {n1} vs {n0} signals ({s['coords']} coords), ms; linear = {n1 // n0}",
            t[f"N{n1}"] * 1e3, t_n0 * 1e3, rn, f"≤ {1.25 * n1 / n0:.1f} (≤ linear)", rn <= 1.25 * n1 / n0),
    ]
    labels = {"cohort": f"cohort step ({s['signals']} signals, {s['coords']} coords)",
              "finetune": f"fit step, finetune ({s['fit_signals']} signals, {s['fit_res']}²)",
              "cached": f"fit step, layers 0..{s['depth']} frozen + cache (incl. the cache)",
              "sae": f"SAE step (batch {s['sae_batch']}, {s['sae_atoms']} atoms)",
              "ablation": f"all-atom ablation ({s['abl_atoms']} atoms × {s['abl_images']} images, {s['abl_res']}²)"}
    for i, (stage, label) in enumerate(labels.items()):
        mb = peak_memory(ctx, stage)
        rows.append(Row(f"g{3 + i}", f"peak memory, {label}, MB", mb, None, None, "report", None))
    ctx.notes.append("g: peak memory = " + ("CUDA max_memory_allocated over 2 steps" if ctx.cuda else
                                           "peak RSS increase over 2 steps, each stage in a fresh process"))
    return rows


def peak_memory(ctx: Ctx, stage: str) -> float:
    if ctx.cuda:
        return memory_stage(ctx, stage)
    cmd = [sys.executable, __file__, "--_memory", stage, "--device", "cpu"] + (["--quick"] if ctx.args.quick else []) \
        + ([f"--threads={ctx.args.threads}"] if ctx.args.threads else []) + (["--no-retain"] if ctx.args.no_retain else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"memory stage {stage} failed: {out.stderr[-500:]}")
    return float(out.stdout.strip().splitlines()[-1])


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


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
        ckpt = write_cohort_ckpt(ctx.tmp / "m.ckpt", cfg, 4)
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
        raise ValueError(stage)
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
    peak = _status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return max(0.0, peak - base)


# -- table -------------------------------------------------------------------------------------------------------
def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.3g}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def table(rows: list[Row]) -> str:
    lines = ["| id | what | this | baseline | ratio | target | pass |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ok = "—" if r.ok is None else ("pass" if r.ok else "FAIL")
        lines.append(f"| {r.key} | {r.what.replace('|', '/')} | {fmt(r.this)} | {fmt(r.base)} | {fmt(r.ratio)} | {r.target} | {ok} |")
    return "\n".join(lines)


def machine(ctx: Ctx) -> str:
    if ctx.cuda:
        return f"{torch.cuda.get_device_name(ctx.device)} (CUDA {torch.version.cuda})"
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


BENCHES = {"a": bench_a, "b": bench_b, "c": bench_c, "d": bench_d, "e": bench_e, "f": bench_f, "g": bench_g}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds); for tests")
    parser.add_argument("--only", default="abcdefg", help="which benchmarks, e.g. 'abd' (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the INR steps (a, b, c, g) and GEMMs")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement of a")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) and notes to this file")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's); 1 is steadier on "
                        "a loaded machine, where a descheduled OpenMP thread stalls every parallel op")
    parser.add_argument("--_memory", help=argparse.SUPPRESS)
    parser.add_argument("--no-retain", action="store_true", help="leave malloc alone (the CLI keeps freed memory "
                        "for reuse, inr_lightning/runtime.py; this measures what that buys)")
    args = parser.parse_args(argv)
    if not args.no_retain:
        retain_freed_memory()  # as the CLI does
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = Ctx(args, QUICK if args.quick else FULL)
    if args._memory:
        try:
            print(memory_stage(ctx, args._memory))
        finally:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
        return 0
    start, load0 = time.perf_counter(), os.getloadavg()
    rows: list[Row] = []
    try:
        for key in args.only:
            t0 = time.perf_counter()
            rows.extend(BENCHES[key](ctx))
            print(f"[bench] {key} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    elapsed, load1 = time.perf_counter() - start, os.getloadavg()
    command = "python scripts/bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (f"machine: {machine(ctx)}; torch {torch.__version__}; device {ctx.device}"
              f"{' bf16' if args.bf16 else ''}\n"
              f"date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; command: `{command.strip()}`; "
              f"{elapsed:.0f} s; load average {load0[0]:.1f} at start, {load1[0]:.1f} at end")
    text = header + "\n\n" + table(rows) + "\n\nNotes:\n" + "\n".join(f"- {n}" for n in ctx.notes) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
