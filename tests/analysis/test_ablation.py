"""All-atom ablations by the fast path equal naive full recomputation; localization statistics are exact."""

import numpy as np
import pytest
import torch

from inr_lightning.analysis.ablation import (
    ablate_all,
    ablate_naive,
    atom_map,
    atom_statistics,
    encode_grid,
)
from inr_lightning.data.grid import make_grid
from inr_lightning.nn import CohortINR, INRConfig
from inr_lightning.nn.sae import TopKSAE


@pytest.mark.parametrize("backbone", ["siren", "ffmlp"])
def test_fast_ablation_equals_naive(backbone):
    torch.manual_seed(0)
    net = CohortINR(INRConfig(backbone=backbone, width=16, shared_layers=3, num_frequencies=8), 3, 2).double()
    coords = make_grid(12, 10).double()
    layer = 1
    x = net.activations(coords)[layer][0]
    target = torch.rand(3, len(coords), 2, dtype=torch.float64) * 2 - 1
    sae = TopKSAE(16, n_atoms=40, k=3).double()
    sae.init_b_pre(x, "mean")
    fast = ablate_all(sae, net, layer, x, target, chunk=37)  # small chunks: several passes
    vals, _ = encode_grid(sae, x)
    assert fast["pairs"] == int((vals > 0).sum()) <= 3 * len(coords)
    firing = [a for a in range(40) if fast["support_count"][a] > 0]
    assert len(firing) > 5
    for a in firing[:8] + [a for a in range(40) if a not in firing][:2]:
        drop, drop_support = ablate_naive(sae, net, layer, x, target, a)
        torch.testing.assert_close(fast["drop"][a], drop, rtol=1e-9, atol=1e-9)
        ep, ep_support = ablate_naive(sae, net, layer, x, target, a, error_preserving=True)
        torch.testing.assert_close(fast["drop_ep"][a], ep, rtol=1e-9, atol=1e-9)
        if a in firing:
            torch.testing.assert_close(fast["drop_support"][a], drop_support, rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(fast["drop_ep_support"][a], ep_support, rtol=1e-9, atol=1e-9)
        else:
            assert torch.all(fast["drop"][a] == 0) and torch.isnan(fast["drop_support"][a]).all()


def test_atom_statistics_on_crafted_maps():
    # 4×4 grid, k = 1: atom 0 fires on two separate pixels, atom 1 on a 2×2 block, atom 2 never.
    vals = torch.zeros(16, 1)
    idx = torch.full((16, 1), 3)
    for p, v in ((0, 1.0), (15, 3.0)):
        vals[p], idx[p] = v, 0
    for p in (5, 6, 9, 10):
        vals[p], idx[p] = 2.0, 1
    stats = atom_statistics(vals, idx, 4, (4, 4))
    assert stats["fire_count"].tolist() == [2, 4, 0, 0]
    assert stats["support_fraction"].tolist() == [2 / 16, 4 / 16, 0, 0]
    assert stats["components"].tolist() == [2, 1, 0, 0]
    np.testing.assert_allclose(stats["centroid_row"][:2], [0.75, 0.5])  # (1·0 + 3·1) / 4; block centre
    np.testing.assert_allclose(stats["mean_activation"][:2], [4 / 16, 8 / 16])
    # block: every pixel is (1/6, 1/6) from the centre → spread √2/6
    np.testing.assert_allclose(stats["spread"][1], np.sqrt(2) / 6)
    assert np.isnan(stats["spread"][2])
    assert atom_map(vals, idx, 1, (4, 4))[1:3, 1:3].eq(2).all()
