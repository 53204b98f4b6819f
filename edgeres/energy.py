"""Board power while a model runs, and energy per image: tegrastats on a Jetson, NVML on a desktop GPU, RAPL on x86.

tegrastats prints one line per interval; its power rails differ by generation (``POM_5V_IN 900/943`` on a Nano,
``GPU 0/0 … SYS5V 1889/1889`` on an AGX Xavier, ``VDD_IN 5765mW`` or ``VDD_GPU_SOC 3212mW/3212mW`` on Orin, ``VDD_GPU``
and ``VIN`` on Thor); values are mW, the first of each ``now/avg`` pair is read. The board's input rail gives board
power where it exists; else the rails are summed and the report says so.
"""
from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeres.progress import log

RAIL = re.compile(r"(?<![\w@])([A-Z][A-Z0-9_]*) (\d+(?:\.\d+)?)(mW)?(?:/(\d+(?:\.\d+)?)(?:mW)?)*(?![\w%@.])")
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN", "SYS5V")  # the board's (or module's) input, by generation
GR3D = re.compile(r"GR3D_FREQ (\d+)%(?:@\[?(\d+))?")
POWERCAP = Path(os.environ.get("EDGERES_POWERCAP_DIR", "/sys/class/powercap"))
INA3221 = tuple(Path(p) for p in os.environ.get(
    "EDGERES_INA3221_DIRS", "/sys/bus/i2c/drivers/ina3221:/sys/bus/i2c/drivers/ina3221x").split(":"))
NO_RAILS = ("tegrastats printed no power rails: on this JetPack it needs root; bench with an account that may run it "
            "(root, or sudo without a password for tegrastats), or pass --energy off")


def parse_tegrastats(line: str) -> dict[str, float]:
    """Every power rail of one tegrastats line, in W (the instantaneous value of each ``now/avg``)."""
    out = {}
    for m in RAIL.finditer(line):
        name, value, mw, avg = m.group(1), m.group(2), m.group(3), m.group(4)
        if mw is None and avg is None:
            continue  # "APE 150", "VIC_FREQ 115": frequencies, not rails
        out[name] = float(value) / 1000.0
    return out


def gpu_load(line: str) -> tuple[float | None, float | None]:
    """(GR3D load %, GPU MHz) of a tegrastats line, where it says."""
    m = GR3D.search(line)
    if m is None:
        return None, None
    return float(m.group(1)), float(m.group(2)) if m.group(2) else None


def board_watts(rails: dict[str, float]) -> tuple[float | None, str]:
    """Board power from one sample's rails: the input rail where the board has one, else their sum."""
    for name in INPUT_RAILS:
        if name in rails:
            return rails[name], name
    if rails:
        return sum(rails.values()), "sum of " + "+".join(sorted(rails))
    return None, "none"


@dataclass
class PowerReading:
    """What a meter saw over one window."""

    meter: str  # tegrastats | ina3221 | nvml | rapl
    seconds: float
    samples: int
    mean_w: float | None
    std_w: float | None
    source: str  # which rail or counter the board power is
    rails_w: dict[str, float] = field(default_factory=dict)  # mean of each rail

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reading(samples: list[dict[str, float]], seconds: float, meter: str) -> PowerReading:
    """Mean board power and each rail's mean over samples of rails (W); samples without rails are skipped."""
    per = [p for p in samples if p]
    board = [board_watts(p) for p in per]
    values = np.asarray([w for w, _ in board if w is not None], float)
    rails = {k: float(np.mean([p[k] for p in per if k in p])) for k in sorted({k for p in per for k in p})}
    return PowerReading(meter, seconds, int(values.size), float(values.mean()) if values.size else None,
                        float(values.std()) if values.size else None, board[0][1] if board else "none", rails)


def summarize(lines: list[str], seconds: float, meter: str = "tegrastats") -> PowerReading:
    """The reading of tegrastats lines."""
    return reading([parse_tegrastats(ln) for ln in lines if ln.strip()], seconds, meter)


def energy_per_image_mj(power: PowerReading, idle: PowerReading | None, seconds_per_query: float,
                        batch: int) -> dict[str, float | None]:
    """Energy per image (mJ) at the measured board power, and above idle where idle was measured."""
    if power.mean_w is None:
        return {"mj_per_image": None, "mj_per_image_above_idle": None}
    per = power.mean_w * seconds_per_query / batch * 1000.0
    above = None
    if idle is not None and idle.mean_w is not None:
        above = max(power.mean_w - idle.mean_w, 0.0) * seconds_per_query / batch * 1000.0
    return {"mj_per_image": per, "mj_per_image_above_idle": above}


