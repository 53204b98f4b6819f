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
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "missing", "train")
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no JPEG or PNG"):
        load_image_folder(tmp_path / "empty", "train")


def test_pixel_hash_ignores_file_encoding(tmp_path):
    img = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))
    img.save(tmp_path / "a.png")
    img.save(tmp_path / "b.png", compress_level=0)
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    assert pixel_hash(open_image(tmp_path / "a.png")) == pixel_hash(open_image(tmp_path / "b.png"))
