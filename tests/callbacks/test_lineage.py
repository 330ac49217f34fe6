"""W&B lineage, offline: run names ``<study>/<stage>/<backbone>/<variant>``, the cohort checkpoint logged as an
artifact, every fit and SAE run naming that artifact version (by content digest), ``define_metric`` summaries;
read back from the offline runs' own ``.wandb`` files."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path

import pytest
from conftest import TINY, run_cli

from inr_lightning.callbacks.lineage import WandbLineage, artifact_name, variant_of


SYNTH = ["--data.init_args.source=inr_lightning.data.Synthetic", "--data.init_args.source.init_args.size=20",
         "--data.init_args.source.init_args.num_images=6", "--data.init_args.num_signals=4",
         "--data.init_args.num_heldout=2", "--study=lin"]


def records(run_dir: Path) -> list:
    """Every record of the one offline W&B run under ``run_dir/wandb`` (W&B's log format: 32 KiB blocks of
    chunks with a 7-byte header, each record a ``wandb_internal_pb2.Record``)."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    data, block, pos, buf, out = path.read_bytes(), 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        buf, pos = buf + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):   # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
            buf = b""
    return out


def of_type(recs: list, kind: str) -> list:
    return [getattr(r, kind) for r in recs if r.WhichOneof("record_type") == kind]


def config_of(recs: list) -> dict:
    return {item.key: json.loads(item.value_json) for c in of_type(recs, "config") for item in c.update}


def model_artifact(run_dir: Path):
    (artifact,) = [a for a in of_type(records(run_dir), "artifact") if a.type == "model"]
    return artifact


def md5_b64(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lineage") / "runs" / "lin"
    cohort = root / "cohort" / "siren"
    run_cli(["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={cohort}", *TINY, *SYNTH])
    ckpt = cohort / "checkpoints" / "last.ckpt"
    fit = root / "fit" / "siren" / "freeze1"
    run_cli(["fit", "--config", "configs/fit/siren.yaml", f"--trainer.default_root_dir={fit}", "--study=lin",
             f"--data.init_args.cohort_ckpt={ckpt}", "--model.init_args.protocol=freeze",
             "--model.init_args.last_frozen_layer=1", "--model.init_args.record_steps=[2]", "--trainer.max_steps=2",
             "--data.init_args.steps_per_epoch=2", "--trainer.enable_progress_bar=false"])
    sae = root.parent / "elsewhere"   # not the shipped layout: the variant comes from the module (layer1)
    run_cli(["fit", "--config", "configs/sae/siren.yaml", f"--trainer.default_root_dir={sae}", "--study=lin",
             f"--data.init_args.cohort_ckpt={ckpt}", "--data.init_args.layer=1", "--model.init_args.n_atoms=32",
             "--model.init_args.k=4", "--model.init_args.warmup_steps=1", "--data.init_args.batch_size=64",
             "--data.init_args.steps_per_epoch=2", "--trainer.max_steps=2", "--trainer.enable_progress_bar=false",
             "--trainer.callbacks.init_args.top_atoms=4", "--trainer.callbacks.init_args.ablation=false"])
    return {"cohort": cohort, "fit": fit, "sae": sae, "ckpt": ckpt}


def test_the_cohort_run_is_named_and_logs_its_checkpoint_as_an_artifact(runs):
    recs = records(runs["cohort"])
    assert [r.display_name for r in of_type(recs, "run") if r.display_name][-1] == "lin/cohort/siren/seed0"
    (artifact,) = [a for a in of_type(recs, "artifact") if a.type == "model"]
    assert (artifact.name, artifact.type) == ("cohort-lin-siren-seed0", "model")
    assert {"latest", "step4"} <= set(artifact.aliases)
    (entry,) = artifact.manifest.contents
    assert (entry.path, entry.digest) == ("last.ckpt", md5_b64(runs["ckpt"]))   # the final checkpoint
    metadata = json.loads(artifact.metadata)
    assert metadata["global_step"] == 4 and metadata["net"]["backbone"] == "siren" and "val/psnr" in metadata
    summaries = {m.name: m.summary for m in of_type(recs, "metric") if m.name}
    assert summaries["val/psnr"].max and not summaries["val/psnr"].min
    assert summaries["train/loss"].min and summaries["sae/fvu"].min


@pytest.mark.parametrize("stage, name", [("fit", "lin/fit/siren/freeze1"), ("sae", "lin/sae/siren/layer1")])
def test_fit_and_sae_runs_name_the_cohort_artifact_version_they_read(runs, stage, name):
    cohort_artifact = model_artifact(runs["cohort"])
    recs = records(runs[stage])
    assert [r.display_name for r in of_type(recs, "run") if r.display_name][-1] == name
    config = config_of(recs)
    # Offline, W&B refuses use_artifact: the run names the artifact and the digest of the version it read.
    assert config["lineage/cohort_artifact"] == cohort_artifact.name
    assert config["lineage/cohort_digest"] == cohort_artifact.digest
    assert config["lineage/cohort_ckpt"] == str(runs["ckpt"])
    assert not [a for a in of_type(recs, "artifact") if a.type == "model"]   # it logs no cohort of its own


class OnlineRun:
    """Stands in for an online ``wandb.Run`` (no W&B server here): records what ``use_artifact`` receives."""

    offline = False

    def __init__(self) -> None:
        self.used = []

    def use_artifact(self, artifact):
        self.used.append(artifact)
        return artifact


def test_online_runs_declare_the_same_artifact_version_with_use_artifact(runs):
    cohort_artifact = model_artifact(runs["cohort"])
    run = OnlineRun()
    WandbLineage().declare_input(run, runs["ckpt"])
    (used,) = run.used
    # W&B matches a used artifact to a logged version by name and content digest: both are the cohort's.
    assert (used.name, used.type, used.digest) == (cohort_artifact.name, "model", cohort_artifact.digest)


def test_names_and_variants():
    assert variant_of("runs/mri/fit/siren/auto_below", "fit", "siren") == "auto_below"
    assert variant_of("/x/runs/s/sae/ffmlp/seed1/layer2", "sae", "ffmlp") == "seed1/layer2"
    assert variant_of("/tmp/somewhere", "fit", "siren") == ""
    assert artifact_name("study quick", "siren", "seed0/lr:3e-4") == "cohort-study_quick-siren-seed0_lr_3e-4"
