"""TensorRT and CUDA: these run on a GPU machine with TensorRT, and skip here with the reason."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from packaging.version import Version

from edgeres.backends.tensorrt import tensorrt_version
from edgeres.errors import ConfigError
from tests.conftest import cpu_and_cuda


def test_build_flags_by_version():
    # pure logic, no TensorRT needed: what each version must be told
    from edgeres.backends.tensorrt.build import EngineSpec, builder_flags

    spec = EngineSpec("int8", (1, 32, 32))
    assert builder_flags(Version("8.6.1"), spec) == (["INT8", "FP16"], ["TF32"])
    assert builder_flags(Version("10.3.0"), EngineSpec("fp16", (1, 32, 32))) == (["FP16"], ["TF32"])
    assert builder_flags(Version("11.4.1"), spec) == ([], ["TF32"])
    assert builder_flags(Version("10.3.0"), EngineSpec("fp32", (1, 32, 32), allow_tf32=True)) == ([], [])
    with pytest.raises(ConfigError, match="TensorRT 11 has no FP16 builder flag"):
        builder_flags(Version("11.0.0"), EngineSpec("fp16", (1, 32, 32)))


@pytest.mark.needs_tensorrt
def test_engine_matches_onnxruntime(small_run, tmp_path):
    from edgeres.backends.onnxruntime import OrtSession
    from edgeres.backends.tensorrt.session import TrtSession
    from edgeres.build import engine_from_onnx
    from edgeres.config import BuildConfig
    from edgeres.export import ExportConfig, onnx_from_checkpoint

    cfg, _ = small_run
    onnx_path = onnx_from_checkpoint(Path(cfg.out) / "model.pt", tmp_path / "model.onnx",
                                     ExportConfig(parity_images=32, target="desktop")).onnx
    r = engine_from_onnx(onnx_path, BuildConfig("desktop", "fp32"), tmp_path / "m.engine")
    x = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
    trt_out = TrtSession(r.artifact).infer(x)
    ort_out = OrtSession(onnx_path).infer(x)
    assert tensorrt_version() is not None
    assert np.abs(trt_out - ort_out).max() < 1e-2


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_torch_session_on_each_device(device):
    from edgeres.backends.torch import TorchSession
    from edgeres.models.resnet import resnet18

    s = TorchSession(resnet18(1, 10), device)
    out = s.infer(np.zeros((2, 1, 32, 32), np.float32))
    assert out.shape == (2, 10) and s.copies_timed == (device == "cuda")


@pytest.mark.needs_tensorrt
def test_bench_on_a_tensorrt_target_builds_and_reuses_engines(small_run, tmp_path):
    """bench takes the ONNX files: it builds an engine for each (max batch 32), scores accuracy in batches the
    engine accepts, and reuses the engines when nothing changed."""
    from edgeres.bench import BenchConfig, bench
    from edgeres.export import ExportConfig, onnx_from_checkpoint
    from edgeres.quantize import QuantConfig, qdq_from_onnx
    from tests.helpers.fixtures import FAST_LATENCY

    cfg, _ = small_run
    fp32 = onnx_from_checkpoint(Path(cfg.out) / "model.pt", tmp_path / "model.onnx",
                                ExportConfig(parity_images=32, target="desktop")).onnx
    models = [fp32, qdq_from_onnx(fp32, tmp_path / "model.int8-tensorrt.onnx",
                                  QuantConfig(calibration=cfg.quant.calibration)).onnx]
    report = bench(models, tmp_path / "r", BenchConfig(target="desktop", limit=300, latency=FAST_LATENCY))
    engines = sorted(tmp_path.glob("*.engine"))
    assert len(engines) == 6  # fp32, fp16, int8: a latency and a throughput engine each
    assert report["dataset"]["images"] == 300
    assert [r["precision"] for r in report["results"]] == ["fp32", "fp16", "int8"]
    # TensorRT's int8 computes what the CPU simulates: the two agree on almost every image
    from edgeres.backends.onnxruntime import OrtSession
    from edgeres.backends.tensorrt.session import TrtSession

    x = np.random.default_rng(1).standard_normal((32, 1, 32, 32)).astype(np.float32)
    trt = TrtSession(next(e for e in engines if ".int8." in e.name)).infer(x).argmax(1)
    sim = OrtSession(models[1], simulate=True).infer(x).argmax(1)
    assert (trt == sim).mean() >= 0.9
    stamps = {e: e.stat().st_mtime_ns for e in engines}
    bench(models, tmp_path / "r2", BenchConfig(target="desktop", limit=300, latency=FAST_LATENCY))
    assert {e: e.stat().st_mtime_ns for e in engines} == stamps  # reused, not rebuilt
