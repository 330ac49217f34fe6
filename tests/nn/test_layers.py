import math

import pytest
from conftest import raises_naming
import torch

from inr_lightning.errors import InputError
from inr_lightning.nn import BatchedLinear, CohortINR, FourierFeatures, INRConfig


def test_siren_init_bounds():
    torch.manual_seed(0)
    cfg = INRConfig(backbone="siren", width=64, shared_layers=4, omega0_first=30.0, omega0_hidden=20.0)
    net = CohortINR(cfg, num_signals=3, out_channels=1)
    first = net.encoder.linear(0).weight
    assert first.abs().max() <= 1 / 2 and first.abs().max() > 0.45  # U(−1/in, 1/in), in = 2
    hidden_bound = math.sqrt(6 / 64) / 20.0
    for j in range(1, 4):
        w = net.encoder.linear(j).weight
        assert w.abs().max() <= hidden_bound and w.abs().max() > 0.95 * hidden_bound
    assert net.heads.out.weight.abs().max() <= hidden_bound  # last linear layer: the hidden bound too


def test_ffmlp_features_are_fixed_buffers():
    torch.manual_seed(0)
    ff = FourierFeatures(2, num_frequencies=16, sigma=10.0)
    assert "B" in dict(ff.named_buffers()) and not list(ff.parameters())
    x = torch.rand(5, 2) * 2 - 1
    out = ff(x)
    assert out.shape == (5, 32)
    torch.testing.assert_close(out[:, :16] ** 2 + out[:, 16:] ** 2, torch.ones(5, 16))
    # σ refers to coordinates on [0, 1): the map sees (x + 1) / 2.
    torch.testing.assert_close(out[:, :16], torch.sin(2 * math.pi * ((x + 1) / 2) @ ff.B.T))


@pytest.mark.parametrize("backbone,head_layers", [("siren", 1), ("siren", 2), ("ffmlp", 2)])
def test_batched_heads_equal_a_loop_over_heads(backbone, head_layers):
    torch.manual_seed(0)
    cfg = INRConfig(backbone=backbone, width=32, shared_layers=3, head_layers=head_layers, num_frequencies=16)
    net = CohortINR(cfg, num_signals=5, out_channels=3)
    coords = torch.rand(100, 2) * 2 - 1
    batched = net(coords)
    h = net.encoder(coords[None])[0]
    act = torch.sin if backbone == "siren" else torch.relu
    for i in range(5):
        x = h
        for layer in net.heads.hidden:
            pre = x @ layer.linear.weight[i].T + layer.linear.bias[i, 0]
            x = act(cfg.omega0_hidden * pre) if backbone == "siren" else act(pre)
        single = x @ net.heads.out.weight[i].T + net.heads.out.bias[i, 0]
        torch.testing.assert_close(batched[i], single, rtol=1e-5, atol=1e-5)


def test_batched_linear_accepts_shared_or_per_copy_input():
    torch.manual_seed(0)
    lin = BatchedLinear(4, 3, 2)
    shared, per_copy = torch.randn(1, 7, 3), torch.randn(4, 7, 3)
    torch.testing.assert_close(lin(shared), lin(shared.expand(4, -1, -1)))
    for i in range(4):
        torch.testing.assert_close(lin(per_copy)[i], per_copy[i] @ lin.weight[i].T + lin.bias[i])
    with raises_naming(ValueError, 3, 1, 4):
        lin(torch.randn(3, 7, 3))


def test_forward_from_any_layer_matches_full_forward():
    torch.manual_seed(0)
    net = CohortINR(INRConfig(backbone="ffmlp", width=32, shared_layers=4, num_frequencies=8), 2, 1)
    coords = torch.rand(50, 2) * 2 - 1
    acts = net.activations(coords)
    assert len(acts) == 4 and all(a.shape == (1, 50, 32) for a in acts)
    for j in range(4):
        torch.testing.assert_close(net.forward_from(acts[j], j), net(coords))
    torch.testing.assert_close(net.encoder(acts[0], start=1, stop=3), acts[2])


def test_unknown_backbone_is_a_clear_error():
    with raises_naming(InputError, "'resnet'", "siren", "ffmlp"):
        INRConfig(backbone="resnet")
