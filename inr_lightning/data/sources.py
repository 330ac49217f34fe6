"""Where signals come from.  A source returns images as float tensors ``(C, H, W)`` on [0, 1], in a fixed
order, at whatever size they come in; ``transforms`` brings them to the configured shape afterwards.

Every source here works offline: folders on disk, Hugging Face ``datasets`` (a local ``imagefolder``, or a
hub name where the network allows), and data bundled inside installed packages (``nilearn``'s MNI152
template, ``skimage.data``).  No source runs remote code.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from inr_lightning.errors import InputError, check_choice

log = logging.getLogger(__name__)
Axis = Literal["sagittal", "coronal", "axial"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _pil_to_tensor(img: Image.Image) -> Tensor:
    """PIL image → ``(C, H, W)`` float on [0, 1].  Alpha is dropped; 16-bit images are divided by 65535;
    32-bit integer and float images are min-max scaled (they carry no fixed range)."""
    if img.mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float64) / 65535.0
    elif img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        arr = (arr - arr.min()) / max(arr.max() - arr.min(), 1e-12)
    else:
        arr = np.asarray(img.convert("L" if img.mode in ("L", "1", "LA") else "RGB"), dtype=np.float64) / 255.0
    t = torch.from_numpy(np.ascontiguousarray(arr)).float()
    return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)


def _array_to_tensor(arr: np.ndarray) -> Tensor:
    """numpy image (H, W) or (H, W, C), uint8 or float → ``(C, H, W)`` float on [0, 1]."""
    a = np.asarray(arr)
    a = a / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
    t = torch.from_numpy(np.ascontiguousarray(a)).float()
    return t.unsqueeze(0) if t.dim() == 2 else t[..., :3].permute(2, 0, 1)


def _take(images: list, count: int | None, what: str) -> list:
    if count is not None and count > len(images):
        raise InputError(f"{what} holds {len(images)} images but {count} were asked for "
                         "(num_signals + num_heldout + num_validation)")
    return images if count is None else images[:count]


class SignalSource:
    """Base class: ``load_named(count)`` returns ``count`` (name, image) pairs (all when ``None``) in a
    deterministic order; the name says where the image came from (a file, a slice, a dataset row) and goes
    into each run's ``signals.csv``."""

    def load_named(self, count: int | None = None) -> list[tuple[str, Tensor]]:
        raise NotImplementedError

    def load(self, count: int | None = None) -> list[Tensor]:
        return [image for _, image in self.load_named(count)]


class ImageFolder(SignalSource):
    """Every image file directly inside ``path``, sorted by name.

    Args:
        path: the folder.
        on_bad_file: ``error`` (default) stops at the first file that is not a readable image, naming it;
            ``skip`` leaves it out with a warning.  Files whose extension is not an image's are ignored.
    """

    def __init__(self, path: str, on_bad_file: str = "error") -> None:
        if on_bad_file not in ("error", "skip"):
            raise InputError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
        self.path, self.on_bad_file = Path(path).expanduser(), on_bad_file

    def load_named(self, count: int | None = None) -> list[tuple[str, Tensor]]:
        if not self.path.is_dir():
            raise InputError(f"image folder {str(self.path)!r} does not exist or is not a folder")
        files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        images = []
        for f in files:
            try:
                with Image.open(f) as img:
                    img.load()  # decode now, so a truncated file fails here and not mid-training
                    images.append((str(f), _pil_to_tensor(img)))
            except (UnidentifiedImageError, OSError, SyntaxError) as err:
                if self.on_bad_file == "error":
                    raise InputError(f"{str(f)!r} is not a readable image ({err}); fix or remove it, "
                                     "or set on_bad_file: skip") from err
                log.warning("skipping %s: not a readable image (%s)", f, err)
            if count is not None and len(images) == count:
                break
        if not images:
            raise InputError(f"image folder {str(self.path)!r} holds no readable images "
                             f"(extensions: {', '.join(IMAGE_EXTENSIONS)})")
        return _take(images, count, f"image folder {str(self.path)!r}")


class HuggingFaceImages(SignalSource):
    """A Hugging Face ``datasets`` image dataset: ``imagefolder`` with ``data_dir`` (offline), or a hub name.

    Remote code is never executed: ``load_dataset`` is called without ``trust_remote_code``.
    """

    def __init__(self, name: str = "imagefolder", data_dir: str | None = None, split: str = "train",
                 image_key: str = "image") -> None:
        self.name, self.data_dir, self.split, self.image_key = name, data_dir, split, image_key

    def load_named(self, count: int | None = None) -> list[tuple[str, Tensor]]:
        import datasets  # imported here: it is slow to import and only this source needs it

        if self.data_dir is not None and not Path(self.data_dir).expanduser().is_dir():
            raise InputError(f"data_dir {self.data_dir!r} does not exist or is not a folder")
        try:
            ds = datasets.load_dataset(self.name, data_dir=self.data_dir, split=self.split)
        except (FileNotFoundError, ValueError, ConnectionError) as err:
            raise InputError(f"could not load Hugging Face dataset {self.name!r} "
                             f"(data_dir={self.data_dir!r}, split={self.split!r}): {err}") from err
        if self.image_key not in ds.column_names:
            raise InputError(f"dataset {self.name!r} has no column {self.image_key!r}; columns: {ds.column_names}")
        n = len(ds) if count is None else min(count, len(ds))
        images = [(f"{self.name}[{self.split}][{i}]", _pil_to_tensor(ds[i][self.image_key])) for i in range(n)]
        return _take(images, count, f"dataset {self.name!r}")


