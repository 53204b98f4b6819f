"""trtexec's command lines per release, and its banner, --exportTimes and --exportOutput read (tests/data/trtexec/)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from packaging.version import Version

from edgeres.backends.trtexec import (
    EngineRun,
    TrtexecBuild,
    inference_argv,
    layer_info_argv,
    parse_output,
    parse_times,
    timing_argv,
    version_from_banner,
)
from edgeres.errors import ArtifactError, ConfigError
from tests.helpers.trtexec_standin import install

DATA = Path(__file__).resolve().parents[1] / "data" / "trtexec"


def test_every_banner_gives_its_version():
    lines = [ln for ln in (DATA / "banners.txt").read_text().splitlines() if ln.strip()]
    assert len(lines) == 8
    for line in lines:
        text, want, _ = line.split(" ## ")
        assert version_from_banner(text) == Version(want), line
    with pytest.raises(ConfigError, match="/usr/src/tensorrt/bin/trtexec"):
        version_from_banner("Usage: trtexec [--help]")


def test_times_of_both_layouts_drop_the_warmup():
    t = parse_times((DATA / "times-8x.json").read_text(), warmup_ms=200.0)
    assert t.latency_ms.tolist() == [1.1, 1.0] and t.compute_ms.tolist() == [1.0, 0.9] and t.copies_timed
    legacy = parse_times((DATA / "times-legacy.json").read_text(), warmup_ms=200.0)
    assert legacy.latency_ms.tolist() == [1.99] and legacy.compute_ms.tolist() == [1.8]
    with pytest.raises(ArtifactError, match="warm-up"):
        parse_times((DATA / "times-8x.json").read_text(), warmup_ms=1e6)
    with pytest.raises(ArtifactError, match="not JSON"):
        parse_times('[ { "startEnqMs" : 0.1, ', 0)


def test_output_with_a_bare_nan_reads_as_float32():
    y = parse_output((DATA / "output-8x.json").read_text())
    assert y.shape == (2, 3) and y.dtype == np.float32 and np.isnan(y[1, 1]) and y[0, 2] == 3.0
    truncated = (DATA / "output-8x.json").read_text().replace("2x3", "2x4")
    with pytest.raises(ArtifactError, match="truncated"):
        parse_output(truncated)


@pytest.mark.parametrize("version,precision,flags,absent", [
    ("8.2.1", "fp16", ["--fp16", "--workspace=1024", "--buildOnly"], ["--int8", "--memPoolSize=workspace:1024"]),
    ("8.5.2", "int8", ["--int8", "--fp16", "--memPoolSize=workspace:1024", "--buildOnly"], ["--noTF32"]),
    ("8.6.2", "fp32", ["--noTF32", "--skipInference"], ["--fp16", "--int8"]),
    ("10.3.0", "int8", ["--int8", "--fp16"], []),
    ("11.1.0", "fp16", [], ["--fp16", "--int8"]),  # 11: precision is the graph's
    ("11.1.0", "int8", [], ["--fp16", "--int8"]),
])
def test_build_flags_per_release(version, precision, flags, absent):
    b = TrtexecBuild("m.onnx", "m.engine", "input", (1, 40, 40), precision, 1, 1, 32, timing_cache="t.cache")
    argv = b.argv("trtexec", Version(version))
    assert argv[0] == "trtexec" and "--onnx=m.onnx" in argv and "--saveEngine=m.engine" in argv
    assert "--minShapes=input:1x1x40x40" in argv and "--maxShapes=input:32x1x40x40" in argv
    assert "--timingCacheFile=t.cache" in argv
    assert "--profilingVerbosity=detailed" in argv  # each layer's formats kept in the engine, for --exportLayerInfo
    for f in flags:
        assert f in argv, (f, argv)
    for f in absent:
        assert f not in argv, (f, argv)


def test_dla_timing_and_inference_commands():
    b = TrtexecBuild("m.onnx", "m.engine", "input", (1, 40, 40), "fp16", 4, 4, 4, dla_core=1)
    assert {"--useDLACore=1", "--allowGPUFallback", "--optShapes=input:4x1x40x40"} <= set(b.argv("t", Version("8.5.2")))
    t = timing_argv("t", EngineRun("m.engine", "input", (1, 40, 40)), 1, 0.2, 3.0, 10, "times.json")
    assert t[1:] == ["--loadEngine=m.engine", "--shapes=input:1x1x40x40", "--warmUp=200", "--duration=3",
                     "--iterations=10", "--avgRuns=1", "--exportTimes=times.json"]
    li = layer_info_argv("t", EngineRun("m.engine", "input", (1, 40, 40), dla_core=0), 16, "l.json")
    assert li[1:] == ["--loadEngine=m.engine", "--shapes=input:16x1x40x40", "--useDLACore=0", "--warmUp=0",
                      "--duration=0", "--iterations=1", "--avgRuns=1", "--exportLayerInfo=l.json"]
    i = inference_argv("t", EngineRun("m.engine", "input", (1, 40, 40)), 32, "x.bin", "y.json")
    assert "--loadInputs=input:x.bin" in i and "--exportOutput=y.json" in i and "--iterations=1" in i
    # a DLA engine is loaded onto its own core (trtexec sets the runtime's DLA core from --useDLACore; without it,
    # TensorRT runs the engine on core 0); a graph of fixed batch gets no --shapes
    dla = timing_argv("t", EngineRun("m.engine", "input", (1, 40, 40), fixed=True, dla_core=1), 4, 0.2, 3.0, 10, "t.json")
    assert dla[1:3] == ["--loadEngine=m.engine", "--useDLACore=1"] and not [a for a in dla if "shapes" in a.lower()]


def test_auto_runner_choice(tmp_path, monkeypatch):
    from edgeres.bench.runners import choose_runner

    assert choose_runner("auto", None, "cpu") == "python"  # ONNX Runtime: never trtexec
    assert choose_runner("trtexec", None, "cpu") == "trtexec"  # asked for: the runner itself refuses with its reason
    monkeypatch.setenv("PATH", str(tmp_path))
    assert choose_runner("auto", None, "desktop") == "python"  # no TensorRT, no trtexec: python says how to get it
    exe = tmp_path / "trtexec"
    exe.write_text("#!/bin/sh\necho not NVIDIA's\n")
    exe.chmod(0o755)
    assert choose_runner("auto", None, "desktop") == "python"  # a trtexec that prints no banner is not one
    install(tmp_path)  # the stand-in: trtexec's banner
    assert choose_runner("auto", None, "desktop") == "trtexec"  # no TensorRT Python here, but a trtexec
    with pytest.raises(ConfigError, match="--runner must be one of"):
        choose_runner("fast", None, "cpu")
