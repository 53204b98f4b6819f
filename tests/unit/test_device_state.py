"""The state a Jetson is measured in, read from tegrastats, nvpmodel and jetson_clocks as a board prints them (a
stand-in device answers with those texts: it proves the parsing and the warnings, never a board's state)."""
from __future__ import annotations

import re
import subprocess

import pytest

from edgeres.bench.device_state import BUSY_PCT, device_state
from edgeres.bench.report import footnotes
from tests.helpers.tegrastats_standin import line_of

# jetson_clocks --show on an AGX Orin (JetPack 5), its GPU and EMC lines; locked: MinFreq = MaxFreq
CLOCKS = ("SOC family:tegra234  Machine:Jetson AGX Orin\nOnline CPUs: 0-11\n"
          "cpu0: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=1728000 IdleStates: WFI=0 c7=0\n"
          "GPU MinFreq={gpu} MaxFreq=1300500000 CurrentFreq=306000000\n"
          "EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=2133000000 FreqOverride=0\nNV Power Mode: MAXN\n")


class Board:
    """Answers the three commands as a Jetson does; ``gr3d`` is the GPU load its tegrastats lines show."""

    destination = "a stand-in Jetson"

    def __init__(self, gr3d: int | None, clocks: str | None) -> None:
        self.gr3d, self.clocks = gr3d, clocks
        self.ran: list[list[str]] = []

    def run(self, argv, check=True):  # noqa: ANN001, ANN201
        self.ran.append(list(argv))
        if argv[1:3] == ["1", "tegrastats"]:
            if self.gr3d is None:
                return subprocess.CompletedProcess(argv, 127, b"", b"tegrastats: not found")
            line = re.sub(r"GR3D_FREQ \d+%", f"GR3D_FREQ {self.gr3d}%", line_of("jetson-orin-nano"))
            assert f"GR3D_FREQ {self.gr3d}%" in line
            return subprocess.CompletedProcess(argv, 124, (line + "\n").encode() * 10, b"")
        if argv == ["nvpmodel", "-q"]:
            return subprocess.CompletedProcess(argv, 0, b"NV Power Mode: MAXN\n0\n", b"")
        if self.clocks is None:
            return subprocess.CompletedProcess(argv, 1, b"", b"jetson_clocks: must be run as root")
        return subprocess.CompletedProcess(argv, 0, self.clocks.encode(), b"")


def report_of(state: dict) -> dict:
    row = {"label": "fp32", "latency": {"batch": 1}, "throughput": {"batch": 32}, "threads": None, "accuracy_mode": "native",
           "latency_representative": True}
    return {"results": [row], "dataset": {"images": 10, "name": "x"}, "device_state": state}


def test_another_process_on_the_gpu_is_named_before_the_bench():
    board = Board(76, CLOCKS.format(gpu=1300500000))
    state = device_state(board)
    assert state["gpu_busy_pct"] == pytest.approx(76) and state["clocks_locked"] is False  # EMC unlocked
    assert board.ran[0][:3] == ["timeout", "1", "tegrastats"]  # first: before anything else runs
    notes = footnotes(report_of(state))
    assert any("the GPU was 76% busy before the bench began" in n and "fuser" in n for n in notes)
    assert any("clocks are not locked" in n for n in notes)


@pytest.mark.parametrize(("gr3d", "busy"), [(0, False), (int(BUSY_PCT) - 1, False), (int(BUSY_PCT), True)])
def test_the_busy_threshold(gr3d, busy):
    state = device_state(Board(gr3d, CLOCKS.format(gpu=1300500000).replace("MinFreq=204000000", "MinFreq=3199000000")))
    assert state["clocks_locked"] is True
    assert any("busy" in w for w in state["warnings"]) is busy and len(state["warnings"]) == int(busy)


def test_what_a_board_does_not_say_is_unknown_not_guessed():
    state = device_state(Board(None, None))
    assert state["gpu_busy_pct"] is None and state["clocks_locked"] is None
    assert state["warnings"] == ["whether clocks are locked is unknown (jetson_clocks --show needs root): latency may "
                                 "depend on DVFS"]


def test_a_report_written_before_warnings_were_a_list_still_shows_its_one():
    assert "clocks are not locked" in footnotes(report_of({"warning": "clocks are not locked (…)"}))[-1]
