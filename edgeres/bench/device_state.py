"""The state a Jetson was measured in: its power mode, whether its clocks were locked, and whether another process was
using its GPU when the bench began. Latency and energy depend on all three, so each bench on a Jetson records them and
its report says which of them make its figures less than the model's own.
"""
from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from edgeres.energy import gpu_load

# GR3D_FREQ (the GPU's busy share) above this, with nothing of edgeres running yet, is another process's work. A
# desktop on the board's display keeps it at a few percent.
BUSY_PCT = 10.0
SAMPLE_S = 1


class Device(Protocol):
    """Where trtexec runs: ``edgeres.remote.SshHost`` or ``LocalDevice``."""

    @property
    def destination(self) -> str: ...

    def run(self, remote: Sequence[str], check: bool = True) -> subprocess.CompletedProcess: ...

    def put(self, files: dict[str, Path], remote_dir: str) -> None: ...

    def read(self, path: str) -> bytes: ...

    def failure(self, remote: Sequence[str], rc: int, stderr: str) -> str: ...


def output(device: Device, argv: list[str]) -> str | None:
    """What a probe printed (stripped, the device tree's NUL too), or None where it failed or is missing."""
    p = device.run(argv, check=False)
    return p.stdout.decode(errors="replace").strip("\x00\n\t ") if p.returncode == 0 else None


def gpu_busy_pct(device: Device) -> float | None:
    """The GPU's mean GR3D load over ``SAMPLE_S`` s of tegrastats, or None where tegrastats says nothing of it."""
    p = device.run(["timeout", str(SAMPLE_S), "tegrastats", "--interval", "100"], check=False)
    loads = [load for load, _ in map(gpu_load, p.stdout.decode(errors="replace").splitlines()) if load is not None]
    return sum(loads) / len(loads) if loads else None


def device_state(device: Device) -> dict[str, Any]:
    """Power mode, clocks and whether they are locked (latency depends on DVFS when they are not), and the GPU's load
    before any work of the bench (call it first): another process's share of the GPU is in every figure after.
    """
    busy = gpu_busy_pct(device)
    mode, clocks = output(device, ["nvpmodel", "-q"]), output(device, ["jetson_clocks", "--show"])
    locked = None
    if clocks:
        pairs = [(ln.split("MinFreq=")[1].split()[0], ln.split("MaxFreq=")[1].split()[0])
                 for ln in clocks.splitlines() if ln.strip().startswith(("GPU", "EMC")) and "MinFreq=" in ln]
        locked = bool(pairs) and all(lo == hi for lo, hi in pairs)
    warnings = []
    if busy is not None and busy >= BUSY_PCT:
        warnings.append(f"the GPU was {busy:.0f}% busy before the bench began (tegrastats GR3D_FREQ over {SAMPLE_S} s): "
                        f"another process is using it, and its share is in every latency and energy figure; stop it "
                        f"(`sudo fuser -v /dev/nvhost-*` lists who holds the GPU) and re-run")
    if locked is False:
        warnings.append("clocks are not locked (run sudo jetson_clocks on the device): latency then depends on DVFS")
    elif clocks is None:
        warnings.append("whether clocks are locked is unknown (jetson_clocks --show needs root): latency may depend on "
                        "DVFS")
    return {"nvpmodel": mode, "jetson_clocks": clocks, "clocks_locked": locked, "gpu_busy_pct": busy,
            "warnings": warnings}
