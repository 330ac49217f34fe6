"""TopK SAE: sparse decode, unit-norm decoder rows through training, dead atoms and AuxK, b_pre init."""

import pytest
from conftest import raises_naming
import torch

from inr_lightning.errors import InputError
from inr_lightning.nn.sae import TopKSAE, geometric_median, spread_from_sums


def _sae(**kw):
    torch.manual_seed(0)
    return TopKSAE(**{"d_in": 16, "n_atoms": 64, "k": 4, **kw})


def test_sparse_decode_equals_dense_decode_values_and_gradients():
    sae = _sae()
    x = torch.randn(50, 16)
    out = sae(x)
    dense = sae.decode_dense(sae.dense_codes(out.vals, out.idx))
    torch.testing.assert_close(out.x_hat, dense, rtol=1e-5, atol=1e-6)
    assert out.vals.shape == out.idx.shape == (50, 4) and (out.vals >= 0).all()
    # Same gradients through both paths.
    g_sparse = torch.autograd.grad(out.x_hat.pow(2).sum(), [sae.W_dec, sae.W_enc, sae.b_pre])
    out = sae(x)
    dense = sae.decode_dense(sae.dense_codes(out.vals, out.idx))
    g_dense = torch.autograd.grad(dense.pow(2).sum(), [sae.W_dec, sae.W_enc, sae.b_pre])
    for a, b in zip(g_sparse, g_dense):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_tied_init_and_unit_rows():
    sae = _sae()
    torch.testing.assert_close(sae.W_enc, sae.W_dec)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))


def test_decoder_rows_stay_unit_norm_through_adam_steps():
    sae = _sae(dead_window=32)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    x = torch.randn(256, 16) * 3 + 1
    for _ in range(10):
        out = sae(x)
        loss = (out.x_hat - x).pow(2).mean() + sae.aux_sse(x, out.x_hat, out.pre) / x.numel() / 32
        opt.zero_grad()
        loss.backward()
        sae.project_decoder_grad()
        g = sae.W_dec.grad
        assert (g * sae.W_dec).sum(1).abs().max() < 1e-5  # projected: no radial component
        opt.step()
        sae.normalize_decoder()
        sae.update_dead(torch.bincount(out.idx[out.vals > 0], minlength=64), len(x))
        torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))
    assert not torch.allclose(sae.W_enc, sae.W_dec)  # untied after training


def test_dead_atom_counting_and_auxk():
    sae = _sae(dead_window=100)
    counts = torch.zeros(64)
    counts[:10] = 1
    sae.update_dead(counts, 60)
    assert not sae.dead_mask().any()
    sae.update_dead(counts, 60)  # 120 samples without firing for atoms 10..63
    assert sae.dead_mask().tolist() == [False] * 10 + [True] * 54
    counts = torch.zeros(64)
    counts[10] = 3
    sae.update_dead(counts, 5)  # atom 10 fires again
    assert int(sae.dead_mask().sum()) == 53 and not sae.dead_mask()[10]
    # AuxK only touches dead atoms: its gradient on live decoder rows is zero.
    x = torch.randn(40, 16)
    out = sae(x)
    aux = sae.aux_sse(x, out.x_hat, out.pre)
    assert aux > 0
    (g,) = torch.autograd.grad(aux, [sae.W_dec])
    assert g[:11].abs().max() == 0 and g[11:].abs().max() > 0
    fresh = _sae()
    out = fresh(x)
    assert fresh.aux_sse(x, out.x_hat, out.pre) == 0  # nothing dead yet


def test_b_pre_init_mean_and_geometric_median():
    sae = _sae()
    sample = torch.randn(500, 16) + 5
    sae.init_b_pre(sample, "mean")
    torch.testing.assert_close(sae.b_pre, sample.mean(0))
    assert bool(sae.initialized)
    # The geometric median of points on a line with an outlier is robust; of symmetric points, the centre.
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [100.0, 100.0]])
    med = geometric_median(pts)
    assert med.norm() < 2 and (med - pts[:4].mean(0).double()).norm() < 0.5
    with raises_naming(InputError, "b_pre_init", "'mode'"):
        sae.init_b_pre(sample, "mode")


