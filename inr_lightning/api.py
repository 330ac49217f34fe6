"""Runs as Python objects: ``load_run(run_dir)`` for a cohort, fit or SAE run folder.

    run = load_run("runs/mri/cohort/siren")
    images = run.render(resolution=256)                # (N, C, 256, 256) on [0, 1]
    h = run.activations(2, coords)                     # encoder layer 2 at any (y, x) on [−1, 1]

The stage is read from the checkpoint's ``hyper_parameters["_class_path"]``; checkpoints are loaded with
``torch.load(weights_only=True)`` only and the networks are rebuilt from their plain hyper-parameters.  An SAE
run also rebuilds its cohort INR and images from its ``config.yaml`` (as the SAE stage itself does), and adds
``encode``, ``decode`` and ``ablate``.  Everything runs on the CPU in eval mode, without gradients.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import Tensor

from inr_lightning.checkpoints import checkpoint_path, load_net, read_checkpoint
from inr_lightning.data.grid import make_grid
from inr_lightning.data.provenance import instantiate
from inr_lightning.errors import InputError
from inr_lightning.nn import CohortINR, INRConfig, to_unit

STAGE_OF_MODEL = {"CohortINRModule": "cohort", "SignalFitModule": "fit", "SAEModule": "sae"}
EVAL_CHUNK = 16384


# -- grids -------------------------------------------------------------------------------------------------
def _resolution(resolution: int | Sequence[int] | None, default: tuple[int, int]) -> tuple[int, int]:
    if resolution is None:
        return default
    res = [resolution, resolution] if isinstance(resolution, int) else list(resolution)
    if len(res) != 2 or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in res):
        raise InputError(f"resolution must be a positive integer or (height, width), got {resolution!r}")
    return res[0], res[1]


def region_grid(resolution: tuple[int, int], region: Sequence[float] | None = None) -> Tensor:
    """``(H·W, 2)`` coordinates (y, x), row-major: ``make_grid`` mapped onto ``region = (y0, y1, x0, x1)``
    (``None``: the training square [−1, 1]², exactly ``make_grid``).  Both ends are included."""
    grid = make_grid(*resolution)
    if region is None:
        return grid
    values = list(region)
    if len(values) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) \
            or not (values[0] < values[1] and values[2] < values[3]):
        raise InputError(f"region must be four numbers y0 y1 x0 x1 with y0 < y1 and x0 < x1 (coordinates on "
                         f"[-1, 1]; the training square is -1 1 -1 1), got {region!r}")
    y0, y1, x0, x1 = (float(v) for v in values)
    lo = torch.tensor([y0, x0])
    return lo + (grid + 1) / 2 * torch.tensor([y1 - y0, x1 - x0])


@torch.no_grad()
def _outputs(net: CohortINR, coords: Tensor, chunk: int = EVAL_CHUNK) -> Tensor:
    return torch.cat([net(c) for c in coords.split(chunk)], dim=1)


def render_net(net: CohortINR, resolution: tuple[int, int], region: Sequence[float] | None = None,
               chunk: int = EVAL_CHUNK) -> Tensor:
    """Every output of ``net`` on a ``resolution`` grid over ``region`` → ``(N, C, H, W)`` on [0, 1]."""
    coords = region_grid(resolution, region).to(next(net.parameters()).device)
    values = _outputs(net, coords, chunk)  # (N, P, C)
    n, _, c = values.shape
    return to_unit(values.transpose(1, 2).reshape(n, c, *resolution)).cpu()


# -- checkpoints -------------------------------------------------------------------------------------------
def stage_of(hp: dict) -> str | None:
    """``cohort``, ``fit`` or ``sae`` from a checkpoint's ``hyper_parameters["_class_path"]``."""
    return STAGE_OF_MODEL.get(str(hp.get("_class_path", "")).rpartition(".")[2])


