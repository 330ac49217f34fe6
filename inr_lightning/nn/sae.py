"""TopK sparse autoencoder (Gao et al. 2024) for INR activations, plain torch.

    z = TopK_k(ReLU(W_enc u(x) + b_enc)),   x̂ = s · (W_dec z + b_pre),   u(x) = x/s − b_pre  (or (x/s − m) P)

Shapes: inputs ``(B, d_in)``; decoder rows ``W_dec (n_atoms, d_in)``; codes ``vals (B, k)``, ``idx (B, k)``.
Exactly k atoms per input; decode and backward touch only the selected atoms (``SelectedCodes``).  The input
scale s, the whitened input, the training-time rules an owner applies and why: docs/sae.md, "The SAE in code".
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inr_lightning.errors import InputError, check_choice

BPreInit = Literal["mean", "median", "zero"]
EncoderInput = Literal["centred", "whitened"]
B_PRE_INITS, ENCODER_INPUTS = get_args(BPreInit), get_args(EncoderInput)


class SAEOutput(NamedTuple):
    x_hat: Tensor  # (B, d_in) in the input's units
    vals: Tensor   # (B, k) code values of the selected atoms (≥ 0), in the input's units (s · z)
    idx: Tensor    # (B, k) indices of the selected atoms
    pre: Tensor    # (B, n_atoms) W_enc u(x) + b_enc before the ReLU, no autograd (AuxK selects from it)
    u: Tensor      # (B, d_in) the encoder's input u(x), for AuxK to reuse


class SelectedCodes(torch.autograd.Function):
    """``ReLU(pre[b, idx[b, s]]) · mask[idx[b, s]]`` ``(B, m)`` — the selected codes — with a sparse backward.

    ``pre`` is the dense ``xc W_encᵀ + b_enc`` computed without autograd from the same ``xc = x − b_pre``,
    ``W_enc``, ``b_enc``; gradients flow to those three as if ``pre`` had been computed with autograd, but only
    through the selected pairs: ∂W_enc = Gᵀ xc (CSR sparse × dense), ∂b_enc by ``index_add``, ∂xc = G W_enc
    (``embedding_bag``), with G the (B, n_atoms) gradient that is non-zero at the selected, positive entries.
    ``mask`` (optional, 0/1 per atom): AuxK's dead-atom mask.
    """

    @staticmethod
    def forward(ctx, xc: Tensor, w_enc: Tensor, b_enc: Tensor, pre: Tensor, idx: Tensor,
                mask: Tensor | None) -> Tensor:
        vals = pre.gather(1, idx).clamp_min_(0)
        if mask is not None:
            vals = vals * mask[idx]
        ctx.save_for_backward(xc, w_enc, idx, vals)
        return vals

    @staticmethod
    def backward(ctx, grad: Tensor):
        xc, w_enc, idx, vals = ctx.saved_tensors
        g = torch.where(vals > 0, grad, torch.zeros((), dtype=grad.dtype, device=grad.device)).to(w_enc.dtype)
        n_atoms, (rows, m) = w_enc.shape[0], idx.shape
        flat_idx, flat_g = idx.reshape(-1), g.reshape(-1)
        grad_xc = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_xc = F.embedding_bag(idx, w_enc, per_sample_weights=g, mode="sum").to(xc.dtype)
        if ctx.needs_input_grad[1]:
            order = flat_idx.argsort()
            crow = torch.zeros(n_atoms + 1, dtype=torch.long, device=idx.device)
            crow[1:] = torch.bincount(flat_idx, minlength=n_atoms).cumsum(0)
            cols = torch.arange(rows, device=idx.device).repeat_interleave(m)[order]
            g_t = torch.sparse_csr_tensor(crow, cols, flat_g[order], size=(n_atoms, rows))
            grad_w = (g_t @ xc.to(w_enc.dtype)).to(w_enc.dtype)
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(n_atoms, dtype=w_enc.dtype, device=idx.device).index_add_(0, flat_idx, flat_g)
        return grad_xc, grad_w, grad_b, None, None, None


def geometric_median(x: Tensor, iters: int = 200, eps: float = 1e-8) -> Tensor:
    """Weiszfeld's algorithm in float64; ``x (B, d)`` → ``(d,)``."""
    x = x.double()
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(eps)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        if (y_new - y).norm() <= 1e-10 * (1 + y.norm()):
            return y_new
        y = y_new
    return y


