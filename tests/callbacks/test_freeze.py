"""StableRankFreeze: the depth rule on crafted encoders, both readings, explicit depths, and its reports."""

from __future__ import annotations

import lightning as L
import pytest
from conftest import raises_naming
import torch

from inr_lightning.analysis import stable_rank
from inr_lightning.callbacks import StableRankFreeze
from inr_lightning.callbacks.freeze import choose_last_frozen_layer
from inr_lightning.checkpoints import load_cohort, save_cohort
from inr_lightning.data import SignalDataModule, Synthetic
from inr_lightning.errors import InputError
from inr_lightning.models import SignalFitModule
from inr_lightning.nn import CohortINR, INRConfig

WIDTH, LAYERS = 16, 4


def with_spectrum(shape: tuple[int, int], singular_values: list[float], seed: int) -> torch.Tensor:
    """A matrix with the given singular values and random singular vectors."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], generator=g, dtype=torch.float64))
    k = len(singular_values)
    return (u[:, :k] * torch.tensor(singular_values, dtype=torch.float64)) @ v[:, :k].T


def crafted_ckpt(path, ranks: list[float], backbone: str = "siren"):
    """A cohort checkpoint whose encoder layer j has stable rank ``ranks[j]`` (exactly: σ = (1, s, s, …))."""
    cfg = INRConfig(backbone=backbone, width=WIDTH, shared_layers=len(ranks), num_frequencies=8)
    torch.manual_seed(0)
    net = CohortINR(cfg, 4, 1)
    for j, target in enumerate(ranks):
        w = net.encoder.linear(j).weight
        k = min(w.shape[1:])
        s = ((target - 1) / (k - 1)) ** 0.5  # Σσ² / σ₁² = 1 + (k − 1) s²
        assert 0 <= s <= 1
        crafted = with_spectrum(tuple(w.shape[1:]), [1.0] + [s] * (k - 1), seed=j) * 0.05
        with torch.no_grad():
            w.copy_(crafted.float().unsqueeze(0))
    return save_cohort(path, net)


def fit_auto(ckpt, callback, protocol: str = "auto", steps: int = 2) -> SignalFitModule:
    module = SignalFitModule(load_cohort(ckpt)[0], protocol=protocol, num_signals=2, lr=1e-2, record_steps=[])
    dm = SignalDataModule(Synthetic(size=16, num_images=4), resolution=16, num_signals=2, num_heldout=2,
                          split="heldout", steps_per_epoch=2)
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[callback],
                        accelerator="cpu", devices=1)
    trainer.fit(module, datamodule=dm)
    return module


def frozen_layers(module) -> list[int]:
    return [j for j, layer in enumerate(module.net.encoder.layers)
            if not any(p.requires_grad for p in layer.parameters())]


def test_crafted_spectra_have_the_stable_ranks_asked_for(tmp_path):
    path = crafted_ckpt(tmp_path / "c.ckpt", [1.5, 3.0, 9.0, 5.0])
    state = torch.load(path, weights_only=True)["state_dict"]
    got = [float(stable_rank(state[f"net.encoder.layers.{j}.linear.weight"][0])) for j in range(4)]
    assert got == pytest.approx([1.5, 3.0, 9.0, 5.0], rel=1e-4)


@pytest.mark.parametrize("rule,frozen", [("through", [0, 1, 2]), ("below", [0, 1])])
def test_auto_freezes_up_to_the_argmax_of_a_crafted_encoder(tmp_path, rule, frozen):
    path = crafted_ckpt(tmp_path / "c.ckpt", [1.5, 3.0, 9.0, 5.0])
    before = torch.load(path, weights_only=True)["state_dict"]
    callback = StableRankFreeze(rule=rule)
    module = fit_auto(path, callback)
    assert callback.layer == 2 and module.last_frozen_layer == frozen[-1]
    assert frozen_layers(module) == frozen
    for j in range(LAYERS):  # frozen layers kept the cohort weights bit for bit; the others trained
        key = f"net.encoder.layers.{j}.linear.weight"
        same = torch.equal(module.state_dict()[key], before[key].expand(2, -1, -1))
        assert same == (j in frozen), key
    extra = {**module.summary(), **callback.summary()}   # what RunSummary collects
    assert extra["freeze/stable_rank"] == pytest.approx([1.5, 3.0, 9.0, 5.0], rel=1e-4)
    assert extra["freeze/argmax"] == 2 and extra["freeze/rule"] == rule and extra["freeze/applied"]
    assert extra["fit/last_frozen_layer"] == extra["freeze/last_frozen_layer"] == frozen[-1]


def test_first_layer_may_win_only_when_allowed(tmp_path):
    path = crafted_ckpt(tmp_path / "c.ckpt", [12.0, 3.0, 9.0, 5.0], backbone="ffmlp")
    assert fit_auto(path, StableRankFreeze(), steps=1).last_frozen_layer == 0
    assert fit_auto(path, StableRankFreeze(allow_first_layer=False), steps=1).last_frozen_layer == 2
    # below + argmax at layer 0: nothing frozen
    module = fit_auto(path, StableRankFreeze(rule="below"), steps=1)
    assert module.last_frozen_layer == -1 and frozen_layers(module) == []


def test_explicit_depth_overrides_the_argmax(tmp_path):
    path = crafted_ckpt(tmp_path / "c.ckpt", [1.5, 3.0, 9.0, 5.0])
    assert frozen_layers(fit_auto(path, StableRankFreeze(depth=1), steps=1)) == [0, 1]
    assert frozen_layers(fit_auto(path, StableRankFreeze(depth=3, rule="below"), steps=1)) == [0, 1, 2]
    with raises_naming(InputError, 4, "0..3"):
        fit_auto(path, StableRankFreeze(depth=4), steps=1)


def test_other_protocols_are_only_reported(tmp_path, capsys):
    path = crafted_ckpt(tmp_path / "c.ckpt", [1.5, 3.0, 9.0, 5.0])
    callback = StableRankFreeze()
    module = fit_auto(path, callback, protocol="finetune", steps=1)
    assert frozen_layers(module) == [] and module.last_frozen_layer == -1
    extra = callback.summary()
    assert extra["freeze/argmax"] == 2 and not extra["freeze/applied"]
    # nothing was frozen by the rule: no freeze/last_frozen_layer in the record, no console line
    assert "freeze/last_frozen_layer" not in extra and "auto: froze" not in capsys.readouterr().err


def test_auto_says_what_it_froze_and_why(tmp_path, capsys):
    path = crafted_ckpt(tmp_path / "c.ckpt", [1.5, 3.0, 9.0, 5.0])
    fit_auto(path, StableRankFreeze(rule="below"), steps=1)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("auto: ")]
    assert lines == ["auto: froze encoder layers 0..1 (rule below: layer 2 has the highest stable rank; "
                     "stable rank per layer: 1.5, 3.0, 9.0, 5.0)"]


def test_relative_to_init_divides_by_the_same_layers_stable_rank_at_initialisation(tmp_path):
    path = crafted_ckpt(tmp_path / "c.ckpt", [1.5, 3.0, 9.0, 5.0])
    callback = StableRankFreeze(relative_to_init=True)
    module = fit_auto(path, callback, steps=1)
    init = callback.summary()["freeze/stable_rank_init"]
    ratios = [a / b for a, b in zip(callback.profile, init)]
    assert callback.layer == max(range(LAYERS), key=ratios.__getitem__) and len(init) == LAYERS
    assert init == pytest.approx([float(stable_rank(w)) for w in module.init_encoder_weights])


def test_choose_last_frozen_layer_rule():
    profile = [1.0, 4.0, 7.0, 2.0]
    assert choose_last_frozen_layer(profile, "through") == (2, 2)
    assert choose_last_frozen_layer(profile, "below") == (2, 1)
    assert choose_last_frozen_layer([9.0, 4.0, 7.0], "through", allow_first_layer=False) == (2, 2)
    assert choose_last_frozen_layer(profile, "below", depth=0) == (0, -1)
    with raises_naming(InputError, 4, "0..3"):
        choose_last_frozen_layer(profile, depth=4)
    with raises_naming(InputError, "'at'", "through", "below"):
        StableRankFreeze(rule="at")
    with raises_naming(InputError, "depth", -2):
        StableRankFreeze(depth=-2)


def test_the_callback_decides_a_fits_depth_and_never_freezes_another_module():
    from inr_lightning.models import CohortINRModule
    from inr_lightning.nn import INRConfig

    module = CohortINRModule(INRConfig(width=8, shared_layers=2))
    with pytest.raises(InputError, match="model is a CohortINRModule"):
        StableRankFreeze().setup(None, module, "fit")
    assert all(p.requires_grad for p in module.parameters())
