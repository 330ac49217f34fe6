"""stable_rank = ‖W‖²_F / ‖W‖²₂ = Σσ² / σ₁², exactly, on matrices whose singular values are known by construction."""

import numpy as np
import pytest
import torch

from inr_lightning.analysis import stable_rank


def orthogonal(n: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def with_singular_values(s: list[float], rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """U Σ Vᵀ with random orthogonal U, V: a float64 matrix whose singular values are exactly ``s``."""
    sigma = torch.zeros(rows, cols, dtype=torch.float64)
    sigma[range(len(s)), range(len(s))] = torch.tensor(s, dtype=torch.float64)
    return orthogonal(rows, seed) @ sigma @ orthogonal(cols, seed + 1).T


@pytest.mark.parametrize("s,expected", [([4.0, 2.0, 2.0, 1.0, 0.0], 25 / 16), ([3.0, 3.0, 3.0], 3.0),
                                        ([2.0], 1.0), ([1.0, 1e-3], 1 + 1e-6)])
def test_known_singular_values(s, expected):
    w = with_singular_values(s, 6, 5)
    assert stable_rank(w) == pytest.approx(expected, rel=1e-12)
    assert stable_rank(w.T) == pytest.approx(expected, rel=1e-12)  # same singular values


def test_diagonal_and_rank_one_cases():
    assert stable_rank(torch.diag(torch.tensor([5.0, 0.0, 0.0]))) == 1.0
    assert stable_rank(torch.eye(7)) == pytest.approx(7.0, rel=1e-12)  # all σ equal: stable rank = rank
    u, v = torch.arange(1.0, 6.0, dtype=torch.float64), torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    assert stable_rank(torch.outer(u, v)) == pytest.approx(1.0, rel=1e-12)


def test_invariant_under_orthogonal_transforms_and_scale():
    w = torch.randn(8, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    r = stable_rank(w)
    assert 1.0 < r < 6.0
    assert stable_rank(orthogonal(8, 10) @ w @ orthogonal(6, 11)) == pytest.approx(r, rel=1e-12)
    for scale in (1e-6, -3.0, 1e6):
        assert stable_rank(scale * w) == pytest.approx(r, rel=1e-12)


def test_float64_agreement_with_numpy_for_any_input_dtype():
    w = torch.randn(32, 24, generator=torch.Generator().manual_seed(4))  # float32
    s = np.linalg.svd(w.double().numpy(), compute_uv=False)
    expected = float((s**2).sum() / s[0] ** 2)
    assert stable_rank(w) == pytest.approx(expected, rel=1e-12)  # computed in float64 from the float32 values
    assert stable_rank(w.to(torch.bfloat16)) == pytest.approx(
        stable_rank(w.to(torch.bfloat16).double()), rel=1e-12)


def test_a_stack_gives_one_rank_per_matrix():
    stack = torch.stack([torch.eye(4, dtype=torch.float64), with_singular_values([3.0, 1.0], 4, 4)])
    ranks = stable_rank(stack)
    assert ranks.shape == (2,) and ranks.dtype == torch.float64
    torch.testing.assert_close(ranks, torch.tensor([4.0, 10 / 9], dtype=torch.float64), rtol=1e-12, atol=0)
    weight = torch.nn.Parameter(torch.randn(3, 5, 5))  # a BatchedLinear weight: detached, per copy
    assert stable_rank(weight).tolist() == pytest.approx([stable_rank(w) for w in weight.detach()], rel=1e-12)
