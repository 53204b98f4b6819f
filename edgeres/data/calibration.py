"""Calibration sets as data: ``calibration/<name>/`` holds PNG files and ``manifest.json``."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeres.artifacts import check_out, remove_stale_temporaries, sha256_file, write_json_atomic
from edgeres.data.datasets import (
    IMAGE_SUFFIXES,
    ImageSet,
    load_dataset,
    not_a_folder,
    open_image,
    pixel_hash,
    visible_files,
)
from edgeres.data.preprocess import Preprocessing
from edgeres.data.survey import copied_from, default_preprocessing
from edgeres.errors import ConfigError, DataError
from edgeres.progress import progress

FORMAT = "edgeres.calibration/1"
MIN_IMAGES = 100
RECOMMENDED_IMAGES = 500


@dataclass
class CalibrationSet:
    root: Path
    images: ImageSet
    hashes: list[str]  # of the decoded pixels, as stored
    source: dict
    classes: list[str] = field(default_factory=list)  # of the data set it was drawn from ([]: unknown)
    channels: int | None = None  # of the preprocessing it was drawn for (None: unknown)

    def manifest_file(self) -> Path:
        return self.root / "manifest.json"


def make_calibration_set(data: str, out: Path, per_class: int = 50, split: str = "train", seed: int = 0,
                         strict: bool = True) -> Path:
    """Write a class-balanced sample of ``data``'s ``split`` as PNG files plus ``manifest.json``."""
    split = split.strip().strip("/")
    if split == "test":
        raise ConfigError("calibration images must not come from the test split; use --split train")
    if split not in ("train", "val"):
        raise ConfigError(f"--split must be train or val, got {split!r}")
    if per_class < 1:
        raise ConfigError(f"--per-class must be at least 1, got {per_class}")
    ds = load_dataset(data, split)
    # a training image that is also a test image (the same file) is never drawn: bench would refuse the set
    allowed = np.flatnonzero(~copied_from(ds, load_dataset(data, "test")))
    picked = [int(allowed[j]) for j in balanced_sample(ds.subset(allowed), per_class, seed, strict)]
    out = Path(out)
    check_out(out, folder=True)
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=out.parent))
    try:
        entries = []
        for n, i in enumerate(progress(picked, desc="calibration set")):
            img = ds.image(i)
            name = f"{n:05d}.png"
            img.save(tmp / name, format="PNG")
            entries.append({"file": name, "sha256": sha256_file(tmp / name), "pixels_sha256": pixel_hash(img),
                            "label": int(ds.labels[i]), "index": int(i)})
        manifest = {"format": FORMAT, "name": out.name,
                    "source": {"data": data, "split": split, "seed": seed, "per_class": per_class},
                    "preprocessing": {**default_preprocessing(data).to_dict(), "note": "images are stored as "
                                      "decoded; quantize applies the model's own preprocessing"},
                    "classes": ds.classes, "images": entries}
        write_json_atomic(tmp / "manifest.json", manifest)
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def balanced_sample(ds: ImageSet, per_class: int, seed: int, strict: bool) -> list[int]:
    """``per_class`` random images of each class (all of a smaller class unless ``strict``), in index order."""
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for k in range(len(ds.classes)):
        idx = np.flatnonzero(ds.labels == k)
        if len(idx) < per_class and strict:
            raise DataError(f"class {ds.classes[k]!r} has only {len(idx)} images in {ds.name}; lower --per-class")
        picked += sorted(rng.choice(idx, min(per_class, len(idx)), replace=False).tolist())
    return picked


