"""edgeres device setup over a real OpenSSH server on loopback: a venv that sees the system's packages, no torch."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import assert_one_line_error, edgeres
from tests.helpers.sshd import start_device


def flags(server) -> list[str]:
    return ["--host", server.destination, "--identity", str(server.key), "--accept-new-host-key",
            *sum((["--ssh-option", o] for o in server.options()), [])]


@pytest.fixture
def device(tmp_path):
    servers = []

    def start(python: Path | None, env: tuple[str, ...] = ()):
        path = tmp_path / f"path{len(servers)}"
        path.mkdir()
        if python is not None:
            (path / "python3").symlink_to(python)
        server = start_device(tmp_path / f"dev{len(servers)}", path, env)
        if isinstance(server, str):
            pytest.skip(server)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.proc.terminate()
        s.proc.wait(10)


def test_old_jetpack_python_is_told_to_use_the_trtexec_runner(device, tmp_path):
    fake = tmp_path / "python38"
    fake.write_text("#!/bin/sh\necho 3.8\n")  # what JetPack 5's python3 answers
    fake.chmod(0o755)
    r = edgeres("device", "setup", *flags(device(fake)))
    assert_one_line_error(r, "Python 3.8", "--runner trtexec")


def test_setup_makes_a_venv_with_edgeres_and_no_torch(device):
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pip"
    server = device(base, (f"PIP_CACHE_DIR={cache}",))
    r = edgeres("device", "setup", *flags(server), "--json")
    if r.returncode != 0 and "network" in r.stderr:
        pytest.skip(f"PyPI is not reachable from the device account: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["edgeres"] == ".local/share/edgeres/venv/bin/edgeres" and doc["python"] >= "3.10"
    home = Path(server.key).parents[1] / "home"
    venv = home / ".local/share/edgeres/venv"
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert (venv / "bin" / "edgeres").is_file()
    assert not list(venv.glob("lib/python*/site-packages/torch"))
    assert not list(venv.glob("lib/python*/site-packages/onnxruntime"))
