import lightning as L
import pytest
from conftest import raises_naming
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


@pytest.mark.slow
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


def test_heads_are_independent_and_share_the_encoder():
    """Changing image 2 changes head 2's gradient and the shared encoder's, and leaves heads 0 and 1's
    gradients bit for bit as they were."""
    data = SignalDataModule(Synthetic(size=16, num_images=3, seed=1), resolution=16, num_signals=3)
    batch = next(iter(data.train_dataloader()))
    changed = {**batch, "target": batch["target"].clone()}
    changed["target"][2] = -changed["target"][2]
    grads = []
    for b in (batch, changed):
        torch.manual_seed(0)
        model = CohortINRModule(INRConfig(width=16, shared_layers=2, head_layers=2), num_signals=3)
        model.training_step(b, 0).backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    before, after = grads
    heads = [name for name in before if name.startswith("net.heads.")]
    assert len(heads) == 4  # a hidden sine layer and the output layer, weight and bias each
    for name in heads:
        assert torch.equal(before[name][:2], after[name][:2]), name
        assert not torch.allclose(before[name][2], after[name][2]), name
    assert not torch.allclose(before["net.encoder.layers.0.linear.weight"], after["net.encoder.layers.0.linear.weight"])


def test_a_small_cohort_reaches_a_psnr_floor_in_100_steps():
    """Three 16×16 images, one shared SIREN encoder, bare Adam steps: every image's own head fits it."""
    data = SignalDataModule(Synthetic(size=16, num_images=3, seed=2), resolution=16, num_signals=3)
    batch = {"coords": data.coords, "target": data.targets, "num_coords": len(data.coords)}
    torch.manual_seed(0)
    model = CohortINRModule(INRConfig(width=32, shared_layers=2), num_signals=3, lr=1e-3)
    opt = model.configure_optimizers()
    for _ in range(100):
        model.training_step(batch, 0).backward()
        opt.step()
        opt.zero_grad()
    pred = ((model.predict_grid(data.coords) + 1) / 2).clamp(0, 1)
    psnr = -10 * torch.log10(((pred - (data.targets + 1) / 2) ** 2).mean(dim=(1, 2)))
    assert psnr.min() >= 35.0, psnr.tolist()


def test_an_unknown_loss_reduction_is_one_input_error():
    with raises_naming(InputError, "'max'", "sum", "mean"):
        CohortINRModule(INRConfig(width=16), loss_reduction="max")


def test_cosine_schedule_ends_the_cohort_at_rest(tmp_path):
    """lr_schedule: cosine — the rate falls from lr to 0 over max_steps, stepped every step; constant keeps it."""
    trainer, model, _ = _fit("siren", 20, tmp_path, lr=1e-3, lr_schedule="cosine")
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)
    assert trainer.lr_scheduler_configs[0].scheduler.T_max == 20
    trainer, _, _ = _fit("siren", 20, tmp_path, lr=1e-3)
    assert trainer.optimizers[0].param_groups[0]["lr"] == 1e-3
    with raises_naming(InputError, "linear"):
        CohortINRModule(INRConfig(width=8, shared_layers=2), lr_schedule="linear")
