"""Bring images of any size and channel count to one shape and range, with kornia.

Policy (explicit, so mixed inputs are never a surprise): every image is first given the target aspect ratio
(``crop``: centre crop; ``pad``: zero padding around it; ``stretch``: nothing), then resized with
antialiasing; grayscale images become RGB by repetition and RGB becomes grayscale by luminance; values are
mapped from [0, 1] to [−1, 1], the range cohort INRs are trained on (STRAINER).
"""

from __future__ import annotations

from typing import Literal, get_args

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from inr_lightning.errors import InputError, check_choice

Aspect = Literal["crop", "pad", "stretch"]
ASPECT_POLICIES = get_args(Aspect)


def _to_aspect(img: Tensor, height: int, width: int, policy: str) -> Tensor:
    _, h, w = img.shape
    if policy == "stretch" or h * width == w * height:
        return img
    if policy == "crop":
        ch, cw = (h, round(h * width / height)) if w * height > h * width else (round(w * height / width), w)
        return kornia.geometry.transform.center_crop(img[None], (ch, cw))[0]
    ph, pw = (round(w * height / width), w) if w * height > h * width else (h, round(h * width / height))
    top, left = (ph - h) // 2, (pw - w) // 2
    return F.pad(img, (left, pw - w - left, top, ph - h - top))


def prepare(images: list[Tensor], resolution: tuple[int, int], channels: int, aspect: Aspect = "crop") -> Tensor:
    """List of ``(C_i, H_i, W_i)`` on [0, 1] → one ``(N, channels, H, W)`` tensor on [−1, 1]."""
    check_choice("aspect", aspect, ASPECT_POLICIES)
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    height, width = resolution
    out = []
    for img in images:
        img = _to_aspect(img.float(), height, width, aspect)
        img = kornia.geometry.transform.resize(img[None], (height, width), antialias=True)[0]
        if img.shape[0] == 3 and channels == 1:
            img = kornia.color.rgb_to_grayscale(img)
        elif img.shape[0] == 1 and channels == 3:
            img = img.expand(3, -1, -1)
        out.append(img.clamp(0, 1))
    return torch.stack(out) * 2 - 1
