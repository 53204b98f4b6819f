"""A STAND-IN for the ``tensorrt`` module of one release, built from that release's API manifest, for conformance tests.

It proves API conformance only: it exposes exactly the classes, members and enum values that NVIDIA's pybind sources
of that release define (../shared/tensorrt-api/<version>.json), so any other name raises ``AttributeError`` as it
would on a device, and it records every call edgeres makes. It builds no engine and computes nothing: its "plan" is
a JSON record of the build request, and device buffers read back as NaN. No number from it is ever a measurement.
"""
from __future__ import annotations

import importlib.machinery
import json
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from tests.helpers.trt_standin_base import (
    _ENUMS,
    API_DIR,
    DLA_OPS,
    FULL_VERSION,
    PLAN_MAGIC,
    VERSIONS,
    EnumValue,
    Recorder,
    Strict,
    _enum,
    manifest,
)
from tests.helpers.trt_standin_runtime import EngineInspector, ICudaEngine, IExecutionContext, Runtime, StandInCuda

__all__ = ["API_DIR", "VERSIONS", "Recorder", "StandInCuda", "make_tensorrt"]

# ---- behaviour: just enough for edgeres's build and session code to run its calls ----------------------------------

class Logger(Strict):
    def __init__(self, min_severity: Any = None) -> None:
        self._call("__init__", min_severity)


class ITensor(Strict):
    def __init__(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "_dtype", dtype)


