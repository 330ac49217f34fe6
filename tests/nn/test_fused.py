"""The fused SIREN layer (nn/fused.py) equals the autograd path, in every BatchedLinear layout, whole and
copy-blocked."""

import pytest
import torch

from inr_lightning.nn import fused
from inr_lightning.nn.fused import copy_group_size, sine_linear
from inr_lightning.nn.layers import SineLayer


def plain(layer: SineLayer, x: torch.Tensor) -> torch.Tensor:
    return torch.sin(layer.omega0 * layer.linear(x))


# (copies, input copies): one shared encoder, n heads on one shared input, n encoders with their own inputs
LAYOUTS = [(1, 1), (4, 1), (4, 4)]
# Copy blocking on: groups of 2 copies for these tiny shapes, so 5 copies make an uneven last group.
BLOCKED = [(5, 1), (5, 5)]


@pytest.fixture
def blocks_of_two(monkeypatch):
    """Shrinks the CPU block so that two copies of (rows, out) activations fill one."""
    def use(rows: int, out_features: int, dtype: torch.dtype) -> None:
        monkeypatch.setattr(fused, "CPU_BLOCK_BYTES", 2 * rows * out_features * dtype.itemsize)
    return use


@pytest.mark.parametrize("copies,input_copies", LAYOUTS + BLOCKED)
def test_gradcheck_float64(copies, input_copies, blocks_of_two):
    if (copies, input_copies) in BLOCKED:
        blocks_of_two(7, 5, torch.float64)
        assert copy_group_size(copies, 7, 5, torch.empty(0, dtype=torch.float64)) == 2
    torch.manual_seed(0)
    x = torch.randn(input_copies, 7, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(copies, 5, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(copies, 1, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: sine_linear(x, w, b, 2.5), (x, w, b))


@pytest.mark.parametrize("copies,input_copies", LAYOUTS + BLOCKED)
def test_fused_equals_autograd_path(copies, input_copies, blocks_of_two):
    if (copies, input_copies) in BLOCKED:
        blocks_of_two(50, 32, torch.float32)
        assert copy_group_size(copies, 50, 32, torch.empty(0)) == 2
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
    for got, reference in zip(*results):
        assert got.shape == reference.shape
        torch.testing.assert_close(got, reference, rtol=1e-4, atol=1e-4)


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


def test_copy_groups_are_cache_sized_on_cpu_and_whole_elsewhere():
    x = torch.empty(0)  # float32 on the CPU
    per_copy = 4096 * 256 * 4  # one 64×64 signal's activation of a width-256 layer
    assert fused.CPU_BLOCK_BYTES == 2 * per_copy
    assert copy_group_size(16, 4096, 256, x) == 2       # 64×64: two signals at a time
    assert copy_group_size(16, 1024, 256, x) == 8       # 32×32: eight
    assert copy_group_size(16, 256 * 256, 256, x) == 1  # 256×256: one (never zero)
    assert copy_group_size(3, 64, 256, x) == 3          # small: all copies in one go (no loop)
    assert copy_group_size(16, 4096, 256, torch.empty(0, device="meta")) == 16  # not a CPU: never blocked
