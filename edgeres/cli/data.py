"""calib make / calib show, data fetch."""
from __future__ import annotations

from pathlib import Path

import click

from edgeres.cli import emit, handle_errors, json_option


@click.group("calib")
def calib_grp():
    """Calibration sets: PNG images plus manifest.json, under calibration/."""


@calib_grp.command("make")
@click.option("--data", default="fashion-mnist", show_default=True)
@click.option("--per-class", type=int, default=50, show_default=True)
@click.option("--split", default="train", show_default=True, help="Never test: bench measures on it.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@json_option
@handle_errors
def calib_make(data, per_class, split, seed, out, as_json):
    """Draw a class-balanced calibration set from a training split.

    \b
    Example:
      edgeres calib make --data fashion-mnist --per-class 50 --out calibration/fashion-mnist-train-500
    """
    from edgeres.data.calibration import load_calibration_set, make_calibration_set

    path = make_calibration_set(data, out, per_class, split, seed)
    n = len(load_calibration_set(path, allow_small=True).images)
    emit(as_json, {"calibration": path, "images": n}, f"{path}: {n} images")


@calib_grp.command("show")
@click.argument("path", type=click.Path(path_type=Path))
@json_option
@handle_errors
def calib_show(path, as_json):
    """Check a calibration set and say what it holds.

    \b
    Example:
      edgeres calib show calibration/fashion-mnist-train-500
    """
    from edgeres.data.calibration import load_calibration_set
    from edgeres.paths import calibration_path

    c = load_calibration_set(calibration_path(str(path)), allow_small=True)
    emit(as_json, {"calibration": c.root, "images": len(c.images), "source": c.source},
         f"{c.root}: {len(c.images)} images from {c.source}")


@click.group("data")
def data_grp():
    """Data sets: Fashion-MNIST from Debian's package, or ImageFolder trees."""


@data_grp.command("fetch")
@json_option
@handle_errors
def data_fetch(as_json):
    """Find Fashion-MNIST, or fetch Debian's dataset-fashion-mnist into the user cache (no root).

    \b
    Example:
      edgeres data fetch
    """
    from edgeres.data import fashion_mnist

    d = fashion_mnist.locate(fetch=True)
    emit(as_json, {"path": d, "files": list(fashion_mnist.FILES)}, f"Fashion-MNIST verified in {d}")
