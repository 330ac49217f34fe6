"""d. The SAE training step, sparse decode.

Measures the step of ``SAEModule`` (TopK SAE, 4096 atoms, k = 32, d = 256, batch 8192: forward, MSE + AuxK,
backward, decoder-gradient projection, Adam, renormalisation) with the sparse decode (``embedding_bag`` over
the k selected rows, and its sparse backward).  Baseline: the same step decoding dense codes (``z @ W_dec``).
Target ≥ 2× faster, and equal loss and gradients (relative difference ≤ 1e-5).

Row d3 is time to quality, not time per step: the FVU a TopK SAE reaches in a fixed number of steps on a
SIREN first layer's activations over a pixel grid (a 2-D sheet in a wide space, as every INR layer is), with
its decoder initialised on the data (``decoder_init: data``, the shipped default) against random unit rows
(the reference's), the same ``SAEModule``, loss, schedule and steps.  Target: FVU ≥ 2×
lower.  Row d4 reports both dead fractions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.harness import Ctx, Row, interleaved
from inr_lightning.data.grid import make_grid
from inr_lightning.nn import CohortINR, INRConfig
from inr_lightning.nn.sae import TopKSAE


QUICK_REASON = "with 256 atoms a dense decode costs no more than a sparse one"


def sae_stepper(ctx: Ctx, sae: TopKSAE, x: torch.Tensor, dense: bool, aux_weight: float = 1 / 32):
    """``SAEModule.training_step`` + ``on_before_optimizer_step`` + ``optimizer_step`` without a Trainer:
    (step, loss function)."""
    opt = torch.optim.Adam(sae.parameters(), lr=4e-4)

    def loss_fn():
        if dense:  # every code computed with autograd, decoded as a dense (B, n_atoms) product
            vals, idx = sae.encode(x)
            x_hat = sae.decode_dense(sae.dense_codes(vals, idx))
            with torch.no_grad():  # the pre-activations AuxK selects from, as the sparse forward returns them
                pre = F.linear(x / sae.input_scale - sae.b_pre, sae.W_enc, sae.b_enc)
        else:
            x_hat, vals, idx, pre, _ = sae(x)
        sse = ((x_hat - x) ** 2).sum()
        aux = sae.aux_sse(x, x_hat, pre)
        return (sse + aux_weight * aux) / (x.shape[0] * x.shape[1])

    def step():
        loss = loss_fn()
        loss.backward()
        sae.project_decoder_grad()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sae.normalize_decoder()
        with torch.no_grad():
            sae.update_dead(torch.ones(sae.n_atoms, device=x.device), x.shape[0])
    return step, loss_fn


def fvu_after_training(ctx: Ctx, x: torch.Tensor, init: str) -> tuple[float, float]:
    """(grid FVU, dead fraction) of ``SAEModule`` itself, trained by a Trainer on all of ``x`` per step for
    ``sae_init_steps`` steps (its loss, warm-up, decay and decoder constraints; lr 2e-3, clipping 1.0)."""
    import lightning as L

    from inr_lightning.analysis import sae_metrics
    from inr_lightning.models import SAEModule
    from inr_lightning.nn.readout import SampledActivations

    s, steps = ctx.s, ctx.s["sae_init_steps"]

    class GridActivations(L.LightningDataModule):   # batches of x; the SAE initialises from SampledActivations(x)
        def train_dataloader(self):
            return torch.utils.data.DataLoader([{"x": x, "num_samples": len(x)}] * steps, batch_size=None)

    L.seed_everything(0, verbose=False)
    module = SAEModule(SampledActivations(x), n_atoms=s["sae_init_atoms"], k=s["sae_init_k"], lr=2e-3,
                       warmup_steps=steps // 10, decay_fraction=0.3, dead_window=4 * len(x), decoder_init=init,
                       init_samples=len(x), encoder_input="centred", downstream_weight=0.0, bias_lr_scale=1.0)
    L.Trainer(max_steps=steps, accelerator=ctx.device.type, devices=1, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, gradient_clip_val=1.0,
              default_root_dir=ctx.tmp / f"sae_{init}").fit(module, GridActivations())
    with torch.no_grad():
        out = module.sae.to(x.device)(x)
    counts = sae_metrics.fire_counts(out.vals, out.idx, module.sae.n_atoms)
    return sae_metrics.fvu(x, out.x_hat), sae_metrics.dead_fraction(counts)


def run(ctx: Ctx) -> list[Row]:
    s = ctx.s
    g = torch.Generator().manual_seed(0)
    x = torch.randn(s["sae_batch"], s["sae_d"], generator=g).to(ctx.device)
    saes = {}
    for name in ("sparse", "dense"):
        sae = TopKSAE(s["sae_d"], s["sae_atoms"], s["sae_k"], seed=0).to(ctx.device)
        sae.init_b_pre(x[:1024], "mean")
        saes[name] = sae
    # Equal results: loss and gradients of the same model, both decodes.
    grads, losses = {}, {}
    for name, sae in saes.items():
        _, loss_fn = sae_stepper(ctx, sae, x, dense=name == "dense")
        loss = loss_fn()
        loss.backward()
        losses[name] = float(loss)
        grads[name] = {k: p.grad.clone() for k, p in sae.named_parameters()}
        sae.zero_grad(set_to_none=True)
    rel = max(float((grads["sparse"][k] - grads["dense"][k]).norm() / grads["dense"][k].norm().clamp_min(1e-30))
              for k in grads["dense"])
    rel = max(rel, abs(losses["sparse"] - losses["dense"]) / abs(losses["dense"]))
    fns = {name: sae_stepper(ctx, sae, x, dense=name == "dense")[0] for name, sae in saes.items()}
    t = interleaved(ctx, fns, repeats=s["repeats"], warmup=1)
    speedup = t["dense"] / t["sparse"]
    return [
        Row("d1", f"SAE step, sparse vs dense decode ({s['sae_atoms']} atoms, k={s['sae_k']}, batch "
                  f"{s['sae_batch']}, d={s['sae_d']}), ms; ratio = speed-up", t["sparse"] * 1e3, t["dense"] * 1e3,
            speedup, *ctx.target(speedup, "≥", 2, quick_reason=QUICK_REASON)),
        Row("d2", "SAE sparse = dense: max relative difference of loss and gradients", rel, 0.0, None,
            *ctx.target(rel, "≤", 1e-5)),
        *init_rows(ctx),
    ]


def init_rows(ctx: Ctx) -> list[Row]:
    s = ctx.s
    torch.manual_seed(0)
    net = CohortINR(INRConfig("siren", width=s["sae_d"], shared_layers=2), 1, 1).to(ctx.device)
    with torch.no_grad():
        x = net.encoder(make_grid(s["sae_init_res"], s["sae_init_res"]).unsqueeze(0).to(ctx.device), stop=1)[0]
    data, rand = fvu_after_training(ctx, x, "data"), fvu_after_training(ctx, x, "random")
    what = (f"SAE on a SIREN layer-0 grid ({s['sae_init_res']}², d={s['sae_d']}), {s['sae_init_atoms']} atoms, "
            f"k={s['sae_init_k']}, {s['sae_init_steps']} steps")
    return [
        Row("d3", f"{what}: FVU, decoder on the data vs random; ratio = random / data", data[0], rand[0],
            rand[0] / max(data[0], 1e-30),
            *ctx.target(rand[0] / max(data[0], 1e-30), "≥", 2, quick_reason="40 steps on 256 points decide nothing")),
        Row("d4", f"{what}: dead fraction, data vs random", data[1], rand[1], None, "report", None),
    ]
