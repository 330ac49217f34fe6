"""The SAE's parts in isolation: the evaluation Metric against ``sae_metrics``, the readout against the data
module it comes from, and the layering rules of the package (models/ never imports callbacks/, nn/ never
imports Lightning)."""

import ast
from pathlib import Path

import pytest
import torch

from inr_lightning.analysis import sae_metrics
from inr_lightning.models.sae_eval import SAEEvalSums
from inr_lightning.nn import CohortINR, INRConfig
from inr_lightning.nn.readout import LayerReadout, SampledActivations
from inr_lightning.nn.sae import TopKSAE

PACKAGE = Path(__file__).resolve().parents[2] / "inr_lightning"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_models_import_nothing_from_callbacks_and_nn_nothing_from_lightning():
    models = {p.name: _imports(p) for p in (PACKAGE / "models").glob("*.py")}
    assert "sae.py" in models
    bad = {f: sorted(n for n in names if n.startswith("inr_lightning.callbacks")) for f, names in models.items()}
    assert not any(bad.values()), bad
    nn = {p.name: _imports(p) for p in (PACKAGE / "nn").glob("*.py")}
    assert "readout.py" in nn
    bad = {f: sorted(n for n in names if n.split(".")[0] in ("lightning", "pytorch_lightning", "torchmetrics"))
           for f, names in nn.items()}
    assert not any(bad.values()), bad


def test_eval_metric_gives_the_numbers_of_metrics_from_sums():
    g = torch.Generator().manual_seed(0)
    sae = TopKSAE(6, 20, 3, seed=0)
    x = torch.randn(50, 6, generator=g) + 1
    sae.init_b_pre(x, "mean")
    metric = SAEEvalSums(6, 20, num_images=2, dense_threshold=0.2)
    expected, sse_sae, sse_inr = None, torch.rand(2, generator=g, dtype=torch.float64), torch.rand(2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        for chunk in x.split(16):   # chunk by chunk, as the module evaluates
            out = sae(chunk)
            sums = sae_metrics.batch_sums(chunk, out.x_hat, out.vals, out.idx, 20)
            expected = sae_metrics.add_sums(expected, sums)
            metric.update(sums, sse_sae / 4, sse_inr / 4, values_per_image=64.0)
    got = metric.compute()
    want = sae_metrics.metrics_from_sums(expected, 0.2)
    assert set(want) <= set(got)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    psnr = sae_metrics.psnr_from_sse(sse_sae, 64.0)
    assert got["psnr"] == pytest.approx(float(psnr.mean()), rel=1e-12)
    assert all(v.dtype == torch.float64 for v in metric.sums().values())
    assert metric.state_dict() == {}   # never in a checkpoint
    metric.reset()
    assert float(metric.n) == 0 and float(metric.fire.sum()) == 0


def test_readout_is_the_frozen_network_split_at_the_layer_and_stays_out_of_the_module_state():
    from inr_lightning.models import SAEModule

    torch.manual_seed(0)
    net = CohortINR(INRConfig("siren", width=8, shared_layers=3), 2, 1)
    coords = torch.rand(30, 2) * 2 - 1
    readout = LayerReadout(net, 1, chunk=7, sampler=lambda n, device: coords[:n].to(device))
    assert readout.width == 8 and readout.layer == 1 and readout.describe() == "SIREN layer 1 (cohort encoder)"
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    torch.testing.assert_close(readout.activations(coords), net.activations(coords)[1][0])
    torch.testing.assert_close(readout.outputs_from(readout.activations(coords)), net(coords))
    module = SAEModule(readout=readout, n_atoms=16, k=2)
    assert module.sae.d_in == 8 and module.hparams["d_in"] == 8 and "readout" not in module.hparams
    assert module.state_dict() and all(k.startswith("sae.") for k in module.state_dict())
    assert torch.equal(SampledActivations(coords).sample(5), coords[:5])
