"""Preprocessing, IDX files, image decoding and ImageFolder trees."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
from PIL import Image

from edgeres.data import fashion_mnist
from edgeres.data.datasets import (
    load_dataset,
    load_image_folder,
    open_image,
    pixel_hash,
)
from edgeres.data.preprocess import Preprocessing
from edgeres.errors import ArtifactError, ConfigError, DataError


def write_idx(path, arr: np.ndarray) -> None:
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.astype(np.uint8).tobytes())


def test_preprocessing_round_trips_through_json():
    p = Preprocessing(40, 1, (0.286,), (0.353,))
    assert Preprocessing.from_json(p.to_json()) == p


def test_preprocessing_output():
    p = Preprocessing(40, 1, (0.5,), (0.25,))
    img = Image.fromarray(np.full((28, 28), 255, np.uint8))
    out = p(img)
    assert out.shape == (1, 40, 40) and out.dtype == np.float32
    assert np.allclose(out, (1.0 - 0.5) / 0.25)


def test_preprocessing_rgb_resizes_shorter_side_and_crops():
    p = Preprocessing(32, 3, (0, 0, 0), (1, 1, 1))
    a = np.zeros((40, 80, 3), np.uint8)
    a[:, :10] = 255  # a white band on the left: cropped away by the centre crop
    out = p(Image.fromarray(a))
    assert out.shape == (3, 32, 32)
    assert out.max() < 0.05


def test_preprocessing_rejects_bad_values():
    with pytest.raises(ConfigError):
        Preprocessing(40, 2, (0.5, 0.5), (1, 1))
    with pytest.raises(ArtifactError):
        Preprocessing.from_json('{"size": 40}')


def test_read_idx_and_truncation(tmp_path):
    arr = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    write_idx(tmp_path / "x.gz", arr)
    assert np.array_equal(fashion_mnist.read_idx(tmp_path / "x.gz"), arr)
    raw = gzip.decompress((tmp_path / "x.gz").read_bytes())
    with gzip.open(tmp_path / "t.gz", "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(DataError, match="truncated"):
        fashion_mnist.read_idx(tmp_path / "t.gz")


def test_missing_fashion_mnist_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERES_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist.locate()


def test_wrong_file_hash_is_refused(tmp_path, monkeypatch):
    for name in fashion_mnist.FILES:
        write_idx(tmp_path / name, np.zeros((1, 28, 28)))
    monkeypatch.setenv("EDGERES_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DataError, match="sha256"):
        fashion_mnist.locate()


def test_open_image_converts_16bit_cmyk_palette(tmp_path):
    a16 = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    g = open_image(tmp_path / "g16.png")
    assert g.mode == "L" and np.asarray(g).max() > 200  # scaled from 16 bits, not clipped
    Image.new("CMYK", (32, 32), (0, 255, 0, 0)).save(tmp_path / "c.jpg")
    assert open_image(tmp_path / "c.jpg").mode == "RGB"
    Image.new("P", (32, 32)).save(tmp_path / "p.png")
    assert open_image(tmp_path / "p.png").mode == "RGB"


def test_open_image_names_bad_files(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="bad.png"):
        open_image(tmp_path / "bad.png")
    Image.new("L", (4, 4)).save(tmp_path / "tiny.png")
    with pytest.raises(DataError, match="tiny.png"):
        open_image(tmp_path / "tiny.png")


def test_huge_image_is_named_before_decoding(tmp_path):
    Image.new("L", (8200, 8200)).save(tmp_path / "huge.png")  # 67 Mpx: over the 8192×8192 limit
    with pytest.raises(DataError, match="huge.png is 8200×8200.*downscale it"):
        open_image(tmp_path / "huge.png")


def test_image_folder(tmp_path):
    for split in ("train", "test"):
        for k, c in enumerate(("cat", "dog")):
            d = tmp_path / split / c
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((20, 30, 3), 40 * k + i, np.uint8)).save(d / f"{i}.png")
    ds = load_dataset(str(tmp_path), "test")
    assert ds.classes == ["cat", "dog"] and len(ds) == 6 and list(ds.labels) == [0, 0, 0, 1, 1, 1]
    x = ds.tensors(Preprocessing(16, 3, (0, 0, 0), (1, 1, 1)))
    assert x.shape == (6, 3, 16, 16)
    assert len(set(ds.pixel_hashes())) == 6


def test_image_folder_errors(tmp_path):
    from edgeres.data.calibration import load_calibration_set

    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "missing", "train")
    (tmp_path / "photos.zip").write_bytes(b"PK\x03\x04")  # what a user downloads: the set, still packed
    with pytest.raises(DataError, match="is an archive; unpack it"):
        load_image_folder(tmp_path / "photos.zip", "train")
    (tmp_path / "model.pt").write_bytes(b"x")  # a file where the folder goes: not "does not exist"
    with pytest.raises(DataError, match="--data .*model.pt is a file, not a folder; pass"):
        load_image_folder(tmp_path / "model.pt", "train")
    for bad, needle in (("photos.zip", "--calibration .*photos.zip is an archive; unpack it"),
                        ("model.pt", "--calibration .*model.pt is a file, not a folder: a calibration set is")):
        with pytest.raises(DataError, match=needle):  # never "make one with `calib make --out model.pt`"
            load_calibration_set(tmp_path / bad)
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no JPEG or PNG"):
        load_image_folder(tmp_path / "empty", "train")


def test_pixel_hash_ignores_file_encoding(tmp_path):
    img = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))
    img.save(tmp_path / "a.png")
    img.save(tmp_path / "b.png", compress_level=0)
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    assert pixel_hash(open_image(tmp_path / "a.png")) == pixel_hash(open_image(tmp_path / "b.png"))


def _tree(root, classes=("a", "b"), n=40, splits=("",)):
    for s in splits:
        for k, c in enumerate(classes):
            d = root / s / c if s else root / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(np.full((12, 12), (7 * i + 50 * k) % 256, np.uint8)).save(d / f"{i}.png")
    return root


def test_a_split_less_folder_keeps_a_tenth_apart_as_its_test_split(tmp_path):
    root = _tree(tmp_path / "flat")
    train, test = load_dataset(str(root), "train"), load_dataset(str(root), "test")
    assert set(train.paths).isdisjoint(test.paths) and len(train) + len(test) == 80
    assert 2 <= len(test) <= 20  # about a tenth, drawn by path hash
    assert load_dataset(str(root), "test").paths == test.paths  # the same on every call, run and machine


def test_validation_is_held_out_of_train_only(tmp_path):
    root = _tree(tmp_path / "split", splits=("train", "test"))
    train = load_dataset(str(root), "train", val_split=0.25)
    val = load_dataset(str(root), "val", val_split=0.25)
    test = load_dataset(str(root), "test")
    assert set(train.paths).isdisjoint(val.paths) and len(train) + len(val) == 80 and len(test) == 80
    with pytest.raises(DataError, match="--val-split"):
        load_dataset(str(root), "val")


def test_hidden_files_and_folders_are_not_images_of_the_set(tmp_path):
    """macOS's AppleDouble ``._0.png`` (not an image: training stopped on it), ``.DS_Store``, and Jupyter's
    ``.ipynb_checkpoints/`` copies: none is an image of the set, for training, calibration or predict.
    """
    from edgeres.data.calibration import load_calibration_set
    from edgeres.predict import image_inputs

    root = _tree(tmp_path / "photos", splits=("train",))
    for c in ("a", "b"):
        (root / "train" / c / "._0.png").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X        " + bytes(64))
        (root / "train" / c / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(64))
        (root / "train" / c / ".ipynb_checkpoints").mkdir()
        (root / "train" / c / "0.png").replace(root / "train" / c / ".ipynb_checkpoints" / "0-checkpoint.png")
    train = load_dataset(str(root), "train")
    assert len(train) == 78 and not any("." in p.parent.name or p.name.startswith(".") for p in train.paths or [])
    train.tensors(Preprocessing(12, 1, (0.5,), (0.5,)))  # every listed file decodes
    assert len(image_inputs([root / "train" / "a"])) == 39
    calib = load_calibration_set(root / "train", allow_small=True)
    assert len(calib.images) == 78


def test_images_of_other_formats_are_refused_not_left_out(tmp_path):
    """A class folder with WebP or TIFF photos beside its JPEGs trained on the JPEGs alone, in silence."""
    from edgeres.predict import image_inputs

    root = _tree(tmp_path / "photos", splits=("train",))
    (root / "train" / "a" / "notes.txt").write_text("not an image, and not taken for one")
    assert len(load_dataset(str(root), "train")) == 80
    img = Image.fromarray(np.full((12, 12), 7, np.uint8))
    for name in ("x.webp", "y.tif", "z.webp"):
        img.save(root / "train" / "b" / name)
    with pytest.raises(DataError, match=r"b holds images that edgeres does not read \(x.webp and 2 more; it reads PNG "
                                        r"and JPEG\): convert them \(ImageMagick: mogrify -format png \*.webp \*.tif\)"):
        load_dataset(str(root), "train")
    with pytest.raises(DataError, match="does not read"):
        image_inputs([root / "train"])
    with pytest.raises(DataError, match=r"x.webp is a .webp image, and edgeres reads PNG and JPEG; convert it "
                                        r"\(ImageMagick: convert x.webp x.png\)"):
        image_inputs([root / "train" / "b" / "x.webp"])


def test_an_empty_class_folder_is_refused(tmp_path):
    root = _tree(tmp_path / "e", splits=("train",))
    (root / "train" / "c").mkdir()
    with pytest.raises(DataError, match="class folder .*c holds no JPEG or PNG"):
        load_dataset(str(root), "train")


def test_imagenet_preprocessing_resizes_then_crops():
    from edgeres.data.datasets import imagenet_preprocessing

    pre = imagenet_preprocessing(224)
    assert pre.resize == 256 and pre.to_dict()["resize"] == 256
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), np.uint8))
    ref = img.resize((341, 256), Image.Resampling.BILINEAR).crop((58, 16, 282, 240))
    assert np.array_equal(np.asarray(pre.prepare(img)), np.asarray(ref))
    assert "resize" not in Preprocessing(40, 1, (0.3,), (0.3,)).to_dict()  # old models' records are unchanged


def test_labels_and_per_channel_numbers(tmp_path):
    from edgeres.data.labels import parse_floats, read_labels

    (tmp_path / "labels.txt").write_text("cat\ndog\n\n")
    assert read_labels(str(tmp_path / "labels.txt")) == ["cat", "dog"]
    assert read_labels("a,b,c") == ["a", "b", "c"]
    (tmp_path / "one.txt").write_text("cat\n")
    for bad, needle in (("a,a", "twice"), (str(tmp_path / "one.txt"), "at least two"),
                        (str(tmp_path / "none.txt"), "does not exist"),
                        ("labels", "--labels: labels file labels does not exist")):  # a file's name, not one class
        with pytest.raises(DataError, match=needle):
            read_labels(bad, "--labels")
    assert parse_floats("--mean", "0.485,0.456,0.406") == (0.485, 0.456, 0.406)
    for bad in ("0.5,nan,0.5", "1,2", "x"):
        with pytest.raises(ConfigError):
            parse_floats("--mean", bad)


def test_a_re_encoded_test_image_is_still_caught(tmp_path):
    """Defect 3 of issue 12: a grey test image saved again as RGB or palette PNG is the same input to the model."""
    from edgeres.data.calibration import CalibrationSet, check_disjoint
    from edgeres.data.datasets import ImageSet

    ev = _tree(tmp_path / "ev", n=3, splits=("test",))
    img = Image.open(ev / "test" / "a" / "1.png")
    cal = tmp_path / "cal"
    cal.mkdir()
    img.convert("RGB").save(cal / "rgb.png")
    img.convert("P").save(cal / "pal.png")
    calib = CalibrationSet(cal, ImageSet("c", [], np.zeros(2, np.int64), paths=[cal / "rgb.png", cal / "pal.png"]),
                           [], {})
    with pytest.raises(DataError, match="2 calibration image"):
        check_disjoint(calib, load_dataset(str(ev), "test"), Preprocessing(12, 1, (0.5,), (0.5,)))
