"""Where edgeres's own data lives (the calibration sets and target profiles shipped inside the package), and which
files of a user's folder are its own (``visible_files``).

They are package data under ``edgeres/resources/`` (the repository's ``calibration/`` and ``targets/`` are links to
them), so an installed wheel has them too. ``EDGERES_CALIBRATION_DIR`` and ``EDGERES_TARGETS_DIR`` point elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent / "resources"
CALIBRATION_DIR = Path(os.environ.get("EDGERES_CALIBRATION_DIR", RESOURCES / "calibration"))
TARGETS_DIR = Path(os.environ.get("EDGERES_TARGETS_DIR", RESOURCES / "targets"))
DEFAULT_CALIBRATION = "fashion-mnist-train-500"


def calibration_path(name_or_path: str) -> Path:
    """A calibration set by path, or by name under the shipped calibration sets."""
    p = Path(name_or_path)
    if p.exists() or p.is_absolute() or len(p.parts) > 1:
        return p
    return CALIBRATION_DIR / name_or_path


def visible_files(root: Path) -> list[Path]:
    """The files under ``root``, sorted, leaving out hidden files and folders: macOS writes an AppleDouble
    ``._name.jpg`` beside each photo on a USB stick or network share (not an image), and Jupyter keeps copies in
    ``.ipynb_checkpoints/``.
    """
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))