def test_bad_sizes_are_input_errors():
    with raises_naming(InputError, 65, 64):
        TopKSAE(16, n_atoms=64, k=65)


def test_input_scale_is_undone_on_decode_and_codes_match_the_dense_path():
    sae = _sae()
    x = torch.randn(300, 16) * 40 + 7
    sae.init_input_scale(x)
    sae.init_b_pre(x, "mean")
    torch.testing.assert_close(sae.input_scale, x.norm(dim=1).mean())
    torch.testing.assert_close(sae.b_pre * sae.input_scale, x.mean(0), rtol=1e-5, atol=1e-4)  # b_pre: normalised units
    out = sae(x)
    vals, idx = sae.encode(x)
    torch.testing.assert_close(out.vals, vals, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out.vals, sae.codes_before_topk(x).gather(1, out.idx), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out.x_hat, sae.decode_dense(sae.dense_codes(out.vals, out.idx)), rtol=1e-5, atol=1e-3)
    # The same SAE on inputs and parameters of another scale gives the same codes up to that scale.
    scaled = _sae()
    scaled.load_state_dict(sae.state_dict())
    scaled.input_scale.mul_(1000)
    out2 = scaled(x * 1000)
    torch.testing.assert_close(out2.x_hat, out.x_hat * 1000, rtol=1e-4, atol=1e-2)
    assert torch.equal(out2.idx, out.idx)
    assert not hasattr(sae, "pre_activations")


def test_spread_from_sums_is_the_centred_sum_of_squares_over_chunks():
    sae = _sae()
    sae.input_scale.fill_(2.0)
    t = torch.randn(90, 16) + 3
    sums = sae.normalized_sums(t[:40]) + sae.normalized_sums(t[40:])
    expected = ((t.double() / 2 - (t.double() / 2).mean(0)) ** 2).sum()
    torch.testing.assert_close(spread_from_sums(sums, 90), expected, rtol=1e-9, atol=1e-9)


def test_farthest_points_cover_the_data_evenly():
    from inr_lightning.nn.sae import farthest_points

    # 400 points on a 20×20 grid: 16 farthest points leave no grid point farther than the 4×4 spacing allows,
    # 16 random ones (seed 0) do
    g = torch.stack(torch.meshgrid(torch.arange(20.0), torch.arange(20.0), indexing="ij"), -1).reshape(-1, 2)
    chosen = farthest_points(g, 16)
    assert len(set(chosen.tolist())) == 16
    cover = lambda idx: torch.cdist(g, g[idx]).min(1).values.max()  # noqa: E731
    assert cover(chosen) <= 5.0 < cover(torch.randperm(400, generator=torch.Generator().manual_seed(0))[:16])


def test_data_init_puts_every_atom_on_the_data_and_reconstructs_at_the_right_scale():
    torch.manual_seed(0)
    sae = TopKSAE(d_in=16, n_atoms=32, k=4)
    x = torch.randn(200, 2) @ torch.randn(2, 16) * 5 + 3      # a 2-D plane in 16-D, off the origin
    sae.init_input_scale(x)
    sae.init_b_pre(x, "mean")
    before = ((sae(x).x_hat - x) ** 2).sum()
    sae.init_decoder_from_data(x, torch.Generator().manual_seed(0))
    centred = x / sae.input_scale - sae.b_pre
    unit = centred / centred.norm(dim=1, keepdim=True)
    # every decoder row is one of the normalised, centred inputs; the encoder starts on the same directions
    assert (sae.W_dec @ unit.T).max(1).values.min() > 1 - 1e-5
    torch.testing.assert_close(sae.W_enc / sae.W_enc.norm(dim=1, keepdim=True), sae.W_dec)
    out = sae(x)
    fires = torch.bincount(out.idx[out.vals > 0], minlength=32)
    assert (fires > 0).all()                                    # no atom starts dead
    assert ((out.x_hat - x) ** 2).sum() < 0.2 * before          # the scale fit: far better than random atoms


