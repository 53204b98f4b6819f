"""What a data set holds before anything trains on it: the colour of its images (which sets the preprocessing), their
sizes, and identical images where they make the numbers dishonest (a test image that is a copy of a training image,
one image filed under two classes). `edgeres data show` prints it; `train` takes its decisions from here.
"""
from __future__ import annotations

import hashlib
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgeres.artifacts import sha256_file
from edgeres.config import DEFAULT_DATASET, TrainConfig
from edgeres.data.datasets import (
    TEST_HOLDOUT,
    ImageSet,
    default_val_share,
    imagenet_preprocessing,
    load_dataset,
    load_image_folder,
    split_layout,
)
from edgeres.data.pixels import FORMATS
from edgeres.data.preprocess import FASHION_MNIST_MEAN, FASHION_MNIST_STD, Preprocessing
from edgeres.errors import DataError

GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")  # what grey_or_rgb brings to L, or is grey + alpha
HEADERS = 1000  # images whose header the look reads, evenly spread over the set (a header is a few hundred bytes)


@dataclass(frozen=True)
class Look:
    """What the headers of up to ``HEADERS`` images (decoded no further) say."""

    sampled: int
    grey: int
    colour: int
    short_side: int  # the median shorter side, px
    smallest: tuple[int, int]  # width × height of the image with the fewest pixels
    largest: tuple[int, int]

    @property
    def channels(self) -> int:
        """1 when most images are grey, else 3: one grey photo among colour ones does not make the model grey."""
        return 1 if self.grey > self.colour else 3


def look(images: ImageSet) -> Look:
    """The colour and sizes of ``images``, from the headers of an even spread of up to ``HEADERS`` of them."""
    n = len(images)
    picks = range(n) if n <= HEADERS else [round(i * (n - 1) / (HEADERS - 1)) for i in range(HEADERS)]
    sizes: list[tuple[int, int]] = []
    grey = 0
    for i in picks:
        mode, size = _header(images, i)
        grey += mode in GREY_MODES
        sizes.append(size)
    if not sizes:
        raise DataError(f"{images.name} holds no images")
    by_pixels = sorted(sizes, key=lambda s: s[0] * s[1])
    return Look(len(sizes), grey, len(sizes) - grey, int(statistics.median(min(s) for s in sizes)), by_pixels[0],
                by_pixels[-1])


def _header(images: ImageSet, i: int) -> tuple[str, tuple[int, int]]:
    if images.array is not None:
        a = images.array[i]
        return ("L" if a.ndim == 2 else "RGB"), (a.shape[1], a.shape[0])
    path = (images.paths or [])[i]
    try:
        with Image.open(path, formats=FORMATS) as im:  # the header only: nothing is decoded
            return im.mode, im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"{path} is not a readable image ({type(e).__name__}); replace or remove it") from None


@dataclass(frozen=True)
class Duplicates:
    """Identical images (the same file bytes, or the same pixels for an array set) that distort what training
    measures: ``copies`` pairs an image of another split (``test``, ``validation``) with the training image it
    copies; ``two_classes`` pairs one image filed under two classes of the training split. Paths as strings.
    """

    copies: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    two_classes: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(self.copies.values()) or bool(self.two_classes)

    def counts(self) -> dict[str, int]:
        return {**{split: len(pairs) for split, pairs in self.copies.items()}, "two_classes": len(self.two_classes)}

    def refusal(self, data: str) -> str:
        """One line: what is duplicated, the first pair, and the two ways on."""
        lines = []
        for split, pairs in self.copies.items():
            if pairs:
                first = f"{pairs[0][0]} = {pairs[0][1]}" + (f", and {len(pairs) - 1} more" if len(pairs) > 1 else "")
                lines.append(f"{len(pairs)} {split} image{'s are' if len(pairs) > 1 else ' is'} identical to training "
                             f"images ({first}), so {split} top-1 would count images the model trained on")
        if self.two_classes:
            a, b = self.two_classes[0]
            lines.append(f"{len(self.two_classes)} image{'s are' if len(self.two_classes) > 1 else ' is'} filed under "
                         f"two classes ({a} = {b})")
        return (f"{data}: {'; '.join(lines)}: delete one copy of each (`edgeres data show {data}` lists them all), "
                f"or pass --allow-duplicates to train anyway")


def duplicates(train: ImageSet, others: dict[str, ImageSet | None], root: str | Path | None = None) -> Duplicates:
    """The copies of training images in ``others`` (split name → set) and the training images under two classes. A
    split that is another's very files (val/ serving as the test split too) is counted once, under the first name.
    """
    sets = {"train": train}
    for name, s in others.items():
        if s is not None and not any(s.paths is not None and s.paths == t.paths for t in sets.values()):
            sets[name] = s
    groups: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for k, digest in _digests(sets).items():
        groups[digest].append(k)
    copies: dict[str, list[tuple[str, str]]] = {name: [] for name in sets if name != "train"}
    two: list[tuple[str, str]] = []
    for group in groups.values():
        trained = [i for n, i in group if n == "train"]
        if not trained:
            continue
        for n, i in group:
            if n != "train":
                copies[n].append((_name(sets[n], i, root), _name(train, trained[0], root)))
        labels = {int(train.labels[i]): i for i in trained}
        if len(labels) > 1:
            first, second = list(labels.values())[:2]
            two.append((_name(train, first, root), _name(train, second, root)))
    return Duplicates({n: sorted(pairs) for n, pairs in copies.items()}, sorted(two))


def copied_from(images: ImageSet, other: ImageSet) -> np.ndarray:
    """Which of ``images`` are identical to an image of ``other`` (a bool per image)."""
    seen = _digests({"images": images, "other": other})
    theirs = {d for (n, _), d in seen.items() if n == "other"}
    return np.array([seen.get(("images", i)) in theirs for i in range(len(images))], bool)


