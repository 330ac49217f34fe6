import lightning as L
import pytest
import torch

from inr_lightning.data import SignalDataModule, Synthetic
from inr_lightning.errors import InputError
from inr_lightning.models import CohortINRModule
from inr_lightning.nn import INRConfig


def _fit(backbone: str, steps: int, tmp_path, **model_kwargs):
    L.seed_everything(0)
    data = SignalDataModule(Synthetic(size=16, num_images=4, seed=1), resolution=16, num_signals=4,
                            steps_per_epoch=steps)
    model = CohortINRModule(INRConfig(backbone=backbone, width=64, shared_layers=3, num_frequencies=32, sigma=3.0),
                            num_signals=data.num_signals, out_channels=data.num_channels, **model_kwargs)
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, data)
    return trainer, model, data


@pytest.mark.parametrize("backbone,floor", [("siren", 35.0), ("ffmlp", 30.0)])
def test_cohort_training_reaches_a_psnr_floor(backbone, floor, tmp_path):
    trainer, model, data = _fit(backbone, 300, tmp_path, lr=1e-3)
    psnr = trainer.callback_metrics["val/psnr"].item()
    assert psnr >= floor, f"{backbone}: val/psnr {psnr:.2f} dB < {floor} dB after 300 steps"
    # val/psnr is PSNR on [0, 1] of the full-grid prediction, per signal then averaged.
    pred = ((model.predict_grid(data.coords) + 1) / 2).clamp(0, 1)
    target = (data.targets + 1) / 2
    mse = ((pred - target) ** 2).mean(dim=(1, 2))
    assert psnr == pytest.approx((-10 * torch.log10(mse)).mean().item(), abs=1e-3)


def test_sum_and_mean_losses_differ_by_the_number_of_signals(tmp_path):
    L.seed_everything(0)
    data = SignalDataModule(Synthetic(size=16, num_images=4), resolution=16, num_signals=4)
    batch = next(iter(data.train_dataloader()))
    losses = {}
    for reduction in ("sum", "mean"):
        torch.manual_seed(0)
        model = CohortINRModule(INRConfig(width=16, shared_layers=2), num_signals=4, loss_reduction=reduction)
        losses[reduction] = model.training_step(batch, 0).item()
    assert losses["sum"] == pytest.approx(4 * losses["mean"], rel=1e-6)
    with pytest.raises(InputError, match="loss_reduction must be one of sum, mean, got 'max'"):
        CohortINRModule(INRConfig(width=16), loss_reduction="max")
