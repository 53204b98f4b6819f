"""A STAND-IN for the ``tensorrt`` module of one release, built from that release's API manifest, for conformance tests.

It proves API conformance only: it exposes exactly the classes, members and enum values that NVIDIA's pybind sources
of that release define (../shared/tensorrt-api/<version>.json), so any other name raises ``AttributeError`` as it
would on a device, and it records every call edgeres makes. It builds no engine and computes nothing: its "plan" is
a JSON record of the build request, and device buffers read back as NaN. No number from it is ever a measurement.
"""
from __future__ import annotations

import importlib.machinery
import json
import os
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

REPO = Path(__file__).resolve().parents[2]
API_DIR = Path(os.environ.get("EDGERES_TRT_API_DIR", REPO.parent / "shared" / "tensorrt-api"))
VERSIONS = ("8.2", "8.5", "8.6", "10.3", "10.13", "10.16", "11.0", "11.1")
# the patch release a device reports for each branch (JetPack 4.6: 8.2.1, 5.1: 8.5.2, 6.0: 8.6.2)
FULL_VERSION = {"8.2": "8.2.1", "8.5": "8.5.2", "8.6": "8.6.2", "10.3": "10.3.0", "10.13": "10.13.0",
                "10.16": "10.16.0", "11.0": "11.0.0", "11.1": "11.1.0"}
PLAN_MAGIC = b"EDGERES-TENSORRT-STANDIN: not an engine\n"
_ENUMS = {"BuilderFlag", "NetworkDefinitionCreationFlag", "DataType", "DeviceType", "MemoryPoolType",
          "ProfilingVerbosity", "LayerInformationFormat", "TensorIOMode", "Severity"}


def manifest(version: str) -> dict[str, Any]:
    return json.loads((API_DIR / f"{version}.json").read_text())


@dataclass
class Recorder:
    """Every call and attribute write edgeres made on the stand-in, and every rule it broke."""

    version: str
    calls: list[tuple[str, str, tuple, dict]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def add(self, cls: str, member: str, args: tuple = (), kwargs: dict | None = None) -> None:
        self.calls.append((cls, member, args, kwargs or {}))

    def called(self, cls: str, member: str) -> list[tuple]:
        return [c[2] for c in self.calls if c[0] == cls and c[1] == member]


class EnumValue:
    def __init__(self, enum: str, name: str, value: int) -> None:
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnumValue) and (other.enum, other.name) == (self.enum, self.name)

    def __hash__(self) -> int:
        return hash((self.enum, self.name))

    def __repr__(self) -> str:
        return f"{self.enum}.{self.name}"


def _enum(name: str, members: list[str]) -> type:
    values = {m: EnumValue(name, m, i) for i, m in enumerate(sorted(members))}
    return type(name, (), values)


class Strict:
    """Base of every stand-in object: only the manifest's members exist; reads of them and writes are recorded."""

    _cls = "?"
    _members: frozenset[str] = frozenset()
    _rec: Recorder

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            cls = object.__getattribute__(self, "_cls")
            if name not in object.__getattribute__(self, "_members"):
                rec = object.__getattribute__(self, "_rec")
                raise AttributeError(f"'tensorrt.{cls}' object has no attribute '{name}' (TensorRT {rec.version})")
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:  # a listed member without behaviour here: record the call
        rec, cls = self._rec, self._cls
        return lambda *a, **k: rec.add(cls, name, a, k)

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            if name not in self._members:
                raise AttributeError(f"'tensorrt.{self._cls}' object has no attribute '{name}' "
                                     f"(TensorRT {self._rec.version})")
            self._rec.add(self._cls, f"set {name}", (value,))
        object.__setattr__(self, name, value)

    def _call(self, member: str, *args: Any) -> None:
        self._rec.add(self._cls, member, args)


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


DLA_OPS = {"Conv", "Relu", "MaxPool", "AveragePool", "BatchNormalization", "Add", "Concat", "QuantizeLinear",
           "DequantizeLinear"}


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
               "layers": [(la.name, la._op) for la in network._layers], "half_graph": half, "qdq": qdq, "dla": dla}
        return PLAN_MAGIC + json.dumps(doc).encode()


class EngineInspector(Strict):
    def __init__(self, doc: dict[str, Any]) -> None:
        object.__setattr__(self, "_doc", doc)

    def get_engine_information(self, fmt: EnumValue) -> str:
        """The inspector's JSON layout (see tests/data/inspector/), from the recorded request: no tactic was run."""
        self._call("get_engine_information", fmt.name)
        d = self._doc
        prec = "Int8" if d["qdq"] else "Half" if (d["half_graph"] or "FP16" in d["flags"]) else "Float"
        layers = []
        for name, op in d["layers"]:
            on_dla = d["dla"] and op in DLA_OPS
            layers.append({"Name": "{ForeignNode[" + name + "]}" if on_dla else name, "LayerType": op,
                           "Outputs": [{"Name": f"{name}_out", "Format/Datatype": f"Row major linear {prec}"}]})
        return json.dumps({"Layers": layers, "Bindings": [t[0] for t in d["inputs"] + d["outputs"]]})


