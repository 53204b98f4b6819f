"""Image sets: Fashion-MNIST arrays or ImageFolder trees of JPEG/PNG, behind one small class."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgeres.config import DEFAULT_DATASET
from edgeres.data import fashion_mnist
from edgeres.data.preprocess import FASHION_MNIST_MEAN, FASHION_MNIST_STD, Preprocessing
from edgeres.errors import DataError
from edgeres.progress import progress

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
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

    def pixel_hashes(self) -> list[str]:
        return [pixel_hash(self.image(i)) for i in range(len(self))]


def pixel_hash(img: Image.Image) -> str:
    """sha256 of the decoded pixels (mode, size and bytes), not of the file."""
    h = hashlib.sha256(f"{img.mode}:{img.size[0]}x{img.size[1]}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def open_image(path: Path) -> Image.Image:
    """Decode one image; converts 16-bit, CMYK and palette images when safe, else names the file."""
    try:
        with Image.open(path) as im:
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
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode not in ("L", "RGB"):
        img = img.convert("RGBA" if "transparency" in img.info or img.mode in ("RGBA", "LA", "PA") else "RGB")
        if img.mode == "RGBA":
            bg = Image.new("RGB", img.size, (255, 255, 255))
            bg.paste(img, mask=img.split()[3])
            img = bg
    return img


def image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_image_folder(root: Path, split: str | None = None) -> ImageSet:
    """``root/<split>/<class>/*.png|jpg`` (or ``root/<class>/…`` when the split folder is absent)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data set folder {root} does not exist; pass --data fashion-mnist "
                        f"or an ImageFolder tree (root/train/<class>/*.png, root/test/<class>/*.png)")
    base = root / split if split and (root / split).is_dir() else root
    if split == "test" and base is root and (root / "val").is_dir():
        base = root / "val"
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if split and base is root and {"train", "test", "val"} & set(classes):
        raise DataError(f"{root} has no {split}/ folder; add {root}/{split}/<class>/ images")
    paths, labels = [], []
    for k, c in enumerate(classes):
        files = image_files(base / c)
        paths += files
        labels += [k] * len(files)
    if not paths:
        loose = [p for p in base.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            raise DataError(f"{base} holds images but no class folders, so they have no labels; an evaluation "
                            f"set needs them: put each class's images in {base}/<class>/")
        raise DataError(f"no JPEG or PNG images under {base}/<class>/; an ImageFolder tree "
                        f"needs one folder of images per class")
    return ImageSet(f"{root.name}:{split or 'all'}", classes, np.asarray(labels, np.int64), paths=paths)


def load_dataset(spec: str, split: str, fetch: bool = True) -> ImageSet:
    """``fashion-mnist`` or the path of an ImageFolder tree; ``split`` is ``train`` or ``test``."""
    if spec == DEFAULT_DATASET:
        images, labels = fashion_mnist.load_split(split, fetch)
        return ImageSet(f"fashion-mnist:{split}", list(fashion_mnist.CLASSES), labels, array=images)
    return load_image_folder(Path(spec), split)


def default_preprocessing(spec: str, size: int | None = None) -> Preprocessing:
    """Fashion-MNIST's statistics, or ImageNet's for an RGB ImageFolder."""
    if spec == DEFAULT_DATASET:
        return Preprocessing(size or 40, 1, FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    ds = load_image_folder(Path(spec), "train")
    mode = ds.image(0).mode
    if mode == "L":
        return Preprocessing(size or 64, 1, (0.5,), (0.5,))
    return Preprocessing(size or 224, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
