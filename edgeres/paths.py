"""Where edgeres's own data lives: calibration sets and target files beside the package."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION_DIR = Path(os.environ.get("EDGERES_CALIBRATION_DIR", ROOT / "calibration"))
DEFAULT_CALIBRATION = "fashion-mnist-train-500"


def calibration_path(name_or_path: str) -> Path:
    """A calibration set by path, or by name under ``calibration/``."""
    p = Path(name_or_path)
    if p.exists() or p.is_absolute() or len(p.parts) > 1:
        return p
    return CALIBRATION_DIR / name_or_path