class ILayer(Strict):
    def __init__(self, name: str, op: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_op", op)


class INetworkDefinition(Strict):
    def __init__(self, flags: int) -> None:
        object.__setattr__(self, "_flags", flags)
        object.__setattr__(self, "_inputs", [])
        object.__setattr__(self, "_outputs", [])
        object.__setattr__(self, "_layers", [])
        object.__setattr__(self, "_model", None)

    @property
    def num_layers(self) -> int:
        return len(self._layers)

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    def get_input(self, i: int) -> ITensor:
        self._call("get_input", i)
        return self._inputs[i]

    def get_layer(self, i: int) -> ILayer:
        return self._layers[i]


def _elem(t: onnx.ValueInfoProto) -> str:
    return "HALF" if t.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 else "FLOAT"


def _dims(t: onnx.ValueInfoProto) -> tuple[int, ...]:
    return tuple(d.dim_value if d.dim_value else -1 for d in t.type.tensor_type.shape.dim)


class OnnxParser(Strict):
    """Reads the ONNX with the onnx package; records (as a violation) what this release's parser would misread."""

    def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
        object.__setattr__(self, "_network", network)
        object.__setattr__(self, "num_errors", 0)

    def parse(self, blob: bytes) -> bool:
        from edgeres.onnx_limits import parser_limits, parser_problems

        self._call("parse", len(blob))
        model = onnx.load_from_string(blob)
        self._rec.violations += [f"parser: {p}" for p in parser_problems(model, parser_limits(self._rec.version))]
        n = self._network
        object.__setattr__(n, "_model", model)
        w = self._world
        n._inputs.extend(w.make("ITensor", i.name, _dims(i), _elem(i)) for i in model.graph.input)
        n._outputs.extend(w.make("ITensor", o.name, _dims(o), _elem(o)) for o in model.graph.output)
        n._layers.extend(w.make("ILayer", x.name or x.op_type, x.op_type) for x in model.graph.node)
        return True

    def get_error(self, i: int) -> str:
        return ""


class IOptimizationProfile(Strict):
    def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
        self._call("set_shape", name, tuple(lo), tuple(opt), tuple(hi))
        object.__setattr__(self, "_shape", (name, tuple(lo), tuple(opt), tuple(hi)))


class ITimingCache(Strict):
    def __init__(self, key: bytes) -> None:
        object.__setattr__(self, "_key", key)

    def serialize(self) -> bytes:
        return self._key


class IBuilderConfig(Strict):
    def __init__(self, world: World) -> None:
        object.__setattr__(self, "_world", world)
        object.__setattr__(self, "_flags", set())
        object.__setattr__(self, "_profiles", [])
        object.__setattr__(self, "_cache", None)

    def set_flag(self, flag: EnumValue) -> None:
        self._call("set_flag", flag.name)
        self._flags.add(flag.name)

    def clear_flag(self, flag: EnumValue) -> None:
        self._call("clear_flag", flag.name)
        self._flags.discard(flag.name)

    def get_flag(self, flag: EnumValue) -> bool:
        return flag.name in self._flags

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def can_run_on_DLA(self, layer: ILayer) -> bool:
        self._call("can_run_on_DLA", layer.name)
        return layer._op in DLA_OPS

    def create_timing_cache(self, blob: bytes) -> ITimingCache:
        self._call("create_timing_cache", len(blob))
        return self._world.make("ITimingCache", bytes(blob) or self._world.cache_key)

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self._call("set_timing_cache", cache._key, ignore_mismatch)
        if cache._key != self._world.cache_key:
            return False  # made by another GPU or TensorRT: the real builder says False
        object.__setattr__(self, "_cache", cache)
        return True


class Builder(Strict):
    def __init__(self, logger: Logger) -> None:
        self._call("__init__")

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        self._call("create_network", flags)
        return self._world.make("INetworkDefinition", flags)

    def create_builder_config(self) -> IBuilderConfig:
        return self._world.make("IBuilderConfig", self._world)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return self._world.make("IOptimizationProfile")

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes:
        """Checks the request as TensorRT would, drives the progress monitor, and returns a record, not an engine."""
        w, rec = self._world, self._rec
        rec.add("Builder", "build_serialized_network")
        name, lo, opt, hi = config._profiles[0]._shape
        dla = getattr(config.__dict__.get("default_device_type"), "name", "GPU") == "DLA"
        if dla and not lo == opt == hi:
            rec.violations.append(f"DLA engine with a dynamic profile {lo}/{opt}/{hi}: every layer would fall back")
        for t in network._inputs:  # TensorRT's network.cpp::validate: a static input's profile must be its own shape
            for k, d in enumerate(t.shape):
                if d >= 0 and t.name == name and not lo[k] == opt[k] == hi[k] == d:
                    rec.violations.append(f"{t.name}: for dimension number {k} in profile 0 does not match network "
                                          f"definition (got min={lo[k]}, opt={opt[k]}, max={hi[k]}), expected "
                                          f"min=opt=max={d})")
        monitor = config.__dict__.get("progress_monitor")
        if monitor is not None:
            monitor.phase_start("Building engine", None, 2)
            monitor.step_complete("Building engine", 0)
            monitor.phase_finish("Building engine")
        model = network._model
        half = any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
        qdq = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
        doc = {"version": rec.version, "gpu": w.gpu, "flags": sorted(config._flags), "profile": [lo, opt, hi],
               "inputs": [(t.name, t.shape, t._dtype) for t in network._inputs],
               "outputs": [(t.name, t.shape, t._dtype) for t in network._outputs],
               "layers": [(la.name, la._op) for la in network._layers], "half_graph": half, "qdq": qdq, "dla": dla,
               "dla_core": config.__dict__.get("DLA_core") if dla else None}
        return PLAN_MAGIC + json.dumps(doc).encode()


_BEHAVIOUR = {c.__name__: c for c in (Logger, Builder, INetworkDefinition, OnnxParser, IBuilderConfig,
                                      IOptimizationProfile, ITimingCache, Runtime, ICudaEngine, IExecutionContext,
                                      EngineInspector, ITensor, ILayer)}


@dataclass
class World:
    """One stand-in release and the 'device' it pretends to run on."""

    version: str
    rec: Recorder
    gpu: str = "stand-in GPU (no GPU: nothing runs)"
    dla_cores: int = 0
    module: Any = None
    classes: dict[str, type] = field(default_factory=dict)

    @property
    def cache_key(self) -> bytes:
        return f"STAND-IN TIMING CACHE trt{self.version} {self.gpu}".encode()

    def make(self, cls: str, *args: Any) -> Any:
        if cls not in self.classes:
            raise AttributeError(f"module 'tensorrt' has no attribute '{cls}' (TensorRT {self.version})")
        return self.classes[cls](*args)


def make_tensorrt(version: str, dla_cores: int = 0, gpu: str | None = None) -> tuple[types.ModuleType, Recorder]:
    """The stand-in ``tensorrt`` module of ``version`` and the recorder of its calls."""
    doc = manifest(version)
    rec = Recorder(version)
    world = World(version, rec, dla_cores=dla_cores)
    if gpu:
        world.gpu = gpu
    mod = types.ModuleType("tensorrt", f"STAND-IN for TensorRT {version}: API conformance only, never a number")
    mod.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    mod.__version__ = FULL_VERSION[version]  # type: ignore[attr-defined]
    for name, members in doc["api"].items():
        if name in _ENUMS or (members and all(m.isupper() or m[0].isupper() for m in members)):
            setattr(mod, name, _enum(name, members))
        elif name in _BEHAVIOUR:
            cls = type(name, (_BEHAVIOUR[name],), {"_cls": name, "_members": frozenset(members), "_rec": rec,
                                                   "_world": world})
            world.classes[name] = cls
            setattr(mod, name, cls)
        elif name == "IProgressMonitor":
            setattr(mod, name, type(name, (), {"__init__": lambda self, n=name: rec.add(n, "__init__")}))
        else:
            setattr(mod, name, type(name, (Strict,), {"_cls": name, "_members": frozenset(members), "_rec": rec}))
    world.module = mod
    if "Logger" in world.classes and "Severity" in doc["api"]:  # pybind defines Severity in ILogger's scope and
        for m in doc["api"]["Severity"]:  # exports its values there, so trt.Logger.WARNING exists
            setattr(world.classes["Logger"], m, getattr(mod.Severity, m))
    if "Builder" in world.classes:
        world.classes["Builder"].num_DLA_cores = property(lambda self: world.dla_cores)  # type: ignore[attr-defined]

    def nptype(dtype: Any) -> Any:
        rec.add("tensorrt", "nptype", (dtype,))
        if doc.get("nptype_uses_removed_np_bool") and np.lib.NumpyVersion(np.__version__) >= "1.24.0":
            raise AttributeError("module 'numpy' has no attribute 'bool'")  # what 8.2 and 8.5.0-8.5.2 raise
        return np.float32

    mod.nptype = nptype  # type: ignore[attr-defined]
    return mod, rec
