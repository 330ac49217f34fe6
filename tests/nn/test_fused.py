"""The fused SIREN layer (nn/fused.py) equals the autograd path, in every BatchedLinear layout."""

import pytest
import torch

from inr_lightning.nn.fused import sine_linear
from inr_lightning.nn.layers import SineLayer


def plain(layer: SineLayer, x: torch.Tensor) -> torch.Tensor:
    return torch.sin(layer.omega0 * layer.linear(x))


# (copies, input copies): one shared encoder, n heads on one shared input, n encoders with their own inputs
LAYOUTS = [(1, 1), (4, 1), (4, 4)]


@pytest.mark.parametrize("copies,input_copies", LAYOUTS)
def test_gradcheck_float64(copies, input_copies):
    torch.manual_seed(0)
    x = torch.randn(input_copies, 7, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(copies, 5, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(copies, 1, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: sine_linear(x, w, b, 2.5), (x, w, b))


@pytest.mark.parametrize("copies,input_copies", LAYOUTS)
def test_fused_equals_autograd_path(copies, input_copies):
    torch.manual_seed(0)
    layer = SineLayer(copies, 16, 32, omega0=30.0, is_first=False)
    x = torch.randn(input_copies, 50, 16, requires_grad=True)
    upstream = torch.randn(copies, 50, 32)
    results = []
    for forward in (layer, lambda x: plain(layer, x)):
        layer.zero_grad()
        x.grad = None
        y = forward(x)
        (y * upstream).sum().backward()
        results.append((y.detach().clone(), x.grad.clone(), layer.linear.weight.grad.clone(),
                        layer.linear.bias.grad.clone()))
    for fused, reference in zip(*results):
        assert fused.shape == reference.shape
        torch.testing.assert_close(fused, reference, rtol=1e-4, atol=1e-4)


def test_frozen_weights_get_no_gradient_and_input_needs_none():
    layer = SineLayer(1, 2, 8, omega0=30.0, is_first=True)
    layer.requires_grad_(False)
    coords = torch.rand(1, 10, 2)
    assert not layer(coords).requires_grad
    layer.linear.bias.requires_grad_(True)
    layer(coords).sum().backward()
    assert layer.linear.bias.grad is not None and layer.linear.weight.grad is None


def test_autocast_takes_the_plain_path():
    layer = SineLayer(2, 4, 4, omega0=30.0, is_first=False)
    x = torch.randn(2, 3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert sine_linear(x, layer.linear.weight, layer.linear.bias, 30.0) is None
        assert layer(x).dtype == torch.bfloat16
