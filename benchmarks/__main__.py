"""Runs the chosen benchmark row families and prints one table (optionally writes it too).

    python -m benchmarks                 # full sizes, ≤ 10 min on a 2-core CPU
    python -m benchmarks --quick         # tiny sizes, seconds (make bench-quick)
    python -m benchmarks --device cuda --bf16 --out gpu.md   # on a GPU

Like a training run started with ``INR_LIGHTNING_RETAIN_MEMORY=1``, the benchmark keeps freed memory for
reuse (``inr_lightning/runtime.py``); ``--no-retain`` measures glibc's default instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import torch

from benchmarks import (a_step, b_frozen_cache, c_batched_fits, d_sae, e_ablation, f_time_to_quality, g_scaling,
                        h_sweep_time)
from benchmarks.harness import FULL, QUICK, Ctx, Row, machine, table
from inr_lightning.runtime import retain_freed_memory

BENCHES = {"a": a_step.run, "b": b_frozen_cache.run, "c": c_batched_fits.run, "d": d_sae.run, "e": e_ablation.run,
           "f": f_time_to_quality.run, "g": g_scaling.run, "h": h_sweep_time.run}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds); for tests")
    parser.add_argument("--only", default="abcdefgh", help="which row families, e.g. 'abd' (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the INR steps (a, b, c, g) and GEMMs")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement of a")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) and notes to this file")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's); 1 is steadier on "
                        "a loaded machine, where a descheduled OpenMP thread stalls every parallel op")
    parser.add_argument("--no-retain", action="store_true", help="leave malloc alone (glibc's default) instead "
                        "of keeping freed memory for reuse (inr_lightning/runtime.py)")
    parser.add_argument("--_memory", help=argparse.SUPPRESS)  # one stage's peak memory, in a fresh process (g)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only) - set(BENCHES))
    if unknown:
        parser.error(f"--only {args.only!r}: unknown row families {', '.join(unknown)}; expected letters of "
                     f"{''.join(BENCHES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    warnings.filterwarnings("ignore")  # ``self.log`` outside a Trainer warns once per key; nothing else expected
    for name in ("lightning", "lightning.pytorch"):  # row c runs dozens of short Trainer fits: no banners
        logging.getLogger(name).setLevel(logging.ERROR)
    retained = False if args.no_retain else retain_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = Ctx(args, QUICK if args.quick else FULL)
    if args._memory:
        try:
            print(g_scaling.memory_stage(ctx, args._memory))
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
    command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    malloc = "freed memory retained (runtime.retain_freed_memory)" if retained else "glibc default"
    header = (f"machine: {machine(ctx)}; torch {torch.__version__}; device {ctx.device}"
              f"{' bf16' if args.bf16 else ''}; malloc: {malloc}\n"
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
