"""``edgeres device check``: what a bench on a device would find there, before any work. The board and its target
profile, trtexec and its TensorRT, edgeres (which runner ``auto`` picks), the power mode, clocks and the GPU's load,
whether energy can be measured, free disk, and whether each model given would parse there. Each problem comes with
its fix; nothing is built, sent or installed.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import Version

from edgeres import __version__
from edgeres.bench.device_state import Device, device_state, output
from edgeres.bench.runners import DevicePython, device_python
from edgeres.bench.thermal import ThermalWatch
from edgeres.bench.thermal import now as thermal_now
from edgeres.bench.trtexec_device import device_target, find_trtexec, idle_power
from edgeres.config import WORKSPACE_MIB, BenchConfig
from edgeres.errors import ConfigError, EdgeresError
from edgeres.progress import log
from edgeres.remote import LocalDevice
from edgeres.targets import TargetProfile

FREE_GB_WARN = 2.0  # models, engines and a bench's batches live in ~/.cache/edgeres on the device
MEMORY_GB_WARN = WORKSPACE_MIB / 1024 + 0.5  # the builder's workspace, and room for the CUDA context beside it


@dataclass
class ModelCheck:
    path: str
    precision: str | None
    opset: int | None
    problem: str | None  # None: TensorRT's parser there reads it


@dataclass
class DeviceCheck:
    destination: str
    board: str | None  # /proc/device-tree/model
    l4t: str | None  # /etc/nv_tegra_release, e.g. R36.4.0
    target: str | None = None
    trtexec: str | None = None
    tensorrt: str | None = None
    edgeres: str | None = None  # `edgeres --version` there
    edgeres_tensorrt: str | None = None  # the TensorRT its Python imports, or why none (`edgeres targets --json`)
    runner: str | None = None  # what bench --runner auto would use
    energy: str = ""  # the idle board power, or why energy cannot be measured
    free_gb: float | None = None
    thermal: str = ""  # the hottest zone now, its throttle point, the GPU's clock
    memory_gb: float | None = None  # MemAvailable: what a build and a bench can have without swapping
    swap_gb: float | None = None
    state: dict[str, Any] | None = None
    models: list[ModelCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # each stops a bench; each names its fix
    warnings: list[str] = field(default_factory=list)  # each makes its figures less than the model's own
    bench: str = ""  # the bench to run next, when ready

    @property
    def ready(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ready": self.ready}

    def text(self) -> str:
        """The check as a person reads it: what was found, the warnings, then ready (with the bench) or each fix."""
        state = self.state or {}
        busy, locked = state.get("gpu_busy_pct"), state.get("clocks_locked")
        rows = [("board", (self.board or "not a Jetson (no /proc/device-tree/model)")
                 + (f", L4T {self.l4t}" if self.l4t else "")),
                ("target", self.target or "-"),
                ("trtexec", f"{self.trtexec}, TensorRT {self.tensorrt}" if self.trtexec else "-"),
                ("edgeres", f"{self.edgeres}, TensorRT {self.edgeres_tensorrt}" if self.edgeres and
                 self.edgeres_tensorrt else self.edgeres or "not there"),
                ("runner", f"{self.runner} (what bench --runner auto uses)" if self.runner else "-")]
        if self.state is not None:
            mode = (state.get("nvpmodel") or "unknown").splitlines()[0]
            clocks = "unknown" if locked is None else "locked" if locked else "not locked"
            rows += [("power mode", f"{mode}; clocks {clocks}"),
                     ("GPU", "load unknown" if busy is None else f"{busy:.0f}% busy before any work")]
        rows += [("energy", self.energy), ("thermal", self.thermal or "-"),
                 ("disk", "-" if self.free_gb is None else f"{self.free_gb:.1f} GB free"),
                 ("memory", "-" if self.memory_gb is None else f"{self.memory_gb:.1f} GB available, "
                  f"{self.swap_gb or 0:.1f} GB swap")]
        rows += [(m.path, f"{m.precision or '?'}, opset {m.opset or '?'}: " + (
            "will not run there (below)" if m.problem else f"parses on TensorRT {self.tensorrt or '?'}"))
            for m in self.models]
        width = max(len(k) for k, _ in rows)
        lines = [f"{self.destination}:"] + [f"  {k.ljust(width)}  {v}" for k, v in rows]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines + ([f"ready: {self.bench}"] if self.ready else
                                  ["not ready:"] + [f"  - {p}" for p in self.problems]))


def l4t_release(text: str | None) -> str | None:
    """``R36.4.0`` from /etc/nv_tegra_release's first line (``# R36 (release), REVISION: 4.0, …``)."""
    m = re.search(r"R(\d+) \(release\), REVISION: ([\d.]+)", text or "")
    return f"R{m.group(1)}.{m.group(2)}" if m else None


