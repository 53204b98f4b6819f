"""Image sets: Fashion-MNIST arrays or ImageFolder trees of JPEG/PNG, behind one small class."""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgeres.config import DEFAULT_DATASET
from edgeres.data import fashion_mnist
from edgeres.data.pixels import FORMATS, OTHER_IMAGES, SUFFIXES, grey_or_rgb
from edgeres.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from edgeres.errors import DataError
from edgeres.paths import visible_files
from edgeres.progress import progress

IMAGE_SUFFIXES = set(SUFFIXES)
MAX_PIXELS = 8192 * 8192
MIN_SIDE = 8


@dataclass
class ImageSet:
    """Labelled images, held as a uint8 array or as file paths; decoded to PIL on demand."""

    name: str
    classes: list[str]
    labels: np.ndarray
    array: np.ndarray | None = None
    paths: list[Path] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> Image.Image:
        if self.array is not None:
            return Image.fromarray(self.array[i])
        if self.paths is None:
            raise DataError(f"image set {self.name} holds neither pixels nor paths")
        return open_image(self.paths[i])

    def subset(self, idx: Sequence[int] | np.ndarray) -> ImageSet:
        idx = np.asarray(idx, dtype=np.int64)
        return ImageSet(
            self.name, self.classes, self.labels[idx],
            None if self.array is None else self.array[idx],
            None if self.paths is None else [self.paths[i] for i in idx],
        )

    def tensors(self, pre: Preprocessing, desc: str | None = None) -> np.ndarray:
        """All images preprocessed into one float32 NCHW array."""
        out = np.empty((len(self), *pre.input_shape), dtype=np.float32)
        for i in progress(range(len(self)), desc=desc or f"preprocess {self.name}", total=len(self)):
            out[i] = pre(self.image(i))
        return out

    def pixel_hashes(self, pre: Preprocessing | None = None) -> list[str]:
        """Hashes of the decoded pixels; with ``pre``, of the pixels as the model sees them (mode, size, crop)."""
        return [pixel_hash(pre.prepare(self.image(i)) if pre else self.image(i)) for i in range(len(self))]


def pixel_hash(img: Image.Image) -> str:
    """sha256 of the decoded pixels (mode, size and bytes), not of the file."""
    h = hashlib.sha256(f"{img.mode}:{img.size[0]}x{img.size[1]}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def open_image(path: Path) -> Image.Image:
    """Decode one PNG or JPEG and bring it to L or RGB (``pixels.grey_or_rgb``), else name the file."""
    try:
        with Image.open(path, formats=FORMATS) as im:  # never a decoder picked by content (EPS…)
            if im.width * im.height > MAX_PIXELS:
                raise DataError(f"{path} is {im.width}×{im.height}, larger than {MAX_PIXELS} pixels; "
                                f"downscale it or remove it from the set")
            im.load()
            img = im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{path} is not a readable image ({type(e).__name__}); "
                        f"replace or remove it") from None
    if min(img.size) < MIN_SIDE:
        raise DataError(f"{path} is only {img.width}×{img.height} pixels; images need "
                        f"at least {MIN_SIDE} pixels a side, remove it from the set")
    return grey_or_rgb(img)


def image_files(root: Path) -> list[Path]:
    """The JPEG and PNG files of ``visible_files``: the images of a class folder, or of a folder ``predict`` gets.
    Images of other formats are refused, with how to convert them.
    """
    files = visible_files(root)
    other = [p for p in files if p.suffix.lower() in OTHER_IMAGES]
    if other:
        kinds = [s for s, _ in Counter(p.suffix.lower() for p in other).most_common()]
        more = f" and {len(other) - 1} more" if len(other) > 1 else ""
        raise DataError(f"{root} holds images that edgeres does not read ({other[0].name}{more}; it reads PNG and "
                        f"JPEG): convert them (ImageMagick: mogrify -format png {' '.join('*' + k for k in kinds)}) "
                        f"and move the {', '.join(kinds)} files out of the folder")
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]


TEST_HOLDOUT = 0.1  # share of a split-less folder (root/<class>/…) held out as its test split


def held_out(path: Path, root: Path, fraction: float, salt: str) -> bool:
    """Whether ``path`` falls in the ``fraction`` of ``root`` kept apart: decided by a hash of its relative path,
    so every stage, run and machine draws the same split without storing it.
    """
    h = hashlib.sha256(f"{salt}:{path.relative_to(root).as_posix()}".encode()).digest()
    return int.from_bytes(h[:4], "big") < fraction * 2**32


ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".7z", ".rar")


def not_a_folder(path: Path) -> str | None:
    """Why ``path``, where a folder goes, is not one: an archive still packed, or a file; None when it is missing."""
    if not path.exists() or path.is_dir():
        return None
    if path.name.lower().endswith(ARCHIVES):
        return f"{path} is an archive; unpack it (unzip, or tar -xf) and pass the folder it makes"
    return f"{path} is a file, not a folder"


