"""``python -m inr_lightning render RUN_DIR``: every signal of a cohort or fit run at any resolution or region.

An INR is a function of continuous coordinates, so a run trained on a 64×64 grid renders at 512×512 (or any
window of the square [−1, 1]²) without retraining.  Writes, under ``--out`` (default ``<run>/render/``):
``signal_000.png`` … (one per signal), ``mosaic.png`` (all of them side by side) and ``signals.pt``, one
``(N, C, H, W)`` float tensor on [0, 1] (``torch.load(..., weights_only=True)`` reads it).  The checkpoint is
read with ``weights_only=True`` only.  ``predict`` (LightningCLI) writes the same files.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from inr_lightning.api import load_run
from inr_lightning.errors import InputError

MAX_PIXELS = 4096 * 4096


def _to_pil(image: Tensor) -> Image.Image:
    """``(C, H, W)`` on [0, 1] → an 8-bit grayscale or RGB picture."""
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def mosaic(images: Tensor, columns: int | None = None, gap: int = 2) -> Tensor:
    """``(N, C, H, W)`` → one ``(C, H', W')`` picture, ``columns`` per row (default: all in one row up to 8)."""
    n, c, h, w = images.shape
    columns = columns or min(n, 8)
    rows = math.ceil(n / columns)
    out = images.new_ones(c, rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap)
    for i in range(n):
        r, k = divmod(i, columns)
        out[:, r * (h + gap):r * (h + gap) + h, k * (w + gap):k * (w + gap) + w] = images[i]
    return out


def write_signals(images: Tensor, out: Path) -> Path:
    """``signal_<i>.png`` per signal, ``mosaic.png`` and ``signals.pt`` under ``out``; returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        _to_pil(image).save(out / f"signal_{i:03d}.png")
    _to_pil(mosaic(images)).save(out / "mosaic.png")
    torch.save(images.contiguous().clone(), out / "signals.pt")
    return out


def parse_args(argv: list[str]):
    from inr_lightning.cli import OneLineErrorParser

    parser = OneLineErrorParser(prog="python -m inr_lightning render", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a cohort or fit run folder (its trainer.default_root_dir)")
    parser.add_argument("--resolution", type=int, nargs="+", help="output size: N (square) or H W; default: the "
                        "training grid")
    parser.add_argument("--scale", type=float, help="output size as a multiple of the training grid, e.g. 4 "
                        "(instead of --resolution)")
    parser.add_argument("--region", type=float, nargs=4, metavar=("Y0", "Y1", "X0", "X1"),
                        help="window of the coordinate square [-1, 1]^2 to render (default: all of it)")
    parser.add_argument("--out", type=Path, help="output folder (default: <run>/render)")
    parser.add_argument("--ckpt", default="last", help="last (default), best, or a .ckpt path of the run")
    args = parser.parse_args(argv)
    if args.scale is not None and args.resolution is not None:
        raise InputError(f"give --resolution or --scale, not both (got --resolution {args.resolution} and "
                         f"--scale {args.scale})")
    return args


def render(argv: list[str]) -> None:
    args = parse_args(argv)
    run = load_run(args.run, args.ckpt)
    if run.stage not in ("cohort", "fit"):
        cohort = ((run.config.get("data") or {}).get("init_args") or {}).get("cohort_ckpt")
        raise InputError(f"'{args.run}' is an {run.stage} run; render takes cohort or fit runs"
                         + (f" (its cohort run: {Path(cohort).parent.parent})" if cohort else ""))
    base = run.resolution
    if args.scale is not None:
        if not (math.isfinite(args.scale) and args.scale > 0):
            raise InputError(f"--scale must be a number > 0, got {args.scale}")
        resolution = (max(1, round(base[0] * args.scale)), max(1, round(base[1] * args.scale)))
    elif args.resolution is not None:
        if len(args.resolution) not in (1, 2) or min(args.resolution) < 1:
            raise InputError(f"--resolution must be one or two integers ≥ 1 (N, or H W), got {args.resolution}")
        resolution = (args.resolution[0], args.resolution[-1])
    else:
        resolution = base
    if resolution[0] * resolution[1] > MAX_PIXELS:
        raise InputError(f"{resolution[0]}×{resolution[1]} is more than {MAX_PIXELS} pixels per signal; render "
                         "a --region at that resolution instead")
    images = run.render(resolution=resolution, region=args.region)
    out = write_signals(images, args.out or Path(args.run) / "render")
    window = "" if args.region is None else ", region y {}..{} x {}..{}".format(*args.region)
    print(f"render: {len(images)} signals of the {run.stage} run '{args.run}' at {resolution[0]}×{resolution[1]}"
          f"{window} → {out}/ (signal_*.png, mosaic.png, signals.pt)", file=sys.stdout)