def check_device(device: Device, target: str = "jetson", models: tuple[Path, ...] = (), trtexec: str | None = None,
                 remote_edgeres: str = "edgeres") -> DeviceCheck:
    """Probe ``device`` (an ``SshHost``, or ``LocalDevice`` for this machine) as a bench on ``target`` would."""
    log(f"checking {device.destination}: board, trtexec, edgeres, power (a few seconds of tegrastats on a Jetson) …")
    c = DeviceCheck(device.destination, output(device, ["cat", "/proc/device-tree/model"]),
                    l4t_release(output(device, ["head", "-n", "1", "/etc/nv_tegra_release"])))
    profile: TargetProfile | None = None
    try:
        profile = device_target(target, device)
        c.target = profile.name
    except EdgeresError as e:
        c.problems.append(f"{e} (--target NAME; `edgeres targets` lists them)")
    if profile is not None and profile.runtime != "tensorrt":
        c.problems.append(f"target {profile.name} runs ONNX Runtime, not TensorRT: bench it on this machine, without "
                          f"--host; device check is for TensorRT targets")
        profile = None
    version, no_trtexec = None, ""
    if profile is not None:
        try:
            c.trtexec, version, _ = find_trtexec(device, trtexec)
        except EdgeresError as e:
            no_trtexec = str(e)
    py, c.runner = _runner(device, c.trtexec, remote_edgeres)
    c.edgeres = py.edgeres
    c.edgeres_tensorrt = str(py.tensorrt) if py.tensorrt else f"none ({py.why})" if py.why else None
    version = version or py.tensorrt
    c.tensorrt = None if version is None else str(version)
    fix = ("install TensorRT's Python here (import tensorrt)" if isinstance(device, LocalDevice)
           else f"`edgeres device setup --host {device.destination}` (JetPack 6/7), which makes its venv see JetPack's")
    no_python = f"edgeres {py.edgeres} there imports no tensorrt ({py.why})" if py.edgeres and py.why else ""
    if profile is not None and c.runner is None:
        c.problems.append(f"{no_trtexec}; {no_python + ': ' if no_python else ''}for --runner python, {fix}")
    elif profile is not None and c.runner == "trtexec" and no_python:
        c.warnings.append(f"{no_python}, so bench uses trtexec; for the python runner, {fix}")
    if c.runner == "python" and not isinstance(device, LocalDevice) and py.edgeres != __version__:
        c.warnings.append(f"edgeres {py.edgeres} there, {__version__} here: the report is the device's version's; "
                          f"`edgeres device setup --host {device.destination}` installs this one")
    elif profile is not None and version is not None:
        try:
            profile.check_tensorrt(version, what=f"{device.destination}: TensorRT")
        except EdgeresError as e:
            c.problems.append(str(e))
    if profile is not None and profile.kind == "jetson":
        c.state = device_state(device)
        c.warnings += c.state.pop("warnings")
    c.energy = _energy(device, profile, c.runner)
    watch = ThermalWatch(device, gpu=profile is not None)
    c.thermal = thermal_now(watch)
    c.warnings += watch.warnings((c.state or {}).get("clocks_locked"))
    c.free_gb = _free_gb(device)
    if c.free_gb is not None and c.free_gb < FREE_GB_WARN:
        c.warnings.append(f"{c.free_gb:.1f} GB free in the home folder on {device.destination}: engines and models "
                          f"are kept in ~/.cache/edgeres there; free some space")
    c.memory_gb, c.swap_gb = meminfo_gb(output(device, ["cat", "/proc/meminfo"]))
    if profile is not None and c.memory_gb is not None and c.memory_gb < MEMORY_GB_WARN:
        c.warnings.append(f"{c.memory_gb:.1f} GB of memory available on {device.destination} ({c.swap_gb or 0:.1f} GB "
                          f"swap): TensorRT's builder takes a {WORKSPACE_MIB} MiB workspace and may be killed for "
                          f"memory; stop the desktop (sudo systemctl isolate multi-user.target) or add swap")
    c.models = [_model(Path(m), profile, version) for m in models]
    c.problems += [m.problem if m.path in m.problem else f"{m.path}: {m.problem}" for m in c.models if m.problem]
    where = "" if isinstance(device, LocalDevice) else f" --host {device.destination}" + (
        " --runner trtexec" if c.runner == "trtexec" else
        f" --remote-edgeres {remote_edgeres}" if remote_edgeres != "edgeres" else "")
    c.bench = f"edgeres bench {' '.join(m.path for m in c.models) or 'MODEL.onnx …'} --target {c.target}{where}"
    return c


