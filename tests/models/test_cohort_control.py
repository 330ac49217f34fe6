"""The untrained-encoder control: a cohort whose encoder layers 0..j keep their random init (frozen) reconstructs
the cohort far above the noise of trained heads on a random encoder, and the SAE data module tags it."""

import lightning as L
import pytest
from conftest import raises_naming
import torch

from inr_lightning.data import ActivationDataModule, SignalDataModule, Synthetic
from inr_lightning.errors import InputError
from inr_lightning.models import CohortINRModule
from inr_lightning.nn import CohortINR, INRConfig

CFG = INRConfig(backbone="siren", width=32, shared_layers=3, omega0_hidden=30.0)




def _psnr(net: CohortINR, data: SignalDataModule) -> float:
    with torch.no_grad():
        pred = ((net(data.coords) + 1) / 2).clamp(0, 1)
    mse = ((pred - (data.targets + 1) / 2) ** 2).mean(dim=(1, 2))
    return float((-10 * torch.log10(mse)).mean())


def test_random_prefix_stays_bit_identical_and_the_control_reconstructs(tmp_path):
    L.seed_everything(0)
    data = SignalDataModule(Synthetic(size=16, num_images=4, seed=1), resolution=16, num_signals=4, steps_per_epoch=300)
    model = CohortINRModule(CFG, num_signals=4, out_channels=1, lr=1e-3, freeze_random_prefix=1)
    init = {k: v.clone() for k, v in model.net.encoder.layers[:2].state_dict().items()}
    upper = model.net.encoder.layers[2].linear.weight.detach().clone()
    trainer = L.Trainer(max_steps=300, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0)
    trainer.fit(model, data)
    after = model.net.encoder.layers[:2].state_dict()
    assert all(torch.equal(init[k], after[k]) for k in init)  # layers 0..1: their random init, bit for bit
    assert not torch.equal(upper, model.net.encoder.layers[2].linear.weight)  # layer 2 trained
    control = _psnr(model.net, data)
    # The old control: the trained heads (and layer 2) on a fresh random encoder — noise.
    noise_net = CohortINR(CFG, 4, 1)
    noise_net.heads.load_state_dict(model.net.heads.state_dict())
    noise = _psnr(noise_net, data)
    assert control >= 20.0 and control >= noise + 10, (control, noise)

    # The SAE data module reads the checkpoint's hyper-parameters and tags the encoder.
    ckpt = tmp_path / "control.ckpt"
    trainer.save_checkpoint(ckpt)
    for layer, tag in ((0, "untrained"), (1, "untrained"), (2, "cohort")):
        dm = ActivationDataModule(str(ckpt), layer=layer, cohort_data=data, backbone="siren")
        assert dm.summary()["sae/encoder"] == tag and dm.summary()["data/freeze_random_prefix"] == 1
        assert dm.describe() == f"SIREN layer {layer} ({tag} encoder)"


@pytest.mark.parametrize("bad", [3, -1, True])
def test_random_prefix_out_of_range_is_one_line_error(bad):
    with raises_naming(InputError, f"freeze_random_prefix={bad}", "0..2"):
        CohortINRModule(CFG, num_signals=2, freeze_random_prefix=bad)
