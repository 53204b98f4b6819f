"""SIGTERM and SIGHUP stop edgeres as Ctrl-C does; a signal held over a block arrives when it ends."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from edgeres.interrupts import Stopped, raise_on_stop_signals, signal_of, stops_held


@pytest.fixture
def handlers(monkeypatch):
    """The process's stop handlers, put back after the test; not a worker of a distributed launch."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for s, h in old.items():
        signal.signal(s, h)


def test_sigterm_and_sighup_raise_a_keyboard_interrupt_that_names_them(handlers):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    raise_on_stop_signals()
    for s in (signal.SIGTERM, signal.SIGHUP):
        with pytest.raises(KeyboardInterrupt) as caught:  # every `except KeyboardInterrupt` cleans up after it too
            os.kill(os.getpid(), s)
            signal.sigtimedwait([], 0.5)  # let the handler run
        assert isinstance(caught.value, Stopped) and signal_of(caught.value) == s
    assert signal_of(KeyboardInterrupt()) == signal.SIGINT


def test_a_worker_of_a_distributed_launch_keeps_the_default(handlers, monkeypatch):
    """torchrun SIGTERMs the survivors when a worker fails; one blocked in a collective would run no handler."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise_on_stop_signals()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_signal_ignored_at_start_stays_ignored(handlers):
    """Under nohup, a closed terminal (SIGHUP) must not stop a run."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise_on_stop_signals()
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    assert callable(signal.getsignal(signal.SIGTERM))


def test_a_stop_held_over_a_block_is_raised_as_it_ends(handlers):
    # as a terminal starts Python (a suite started in the background by a script has SIGINT ignored, which Python
    # then leaves so)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise_on_stop_signals()
    done = []
    with pytest.raises(Stopped):
        with stops_held():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the block ran to its end")
    assert done == ["the block ran to its end"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are back


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_held_signal_with_no_handler_ends_the_process_by_it(sig):
    code = (f"import os, signal\nfrom edgeres.interrupts import stops_held\nsignal.signal({sig}, signal.SIG_DFL)\n"
            f"with stops_held():\n    os.kill(os.getpid(), {sig})\n    print('held', flush=True)\nprint('not reached')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == -sig and p.stdout == "held\n", p.stderr
