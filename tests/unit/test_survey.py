"""What a data set holds (edgeres/data/survey.py): the colour and size train chooses from, and identical images."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from edgeres.data.datasets import load_dataset
from edgeres.data.survey import default_preprocessing, duplicates, look, survey


def _photos(root, classes=("apple", "banana"), n=12, size=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8)).save(root / c / f"{i:03d}.png")
    return root


def test_one_grey_photo_sorted_first_does_not_make_a_colour_set_grey(tmp_path):
    root = _photos(tmp_path / "train")
    Image.new("L", (300, 200), 128).save(root / "apple" / "000.png")  # a black-and-white photo, the first file
    pre = default_preprocessing(str(tmp_path))
    assert (pre.channels, pre.size, pre.resize) == (3, 224, 256)  # ImageNet's transform, not a 200 px grey model
    seen = look(load_dataset(str(tmp_path), "train"))
    assert (seen.grey, seen.colour, seen.channels) == (1, 23, 3)


def test_a_grey_set_takes_its_median_size_not_its_first_images(tmp_path):
    root = tmp_path / "train"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i, side in enumerate([200, 40, 48, 56, 48]):  # the first file is an outlier
            Image.new("L", (side, side + 10), 30 * i).save(root / c / f"{i}.png")
    Image.new("RGB", (64, 64), (200, 0, 0)).save(root / "a" / "9.png")  # one colour image among grey ones
    pre = default_preprocessing(str(tmp_path))
    assert (pre.channels, pre.size) == (1, 48)
    assert default_preprocessing(str(tmp_path), size=32).size == 32


def test_copies_across_splits_and_classes_are_found_by_content(tmp_path):
    _photos(tmp_path / "train")
    _photos(tmp_path / "test", n=4, seed=1)
    shutil.copy(tmp_path / "train/apple/003.png", tmp_path / "test/apple/copy of 003.png")
    shutil.copy(tmp_path / "train/apple/004.png", tmp_path / "test/banana/mislabelled.png")
    shutil.copy(tmp_path / "train/banana/005.png", tmp_path / "train/apple/005 (1).png")
    shutil.copy(tmp_path / "train/banana/006.png", tmp_path / "train/banana/006 (1).png")  # same class: harmless
    train, test = load_dataset(str(tmp_path), "train"), load_dataset(str(tmp_path), "test")
    d = duplicates(train, {"test": test, "validation": None}, tmp_path)
    assert d.copies == {"test": [("test/apple/copy of 003.png", "train/apple/003.png"),
                                 ("test/banana/mislabelled.png", "train/apple/004.png")]}
    assert d.two_classes == [("train/apple/005 (1).png", "train/banana/005.png")]
    assert d.counts() == {"test": 2, "two_classes": 1}
    line = d.refusal(str(tmp_path))
    assert "2 test images are identical to training images (test/apple/copy of 003.png = train/apple/003.png, " \
           "and 1 more)" in line and "--allow-duplicates" in line and "edgeres data show" in line
    assert "\n" not in line
    # a re-encoded file is not the same file: content, not names or sizes, decides
    (tmp_path / "test/apple/copy of 003.png").unlink()
    Image.open(tmp_path / "train/apple/004.png").save(tmp_path / "test/banana/mislabelled.png", compress_level=0)
    assert not duplicates(load_dataset(str(tmp_path), "train"), {"test": load_dataset(str(tmp_path), "test")},
                          tmp_path).copies["test"]


def test_a_split_less_folders_copies_are_found_between_its_hashed_splits(tmp_path):
    root = _photos(tmp_path, n=40)
    for i in range(40):  # every photo copied under another name: about a tenth of the copies fall in test
        shutil.copy(root / "apple" / f"{i:03d}.png", root / "apple" / f"{i:03d} (1).png")
    s = survey(str(tmp_path))
    assert [sp.split for sp in s.splits] == ["train", "validation", "test"]
    pairs = s.duplicates.copies["test"] + s.duplicates.copies["validation"]
    assert s.duplicates.copies["test"] and all(len({a.replace(" (1)", ""), b.replace(" (1)", "")}) == 1
                                               for a, b in pairs)
    assert sum(sp.images for sp in s.splits) == 120


def test_fashion_mnist_has_no_copies_between_its_splits():
    train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    assert not duplicates(train.subset(range(5000)), {"test": test.subset(range(2000))})
    copied = duplicates(train.subset(range(100)), {"test": train.subset([7, 8, 150])})
    assert copied.copies["test"] == [("fashion-mnist:train image 0", "fashion-mnist:train image 7"),
                                     ("fashion-mnist:train image 1", "fashion-mnist:train image 8")]


def test_the_survey_notes_mixed_colour_and_images_smaller_than_the_crop(tmp_path):
    _photos(tmp_path / "train", n=20, size=(32, 32))
    _photos(tmp_path / "test", n=3, size=(32, 32), seed=1)
    Image.new("L", (32, 32), 7).save(tmp_path / "train" / "apple" / "grey.png")
    s = survey(str(tmp_path))
    assert s.preprocessing.size == 224 and s.look.short_side == 32
    val = len(load_dataset(str(tmp_path), "val", val_split=0.1))
    assert s.notes == [f"1 of the {41 - val} images read is grey and {40 - val} colour: train makes a colour model "
                       "(most images are colour) and converts the grey ones",
                       "the median image's shorter side (32 px) is under the 224 px crop, so images are enlarged; "
                       "training from scratch (no --weights), --size 32 costs about 49× less per image"]
    assert [(sp.split, sp.images, sp.source) for sp in s.splits] == [
        ("train", 41 - val, "train/, less the validation share"),
        ("validation", val, "10% of train/, by a hash of each path (--val-split)"),
        ("test", 6, "test/")]


def test_a_calibration_set_is_never_drawn_from_training_images_that_test_copies(tmp_path):
    from edgeres.data.calibration import check_disjoint, load_calibration_set, make_calibration_set
    from edgeres.data.survey import copied_from
    from edgeres.errors import DataError

    data = tmp_path / "photos"
    _photos(data / "train", n=12)
    _photos(data / "test", n=3, seed=1)
    shutil.copy(data / "train/apple/005.png", data / "test/apple/copy.png")
    train, test = load_dataset(str(data), "train"), load_dataset(str(data), "test")
    assert np.flatnonzero(copied_from(train, test)).tolist() == [train.paths.index(data / "train/apple/005.png")]
    c = load_calibration_set(make_calibration_set(str(data), tmp_path / "c", per_class=12, strict=False),
                             allow_small=True)
    assert len(c.images) == 23  # every training image but the one test holds
    pre = default_preprocessing(str(data))
    check_disjoint(c, test, pre)  # bench's check passes
    # a copy with other bytes (re-encoded) is not the same file, but the same pixels: bench's check still catches it,
    # and names the training split's copies, not `calib make --split train` (the set came from there)
    Image.open(data / "train/banana/002.png").save(data / "test/banana/again.png", compress_level=0)
    c = load_calibration_set(make_calibration_set(str(data), tmp_path / "c2", per_class=12, strict=False),
                             allow_small=True)
    with pytest.raises(DataError, match="though drawn from the training split .* holds copies of evaluation images"):
        check_disjoint(c, load_dataset(str(data), "test"), pre)


def test_val_serving_as_the_test_split_is_reported_once(tmp_path):
    _photos(tmp_path / "train", n=12)
    _photos(tmp_path / "val", n=3, seed=1)  # no test/: val/ is the validation and the test split
    shutil.copy(tmp_path / "train/apple/003.png", tmp_path / "val/apple/copy.png")
    s = survey(str(tmp_path))
    assert [(sp.split, sp.source) for sp in s.splits][1:] == [("validation", "val/"), ("test", "val/ (there is no test/)")]
    assert s.duplicates.copies == {"test": [("val/apple/copy.png", "train/apple/003.png")]}
    assert s.duplicates.refusal("d").count("identical to training images") == 1