def split_layout(root: Path) -> dict[str, Path]:
    """The split folders ``root`` has (train/, val/, test/), or ``{}`` for a split-less root/<class>/ tree."""
    return {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}


def load_image_folder(root: Path, split: str | None = None, val_split: float = 0.0) -> ImageSet:
    """``root/<split>/<class>/*.png|jpg``: the ``train``, ``val`` or ``test`` split of an ImageFolder tree.

    A tree without split folders (``root/<class>/…``) keeps 10% apart, by path hash, as its test split. A tree
    without val/ lends ``val_split`` of its training images, by path hash, as the validation split.
    """
    root = Path(root)
    if not root.is_dir():
        tree = "an ImageFolder tree (root/train/<class>/*.png, root/test/<class>/*.png)"
        why = not_a_folder(root)
        raise DataError(f"--data {why}; pass --data fashion-mnist or {tree}" if why else
                        f"data set folder {root} does not exist; pass --data fashion-mnist or {tree}")
    layout = split_layout(root)
    if split is None:
        return _read_classes(root, root, f"{root.name}:all")
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown split {split!r}; use train, val or test")
    if layout and "train" not in layout and split != "test":
        raise DataError(f"{root} has {'/, '.join(layout)}/ but no train/ folder; add {root}/train/<class>/ images")
    if split == "test" and layout and "test" not in layout and "val" not in layout:
        raise DataError(f"{root} has no test/ (or val/) folder; add {root}/test/<class>/ images")
    if split == "val" and "val" in layout:
        return _read_classes(root, layout["val"], f"{root.name}:val")
    if split == "test" and layout:
        return _read_classes(root, layout.get("test") or layout["val"], f"{root.name}:test")
    base = layout.get("train", root)
    ds = _read_classes(root, base, f"{root.name}:{split}")
    keep = np.ones(len(ds), bool)
    if not layout:  # the split-less tree: test is its held-out tenth, train and val share the rest
        test = np.array([held_out(p, root, TEST_HOLDOUT, "test") for p in ds.paths or []])
        keep = test if split == "test" else ~test
    if split in ("train", "val") and "val" not in layout and val_split > 0:
        val = np.array([held_out(p, root, val_split, "val") for p in ds.paths or []])
        keep &= val if split == "val" else ~val
    elif split == "val":
        raise DataError(f"{root} has no val/ folder; pass a validation share (--val-split 0.1) or add {root}/val/")
    sub = ds.subset(np.flatnonzero(keep))
    if not len(sub):
        raise DataError(f"the {split} split of {root} is empty; add images (each class needs a few dozen)")
    return sub


def _read_classes(root: Path, base: Path, name: str) -> ImageSet:
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    per = {c: image_files(base / c) for c in classes}
    empty = [c for c in classes if not per[c]]
    if empty and len(empty) < len(classes):
        raise DataError(f"class folder {base / empty[0]} holds no JPEG or PNG images; add images or remove the folder")
    paths, labels = [], []
    for k, c in enumerate(classes):
        paths += per[c]
        labels += [k] * len(per[c])
    if not paths:
        loose = [p for p in base.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            raise DataError(f"{base} holds images but no class folders, so they have no labels; an evaluation "
                            f"set needs them: put each class's images in {base}/<class>/")
        raise DataError(f"no JPEG or PNG images under {base}/<class>/; an ImageFolder tree "
                        f"needs one folder of images per class")
    return ImageSet(name, classes, np.asarray(labels, np.int64), paths=paths)


def default_val_share(spec: str) -> float:
    """The share of training images a run holds out for validation when --val-split is not given: a tenth of a
    folder's train split (by path hash) unless it has val/; none for fashion-mnist.
    """
    return 0.0 if spec == DEFAULT_DATASET or "val" in split_layout(Path(spec)) else 0.1


def load_dataset(spec: str, split: str, fetch: bool = True, val_split: float = 0.0) -> ImageSet:
    """``fashion-mnist`` or the path of an ImageFolder tree; ``split`` is ``train``, ``val`` or ``test``."""
    if spec == DEFAULT_DATASET:
        if split == "val" and val_split <= 0:
            raise DataError("fashion-mnist has no validation split; pass --val-split 0.1 to hold out training images")
        images, labels = fashion_mnist.load_split("test" if split == "test" else "train", fetch)
        ds = ImageSet(f"fashion-mnist:{split}", list(fashion_mnist.CLASSES), labels, array=images)
        if split == "test" or val_split <= 0:
            return ds
        val = np.array([held_out(Path(str(i)), Path(), val_split, "val") for i in range(len(ds))])
        return ds.subset(np.flatnonzero(val if split == "val" else ~val))
    return load_image_folder(Path(spec), split, val_split)


def imagenet_preprocessing(size: int = 224) -> Preprocessing:
    """torchvision's ImageNet evaluation transform at ``size`` px: the shorter side to size × 256/224, centre crop."""
    return Preprocessing(size, 3, IMAGENET_MEAN, IMAGENET_STD, resize=round(size * 256 / 224))
