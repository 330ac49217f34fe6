"""Fast paths of the fitting stages: frozen-prefix caching and chunked steps equal the plain fit; torch.compile
as an option."""

from __future__ import annotations

import gc
import weakref

import pytest
from conftest import raises_naming
import torch
from test_fitting import cohort_weight, fit, make_cohort_ckpt

from inr_lightning.checkpoints import load_cohort
from inr_lightning.data import SignalDataModule, Synthetic
from inr_lightning.errors import InputError
from inr_lightning.models import CohortINRModule, SignalFitModule
from inr_lightning.nn import INRConfig


@pytest.fixture
def ckpt(tmp_path):
    return make_cohort_ckpt(tmp_path / "cohort.ckpt")


def signals(split: str = "heldout", coords_per_step: int | None = None) -> SignalDataModule:
    """The signals of ``test_fitting.datamodule`` (3 cohort + 3 held-out, 16×16), built with the split and
    coordinates per step a test needs."""
    return SignalDataModule(Synthetic(size=16, num_images=6, seed=0), resolution=16, num_signals=3, num_heldout=3,
                            split=split, coords_per_step=coords_per_step, steps_per_epoch=3)


def fitted(ckpt, cache: bool, coords_per_step=None, depth: int = 1, above: str = "finetune", steps: int = 6,
           compile: bool = False, step_chunk: int | None = None):
    torch.manual_seed(3)
    dm = signals(coords_per_step=coords_per_step)
    module = SignalFitModule(load_cohort(ckpt)[0], protocol="freeze", last_frozen_layer=depth, above=above,
                             num_signals=3, lr=1e-2, record_steps=[], cache_frozen_prefix=cache, compile=compile,
                             step_chunk=step_chunk, grid=dm.full_grid_batch())   # what the CLI links from the data module
    calls = []
    original = module.net.encoder.forward

    def counting(x, start=0, stop=None):  # count how often layer 0 runs during training steps
        if module.training and start == 0:
            calls.append(x.shape[1])
        return original(x, start, stop)

    module.net.encoder.forward = counting
    caches = watch_prefix_caches(module)
    fit(module, dm, steps=steps)
    return module, calls, caches


def watch_prefix_caches(module: SignalFitModule) -> list[weakref.ref]:
    """Weak references to every frozen-prefix cache ``module.build_prefix_cache`` builds: dead once freed."""
    caches, build = [], module.build_prefix_cache

    def watched(coords):
        cache = build(coords)
        caches.append(weakref.ref(cache))
        return cache

    module.build_prefix_cache = watched
    return caches


def alive(caches: list[weakref.ref]) -> int:
    gc.collect()
    return sum(ref() is not None for ref in caches)


@pytest.mark.parametrize("coords_per_step,depth,above", [(None, 1, "finetune"), (101, 0, "reinit"),
                                                         (57, 1, "finetune")])
def test_cached_prefix_fit_equals_the_uncached_fit(ckpt, coords_per_step, depth, above):
    cached, calls_cached, caches = fitted(ckpt, True, coords_per_step, depth, above)
    plain, calls_plain, none = fitted(ckpt, False, coords_per_step, depth, above)
    # The frozen prefix ran once, on the full 16×16 grid, instead of once per step.
    assert calls_cached == [256] and len(calls_plain) == 6
    a, b = cached.state_dict(), plain.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        diff = (a[key] - b[key]).abs().max()
        if coords_per_step is None:
            assert diff == 0, f"{key}: {diff:.2e}"   # same GEMMs on the same rows: bit-identical
        else:
            assert diff <= 1e-6, f"{key}: {diff:.2e}"
    assert len(caches) == 1 and alive(caches) == 0 and none == []  # built once, freed at the end of the fit


