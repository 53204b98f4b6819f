"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, fetched without root if absent."""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgeres.artifacts import sha256_file, temp_dir
from edgeres.errors import DataError

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
PACKAGE = "dataset-fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# sha256 of the four IDX files as Debian ships them (0.0~git20200523.55506a9-1).
FILES = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
FIX = (f"install it with `sudo apt-get install {PACKAGE}`, run `edgeres data fetch`, "
       "or point EDGERES_FASHION_MNIST_DIR at a folder holding the four IDX .gz files")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgeres" / "fashion-mnist"


def candidate_dirs() -> list[Path]:
    env = os.environ.get("EDGERES_FASHION_MNIST_DIR")
    if env:
        return [Path(env)]
    return [SYSTEM_DIR, cache_dir()]


def _complete(d: Path) -> bool:
    return all((d / name).is_file() for name in FILES)


def verify(d: Path) -> None:
    for name, digest in FILES.items():
        got = sha256_file(d / name)
        if got != digest:
            raise DataError(f"{d / name} has sha256 {got[:12]}…, expected {digest[:12]}…; "
                            f"delete it and run `edgeres data fetch`")


def locate(fetch: bool = True) -> Path:
    """The folder holding verified IDX files; fetches into the user cache when allowed."""
    for d in candidate_dirs():
        if _complete(d):
            verify(d)
            return d
    if fetch and not os.environ.get("EDGERES_FASHION_MNIST_DIR") and os.environ.get("EDGERES_NO_FETCH") != "1":
        return fetch_to_cache()
    where = ", ".join(str(d) for d in candidate_dirs())
    raise DataError(f"Fashion-MNIST not found in {where}; {FIX}")


def fetch_to_cache(dest: Path | None = None) -> Path:
    """``apt-get download`` + ``dpkg-deb -x`` into the cache; no root needed."""
    dest = dest or cache_dir()
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise DataError(f"Fashion-MNIST is not installed and `{tool}` is missing; {FIX}")
    print(f"fetching {PACKAGE} into {dest} …", file=sys.stderr)
    with temp_dir("fmnist") as tmp:
        r = subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob(f"{PACKAGE}_*.deb"))
        if r.returncode != 0 or not debs:
            msg = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no .deb"]
            raise DataError(f"`apt-get download {PACKAGE}` failed ({msg[0]}); run `sudo apt-get update` first, or {FIX}")
        x = Path(tmp) / "x"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(x)], check=True, capture_output=True)
        src = x / SYSTEM_DIR.relative_to("/")
        verify(src)
        dest.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            tmp_dest = dest / f".{name}.tmp"
            shutil.copyfile(src / name, tmp_dest)
            os.replace(tmp_dest, dest / name)
    return dest


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file of unsigned bytes into an array of its stated shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path} ({e}); delete it and run `edgeres data fetch`") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file; delete it and run `edgeres data fetch`")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated ({body.size} of {int(np.prod(dims))} bytes); "
                        f"delete it and run `edgeres data fetch`")
    return body.reshape(dims)


def load_split(split: str, fetch: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of ``train`` or ``test``."""
    prefix = {"train": "train", "test": "t10k"}[split]
    d = locate(fetch)
    images = read_idx(d / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(d / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{d}: {len(images)} images but {len(labels)} labels; run `edgeres data fetch`")
    return images, labels