def _digests(sets: dict[str, ImageSet]) -> dict[tuple[str, int], str]:
    """A content hash of each image that could have a copy in another set or class, keyed (set name, index).

    Files are compared by size first and hashed only where two files of a size could matter (in two sets, or two
    classes), so a set of photos is hashed hardly at all; an array set is hashed by its pixels.
    """
    keys: dict[tuple[str, int], str] = {}
    if all(s.paths is not None for s in sets.values()):
        by_size: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for name, s in sets.items():
            for i, p in enumerate(s.paths or []):
                by_size[p.stat().st_size].append((name, i))
        for group in by_size.values():
            if len({n for n, _ in group}) > 1 or len({int(sets[n].labels[i]) for n, i in group}) > 1:
                for n, i in group:
                    keys[(n, i)] = sha256_file((sets[n].paths or [])[i])
    elif all(s.array is not None for s in sets.values()):
        for name, s in sets.items():
            for i, a in enumerate(s.array):  # type: ignore[arg-type]  # checked above
                keys[(name, i)] = hashlib.sha256(a.tobytes()).hexdigest()
    return keys


def _name(images: ImageSet, i: int, root: str | Path | None) -> str:
    if images.paths is None:
        return f"{images.name} image {i}"
    p = images.paths[i]
    try:
        return p.relative_to(root).as_posix() if root else str(p)
    except ValueError:
        return str(p)


def default_preprocessing(spec: str, size: int | None = None) -> Preprocessing:
    """The demo's choices for Fashion-MNIST; ImageNet's evaluation transform (resize 256, centre crop 224, ImageNet
    mean and std) for an RGB ImageFolder; for a greyscale one (most of its images grey) its own image size (the
    median shorter side, 32 to 224 px), mean and std 0.5.
    """
    if spec == DEFAULT_DATASET:
        return Preprocessing(size or 40, 1, FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    return _folder_preprocessing(look(load_image_folder(Path(spec), "train")), size)


def _folder_preprocessing(seen: Look, size: int | None) -> Preprocessing:
    if seen.channels == 1:
        return Preprocessing(size or min(224, max(32, seen.short_side)), 1, (0.5,), (0.5,))
    return imagenet_preprocessing(size or 224)


@dataclass(frozen=True)
class Split:
    split: str  # train, validation, test
    images: int
    per_class: dict[str, int]
    source: str  # where its images come from


@dataclass(frozen=True)
class DataSurvey:
    """What `edgeres data show` prints: the splits a run would use, the look of the training images, the
    preprocessing `train` would choose without --weights or --size, and the identical images it would refuse.
    """

    data: str
    classes: list[str]
    splits: list[Split]
    look: Look
    preprocessing: Preprocessing
    duplicates: Duplicates
    notes: list[str] = field(default_factory=list)  # what a user may want to change before training


def survey(spec: str, val_split: float | None = None) -> DataSurvey:
    """The splits of ``spec`` (fashion-mnist or an ImageFolder root) as `edgeres train` would draw them, with
    ``val_split`` as its --val-split (default: its default), and what they hold.
    """
    TrainConfig(data=spec, val_split=val_split).validate()  # train's own checks of the share
    share = default_val_share(spec) if val_split is None else val_split
    layout = {} if spec == DEFAULT_DATASET else split_layout(Path(spec))
    train = load_dataset(spec, "train", val_split=share)
    val = load_dataset(spec, "val", val_split=share) if share > 0 or "val" in layout else None
    test = load_dataset(spec, "test")
    if spec == DEFAULT_DATASET:
        where = {"train": "the training images", "test": "the test images"}
    elif layout:
        where = {"train": "train/", "test": "test/" if "test" in layout else "val/ (there is no test/)"}
    else:
        where = {"train": "the class folders, less the test split",
                 "test": f"a tenth of the class folders, by a hash of each path ({TEST_HOLDOUT:.0%})"}
    if val is not None:
        where["validation"] = ("val/" if "val" in layout else
                               f"{share:.0%} of {where['train']}, by a hash of each path (--val-split)")
        if "val" not in layout:
            where["train"] += ", less the validation share"
    splits = [Split(name, len(s), {c: int((s.labels == k).sum()) for k, c in enumerate(s.classes)}, where[name])
              for name, s in (("train", train), ("validation", val), ("test", test)) if s is not None]
    seen = look(train)
    pre = default_preprocessing(spec) if spec == DEFAULT_DATASET else _folder_preprocessing(seen, None)
    root = None if spec == DEFAULT_DATASET else spec
    return DataSurvey(spec, train.classes, splits, seen, pre, duplicates(train, {"test": test, "validation": val}, root),
                      _notes(seen, pre))


def _notes(seen: Look, pre: Preprocessing) -> list[str]:
    notes = []
    if seen.grey and seen.colour:
        kept, other = ("grey", "colour") if pre.channels == 1 else ("colour", "grey")
        notes.append(f"{seen.grey:,} of the {seen.sampled:,} images read {'is' if seen.grey == 1 else 'are'} grey and "
                     f"{seen.colour:,} colour: train "
                     f"makes a {kept} model (most images are {kept}) and converts the {other} ones")
    own = max(32, seen.short_side)
    if pre.channels == 3 and own < pre.size:
        notes.append(f"the median image's shorter side ({seen.short_side} px) is under the {pre.size} px crop, so "
                     f"images are enlarged; training from scratch (no --weights), --size {own} costs about "
                     f"{(pre.size / own) ** 2:.0f}× less per image")
    return notes