class IExecutionContext(Strict):
    def __init__(self, engine: ICudaEngine) -> None:
        object.__setattr__(self, "_engine", engine)
        object.__setattr__(self, "_batch", None)

    def _out(self) -> tuple[int, ...]:
        shape = self._engine._doc["outputs"][0][1]
        return (self._batch if shape[0] < 0 else shape[0], *shape[1:])

    def set_input_shape(self, name: str, shape: tuple) -> bool:
        self._call("set_input_shape", name, tuple(shape))
        object.__setattr__(self, "_batch", shape[0])
        return True

    def set_binding_shape(self, index: int, shape: tuple) -> bool:
        self._call("set_binding_shape", index, tuple(shape))
        object.__setattr__(self, "_batch", shape[0])
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self._out()

    def get_binding_shape(self, index: int) -> tuple[int, ...]:
        return self._out()

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self._call("set_tensor_address", name, ptr)
        return True

    def execute_async_v3(self, stream: int) -> bool:
        self._call("execute_async_v3", stream)
        return True

    def execute_async_v2(self, bindings: list[int], stream: int) -> bool:
        self._call("execute_async_v2", list(bindings), stream)
        return True


class ICudaEngine(Strict):
    def __init__(self, doc: dict[str, Any]) -> None:
        object.__setattr__(self, "_doc", doc)
        io = [(n, s, t, True) for n, s, t in doc["inputs"]] + [(n, s, t, False) for n, s, t in doc["outputs"]]
        object.__setattr__(self, "_io", io)

    def _shape(self, i: int) -> tuple[int, ...]:
        name, shape, _, is_in = self._io[i]
        lo, opt, hi = self._doc["profile"]
        static = lo == hi
        return tuple(hi) if (is_in and static) else tuple(shape)

    def _dtype(self, i: int) -> EnumValue:
        return getattr(self._world.module.DataType, self._io[i][2])

    num_io_tensors = property(lambda self: len(self._io))
    num_bindings = property(lambda self: len(self._io))

    def get_tensor_name(self, i: int) -> str:
        return self._io[i][0]

    def _index(self, name: str) -> int:
        return [x[0] for x in self._io].index(name)

    def get_tensor_mode(self, name: str) -> EnumValue:
        m = self._world.module.TensorIOMode
        return m.INPUT if self._io[self._index(name)][3] else m.OUTPUT

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self._shape(self._index(name))

    def get_tensor_dtype(self, name: str) -> EnumValue:
        return self._dtype(self._index(name))

    def get_tensor_profile_shape(self, name: str, profile: int) -> tuple:
        return tuple(tuple(s) for s in self._doc["profile"])

    def get_binding_name(self, i: int) -> str:
        return self._io[i][0]

    def binding_is_input(self, i: int) -> bool:
        return self._io[i][3]

    def get_binding_shape(self, i: int) -> tuple[int, ...]:
        return self._shape(i)

    def get_binding_dtype(self, i: int) -> EnumValue:
        return self._dtype(i)

    def get_profile_shape(self, profile: int, i: int) -> tuple:
        return tuple(tuple(s) for s in self._doc["profile"])

    def create_execution_context(self) -> IExecutionContext:
        return self._world.make("IExecutionContext", self)

    def create_engine_inspector(self) -> EngineInspector:
        return self._world.make("EngineInspector", self._doc)


class Runtime(Strict):
    def __init__(self, logger: Logger) -> None:
        self._call("__init__")

    def deserialize_cuda_engine(self, blob: bytes) -> ICudaEngine | None:
        self._call("deserialize_cuda_engine", len(blob))
        if not bytes(blob).startswith(PLAN_MAGIC):
            return None
        doc = json.loads(bytes(blob)[len(PLAN_MAGIC):])
        if doc["version"] != self._rec.version or doc["gpu"] != self._world.gpu:
            return None  # as TensorRT does for a plan of another version or GPU
        return self._world.make("ICudaEngine", doc)


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
    world = World(version, rec, dla_cores=dla_cores, **({"gpu": gpu} if gpu else {}))
    mod = types.ModuleType("tensorrt", f"STAND-IN for TensorRT {version}: API conformance only, never a number")
    mod.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    mod.__version__ = FULL_VERSION[version]
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
    if "Builder" in world.classes:
        world.classes["Builder"].num_DLA_cores = property(lambda self: world.dla_cores)  # type: ignore[attr-defined]

    def nptype(dtype: Any) -> Any:
        rec.add("tensorrt", "nptype", (dtype,))
        if doc.get("nptype_uses_removed_np_bool") and np.lib.NumpyVersion(np.__version__) >= "1.24.0":
            raise AttributeError("module 'numpy' has no attribute 'bool'")  # what 8.2 and 8.5.0-8.5.2 raise
        return np.float32

    mod.nptype = nptype  # type: ignore[attr-defined]
    return mod, rec


class StandInCuda:
    """A STAND-IN for the CUDA runtime: records copies and launches; memory read back is NaN, never a result."""

    name = "stand-in"

    def __init__(self, gpu: str = "stand-in GPU (no GPU: nothing runs)") -> None:
        self.gpu, self.next, self.sent, self.freed = gpu, 0x1000, [], []

    def malloc(self, nbytes: int) -> int:
        self.next += max(nbytes, 256)
        return self.next

    def free(self, ptr: int) -> None:
        self.freed.append(ptr)

    def stream(self) -> int:
        return 7

    def copy_to_device(self, ptr: int, host: np.ndarray, stream: int) -> None:
        self.sent.append(host.dtype)

    def copy_to_host(self, host: np.ndarray, ptr: int, stream: int) -> None:
        host[...] = np.nan

    def synchronize(self, stream: int) -> None:
        pass

    def device_name(self) -> str:
        return self.gpu

    def compute_capability(self) -> str:
        return "0.0"
