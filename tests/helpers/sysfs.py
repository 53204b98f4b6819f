"""A sysfs-like tree of thermal zones and a GPU devfreq node, for the thermal watch's tests: what
``/sys/class/thermal`` and ``/sys/class/devfreq`` hold on a Jetson (values in m°C and Hz), at made-up readings."""
from __future__ import annotations

from pathlib import Path

from edgeres.bench.thermal import GPU_DEVFREQ


def thermal_tree(root: Path, zones: dict[str, tuple[float, float | None]], gpu_mhz: float | None = None) -> None:
    """Zones by type: (°C now, throttle point °C or None), each with an ``active`` (fan) trip 20 °C below its
    ``passive`` one; and the GPU's clock in its Nano devfreq node."""
    for i, (kind, (c, trip)) in enumerate(zones.items()):
        d = root / "thermal" / f"thermal_zone{i}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "type").write_text(kind + "\n")
        (d / "temp").write_text(f"{int(round(c * 1000))}\n")
        if trip is not None:
            (d / "trip_point_0_type").write_text("active\n")
            (d / "trip_point_0_temp").write_text(f"{int((trip - 20) * 1000)}\n")
            (d / "trip_point_1_type").write_text("passive\n")
            (d / "trip_point_1_temp").write_text(f"{int(trip * 1000)}\n")
    if gpu_mhz is not None:
        set_gpu_mhz(root, gpu_mhz)


def set_gpu_mhz(root: Path, mhz: float) -> None:
    d = root / "devfreq" / GPU_DEVFREQ[0]
    d.mkdir(parents=True, exist_ok=True)
    (d / "cur_freq").write_text(f"{int(mhz * 1e6)}\n")


def set_temp(root: Path, zone: int, c: float) -> None:
    (root / "thermal" / f"thermal_zone{zone}" / "temp").write_text(f"{int(round(c * 1000))}\n")


def install_nvidia_smi(bin_dir: Path, reading: Path) -> Path:
    """A STAND-IN ``nvidia-smi`` that prints ``reading`` (a test writes the lines it wants, one per GPU, as
    ``--query-gpu=temperature.gpu,clocks.sm,clocks_throttle_reasons.active --format=csv,noheader,nounits`` prints
    them) and refuses any other query: the protocol, never a GPU's figures."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "nvidia-smi"
    exe.write_text('#!/bin/sh\n[ "$1" = "--query-gpu=temperature.gpu,clocks.sm,clocks_throttle_reasons.active" ] && '
                   f'[ "$2" = "--format=csv,noheader,nounits" ] && exec cat "{reading}"\n'
                   'echo "stand-in nvidia-smi: unexpected arguments $*" >&2; exit 2\n')
    exe.chmod(0o755)
    return exe
