"""calib make / calib show, data fetch."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgeres.cli import emit, handle_errors, json_option

if TYPE_CHECKING:
    from edgeres.data.survey import DataSurvey


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


@data_grp.command("show")
@click.argument("data")
@click.option("--val-split", type=float, default=None,
              help="As train's --val-split (default: 0.1 for a folder without val/, none for fashion-mnist).")
@json_option
@handle_errors
def data_show(data, val_split, as_json):
    """Say what a data set holds, as `edgeres train --data DATA` would use it: its splits and classes, the colour
    and sizes of its images, the preprocessing train would choose, and identical images (test images that copy
    training ones, one image in two classes), which train refuses.

    \b
    Examples:
      edgeres data show my_photos
      edgeres data show fashion-mnist --json
    """
    from dataclasses import asdict

    from edgeres.data.survey import survey

    s = survey(data, val_split)
    emit(as_json, asdict(s), survey_text(s))


def survey_text(s: DataSurvey) -> str:
    """The survey as a few lines for a terminal."""
    lines = [f"{s.data}: {len(s.classes)} classes"]
    width = max(len(sp.split) for sp in s.splits)
    for sp in s.splits:
        counts = sorted(sp.per_class.values())
        lines.append(f"  {sp.split:<{width}} {sp.images:>7,} images, {counts[0]:,} to {counts[-1]:,} a class: "
                     f"{sp.source}")
    per = s.splits[0].per_class
    small = min(per, key=lambda c: per[c])
    if per[small] < max(per.values()):
        lines.append(f"  smallest training class: {small} ({per[small]:,})")
    lk, pre = s.look, s.preprocessing
    lines.append(f"images ({lk.sampled:,} headers read): {lk.colour:,} colour, {lk.grey:,} grey; from "
                 f"{lk.smallest[0]}×{lk.smallest[1]} to {lk.largest[0]}×{lk.largest[1]} px, shorter side "
                 f"{lk.short_side} px at the median")
    lines.append(f"train would use: {'RGB' if pre.channels == 3 else 'grey'}, shorter side to {pre.resize or pre.size} "
                 f"px, centre {pre.size}×{pre.size} crop, mean {list(pre.mean)}, std {list(pre.std)} (without "
                 f"--weights or --size)")
    lines += [f"note: {n}" for n in s.notes]
    if not s.duplicates:
        lines.append("identical images: none between the splits, none in two classes")
        return "\n".join(lines)
    lines.append("identical images (train refuses them; delete one copy of each, or pass --allow-duplicates):")
    for split, pairs in s.duplicates.copies.items():
        lines += [f"  {a} ({split}) = {b} (train)" for a, b in pairs]
    lines += [f"  two classes: {a} = {b}" for a, b in s.duplicates.two_classes]
    return "\n".join(lines)
