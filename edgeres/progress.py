"""Progress bars with an ETA on stderr; quiet when EDGERES_QUIET=1 or stderr is not a terminal in CI."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get("EDGERES_QUIET") != "1"


def progress(it: Iterable[T], desc: str, total: int | None = None, **kw: Any) -> Iterable[T]:
    """Wrap an iterable in a tqdm bar (elapsed, ETA, rate) unless progress is off."""
    if not enabled():
        return it
    return tqdm(it, desc=desc, total=total, file=sys.stderr, leave=False, dynamic_ncols=True,
                mininterval=0.5, **kw)


def log(msg: str) -> None:
    if enabled():
        print(msg, file=sys.stderr, flush=True)
