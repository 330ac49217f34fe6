"""What every benchmark row shares: sizes, interleaved repeated timing, training steppers, FLOP accounting, the table.

Every ratio is measured *within the run*: the two sides are timed in interleaved repeats (A, B, A, B, …)
after a warm-up and the median of each is taken, so background load hits both alike.  Times are wall-clock
around whole training steps (forward, backward, optimizer step), with ``cuda.synchronize`` on a GPU.

FLOPs (rows a and b): only the linear layers' GEMMs, 2·P·in·out per forward product; backward adds 2·P·in·out
for the weight gradient of every trainable layer and 2·P·in·out for the input gradient of every layer that has
a trainable layer below it (not the first: coordinates need no gradient).  Sines, the loss, Adam and bias
additions are not counted: they are real cost that a step pays and its GEMM baseline does not.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from inr_lightning.checkpoints import load_cohort, save_cohort
from inr_lightning.data.grid import make_grid
from inr_lightning.models import SignalFitModule
from inr_lightning.nn import to_unit
from inr_lightning.nn import CohortINR, INRConfig

FULL = dict(width=256, layers=5, signals=10, coords=4096, depth=2, fit_signals=5, fit_res=64, batched=16,
            batched_res=(64, 32), batched_steps=12, sae_atoms=4096, sae_k=32, sae_d=256, sae_batch=8192,
            sae_init_res=64, sae_init_atoms=1024, sae_init_k=32, sae_init_steps=300, abl_atoms=4096, abl_images=10,
            abl_res=64, abl_layer=2, abl_sample=6, ttq_res=32, ttq_cohort_steps=250,
            ttq_max_steps=300, ttq_every=5, ttq_db=30.0, scale_coords=(4096, 16384, 65536),
            scale_signals=(10, 30, 100), repeats=5, step_repeats=40, fit_repeats=5,
            scale_repeats=3)
# Repeats: ``repeats`` per interleaved comparison; ``step_repeats`` for row a (one sample is one short step);
# ``fit_repeats`` for row c's whole Trainer fits; ``scale_repeats`` for row g (at full size one sample is up to
# a second, at quick size a millisecond, where only many samples make a median that load cannot tip).
QUICK = dict(width=32, layers=3, signals=4, coords=256, depth=1, fit_signals=3, fit_res=16, batched=4,
             batched_res=(16, 8), batched_steps=8, sae_atoms=256, sae_k=8, sae_d=32, sae_batch=512, sae_init_res=16,
             sae_init_atoms=64, sae_init_k=4, sae_init_steps=40, abl_atoms=256,
             abl_images=3, abl_res=16, abl_layer=1, abl_sample=3, ttq_res=16, ttq_cohort_steps=20, ttq_max_steps=20,
             ttq_every=10, ttq_db=30.0, scale_coords=(256, 1024), scale_signals=(4, 16), repeats=3, step_repeats=5,
             fit_repeats=3, scale_repeats=15)


@dataclass
class Row:
    key: str
    what: str
    this: float
    base: float | None
    ratio: float | None
    target: str
    ok: bool | None  # None: reported, no target


class Ctx:
    """One benchmark run: its arguments, sizes, device, notes for the table and a scratch folder."""

    def __init__(self, args, sizes: dict) -> None:
        self.args, self.s = args, sizes
        self.quick = bool(args.quick)
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

    def target(self, value: float, op: str, bound: float, label: str | None = None,
               quick_reason: str | None = None) -> tuple[str, bool | None]:
        """(target text, pass) of ``value op bound``.  ``quick_reason``: at ``--quick`` sizes this target does
        not apply (the reason says why) and the row is reported, not judged; at full size it always applies."""
        if self.quick and quick_reason:
            return f"report at --quick ({quick_reason})", None
        ok = value >= bound if op == "≥" else value <= bound
        return label or f"{op} {bound:g}", bool(ok)


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


# -- inputs and steppers ---------------------------------------------------------------------------------------
def cohort_ckpt(path: Path, cfg: INRConfig, num_signals: int, seed: int = 0) -> Path:
    """A randomly initialised cohort checkpoint of ``cfg`` (what ``SignalFitModule`` starts from)."""
    torch.manual_seed(seed)
    return save_cohort(path, CohortINR(cfg, num_signals, 1))


def grid_batch(ctx: Ctx, res: int, num_signals: int, seed: int = 0) -> dict:
    coords = make_grid(res, res)
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(num_signals, len(coords), 1, generator=g) * 2 - 1
    return {"coords": coords.to(ctx.device), "target": target.to(ctx.device), "num_coords": len(coords),
            "index": torch.arange(len(coords), device=ctx.device)}


def coords_batch(ctx: Ctx, num_coords: int, num_signals: int) -> dict:
    side = math.isqrt(num_coords)
    if side * side != num_coords:
        raise ValueError(f"{num_coords} coordinates are not a square grid")
    return grid_batch(ctx, side, num_signals)


def module_stepper(ctx: Ctx, module, batch: dict):
    """One training step of an ``INRModule`` outside a Trainer: hooks, step, backward, Adam."""
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
    module = SignalFitModule(load_cohort(ckpt)[0], protocol=protocol,
                             last_frozen_layer=depth if protocol == "freeze" else None, num_signals=num_signals,
                             record_steps=[], cache_frozen_prefix=cache, compile=compile)
    module.setup("fit")  # freezes (protocol freeze) or freezes nothing (finetune / scratch)
    return module.to(ctx.device)


def prime_cache(module: SignalFitModule, batch: dict) -> None:
    if module.cache_frozen_prefix and module.last_frozen_layer is not None and module.last_frozen_layer >= 0:
        module.build_prefix_cache(batch["coords"])


@torch.no_grad()
def psnr_of(module, batch) -> float:
    """Mean PSNR (dB, on [0, 1]) of a module's prediction on the batch's grid."""
    pred = to_unit(module.predict_grid(batch["coords"]))
    mse = ((pred - to_unit(batch["target"])) ** 2).mean(dim=(1, 2))
    return float((-10 * torch.log10(mse)).mean())


# -- FLOP accounting -------------------------------------------------------------------------------------------
def step_gemms(cfg: INRConfig, num_coords: int, num_signals: int, encoder_copies: int = 1, first_trainable: int = 0,
               skip_frozen: bool = False, out_channels: int = 1) -> list[tuple[int, int, int, int, str]]:
    """The GEMMs of one SIREN training step as ``(batch, m, k, n, layer)`` (FLOPs 2·b·m·k·n each), in the
    layouts ``BatchedLinear`` uses.  Layers below ``first_trainable`` are frozen: forward only (none if
    ``skip_frozen``, i.e. cached), no gradients."""
    if cfg.backbone != "siren":
        raise ValueError(f"FLOP accounting is written for SIREN, got {cfg.backbone!r}")
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
    """The very same GEMMs as bare ``matmul`` calls on preallocated tensors: a step's hardware baseline."""
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


# -- the table -------------------------------------------------------------------------------------------------
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
        lines.append(f"| {r.key} | {r.what.replace('|', '/')} | {fmt(r.this)} | {fmt(r.base)} | {fmt(r.ratio)} | "
                     f"{r.target} | {ok} |")
    return "\n".join(lines)


def machine(ctx: Ctx) -> str:
    if ctx.cuda:
        return f"{torch.cuda.get_device_name(ctx.device)} (CUDA {torch.version.cuda})"
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
