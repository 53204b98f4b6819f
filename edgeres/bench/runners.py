"""Which runner measures: this machine's runtimes (python), the device's own edgeres over SSH, or trtexec alone."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from edgeres.bench.device_state import Device, output
from edgeres.config import BenchConfig
from edgeres.errors import ConfigError, EdgeresError
from edgeres.remote import LocalDevice, SshHost
from edgeres.targets import load_target

RUNNERS = ("auto", "python", "trtexec")


@dataclass(frozen=True)
class DevicePython:
    """edgeres on the measuring machine, as the python runner needs it: its version, and the TensorRT its Python
    imports. ``tensorrt`` None with ``why`` empty: an edgeres from before ``targets --json`` said (assumed usable).
    """

    edgeres: str | None  # None: it does not run there
    tensorrt: Version | None = None
    why: str = ""  # why its Python imports no tensorrt, as it said

    @property
    def runs_tensorrt(self) -> bool:
        return self.edgeres is not None and not self.why


def device_python(device: Device, remote_edgeres: str = "edgeres") -> DevicePython:
    """Ask the device's edgeres (``--version``, then ``targets --json``); this machine answers for itself."""
    if isinstance(device, LocalDevice):
        from edgeres import __version__
        from edgeres.backends.tensorrt import tensorrt_status

        trt, why = tensorrt_status()
        return DevicePython(__version__, trt, why)
    said = output(device, [remote_edgeres, "--version"])
    if not said:
        return DevicePython(None)
    try:
        got = json.loads(output(device, [remote_edgeres, "targets", "--json"]) or "{}").get("tensorrt") or {}
    except ValueError:
        got = {}
    trt = got.get("version")
    return DevicePython(said.split()[-1], None if trt is None else Version(trt), "" if trt else got.get("why", ""))


def choose_runner(runner: str, host: SshHost | None, target: str, remote_edgeres: str = "edgeres") -> str:
    """``auto``: trtexec where the device has no usable edgeres/TensorRT Python, else python."""
    if runner not in RUNNERS:
        raise ConfigError(f"--runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    if runner != "auto":
        return runner
    if target != "jetson" and load_target(target).runtime != "tensorrt":
        return "python"  # ONNX Runtime targets have no trtexec
    py = device_python(host if host is not None else LocalDevice(), remote_edgeres)
    if py.runs_tensorrt:
        return "python"
    if host is not None and py.edgeres is None:
        return "trtexec"  # its own error says when the device has no trtexec either
    from edgeres.bench.trtexec_device import find_trtexec

    try:
        find_trtexec(host if host is not None else LocalDevice(), None)
    except EdgeresError:
        return "python"  # neither: python's error says how to get TensorRT's Python
    return "trtexec"


def bench_with(models: list[Path], out_dir: Path, cfg: BenchConfig, runner: str = "auto", host: SshHost | None = None,
               checkpoint: Path | None = None, remote_edgeres: str = "edgeres", clean_remote: bool = False,
               trtexec: str | None = None) -> dict:
    """Bench ``models`` with the runner asked for (or the one ``auto`` picks); returns the report. A host's commands
    all ride one ssh connection.
    """
    if host is not None and host.control_path is None:
        with host.connected() as one:
            return bench_with(models, out_dir, cfg, runner, one, checkpoint, remote_edgeres, clean_remote, trtexec)
    chosen = choose_runner(runner, host, cfg.target, remote_edgeres)
    if chosen == "trtexec":
        if checkpoint is not None:
            raise ConfigError("--checkpoint needs torch on the measuring machine; drop it with --runner trtexec")
        from edgeres.bench.trtexec_runner import bench_trtexec
        return bench_trtexec(models, out_dir, cfg, host if host is not None else LocalDevice(), trtexec)
    if trtexec is not None:
        raise ConfigError("--trtexec is for --runner trtexec; add --runner trtexec")
    if host is not None:
        from edgeres.bench.remote import bench_remote
        return bench_remote(models, out_dir, cfg, host, checkpoint, remote_edgeres, clean_remote)
    from edgeres.bench.run import bench
    return bench(models, out_dir, cfg, checkpoint)
