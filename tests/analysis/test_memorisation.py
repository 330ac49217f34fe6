"""The memorisation control on crafted images and atoms: edge alignment with the cohort's own images minus
with images it never saw, over as many images on each side."""

import pytest
import torch

from inr_lightning.analysis.locality import content_signals, edge_memorisation


def _images(seed: int, n: int, size: int = 16, offset: int = 0) -> torch.Tensor:
    """``n`` images of random rectangles on [−1, 1] (sharp edges at random places), their top row ≥ ``offset``."""
    g = torch.Generator().manual_seed(seed)
    out = -torch.ones(n, 1, size, size)
    for i in range(n):
        r0, c0 = torch.randint(0, size // 4, (2,), generator=g).tolist()
        r0 += offset
        h, w = torch.randint(3, size // 2, (2,), generator=g).tolist()
        out[i, 0, r0:r0 + h, c0:c0 + w] = 1.0
    return out


def _codes_from_maps(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense atom maps ``(A, P)`` (≥ 0) → codes with k = A: every atom in every pixel's slots."""
    a, p = maps.shape
    return maps.T.contiguous().float(), torch.arange(a).repeat(p, 1)


def test_atoms_drawn_from_trained_edges_align_with_them_more_than_with_unseen_edges():
    own, unseen = _images(0, 4), _images(1, 6, offset=8)   # unseen contours lie elsewhere
    edges = content_signals(own)["edges"]                       # (4, 256)
    vals, idx = _codes_from_maps(edges)                          # atom i = the edge map of own image i
    m = edge_memorisation(vals, idx, 4, own, unseen)
    assert m["images"] == 4                                     # both maxima over 4 images
    assert m["own"] == pytest.approx([1.0] * 4)                 # each atom is one own image's edges
    assert (m["heldout"] < 0.9).all() and (m["memorised"] > 0.1).all()
    # Against the same images as "held out", nothing is memorised.
    same = edge_memorisation(vals, idx, 4, own, own.clone())
    assert same["memorised"] == pytest.approx([0.0] * 4, abs=1e-9)


def test_the_maxima_are_over_equally_many_images():
    own, unseen = _images(2, 10), _images(3, 3)
    vals, idx = _codes_from_maps(content_signals(own)["edges"][7:])   # atoms of own images 7..9 only
    m = edge_memorisation(vals, idx, 3, own, unseen)
    # Only the first 3 own images count (as many as held out): atoms of images 7..9 gain nothing from them.
    assert m["images"] == 3 and (m["own"] < 0.99).all()
