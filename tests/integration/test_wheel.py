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
    r = run(str(py), "-m", "pip", "install", "-q", "--no-compile", "--only-binary", ":all:", f"{wheel}[cpu]")
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


@pytest.mark.parametrize("jetpack,version", [("6", "3.10"), ("7", "3.12")], ids=["jetpack-6", "jetpack-7"])
def test_the_wheel_installs_and_runs_on_a_jetpacks_python(fresh, jetpack, version, tmp_path):
    """``edgeres device setup`` installs the wheel with its core dependencies (no torch, no ONNX Runtime) into the
    device's own Python: 3.10 on JetPack 6, 3.12 on JetPack 7. Here, with those CPythons (x86, not aarch64): it
    installs, lists the targets, and imports the modules a device runs (the TensorRT session, bench, energy).
    """
    from tests.helpers.fixtures import python_of

    base = python_of(version)
    if base is None:
        pytest.skip(f"no Python {version} on this machine (the image's pyenv has one)")
    wheel = next((fresh.parents[1] / "dist").glob("edgeres-*.whl"))
    run(str(base), "-m", "venv", str(tmp_path / "venv"))
    bin_ = tmp_path / "venv" / "bin"
    r = run(str(bin_ / "python"), "-m", "pip", "install", "-q", "--no-compile", "--only-binary", ":all:", str(wheel))
    if r.returncode != 0 and ("Could not find a version" in r.stderr or "NewConnectionError" in r.stderr):
        pytest.skip(f"PyPI is not reachable for the wheel's dependencies: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr
    r = run(str(bin_ / "edgeres"), "targets", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["targets"]) == 10
    r = run(str(bin_ / "python"), "-c", "import sys, edgeres.backends.tensorrt.session, edgeres.bench.run, edgeres.energy, "
            "edgeres.remote; print('%d.%d' % sys.version_info[:2]); import onnxruntime", cwd=tmp_path)
    assert r.stdout.strip() == version and "No module named 'onnxruntime'" in r.stderr, r.stderr
    assert run(str(bin_ / "edgeres"), "bench", "--help", cwd=tmp_path).returncode == 0
