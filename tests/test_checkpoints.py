"""save_cohort writes what the cohort stage's Lightning run writes, and load_cohort reads it back exactly."""

import lightning as L
import pytest
from conftest import raises_naming
import torch

from inr_lightning.checkpoints import load_cohort, save_cohort
from inr_lightning.data import SignalDataModule, Synthetic
from inr_lightning.errors import InputError
from inr_lightning.models import CohortINRModule
from inr_lightning.nn import CohortINR, INRConfig


def test_save_then_load_gives_the_same_network(tmp_path):
    torch.manual_seed(0)
    net = CohortINR(INRConfig(backbone="ffmlp", width=16, shared_layers=2, head_layers=2, num_frequencies=8), 3, 2)
    loaded, hp = load_cohort(save_cohort(tmp_path / "c.ckpt", net))
    assert hp["_class_path"] == "inr_lightning.models.CohortINRModule" and hp["num_signals"] == 3
    coords = torch.rand(20, 2) * 2 - 1
    torch.testing.assert_close(loaded(coords), net(coords), rtol=0, atol=0)
    assert loaded.cfg == net.cfg and not any(p.requires_grad for p in loaded.parameters())


def test_the_layout_is_the_one_a_trainer_writes(tmp_path):
    torch.manual_seed(0)
    data = SignalDataModule(Synthetic(size=8, num_images=2), resolution=8, num_signals=2, steps_per_epoch=1)
    module = CohortINRModule(INRConfig(width=8, shared_layers=2), num_signals=2)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        default_root_dir=tmp_path)
    trainer.fit(module, data)
    trainer.save_checkpoint(tmp_path / "lightning.ckpt")
    theirs = torch.load(tmp_path / "lightning.ckpt", weights_only=True)
    ours = torch.load(save_cohort(tmp_path / "ours.ckpt", module.net), weights_only=True)
    assert ours["state_dict"].keys() == theirs["state_dict"].keys()
    for key, value in theirs["state_dict"].items():
        assert torch.equal(ours["state_dict"][key], value), key
    for key in ("net", "num_signals", "out_channels"):
        assert ours["hyper_parameters"][key] == theirs["hyper_parameters"][key], key


def test_a_batched_fit_network_is_not_a_cohort(tmp_path):
    net = CohortINR(INRConfig(width=8, shared_layers=2), 3, 1, encoder_copies=3)
    with raises_naming(InputError, 3, 1):
        save_cohort(tmp_path / "c.ckpt", net)
