"""Progress with an ETA on stderr: a live bar on a terminal; in a log, a plain line every 30 s; none with EDGERES_QUIET=1.

tqdm redraws with a carriage return several times a second, which in a log file becomes megabytes of one line; so off a
terminal the bar is replaced by a line of text (done/total, elapsed, ETA) at a low rate.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
LOG_INTERVAL_S = 30.0


def enabled() -> bool:
    return os.environ.get("EDGERES_QUIET") != "1"


def on_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress(it: Iterable[T], desc: str, total: int | None = None, **kw: Any) -> Iterable[T]:
    """Wrap an iterable: a tqdm bar (elapsed, ETA, rate) on a terminal, a line every 30 s in a log, else nothing."""
    if not enabled():
        return it
    if on_terminal():
        return tqdm(it, desc=desc, total=total, file=sys.stderr, leave=False, dynamic_ncols=True,
                    mininterval=0.5, **kw)
    return _logged(it, desc, total if total is not None else _len(it))


def _len(it: Iterable[Any]) -> int | None:
    try:
        return len(it)  # type: ignore[arg-type]
    except TypeError:
        return None


def _logged(it: Iterable[T], desc: str, total: int | None) -> Iterator[T]:
    t0 = last = time.monotonic()
    n = 0
    for n, item in enumerate(it, 1):
        yield item
        now = time.monotonic()
        if now - last >= LOG_INTERVAL_S:
            last = now
            rate = n / (now - t0)
            eta = f", ETA {(total - n) / rate:.0f} s" if total and rate > 0 else ""
            log(f"{desc}: {n}/{total if total else '?'} after {now - t0:.0f} s{eta}")


def log(msg: str) -> None:
    if enabled():
        print(msg, file=sys.stderr, flush=True)
