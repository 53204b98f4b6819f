"""Set a stock Jetson (JetPack 6 or 7) up for the Python runner, replacing nothing JetPack owns.

One venv made with ``--system-site-packages`` (so JetPack's own ``tensorrt`` bindings are seen), holding this very
edgeres (its wheel is built here and sent) and its core dependencies: no torch, no onnxruntime. JetPack 4.6 and 5
ship Python 3.6 and 3.8, which edgeres does not run on: there ``--runner trtexec`` needs nothing installed at all.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgeres.artifacts import temp_dir
from edgeres.errors import ConfigError, RemoteError
from edgeres.progress import log
from edgeres.remote import SshHost

DEVICE_VENV = ".local/share/edgeres/venv"  # under the device account's home
MIN_PYTHON = (3, 10)


@dataclass(frozen=True)
class DeviceSetup:
    """What ``edgeres device setup`` left on the device."""

    host: str
    python: str
    venv: str
    edgeres: str  # the command to pass as --remote-edgeres
    tensorrt: str | None  # JetPack's TensorRT as the venv sees it; None where it has none


def _wheel(folder: Path) -> Path:
    repo = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder), str(repo)],
                       capture_output=True, text=True)
    wheels = sorted(folder.glob("edgeres-*.whl"))
    if p.returncode != 0 or not wheels:
        raise ConfigError(f"could not build edgeres's wheel here ({p.stderr.strip()[-200:]}); run from a checkout "
                          f"with pip and setuptools")
    return wheels[-1]


def setup_device(host: SshHost, python: str = "python3", venv: str = DEVICE_VENV) -> DeviceSetup:
    """Make (or update) the edgeres venv on ``host`` and check that it sees JetPack's TensorRT."""
    with host.connected() as one:
        return _setup(one, python, venv)


def _setup(host: SshHost, python: str, venv: str) -> DeviceSetup:
    p = host.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], check=False)
    if p.returncode != 0:
        raise RemoteError(f"{host.destination} has no {python}; JetPack 6/7 ship python3, else use --runner trtexec")
    major, minor = (int(v) for v in p.stdout.decode().strip().split("."))
    if (major, minor) < MIN_PYTHON:
        raise ConfigError(f"{host.destination} runs Python {major}.{minor} (JetPack 4.6 has 3.6, JetPack 5 has 3.8), "
                          f"and edgeres needs 3.10 or newer there; bench it with --runner trtexec, which installs "
                          f"nothing on the device")
    log(f"{host.destination}: Python {major}.{minor}; making {venv} (--system-site-packages: JetPack's TensorRT stays "
        f"JetPack's)")
    host.run(["mkdir", "-p", venv])
    host.run([python, "-m", "venv", "--system-site-packages", venv])
    with temp_dir("wheel") as tmp:
        wheel = _wheel(Path(tmp))
        host.run(["mkdir", "-p", f"{venv}/wheels"])
        host.put({wheel.name: wheel}, f"{venv}/wheels")
    log(f"{host.destination}: installing {wheel.name} and its core dependencies (no torch, no onnxruntime)")
    pip = host.run([f"{venv}/bin/python", "-m", "pip", "install", "-q", "--upgrade", f"{venv}/wheels/{wheel.name}"],
                   check=False)
    if pip.returncode != 0:
        last = (pip.stderr.decode(errors="replace").strip().splitlines() or ["pip failed"])[-1]
        raise RemoteError(f"pip on {host.destination} could not install edgeres: {last[:200]}; check its network "
                          f"(pip needs PyPI for onnx, numpy, pillow, click …)")
    trt = host.run([f"{venv}/bin/python", "-c", "import tensorrt; print(tensorrt.__version__)"], check=False)
    version = trt.stdout.decode().strip() if trt.returncode == 0 else None
    host.run([f"{venv}/bin/edgeres", "--version"])
    return DeviceSetup(host.destination, f"{major}.{minor}", venv, f"{venv}/bin/edgeres", version)
