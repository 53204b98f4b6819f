"""edgeres build --host: an engine built by the device's own trtexec and brought back, against the STAND-IN trtexec
(tests/helpers/trtexec_standin.py), here and over a real OpenSSH server on loopback whose account has no python. It
proves the commands, the transfer and the manifest; the stand-in's "engine" is the ONNX with a header, never an engine.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeres.artifacts import sha256_file
from edgeres.bench.trtexec_build import engine_from_onnx_on_device
from edgeres.config import BuildConfig
from edgeres.errors import ConfigError
from edgeres.remote import LocalDevice
from tests.helpers.cli import assert_one_line_error, edgeres
from tests.helpers.trtexec_standin import HEADER, STANDIN_GPU, install
from tests.integration.test_trtexec_runner import cache, desktop_models, device, device_flags  # noqa: F401


def test_build_on_the_device_with_its_trtexec_comes_back_with_a_manifest(device, desktop_models, tmp_path):  # noqa: F811
    out = tmp_path / "int8.engine"
    before = device.logins()
    r = edgeres("build", str(desktop_models[1]), "--target", "desktop", *device_flags(device), "--out", str(out),
                "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["runner"], d["built_on"], d["gpu"], d["compute_capability"]) == ("trtexec", device.destination,
                                                                                STANDIN_GPU, "0.0")
    assert d["tensorrt"] == "10.3.0" and d["precision"] == "int8" and d["profile"] == [1, 1, 32]
    assert d["command"].startswith("trtexec --onnx=") and "--int8" in d["command"]
    assert "--profilingVerbosity=detailed" in d["command"] and "--maxShapes=input:32x" in d["command"]
    assert {la["precision"] for la in d["layers"]} == {"int8"} and d["int8_fallback_layers"] == []
    assert out.read_bytes().startswith(HEADER)  # what trtexec saved there, byte for byte
    man = json.loads(Path(f"{out}.json").read_text())
    assert man["kind"] == "engine-tensorrt" and man["inputs"]["onnx"]["sha256"] == sha256_file(desktop_models[1])
    assert man["config"]["spec"]["max_batch"] == 32 and man["results"]["classes"]
    assert device.logins() - before == 1  # every command on one connection
    # the engine is an engine edgeres built: bundle takes it
    b = edgeres("bundle", str(out), "--target", "desktop", "--out", str(tmp_path / "bundle"), "--json")
    assert b.returncode == 0, b.stderr
    assert json.loads((tmp_path / "bundle" / "bundle.json").read_text())["runtime"] == "tensorrt"
    # a second build of the same model finds the engine there and builds nothing; its text says how it was built
    again = edgeres("build", str(desktop_models[1]), "--target", "desktop", *device_flags(device), "--out",
                    str(tmp_path / "again.engine"))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.engine").read_bytes() == out.read_bytes()
    lines = again.stdout.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'again.engine'}: tensorrt int8 for desktop")
    assert f"TensorRT 10.3.0 on {STANDIN_GPU} (sm 0.0), built on {device.destination}; profile [1, 1, 32]; with " \
           f"trtexec: trtexec --onnx=" in lines[1] and lines[1].endswith("# built before, kept")
    assert lines[2].startswith("engine: ") and " compute layers in int8" in lines[2]
    # an ONNX Runtime target has no trtexec: one line, before any connection
    assert_one_line_error(edgeres("build", str(desktop_models[0]), "--target", "cpu", *device_flags(device)),
                          "cpu runs ONNX Runtime, and trtexec builds TensorRT engines; drop --host")


def test_build_here_with_a_local_trtexec_fp16_and_refusals(desktop_models, tmp_path, cache):  # noqa: F811
    exe = str(install(tmp_path / "bin", "100300"))
    r = engine_from_onnx_on_device(desktop_models[0], BuildConfig("desktop", "fp16", batch=4, max_batch=8),
                                   LocalDevice(), exe)
    assert r.precision == "fp16" and r.details["profile"] == [1, 4, 8] and "--fp16" in r.details["command"]
    assert r.artifact.name.startswith(f"{desktop_models[0].stem}.fp16.b4-8.trt10.3.0.") and r.artifact.is_file()
    assert {la["precision"] for la in r.details["layers"]} == {"fp16"}
    with pytest.raises(ConfigError, match="drop --tf32"):
        engine_from_onnx_on_device(desktop_models[0], BuildConfig("desktop", allow_tf32=True), LocalDevice(), exe)
    with pytest.raises(ConfigError, match="build it as int8"):
        engine_from_onnx_on_device(desktop_models[1], BuildConfig("desktop", "fp16"), LocalDevice(), exe)
    with pytest.raises(ConfigError, match="DLA"):
        engine_from_onnx_on_device(desktop_models[0], BuildConfig("desktop", "fp16", dla_core=0), LocalDevice(), exe)
    src = tmp_path / "m.onnx"
    src.write_bytes(desktop_models[0].read_bytes())
    with pytest.raises(ConfigError):  # --out naming the input model: refused, the model kept
        engine_from_onnx_on_device(src, BuildConfig("desktop"), LocalDevice(), exe, src)
    assert src.read_bytes() == desktop_models[0].read_bytes()