class MRISlices(SignalSource):
    """Slices of the MNI152 T1 template bundled in ``nilearn`` (1 mm, 197×233×189; no download).

    ``axis`` picks the view: ``axial`` (default), ``coronal`` or ``sagittal``.  ``count`` slices are spaced
    evenly between the first and last slice whose brain covers at least ``min_brain_fraction`` of it, so the
    choice is deterministic.  Each slice is scaled by its own maximum to [0, 1] and rotated so that up is up.
    Slices of another view are images the axial cohort never saw as such, though they share its voxels.
    """

    AXES = {"sagittal": 0, "coronal": 1, "axial": 2}

    def __init__(self, min_brain_fraction: float = 0.15, axis: Axis = "axial") -> None:
        check_choice("axis", axis, tuple(self.AXES))
        self.min_brain_fraction, self.axis = min_brain_fraction, axis

    def load_named(self, count: int | None = None) -> list[tuple[str, Tensor]]:
        from nilearn.datasets import load_mni152_template

        volume = np.moveaxis(load_mni152_template(resolution=1).get_fdata(), self.AXES[self.axis], 2)
        brain = (volume > 0.05).mean(axis=(0, 1))
        candidates = np.flatnonzero(brain >= self.min_brain_fraction)
        count = len(candidates) if count is None else count
        if count > len(candidates):
            raise InputError(f"the MNI152 template has {len(candidates)} {self.axis} slices with enough brain; "
                             f"{count} were asked for")
        picks = candidates[np.round(np.linspace(0, len(candidates) - 1, count)).astype(int)]
        slices = []
        for z in picks:
            s = np.rot90(volume[:, :, z]).astype(np.float64)
            slices.append((f"MNI152 {self.axis} slice {int(z)}", _array_to_tensor(s / max(s.max(), 1e-12))))
        return slices


class SkimageImages(SignalSource):
    """Standard test images bundled with ``scikit-image`` (``skimage.data``), by name.

    A name is a ``skimage.data`` function returning one image, or one of ``PARTS``: an image taken from a
    function that returns several (``motorcycle``: the left photo of ``stereo_motorcycle()``).
    """

    PARTS = {"motorcycle": ("stereo_motorcycle", 0)}

    def __init__(self, names: list[str] = ["camera", "astronaut", "coffee", "chelsea", "rocket"]) -> None:  # noqa: B006
        self.names = list(names)

    def load_named(self, count: int | None = None) -> list[tuple[str, Tensor]]:
        import skimage.data

        images = []
        for name in self.names:
            if name in self.PARTS:
                fn_name, part = self.PARTS[name]
                image = getattr(skimage.data, fn_name)()[part]
                images.append((f"skimage.data.{fn_name}[{part}]", _array_to_tensor(image)))
                continue
            fn = getattr(skimage.data, name, None)
            if fn is None or not callable(fn) or name.startswith("_") or name in ("download_all", "lfw_subset"):
                raise InputError(f"skimage.data has no image {name!r}; try camera, astronaut, coffee, chelsea")
            images.append((f"skimage.data.{name}", _array_to_tensor(fn())))
        return _take(images, count, "skimage image list")


class LFWFaces(SignalSource):
    """The 100 face crops (25×25, grayscale) of ``skimage.data.lfw_subset()`` (faces first, then non-faces)."""

    def load_named(self, count: int | None = None) -> list[tuple[str, Tensor]]:
        import skimage.data

        faces = skimage.data.lfw_subset()[:100]
        return _take([(f"skimage.data.lfw_subset[{i}]", _array_to_tensor(f)) for i, f in enumerate(faces)], count,
                     "LFW subset (100 faces)")


class Synthetic(SignalSource):
    """Smooth random images made from a seed: sums of oriented sinusoids and Gaussian blobs.

    Made for tests and quick experiments: every image differs, all share structure, and nothing is read.
    """

    def __init__(self, size: int = 32, channels: int = 1, num_images: int = 8, seed: int = 0) -> None:
        self.size, self.channels, self.num_images, self.seed = size, channels, num_images, seed

    def load_named(self, count: int | None = None) -> list[tuple[str, Tensor]]:
        n = self.num_images if count is None else count
        g = torch.Generator().manual_seed(self.seed)
        lin = torch.linspace(-1, 1, self.size)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        images = []
        for _ in range(n):
            img = torch.zeros(self.channels, self.size, self.size)
            for c in range(self.channels):
                for _ in range(3):
                    freq, angle, phase = torch.rand(3, generator=g) * torch.tensor([4.0, math.pi, 2 * math.pi])
                    img[c] += torch.sin(math.pi * freq * (xx * torch.cos(angle) + yy * torch.sin(angle)) + phase)
                for _ in range(2):
                    cx, cy, width = torch.rand(3, generator=g) * torch.tensor([1.6, 1.6, 0.3]) - torch.tensor([0.8, 0.8, -0.1])
                    img[c] += 2 * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * width**2))
            img = (img - img.amin()) / (img.amax() - img.amin())
            images.append((f"synthetic seed {self.seed} #{len(images)}", img))
        return images
