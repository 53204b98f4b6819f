"""Which runner measures: this machine's runtimes (python), the device's own edgeres over SSH, or trtexec alone."""
from __future__ import annotations

import shutil
from pathlib import Path

from edgeres.backends.trtexec import JETPACK_TRTEXEC
from edgeres.config import BenchConfig
from edgeres.errors import ConfigError
from edgeres.remote import LocalDevice, SshHost
from edgeres.targets import load_target

RUNNERS = ("auto", "python", "trtexec")


def choose_runner(runner: str, host: SshHost | None, target: str, remote_edgeres: str = "edgeres") -> str:
    """``auto``: trtexec where the device has no usable edgeres/TensorRT Python, else python."""
    if runner not in RUNNERS:
        raise ConfigError(f"--runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    if runner != "auto":
        return runner
    if target != "jetson" and load_target(target).runtime != "tensorrt":
        return "python"  # ONNX Runtime targets have no trtexec
    if host is not None:
        p = host.run([remote_edgeres, "--version"], check=False)
        return "python" if p.returncode == 0 else "trtexec"
    from edgeres.backends.tensorrt import tensorrt_version
    if tensorrt_version() is not None:
        return "python"
    has_trtexec = shutil.which("trtexec") is not None or Path(JETPACK_TRTEXEC).is_file()
    return "trtexec" if has_trtexec else "python"  # python: its error says how to get TensorRT


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
