"""Running the edgeres command as a user does, and what a refusal must look like."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# bench's timing at its cheapest, for tests about anything but latency: one short window per model, no warm-up
QUICK_TIMING = ("--duration", "0.02", "--warmup", "0", "--warmup-iters", "1", "--min-iters", "1", "--rounds", "1")


def edgeres(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeres", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "EDGERES_QUIET": "1"}, timeout=300)


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