def _runner(device: Device, trtexec: str | None, remote_edgeres: str) -> tuple[DevicePython, str | None]:
    """edgeres there (its version and TensorRT), and the runner ``bench --runner auto`` would pick (None: neither
    runs); the same rule as ``choose_runner``, with trtexec already looked for.
    """
    py = device_python(device, remote_edgeres)
    return py, "python" if py.runs_tensorrt else ("trtexec" if trtexec else None)


def _energy(device: Device, profile: TargetProfile | None, runner: str | None) -> str:
    """The idle board power the bench would measure against, or why it would not measure energy."""
    if isinstance(device, LocalDevice) and runner != "trtexec" and profile is not None:
        from edgeres.energy import idle_reading

        meter, idle, why = idle_reading(profile.kind)  # as the bench reads it, before any work
        if meter is None or idle is None or idle.mean_w is None:
            return why
        return f"{idle.source}: {idle.mean_w:.2f} W idle ({meter.name})"
    idle, why = idle_power(device, BenchConfig(target=profile.name if profile else "desktop"))
    return f"{idle.source}: {idle.mean_w:.2f} W idle (tegrastats)" if idle and idle.mean_w is not None else why


def meminfo_gb(text: str | None) -> tuple[float | None, float | None]:
    """MemAvailable and SwapTotal of ``/proc/meminfo``, in GB (of 1024³ bytes); None where a line is missing."""
    kb = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(MemAvailable|SwapTotal):\s+(\d+) kB", text or "", re.M)}
    avail, swap = (kb.get(k) for k in ("MemAvailable", "SwapTotal"))
    return (None if avail is None else avail / 1024 ** 2), (None if swap is None else swap / 1024 ** 2)


def _free_gb(device: Device) -> float | None:
    """Free space in the device's home folder (``df -P``: POSIX columns, 1024-byte blocks)."""
    lines = (output(device, ["df", "-P", "-k", "."]) or "").splitlines()
    fields = lines[-1].split() if len(lines) >= 2 else []
    return int(fields[3]) / 1024 ** 2 if len(fields) >= 4 and fields[3].isdigit() else None


def _model(path: Path, profile: TargetProfile | None, version: Version | None) -> ModelCheck:
    """Whether ``path`` would parse with the device's TensorRT, in a precision the target runs."""
    from edgeres.onnx_limits import require_parsable
    from edgeres.onnx_model import load_onnx, onnx_info

    try:
        model = load_onnx(path)
        info = onnx_info(path, model)
    except EdgeresError as e:
        return ModelCheck(str(path), None, None, str(e))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    check = ModelCheck(str(path), info.precision, opset, None)
    if profile is None:
        return check
    if info.precision not in profile.precisions:
        check.problem = (f"{info.precision} does not run on {profile.name} (it runs {', '.join(profile.precisions)}); "
                         f"bench the float model, whose fp16 row edgeres adds")
        return check
    try:
        require_parsable(path, model, profile, version)
    except ConfigError as e:
        check.problem = str(e).removeprefix(f"{path}: ")
    return check
