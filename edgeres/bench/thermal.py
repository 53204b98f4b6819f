"""Temperatures and the GPU's clock while a bench runs: whether a row was measured on a chip that throttled.

A Jetson without a fan, or in a warm case, lowers its clocks when a thermal zone reaches its throttle point, and a
power mode's budget can do the same. The rows timed after that run slower than the model would, and a comparison of
precisions then says more about the order of the rows than about the models. So both runners read, after every
timing window and on the machine that runs it, each thermal zone (``/sys/class/thermal/thermal_zone*/temp``) and the
GPU's clock where the kernel gives it (a Jetson's devfreq node, ``/sys/class/devfreq/<gpu>/cur_freq``), in one
``grep`` call, an argument list, over SSH or here. The report gives each row's hottest zone and clock range, and warns
when a row's GPU clock fell below 90% of the bench's highest, or a zone came within 5 °C of its throttle point (its
lowest ``passive`` or ``hot`` trip point).

Zones that do not read a temperature are left out:
- the PMIC-Die zone of Nano, TX2 and Xavier always reads 100 °C (NVIDIA says so on its forum; tegrastats prints it
  as ``PMIC@100C``);
- a sensor that is off reads -256 °C (an AGX Orin's GPU zone below 45 °C on JetPack 5.0.2: jetson_stats issue 350);
- the CV zones of an Orin Nano, which has no DLA or PVA, fail to read with EAGAIN, and readers that retried hung
  (prometheus/procfs issue 698): grep reports the error, which ``-s`` silences, and goes on to the next file.

A sample is taken after a window, not inside it, and temperatures lag the work: these are a check on the figures,
not a thermal study.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeres.bench.device_state import Device

THERMAL_DIR = os.environ.get("EDGERES_THERMAL_DIR", "/sys/class/thermal")
DEVFREQ_DIR = os.environ.get("EDGERES_DEVFREQ_DIR", "/sys/class/devfreq")
ZONES = 32  # thermal_zone0 … 31 are asked for by name: an argument list has no glob
TRIPS = 8
# the GPU's devfreq node by generation: Nano/TX1, TX2, Xavier, Orin on JetPack 5, Orin on JetPack 6
GPU_DEVFREQ = ("57000000.gpu", "17000000.gp10b", "17000000.gv11b", "17000000.ga10b", "17000000.gpu")
FAKE_ZONES = ("PMIC",)  # a zone whose type holds this reads a constant
THROTTLE_TRIPS = ("passive", "hot")  # the kernel's trip types that lower clocks; "active" is a fan, "critical" a halt
NEAR_TRIP_C = 5.0
CLOCK_FALL = 0.9  # a row whose GPU clock fell under this share of the bench's highest is flagged
SANE_C = (-40.0, 150.0)  # outside: a sensor that is off
TRIP_C = (40.0, 150.0)  # outside: a trip point that is unset
# zones whose trip points only notify user space (the kernel's x86_pkg_temp_thermal doc: 0 until written, any value
# up to TjMax): they throttle nothing, so they are no throttle point
NOTIFY_ONLY = ("x86_pkg_temp",)


# nvidia-smi on a desktop GPU (and any board whose driver has it): the GPU's temperature, SM clock and the reasons
# its clocks are held down, as NVML's bit mask (nvmlClocksThrottleReason*, NVML's API reference). Drivers from 535 call
# them clocks_event_reasons and still take the old name (only the CSV header changed: utkuozdemir/nvidia_gpu_exporter
# issue 123); drivers before 535 know only the old one.
NVIDIA_SMI = ["timeout", "10", "nvidia-smi", "--query-gpu=temperature.gpu,clocks.sm,clocks_throttle_reasons.active",
              "--format=csv,noheader,nounits"]  # under timeout: nvidia-smi can hang where the driver is stuck
NVIDIA_SMI_ZONE = "GPU (nvidia-smi)"
SLOWDOWNS = {0x4: "power cap", 0x8: "hardware slowdown", 0x20: "thermal slowdown", 0x40: "hardware thermal slowdown",
             0x80: "power brake"}  # GPU idle (0x1), application clocks, sync boost and display clocks slow no work
WARN_SLOWDOWNS = ("hardware slowdown", "thermal slowdown", "hardware thermal slowdown", "power brake")  # a busy GPU
# at its power cap is how boost works; it is kept in the row, not warned of


@dataclass
class Snapshot:
    """One reading: each zone's °C by name, the GPU's clock (MHz) where the kernel or nvidia-smi gives it, and the
    slowdowns nvidia-smi reports.
    """

    temps_c: dict[str, float]
    gpu_mhz: float | None
    slowdowns: list[str] = field(default_factory=list)
    clock: str | None = None  # where gpu_mhz came from: "devfreq" (a Jetson) or "nvidia-smi"

    @property
    def empty(self) -> bool:
        return not self.temps_c and self.gpu_mhz is None


def _grep(device: Device, paths: list[str]) -> dict[str, str]:
    """``path: first line`` of every readable file among ``paths``, in one call (``grep -s -H .``: missing files are
    left out, and grep's exit status, 2 where one is missing, says nothing here).
    """
    p = device.run(["grep", "-s", "-H", "-m", "1", ".", *paths], check=False)
    out: dict[str, str] = {}
    for line in p.stdout.decode(errors="replace").splitlines():
        path, sep, value = line.partition(":")
        if sep:
            out.setdefault(path, value.strip())
    return out


def _zone(i: int) -> str:
    return f"{THERMAL_DIR}/thermal_zone{i}"


def zone_names(values: dict[str, str]) -> dict[int, str]:
    """Each zone's name by its number: its type, and ``type#N`` for a later zone of a type already named. Taken from
    the types alone, so a reading and a throttle point of one zone always carry the same name; PMIC zones are left
    out (they read a constant).
    """
    names: dict[int, str] = {}
    for i in range(ZONES):
        kind = values.get(f"{_zone(i)}/type")
        if kind is not None and not any(f in kind for f in FAKE_ZONES):
            names[i] = kind if kind not in names.values() else f"{kind}#{i}"
    return names


def parse_snapshot(values: dict[str, str]) -> Snapshot:
    """A snapshot from ``path: value`` pairs of zone ``type``/``temp`` files (m°C) and devfreq ``cur_freq`` files (Hz)."""
    temps: dict[str, float] = {}
    for i, name in zone_names(values).items():
        try:
            c = int(values.get(f"{_zone(i)}/temp", "")) / 1000.0
        except ValueError:
            continue  # unreadable, empty
        if SANE_C[0] <= c <= SANE_C[1]:
            temps[name] = c
    mhz = None
    for name in GPU_DEVFREQ:
        raw = values.get(f"{DEVFREQ_DIR}/{name}/cur_freq")
        if raw is not None and raw.isdigit():
            mhz = int(raw) / 1e6
            break
    return Snapshot(temps, mhz, clock=None if mhz is None else "devfreq")


def parse_nvidia_smi(text: str) -> tuple[float | None, float | None, list[str]]:
    """(hottest GPU °C, highest SM MHz, slowdowns of any GPU) from ``NVIDIA_SMI``'s lines, one per GPU: an idle GPU
    beside the busy one reads cool and slow, so the hottest, the fastest and every slowdown are kept.
    """
    temps: list[float] = []
    clocks: list[float] = []
    reasons: set[str] = set()
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        for value, into in ((parts[0], temps), (parts[1], clocks)):
            try:
                into.append(float(value))
            except ValueError:
                pass  # "[N/A]", "[Not Supported]"
        try:
            mask = int(parts[2], 16)
        except ValueError:
            continue
        reasons |= {name for bit, name in SLOWDOWNS.items() if mask & bit}
    return max(temps, default=None), max(clocks, default=None), sorted(reasons)


def snapshot(device: Device, nvidia_smi: bool = False) -> Snapshot:
    """Every zone's temperature and the GPU's clock on ``device`` now; with ``nvidia_smi``, its reading too."""
    paths = [f"{_zone(i)}/{f}" for i in range(ZONES) for f in ("type", "temp")]
    s = parse_snapshot(_grep(device, paths + [f"{DEVFREQ_DIR}/{n}/cur_freq" for n in GPU_DEVFREQ]))
    if nvidia_smi:
        p = device.run(NVIDIA_SMI, check=False)
        c, mhz, s.slowdowns = parse_nvidia_smi(p.stdout.decode(errors="replace") if p.returncode == 0 else "")
        if c is not None:
            s.temps_c[NVIDIA_SMI_ZONE] = c
        if s.gpu_mhz is None and mhz is not None:
            s.gpu_mhz, s.clock = mhz, "nvidia-smi"
    return s


def parse_trips(values: dict[str, str]) -> dict[str, float]:
    """Each zone's throttle point (°C): its lowest ``passive`` or ``hot`` trip point."""
    out: dict[str, float] = {}
    for i, name in zone_names(values).items():
        if any(f in values[f"{_zone(i)}/type"] for f in NOTIFY_ONLY):
            continue
        points = []
        for t in range(TRIPS):
            ttype, temp = values.get(f"{_zone(i)}/trip_point_{t}_type"), values.get(f"{_zone(i)}/trip_point_{t}_temp")
            if ttype in THROTTLE_TRIPS and temp is not None and temp.lstrip("-").isdigit():
                c = int(temp) / 1000.0
                if TRIP_C[0] <= c < TRIP_C[1]:
                    points.append(c)
        if points:
            out[name] = min(points)
    return out


def trips(device: Device) -> dict[str, float]:
    paths = [f"{_zone(i)}/{f}" for i in range(ZONES) for f in
             ["type", *(f"trip_point_{t}_{k}" for t in range(TRIPS) for k in ("type", "temp"))]]
    return parse_trips(_grep(device, paths))


@dataclass
class ThermalWatch:
    """Snapshots of one device taken after each timing window, by row; the first, ``before``, before any of them."""

    device: Device
    gpu: bool = False  # the models run on an NVIDIA GPU: ask nvidia-smi too, where it answers
    before: Snapshot = field(init=False)
    trips_c: dict[str, float] = field(init=False)
    samples: dict[str, list[Snapshot]] = field(default_factory=dict)
    nvidia_smi: bool = field(init=False)

    def __post_init__(self) -> None:
        self.before = snapshot(self.device, self.gpu)
        self.nvidia_smi = NVIDIA_SMI_ZONE in self.before.temps_c  # asked once: a board without it is not asked again
        self.trips_c = trips(self.device) if self.before.temps_c else {}

    @property
    def active(self) -> bool:
        return not self.before.empty

    def sample(self, label: str) -> None:
        if self.active:
            self.samples.setdefault(label, []).append(snapshot(self.device, self.nvidia_smi))

    def row(self, label: str) -> dict[str, Any] | None:
        """A row's hottest reading per zone, its hottest zone and its GPU clock's range, over its windows."""
        got = self.samples.get(label)
        if not got:
            return None
        zones = {z: max(s.temps_c[z] for s in got if z in s.temps_c) for z in {z for s in got for z in s.temps_c}}
        hot = max(zones.items(), key=lambda kv: kv[1]) if zones else None
        clocks = [s.gpu_mhz for s in got if s.gpu_mhz is not None]
        return {"samples": len(got), "max_c": dict(sorted(zones.items())),
                "hottest_zone": hot[0] if hot else None, "hottest_c": hot[1] if hot else None,
                "gpu_mhz": [min(clocks), max(clocks)] if clocks else None,
                "slowdowns": sorted({r for s in got for r in s.slowdowns})}

    def warnings(self, clocks_locked: bool | None = None) -> list[str]:
        """The rows whose GPU clock fell, and the zones that came near their throttle point."""
        out = []
        rows = {k: self.row(k) for k in self.samples}
        top = max((r["gpu_mhz"][1] for r in rows.values() if r and r["gpu_mhz"]), default=None)
        # clocks known to float (DVFS): a reading after a window may catch the governor lowering an idle clock, and the
        # device state's warning already says that latency depends on it
        fell = {} if clocks_locked is False else {k: r["gpu_mhz"][0] for k, r in rows.items()
                                                  if r and r["gpu_mhz"] and top and r["gpu_mhz"][0] < CLOCK_FALL * top}
        jetson = self.before.clock == "devfreq"
        cool = ("cool the board (its fan at full speed: sudo jetson_clocks --fan)" if jetson else
                "cool the GPU (its fans, the case's airflow)")
        if fell:
            lock = "sudo jetson_clocks" if jetson else "sudo nvidia-smi --lock-gpu-clocks=MHZ,MHZ"
            why = (f"with clocks locked, that is throttling: {cool} and re-run" if clocks_locked else
                   f"throttling, or DVFS if clocks are not locked: lock them ({lock}), {cool} and re-run")
            out.append("the GPU clock fell during " + ", ".join(f"{k} (to {v:.0f} MHz)" for k, v in fell.items())
                       + f", below 90% of the bench's highest {top:.0f} MHz; their latency is not the model's alone: "
                       + why)
        slow = {k: [w for w in r["slowdowns"] if w in WARN_SLOWDOWNS] for k, r in rows.items() if r}
        if any(slow.values()):
            out.append("nvidia-smi reported the GPU's clocks held down during " + ", ".join(
                f"{k} ({', '.join(v)})" for k, v in slow.items() if v) + f": their latency is not the model's alone; "
                f"{cool} and re-run")
        near: dict[str, float] = {}
        for temps in [self.before.temps_c, *((r or {}).get("max_c") or {} for r in rows.values())]:
            for z, c in temps.items():
                if z in self.trips_c and c >= self.trips_c[z] - NEAR_TRIP_C:
                    near[z] = max(c, near.get(z, c))
        if near:
            out.append("thermal zones came within 5 °C of their throttle point: " + ", ".join(
                f"{z} {c:.1f} °C (throttles at {self.trips_c[z]:.0f} °C)" for z, c in near.items())
                + f"; latency and energy from then on may be throttled: {cool} and re-run")
        return out

    def report(self, clocks_locked: bool | None = None) -> dict[str, Any]:
        """The report's ``thermal``: how it was read, the throttle points, the reading before any work, warnings."""
        if not self.active:
            return {"measured": False, "why": f"{self.device.destination} shows no thermal zone in {THERMAL_DIR} and "
                                              f"no GPU clock in {DEVFREQ_DIR}" + (", and no nvidia-smi answers there"
                                                                                  if self.gpu else "")}
        smi = "; nvidia-smi's temperature.gpu, clocks.sm and clocks_throttle_reasons.active" if self.nvidia_smi else ""
        return {"measured": True, "how": f"{THERMAL_DIR}/thermal_zone*/temp and the GPU's devfreq cur_freq{smi}, read "
                                         f"after each timing window (PMIC zones left out: they read a constant)",
                "trips_c": self.trips_c, "before": asdict(self.before), "warnings": self.warnings(clocks_locked)}


def now(watch: ThermalWatch) -> str:
    """The reading before any work, as ``device check`` shows it: the hottest zone, its throttle point, the clock."""
    if not watch.active:
        return f"nothing read (no thermal zone in {THERMAL_DIR}, no GPU clock in {DEVFREQ_DIR})"
    temps = watch.before.temps_c
    hot = max(temps, key=lambda z: temps[z]) if temps else None
    trip = f" (throttles at {watch.trips_c[hot]:.0f} °C)" if hot in watch.trips_c else ""
    return (f"hottest {hot} {temps[hot]:.1f} °C{trip}" if hot else "no zone") + (
        f"; GPU {watch.before.gpu_mhz:.0f} MHz" if watch.before.gpu_mhz is not None else "")


def short(row: dict[str, Any]) -> str:
    """``GPU-therm 61.5 °C, GPU 921 MHz`` (a clock range where it moved)."""
    parts = []
    if row.get("hottest_zone"):
        parts.append(f"{row['hottest_zone']} {row['hottest_c']:.1f} °C")
    if row.get("gpu_mhz"):
        lo, hi = row["gpu_mhz"]
        parts.append(f"GPU {lo:.0f} MHz" if lo == hi else f"GPU {lo:.0f}–{hi:.0f} MHz")
    if row.get("slowdowns"):
        parts.append("held down: " + ", ".join(row["slowdowns"]))
    return ", ".join(parts) or "nothing read"