def test_whitened_encoder_input_is_white_at_unit_mean_norm_and_the_decoder_keeps_the_units():
    torch.manual_seed(0)
    x = torch.randn(2000, 16) @ torch.diag(torch.logspace(2, -1, 16)) @ torch.linalg.qr(torch.randn(16, 16))[0] + 5
    sae = TopKSAE(d_in=16, n_atoms=32, k=4, encoder_input="whitened")
    sae.init_input_scale(x)
    sae.init_b_pre(x, "mean")
    sae.init_encoder_whitener(x, eps=1e-10)
    u = sae.encoder_input(x).double()
    assert u.norm(dim=1).mean() == pytest.approx(1.0, rel=1e-4)
    cond = lambda t: (lambda e: e.max() / e.min())(torch.linalg.eigvalsh(torch.cov(t.T)))  # noqa: E731
    assert cond(x.double()) > 1e5 and cond(u) < 1.01          # every direction of the data counts the same
    sae.init_decoder_from_data(x, torch.Generator().manual_seed(0))
    centred = x / sae.input_scale - sae.b_pre
    assert (sae.W_dec @ (centred / centred.norm(dim=1, keepdim=True)).T).max(1).values.min() > 1 - 1e-5
    out = sae(x)                                               # codes, decode: as with the centred input
    torch.testing.assert_close(out.vals, sae.codes_before_topk(x).gather(1, out.idx), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out.x_hat, sae.decode_dense(sae.dense_codes(out.vals, out.idx)), rtol=1e-5, atol=1e-3)
    again = TopKSAE(d_in=16, n_atoms=32, k=4, encoder_input="whitened")
    again.load_state_dict(sae.state_dict())                    # m and P travel with the SAE's state
    assert torch.equal(again(x).idx, out.idx)
    # m and P are part of every SAE's state: a state without them is refused, not filled in
    with pytest.raises(RuntimeError, match="enc_mean"):
        _sae().load_state_dict({k: v for k, v in _sae().state_dict().items() if not k.startswith("enc_")})
    with raises_naming(InputError, "encoder_input", "'pca'", "centred", "whitened"):
        TopKSAE(d_in=16, encoder_input="pca")
    with raises_naming(InputError, "whiten_eps", 0):
        sae.init_encoder_whitener(x, eps=0)


def test_loss_terms_are_named_and_equal_the_formula_they_replace():
    from inr_lightning.nn.sae import sae_loss_terms

    g = torch.Generator().manual_seed(3)
    sse, aux, dsse = (torch.rand((), generator=g) * 10 for _ in range(3))
    spread_x, spread_e, spread_y = (torch.rand((), generator=g, dtype=torch.float64) + 0.5 for _ in range(3))
    terms = sae_loss_terms(sse, aux, spread_x, spread_e, 1 / 32, world=2)
    assert set(terms) == {"fvu", "aux", "total"}
    old = (sse / spread_x.to(sse.dtype) + 1 / 32 * aux / spread_e.to(sse.dtype)) * 2   # the former training_step
    assert torch.equal(terms["total"], old) and terms["total"].dtype == torch.float32
    assert torch.equal(terms["fvu"], sse / spread_x.float()) and torch.equal(terms["aux"], 1 / 32 * aux / spread_e.float())
    terms = sae_loss_terms(sse, aux, spread_x, spread_e, 1 / 32, dsse, spread_y, 0.5, world=3)
    old = (sse / spread_x.to(sse.dtype) + 1 / 32 * aux / spread_e.to(sse.dtype) + 0.5 * dsse / spread_y.to(sse.dtype)) * 3
    assert set(terms) == {"fvu", "aux", "downstream", "total"} and torch.equal(terms["total"], old)


def test_reduce_by_name_reduces_once_and_splits_by_the_dicts_own_keys_and_shapes():
    from inr_lightning.nn.sae import reduce_by_name

    values = {"a": torch.arange(3.0, dtype=torch.float64), "s": torch.tensor(5.0, dtype=torch.float64),
              "m": torch.ones(2, 2, dtype=torch.float64)}
    calls = []

    def reduce(t):
        calls.append(t.shape)
        return t * 2   # what a sum over two equal ranks gives

    out = reduce_by_name(values, reduce)
    assert calls == [(8,)] and list(out) == ["a", "s", "m"]
    for key, v in values.items():
        assert out[key].shape == v.shape and torch.equal(out[key], v * 2), key