# -- runs --------------------------------------------------------------------------------------------------
class Run:
    """A finished (or interrupted) run: its folder, config, summary and rebuilt network.

    Attributes: ``path``, ``stage``, ``config`` (``config.yaml``, ``{}`` if absent), ``summary``
    (``summary.json``, ``{}`` if absent), ``checkpoint`` (its path), ``hparams``, ``net`` (a ``CohortINR``).
    """

    stage = "?"

    def __init__(self, path: Path, ckpt_path: Path, ckpt: dict) -> None:
        self.path, self.checkpoint = path, ckpt_path
        self.hparams: dict = dict(ckpt.get("hyper_parameters") or {})
        config = path / "config.yaml"
        self.config: dict = (yaml.safe_load(config.read_text()) or {}) if config.is_file() else {}
        summary = path / "summary.json"
        self.summary: dict = json.loads(summary.read_text()) if summary.is_file() else {}
        self.net: CohortINR

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.path}', {self.net.num_signals} signals)"

    @property
    def num_signals(self) -> int:
        return self.net.num_signals

    @property
    def resolution(self) -> tuple[int, int]:
        """The training grid (``data.init_args.resolution`` of ``config.yaml``; 64 if the config is gone)."""
        res = ((self.config.get("data") or {}).get("init_args") or {}).get("resolution") or 64
        return _resolution(res if isinstance(res, int) else tuple(res), (64, 64))

    def _check_signal(self, i: int | None) -> None:
        if i is not None and not (isinstance(i, int) and 0 <= i < self.num_signals):
            raise InputError(f"signal {i!r} is out of range: this {self.stage} run has signals "
                             f"0..{self.num_signals - 1}")

    def render(self, i: int | None = None, resolution: int | Sequence[int] | None = None,
               region: Sequence[float] | None = None) -> Tensor:
        """Signal ``i`` ``(C, H, W)`` — or every signal ``(N, C, H, W)`` — on [0, 1], at ``resolution`` (default:
        the training grid) over ``region = (y0, y1, x0, x1)`` (default: the whole square [−1, 1]²)."""
        self._check_signal(i)
        images = render_net(self.net, _resolution(resolution, self.resolution), region)
        return images if i is None else images[i]

    def _check_layer(self, layer: int) -> None:
        depth = len(self.net.encoder)
        if not (isinstance(layer, int) and 0 <= layer < depth):
            raise InputError(f"layer {layer!r} is out of range: the encoder has layers 0..{depth - 1}")

    @torch.no_grad()
    def activations(self, layer: int, coords: Tensor | None = None) -> Tensor:
        """Post-nonlinearity activations of encoder layer ``layer`` at ``coords (P, 2)`` (y, x on [−1, 1];
        default: the training grid): ``(P, width)`` for a shared encoder, ``(M, P, width)`` for a fit run's
        M independent encoders."""
        self._check_layer(layer)
        coords = region_grid(self.resolution) if coords is None else torch.as_tensor(coords, dtype=torch.float32)
        if coords.ndim != 2 or coords.shape[-1] != 2:
            raise InputError(f"coords must be a (P, 2) tensor of (y, x), got shape {tuple(coords.shape)}")
        parts = [self.net.encoder(c.unsqueeze(0), stop=layer + 1) for c in coords.split(EVAL_CHUNK)]
        h = torch.cat(parts, dim=1)
        return h[0] if h.shape[0] == 1 else h


class CohortRun(Run):
    """A cohort run: one shared encoder, one head per cohort signal."""

    stage = "cohort"

    def __init__(self, path: Path, ckpt_path: Path, ckpt: dict) -> None:
        super().__init__(path, ckpt_path, ckpt)
        hp = self.hparams
        self.net = load_net(INRConfig(**hp["net"]), ckpt["state_dict"], int(hp["num_signals"]),
                            int(hp["out_channels"]), 1, ckpt_path)


class FitRun(Run):
    """A fit run: M held-out signals, each with its own encoder copy (``activations`` returns ``(M, P, width)``)."""

    stage = "fit"

    def __init__(self, path: Path, ckpt_path: Path, ckpt: dict) -> None:
        super().__init__(path, ckpt_path, ckpt)
        hp = self.hparams
        net_cfg = ckpt["fit_state"]["summary"]["fit/net"]   # SignalFitModule.on_save_checkpoint writes it
        m = int(hp["num_signals"])
        self.net = load_net(INRConfig(**net_cfg), ckpt["state_dict"], m, int(hp["out_channels"]), m, ckpt_path)


