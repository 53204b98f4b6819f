"""edgeres's TensorRT build and session code against each release's API (8.2 … 11.1), through a STAND-IN module.

Names and semantics: a name a release lacks raises AttributeError here as on a device; the tests then check what was
asked of TensorRT (flags per release, TF32 cleared for fp32, static DLA profiles, the timing-cache result checked,
the parser's opset limit honoured, no ``nptype``). Nothing here builds an engine or yields a number.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from packaging.version import Version

from edgeres.backends.tensorrt import TensorRTBackend
from edgeres.bench import BenchConfig, bench, engine_configs, plan_rows
from edgeres.bench.report import footnotes
from edgeres.build import engine_from_onnx, timing_cache_path
from edgeres.config import BuildConfig
from edgeres.errors import ArtifactError, ConfigError
from edgeres.onnx_limits import export_opset, model_opset, parser_problems, target_limits
from edgeres.targets import all_targets, load_target
from tests.helpers.fixtures import FAST_LATENCY
from tests.helpers.trt_standin import VERSIONS
from tests.helpers.trt_standin_runtime import STANDIN_ACTIVATION_BYTES

pytestmark = pytest.mark.trt_conformance


def targets_for(version: str) -> list[str]:
    """The TensorRT targets whose JetPacks ship ``version`` (desktop: any from its oldest on)."""
    out = []
    for t in all_targets():
        if t.runtime != "tensorrt":
            continue
        try:
            t.check_tensorrt(Version(version))
        except ConfigError:
            continue
        out.append(t.name)
    return out


def model_for(models: dict, target: str, precision: str) -> Path:
    return models[export_opset(load_target(target))]["int8" if precision == "int8" else "fp32"]


def test_the_stand_in_refuses_what_a_release_lacks():
    """The suite's premise: a name missing from a release's API list is an AttributeError, for calls and for
    ``hasattr`` alike (until this test, a read of a missing name fell through to a recording stub, so ``hasattr`` was
    always true and a call to a missing method passed unnoticed).
    """
    from tests.helpers.trt_standin import make_tensorrt

    old, _ = make_tensorrt("8.2")
    new, _ = make_tensorrt("8.5")
    for trt, has in ((old, False), (new, True)):
        config = trt.Builder(trt.Logger(trt.Logger.WARNING)).create_builder_config()
        assert hasattr(config, "set_memory_pool_limit") is has
        assert hasattr(config, "max_workspace_size")  # 8.2's name, still there in 8.5
    with pytest.raises(AttributeError, match=r"no attribute 'set_memory_pool_limit' \(TensorRT 8.2\)"):
        old.Builder(old.Logger()).create_builder_config().set_memory_pool_limit(None, 1)


def test_every_version_has_a_target():
    assert {v: bool(targets_for(v)) for v in VERSIONS} == {v: True for v in VERSIONS}


@pytest.mark.parametrize("target", [t.name for t in all_targets()])
def test_each_targets_export_is_within_its_parsers(models, target):
    t = load_target(target)
    opset = export_opset(t)
    for kind in ("fp32", "int8"):
        model = onnx.load(str(models[opset][kind]))
        assert model_opset(model) == opset  # quantize keeps the opset export wrote
        lim = target_limits(t)
        if lim is not None:
            assert parser_problems(model, lim) == []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_follows_each_release(standin, models, tmp_path, version, precision):
    rec = standin.use(version)
    able = [t for t in targets_for(version) if precision in load_target(t).precisions]
    if not able:  # 8.2: Nano and TX2 have no int8 on the GPU; a Q/DQ model is refused before any TensorRT call
        target = targets_for(version)[0]
        with pytest.raises(ConfigError, match="does not support int8"):
            engine_from_onnx(model_for(models, target, "int8"), BuildConfig(target, force_device=True), tmp_path / "x")
        assert rec.calls == [] and not (tmp_path / "x").exists()
        return
    target = able[0]
    onnx_path = model_for(models, target, precision)
    cfg = BuildConfig(target, precision, batch=1, max_batch=8, force_device=True)
    out = engine_from_onnx(onnx_path, cfg, tmp_path / "e.engine")
    v = Version(version)
    assert rec.violations == []
    assert rec.called("tensorrt", "nptype") == []
    assert rec.called("IBuilderConfig", "clear_flag") == [("TF32",)]  # fp32 layers compute in fp32, not TF32
    flags = sorted(a[0] for a in rec.called("IBuilderConfig", "set_flag"))
    if v >= Version("11"):
        assert flags == []  # strongly typed: precision comes from the graph
    else:
        assert flags == {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"]}[precision]
    net_flags = rec.called("Builder", "create_network")[0][0]
    assert net_flags == (1 << int(__import__("tensorrt").NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
                         if v < Version("10") else 0)
    if v < Version("8.5"):
        assert rec.called("IBuilderConfig", "set max_workspace_size")
    else:
        assert rec.called("IBuilderConfig", "set_memory_pool_limit")
    assert bool(rec.called("IBuilderConfig", "set progress_monitor")) == (v >= Version("10"))
    assert rec.called("IOptimizationProfile", "set_shape")[0][1:] == ((1, 1, 32, 32), (1, 1, 32, 32), (8, 1, 32, 32))
    if precision == "fp16" and v >= Version("11"):
        built_from = Path(json.loads(Path(f"{out.artifact}.json").read_text())["inputs"]["onnx"]["path"])
        half = onnx.load(str(built_from))
        assert built_from.name.endswith(".fp16.onnx")
        assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 I/O kept
        assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in half.graph.initializer)
    man = json.loads(Path(f"{out.artifact}.json").read_text())["results"]
    assert Version(man["tensorrt"]).release[:2] == v.release[:2]
    assert man["forced_device"] is (load_target(target).kind == "jetson")
    assert out.precision == precision and man["timing_cache_status"] == "new" and man["target"] == target
    assert man["layers"], "the per-layer report comes from the inspector"
    # a dynamic engine (profile 1..8) shows its formats only through a context whose input shape is set
    assert {la["precision"] for la in man["layers"]} == {{"fp32": "fp32", "fp16": "fp16", "int8": "int8"}[precision]}
    assert rec.called("IExecutionContext", "set_input_shape" if v >= Version("8.5") else "set_binding_shape")[0][1] \
        == (1, 1, 32, 32)  # the profile's opt batch
    assert man["int8_fallback_layers"] == []  # the last layer reads int8 and writes the float logits: no fallback


@pytest.mark.parametrize("version", VERSIONS)
def test_session_follows_each_release(standin, models, tmp_path, version):
    target = targets_for(version)[0]
    rec = standin.use(version)
    built = engine_from_onnx(model_for(models, target, "fp32"), BuildConfig(target, force_device=True,
                                                                            max_batch=8), tmp_path / "e.engine")
    sess = TensorRTBackend().load(built.artifact, load_target(target))
    y = sess.infer(np.zeros((3, 1, 32, 32), np.float32))
    assert y.shape == (3, 10) and np.isnan(y).all()  # the stand-in computes nothing
    assert sess.max_batch == 8
    assert sess.activation_bytes == STANDIN_ACTIVATION_BYTES  # device_memory_size before 11, _v2 on 11 (only it)
    if Version(version) < Version("8.5"):
        assert rec.called("IExecutionContext", "set_binding_shape") and rec.called("IExecutionContext",
                                                                                   "execute_async_v2")
    else:
        assert rec.called("IExecutionContext", "set_input_shape")[-1][1] == (3, 1, 32, 32)  # [0]: the inspection
        assert len(rec.called("IExecutionContext", "set_tensor_address")) == 2
        assert rec.called("IExecutionContext", "execute_async_v3")
    assert rec.called("tensorrt", "nptype") == []
    sess.close()


def test_session_feeds_the_engines_own_input_type(standin, models, tmp_path):
    """An engine whose input is half gets half: binding float32 bytes to it would read garbage, with no error."""
    from edgeres.backends.tensorrt.build import EngineSpec, build_engine
    from edgeres.backends.tensorrt.session import TrtSession
    from edgeres.onnx_fp16 import fp16_model

    standin.use("11.1")
    half = fp16_model(onnx.load(str(models[18]["fp32"])))
    cast = half.graph.node[0]
    half.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16  # a converter without keep_io_types
    for n in half.graph.node[1:]:
        n.input[:] = [half.graph.input[0].name if i == cast.output[0] else i for i in n.input]
    half.graph.node.remove(cast)
    path = tmp_path / "half_io.onnx"
    onnx.save(half, str(path))
    build_engine(path, tmp_path / "h.engine", EngineSpec("fp16", (1, 32, 32), 1, 1, 4, onnx_is_fp16=True))
    sess = TrtSession(tmp_path / "h.engine")
    sess.infer(np.zeros((2, 1, 32, 32), np.float32))
    assert standin.cuda.sent == [np.dtype(np.float16)]


def test_an_engine_of_another_release_or_gpu_is_refused_before_deserializing(standin, models, tmp_path):
    standin.use("10.3")
    built = engine_from_onnx(model_for(models, "jetson-orin-nano", "fp32"),
                             BuildConfig("jetson-orin-nano", force_device=True), tmp_path / "e.engine")
    rec = standin.use("10.13")
    with pytest.raises(ArtifactError, match=r"built by TensorRT 10\.3\.0 on .*this machine has TensorRT 10\.13"):
        TensorRTBackend().load(built.artifact, load_target("jetson-thor"))
    assert rec.called("Runtime", "deserialize_cuda_engine") == []
    standin.use("10.3", gpu="another GPU")
    with pytest.raises(ArtifactError, match="another GPU"):
        TensorRTBackend().load(built.artifact, load_target("jetson-orin-nano"))


def test_timing_cache_is_keyed_and_a_rejected_one_is_rebuilt(standin, models, tmp_path):
    rec = standin.use("10.3")
    gpu = standin.cuda.device_name()
    cache = timing_cache_path("10.3.0", gpu, "0.0")
    cfg = BuildConfig("jetson-orin-nano", force_device=True)
    engine_from_onnx(model_for(models, "jetson-orin-nano", "fp32"), cfg, tmp_path / "a.engine")
    assert cache.is_file() and "trt10.3.0" in cache.name
    r = engine_from_onnx(model_for(models, "jetson-orin-nano", "fp32"), cfg, tmp_path / "b.engine")
    assert r.details["timing_cache_status"] == "reused"
    cache.write_bytes(b"a cache from another GPU")
    r = engine_from_onnx(model_for(models, "jetson-orin-nano", "fp32"), cfg, tmp_path / "c.engine")
    assert r.details["timing_cache_status"].startswith("rejected")
    assert [c[1] for c in rec.called("IBuilderConfig", "set_timing_cache")][-2:] == [False, False]
    assert cache.read_bytes() != b"a cache from another GPU"


def test_dla_engines_are_static_fp16_or_int8_and_count_dla_layers(standin, models, tmp_path):
    rec = standin.use("8.5", dla_cores=2)
    cfg = BuildConfig("jetson-xavier-nx", "fp16", dla_core=1, batch=4, force_device=True)
    r = engine_from_onnx(models[17]["fp32"], cfg, tmp_path / "d.engine")
    assert rec.violations == []
    assert rec.called("IOptimizationProfile", "set_shape")[0][1:] == ((4, 1, 32, 32),) * 3
    assert ("GPU_FALLBACK",) in rec.called("IBuilderConfig", "set_flag")
    assert rec.called("IBuilderConfig", "set DLA_core") == [(1,)]
    assert [a[0].name for a in rec.called("IBuilderConfig", "set default_device_type")] == ["DLA"]
    assert r.details["dla_layers"] > 0 and r.details["gpu_fallback_layers"] >= 1  # Gemm stays on the GPU
    layers = r.details["layers"]
    assert sum(la["device"] == "DLA" for la in layers) == r.details["dla_layers"]
    r8 = engine_from_onnx(models[17]["int8"], BuildConfig("jetson-xavier-nx", dla_core=0, force_device=True),
                          tmp_path / "i.engine")
    assert r8.precision == "int8" and r8.details["dla_layers"] > 0


@pytest.mark.parametrize("version,target,precision,core,dla_cores,message", [
    ("8.5", "jetson-xavier-nx", "fp32", 0, 2, "fp16 or int8 only"),
    ("8.5", "jetson-xavier-nx", "fp16", 2, 2, "cores 0–1"),
    ("8.5", "jetson-xavier-nx", "fp16", 1, 1, "this device has 1 DLA core"),
    ("10.3", "jetson-orin-nano", "fp16", 0, 0, "no DLA"),
    ("10.13", "jetson-thor", "fp16", 0, 0, "no DLA"),
    ("11.1", "desktop", "fp16", 0, 0, "no DLA"),
])
def test_dla_requests_that_cannot_work_are_refused(standin, models, tmp_path, version, target, precision, core,
                                                   dla_cores, message):
    standin.use(version, dla_cores=dla_cores)
    with pytest.raises(ConfigError, match=message):
        engine_from_onnx(model_for(models, target, "fp32"), BuildConfig(target, precision, dla_core=core,
                                                                         force_device=True), tmp_path / "x.engine")
    assert not (tmp_path / "x.engine").exists()


def test_tensorrt_11_has_dla_only_from_11_4_1_and_only_on_agx_orin():
    t = load_target("jetson-agx-orin")
    with pytest.raises(ConfigError, match="from 11.4.1 on"):
        t.check_dla(0, Version("11.1"))
    t.check_dla(0, Version("11.4.1"))
    t.check_dla(0, Version("10.3"))
    with pytest.raises(ConfigError):
        load_target("jetson-orin-nx").check_dla(0, Version("11.4.1"))


def test_a_tensorrt_that_is_not_the_targets_is_refused(standin, models, tmp_path):
    standin.use("10.3")
    with pytest.raises(ConfigError, match="does not match target jetson-xavier-nx"):
        engine_from_onnx(models[17]["fp32"], BuildConfig("jetson-xavier-nx", force_device=True), tmp_path / "x")


def test_onnx_above_the_parser_is_refused_with_the_export_to_run(standin, models, tmp_path):
    rec = standin.use("8.2")
    fix = r"`edgeres export \S*model\.pt --target jetson-nano --out \S*model\.jetson-nano\.onnx`$"  # from the manifest
    with pytest.raises(ConfigError, match=r"opset 18 .*" + fix):
        engine_from_onnx(models[18]["fp32"], BuildConfig("jetson-nano", force_device=True), tmp_path / "x")
    assert rec.called("OnnxParser", "parse") == []
    rec = standin.use("8.6")
    with pytest.raises(ConfigError, match=r"opset 18 is outside the 7–17 .*--target desktop"):
        engine_from_onnx(models[18]["fp32"], BuildConfig("desktop"), tmp_path / "x")
    assert rec.called("OnnxParser", "parse") == []


def test_a_reduce_with_axes_as_input_is_what_8x_parsers_misread(models):
    """Opset 18's ReduceMean(data, axes): 8.x parsers reduce every axis; the opset-17 export has the attribute."""
    from edgeres.onnx_limits import ParserLimits

    as_if_8x_read_18 = ParserLimits(Version("8.6"), 7, 18, False, "test: only the op-form rule")
    problems = parser_problems(onnx.load(str(models[18]["fp32"])), as_if_8x_read_18)
    assert len(problems) == 1 and "misreads as 'reduce every axis'" in problems[0]
    assert parser_problems(onnx.load(str(models[17]["fp32"])), as_if_8x_read_18) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_bench_rows_on_every_tensorrt_target(standin, models, tmp_path, version):
    """fp32, fp16 and int8 rows (fp16 only where the GPU has no int8), each with its latency and throughput
    engines. The rows are recorded to $EDGERES_CONFORMANCE_ROWS when set: what a bench would build, no numbers."""
    cfg = BenchConfig(batch=1, throughput_batch=16)
    table = []
    for target in targets_for(version):
        t = load_target(target)
        rec = standin.use(version, dla_cores=t.dla_cores)
        opset = export_opset(t)
        models_in = [models[opset]["fp32"]] + ([models[opset]["int8"]] if "int8" in t.precisions else [])
        rows = plan_rows(models_in, t)
        want = ["fp32", "fp16"] + (["int8"] if "int8" in t.precisions else [])
        assert [r.precision for r in rows] == want
        for row in rows:
            for purpose, bc in engine_configs(row, t, cfg).items():
                bc = BuildConfig(**{**bc.__dict__, "force_device": True})
                built = engine_from_onnx(row.path, bc, tmp_path / f"{target}.{row.label}.{purpose}.engine")
                table.append({"tensorrt": version, "target": target, "row": row.label, "engine": purpose,
                              "built_as": built.precision, "flags": built.details["flags"],
                              "cleared": built.details["cleared_flags"], "profile": built.details["profile"],
                              "opset": opset})
        assert rec.violations == [] and rec.called("tensorrt", "nptype") == []
    if os.environ.get("EDGERES_CONFORMANCE_ROWS"):
        with open(os.environ["EDGERES_CONFORMANCE_ROWS"], "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in table)


class _StandInCudart:
    """A STAND-IN for libcudart.so as ctypes sees it: records the calls; device memory reads back as NaN."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.next = 0x1000

    def cudaMalloc(self, ptr, nbytes) -> int:  # noqa: N802 (CUDA's names)
        self.next += 0x1000
        ptr._obj.value = self.next
        self.calls.append(("malloc", nbytes.value))
        return 0

    def cudaMemcpy(self, dst, src, nbytes, kind) -> int:  # noqa: N802
        import ctypes

        self.calls.append(("memcpy", nbytes.value, kind))
        if kind == 2:  # device to host
            nan = np.full(nbytes.value // 4, np.nan, np.float32)
            ctypes.memmove(dst, nan.ctypes.data, nbytes.value)
        return 0

    def cudaFree(self, ptr) -> int:  # noqa: N802
        self.calls.append(("free",))
        return 0

    def cudaStreamSynchronize(self, stream) -> int:  # noqa: N802
        return 0


@pytest.mark.parametrize("version", VERSIONS)
def test_the_bundles_engine_runner_follows_each_release(standin, models, tmp_path, monkeypatch, version):
    """``tensorrt_runner.py``, which a bundle for an engine ships (edgeres/backends/tensorrt/standalone.py), calls only
    what each release defines: bindings and ``execute_v2`` on 8.2, tensor names and ``execute_async_v3`` from 8.5.
    A stand-in engine and a stand-in libcudart: nothing runs, the output is NaN.
    """
    import ctypes.util
    import importlib.util

    target = targets_for(version)[0]
    rec = standin.use(version)
    built = engine_from_onnx(model_for(models, target, "fp32"), BuildConfig(target, force_device=True, max_batch=8),
                             tmp_path / "e.engine")
    cudart = _StandInCudart()
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libcudart.so.12" if name == "cudart" else None)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: cudart if name == "libcudart.so.12" else pytest.fail(name))
    path = Path(__file__).resolve().parents[2] / "edgeres/backends/tensorrt/standalone.py"
    spec = importlib.util.spec_from_file_location("tensorrt_runner", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rec.calls.clear()
    runner = module.Runner(built.artifact, {"max_batch": 8})
    y = runner(np.zeros((3, 1, 32, 32), np.float32))
    assert y.shape == (3, 10) and np.isnan(y).all() and runner.max_batch == 8
    assert rec.violations == []
    if Version(version) < Version("8.5"):
        assert rec.called("IExecutionContext", "set_binding_shape") == [(0, (3, 1, 32, 32))]
        assert len(rec.called("IExecutionContext", "execute_v2")[0][0]) == 2
    else:
        assert rec.called("IExecutionContext", "set_input_shape")[-1][1] == (3, 1, 32, 32)  # [0]: the inspection
        assert len(rec.called("IExecutionContext", "set_tensor_address")) == 2
        assert rec.called("IExecutionContext", "execute_async_v3") == [(0,)]
    assert [c[0] for c in cudart.calls] == ["malloc", "malloc", "memcpy", "memcpy", "free", "free"]
    assert cudart.calls[2] == ("memcpy", 3 * 32 * 32 * 4, 1) and cudart.calls[3] == ("memcpy", 3 * 10 * 4, 2)
    # a graph of fixed batch 4: its engine takes 4 only, so 3 images are padded to 4 and 3 rows come back
    from tests.helpers.fixtures import fixed_batch_copy

    fixed = fixed_batch_copy(model_for(models, target, "fp32"), 4, tmp_path / "b4.onnx")
    static = engine_from_onnx(fixed, BuildConfig(target, force_device=True), tmp_path / "b4.engine")
    rec.calls.clear()
    runner = module.Runner(static.artifact, {"max_batch": 4})
    assert runner.static == 4 and runner(np.zeros((3, 1, 32, 32), np.float32)).shape == (3, 10)
    shapes = rec.called("IExecutionContext", "set_binding_shape" if Version(version) < Version("8.5") else
                        "set_input_shape")
    assert [c[-1] for c in shapes] == [(4, 1, 32, 32)] and rec.violations == []


def test_a_dla_engine_runs_on_the_core_it_was_built_for(standin, models, tmp_path, monkeypatch):
    """TensorRT deserializes a DLA engine onto the runtime's DLA core, and a runtime left unset puts it on core 0
    whatever the build asked (onnxruntime PR 28364 saw it with jtop on an Orin NX; tensorrt_demos issue 463 on a
    Xavier NX): no error, the wrong core. The stand-in records that as a violation. bench's session and the bundle's
    runner set the core from the engine's manifest or bundle.json."""
    import ctypes.util
    import importlib.util

    rec = standin.use("8.5", dla_cores=2)
    built = engine_from_onnx(models[17]["fp32"], BuildConfig("jetson-agx-orin", "fp16", dla_core=1, batch=4,
                                                             force_device=True), tmp_path / "d.engine")
    assert rec.violations == [] and rec.called("Runtime", "set DLA_core") == [(1,)]  # the build's own inspection
    session = TensorRTBackend().load(built.artifact, load_target("jetson-agx-orin"))
    assert rec.violations == [] and rec.called("Runtime", "set DLA_core")[-1] == (1,)
    session.close()
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libcudart.so.12" if name == "cudart" else None)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: _StandInCudart())
    path = Path(__file__).resolve().parents[2] / "edgeres/backends/tensorrt/standalone.py"
    spec = importlib.util.spec_from_file_location("tensorrt_runner", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.Runner(built.artifact, {"max_batch": 4, "dla_core": 1})
    assert rec.violations == []
    module.Runner(built.artifact, {"max_batch": 4})  # what the runner did before bundle.json said the core
    assert rec.violations == ["an engine built for DLA core 1 deserialized onto core 0: set Runtime.DLA_core"]


@pytest.mark.parametrize("version", ["8.6", "11.1"])
def test_bench_reports_each_engines_memory_by_the_releases_own_member(standin, models, tmp_path, version):
    """A bench's memory line: the throughput engine's file and the activation memory the release reports
    (``device_memory_size`` on 8.6, ``device_memory_size_v2`` on 11, which lacks the other). The stand-in's engines
    are the request it recorded and its 1 MiB a marker: the protocol, not a figure."""
    rec = standin.use(version)
    cfg = BenchConfig(target="desktop", limit=8, batch=1, throughput_batch=4, energy="off", latency=FAST_LATENCY)
    report = bench([models[17]["fp32"], models[17]["int8"]], tmp_path / "r", cfg)
    assert [r["label"] for r in report["results"]] == ["fp32", "fp16", "int8-tensorrt"]
    for r in report["results"]:
        engine = Path(report["engines"][f"{r['label']}:throughput"]["engine"])
        assert r["memory"]["file_mb"] == engine.stat().st_size / (1 << 20)
        assert r["memory"]["activations_mb"] == STANDIN_ACTIVATION_BYTES / (1 << 20)
        assert r["memory"]["peak_mb"] is None  # device memory: no resident-set figure stands in for it
    assert rec.violations == []
    assert "memory at batch 4: fp32 " in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_sessions_profile_is_an_iprofiler_on_each_release(standin, models, tmp_path, version):
    """A subclass of the release's own ``IProfiler`` on the context hears every layer of each run (execute_async_v2
    on 8.2, v3 after). The stand-in reports each ONNX node at a 1.0 ms marker: that proves the calls and the
    arithmetic (runs averaged, the first left out), never a layer's time."""
    from tests.helpers.trt_standin_runtime import STANDIN_LAYER_MS

    target = targets_for(version)[0]
    rec = standin.use(version)
    path = model_for(models, target, "fp32")
    built = engine_from_onnx(path, BuildConfig(target, force_device=True), tmp_path / "e.engine")
    with TensorRTBackend().load(built.artifact, load_target(target)) as sess:
        p = sess.profile(np.zeros((1, 1, 32, 32), np.float32), 7, tmp_path)
        runs = len(rec.called("IExecutionContext", "execute_async_v2" if Version(version) < Version("8.5")
                              else "execute_async_v3"))
    assert runs == 8 and (p.runs, p.batch) == (7, 1) and "IProfiler" in p.how
    assert sorted(t.name for t in p.layers) == sorted(n.name for n in onnx.load(str(path)).graph.node)
    assert {t.ms for t in p.layers} == {STANDIN_LAYER_MS}  # seven reports of each, averaged: the first run unheard
    assert len(rec.called("IExecutionContext", "set profiler")) == 1 and rec.violations == []


@pytest.mark.parametrize("version", ["8.6", "11.1"])
def test_bench_profile_gives_each_tensorrt_row_its_layers(standin, models, tmp_path, version):
    """bench --profile on a TensorRT target: every row's layers, each on a session of its own."""
    from edgeres.config import PROFILE_RUNS
    from tests.helpers.trt_standin_runtime import STANDIN_LAYER_MS

    rec = standin.use(version)
    cfg = BenchConfig(target="desktop", limit=8, batch=2, throughput_batch=4, energy="off", latency=FAST_LATENCY,
                      profile=True)
    report = bench([models[17]["fp32"], models[17]["int8"]], tmp_path / "r", cfg)
    nodes = len(onnx.load(str(models[17]["fp32"])).graph.node)
    for r in report["results"]:
        p = r["profile"]
        assert (p["runs"], p["batch"]) == (PROFILE_RUNS, 2) and "IProfiler" in p["how"]
        assert all(t["ms"] == STANDIN_LAYER_MS for t in p["layers"]), r["label"]  # each run's report, averaged
        if r["label"] == "fp32" or (r["label"] == "fp16" and version != "11.1"):  # 11: fp16 from an FP16 graph, casts
            assert p["layer_count"] == nodes                                           # at its input and output
    assert len(rec.called("IExecutionContext", "set profiler")) == 3  # one per row, on a session of its own
    assert rec.violations == []
    assert "## Layers (bench --profile)" in (tmp_path / "r" / "report.md").read_text()


def test_bench_adds_each_fp16_and_int8_row_on_the_dla(standin, models, tmp_path, monkeypatch):
    """--dla-core on an AGX Orin (this machine says it is one): fp16 and int8 again on DLA core 1, each engine static
    (the latency batch, 3, scores 8 images as 3 + 3 + 2, the last padded), and the report says how many layers the
    DLA takes. The stand-in builds nothing; the placement it reports is its own rule."""
    board = tmp_path / "model"
    board.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    monkeypatch.setattr("edgeres.targets.DEVICE_TREE_MODEL", board)
    rec = standin.use("10.3", dla_cores=2)
    cfg = BenchConfig(target="jetson-agx-orin", limit=8, batch=3, throughput_batch=4, energy="off",
                      latency=FAST_LATENCY, dla_core=1)
    report = bench([models[17]["fp32"], models[17]["int8"]], tmp_path / "r", cfg)
    rows = {r["label"]: r for r in report["results"]}
    assert list(rows) == ["fp32", "fp16", "int8-tensorrt", "fp16-dla1", "int8-tensorrt-dla1"]
    for label in ("fp16-dla1", "int8-tensorrt-dla1"):
        lat, thr = report["engines"][f"{label}:latency"], report["engines"][f"{label}:throughput"]
        assert (lat["dla_core"], lat["profile"], thr["profile"]) == (1, [3, 3, 3], [4, 4, 4])
        assert lat["dla_layers"] > 0 and rows[label]["accuracy"]["images"] == 8
    assert report["engines"]["fp16:latency"]["dla_core"] is None
    md = (tmp_path / "r" / "report.md").read_text()
    assert "on the DLA: fp16-dla1 " in md
    # what each engine runs, from the inspector (the stand-in's placement: Gemm and Flatten stay on the GPU)
    said = [n for n in footnotes(report) if n.startswith("in the throughput engines, by TensorRT's inspector: ")]
    assert len(said) == 1 and "int8-tensorrt " in said[0] and "fp32 " not in said[0]
    assert "int8-tensorrt-dla1 " in said[0] and " DLA subgraphs, " in said[0] and "compute layers on the GPU: " in said[0]
    assert " not: " not in said[0]  # every layer in its row's precision: the last reads int8 and writes float
    # the weighted-placement int8 row left layers on the GPU: the note says the DLA needs scales at every layer
    hint = [n for n in footnotes(report) if "may lack an int8 scale" in n]
    assert len(hint) == 1 and hint[0].startswith("int8-tensorrt-dla1: ") and "--placement ort" in hint[0]
    assert rec.violations == []
    with pytest.raises(ConfigError, match="target jetson-orin-nano has no DLA"):
        plan_rows([models[17]["fp32"]], load_target("jetson-orin-nano"), 0)


def test_bench_sweep_runs_each_row_on_its_sweep_engine(standin, models, tmp_path, monkeypatch):
    """bench --sweep on an AGX Orin with --dla-core: a GPU row's batches on one engine whose profile spans the sweep
    (1 to 4, optimized for 4), a DLA row's on a static engine per batch; each on the API of 10.3."""
    board = tmp_path / "model"
    board.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    monkeypatch.setattr("edgeres.targets.DEVICE_TREE_MODEL", board)
    rec = standin.use("10.3", dla_cores=2)
    cfg = BenchConfig(target="jetson-agx-orin", limit=8, batch=1, throughput_batch=2, energy="off",
                      latency=FAST_LATENCY, dla_core=1, sweep=(1, 2, 4))
    bench([models[17]["fp32"], models[17]["int8"]], tmp_path / "r", cfg)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    engines = report["engines"]
    for r in report["results"]:
        assert [p["batch"] for p in r["sweep"]] == [1, 2, 4] and all(p["throughput_ips"] > 0 for p in r["sweep"])
        got = [engines[f"{r['label']}:sweep:{b}"] for b in (1, 2, 4)]
        if r["label"].endswith("-dla1"):
            assert [(e["profile"], e["dla_core"]) for e in got] == [([1, 1, 1], 1), ([2, 2, 2], 1), ([4, 4, 4], 1)]
        else:
            assert [e["profile"] for e in got] == [[1, 4, 4]] * 3 and len({e["engine"] for e in got}) == 1
    assert "dynamic batching" in report["sweep"]["how"] and "static engine per batch" in report["sweep"]["how"]
    assert rec.violations == []


def test_a_model_of_fixed_batch_gets_static_engines_of_that_batch(standin, models, tmp_path):
    """A graph that fixes its batch at 4: TensorRT refuses any profile but 4/4/4 for it (network.cpp's "does not
    match network definition"), so every engine is static at 4, latency and throughput are timed at 4, there is no
    sweep, and 10 images score as 4 + 4 + 2 padded. The accuracy is the dynamic models' own."""
    from tests.helpers.fixtures import fixed_batch_copy

    rec = standin.use("8.6")  # the binding API, where a static engine's batch is read from its binding shape
    cfg = BenchConfig(target="desktop", limit=10, batch=1, throughput_batch=8, energy="off", latency=FAST_LATENCY,
                      sweep=(1, 2))
    fixed = [fixed_batch_copy(models[17][k], 4, tmp_path / f"{k}.b4.onnx") for k in ("fp32", "int8")]
    bench(fixed, tmp_path / "r", cfg)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rec.violations == []
    engines = report["engines"]
    assert {e["profile"] == [4, 4, 4] for e in engines.values()} == {True}
    for label in ("fp32", "fp16", "int8-tensorrt"):  # one engine serves accuracy, latency and throughput
        assert engines[f"{label}:latency"]["engine"] == engines[f"{label}:throughput"]["engine"]
    assert (report["config"]["batch"], report["config"]["throughput_batch"], report["sweep"]) == (4, 4, None)
    dynamic = bench([models[17]["fp32"], models[17]["int8"]], tmp_path / "d", replace(cfg, sweep=()))
    for got, want in zip(report["results"], dynamic["results"]):
        assert got["latency"]["batch"] == got["throughput"]["batch"] == 4 and got["sweep"] is None
        assert {k: got["accuracy"][k] for k in ("images", "top1", "agreement")} == {
            k: want["accuracy"][k] for k in ("images", "top1", "agreement")}, got["label"]
    with pytest.raises(ConfigError, match="fixes its batch at 4 in its graph"):
        engine_from_onnx(fixed[0], BuildConfig("desktop", batch=8, max_batch=8))


def test_build_says_what_the_engine_runs(standin, models, tmp_path, monkeypatch):
    """`edgeres build` prints the inspector's account of the engine: an int8 engine's compute layers in int8 (the
    last, which writes the float logits, included), and a DLA engine's subgraphs and the layers left on the GPU. The
    stand-in's placement is its own rule: this proves the reading, not TensorRT's choices."""
    from click.testing import CliRunner

    from edgeres.cli.app import main

    board = tmp_path / "model"
    board.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    monkeypatch.setattr("edgeres.targets.DEVICE_TREE_MODEL", board)
    standin.use("10.3", dla_cores=2)
    gpu = CliRunner().invoke(main, ["build", str(models[17]["int8"]), "--target", "jetson-agx-orin",
                                    "--out", str(tmp_path / "g.engine")])
    assert gpu.exit_code == 0, gpu.output
    said = [ln for ln in gpu.output.splitlines() if ln.startswith("engine: ")]
    assert len(said) == 1 and " compute layers in int8" in said[0] and " not: " not in said[0], gpu.output
    dla = CliRunner().invoke(main, ["build", str(models[17]["fp32"]), "--target", "jetson-agx-orin", "--precision",
                                    "fp16", "--dla-core", "1", "--batch", "4", "--out", str(tmp_path / "d.engine")])
    assert dla.exit_code == 0, dla.output
    said = [ln for ln in dla.output.splitlines() if ln.startswith("engine: ")]
    assert len(said) == 1 and " DLA subgraphs, " in said[0] and "compute layers on the GPU: " in said[0], dla.output
