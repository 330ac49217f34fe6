"""``python -m inr_lightning export RUN_DIR OUT``: a cohort run as a folder anyone can load, no pickle involved.

``OUT`` holds ``model.safetensors`` (the ``net.`` tensors; the hyper-parameters that rebuild the network as JSON
metadata), the run's ``config.yaml``, ``summary.json``, ``signals.csv`` and a generated model card
``README.md``.  The folder is a cohort checkpoint wherever one is accepted (``load_run``, a fit's or an SAE's
``cohort_ckpt``); ``--push_to_hub REPO`` uploads it.  README, "Sharing a cohort".
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import yaml

from inr_lightning.errors import InputError

WEIGHTS = "model.safetensors"
HP_KEY = "inr_lightning.hyper_parameters"
FORMAT_KEY = "inr_lightning.format"
FORMAT = "cohort-v1"
COPIED = ("config.yaml", "summary.json", "signals.csv")


def is_exported(path: str | Path) -> bool:
    """``path`` is a folder written by ``export`` (it holds ``model.safetensors``)."""
    return Path(path).is_dir() and (Path(path) / WEIGHTS).is_file()


def read_folder(folder: str | Path) -> dict:
    """An exported folder → ``{"hyper_parameters": …, "state_dict": …}``, the layout of a cohort checkpoint
    (what ``checkpoints.load_cohort`` and ``load_run`` read).  Tensors on the CPU."""
    from safetensors import safe_open

    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise InputError(f"'{folder}' is not an exported cohort: it has no {WEIGHTS} (write one with "
                         "python -m inr_lightning export RUN_DIR OUT)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # noqa: BLE001 — any unreadable file is the same user error
        raise InputError(f"'{path}' is not a readable safetensors file ({type(err).__name__})") from None
    if meta.get(FORMAT_KEY) != FORMAT or HP_KEY not in meta:
        raise InputError(f"'{path}' was not written by inr_lightning export (metadata {FORMAT_KEY}="
                         f"{meta.get(FORMAT_KEY)!r}, expected {FORMAT!r})")
    return {"hyper_parameters": json.loads(meta[HP_KEY]), "state_dict": state}


def _checkpoint(run: Path, ckpt: str) -> Path:
    from inr_lightning.checkpoints import checkpoint_path

    path = checkpoint_path(run, ckpt)
    if not path.is_file():
        raise InputError(f"'{run}' has no checkpoint {path}; give the folder of a cohort run "
                         "(its trainer.default_root_dir) and --ckpt last | best | a .ckpt path")
    return path


def _fmt(value, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "not recorded"


def model_card(net, hp: dict, config: dict, summary: dict, source_ckpt: Path, out_name: str) -> str:
    """The README.md of an exported cohort, from the run's files and the network itself."""
    from inr_lightning.analysis.stable_rank import stable_rank
    from inr_lightning.data.provenance import describe_source

    cfg = net.cfg
    data = ((config.get("data") or {}).get("init_args") or {})
    model = ((config.get("model") or {}).get("init_args") or {})
    trainer = config.get("trainer") or {}
    res = data.get("resolution")
    res = f"{res}×{res}" if isinstance(res, int) else "×".join(map(str, res)) if res else "not recorded"
    source = data.get("source")
    ranks = [float(stable_rank(net.encoder.linear(j).weight)[0]) for j in range(len(net.encoder))]
    top = max(range(len(ranks)), key=ranks.__getitem__)
    per_signal = summary.get("val/psnr_per_signal") or []
    arch = (f"{cfg.backbone.upper()}, {cfg.shared_layers} shared layers of width {cfg.width} + {cfg.head_layers} "
            f"head layer(s) per signal" + (f", ω0 = {cfg.omega0_first:g} / {cfg.omega0_hidden:g}"
                                          if cfg.backbone == "siren" else
                                          f", {cfg.num_frequencies} Fourier features, σ = {cfg.sigma:g}"))
    step = summary.get("trainer/global_step")
    lines = [
        "---",
        "library_name: inr_lightning",
        f"tags: [implicit-neural-representation, {cfg.backbone}, cohort-inr, pytorch-lightning]",
        "---",
        f"# {cfg.backbone.upper()} cohort encoder ({hp['num_signals']} signals, {res})",
        "",
        "A cohort-trained implicit neural representation exported by `python -m inr_lightning export`: a shared "
        "encoder (the first layers) and one head per training signal, from the run "
        f"`{source_ckpt.parent.parent.name}` (checkpoint `{source_ckpt.name}`).",
        "",
        "## Data",
        "",
        f"- source: {describe_source(source) if source else 'not recorded'}",
        f"- resolution: {res}, channels: {data.get('channels', 'not recorded')}, aspect: "
        f"{data.get('aspect', 'not recorded')}",
        f"- {hp['num_signals']} cohort signals; {data.get('num_heldout', 'not recorded')} held out for fitting new "
        f"signals (`signals.csv` names each one)",
        "",
        "## Quality",
        "",
        f"- PSNR on [0, 1] over the cohort signals (last evaluation, step {step if step is not None else '?'}): "
        f"{_fmt(summary.get('val/psnr'))} dB" + (f" (per signal {min(per_signal):.2f}–{max(per_signal):.2f} dB)"
                                                 if per_signal else ""),
        f"- SSIM: {_fmt(summary.get('val/ssim'), 4)}",
        "",
        "## Stable rank per encoder layer",
        "",
        "Exact ‖W‖²_F / ‖W‖²₂ of each layer's weight (float64 SVD); the fit stage's `auto` protocol "
        f"(`rule: through`) freezes through the argmax (here layer {top}).",
        "",
        "| layer | " + " | ".join(str(j) for j in range(len(ranks))) + " |",
        "|---|" + "---|" * len(ranks),
        "| stable rank | " + " | ".join(f"{r:.2f}" for r in ranks) + " |",
        "",
        "## How it was trained",
        "",
        f"- architecture: {arch}",
        f"- optimiser: Adam, lr {model.get('lr', 'not recorded')}, schedule {model.get('lr_schedule', 'constant')}, "
        f"loss: per-image MSE on [−1, 1], reduced by {model.get('loss_reduction', 'sum')}",
        f"- {step if step is not None else trainer.get('max_steps', '?')} steps of "
        f"{'the full grid' if data.get('coords_per_step') is None else str(data['coords_per_step']) + ' coordinates'}"
        f", seed {config.get('seed_everything', 'not recorded')}",
        "- the full resolved config: `config.yaml`; the training record: `summary.json`",
        "",
        "## Fit a new signal from it",
        "",
        "```bash",
        "pip install -e .   # in a checkout of inr_lightning",
        f"python -m inr_lightning fit --config configs/fit/{cfg.backbone}.yaml "
        f"--data.init_args.cohort_ckpt={out_name}",
        "```",
        "",
        "The fit reads the data settings from this folder's `config.yaml` and fits the signals the cohort held out. "
        "Other images: override the source (`--data.init_args.source=inr_lightning.data.ImageFolder "
        "--data.init_args.source.init_args.path=DIR`); resolution, preprocessing and split sizes stay the cohort's. "
        "In Python:",
        "",
        "```python",
        "from inr_lightning import load_run",
        f"cohort = load_run(\"{out_name}\")     # CohortRun: render(), activations(layer, coords)",
        "```",
        "",
    ]
    return "\n".join(lines)


