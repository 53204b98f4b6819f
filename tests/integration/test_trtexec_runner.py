"""bench --runner trtexec against a STAND-IN trtexec that computes with ONNX Runtime (tests/helpers/trtexec_standin.py).

It proves the protocol (commands, transfer, batching, resume, parsing, scoring), on this machine and over a real
OpenSSH server on loopback whose account has no python on its PATH. It never measures TensorRT.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.version import Version

from edgeres.backends.trtexec import TrtexecBuild
from edgeres.bench import BenchConfig, bench
from edgeres.bench.trtexec_device import TrtexecBench
from edgeres.bench.trtexec_runner import bench_trtexec
from edgeres.config import LatencyConfig
from edgeres.errors import ConfigError, RemoteError
from edgeres.remote import LocalDevice, SshHost
from tests.helpers.cli import assert_one_line_error, edgeres
from tests.helpers.fixtures import bare_cache
from tests.helpers.sshd import alive, serving, start_device
from tests.helpers.trtexec_standin import install

FAST = LatencyConfig(warmup_s=0.0, warmup_iters=1, duration_s=1.0, min_iters=2, rounds=1)
LIMIT = 40  # 2 batches of 32 (the last one 8)
EXACT = ("images", "top1", "top5", "agreement", "delta_top1")


@pytest.fixture(scope="module")
def desktop_models(exports) -> list[Path]:
    """The small run's checkpoint exported at opset 17 (the parser of TensorRT 8.6, desktop's oldest) and quantized."""
    return [exports(17)["fp32"], exports(17)["int8"]]


@pytest.fixture(scope="module")
def onnxruntime_report(desktop_models, tmp_path_factory) -> dict:
    """The same files benched locally with ONNX Runtime (int8 as fake-quant): the accuracy to reproduce."""
    return bench(desktop_models, tmp_path_factory.mktemp("ort"), BenchConfig(limit=LIMIT, latency=FAST))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    for k, v in bare_cache(tmp_path / "cache").items():
        monkeypatch.setenv(k, v)
    return tmp_path / "cache"


def same_accuracy(report: dict, reference: dict) -> None:
    ref = {r["label"]: r["accuracy"] for r in reference["results"]}
    rows = {r["label"]: r["accuracy"] for r in report["results"]}
    assert set(ref) <= set(rows)
    for label, want in ref.items():
        got = rows[label]
        if want is None:
            assert got is None
            continue
        assert {k: got[k] for k in EXACT} == {k: want[k] for k in EXACT}, label
        assert got["cosine"] == pytest.approx(want["cosine"], abs=1e-6)


def test_local_trtexec_runner_scores_like_onnxruntime(desktop_models, onnxruntime_report, tmp_path, cache, monkeypatch):
    from tests.helpers.sysfs import install_nvidia_smi

    exe = install(tmp_path / "bin", "100300")
    reading = tmp_path / "smi.txt"  # a stand-in nvidia-smi: a desktop GPU's reading, made up
    reading.write_text("64, 1755, 0x0000000000000000\n")
    install_nvidia_smi(tmp_path / "bin", reading)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    cfg = BenchConfig(target="desktop", limit=LIMIT, throughput_batch=4, latency=FAST, profile=True)
    report = bench_trtexec(desktop_models, tmp_path / "r", cfg, LocalDevice(), str(exe))
    assert [r["label"] for r in report["results"]] == ["fp32", "fp16", "int8-tensorrt"]
    same_accuracy(report, onnxruntime_report)
    run = report["runner"]
    assert run["name"] == "trtexec" and run["tensorrt"] == "10.3.0"
    assert any("--fp16" in c and "--onnx=" in c for c in run["commands"])
    assert any("--exportTimes=" in c for c in run["commands"]) and any("--loadInputs=" in c for c in run["commands"])
    assert report["results"][0]["latency"]["measured_by"] == "trtexec"
    for r in report["results"]:  # trtexec's computeMs beside its latencyMs (the stand-in's have no copies: equal)
        for key in ("latency", "throughput"):
            gpu = r[key]["gpu_compute"]
            assert gpu["p50_ms"] == pytest.approx(r[key]["p50_ms"]) and gpu["p50_ms"] > 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "GPU compute alone (trtexec's computeMs, no copies), p50 at batch 1: fp32 " in md
    assert report["energy"] == {"measured": False, "why": "no tegrastats on this machine (it ships with JetPack in "
                                                         "/usr/bin): not a Jetson?"}
    assert json.loads((tmp_path / "r" / "report.json").read_text())["runner"]["banner"].startswith("&&&& RUNNING")
    for r in report["results"]:  # the stand-in prints trtexec's memory lines with the engine's MiB and 1
        engine = Path(report["runner"]["dir"]) / f"{r['label']}.throughput.engine"
        size = engine.stat().st_size
        assert r["memory"]["file_mb"] == size / (1 << 20)
        assert (r["memory"]["weights_mb"], r["memory"]["activations_mb"]) == (float(size >> 20), 1.0)
    # --profile: a trtexec run of its own per row with --dumpProfile and --exportProfile, read back; the stand-in's
    # layers are the ONNX's nodes at a 1.0 ms marker, so this proves the protocol, not a time
    import onnx

    from edgeres.config import PROFILE_RUNS

    assert "nvidia-smi" in report["thermal"]["how"] and report["thermal"]["warnings"] == []
    assert all(r["thermal"]["gpu_mhz"] == [1755.0, 1755.0] and r["thermal"]["hottest_c"] == 64.0
               for r in report["results"])
    profiled = [c for c in report["runner"]["commands"] if "--exportProfile=" in c]
    assert len(profiled) == 3 and all("--dumpProfile" in c and f"--iterations={PROFILE_RUNS}" in c for c in profiled)
    nodes = sorted(n.name for n in onnx.load(str(desktop_models[0])).graph.node)
    fp32 = report["results"][0]["profile"]
    assert (fp32["runs"], fp32["batch"], fp32["layer_count"]) == (PROFILE_RUNS, 1, len(nodes))
    assert fp32["layers"][0]["name"] in nodes and fp32["layers"][0]["ms"] == 1.0 and "--exportProfile" in fp32["how"]
    assert f"layers at batch 1 ({PROFILE_RUNS} runs under the runtime's profiler" in md
    # what each engine runs: built with --profilingVerbosity=detailed, read back from one run at the throughput batch
    # with --exportLayerInfo (its context's shape set: a dynamic engine shows its formats only so)
    assert all("--profilingVerbosity=detailed" in c for c in run["commands"] if "--onnx=" in c)
    inspected = [c for c in run["commands"] if "--exportLayerInfo=" in c]
    assert len(inspected) == 3 and all("--shapes=input:4x" in c and ".throughput.engine" in c for c in inspected)
    eng = report["engines"]
    assert {la["precision"] for la in eng["int8-tensorrt:throughput"]["layers"]} == {"int8"}
    assert {la["precision"] for la in eng["fp16:throughput"]["layers"]} == {"fp16"}
    assert eng["int8-tensorrt:throughput"]["int8_fallback_layers"] == []  # the last layer reads int8, writes float
    assert len(eng["fp32:throughput"]["layers"]) == len(nodes) and eng["fp32:throughput"]["batch"] == 4
    assert "in the throughput engines, by TensorRT's inspector: fp16 " in md and "int8-tensorrt " in md


def test_energy_is_sampled_around_each_models_own_window(desktop_models, tmp_path, cache, monkeypatch):
    from tests.helpers.tegrastats_standin import install as install_tegrastats

    install_tegrastats(tmp_path / "bin")  # a STAND-IN replaying one real Orin Nano line: protocol, not power
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{__import__('os').environ['PATH']}")
    exe = install(tmp_path / "bin", "100300", second=1.0)  # whole seconds: tegrastats samples every 100 ms
    cfg = BenchConfig(target="desktop", limit=32, throughput_batch=4, latency=FAST)
    report = bench_trtexec(desktop_models[:1], tmp_path / "r", cfg, LocalDevice(), str(exe))
    e = report["energy"]
    assert e["measured"] and e["meter"] == "tegrastats" and e["source"] == "VDD_IN"
    assert e["idle"]["samples"] >= 5 and e["idle"]["mean_w"] == pytest.approx(5.765)
    for r in report["results"]:
        power = r["energy"]["power"]
        assert power["samples"] >= 5 and set(power["rails_w"]) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}
        per_query_s = r["energy"]["mj_per_image"] / 1000 * 4 / power["mean_w"]
        assert per_query_s > 0
    assert any("energy window" in c for c in report["runner"]["commands"])
    assert "energy (tegrastats, VDD_IN)" in (tmp_path / "r" / "report.md").read_text()


def test_a_jetson_bench_records_the_state_it_measured_in(desktop_models, tmp_path, cache, monkeypatch):
    """The stand-in tegrastats replays a real Orin Nano line, whose GPU is 76% busy (GR3D_FREQ): before any build the
    bench sees a GPU someone else is using, and the report says so. Without root there is no jetson_clocks here: the
    clocks' state is unknown, and said to be. (Protocol only: no board was measured.)"""
    from edgeres.bench import thermal
    from tests.helpers.sysfs import thermal_tree
    from tests.helpers.tegrastats_standin import install as install_tegrastats

    install_tegrastats(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{__import__('os').environ['PATH']}")
    # made-up Orin zones, one 2 °C under its throttle point (this VM has no thermal zone)
    thermal_tree(tmp_path / "sys", {"cpu-thermal": (52.0, 99.0), "gpu-thermal": (97.0, 99.0)}, gpu_mhz=624.75)
    monkeypatch.setattr(thermal, "THERMAL_DIR", str(tmp_path / "sys" / "thermal"))
    monkeypatch.setattr(thermal, "DEVFREQ_DIR", str(tmp_path / "sys" / "devfreq"))
    # TensorRT 10.3: JetPack 6.1's, the Orin Nano's; this one refuses --exportLayerInfo, and the bench stands without
    exe = install(tmp_path / "bin", "100300", refuse="exportLayerInfo")
    cfg = BenchConfig(target="jetson-orin-nano", limit=32, throughput_batch=4, latency=FAST, energy="off")
    report = bench_trtexec(desktop_models[:1], tmp_path / "r", cfg, LocalDevice(), str(exe))
    assert len(report["engines"]) == 2 and all(  # fp32, fp16
        "[E] Unknown option: --exportLayerInfo" in e["why"] and "layers" not in e for e in report["engines"].values())
    state = report["device_state"]
    assert state["gpu_busy_pct"] == pytest.approx(76) and state["clocks_locked"] is None
    assert [r["thermal"]["samples"] for r in report["results"]] == [2, 2]  # fp32, fp16: one window per batch
    md = (tmp_path / "r" / "report.md").read_text()
    assert "the GPU was 76% busy before the bench began" in md and "whether clocks are locked is unknown" in md
    assert "by TensorRT's inspector: fp32 not inspected (" in md and "Unknown option: --exportLayerInfo" in md
    assert "fp16 gpu-thermal 97.0 °C, GPU 625 MHz" in md
    assert "gpu-thermal 97.0 °C (throttles at 99 °C)" in md and "cpu-thermal 52" not in md.split("throttle point")[1]


def test_tegrastats_without_root_is_named(desktop_models, tmp_path, cache, monkeypatch):
    """A tegrastats that prints no rails (they need root on that JetPack): auto reports why; on refuses first."""
    from tests.helpers.tegrastats_standin import install as install_tegrastats
    from tests.helpers.tegrastats_standin import line_of, without_rails

    assert "mW" in line_of("jetson-orin-nano") and "mW" not in without_rails(line_of("jetson-orin-nano"))
    install_tegrastats(tmp_path / "bin", rails=False)  # a STAND-IN: protocol only
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{__import__('os').environ['PATH']}")
    exe = install(tmp_path / "bin", "100300")
    cfg = BenchConfig(target="desktop", limit=32, throughput_batch=4, latency=FAST)
    report = bench_trtexec(desktop_models[:1], tmp_path / "r", cfg, LocalDevice(), str(exe))
    assert report["energy"]["measured"] is False and "needs root" in report["energy"]["why"]
    assert "energy not measured: tegrastats printed no power rails" in (tmp_path / "r" / "report.md").read_text()
    with pytest.raises(ConfigError, match="--energy on, but energy cannot be measured: tegrastats .* needs root"):
        bench_trtexec(desktop_models[:1], tmp_path / "r2", BenchConfig(target="desktop", limit=32, energy="on",
                                                                        latency=FAST), LocalDevice(), str(exe))
    assert not (tmp_path / "r2").exists()


def test_an_interrupted_accuracy_pass_resumes_without_redoing_batches(desktop_models, tmp_path, cache):
    log = tmp_path / "calls.log"
    cfg = BenchConfig(target="desktop", limit=LIMIT, throughput_batch=4, latency=FAST)
    exe = install(tmp_path / "bin", "100300", fail_after=3, log=log)
    with pytest.raises(RemoteError, match="batches of .* are kept: run the same command again to resume"):
        bench_trtexec(desktop_models, tmp_path / "r", cfg, LocalDevice(), str(exe))
    assert log.read_text().count("inference") == 4  # the 4th failed: the second row's second batch
    install(tmp_path / "bin", "100300", log=log)
    report = bench_trtexec(desktop_models, tmp_path / "r", cfg, LocalDevice(), str(exe))
    batches = 3 * 2  # 3 rows × 2 batches: only the 3 not done before ran again
    assert log.read_text().count("inference") == 4 + (batches - 3)
    assert len(report["results"]) == 3


def test_trtexec_refusals(desktop_models, tmp_path, cache):
    cfg = BenchConfig(target="desktop", limit=LIMIT, latency=FAST)
    with pytest.raises(ConfigError, match="/usr/src/tensorrt/bin/trtexec"):
        bench_trtexec(desktop_models, tmp_path / "a", cfg, LocalDevice(), str(tmp_path / "nowhere" / "trtexec"))
    old = install(tmp_path / "old", "8502")
    with pytest.raises(ConfigError, match=r"trtexec on this machine: TensorRT 8.5.2 does not match target desktop"):
        bench_trtexec(desktop_models, tmp_path / "b", cfg, LocalDevice(), str(old))
    with pytest.raises(ConfigError, match="--energy on, but energy cannot be measured: no tegrastats"):
        bench_trtexec(desktop_models, tmp_path / "d", BenchConfig(target="desktop", limit=LIMIT, energy="on"),
                      LocalDevice(), str(install(tmp_path / "cur", "100300")))
    assert not list((cache / "edgeres" / "trtexec").glob("*/in"))  # refused before any batch or build
    new = install(tmp_path / "new", "110100")
    with pytest.raises(ConfigError, match="cpu runs ONNX Runtime, and trtexec builds TensorRT engines; drop --runner"):
        bench_trtexec(desktop_models, tmp_path / "c", BenchConfig(limit=LIMIT), LocalDevice(), str(new))
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_a_file_cut_short_on_the_device_is_sent_again_and_one_that_stays_wrong_is_refused(desktop_models, tmp_path,
                                                                                         cache):
    """Models and batches are named by their sha256 on the device. A copy that Ctrl-C cut short left a file of the
    right name: the model was trusted, and engines were built from half of it; the batch was refused with "rerun (it
    is sent again)", and the rerun found the same file and refused again."""
    exe = install(tmp_path / "bin", "100300", fail_after=0, log=tmp_path / "calls.log")
    cfg = BenchConfig(target="desktop", limit=LIMIT, throughput_batch=4, latency=FAST)
    with pytest.raises(RemoteError):
        bench_trtexec(desktop_models[:1], tmp_path / "r", cfg, LocalDevice(), str(exe))  # sent, built, then stopped
    wdir = next((cache / "edgeres" / "trtexec" / "device").glob("*/in")).parent
    sent = {f: f.read_bytes() for f in [*wdir.glob("*.onnx"), *wdir.glob("in/*.bin")]}
    assert {f.suffix for f in sent} == {".onnx", ".bin"}
    for f, good in sent.items():
        f.write_bytes(good[: len(good) // 2])  # cut short, under the name of what was sent
    for e in wdir.glob("*.engine"):
        e.unlink()
    install(tmp_path / "bin", "100300")
    report = bench_trtexec(desktop_models[:1], tmp_path / "r", cfg, LocalDevice(), str(exe))
    assert report["results"][0]["accuracy"]["images"] == LIMIT
    assert all(f.read_bytes() == good for f, good in sent.items())

    class Garbling(LocalDevice):  # a device whose disk mangles every copy
        def put(self, files: dict[str, Path], remote_dir: str) -> None:
            for name in files:
                (Path(remote_dir) / name).write_bytes(b"\0")

    for f in (cache / "edgeres" / "trtexec").rglob("*"):
        if f.suffix in (".bin", ".npy"):
            f.unlink()  # every batch to send again, none kept
    with pytest.raises(RemoteError, match="hashes to .* not the .* sent; check the device's disk"):
        bench_trtexec(desktop_models[:1], tmp_path / "r", cfg, Garbling(), str(exe))


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """A loopback 'device' with a shell, coreutils, tar and the stand-in trtexec on its PATH, and no python."""
    folder = tmp_path_factory.mktemp("device")
    install(folder / "path", "100300")
    yield from serving(start_device(folder, folder / "path"))


def device_flags(device) -> list[str]:
    return ["--host", device.destination, "--identity", str(device.key), "--accept-new-host-key",
            *sum((["--ssh-option", o] for o in device.options()), [])]


def test_remote_trtexec_runner_needs_no_python_on_the_device(device, desktop_models, onnxruntime_report, tmp_path,
                                                             monkeypatch):
    from tests.helpers.sysfs import thermal_tree

    host = SshHost(device.destination, device.options(), device.key, accept_new_host_key=True)
    assert host.run(["sh", "-c", "command -v python3 || command -v python || echo none"]).stdout.strip() == b"none"
    assert host.run(["sh", "-c", "command -v trtexec"]).returncode == 0
    thermal_tree(tmp_path / "sys", {"GPU-therm": (48.5, 97.0)}, gpu_mhz=921.6)  # read there, by the device's grep
    monkeypatch.setenv("EDGERES_THERMAL_DIR", str(tmp_path / "sys" / "thermal"))
    monkeypatch.setenv("EDGERES_DEVFREQ_DIR", str(tmp_path / "sys" / "devfreq"))
    before = device.logins()
    r = edgeres("bench", *map(str, desktop_models), "--target", "desktop", "--runner", "trtexec", *device_flags(device),
                "--limit", str(LIMIT), "--duration", "1",
                "--warmup", "0", "--rounds", "1", "--throughput-batch", "4", "--out", str(tmp_path / "r"), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    same_accuracy(report, onnxruntime_report)
    assert report["runner"]["device"] == device.destination
    assert all(c.split()[0] == "trtexec" for c in report["runner"]["commands"])
    assert report["thermal"]["trips_c"] == {"GPU-therm": 97.0}
    assert [(r["thermal"]["hottest_c"], r["thermal"]["gpu_mhz"]) for r in report["results"]] == [(48.5, [921.6] * 2)] * 3
    # one login for the whole bench: its dozens of commands (four per batch) ride one connection, where each made its
    # own (benchmarks/ssh_connections.py: the handshakes then cost more than the stand-in's work)
    assert device.logins() - before == 1


def test_no_trtexec_on_the_device_is_one_line(device, desktop_models, tmp_path):
    r = edgeres("bench", str(desktop_models[0]), "--target", "desktop", "--runner", "trtexec", *device_flags(device),
                "--trtexec", "/opt/none/trtexec", "--out", str(tmp_path / "r"))
    assert_one_line_error(r, "/usr/src/tensorrt/bin/trtexec", "--trtexec PATH")


@pytest.mark.parametrize(("where", "stop"), [("ssh", "ctrl-c"), ("ssh", "kill -9"), ("here", "kill")])
def test_a_build_on_the_device_ends_when_edgeres_does(device, desktop_models, tmp_path, where, stop):
    """ssh gives a command that has no terminal no signal when the connection goes: after Ctrl-C (or a kill, or
    edgeres killed outright), a build on the device ran on for its minutes, holding the GPU that the next bench then
    timed beside it. On the device itself, a kill left trtexec running. (The stand-in's "build" is a wait: no engine
    is built.)
    """
    busy = tmp_path / "busy"
    exe = install(tmp_path / "slow", "100300", build_s=300, busy=busy)
    proc = subprocess.Popen([sys.executable, "-m", "edgeres", "bench", str(desktop_models[0]), "--target", "desktop",
                             "--runner", "trtexec", *(device_flags(device) if where == "ssh" else []),
                             "--trtexec", str(exe), "--out", str(tmp_path / "r")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "EDGERES_QUIET": "1", **bare_cache(tmp_path / "cache")},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (busy.is_file() and busy.read_text()) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[1]
    build = int(busy.read_text())
    if stop == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: edgeres and its ssh
    else:
        proc.send_signal(signal.SIGTERM if stop == "kill" else signal.SIGKILL)  # edgeres alone
    _, err = proc.communicate(timeout=60)
    want = {"ctrl-c": signal.SIGINT, "kill": signal.SIGTERM, "kill -9": signal.SIGKILL}[stop]
    assert proc.returncode == -want, err
    if stop != "kill -9":
        assert err.strip().splitlines()[-1].startswith("interrupted") and "Traceback" not in err
    t = time.time()
    while alive(build) and time.time() - t < 20:
        time.sleep(0.1)
    assert not alive(build), f"the build (pid {build}) still runs {time.time() - t:.0f} s after edgeres ended"


def test_dla_rows_are_static_engines_on_the_core_asked(desktop_models, onnxruntime_report, tmp_path, cache):
    """--dla-core 1 on an AGX Orin (JetPack 5.1's trtexec, 8.5.2): fp16 and int8 again, each engine built for the DLA
    with its batch fixed; accuracy runs on the throughput engine, 40 images as 16 + 16 + 8 padded to 16 (every run
    of a DLA engine has its own batch), and trtexec's lines about the DLA are kept."""
    exe = install(tmp_path / "bin", "8502")
    cfg = BenchConfig(target="jetson-agx-orin", limit=LIMIT, throughput_batch=16, latency=FAST, dla_core=1, sweep=(4, 16))
    report = bench_trtexec(desktop_models, tmp_path / "r", cfg, LocalDevice(), str(exe))
    rows = {r["label"]: r["accuracy"] for r in report["results"]}
    assert list(rows) == ["fp32", "fp16", "int8-tensorrt", "fp16-dla1", "int8-tensorrt-dla1"]
    assert {k: rows["fp16-dla1"][k] for k in EXACT} == {k: rows["fp16"][k] for k in EXACT}  # the stand-in: no DLA
    assert {k: rows["int8-tensorrt-dla1"][k] for k in EXACT} == {k: rows["int8-tensorrt"][k] for k in EXACT}
    cmds = report["runner"]["commands"]
    builds = [c for c in cmds if "--useDLACore=1" in c and "--onnx=" in c and "built before" not in c]
    assert len(builds) == 6 and all("--allowGPUFallback" in c for c in builds)  # latency, throughput, sweep at 4
    # every run of a DLA engine sets trtexec's runtime to its core: without --useDLACore, TensorRT runs it on core 0
    loads = [c for c in cmds if "--loadEngine=" in c]
    assert {("-dla1." in c, "--useDLACore=1" in c) for c in loads} == {(True, True), (False, False)}
    assert any("--minShapes=input:1x" in c and "--maxShapes=input:1x" in c for c in builds)
    assert any("--minShapes=input:16x" in c and "--maxShapes=input:16x" in c for c in builds)
    runs = [c for c in cmds if "--exportOutput=" in c and "dla1.throughput.engine" in c]
    assert len(runs) == 2 * 3 and all("--shapes=input:16x" in c for c in runs)
    said = report["runner"]["dla_lines"]
    assert said["fp16-dla1:throughput"] == ["[W] [TRT] stand-in: DLA core 1 asked, and no layer runs on a DLA here"]
    assert "on the DLA: trtexec's builds wrote 1 lines for fp16-dla1" in (tmp_path / "r" / "report.md").read_text()
    # --sweep 4,16: a GPU row's batches on one engine of profile 1..16, a DLA row's on static engines (16: the
    # throughput engine itself); every row timed at both batches
    sweeps = [c for c in cmds if ".sweep" in c and "--saveEngine=" in c and "built before" not in c]
    assert len(sweeps) == 5 and sum("--minShapes=input:1x" in c and "--maxShapes=input:16x" in c for c in sweeps) == 3
    assert sum("sweep4.engine" in c and "--minShapes=input:4x" in c and "--maxShapes=input:4x" in c for c in sweeps) == 2
    timed = [c for c in cmds if "--exportTimes=" in c and ".sweep" in c]
    assert sum("--shapes=input:4x" in c for c in timed) == 5 and sum("--shapes=input:16x" in c for c in timed) == 3
    for r in report["results"]:
        assert [p["batch"] for p in r["sweep"]] == [4, 16] and all(p["gpu_compute_p50_ms"] > 0 for p in r["sweep"])
    assert "## Batch sweep (bench --sweep)" in (tmp_path / "r" / "report.md").read_text()
    # the DLA engines' layers, from --exportLayerInfo on the DLA core: its subgraphs and what stays on the GPU
    dla = report["engines"]["int8-tensorrt-dla1:throughput"]
    assert dla["dla_core"] == 1 and any(la["device"] == "DLA" for la in dla["layers"])
    assert [c for c in cmds if "--exportLayerInfo=" in c and "-dla1." in c and "--useDLACore=1" in c]
    assert not any(la["device"] == "DLA" for la in report["engines"]["int8-tensorrt:throughput"]["layers"])
    md = (tmp_path / "r" / "report.md").read_text()
    assert "int8-tensorrt-dla1 " in md and " DLA subgraphs, " in md and "compute layers on the GPU: " in md
    assert "int8-tensorrt-dla1: layers left on the GPU may lack an int8 scale" in md
    with pytest.raises(ConfigError, match="target jetson-orin-nano has no DLA"):
        bench_trtexec(desktop_models, tmp_path / "n", BenchConfig(target="jetson-orin-nano", dla_core=0), LocalDevice(),
                      str(exe))


def test_a_model_of_fixed_batch_is_built_and_run_without_shapes(desktop_models, onnxruntime_report, tmp_path, cache):
    """A graph that fixes its batch at 4: trtexec refuses --minShapes/--optShapes/--maxShapes for it ("Static model
    does not take explicit shapes", which the stand-in prints as sampleEngines.cpp does), so its one engine per row
    is built and run without shapes; 40 images score as ten runs of 4, with the dynamic models' accuracy."""
    from tests.helpers.fixtures import fixed_batch_copy

    exe = install(tmp_path / "bin", "100300")
    fixed = [fixed_batch_copy(p, 4, tmp_path / f"{p.stem}.b4.onnx") for p in desktop_models]
    cfg = BenchConfig(target="desktop", limit=LIMIT, throughput_batch=16, latency=FAST, sweep=(1, 8))
    report = bench_trtexec(fixed, tmp_path / "r", cfg, LocalDevice(), str(exe))
    same_accuracy(report, onnxruntime_report)
    cmds = report["runner"]["commands"]
    builds = [c for c in cmds if "--onnx=" in c]
    assert len(builds) == 3 and not [c for c in cmds if "Shapes=" in c or "--shapes=" in c]
    assert sum("--exportOutput=" in c for c in cmds) == 3 * 10
    for r in report["results"]:
        assert r["latency"]["batch"] == r["throughput"]["batch"] == 4 and r["sweep"] is None
    one = fixed_batch_copy(desktop_models[0], 4, tmp_path / "m.onnx")  # trtexec's own reason, when a build fails
    argv = TrtexecBuild(str(one), str(tmp_path / "m.engine"), "input", (1, 40, 40), "fp32", 1, 1, 8).argv(str(exe),
                                                                                                     Version("10.3"))
    tb = TrtexecBench(LocalDevice(), str(exe), Version("10.3"), "k", str(tmp_path / "w"))
    with pytest.raises(RemoteError, match=r"exited 1: \[E\] Static model does not take explicit shapes since"):
        tb.run(argv, "the build failed")
