"""edgeres device check: what a bench would find on the device, over the loopback "device" (sshd with an account whose
PATH holds a shell, coreutils and tar) and on this machine. trtexec and tegrastats are STAND-INS (they print what
the real tools print): the check's protocol is proved, no device is measured.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from edgeres import __version__
from edgeres.bench.device_check import check_device, l4t_release, meminfo_gb
from edgeres.bench.runners import choose_runner
from edgeres.remote import LocalDevice, SshHost
from tests.helpers.cli import edgeres
from tests.helpers.sshd import serving, start_device
from tests.helpers.tegrastats_standin import install as install_tegrastats
from tests.helpers.trtexec_standin import install


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """A loopback device with the stand-in trtexec (TensorRT 8.5.2, JetPack 5.1's) and tegrastats, and no edgeres."""
    folder = tmp_path_factory.mktemp("device")
    install(folder / "path", "8502")
    install_tegrastats(folder / "path")
    for tool in ("timeout", "dd", "head", "df"):  # coreutils, as every JetPack has them
        (folder / "path" / tool).symlink_to(shutil.which(tool))
    yield from serving(start_device(folder, folder / "path"))


def flags(device) -> list[str]:
    return ["--host", device.destination, "--identity", str(device.key), "--accept-new-host-key",
            *sum((["--ssh-option", o] for o in device.options()), [])]


def test_a_device_check_finds_what_a_bench_would_and_names_each_fix(device, exports):
    models = [exports(17)["fp32"], exports(17)["int8"], exports(18)["fp32"]]
    before = device.logins()
    r = edgeres("device", "check", *map(str, models), "--target", "jetson-orin-nano", *flags(device), "--json")
    assert r.returncode == 1, r.stderr  # the opset-18 model would not parse on TensorRT 8.5
    c = json.loads(r.stdout)
    assert device.logins() - before == 1  # every probe rides one connection
    assert (c["target"], c["tensorrt"], c["runner"], c["edgeres"]) == ("jetson-orin-nano", "8.5.2", "trtexec", None)
    assert c["trtexec"] == "trtexec" and c["board"] is None
    assert c["energy"].startswith("VDD_IN: ") and c["energy"].endswith(" W idle (tegrastats)")
    assert c["state"]["gpu_busy_pct"] == pytest.approx(76)  # the stand-in replays a busy Orin Nano's line
    assert any("76% busy" in w for w in c["warnings"]) and c["free_gb"] > 0
    ok17, int8, bad18 = c["models"]
    assert (ok17["precision"], ok17["opset"], ok17["problem"]) == ("fp32", 17, None) and int8["problem"] is None
    assert bad18["opset"] == 18 and "opset 18 is outside the 7–17 that TensorRT 8.5" in bad18["problem"]
    assert "edgeres export" in bad18["problem"] and "--target jetson-orin-nano" in bad18["problem"]
    assert c["problems"] == [f"{models[2]}: {bad18['problem']}"] and c["ready"] is False
    text = edgeres("device", "check", *map(str, models[:2]), "--target", "jetson-orin-nano", *flags(device))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"{device.destination}:" and "Traceback" not in text.stderr
    assert lines[-1] == (f"ready: edgeres bench {models[0]} {models[1]} --target jetson-orin-nano "
                         f"--host {device.destination} --runner trtexec")


def test_a_device_check_refuses_a_tensorrt_the_target_never_ships(device, tmp_path):
    """TensorRT 8.5 is JetPack 5's; a Thor runs JetPack 7 (TensorRT 10.13): the check says which target to name."""
    host = SshHost(device.destination, device.options(), device.key, accept_new_host_key=True)
    with host.connected() as one:
        c = check_device(one, "jetson-thor")
    assert not c.ready and c.problems[0].startswith(f"{device.destination}: TensorRT 8.5.2 does not match target jetson-thor")
    with host.connected() as one:
        c = check_device(one, "jetson")  # no device-tree model on the loopback device
    assert not c.ready and c.target is None and "name its target" in c.problems[0]
    with host.connected() as one:
        c = check_device(one, "desktop", trtexec="/opt/none/trtexec")
    assert c.runner is None and "`/opt/none/trtexec` does not run there" in c.problems[0]
    assert "edgeres device setup --host" in c.problems[0]


def test_this_machine_without_tensorrt_is_named(tmp_path, monkeypatch, exports):
    monkeypatch.setenv("PATH", f"{tmp_path / 'none'}:{os.environ['PATH']}")
    c = check_device(LocalDevice(), "desktop", (exports(17)["fp32"],), trtexec=str(tmp_path / "none" / "trtexec"))
    assert c.runner is None and "install TensorRT's Python here" in c.problems[0]
    assert c.models[0].problem is None  # parses on the target's own parser limits (no TensorRT version known)
    exe = install(tmp_path / "bin", "100300")
    c = check_device(LocalDevice(), "desktop", (Path("/nowhere/model.onnx"),), trtexec=str(exe))
    assert c.runner == "trtexec" and c.tensorrt == "10.3.0" and len(c.problems) == 1
    assert c.problems == ["ONNX model not found: /nowhere/model.onnx; make one with `edgeres export`"]


@pytest.fixture(scope="module")
def device_with_edgeres(tmp_path_factory):
    """A loopback device with the stand-in trtexec (8.5.2) and this venv's edgeres, whose Python has no tensorrt; and
    ``edgeres-trt``, the same edgeres with a ``tensorrt`` module on its path that only names JetPack 5.1's release
    (all that is asked of it here: nothing is built)."""
    folder = tmp_path_factory.mktemp("device-edgeres")
    install(folder / "path", "8502")
    (folder / "path" / "edgeres").symlink_to(Path(sys.executable).parent / "edgeres")
    (folder / "site" / "tensorrt").mkdir(parents=True)
    (folder / "site" / "tensorrt" / "__init__.py").write_text('__version__ = "8.5.2"\n')
    wrapper = folder / "path" / "edgeres-trt"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={folder / "site"} exec {Path(sys.executable).parent / "edgeres"} "$@"\n')
    wrapper.chmod(0o755)
    old = folder / "path" / "edgeres-old"  # an older release there: it answers --version so
    old.write_text('#!/bin/sh\n[ "$1" = --version ] && { echo "edgeres, version 0.0.9"; exit 0; }\n'
                   f'exec {wrapper} "$@"\n')
    old.chmod(0o755)
    yield from serving(start_device(folder, folder / "path"))


def test_an_edgeres_there_whose_python_has_no_tensorrt_is_named_and_bench_uses_trtexec(device_with_edgeres):
    """Its edgeres runs, but a bench through it would fail at the first engine; auto takes trtexec, and says why."""
    host = SshHost(device_with_edgeres.destination, device_with_edgeres.options(), device_with_edgeres.key,
                   accept_new_host_key=True)
    with host.connected() as one:
        c = check_device(one, "jetson-orin-nano")
        runner = choose_runner("auto", one, "jetson-orin-nano")
        with_trt = check_device(one, "jetson-orin-nano", remote_edgeres="edgeres-trt")
        runner_trt = choose_runner("auto", one, "jetson-orin-nano", "edgeres-trt")
        neither = check_device(one, "jetson-orin-nano", trtexec="/opt/none/trtexec")
        older = check_device(one, "jetson-orin-nano", remote_edgeres="edgeres-old")
    assert (c.edgeres, c.runner, runner, c.tensorrt, c.ready) == (__version__, "trtexec", "trtexec", "8.5.2", True)
    assert c.edgeres_tensorrt.startswith("none (") and "has no tensorrt module" in c.edgeres_tensorrt
    assert [w for w in c.warnings if "imports no tensorrt" in w] == [
        f"edgeres {__version__} there imports no tensorrt ({c.edgeres_tensorrt[6:-1]}), so bench uses trtexec; for "
        f"the python runner, `edgeres device setup --host {host.destination}` (JetPack 6/7), which makes its venv "
        f"see JetPack's"]
    assert (with_trt.runner, runner_trt, with_trt.edgeres_tensorrt, with_trt.ready) == ("python", "python", "8.5.2", True)
    assert not [w for w in with_trt.warnings if w.startswith("edgeres ")]
    assert (older.runner, older.edgeres) == ("python", "0.0.9") and [w for w in older.warnings if w.startswith("edgeres ")] == [
        f"edgeres 0.0.9 there, {__version__} here: the report is the device's version's; `edgeres device setup "
        f"--host {host.destination}` installs this one"]
    assert neither.runner is None and not neither.ready
    assert f"edgeres {__version__} there imports no tensorrt" in neither.problems[0]
    assert "`/opt/none/trtexec` does not run there" in neither.problems[0]


# /proc/meminfo as a Jetson Nano (4 GB) shows it with its desktop running: the figures are made up for the test
NANO_MEMINFO = "MemTotal:        4051032 kB\nMemFree:          301224 kB\nMemAvailable:    1153440 kB\n" \
               "SwapTotal:       2025500 kB\nSwapFree:        2025500 kB\n"


def test_memory_is_read_and_too_little_for_a_build_is_a_warning(device, tmp_path):
    """This machine's MemAvailable through the loopback device; then a device whose ``cat /proc/meminfo`` shows a
    Nano with its desktop up (a wrapper around cat on its PATH), where the builder's workspace may not fit."""
    host = SshHost(device.destination, device.options(), device.key, accept_new_host_key=True)
    with host.connected() as one:
        c = check_device(one, "jetson-orin-nano")
    here, swap = meminfo_gb(Path("/proc/meminfo").read_text())
    assert c.memory_gb == pytest.approx(here, abs=0.5) and c.swap_gb == pytest.approx(swap)
    nano = tmp_path / "nano"
    install(nano / "path", "8201")
    (nano / "meminfo").write_text(NANO_MEMINFO)
    (nano / "path" / "cat").write_text(f'#!/bin/sh\n[ "$1" = /proc/meminfo ] && exec {shutil.which("cat")} '
                                       f'{nano / "meminfo"}\nexec {shutil.which("cat")} "$@"\n')
    (nano / "path" / "cat").chmod(0o755)
    for server in serving(start_device(nano, nano / "path")):
        with SshHost(server.destination, server.options(), server.key, accept_new_host_key=True).connected() as one:
            c = check_device(one, "jetson-nano")
    assert (round(c.memory_gb, 2), round(c.swap_gb, 2)) == (1.10, 1.93) and c.ready
    assert [w for w in c.warnings if "memory" in w] == [
        f"1.1 GB of memory available on {server.destination} (1.9 GB swap): TensorRT's builder takes a 1024 MiB "
        f"workspace and may be killed for memory; stop the desktop (sudo systemctl isolate multi-user.target) or add "
        f"swap"]
    assert ["memory", "1.1", "GB", "available,", "1.9", "GB", "swap"] in [ln.split() for ln in c.text().splitlines()]
    assert meminfo_gb("MemTotal: 1 kB\n") == (None, None)


def test_l4t_release_reads_the_first_line_of_nv_tegra_release():
    line = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC"
    assert l4t_release(line) == "R36.4.3" and l4t_release("# R32 (release), REVISION: 7.1, GCID: 29818004") == "R32.7.1"
    assert l4t_release(None) is None and l4t_release("garbage") is None


def test_a_board_near_its_throttle_point_is_a_warning(device, tmp_path, monkeypatch):
    """A made-up Orin Nano sysfs, read through the loopback device's grep (this VM has no thermal zone): device check
    shows the hottest zone and the GPU clock, and warns when a zone is within 5 °C of its throttle point already."""
    from edgeres.bench import thermal
    from tests.helpers.sysfs import thermal_tree

    thermal_tree(tmp_path / "sys", {"cpu-thermal": (51.0, 99.0), "gpu-thermal": (95.0, 99.0), "PMIC-Die": (100, None)},
                 gpu_mhz=624.75)  # (a cool board gets no warning: tests/unit/test_thermal.py)
    monkeypatch.setattr(thermal, "THERMAL_DIR", str(tmp_path / "sys" / "thermal"))
    monkeypatch.setattr(thermal, "DEVFREQ_DIR", str(tmp_path / "sys" / "devfreq"))
    host = SshHost(device.destination, device.options(), device.key, accept_new_host_key=True)
    with host.connected() as one:
        hot = check_device(one, "jetson-orin-nano")
    assert hot.thermal == "hottest gpu-thermal 95.0 °C (throttles at 99 °C); GPU 625 MHz"
    assert [w for w in hot.warnings if "throttle" in w] == [
        "thermal zones came within 5 °C of their throttle point: gpu-thermal 95.0 °C (throttles at 99 °C); latency "
        "and energy from then on may be throttled: cool the board (its fan at full speed: sudo jetson_clocks --fan) "
        "and re-run"]
    assert ["thermal", "hottest", "gpu-thermal", "95.0", "°C"] in [ln.split()[:5] for ln in hot.text().splitlines()]
