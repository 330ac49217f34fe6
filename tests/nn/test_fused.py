"""The fused SIREN layer (nn/fused.py) equals the autograd path in every BatchedLinear layout, to the first and
the second derivative, so derivative supervision through a SIREN works in eager mode."""

import pytest
import torch

from inr_lightning.nn import CohortINR, INRConfig, layers
from inr_lightning.nn.fused import plain_sine_linear, sine_linear
from inr_lightning.nn.layers import SineLayer

# (copies, input copies): one shared encoder, n heads on one shared input, n encoders with their own inputs
LAYOUTS = [(1, 1), (4, 1), (4, 4)]


def inputs(copies: int, input_copies: int, dtype=torch.float64):
    torch.manual_seed(0)
    x = torch.randn(input_copies, 7, 3, dtype=dtype, requires_grad=True)
    w = torch.randn(copies, 5, 3, dtype=dtype, requires_grad=True)
    b = torch.randn(copies, 1, 5, dtype=dtype, requires_grad=True)
    return x, w, b


@pytest.mark.parametrize("copies,input_copies", LAYOUTS)
def test_gradcheck_and_gradgradcheck_float64(copies, input_copies):
    args = inputs(copies, input_copies)
    fn = lambda x, w, b: sine_linear(x, w, b, 2.5)  # noqa: E731
    # fast_mode: each Jacobian checked along random directions (torch's documented fast gradcheck), not entry by
    # entry: a wrong derivative still fails; the full Jacobians of gradgradcheck cost minutes here.
    assert torch.autograd.gradcheck(fn, args, fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, args, fast_mode=True)  # the first derivative is differentiable again


@pytest.mark.parametrize("copies,input_copies", LAYOUTS)
def test_fused_equals_autograd_path(copies, input_copies):
    torch.manual_seed(0)
    layer = SineLayer(copies, 16, 32, omega0=30.0, is_first=False)
    x = torch.randn(input_copies, 50, 16, requires_grad=True)
    upstream = torch.randn(copies, 50, 32)
    results = []
    for forward in (layer, lambda x: plain_sine_linear(x, layer.linear.weight, layer.linear.bias, 30.0)):
        layer.zero_grad()
        x.grad = None
        y = forward(x)
        (y * upstream).sum().backward()
        results.append((y.detach().clone(), x.grad.clone(), layer.linear.weight.grad.clone(),
                        layer.linear.bias.grad.clone()))
    for got, reference in zip(*results):
        assert got.shape == reference.shape
        torch.testing.assert_close(got, reference, rtol=1e-4, atol=1e-4)


def test_derivative_supervision_through_a_siren_equals_the_plain_path(monkeypatch):
    """A loss on ∂y/∂coords (fitting an image's gradient), backpropagated to every parameter: the fused layers
    give the gradients of plain autograd ops."""
    torch.manual_seed(0)
    net = CohortINR(INRConfig(width=16, shared_layers=3, head_layers=2), num_signals=2, out_channels=1).double()
    coords = (torch.rand(40, 2, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    target = torch.randn(2, 40, 2, dtype=torch.float64)
    calls = []

    def counted(*args):
        calls.append(1)
        return sine_linear(*args)

    def parameter_grads():
        net.zero_grad()
        y = net(coords)  # (2, 40, 1)
        dy = torch.stack([torch.autograd.grad(y[i].sum(), coords, create_graph=True)[0] for i in range(2)])
        ((dy - target) ** 2).sum().backward()
        return {name: p.grad for name, p in net.named_parameters()}

    monkeypatch.setattr(layers, "sine_linear", counted)
    fused = parameter_grads()
    assert len(calls) == 4  # 3 encoder layers and the hidden head layer ran fused
    monkeypatch.setattr(layers, "sine_linear", lambda *args: None)  # the plain autograd path
    plain = parameter_grads()
    assert [k for k, g in fused.items() if g is None] == ["heads.out.bias"]  # ∂y/∂coords does not see it
    for key, grad in fused.items():
        if grad is not None:
            torch.testing.assert_close(grad, plain[key], rtol=1e-10, atol=1e-12)


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