def export_run(run_dir: str | Path, out: str | Path, ckpt: str = "last", overwrite: bool = False) -> Path:
    """Writes the cohort run ``run_dir`` as the folder ``out`` (see the module docstring); returns ``out``."""
    from safetensors.torch import save_file

    from inr_lightning.checkpoints import load_cohort

    run, out = Path(run_dir), Path(out)
    if not run.is_dir():
        raise InputError(f"run folder '{run}' does not exist")
    source = _checkpoint(run, ckpt)
    net, hp = load_cohort(source)   # refuses anything but a cohort-stage checkpoint, with one line
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"'{out}' exists and is not empty; choose another OUT or pass --overwrite")
    config_path = run / "config.yaml"
    config = (yaml.safe_load(config_path.read_text()) or {}) if config_path.is_file() else {}
    if not config.get("data"):
        raise InputError(f"'{run}' has no config.yaml with a data section: a fit from the export could not know "
                         "the cohort's data; export the run folder the cohort stage wrote")
    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    out.mkdir(parents=True, exist_ok=True)
    hp = {key: value for key, value in hp.items() if isinstance(value, (str, int, float, bool, dict, list, type(None)))}
    state = {f"net.{key}": value.detach().cpu().contiguous() for key, value in net.state_dict().items()}
    save_file(state, str(out / WEIGHTS), metadata={FORMAT_KEY: FORMAT, HP_KEY: json.dumps(hp)})
    for name in COPIED:
        if (run / name).is_file():
            shutil.copyfile(run / name, out / name)
    (out / "README.md").write_text(model_card(net, hp, config, summary, source, out.name))
    return out


def push_to_hub(folder: Path, repo: str, private: bool = False) -> str:
    """Uploads ``folder`` to the Hugging Face Hub model repo ``repo`` (created if missing); returns its URL."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise InputError("--push_to_hub needs huggingface_hub: pip install huggingface_hub") from None
    api = HfApi()
    url = api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                      commit_message="inr_lightning export")
    return str(url)


def export(argv: list[str]) -> Path:
    """The ``export`` command: ``RUN_DIR OUT [--ckpt last|best|PATH] [--overwrite] [--push_to_hub REPO]``."""
    from inr_lightning.cli import OneLineErrorParser

    parser = OneLineErrorParser(prog="python -m inr_lightning export",
                                description="A cohort run as a shareable folder: model.safetensors, config.yaml, README.md")
    parser.add_argument("run_dir", help="a cohort run folder (its trainer.default_root_dir)")
    parser.add_argument("out", help="the folder to write")
    parser.add_argument("--ckpt", default="last", help="last (default), best, or a .ckpt path of the run")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT")
    parser.add_argument("--push_to_hub", default=None, metavar="REPO",
                        help="also upload OUT to this Hugging Face Hub model repo (needs huggingface-cli login)")
    parser.add_argument("--private", action="store_true", help="with --push_to_hub: a private repo")
    args = parser.parse_args(argv)
    out = export_run(args.run_dir, args.out, args.ckpt, args.overwrite)
    print(f"export: {out}/{{{WEIGHTS},config.yaml,README.md}}")
    if args.push_to_hub:
        print(f"pushed: {push_to_hub(out, args.push_to_hub, args.private)}")
    return out