@pytest.mark.parametrize("cache,coords_per_step", [(True, None), (True, 101), (False, None)])
def test_chunked_steps_equal_whole_steps(ckpt, cache, coords_per_step):
    whole, _, _ = fitted(ckpt, cache, coords_per_step, steps=4)
    chunked, _, _ = fitted(ckpt, cache, coords_per_step, steps=4, step_chunk=30)  # 256 or 101 rows: uneven chunks
    a, b = whole.state_dict(), chunked.state_dict()
    for key in a:
        assert (a[key] - b[key]).abs().max() <= 1e-5, key
    # the fits trained something: the equality is not between two untouched encoders
    assert not torch.equal(a["net.encoder.layers.2.linear.weight"], cohort_weight(ckpt, 2).expand(3, -1, -1))


def test_a_chunked_cohort_step_has_the_whole_step_gradient():
    grads = []
    for chunk in (None, 50):
        torch.manual_seed(0)
        module = CohortINRModule(INRConfig(width=32, shared_layers=3), num_signals=4, step_chunk=chunk)
        g = torch.Generator().manual_seed(1)
        batch = {"coords": torch.rand(203, 2, generator=g) * 2 - 1, "num_coords": 203,
                 "target": torch.rand(4, 203, 1, generator=g) * 2 - 1}
        loss = module.training_step(batch, 0)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in module.parameters()]))
    (loss_a, ga), (loss_b, gb) = grads
    assert torch.allclose(loss_a, loss_b, rtol=1e-6)
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, rtol=1e-5, atol=1e-7)


def test_step_chunk_must_be_positive():
    with raises_naming(InputError, "step_chunk", 0):
        CohortINRModule(INRConfig(width=8), step_chunk=0)


def test_no_cache_without_a_frozen_layer(ckpt):
    torch.manual_seed(0)
    module = SignalFitModule(load_cohort(ckpt)[0], protocol="finetune", num_signals=3, record_steps=[])
    caches = watch_prefix_caches(module)
    fit(module, signals(), steps=2)
    assert caches == [] and module.last_frozen_layer == -1


def test_compile_option_keeps_results_and_checkpoint_keys(ckpt, tmp_path, monkeypatch):
    # The option's wiring (what is compiled, how often, the numbers, the checkpoint keys) through dynamo and AOT
    # autograd; inductor's C++ code generation (a minute here) is timed by `make bench`, not tested.
    compiled_fns, compile_fn = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, *a, **k: compiled_fns.append(fn)
                        or compile_fn(fn, *a, **{**k, "backend": "aot_eager"}))
    compiled, _, _ = fitted(ckpt, True, None, 1, "finetune", steps=3, compile=True)
    eager, _, _ = fitted(ckpt, True, None, 1, "finetune", steps=3, compile=False)
    assert [fn.__name__ for fn in compiled_fns] == ["train_forward"]   # once, by the compile: true fit only
    a, b = compiled.state_dict(), eager.state_dict()
    assert a.keys() == b.keys() and not any("_orig_mod" in k for k in a)
    for key in a:
        assert (a[key] - b[key]).abs().max() <= 1e-4, key
    # Cohort stage: a checkpoint written with compile: true loads with weights_only=True into an eager module.
    import lightning as L

    torch.manual_seed(0)
    cohort = CohortINRModule(INRConfig(width=16, shared_layers=2), num_signals=3, compile=True)
    trainer = L.Trainer(max_steps=2, max_epochs=-1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", devices=1,
                        default_root_dir=tmp_path, limit_val_batches=0)
    dm = signals(split="cohort")
    trainer.fit(cohort, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    saved = torch.load(tmp_path / "c.ckpt", weights_only=True)
    assert not any("_orig_mod" in k for k in saved["state_dict"])
    assert saved["hyper_parameters"]["compile"] is True
    fresh = CohortINRModule(INRConfig(**saved["hyper_parameters"]["net"]), num_signals=3)
    fresh.load_state_dict(saved["state_dict"])
    coords = dm.coords
    torch.testing.assert_close(fresh.net(coords), cohort.net(coords))
