"""SAE metrics are exact on crafted data, and chunked float64 sums equal the one-shot values."""

import math

import torch

from inr_lightning.analysis import sae_metrics as m


def _crafted():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    x_hat = torch.tensor([[1.0, 0.0], [0.0, 0.5], [1.0, 1.0], [1.0, 0.0]])
    vals = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.5, 0.0], [3.0, 0.0]])
    idx = torch.tensor([[0, 1], [1, 2], [0, 3], [0, 2]])
    return x, x_hat, vals, idx


def test_fvu_l0_and_counts_exact():
    x, x_hat, vals, idx = _crafted()
    # mean (1, 0.5); Σ‖x − μ‖² = (0+.25)+(1+.25)+(0+.25)+(1+.25) = 3; Σ‖x − x̂‖² = 0.25 + 1 = 1.25
    assert m.fvu(x, x_hat) == 1.25 / 3
    assert m.l0(vals) == 5 / 4
    counts = m.fire_counts(vals, idx, 5)
    assert counts.tolist() == [3, 1, 1, 0, 0]  # zero values do not fire (atom 2 in row 3)
    assert m.dead_fraction(counts) == 2 / 5
    assert m.dense_fraction(counts, 4, threshold=0.5) == 1 / 5  # fires on > 2 of 4 samples: atom 0 only
    assert m.relative_bias(x, x_hat) == (1 + 0.25 + 2 + 1) / (1 + 0.5 + 2 + 2)


def test_chunked_sums_equal_one_shot():
    x, x_hat, vals, idx = _crafted()
    sums = None
    for rows in ([0], [1, 2], [3]):
        sums = m.add_sums(sums, m.batch_sums(x[rows], x_hat[rows], vals[rows], idx[rows], 5))
    out = m.metrics_from_sums(sums, dense_threshold=0.5)
    assert math.isclose(out["fvu"], 1.25 / 3, rel_tol=1e-12)
    assert math.isclose(out["explained_variance"], 1 - 1.25 / 3, rel_tol=1e-12)
    assert out["l0"] == 1.25 and out["dead_fraction"] == 0.4 and out["dense_fraction"] == 0.2
    assert math.isclose(out["cosine"], m.cosine(x, x_hat), rel_tol=1e-12)
    assert math.isclose(out["rel_bias"], m.relative_bias(x, x_hat), rel_tol=1e-12)


def test_psnr_on_unit_range():
    target = torch.zeros(2, 4, 1)  # 0.5 on [0, 1]
    pred = torch.zeros(2, 4, 1)
    pred[0] += 0.2  # error 0.1 on [0, 1] everywhere → 20 dB
    pred[1, 0] = 5.0  # clamped to 1 → error 0.5 at one of four values
    sse = m.sse_per_image(pred, target)
    psnr = m.psnr_from_sse(sse, 4)
    assert abs(float(psnr[0]) - 20) < 1e-5  # 0.2 is not exact in float32
    assert abs(float(psnr[1]) - 10 * math.log10(4 / 0.25)) < 1e-9
