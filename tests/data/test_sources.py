import numpy as np
import pytest
from conftest import raises_naming
import torch
from PIL import Image

from inr_lightning.data import (
    HuggingFaceImages,
    ImageFolder,
    LFWFaces,
    MRISlices,
    SignalDataModule,
    SkimageImages,
    Synthetic,
)
from inr_lightning.data.cohort import heldout_positions, split_images, validation_positions
from inr_lightning.errors import InputError


def write_images(folder, count=4, size=(20, 24), mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode).save(folder / f"img{i}.png")
    return folder


def test_image_folder_loads_sorted_images(tmp_path):
    folder = write_images(tmp_path / "imgs", count=3)
    (folder / "notes.txt").write_text("not an image, ignored by extension")
    images = ImageFolder(str(folder)).load()
    assert len(images) == 3 and images[0].shape == (3, 24, 20)
    expected = np.asarray(Image.open(folder / "img0.png"), dtype=np.float32) / 255
    torch.testing.assert_close(images[0].permute(1, 2, 0), torch.from_numpy(expected))


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
    with raises_naming(InputError, f"'{tmp_path / 'nope'}'"):
        ImageFolder(str(tmp_path / "nope")).load()
    (tmp_path / "empty").mkdir()
    with raises_naming(InputError, f"'{tmp_path / 'empty'}'"):
        ImageFolder(str(tmp_path / "empty")).load()


def test_bad_image_file_fails_or_is_skipped(tmp_path):
    folder = write_images(tmp_path / "imgs", count=2)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with raises_naming(InputError, f"'{folder / 'broken.png'}'"):
        ImageFolder(str(folder)).load()
    assert len(ImageFolder(str(folder), on_bad_file="skip").load()) == 2


def test_huggingface_imagefolder_on_a_local_path(tmp_path):
    folder = write_images(tmp_path / "hf" / "train", count=3, mode="L")
    images = HuggingFaceImages("imagefolder", data_dir=str(folder.parent)).load()
    assert len(images) == 3 and images[0].shape == (1, 24, 20)
    assert 0 <= float(images[0].min()) and float(images[0].max()) <= 1


def test_bundled_sources_work_offline():
    slices = MRISlices().load(15)
    assert len(slices) == 15 and slices[0].shape == (1, 233, 197)
    assert all(abs(float(s.max()) - 1) < 1e-6 for s in slices)  # each slice scaled by its own maximum
    assert float((slices[7] > 0.05).float().mean()) > 0.15  # slices with brain in them
    assert len(MRISlices().load(5)) == 5
    sk = SkimageImages(["camera", "astronaut"]).load()
    assert sk[0].shape == (1, 512, 512) and sk[1].shape == (3, 512, 512)
    faces = LFWFaces().load(7)
    assert len(faces) == 7 and faces[0].shape == (1, 25, 25)
    with raises_naming(InputError, "'nope'"):
        SkimageImages(["nope"]).load()


def test_synthetic_is_deterministic_and_varied():
    a, b = Synthetic(size=16, num_images=4, seed=3).load(), Synthetic(size=16, num_images=4, seed=3).load()
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.allclose(a[0], a[1])


def test_datamodule_splits_cohort_and_heldout_and_maps_to_minus_one_one():
    source = Synthetic(size=20, num_images=15)
    cohort = SignalDataModule(source, resolution=16, num_signals=10, num_heldout=5, split="cohort")
    held = SignalDataModule(source, resolution=16, num_signals=10, num_heldout=5, split="heldout")
    assert cohort.num_signals == 10 and held.num_signals == 5 and cohort.num_channels == 1
    assert heldout_positions(15, 5) == [2, 5, 7, 9, 12]
    assert cohort.images.shape == (10, 1, 16, 16)
    assert float(cohort.images.min()) >= -1 and float(cohort.images.max()) <= 1
    all_images = SignalDataModule(source, resolution=16, num_signals=15).images
    torch.testing.assert_close(held.images, all_images[[2, 5, 7, 9, 12]])
    assert cohort.targets.shape == (10, 256, 1)


def test_mixed_sizes_and_channels_follow_the_policy(tmp_path):
    folder = tmp_path / "mixed"
    write_images(folder, count=1, size=(30, 20), mode="RGB")
    Image.fromarray(np.full((40, 40), 128, np.uint8), mode="L").save(folder / "z_gray.png")
    for channels in (1, 3):
        for aspect in ("crop", "pad", "stretch"):
            dm = SignalDataModule(ImageFolder(str(folder)), resolution=[8, 12], channels=channels, aspect=aspect,
                                  num_signals=None)
            assert dm.images.shape == (2, channels, 8, 12)
    with raises_naming(InputError, "'squash'", "crop", "pad", "stretch"):
        SignalDataModule(ImageFolder(str(folder)), aspect="squash", num_signals=None)


