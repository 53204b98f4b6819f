"""A STAND-IN tegrastats that replays one real line (tests/data/tegrastats/samples.txt) every interval: it proves the
sampling protocol (interval, logfile, being stopped), never a board's power."""
from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "tegrastats" / "samples.txt"


def line_of(board: str) -> str:
    for ln in SAMPLES.read_text().splitlines():
        if ln.startswith(board + " ## "):
            return ln.split(" ## ")[1]
    raise KeyError(board)


def without_rails(line: str) -> str:
    """The line as an account without root gets it where the rails need root: no ``NAME mW/mW`` fields."""
    import re

    return re.sub(r"\s[A-Za-z0-9_]+ \d+mW(?:/\d+mW)?", "", line)


def install(bin_dir: Path, board: str = "jetson-orin-nano", rails: bool = True) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "tegrastats"
    line = line_of(board) if rails else without_rails(line_of(board))
    exe.write_text("#!/bin/sh\n"
                   "f=''\n"
                   "while [ $# -gt 0 ]; do case \"$1\" in --logfile) f=$2; shift;; esac; shift; done\n"
                   f"line='{line}'\n"
                   "while true; do if [ -n \"$f\" ]; then echo \"$line\" >> \"$f\"; else echo \"$line\"; fi; "
                   "sleep 0.1; done\n")
    exe.chmod(0o755)
    return exe
