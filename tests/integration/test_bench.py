"""bench's bad input, device detection from the CLI, and the report's distribution data."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from edgeres.bench import BenchConfig, bench
from edgeres.data.preprocess import Preprocessing
from edgeres.errors import ConfigError, DataError
from edgeres.onnx_model import METADATA_KEY, set_metadata
from tests.helpers.cli import assert_one_line_error, edgeres
from tests.helpers.fixtures import FAST_LATENCY


def test_model_input_that_does_not_match_its_preprocessing(small_run, tmp_path):
    cfg, _ = small_run
    m = onnx.load(str(Path(cfg.out) / "model.onnx"))
    set_metadata(m, {METADATA_KEY: Preprocessing(48, 1, (0.286,), (0.353,)).to_json()})
    bad = tmp_path / "mismatch.onnx"
    onnx.save(m, str(bad))
    with pytest.raises(ConfigError, match=r"takes input \[1, 32, 32\] but its preprocessing makes \[1, 48, 48\]"):
        bench([bad], tmp_path / "r", BenchConfig(limit=10, latency=FAST_LATENCY))


def test_evaluation_set_without_labels(small_run, tmp_path):
    cfg, _ = small_run
    flat = tmp_path / "flat"
    (flat / "test").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((28, 28), i * 40, np.uint8)).save(flat / "test" / f"{i}.png")
    with pytest.raises(DataError, match="no class folders, so they have no labels"):
        bench([Path(cfg.out) / "model.onnx"], tmp_path / "r", BenchConfig(data=str(flat), latency=FAST_LATENCY))


def test_report_keeps_the_latency_distribution(small_run):
    _, report = small_run
    for r in report["results"]:
        q = r["latency"]["quantiles_ms"]
        assert len(q) == 21 and q == sorted(q)
        assert q[0] == pytest.approx(r["latency"]["min_ms"]) and q[10] == pytest.approx(r["latency"]["p50_ms"])


def test_this_machine_is_read_from_the_device_tree(tmp_path, monkeypatch):
    f = tmp_path / "model"
    f.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    monkeypatch.setenv("EDGERES_DEVICE_TREE_MODEL", str(f))
    r = edgeres("targets", "--json")
    assert json.loads(r.stdout)["this_machine"] == "jetson-agx-orin"


def test_jetson_target_off_a_jetson(small_run, monkeypatch, tmp_path):
    cfg, _ = small_run
    monkeypatch.setenv("EDGERES_DEVICE_TREE_MODEL", str(tmp_path / "absent"))
    r = edgeres("bench", str(Path(cfg.out) / "model.onnx"), "--target", "jetson")
    assert_one_line_error(r, "works on a Jetson only")


def test_cpu_roofline_uses_measured_peaks(small_run):
    _, report = small_run
    peaks = report["measured_peaks"]
    assert peaks["peak_fp32_tflops"] > 0.001 and peaks["memory_bandwidth_gbs"] is None
    assert report["target"]["peak_fp32_tflops"] is None  # the report's target is what targets/cpu.toml says
    fp32 = report["results"][0]["roofline"]
    assert fp32["bound"] == "compute" and fp32["floor_ms"] > 0
    assert fp32["measured_over_floor"] > 1.0  # nothing beats its floor
    assert next(r for r in report["results"] if r["label"] == "int8-cpu")["roofline"] is None


def test_each_models_memory_is_in_the_report(small_run):
    """ONNX Runtime's and PyTorch's memory, measured for each model in a process of its own: the int8 files are a
    quarter of fp32's and the sessions hold at least their weights; the terminal's table says it in one line."""
    cfg, report = small_run
    rows = {r["label"]: r for r in report["results"]}
    weights_mb = report["model_cost"]["weight_params"] * 4 / (1 << 20)  # the convolutions' and the FC's, in fp32
    for label, r in rows.items():
        m = r["memory"]
        assert m["file_mb"] == Path(r["model"]).stat().st_size / (1 << 20)
        held_at_least = 0.9 * (weights_mb if label.endswith("fp32") else m["file_mb"])  # int8: the file's weights
        assert m["peak_mb"] >= m["held_mb"] >= held_at_least, (label, m)
    assert "loading the checkpoint in PyTorch" in rows["torch-fp32"]["memory"]["how"]
    assert rows["int8-cpu"]["memory"]["file_mb"] < rows["fp32"]["memory"]["file_mb"] / 3
    batch = report["config"]["throughput_batch"]
    line = (Path(cfg.out) / "report" / "report.md").read_text()
    assert f"memory at batch {batch}: fp32 " in line and "int8-tensorrt* " in line


def test_energy_on_where_the_meter_reads_no_power_is_refused_before_any_work(small_run, tmp_path, monkeypatch):
    """A Jetson whose tegrastats prints no rails (an account without root on JetPack 5+): --energy on stops at once,
    before any engine would be built (here, before TensorRT is found missing), and writes nothing."""
    from edgeres import energy
    from tests.helpers.tegrastats_standin import install as install_tegrastats

    cfg, _ = small_run
    install_tegrastats(tmp_path / "bin", rails=False)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setattr(energy, "INA3221", (tmp_path / "no-ina3221",))
    with pytest.raises(ConfigError, match="^--energy on, but energy cannot be measured here: tegrastats printed no "
                                          "power rails"):
        bench([Path(cfg.out) / "model.onnx"], tmp_path / "r", BenchConfig(target="jetson-orin-nano", energy="on"))
    assert not (tmp_path / "r").exists()


def test_energy_per_image_from_a_meter_of_known_power(small_run, tmp_path, monkeypatch):
    """RAPL counters that advance at 5 W (the counter read as 5 J per second of the clock): the idle power, each
    model's power and its energy per image come out of bench's own arithmetic, nothing above idle."""
    import time

    from edgeres import energy

    cfg, _ = small_run
    zone = tmp_path / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "energy_uj").write_text("0\n")
    monkeypatch.setattr(energy, "POWERCAP", tmp_path / "powercap")
    monkeypatch.setattr(energy.RaplMeter, "_energy", lambda self: [int(5e6 * time.perf_counter())])
    report = bench([Path(cfg.out) / "model.onnx"], tmp_path / "r",
                   BenchConfig(limit=32, throughput_batch=8, energy="on", latency=FAST_LATENCY))
    e = report["energy"]
    # to 1%: a sample's counter and clock are read a few µs apart, and the first sample of a window can be short
    assert e["measured"] and e["meter"] == "rapl" and e["idle"]["mean_w"] == pytest.approx(5.0, rel=0.01)
    (row,) = report["results"]
    assert row["energy"]["power"]["mean_w"] == pytest.approx(5.0, rel=0.01)
    mj = row["energy"]["mj_per_image"]
    assert 0 < mj / 1000 * 8 / 5.0 < 1  # mJ per image = 5 W × seconds per call / batch: a call under a second
    assert row["energy"]["mj_per_image_above_idle"] == pytest.approx(0.0, abs=0.01 * mj)
    assert "idle power measured before any work" in e["how"]


def test_each_rows_temperature_and_gpu_clock_are_in_the_report(small_run, tmp_path, monkeypatch):
    """A made-up Nano sysfs tree (this VM has no thermal zone): each row is read through grep after each of its timing
    windows, and the report gives its hottest zone and GPU clock, without the PMIC zone's constant 100 °C."""
    from edgeres.bench import thermal
    from tests.helpers.sysfs import thermal_tree

    cfg, _ = small_run
    thermal_tree(tmp_path / "sys", {"CPU-therm": (44.0, 97.0), "GPU-therm": (43.5, 97.0), "PMIC-Die": (100.0, None)},
                 gpu_mhz=921.6)
    monkeypatch.setattr(thermal, "THERMAL_DIR", str(tmp_path / "sys" / "thermal"))
    monkeypatch.setattr(thermal, "DEVFREQ_DIR", str(tmp_path / "sys" / "devfreq"))
    models = [Path(cfg.out) / "model.onnx", Path(cfg.out) / "model.int8-tensorrt.onnx"]
    report = bench(models, tmp_path / "r", BenchConfig(limit=32, throughput_batch=8, energy="off", latency=FAST_LATENCY))
    t = report["thermal"]
    assert t["measured"] and t["warnings"] == [] and t["trips_c"] == {"CPU-therm": 97.0, "GPU-therm": 97.0}
    assert t["before"]["temps_c"] == {"CPU-therm": 44.0, "GPU-therm": 43.5}
    for r in report["results"]:
        assert r["thermal"]["samples"] == 2 * FAST_LATENCY.rounds  # each latency and throughput window
        assert (r["thermal"]["hottest_zone"], r["thermal"]["gpu_mhz"]) == ("CPU-therm", [921.6, 921.6])
    md = (tmp_path / "r" / "report.md").read_text()
    assert "thermal, after each timing window: fp32 CPU-therm 44.0 °C, GPU 922 MHz; int8-tensorrt CPU-therm" in md