@torch.no_grad()
def farthest_points(x: Tensor, n: int, first: int = 0) -> Tensor:
    """Indices of ``n`` rows of ``x (B, d)`` chosen greedily, each the farthest (Euclidean) from those chosen
    before (k-centre): an even cover of the data, ``n`` matrix-vector products of ``x``."""
    n = min(int(n), len(x))
    chosen = torch.empty(n, dtype=torch.long, device=x.device)
    if n == 0:
        return chosen
    sq = (x * x).sum(1)
    nearest = torch.full((len(x),), float("inf"), dtype=x.dtype, device=x.device)
    chosen[0] = first
    for i in range(1, n + 1):
        c = chosen[i - 1]
        nearest = torch.minimum(nearest, sq - 2 * (x @ x[c]) + sq[c])
        if i < n:
            chosen[i] = nearest.argmax()
    return chosen


class TopKSAE(nn.Module):
    """TopK SAE with tied initialisation, unit-norm decoder rows and an AuxK loss on dead atoms.

    Args:
        d_in: input width (the INR layer's width).
        n_atoms: dictionary size.
        k: active atoms per input.
        k_aux: dead atoms used by AuxK; ``None`` = ``d_in // 2``.
        dead_window: an atom that has not fired for this many samples is dead.
        seed: seed of the decoder's random initialisation; ``None`` = the global RNG.
        encoder_input: ``centred`` (x/s − b_pre) or ``whitened`` ((x/s − m) P, set by ``init_encoder_whitener``).
    """

    def __init__(self, d_in: int | None, n_atoms: int = 4096, k: int = 32, k_aux: int | None = None,
                 dead_window: int = 1_000_000, seed: int | None = None,
                 encoder_input: EncoderInput = "centred") -> None:
        super().__init__()
        if int(n_atoms) < 1 or (d_in is not None and int(d_in) < 1):
            raise InputError(f"d_in and n_atoms must be ≥ 1, got d_in={d_in!r}, n_atoms={n_atoms!r}")
        if not 1 <= int(k) <= int(n_atoms):
            raise InputError(f"k={k!r} must be between 1 and n_atoms={n_atoms}")
        if k_aux is not None and not 1 <= int(k_aux) <= int(n_atoms):
            raise InputError(f"k_aux={k_aux!r} must be between 1 and n_atoms={n_atoms}")
        if int(dead_window) < 1:
            raise InputError(f"dead_window must be ≥ 1 sample, got {dead_window!r}")
        check_choice("encoder_input", encoder_input, ENCODER_INPUTS)
        self.whiten = encoder_input == "whitened"
        self.n_atoms, self.k, self.dead_window, self._k_aux = int(n_atoms), int(k), int(dead_window), k_aux
        self.seed = seed
        self.d_in: int | None = None
        self.k_aux = k_aux
        self.b_enc = nn.Parameter(torch.zeros(n_atoms))
        # d_in unknown yet (read from the data later): parameters exist, so an optimizer can hold them, and
        # ``materialize(d_in)`` gives them their shapes and initial values in place.
        self.W_dec = nn.UninitializedParameter()
        self.W_enc = nn.UninitializedParameter()
        self.b_pre = nn.UninitializedParameter()
        self.register_buffer("enc_mean", nn.UninitializedBuffer())      # m and P of the whitened encoder input
        self.register_buffer("enc_whitener", nn.UninitializedBuffer())
        self.register_buffer("samples_since_fired", torch.zeros(n_atoms, dtype=torch.long))
        self.register_buffer("input_scale", torch.ones(()))  # s: mean input norm (init_input_scale)
        self.register_buffer("initialized", torch.tensor(False))
        if d_in is not None:
            self.materialize(int(d_in))

    @torch.no_grad()
    def materialize(self, d_in: int) -> None:
        """Shapes and initial values for input width ``d_in``: random unit-norm decoder rows, W_enc = W_decᵀ
        (tied init, as maps; untied afterwards), b_pre = 0 until ``init_b_pre``."""
        if self.d_in is not None:
            if self.d_in != d_in:
                raise InputError(f"the SAE has d_in={self.d_in}, the activations have width {d_in}")
            return
        self.d_in = int(d_in)
        self.k_aux = max(1, d_in // 2) if self._k_aux is None else int(self._k_aux)
        device = self.b_enc.device
        gen = None if self.seed is None else torch.Generator().manual_seed(int(self.seed))
        w = torch.randn(self.n_atoms, d_in, generator=gen).to(device)
        w = w / w.norm(dim=1, keepdim=True)
        for param, value in ((self.W_dec, w), (self.W_enc, w.clone()), (self.b_pre, torch.zeros(d_in, device=device)),
                             (self.enc_mean, torch.zeros(d_in, device=device)),
                             (self.enc_whitener, torch.eye(d_in, device=device))):
            param.materialize(value.shape, device=device)
            param.copy_(value)

    # -- encode / decode --------------------------------------------------------------------------
    def encoder_input(self, x: Tensor) -> Tensor:
        """u(x): what W_enc multiplies — x/s − b_pre, or (x/s − m) P with ``encoder_input="whitened"``."""
        if self.whiten:
            return (x / self.input_scale - self.enc_mean) @ self.enc_whitener
        return x / self.input_scale - self.b_pre

    def codes_before_topk(self, x: Tensor) -> Tensor:
        """``(B, n_atoms)``: s · ReLU(W_enc u(x) + b_enc), every atom's code before the top-k (dense)."""
        return F.relu(F.linear(self.encoder_input(x), self.W_enc, self.b_enc)) * self.input_scale

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(vals, idx)``, each ``(B, k)``; ``vals`` in the input's units."""
        return self.codes_before_topk(x).topk(self.k, dim=-1)

    def decode(self, vals: Tensor, idx: Tensor, bias: bool = True) -> Tensor:
        """Sparse decode: the weighted sum of the ``k`` selected decoder rows (plus s · ``b_pre``)."""
        out = F.embedding_bag(idx, self.W_dec, per_sample_weights=vals.to(self.W_dec.dtype), mode="sum")
        return out + self.b_pre * self.input_scale if bias else out

    def dense_codes(self, vals: Tensor, idx: Tensor) -> Tensor:
        """``(B, n_atoms)`` code vectors (reference path and atom maps)."""
        return vals.new_zeros(vals.shape[0], self.n_atoms).scatter(1, idx, vals)

    def decode_dense(self, z: Tensor) -> Tensor:
        """Reference decode from dense codes ``z (B, n_atoms)`` in the input's units."""
        return z @ self.W_dec + self.b_pre * self.input_scale

    def forward(self, x: Tensor) -> SAEOutput:
        xc = self.encoder_input(x)
        with torch.no_grad():  # dense only where it must be: the top-k selection
            # [xc, 1] · [W_enc, b_enc]ᵀ: the bias inside the GEMM, no (B, n_atoms) bias copy.  The ReLU is
            # monotone, so the top-k of the raw pre-activations selects the same codes (ties at 0 aside, whose
            # values are 0 either way); it is applied to the k selected values only.
            ones = torch.ones(xc.shape[0], 1, dtype=xc.dtype, device=xc.device)
            pre = torch.cat([xc, ones], 1) @ torch.cat([self.W_enc, self.b_enc[:, None]], 1).T
            idx = pre.topk(self.k, dim=-1).indices
        vals = SelectedCodes.apply(xc, self.W_enc, self.b_enc, pre, idx, None) * self.input_scale
        return SAEOutput(self.decode(vals, idx), vals, idx, pre, xc)

    # -- dead atoms and AuxK ----------------------------------------------------------------------
    def dead_mask(self) -> Tensor:
        return self.samples_since_fired >= self.dead_window

    @torch.no_grad()
    def update_dead(self, fire_counts: Tensor, num_samples: int) -> None:
        """``fire_counts (n_atoms,)``: how often each atom fired (z > 0) in the step, summed over processes."""
        self.samples_since_fired += int(num_samples)
        self.samples_since_fired[fire_counts.to(self.samples_since_fired.device) > 0] = 0

    def aux_sse(self, x: Tensor, x_hat: Tensor, pre: Tensor, u: Tensor | None = None) -> Tensor:
        """AuxK: sum of squared errors of the top-``k_aux`` *dead* atoms' reconstruction of the residual
        (no decoder bias, residual detached), in the normalised units (divided by s²).  0 when no atom is
        dead.  ``pre``: ``forward``'s dense pre-activations, read for the selection only (gradients go
        through ``SelectedCodes``)."""
        dead = self.dead_mask()
        n_dead = int(dead.sum())
        if n_dead == 0:
            return x_hat.new_zeros(())
        pre, mask = pre.detach(), dead.to(pre.dtype)
        with torch.no_grad():
            idx = (pre * mask).topk(min(self.k_aux, n_dead), dim=-1).indices
        # Gradients reach W_enc, b_enc (and b_pre, centred input) through the selected dead atoms only (as through
        # ``pre * dead``).
        u = self.encoder_input(x) if u is None else u   # ``forward``'s, when given: no second product
        vals = SelectedCodes.apply(u, self.W_enc, self.b_enc, pre, idx, mask)
        residual = (x - x_hat).detach() / self.input_scale
        return ((self.decode(vals, idx, bias=False) - residual) ** 2).sum()

    @torch.no_grad()
    def normalized_sums(self, target: Tensor) -> Tensor:
        """``[Σ‖t‖², Σ t (d,)]`` of ``target / s`` in float64, flattened: what a caller all-reduces to get the
        spread Σ‖t − mean t‖² of a (global) batch in the normalised units (``spread_from_sums``)."""
        return spread_sums(target.detach().double() / self.input_scale.double())

    # -- constraints and initialisation -----------------------------------------------------------
    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove each decoder row's gradient component parallel to the row (call before the step)."""
        g, w = self.W_dec.grad, self.W_dec
        if g is None:
            return
        unit = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
        g.sub_((g * unit).sum(dim=1, keepdim=True) * unit)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Decoder rows back to unit norm (call after the step)."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def init_input_scale(self, sample: Tensor) -> None:
        """s = mean ‖x‖ of a sample of activations ``(B, d_in)`` (1 if the sample is all zeros)."""
        norm = float(sample.double().norm(dim=1).mean()) if len(sample) else 0.0
        self.input_scale.fill_(norm if math.isfinite(norm) and norm > 0 else 1.0)

    @torch.no_grad()
    def init_b_pre(self, sample: Tensor, method: BPreInit = "median") -> None:
        """``b_pre`` from a sample of activations ``(B, d_in)`` (divided by s first): ``mean``, geometric
        ``median`` or ``zero``."""
        check_choice("b_pre_init", method, B_PRE_INITS)
        sample = sample.double() / float(self.input_scale)
        if method == "mean":
            value = sample.double().mean(0)
        elif method == "median":
            value = geometric_median(sample)
        else:
            value = torch.zeros(self.d_in, dtype=torch.float64)
        self.b_pre.copy_(value.to(self.b_pre))
        self.initialized.fill_(True)

    @torch.no_grad()
    def init_encoder_whitener(self, sample: Tensor, eps: float = 1e-4) -> None:
        """m = mean of ``sample / s`` ``(B, d_in)``, P = its ZCA whitening V (Λ + eps·λ_max)^(−1/2) Vᵀ, scaled so
        that u(x) = (x/s − m) P has unit mean norm on the sample (the scale the learning rate is set for);
        ``eps`` keeps directions the data never moves in from being blown up.  Call after
        ``init_input_scale``; no effect unless ``encoder_input="whitened"``."""
        if not self.whiten:
            return
        if not eps > 0:
            raise InputError(f"whiten_eps must be > 0, got {eps!r}")
        t = sample.double() / float(self.input_scale)
        mean = t.mean(0)
        lam, vec = torch.linalg.eigh((t - mean).T @ (t - mean) / max(len(t), 1))
        lam = lam.clamp_min(0) + eps * float(lam.max().clamp_min(1e-30))
        p = (vec * lam.rsqrt()) @ vec.T
        norm = float(((t - mean) @ p).norm(dim=1).mean())
        self.enc_mean.copy_(mean.to(self.enc_mean))
        self.enc_whitener.copy_((p / (norm if norm > 0 else 1.0)).to(self.enc_whitener))

    @torch.no_grad()
    def init_decoder_from_data(self, sample: Tensor, generator: torch.Generator | None = None) -> None:
        """Decoder rows (and W_enc = W_decᵀ) = samples of ``(B, d_in)``, centred by ``b_pre`` and normalised,
        spread out by ``farthest_points`` (near-duplicates would die); with a whitened input, encoder row a is
        the same sample's u(x).  Call after ``init_b_pre`` (and ``init_encoder_whitener``); rows beyond ``B``
        stay random.  Why atoms start on the data: docs/sae.md, "Training"."""
        sample = sample.to(self.W_dec)
        centred = sample / self.input_scale - self.b_pre
        enc = self.encoder_input(sample)   # = centred unless the encoder input is whitened
        norms, enc_norms = centred.norm(dim=1), enc.norm(dim=1)
        ok = (norms > 1e-6 * float(norms.max().clamp_min(1e-30))) & \
            (enc_norms > 1e-6 * float(enc_norms.max().clamp_min(1e-30)))
        dec, enc = centred[ok] / norms[ok, None], enc[ok] / enc_norms[ok, None]
        n = min(len(enc), self.n_atoms)
        first = int(torch.randint(len(enc), (1,), generator=generator)) if len(enc) else 0
        chosen = farthest_points(enc, n, first)   # spread out as the encoder sees them
        self.W_dec[:n] = dec[chosen]
        self.W_enc[:n] = enc[chosen]
        self.b_enc.zero_()
        # The k selected codes each start near ‖x‖, so x̂ starts ~k× too long: one least-squares factor on the
        # encoder puts the initial reconstruction at the right scale.
        vals, idx = self.encode(sample)
        x_hat = self.decode(vals, idx, bias=False) / self.input_scale
        c = float((x_hat * centred).sum() / (x_hat ** 2).sum().clamp_min(1e-30))
        self.W_enc.mul_(c if math.isfinite(c) and c > 0 else 1.0)

    def extra_repr(self) -> str:
        return (f"d_in={self.d_in}, n_atoms={self.n_atoms}, k={self.k}, k_aux={self.k_aux}, "
                f"dead_window={self.dead_window}, encoder_input={'whitened' if self.whiten else 'centred'}")


def spread_sums(t: Tensor) -> Tensor:
    """``[Σ‖t‖², Σ t (d,)]`` of rows ``t (B, d)`` in float64: summable over chunks or ranks (``spread_from_sums``)."""
    t = t.detach().double()
    return torch.cat([(t ** 2).sum().reshape(1), t.sum(0)])


def spread_from_sums(sums: Tensor, n: int | float) -> Tensor:
    """Σ‖t − mean t‖² from ``spread_sums`` or ``normalized_sums`` (summed over chunks or ranks) of ``n`` rows."""
    return (sums[0] - (sums[1:] ** 2).sum() / max(float(n), 1.0)).clamp_min(0)


def sae_loss_terms(sse: Tensor, aux: Tensor, spread_x: Tensor, spread_e: Tensor, aux_weight: float,
                   dsse: Tensor | None = None, spread_y: Tensor | None = None, downstream_weight: float = 0.0,
                   world: int = 1) -> dict[str, Tensor]:
    """The SAE's loss, term by term, from this shard's sums and the global batch's spreads (already reduced):

    ``fvu`` = Σ‖x − x̂‖² / Σ‖x − x̄‖², ``aux`` = aux_weight · AuxK / Σ‖e − ē‖², ``downstream`` (with ``dsse``) =
    downstream_weight · Σ‖f(x̂) − f(x)‖² / Σ‖f(x) − f̄‖², and ``total`` = their sum × ``world`` (so DDP's
    gradient average equals the single-process gradient on the union of the shards).  Pure: no reduction here."""
    terms = {"fvu": sse / spread_x.to(sse.dtype), "aux": aux_weight * aux / spread_e.to(sse.dtype)}
    total = terms["fvu"] + terms["aux"]
    if dsse is not None:
        terms["downstream"] = downstream_weight * dsse / spread_y.to(sse.dtype)
        total = total + terms["downstream"]
    terms["total"] = total * world
    return terms


def reduce_by_name(values: dict[str, Tensor], reduce) -> dict[str, Tensor]:
    """``reduce`` (an all-reduce of one tensor, e.g. ``strategy.reduce(t, reduce_op="sum")``) applied to every
    tensor of ``values`` in one call: flattened, concatenated, reduced, and split back by the dict's own keys
    and shapes.  The tensors must share a dtype and device."""
    flat = torch.cat([v.reshape(-1) for v in values.values()]) if values else torch.zeros(0)
    flat = reduce(flat)
    out, start = {}, 0
    for key, v in values.items():
        out[key] = flat[start:start + v.numel()].reshape(v.shape)
        start += v.numel()
    return out
