import torch

from inr_lightning.data.grid import CoordinateSteps, make_grid, step_indices


def test_grid_covers_minus_one_to_one_row_major():
    g = make_grid(3, 4)
    assert g.shape == (12, 2)
    torch.testing.assert_close(g[0], torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(g[-1], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(g[1], torch.tensor([-1.0, -1.0 + 2 / 3]))  # x varies fastest


def test_step_indices_depend_only_on_seed_epoch_step():
    a = step_indices(100, 30, seed=1, epoch=2, step=3)
    assert torch.equal(a, step_indices(100, 30, seed=1, epoch=2, step=3))
    assert not torch.equal(a, step_indices(100, 30, seed=1, epoch=2, step=4))
    assert len(set(a.tolist())) == 30
    assert torch.equal(step_indices(100, None, 0, 0, 0), torch.arange(100))


def test_rank_shards_are_disjoint_and_cover_the_step(monkeypatch):
    coords, targets = make_grid(8, 8), torch.randn(3, 64, 1)
    shards = []
    for rank in range(3):
        monkeypatch.setattr("inr_lightning.data.grid.rank_and_world", lambda r=rank: (r, 3))
        batch = next(iter(CoordinateSteps(coords, targets, 20, steps=1, seed=0, epoch_fn=lambda: 0)))
        assert batch["num_coords"] == 20
        shards.append(batch["coords"])
    union = torch.cat(shards)
    assert len(union) == 20 and len({tuple(c.tolist()) for c in union}) == 20
    expected = coords[step_indices(64, 20, 0, 0, 0)]
    assert {tuple(c.tolist()) for c in union} == {tuple(c.tolist()) for c in expected}
