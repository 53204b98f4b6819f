"""The built wheel works on its own: installed into a fresh venv (no torch), run from another folder."""
from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    r = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(REPO))
    assert r.returncode == 0, r.stderr
    wheel = next((tmp / "dist").glob("edgeres-*.whl"))
    venv.create(tmp / "venv", with_pip=True)
    py = tmp / "venv" / "bin" / "python"
    r = run(str(py), "-m", "pip", "install", "-q", "--only-binary", ":all:", f"{wheel}[cpu]")
    if r.returncode != 0 and ("Could not find a version" in r.stderr or "NewConnectionError" in r.stderr):
        pytest.skip(f"PyPI is not reachable for the wheel's dependencies: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr
    return tmp / "venv" / "bin"


def test_installed_wheel_lists_every_target_from_another_folder(fresh, tmp_path):
    r = run(str(fresh / "edgeres"), "targets", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    names = sorted(t["name"] for t in json.loads(r.stdout)["targets"])
    assert names == sorted(p.stem for p in (REPO / "edgeres" / "resources" / "targets").glob("*.toml"))
    assert len(names) == 10
    assert run(str(fresh / "python"), "-c", "import torch").returncode != 0  # the core needs no torch


def test_installed_wheel_benches_the_cpu_target_without_torch(fresh, small_run, tmp_path):
    cfg, _ = small_run
    r = run(str(fresh / "edgeres"), "bench", str(Path(cfg.out) / "model.onnx"), "--limit", "50", "--duration",
            "0.05", "--warmup", "0", "--rounds", "1", "--throughput-batch", "4", "--out", str(tmp_path / "r"),
            "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r" / "report.json").read_text())["versions"]["torch"] is None
    r = run(str(fresh / "edgeres"), "train", "--epochs", "1", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "edgeres[workstation]" in r.stderr