def split_names(source, **sizes):
    """The signal names each split serves, one ``SignalDataModule`` per split (16×16)."""
    splits = ["cohort"] + [s for s in ("heldout", "validation") if sizes.get(f"num_{s}")]
    return {split: SignalDataModule(source, resolution=16, split=split, **sizes).signal_names for split in splits}


def test_validation_split_is_disjoint_from_cohort_and_heldout_and_the_three_cover_the_images():
    source = Synthetic(size=16, num_images=25)
    names = split_names(source, num_signals=10, num_heldout=10, num_validation=5)
    everything = [name for name, _ in source.load_named()]
    assert [len(names[s]) for s in ("cohort", "heldout", "validation")] == [10, 10, 5]
    assert sorted(names["cohort"] + names["heldout"] + names["validation"]) == sorted(everything)
    # Held out as without validation: 24/11·k rounded for k = 1..10.  The 15 images they leave are
    # [0, 1, 3, 5, 6, 8, 10, 12, 14, 16, 18, 19, 21, 23, 24]; validation takes their positions 14/6·k
    # rounded for k = 1..5, i.e. 2, 5, 7, 9, 12 → images 3, 8, 12, 16, 21.
    assert heldout_positions(25, 10) == [2, 4, 7, 9, 11, 13, 15, 17, 20, 22]
    assert validation_positions(25, 10, 5) == [3, 8, 12, 16, 21]
    assert names["heldout"] == [everything[i] for i in [2, 4, 7, 9, 11, 13, 15, 17, 20, 22]]
    assert names["validation"] == [everything[i] for i in [3, 8, 12, 16, 21]]
    assert names["cohort"] == [everything[i] for i in [0, 1, 5, 6, 10, 14, 18, 19, 23, 24]]


def test_validation_split_is_recorded_and_served_like_the_others():
    dm = SignalDataModule(Synthetic(size=16, num_images=8), resolution=16, num_signals=4, num_heldout=2,
                          num_validation=2, split="validation")
    everything = SignalDataModule(Synthetic(size=16, num_images=8), resolution=16, num_signals=8).images
    torch.testing.assert_close(dm.images, everything[validation_positions(8, 2, 2)])
    assert dm.summary()["data/num_validation"] == 2 and dm.summary()["data/split"] == "validation"
    assert [row["split"] for row in dm.signal_table()] == ["validation", "validation"]
    assert dm.targets.shape == (2, 256, 1)


@pytest.mark.parametrize("total, num_heldout", [(15, 5), (6, 3), (25, 10), (4, 0)])
def test_without_validation_cohort_and_heldout_are_unchanged(total, num_heldout):
    source = Synthetic(size=16, num_images=total)
    everything = [name for name, _ in source.load_named()]
    held = heldout_positions(total, num_heldout)
    for split, expected in (("heldout", held), ("cohort", [i for i in range(total) if i not in held])):
        served = [name for name, _ in split_images(source, total - num_heldout, num_heldout, split, 0)]
        assert served == [everything[i] for i in expected]
    assert validation_positions(total, num_heldout, 0) == []
    names = split_names(source, num_signals=total - num_heldout, num_heldout=num_heldout, num_validation=0)
    assert names["cohort"] == [everything[i] for i in range(total) if i not in held]


def test_split_validation_without_num_validation_is_an_input_error():
    source = Synthetic(size=16, num_images=5)
    with pytest.raises(InputError) as err:
        SignalDataModule(source, resolution=16, num_signals=3, num_heldout=2, split="validation")
    assert "split: validation" in str(err.value) and "num_validation" in str(err.value)
    with raises_naming(InputError, "num_validation=3", 5):
        SignalDataModule(source, resolution=16, num_signals=None, num_heldout=2, num_validation=3)
    with raises_naming(InputError, "num_validation", -1):
        SignalDataModule(source, resolution=16, num_signals=3, num_validation=-1)


def test_skimage_motorcycle_is_the_left_photo_of_the_stereo_pair():
    (name, image), = SkimageImages(["motorcycle"]).load_named()
    assert name == "skimage.data.stereo_motorcycle[0]" and image.shape == (3, 500, 741)
    gray = SignalDataModule(SkimageImages(["motorcycle"]), resolution=16, channels=1, num_signals=1)
    assert gray.images.shape == (1, 1, 16, 16) and float(gray.images.std()) > 0
    with raises_naming(InputError, "'motorbike'"):
        SkimageImages(["motorbike"]).load()