def test_a_machine_without_thermal_zones_says_so(small_run, tmp_path, monkeypatch):
    from edgeres.bench import thermal

    cfg, _ = small_run
    monkeypatch.setattr(thermal, "THERMAL_DIR", str(tmp_path / "none"))
    report = bench([Path(cfg.out) / "model.onnx"], tmp_path / "r",
                   BenchConfig(limit=16, throughput_batch=4, energy="off", latency=FAST_LATENCY))
    assert report["thermal"]["measured"] is False and report["results"][0]["thermal"] is None
    assert "thermal not read: this machine shows no thermal zone" in (tmp_path / "r" / "report.md").read_text()


def test_profile_gives_each_rows_layers_from_onnx_runtimes_profiler(small_run, tmp_path):
    """bench --profile through the CLI: each row's layers from ONNX Runtime's profiler on a session of its own, its
    convolutions among them (the fp32 graph's Conv, the int8 graph's QLinearConv or its Q/DQ), and report.md's table."""
    from edgeres.config import PROFILE_RUNS
    from tests.helpers.cli import QUICK_TIMING

    cfg, _ = small_run
    out = tmp_path / "r"
    r = edgeres("bench", str(Path(cfg.out) / "model.onnx"), str(Path(cfg.out) / "model.int8-tensorrt.onnx"),
                "--limit", "16", "--threads", "1", "--profile", *QUICK_TIMING, "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["label"]: row["profile"] for row in json.loads((out / "report.json").read_text())["results"]}
    for p in rows.values():
        assert (p["runs"], p["batch"]) == (PROFILE_RUNS, 1) and "ONNX Runtime's profiler" in p["how"]
        assert sum(t["ms"] for t in p["layers"]) + p["other_ms"] == pytest.approx(p["total_ms"])
        assert p["total_ms"] == pytest.approx(sum(p["by_op"].values()))
        assert [t["ms"] for t in p["layers"]] == sorted((t["ms"] for t in p["layers"]), reverse=True)
    assert "Conv" in rows["fp32"]["by_op"]
    assert {"QLinearConv", "DequantizeLinear", "QuantizeLinear"} & set(rows["int8-tensorrt"]["by_op"])
    md = (out / "report.md").read_text()
    assert "## Layers (bench --profile)" in md and "### int8-tensorrt: where the time goes at batch 1" in md


def test_sweep_times_every_row_at_each_batch_on_its_one_session(small_run, tmp_path):
    """bench --sweep through the CLI: each row at batches 1, 4 and 16 on ONNX Runtime, images per second from its
    own windows (batch / mean latency), the knee in the notes, a column per batch in report.md; bad batches are one
    line each."""
    from tests.helpers.cli import QUICK_TIMING

    cfg, _ = small_run
    models = [str(Path(cfg.out) / "model.onnx"), str(Path(cfg.out) / "model.int8-cpu.onnx")]
    out = tmp_path / "r"
    r = edgeres("bench", *models, "--limit", "16", "--threads", "1", "--sweep", "16,1,4", *QUICK_TIMING,
                "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["sweep"] == [1, 4, 16] and report["sweep"]["batches"] == [1, 4, 16]
    assert "one session" in report["sweep"]["how"]
    for row in report["results"]:
        assert [p["batch"] for p in row["sweep"]] == [1, 4, 16], row["label"]
        for p in row["sweep"]:
            assert p["throughput_ips"] > 0 and p["p99_ms"] >= p["p50_ms"] > 0 and p["gpu_compute_p50_ms"] is None
    md = (out / "report.md").read_text()
    assert "## Batch sweep (bench --sweep)" in md and "| model | batch 1 | batch 4 | batch 16 |" in md
    assert "Images per second against fp32's at the same batch" in md
    assert "batch sweep 1…16 (3 batches; report.md has each)" in md
    assert (out / "report.png").stat().st_size > 0
    for bad, says in (("0,4", "--sweep takes 1 to 12 batch sizes, rising, from 1 to 4096"),
                      ("1,x", "--sweep takes batch sizes separated by commas")):
        assert_one_line_error(edgeres("bench", *models, "--sweep", bad, "--out", str(tmp_path / "bad")), says)
    assert not (tmp_path / "bad").exists()


def test_a_model_of_fixed_batch_is_scored_and_timed_at_its_batch(small_run, tmp_path):
    """ONNX Runtime refuses any other batch for a graph that fixes its batch at 4 ("Got invalid dimensions"), which
    bench raised as a traceback for the last, short batch of images. Now 10 images score as 4 + 4 + 2 padded, with
    the dynamic models' accuracy, and every timing is at batch 4."""
    from tests.helpers.cli import QUICK_TIMING
    from tests.helpers.fixtures import fixed_batch_copy

    cfg, _ = small_run
    dynamic = [Path(cfg.out) / "model.onnx", Path(cfg.out) / "model.int8-cpu.onnx"]
    fixed = [fixed_batch_copy(p, 4, tmp_path / f"{p.stem}.b4.onnx") for p in dynamic]
    runs = {}
    for name, models in (("fixed", fixed), ("dynamic", dynamic)):
        r = edgeres("bench", *map(str, models), "--limit", "10", "--threads", "1", "--sweep", "1,8", *QUICK_TIMING,
                    "--out", str(tmp_path / name))
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        runs[name] = json.loads((tmp_path / name / "report.json").read_text())
    assert runs["fixed"]["config"]["sweep"] == [] and runs["fixed"]["sweep"] is None
    for got, want in zip(runs["fixed"]["results"], runs["dynamic"]["results"]):
        assert got["accuracy"]["images"] == 10 and got["accuracy"]["top1"] == want["accuracy"]["top1"]
        assert got["accuracy"]["agreement"] == want["accuracy"]["agreement"]
        assert got["latency"]["batch"] == got["throughput"]["batch"] == 4 and got["sweep"] is None
    mixed = edgeres("bench", str(fixed[0]), str(fixed_batch_copy(dynamic[1], 8, tmp_path / "b8.onnx")),
                    "--out", str(tmp_path / "mixed"))
    assert_one_line_error(mixed, "the models fix different batches (4, 8)")
