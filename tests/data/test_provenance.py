"""Fits take their data from the cohort run: same source, resolution and split unless overridden, and then
the override is printed and recorded; fitting the cohort's own images is refused unless asked for."""

import csv

import pytest
from conftest import SYNTHETIC_DATA, TINY, cohort_run, raises_naming, read_summary, run_cli

from inr_lightning.errors import InputError

FIT = ["--config", "configs/fit/siren.yaml", "--trainer.max_steps=2", "--data.init_args.steps_per_epoch=2",
       "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--model.init_args.record_steps=[2]"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    run = tmp_path_factory.mktemp("cohort") / "siren"
    run_cli(["fit", "--config", "configs/cohort/siren.yaml", f"--trainer.default_root_dir={run}", *TINY,
             "--trainer.logger=false"])
    return run


def fit(cohort, run, *extra):
    run_cli(["fit", *FIT, f"--data.init_args.cohort_ckpt={cohort / 'checkpoints' / 'last.ckpt'}",
             f"--trainer.default_root_dir={run}", *extra])
    return read_summary(run)


def names(run):
    return [row["name"] for row in csv.DictReader((run / "signals.csv").open())]


def test_fit_runs_on_the_cohort_runs_data_and_its_heldout_signals(cohort, tmp_path):
    summary = fit(cohort, tmp_path / "fit")
    assert summary["data/resolution"] == [16, 16] and summary["data/overrides"] == {}   # shipped fit config says 64
    assert summary["data/source"].startswith("MRISlices(") and summary["data/cohort_run"] == str(cohort)
    heldout, trained = names(tmp_path / "fit"), names(cohort)
    assert len(heldout) == 5 and len(trained) == 10 and not set(heldout) & set(trained)
    assert all(row["split"] == "heldout" and row["resolution"] == "16x16"
               for row in csv.DictReader((tmp_path / "fit" / "signals.csv").open()))


def test_an_override_is_printed_and_recorded(cohort, tmp_path, capsys):
    summary = fit(cohort, tmp_path / "fit", "--data.init_args.resolution=24")
    assert summary["data/resolution"] == [24, 24]
    assert summary["data/overrides"] == {"resolution": {"value": [24, 24], "cohort": [16, 16]}}
    assert "data: resolution = [24, 24] overrides the cohort run's [16, 16]" in capsys.readouterr().err


def test_another_view_is_an_override_of_the_source(cohort, tmp_path):
    summary = fit(cohort, tmp_path / "fit", "--data.init_args.source=inr_lightning.data.MRISlices",
                  "--data.init_args.source.init_args.axis=coronal")
    assert "axis=coronal" in summary["data/overrides"]["source"]["value"]
    assert all("coronal" in name for name in names(tmp_path / "fit"))


@pytest.mark.parametrize("extra, message", [
    (["--data.init_args.split=cohort"], "split: cohort"),
    # 12 + 3 images instead of 10 + 5: two of the new held-out slices were cohort slices
    (["--data.init_args.num_signals=12", "--data.init_args.num_heldout=3"], "cohort"),
])
def test_fitting_the_cohorts_own_images_is_refused(cohort, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as stop:
        fit(cohort, tmp_path / "fit", *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "fit" / "checkpoints").exists()


def test_allow_cohort_signals_is_the_explicit_opt_in(cohort, tmp_path):
    summary = fit(cohort, tmp_path / "fit", "--data.init_args.split=cohort",
                  "--data.init_args.allow_cohort_signals=true")
    assert names(tmp_path / "fit") == names(cohort) and summary["data/allow_cohort_signals"] is True


def test_data_modules_meet_the_contracts_their_stages_read():
    from inr_lightning.contracts import GridData
    from inr_lightning.data import SignalDataModule, Synthetic

    dm = SignalDataModule(Synthetic(size=8, num_images=3), resolution=8, num_signals=3)
    assert isinstance(dm, GridData)
    batch = dm.full_grid_batch()
    assert batch["coords"].shape == (64, 2) and batch["target"].shape == (3, 64, 1) and batch["shape"] == (8, 8)
    assert not isinstance(object(), GridData)


def test_the_sae_data_meets_its_contract_and_inherits_the_cohorts_data(cohort):
    from inr_lightning.contracts import ActivationData, ActivationSource, LayerOutputs
    from inr_lightning.data import ActivationDataModule

    dm = ActivationDataModule(str(cohort / "checkpoints" / "last.ckpt"), layer=1, backbone="siren")
    assert isinstance(dm, ActivationData) and isinstance(dm.readout, LayerOutputs)
    assert isinstance(dm.readout, ActivationSource) and not isinstance(object(), ActivationSource)
    assert dm.resolution == (16, 16) and dm.summary()["data/cohort_run"] == str(cohort)
    assert [row["name"] for row in dm.signal_table()] == names(cohort)   # the cohort's own images, in order


def synthetic_cohort_run(run_dir, **data):
    """A crafted cohort run (``conftest.cohort_run``) on 16×16 synthetic images: ``data`` over ``SYNTHETIC_DATA``."""
    from inr_lightning.nn import CohortINR, INRConfig

    net = CohortINR(INRConfig(width=8, shared_layers=2, num_frequencies=8), 3, 1)
    return str(cohort_run(run_dir, net, {**SYNTHETIC_DATA, **data}))


def test_the_validation_split_comes_from_the_cohort_runs_num_validation(tmp_path):
    from inr_lightning.data import CohortRunDataModule

    # 4 + 2 + 2 of 8 images: held out 2, 5; validation 3, 4 (positions 2, 3 of the six left); cohort 0, 1, 6, 7.
    ckpt = synthetic_cohort_run(tmp_path / "cohort", source={"class_path": "inr_lightning.data.Synthetic",
                                                             "init_args": {"size": 16, "num_images": 8}},
                                num_signals=4, num_heldout=2, num_validation=2)
    val = CohortRunDataModule(ckpt, split="validation")
    assert val.signal_names == ["synthetic seed 0 #3", "synthetic seed 0 #4"] and val.overrides == {}
    assert val.summary()["data/num_validation"] == 2 and val.resolution == (16, 16)
    assert {row["split"] for row in val.signal_table()} == {"validation"}
    held = CohortRunDataModule(ckpt).signal_names
    trained = CohortRunDataModule(ckpt, split="cohort", allow_cohort_signals=True).signal_names
    assert held == ["synthetic seed 0 #2", "synthetic seed 0 #5"]
    assert not set(val.signal_names) & (set(held) | set(trained)) and len(set(val.signal_names + held + trained)) == 8


def test_a_cohort_run_written_before_num_validation_means_zero(tmp_path):
    from inr_lightning.data import CohortRunDataModule

    ckpt = synthetic_cohort_run(tmp_path / "cohort")   # SYNTHETIC_DATA has no num_validation key
    held = CohortRunDataModule(ckpt, num_validation=0)
    assert held.num_validation == 0 and held.overrides == {} and held.num_signals == 2
    with pytest.raises(InputError) as err:
        CohortRunDataModule(ckpt, split="validation")
    assert "split: validation" in str(err.value) and "num_validation" in str(err.value)


def test_validation_signals_are_never_cohort_signals(tmp_path):
    from inr_lightning.data import CohortRunDataModule

    # The run trained on 3 of 5 images (held out 1, 3: cohort 0, 2, 4).  Asking for one validation image
    # loads 6 (held out 2, 3; validation: the middle of 0, 1, 4, 5 → 4), which the cohort was trained on.
    ckpt = synthetic_cohort_run(tmp_path / "cohort")
    with raises_naming(InputError, "'synthetic seed 0 #4'", "cohort"):
        CohortRunDataModule(ckpt, split="validation", num_validation=1)
    served = CohortRunDataModule(ckpt, split="validation", num_validation=1, allow_cohort_signals=True)
    assert served.signal_names == ["synthetic seed 0 #4"]
    assert served.overrides == {"num_validation": {"value": 1, "cohort": 0}}


def test_the_fit_data_hands_over_its_cohort_network_loaded_once(cohort):
    """``data.cohort`` is the network of ``data.cohort_ckpt``, loaded once: jsonargparse reads a link's source twice,
    and a second load would draw again from the seeded random stream (every fit's heads would start elsewhere)."""
    import torch

    from inr_lightning.checkpoints import load_cohort
    from inr_lightning.data import CohortRunDataModule

    ckpt = cohort / "checkpoints" / "last.ckpt"
    dm = CohortRunDataModule(str(ckpt))
    torch.manual_seed(0)
    net = dm.cohort
    after_one_load = torch.rand(3)
    torch.manual_seed(0)
    assert dm.cohort is net and hasattr(dm, "cohort")
    assert not torch.equal(torch.rand(3), after_one_load)   # the cached network drew nothing this time
    expected = load_cohort(ckpt)[0].state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in net.state_dict().items())