class Meter:
    """A local power meter sampled in a thread while a window runs; ``None`` from ``find_meter`` says why not."""

    name = "?"
    interval_s = 0.1

    def read(self) -> dict[str, float]:
        raise NotImplementedError

    def measure(self, run: Any) -> tuple[Any, PowerReading]:
        """Call ``run()`` while sampling; returns its result and the reading."""
        samples: list[dict[str, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(self.read())
                stop.wait(self.interval_s)

        t = threading.Thread(target=sample, daemon=True)
        t0 = time.perf_counter()
        t.start()
        try:
            result = run()
        finally:
            stop.set()
            t.join()
        return result, reading(samples, time.perf_counter() - t0, self.name)


class RaplMeter(Meter):
    """x86 CPU package energy counters (``/sys/class/powercap/intel-rapl:*``), as power between reads."""

    name = "rapl"

    def __init__(self, zones: list[Path]) -> None:
        self.zones = zones
        self._last: tuple[float, list[int]] | None = None

    def _energy(self) -> list[int]:
        return [int((z / "energy_uj").read_text()) for z in self.zones]

    def measure(self, run: Any) -> tuple[Any, PowerReading]:
        """A window's power from its own reads only: without this, its first sample spanned the time since the last
        window, and the energy of whatever ran between (another model's work) counted as this one's.
        """
        self._last = None
        return super().measure(run)

    def read(self) -> dict[str, float]:
        now, e = time.perf_counter(), self._energy()
        out: dict[str, float] = {}
        if self._last is not None:
            t0, e0 = self._last
            dt = max(now - t0, 1e-6)
            watts = [max(b - a, 0) / 1e6 / dt for a, b in zip(e0, e)]
            out = {f"PACKAGE{i}": w for i, w in enumerate(watts)}
            out["VIN"] = sum(watts)  # the CPU packages: the nearest a RAPL machine has to an input rail
        self._last = (now, e)
        return out


class NvmlMeter(Meter):
    """A desktop GPU's board power through NVML (``nvidia-ml-py``)."""

    name = "nvml"

    def __init__(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nvml = pynvml
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)

    def read(self) -> dict[str, float]:
        return {"VIN": self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0}  # mW → W: the GPU board's input


class Ina3221Meter(Meter):
    """A Jetson's INA3221 power monitors in sysfs: hwmon (``in*_label``, ``in*_input`` mV, ``curr*_input`` mA; JetPack
    5 on) or the older iio driver (``rail_name_*``, ``in_power*_input`` mW; JetPack 4).
    """

    name = "ina3221"

    def __init__(self, channels: list[tuple[str, list[Path]]]) -> None:
        self.channels = channels

    def read(self) -> dict[str, float]:
        out = {}
        for label, files in self.channels:
            values = [float(f.read_text()) for f in files]
            out[label] = values[0] * values[1] / 1e6 if len(values) == 2 else values[0] / 1000.0
        return out


def ina3221_channels(roots: tuple[Path, ...] | None = None) -> list[tuple[str, list[Path]]]:
    """Every readable INA3221 channel: its label and the files that give its power."""
    out: list[tuple[str, list[Path]]] = []
    for root in roots or INA3221:
        for hw in sorted(root.glob("*/hwmon/hwmon*")):
            for lab in sorted(hw.glob("in*_label")):
                n = lab.name[2:-len("_label")]
                files = [hw / f"in{n}_input", hw / f"curr{n}_input"]
                if all(f.exists() for f in files):
                    out.append((lab.read_text().strip(), files))
        for dev in sorted(root.glob("*/iio:device*")):
            for name in sorted(dev.glob("rail_name_*")):
                n = name.name.rsplit("_", 1)[1]
                power = dev / f"in_power{n}_input"
                if power.exists():
                    out.append((name.read_text().strip(), [power]))
    return out


class TegrastatsMeter(Meter):
    """tegrastats run on this Jetson for the window (``--interval 100``), its lines read as they come."""

    name = "tegrastats"

    def measure(self, run: Any) -> tuple[Any, PowerReading]:
        import subprocess

        proc = subprocess.Popen(["tegrastats", "--interval", "100"], stdout=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),  # type: ignore[union-attr]
                                  daemon=True)
        t0 = time.perf_counter()
        reader.start()
        try:
            result = run()
        finally:
            proc.terminate()
            proc.wait(5)
            reader.join(5)
        return result, summarize(lines, time.perf_counter() - t0)


def find_meter(kind: str) -> tuple[Meter | None, str]:
    """The meter for this machine and target kind, or None and why energy is not measured."""
    if kind == "desktop":
        try:
            return NvmlMeter(), ""
        except Exception as e:  # no pynvml, no driver
            return None, f"no NVML ({type(e).__name__}: {e}); pip install nvidia-ml-py on a machine with an NVIDIA driver"
    if kind == "cpu":
        zones = sorted(p for p in POWERCAP.glob("intel-rapl:*") if p.name.count(":") == 1 and (p / "energy_uj").exists())
        if not zones:
            return None, f"no RAPL energy counters ({POWERCAP}/intel-rapl:* absent: a VM, or not an x86 CPU)"
        try:
            meter = RaplMeter(zones)
            meter.read()
        except PermissionError:
            return None, f"RAPL counters in {POWERCAP} need root to read (energy_uj is 0400 since Linux 5.10)"
        return meter, ""
    channels = ina3221_channels()
    if channels:
        try:
            ina = Ina3221Meter(channels)
            ina.read()
            return ina, ""
        except (PermissionError, OSError, ValueError):
            pass  # unreadable without root on some JetPacks: tegrastats may still say
    import shutil
    if shutil.which("tegrastats"):
        return TegrastatsMeter(), ""
    return None, "no INA3221 monitors readable in sysfs and no tegrastats on PATH (JetPack puts it in /usr/bin)"


def idle_reading(kind: str, seconds: float = 1.0) -> tuple[Meter | None, PowerReading | None, str]:
    """This machine's meter and the board power it reads for ``seconds`` with nothing running; or None, None and why
    energy cannot be measured here (no meter, or one that reads no power: tegrastats without its rails).
    """
    meter, why = find_meter(kind)
    if meter is None:
        return None, None, why
    log(f"energy: idle power from {meter.name} for {seconds:g} s …")
    _, idle = meter.measure(lambda: time.sleep(seconds))
    if idle.mean_w is None:
        return None, None, NO_RAILS if meter.name == "tegrastats" else f"{meter.name} read no power in {seconds:g} s"
    return meter, idle, ""
