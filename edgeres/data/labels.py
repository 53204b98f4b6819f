"""Class labels and normalization given on the command line: a labels file or a list, and per-channel numbers."""
from __future__ import annotations

import math
from pathlib import Path

from edgeres.errors import ConfigError, DataError

MAX_LABEL = 200


def read_labels(spec: str, option: str = "--classes") -> list[str]:
    """A labels file (one class per line, as DeepStream and Triton take them) or a comma-separated list."""
    path = Path(spec)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as e:
            raise DataError(f"{path} is not a readable UTF-8 labels file ({type(e).__name__}); write one class "
                            f"per line") from None
        labels = [ln.strip() for ln in text.splitlines()]
        while labels and not labels[-1]:
            labels.pop()
        where = str(path)
    elif "," in spec:  # a list names two classes at least; one word is a file's name
        labels, where = [s.strip() for s in spec.split(",")], option
    else:
        raise DataError(f"{option}: labels file {path} does not exist; give a file with one class per line, or a "
                        f"list a,b,c")
    if len(labels) < 2:
        raise DataError(f"{where} names {len(labels)} class; a classifier needs at least two")
    bad = next((i for i, lab in enumerate(labels) if not lab or len(lab) > MAX_LABEL or "\n" in lab), None)
    if bad is not None:
        raise DataError(f"{where}: label {bad + 1} is empty or longer than {MAX_LABEL} characters; one class per line")
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        raise DataError(f"{where} names {dup[0]!r} twice; every class needs its own label")
    return labels


def parse_floats(option: str, spec: str) -> tuple[float, ...]:
    """``0.485,0.456,0.406`` → a tuple of finite floats (1 or 3 of them, one per channel)."""
    try:
        values = tuple(float(v) for v in spec.split(","))
    except ValueError:
        raise ConfigError(f"{option} takes numbers separated by commas (0.485,0.456,0.406), got {spec!r}") from None
    if len(values) not in (1, 3) or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{option} takes 1 (grey) or 3 (RGB) finite numbers, got {spec!r}")
    return values
