"""ONNX → serialized TensorRT engine, for every TensorRT release the targets name (8.2, 8.5, 8.6, 10.x, 11.x).

What a user deploys, set explicitly: fp32 without TF32 (unless asked), fp16 and Q/DQ int8 by the flags of that
release (or, on 11, by the types of the graph); a static profile for DLA, with the layers that really run there
counted; a timing cache keyed by TensorRT version and GPU; build progress; a per-layer report from the inspector.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from packaging.version import Version

from edgeres.artifacts import atomic_path
from edgeres.backends.base import EngineSpec
from edgeres.backends.layer_info import LayerInfo, engine_layers, layers_dict
from edgeres.backends.tensorrt.api import (
    MEMORY_POOLS_SINCE,
    PROGRESS_MONITOR_SINCE,
    STRONGLY_TYPED_ONLY,
    network_flags,
    runtime_for,
    set_input_shape,
    tensorrt_module,
    version_of,
)
from edgeres.config import WORKSPACE_MIB
from edgeres.errors import ArtifactError, ConfigError
from edgeres.progress import log

WORKSPACE_BYTES = WORKSPACE_MIB << 20
HEARTBEAT_S = 15.0


@dataclass
class BuildResult:
    """What ``build_engine`` made, and how: the facts an engine manifest records."""

    engine: Path
    tensorrt: str
    label: str
    flags: list[str]
    cleared_flags: list[str]
    profile: tuple[int, int, int]
    dla_core: int | None
    dla_layers: int | None  # layers the DLA can take (config.can_run_on_DLA); the rest fall back to the GPU
    gpu_fallback_layers: int | None
    timing_cache: str | None
    timing_cache_status: str  # new | reused | rejected (another GPU or TensorRT): rebuilt | off
    seconds: float
    layers: list[LayerInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["engine"] = str(self.engine)
        return {**d, **layers_dict(self.layers, self.label)}


def builder_flags(version: Version, spec: EngineSpec) -> tuple[list[str], list[str]]:
    """(flags to set, flags to clear) on ``IBuilderConfig`` for this release and spec."""
    clear = [] if spec.allow_tf32 else ["TF32"]  # on by default on Ampere and newer: "fp32" would compute in TF32
    if version >= STRONGLY_TYPED_ONLY:
        if spec.precision == "fp16" and not spec.onnx_is_fp16:
            raise ConfigError("TensorRT 11 has no FP16 builder flag: FP16 needs an FP16 ONNX (edgeres build "
                              "makes one from the float model)")
        sets: list[str] = []
    else:
        sets = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[spec.precision]
    if spec.dla_core is not None:
        sets = [*sets, "GPU_FALLBACK"]
    return sets, clear


class _Heartbeat:
    """Before TensorRT 10 there is no progress monitor: say every few seconds that the build is alive."""

    def __init__(self, what: str) -> None:
        self.what, self.t0, self.done = what, time.monotonic(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(HEARTBEAT_S):
            log(f"{self.what}: still building ({time.monotonic() - self.t0:.0f} s; TensorRT tries kernels for "
                f"every layer, minutes on a Jetson)")

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()


def _progress_monitor(trt: ModuleType, what: str) -> Any:
    """An ``IProgressMonitor`` (TensorRT ≥ 10) that logs each build phase as it starts and ends."""

    class Monitor(trt.IProgressMonitor):  # type: ignore[name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.t0 = time.monotonic()

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is None:
                log(f"{what}: {phase_name} ({num_steps} steps) at {time.monotonic() - self.t0:.0f} s")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            pass

    return Monitor()


def _timing_cache(trt: ModuleType, config: Any, path: Path | None) -> tuple[Any, str]:
    if path is None:
        return None, "off"
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if config.set_timing_cache(cache, False):
        return cache, "reused" if blob else "new"
    log(f"timing cache {path} was made by another GPU or TensorRT and was rejected; starting a new one")
    cache = config.create_timing_cache(b"")
    if not config.set_timing_cache(cache, False):
        raise ArtifactError(f"TensorRT rejected even an empty timing cache; delete {path} and build again")
    return cache, "rejected (another GPU or TensorRT): rebuilt"


def build_engine(onnx: Path, out: Path, spec: EngineSpec, timing_cache: Path | None = None,
                 trt: ModuleType | None = None) -> BuildResult:
    """Parse ``onnx``, build it as ``spec`` says for this GPU, write the plan atomically to ``out``."""
    spec.validate()
    trt = trt or tensorrt_module()
    version = version_of(trt)
    t0 = time.monotonic()
    sets, clears = builder_flags(version, spec)
    logger = trt.Logger()
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, version))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"TensorRT {version}'s ONNX parser rejected {onnx}: {errs[:300]}")
    config = builder.create_builder_config()
    if version >= MEMORY_POOLS_SINCE:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    else:
        config.max_workspace_size = WORKSPACE_BYTES
    for f in sets:
        config.set_flag(getattr(trt.BuilderFlag, f))
    for f in clears:
        config.clear_flag(getattr(trt.BuilderFlag, f))
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    dla_layers = fallback = None
    if spec.dla_core is not None:
        if not 0 <= spec.dla_core < builder.num_DLA_cores:
            raise ConfigError(f"--dla-core {spec.dla_core}: this device has {builder.num_DLA_cores} DLA core(s)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = spec.dla_core
        layers = [network.get_layer(i) for i in range(network.num_layers)]
        dla_layers = sum(bool(config.can_run_on_DLA(la)) for la in layers)
        fallback = len(layers) - dla_layers
    profile = builder.create_optimization_profile()
    inp = network.get_input(0)
    c_h_w = tuple(spec.input_shape)
    profile.set_shape(inp.name, (spec.min_batch, *c_h_w), (spec.opt_batch, *c_h_w), (spec.max_batch, *c_h_w))
    config.add_optimization_profile(profile)
    cache, cache_status = _timing_cache(trt, config, timing_cache)
    what = f"{Path(onnx).name} → {spec.label} engine"
    if version >= PROGRESS_MONITOR_SINCE:
        config.progress_monitor = _progress_monitor(trt, what)
        plan = builder.build_serialized_network(network, config)
    else:
        with _Heartbeat(what):
            plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ArtifactError(f"TensorRT {version} could not build {onnx} as {spec.label}; see the TensorRT log above")
    blob = bytes(plan)
    layers_info = _inspect(trt, logger, blob, spec.dla_core, inp.name, (spec.opt_batch, *c_h_w))
    with atomic_path(out) as tmp:
        tmp.write_bytes(blob)
    if cache is not None and timing_cache is not None:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(bytes(cache.serialize()))
    return BuildResult(Path(out), str(version), spec.label, sets, clears,
                       (spec.min_batch, spec.opt_batch, spec.max_batch), spec.dla_core, dla_layers, fallback,
                       None if timing_cache is None else str(timing_cache), cache_status,
                       round(time.monotonic() - t0, 2), layers_info)


def _inspect(trt: ModuleType, logger: Any, plan: bytes, dla_core: int | None, input_name: str,
             shape: tuple[int, ...]) -> list[LayerInfo]:
    """The per-layer report of a plan (deserialized once here, on the device that built it, and on its DLA core).

    The inspector reads a context whose input is set to ``shape`` (the profile's opt batch): of an engine with a
    dynamic batch it otherwise shows no format, "N/A due to dynamic shapes", so no layer's precision (NvInferRuntime.h,
    ``IEngineInspector::setExecutionContext``).
    """
    engine = runtime_for(trt, logger, dla_core).deserialize_cuda_engine(plan)
    if engine is None:
        raise ArtifactError("TensorRT built an engine it cannot load back; see the TensorRT log above")
    inspector = engine.create_engine_inspector()
    context = engine.create_execution_context()
    if set_input_shape(context, engine, input_name, shape, version_of(trt)):
        inspector.execution_context = context
    info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    try:
        return engine_layers(info)
    except (json.JSONDecodeError, TypeError, AttributeError):
        return []
