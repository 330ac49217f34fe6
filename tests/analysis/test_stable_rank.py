import torch

from inr_lightning.analysis import stable_rank


def _with_singular_values(s: list[float], rows: int = 6, cols: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=g, dtype=torch.float64))
    sigma = torch.zeros(rows, cols, dtype=torch.float64)
    sigma[range(len(s)), range(len(s))] = torch.tensor(s, dtype=torch.float64)
    return (u @ sigma @ v.T).float()


def test_stable_rank_of_known_singular_values():
    w = _with_singular_values([4.0, 2.0, 2.0, 1.0, 0.0])
    assert abs(stable_rank(w) - (16 + 4 + 4 + 1) / 16) < 1e-5


def test_stable_rank_bounds_and_stacks():
    assert abs(stable_rank(torch.eye(7)) - 7.0) < 1e-9  # all σ equal: stable rank = rank
    assert abs(stable_rank(torch.outer(torch.arange(1.0, 5), torch.ones(3))) - 1.0) < 1e-6  # rank one
    stack = torch.stack([torch.eye(4), _with_singular_values([3.0, 1.0, 0, 0], 4, 4)])
    ranks = stable_rank(stack)
    assert ranks.shape == (2,) and abs(ranks[0] - 4) < 1e-9 and abs(ranks[1] - 10 / 9) < 1e-5


def test_random_init_has_the_expected_stable_rank():
    torch.manual_seed(0)
    w = torch.empty(256, 256).uniform_(-1, 1)
    assert 50 < stable_rank(w) < 80  # SCIENCE.md §3: a random 256×256 init has srank ≈ 64