def sample_calibration(data: str, total: int = RECOMMENDED_IMAGES, seed: int = 0) -> CalibrationSet:
    """A class-balanced sample of ``data``'s training split, read in place (as `calib make` draws it, unwritten)."""
    ds = load_dataset(data, "train")
    per = max(1, -(-total // len(ds.classes)))
    sub = ds.subset(balanced_sample(ds, per, seed, strict=False))
    sub.name = f"calibration:{data}:train"
    return CalibrationSet(Path(data), sub, [], {"data": data, "split": "train", "seed": seed, "per_class": per,
                                                "drawn_by": "quantize (no --calibration)"}, list(ds.classes), None)


def same_data(a: str, b: str) -> bool:
    """Whether two data set specs name the same set (``fashion-mnist``, or the same folder however spelt)."""
    if a == b:
        return True
    try:
        return Path(a).resolve() == Path(b).resolve() and Path(a).is_dir()
    except OSError:
        return False


def check_matches(calib: CalibrationSet, channels: int, dataset: str | None, classes: list[str]) -> None:
    """Refuse a calibration set drawn from another data set, or with other classes or colour channels, than the
    model's: its activation ranges would be another model's.
    """
    fix = (f"make one with `edgeres calib make --data {dataset} --out calibration/<name>`" if dataset else
           "pass a set drawn from the model's training data")
    src = str(calib.source.get("data") or "")
    if dataset and src and src != "hand-made" and not same_data(src, dataset):
        raise DataError(f"calibration set {calib.root} comes from {src}, but the model was trained on {dataset}; {fix}")
    if calib.classes and classes and calib.classes != classes:
        raise DataError(f"calibration set {calib.root} has classes {calib.classes[:3]}…, the model {classes[:3]}…; {fix}")
    got = calib.channels if calib.channels is not None else (1 if calib.images.image(0).mode == "L" else 3)
    if got != channels:
        kind = {1: "greyscale", 3: "RGB"}
        raise DataError(f"calibration set {calib.root} holds {kind[got]} images but the model takes {kind[channels]} "
                        f"ones; {fix}")


def _made_by_edgeres(folder: Path) -> bool:
    """True when ``folder`` holds an edgeres calibration set and nothing else (so replacing it loses nothing)."""
    try:
        man = json.loads((folder / "manifest.json").read_text())
        listed = {e["file"] for e in man["images"]} | {"manifest.json"}
        return man.get("format") == FORMAT and {p.name for p in folder.iterdir()} <= listed
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _check_replaceable(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or a non-empty folder that edgeres did not make: nothing of the user's is lost."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder path for the calibration set")
    if out.is_dir() and any(out.iterdir()) and not _made_by_edgeres(out):
        raise ConfigError(f"--out {out} is a folder with files edgeres did not make; give a new or empty folder "
                          f"(nothing was changed)")


def _remove_stale_temporaries(out: Path) -> None:
    """Temporaries of earlier runs that were killed (their process is gone) are removed."""
    remove_stale_temporaries(out.parent, f".{out.name}.")


def _swap_in(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out``; an edgeres-made set already there is replaced (writers may race)."""
    for _ in range(20):
        if out.exists():
            _check_replaceable(out)
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=out.parent))
            try:
                os.replace(out, old / "old")
            except FileNotFoundError:
                continue  # another writer moved it first
            finally:
                shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, out)
            return
        except OSError:
            continue  # another writer put its set in place meanwhile
    raise DataError(f"could not put the calibration set in place at {out}: other writers keep replacing it")


def load_calibration_set(root: Path, allow_small: bool = False) -> CalibrationSet:
    """A calibration folder: one with ``manifest.json``, or a plain folder of images (hand-made)."""
    root = Path(root)
    why = not_a_folder(root)
    if why:
        raise DataError(f"--calibration {why}: a calibration set is a folder of images, or one that `edgeres calib "
                        f"make` wrote")
    if not root.is_dir():
        raise DataError(f"calibration set {root} does not exist; make one with "
                        f"`edgeres calib make --data fashion-mnist --per-class 50 --out {root}`")
    man_path = root / "manifest.json"
    if man_path.is_file():
        try:
            man = json.loads(man_path.read_text())
            entries = man["images"]
            if not isinstance(entries, list):
                raise TypeError("images is not a list")
            paths = [_inside(root, str(e["file"]), man_path) for e in entries]
            labels = [int(e.get("label", -1)) for e in entries]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(f"{man_path} is malformed ({type(e).__name__}: {e}); re-make it with "
                            f"`edgeres calib make`") from None
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DataError(f"{missing[0]} is listed in {man_path} but missing; re-make the set")
        source = man.get("source", {})
        classes = [str(c) for c in man.get("classes") or []]
        channels = (man.get("preprocessing") or {}).get("channels")
    else:
        files = visible_files(root)
        bad = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if bad:
            raise DataError(f"{bad[0]} is not a JPEG or PNG image; calibration folders hold images only, remove it")
        paths, labels, source, classes, channels = files, [-1] * len(files), {"data": "hand-made"}, [], None
    if not paths:
        raise DataError(f"calibration set {root} holds no images; add JPEG/PNG files or run `edgeres calib make`")
    if len(paths) < MIN_IMAGES and not allow_small:
        raise DataError(f"calibration set {root} has {len(paths)} images, fewer than {MIN_IMAGES} "
                        f"({RECOMMENDED_IMAGES} recommended for CNNs); add images or pass --allow-small")
    images = ImageSet(f"calibration:{root.name}", [], np.asarray(labels, np.int64), paths=paths)
    hashes = [pixel_hash(open_image(p)) for p in paths]  # decodes every file: corrupt ones are named here
    return CalibrationSet(root, images, hashes, source, classes, int(channels) if channels else None)


def _inside(root: Path, name: str, man_path: Path) -> Path:
    """A listed file, which must lie in the set's own folder: never ``../`` or an absolute path elsewhere."""
    p = (root / name).resolve()
    if Path(name).is_absolute() or ".." in Path(name).parts or not p.is_relative_to(root.resolve()):
        raise DataError(f"{man_path} lists {name!r}, outside the set's folder; a calibration manifest names files "
                        f"inside it only (re-make it with `edgeres calib make`)")
    return root / name


def check_disjoint(calib: CalibrationSet, evaluation: ImageSet, pre: Preprocessing) -> None:
    """Refuse a calibration set that shares any image with the evaluation set, compared as the model sees them
    (colour mode, size and crop applied), so a test image saved again as RGB or palette PNG is still caught.
    """
    eval_hashes = set(evaluation.pixel_hashes(pre))
    mine = calib.images.pixel_hashes(pre)
    shared = [p for p, h in zip(calib.images.paths or [], mine, strict=True) if h in eval_hashes]
    if shared and calib.source.get("split") == "train":  # drawn from a training split that holds evaluation images
        raise DataError(f"{len(shared)} calibration image(s) also appear in the evaluation set {evaluation.name} "
                        f"(first: {shared[0]}), though drawn from the training split of {calib.source.get('data')}: "
                        f"that split holds copies of evaluation images; remove them (`edgeres data show "
                        f"{calib.source.get('data')}` lists identical files), then draw the set again")
    if shared:
        raise DataError(f"{len(shared)} calibration image(s) also appear in the evaluation set "
                        f"{evaluation.name} (first: {shared[0]}); draw the set from the training split "
                        f"with `edgeres calib make --split train`")
