"""Being stopped: Ctrl-C, ``kill`` (SIGTERM) and a closed terminal or ssh session (SIGHUP) all end a command the way
Ctrl-C does: the work in hand is abandoned, what it was writing is removed (every ``finally`` runs), what it had
finished stays, and the process then dies of the signal it was sent, as a shell, ``timeout``, systemd or a CI runner
expects.

Python turns only SIGINT into an exception (``KeyboardInterrupt``); SIGTERM and SIGHUP kill it on the spot, leaving a
half-written temporary behind and never running the code that would stop a build it started on a device. The CLI calls
``raise_on_stop_signals`` at start: SIGTERM and SIGHUP then raise ``Stopped``, a ``KeyboardInterrupt``, so that every
path that cleans up after Ctrl-C cleans up after them too.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program was, as Ctrl-C raises ``KeyboardInterrupt``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def raise_on_stop_signals() -> None:
    """SIGTERM and SIGHUP raise ``Stopped`` from now on (main thread). A signal the parent set to be ignored stays
    ignored: under ``nohup`` a closed terminal does not stop edgeres.

    A worker of a distributed launch (``torchrun`` sets WORLD_SIZE and TORCHELASTIC_RUN_ID) keeps the default: its
    launcher sends SIGTERM to the survivors when one worker fails, and a worker blocked in a collective that waits for
    the dead peer would run no Python handler until the launcher's SIGKILL, 30 s later. Rank 0 alone writes, and the
    temporary of a killed writer is removed by the next.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if "WORLD_SIZE" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ:
        return
    for s in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(s) == signal.SIG_DFL:
            signal.signal(s, _raise_stopped)


def signal_of(exc: BaseException) -> int:
    """The signal that stopped the program: ``Stopped``'s own, else SIGINT (a plain ``KeyboardInterrupt``)."""
    return exc.signum if isinstance(exc, Stopped) else signal.SIGINT


def die_of(signum: int) -> None:
    """End the process by ``signum`` with its default action (only the main thread can; elsewhere this returns)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


@contextlib.contextmanager
def stops_held() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP over a block that a stop would leave in a state it cannot report (torch.export
    turns a KeyboardInterrupt into an export error); one that came is delivered, as it would have been, on leaving.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    old = {s: signal.signal(s, lambda signum, _: came.append(signum)) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    for signum in came[:1]:
        handler = old[signal.Signals(signum)]
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            die_of(signum)