@dataclass
class Ablation:
    """Signal ``signal`` with atom ``atom`` zeroed in the SAE's codes everywhere (decoded, spliced in at the
    layer, through the rest of the network): PSNRs on [0, 1] against the cohort image, and the image."""

    atom: int
    signal: int
    psnr: float          # with the atom ablated
    psnr_sae: float      # the un-ablated SAE path
    drop: float          # psnr_sae − psnr, dB
    support: float       # share of the grid where the atom fires
    image: Tensor        # (C, H, W) on [0, 1], ablated


class SAERun(Run):
    """An SAE run: the TopK SAE, the cohort INR it reads (rebuilt from ``config.yaml`` as in training, with the
    untrained-encoder control when the run used it) and the cohort images.  ``render``/``activations`` act on
    that cohort INR; ``render(..., through_sae=True)`` splices the SAE's reconstruction in at its layer."""

    stage = "sae"

    def __init__(self, path: Path, ckpt_path: Path, ckpt: dict) -> None:
        super().__init__(path, ckpt_path, ckpt)
        data = self.config.get("data")
        if not isinstance(data, dict) or "ActivationDataModule" not in str(data.get("class_path", "")):
            raise InputError(f"SAE run '{path}' has no config.yaml with its ActivationDataModule; the SAE cannot "
                             "be tied to a cohort INR without it")
        cohort_ckpt = Path((data.get("init_args") or {}).get("cohort_ckpt", ""))
        if not cohort_ckpt.exists():   # a .ckpt, or a folder written by `export`
            raise InputError(f"SAE run '{path}' reads the cohort checkpoint '{cohort_ckpt}', which does not exist "
                             "from here (a relative path is read from the current directory: run from where the "
                             "SAE was trained)")
        self.data = instantiate(data)
        self.layer: int = int(self.data.layer)
        self.net = self.data.net.eval().requires_grad_(False)
        self.sae = _load_sae(self.hparams, ckpt["state_dict"], ckpt_path)

    @property
    def resolution(self) -> tuple[int, int]:
        return tuple(self.data.resolution)

    @property
    def n_atoms(self) -> int:
        return int(self.sae.n_atoms)

    @property
    def targets(self) -> Tensor:
        """The cohort images ``(N, C, H, W)`` on [0, 1]."""
        return to_unit(self.data.images)

    # -- codes ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Activations ``(B, d_in)`` of the SAE's layer → codes ``(B, n_atoms)`` (k non-zero per row at most)."""
        x = torch.as_tensor(x, dtype=torch.float32)
        parts = []
        for c in x.split(EVAL_CHUNK):
            vals, idx = self.sae.encode(c)
            parts.append(vals.new_zeros(vals.shape[0], self.n_atoms).scatter(1, idx, vals))
        return torch.cat(parts) if parts else x.new_zeros(0, self.n_atoms)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Codes ``(B, n_atoms)`` → reconstructions ``(B, d_in)`` (``z`` may be any codes, e.g. edited ones)."""
        z = torch.as_tensor(z, dtype=torch.float32)
        if z.ndim != 2 or z.shape[-1] != self.n_atoms:
            raise InputError(f"codes must be (B, {self.n_atoms}), got shape {tuple(z.shape)}")
        return self.sae.decode_dense(z)

    @torch.no_grad()
    def render(self, i: int | None = None, resolution: int | Sequence[int] | None = None,
               region: Sequence[float] | None = None, through_sae: bool = False) -> Tensor:
        """As ``Run.render``, of the cohort INR; ``through_sae=True``: with x̂ = decode(encode(x)) at the layer."""
        if not through_sae:
            return super().render(i, resolution, region)
        self._check_signal(i)
        res = _resolution(resolution, self.resolution)
        coords = region_grid(res, region)
        x_hat = self.decode(self.encode(self.activations(self.layer, coords)))
        values = torch.cat([self.net.forward_from(h.unsqueeze(0), self.layer) for h in x_hat.split(EVAL_CHUNK)], 1)
        n, _, c = values.shape
        images = to_unit(values.transpose(1, 2).reshape(n, c, *res))
        return images if i is None else images[i]

    @torch.no_grad()
    def ablate(self, atom: int, signal: int = 0) -> Ablation:
        """Zero atom ``atom`` everywhere on the training grid and measure signal ``signal`` against its cohort
        image (``inr_lightning.analysis.ablation.ablated_output``, the reference full-grid path)."""
        from inr_lightning.analysis.ablation import ablated_output

        if not (isinstance(atom, int) and 0 <= atom < self.n_atoms):
            raise InputError(f"atom {atom!r} is out of range: the SAE has atoms 0..{self.n_atoms - 1}")
        self._check_signal(signal)
        x = self.data.grid_activations()
        ablated = ablated_output(self.sae, self.net, self.layer, x, atom)[signal]          # (P, C)
        z = self.encode(x)
        base = torch.cat([self.net.forward_from(h.unsqueeze(0), self.layer)[signal]
                          for h in self.decode(z).split(EVAL_CHUNK)])
        target = to_unit(self.data.targets[signal])

        def psnr(pred: Tensor) -> float:
            mse = ((to_unit(pred).double() - target.double()) ** 2).mean()
            return float(10 * torch.log10(1 / mse))

        h, w = self.resolution
        image = to_unit(ablated).T.reshape(-1, h, w)
        after, before = psnr(ablated), psnr(base)
        support = float((z[:, atom] > 0).double().mean())
        return Ablation(atom, signal, after, before, before - after, support, image)


def _load_sae(hp: dict, state: dict, path: Path):
    """The ``TopKSAE`` of an SAE checkpoint, through ``SAEModule``'s own constructor (what Lightning's
    ``--ckpt_path`` does)."""
    from inr_lightning.models import SAEModule

    try:
        module = SAEModule(**{k: v for k, v in hp.items() if not k.startswith("_")})
        module.load_state_dict(state)
    except (TypeError, RuntimeError) as err:
        raise InputError(f"SAE checkpoint '{path}' does not match this version's SAEModule: "
                         f"{str(err).splitlines()[-1].strip()}") from None
    return module.sae.eval().requires_grad_(False)


RUN_TYPES = {"cohort": CohortRun, "fit": FitRun, "sae": SAERun}


def load_run(run_dir: str | Path, ckpt: str | Path = "last") -> Run:
    """A run folder → ``CohortRun``, ``FitRun`` or ``SAERun`` (the stage read from the checkpoint).

    ``ckpt``: ``last`` (default), ``best`` or a path to a ``.ckpt`` of that run.  A folder written by
    ``python -m inr_lightning export`` loads as a ``CohortRun``."""
    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(f"run folder '{path}' does not exist")
    from inr_lightning.export import WEIGHTS, is_exported, read_folder

    if is_exported(path) and str(ckpt) in ("last", "best"):   # a cohort written by `export`
        ckpt_path, checkpoint = path / WEIGHTS, read_folder(path)
    else:
        ckpt_path = checkpoint_path(path, ckpt)
        if not ckpt_path.is_file():
            raise InputError(f"'{path}' is not a run with a checkpoint: {ckpt_path} does not exist (give a folder "
                             "written by `python -m inr_lightning fit`, i.e. its trainer.default_root_dir)")
        checkpoint = read_checkpoint(ckpt_path)
        if "state_dict" not in checkpoint:
            raise InputError(f"'{ckpt_path}' is not a checkpoint written by an inr_lightning run (no state_dict)")
    hp = checkpoint.get("hyper_parameters") or {}
    stage = stage_of(hp)
    if stage is None:
        raise InputError(f"checkpoint '{ckpt_path}' holds model {hp.get('_class_path')!r}; load_run knows "
                         f"{', '.join(STAGE_OF_MODEL)}")
    return RUN_TYPES[stage](path, ckpt_path, checkpoint)
