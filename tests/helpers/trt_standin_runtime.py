"""The stand-in ``tensorrt``'s runtime side (``Runtime``, ``ICudaEngine``, ``IExecutionContext``, the engine
inspector) and a stand-in CUDA runtime. They replay the build request recorded in the stand-in "plan"; device memory
reads back as NaN. Conformance and protocol only: never a number.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from tests.helpers.trt_standin_base import DLA_OPS, PLAN_MAGIC, EnumValue, Strict


class EngineInspector(Strict):
    def __init__(self, doc: dict[str, Any]) -> None:
        object.__setattr__(self, "_doc", doc)

    def get_engine_information(self, fmt: EnumValue) -> str:
        """The inspector's JSON layout (see tests/data/inspector/), from the recorded request: no tactic was run."""
        self._call("get_engine_information", fmt.name)
        d = self._doc
        prec = "Int8" if d["qdq"] else "Half" if (d["half_graph"] or "FP16" in d["flags"]) else "Float"
        lo, _, hi = d["profile"]
        context = self.__dict__.get("execution_context")
        if lo[0] != hi[0] and (context is None or context._batch is None):
            # NvInferRuntime.h, setExecutionContext: without a context whose input shapes are set, "values dependent
            # on input shapes will be displayed as -1 and format information will not be shown"
            prec = "N/A due to dynamic shapes"
        fmt = prec if prec.startswith("N/A") else f"Row major linear {prec}"
        layers = []
        for i, (name, op) in enumerate(d["layers"]):
            on_dla = d["dla"] and op in DLA_OPS
            # the last layer writes the network's float output: of a Q/DQ engine, it reads int8 and writes float
            out = fmt if i < len(d["layers"]) - 1 or fmt.startswith("N/A") else "Row major linear FP32 format"
            layers.append({"Name": "{ForeignNode[" + name + "]}" if on_dla else name, "LayerType": op,
                           "Inputs": [{"Name": f"{name}_in", "Format/Datatype": fmt}],
                           "Outputs": [{"Name": f"{name}_out", "Format/Datatype": out}]})
        return json.dumps({"Layers": layers, "Bindings": [t[0] for t in d["inputs"] + d["outputs"]]})


class IExecutionContext(Strict):
    def __init__(self, engine: ICudaEngine) -> None:
        object.__setattr__(self, "_engine", engine)
        object.__setattr__(self, "_batch", None)

    def _out(self) -> tuple[int, ...]:
        shape = self._engine._doc["outputs"][0][1]
        return (self._batch if shape[0] < 0 else shape[0], *shape[1:])

    def _set(self, member: str, key: Any, shape: tuple) -> bool:
        """As TensorRT does: a shape outside the engine's profile (another batch on a static engine) is refused, and
        a run after it would fail; the stand-in records that as a violation."""
        self._call(member, key, tuple(shape))
        lo, _, hi = self._engine._doc["profile"]
        if not lo[0] <= shape[0] <= hi[0]:
            self._rec.violations.append(f"{member}({tuple(shape)}) outside the profile {lo[0]}..{hi[0]}")
            return False
        object.__setattr__(self, "_batch", shape[0])
        return True

    def set_input_shape(self, name: str, shape: tuple) -> bool:
        return self._set("set_input_shape", name, shape)

    def set_binding_shape(self, index: int, shape: tuple) -> bool:
        return self._set("set_binding_shape", index, shape)

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self._out()

    def get_binding_shape(self, index: int) -> tuple[int, ...]:
        return self._out()

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self._call("set_tensor_address", name, ptr)
        return True

    def _report(self) -> bool:
        """An attached profiler hears of every layer of the request, each at a 1.0 ms MARKER: no layer ran or was
        timed (TensorRT calls it during each run, ``enqueue_emits_profile`` being on by default)."""
        profiler = self.__dict__.get("profiler")
        if profiler is not None:
            for name, _ in self._engine._doc["layers"]:
                profiler.report_layer_time(name, STANDIN_LAYER_MS)
        return True

    def execute_async_v3(self, stream: int) -> bool:
        self._call("execute_async_v3", stream)
        return self._report()

    def execute_async_v2(self, bindings: list[int], stream: int) -> bool:
        self._call("execute_async_v2", list(bindings), stream)
        return self._report()

    def execute_v2(self, bindings: list[int]) -> bool:
        self._call("execute_v2", list(bindings))
        return self._report()


STANDIN_ACTIVATION_BYTES = 1 << 20
STANDIN_LAYER_MS = 1.0  # a marker, not a time


class ICudaEngine(Strict):
    def __init__(self, doc: dict[str, Any]) -> None:
        object.__setattr__(self, "_doc", doc)
        io = [(n, s, t, True) for n, s, t in doc["inputs"]] + [(n, s, t, False) for n, s, t in doc["outputs"]]
        object.__setattr__(self, "_io", io)

    def _shape(self, i: int) -> tuple[int, ...]:
        """The network's own shape, -1 where it is dynamic, whatever the profile (as ICudaEngine's getTensorShape: a
        DLA engine's single-batch profile does not make its input static there)."""
        return tuple(self._io[i][1])

    def _dtype(self, i: int) -> EnumValue:
        return getattr(self._world.module.DataType, self._io[i][2])

    num_io_tensors = property(lambda self: len(self._io))
    # what a release names the context's activation memory; the stand-in's figure is a marker, 1 MiB, not a measure
    device_memory_size = property(lambda self: STANDIN_ACTIVATION_BYTES)
    device_memory_size_v2 = property(lambda self: STANDIN_ACTIVATION_BYTES)
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

    def get_binding_index(self, name: str) -> int:
        return self._index(name)

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
    def __init__(self, logger: Any) -> None:
        self._call("__init__")

    def deserialize_cuda_engine(self, blob: bytes) -> ICudaEngine | None:
        self._call("deserialize_cuda_engine", len(blob))
        if not bytes(blob).startswith(PLAN_MAGIC):
            return None
        doc = json.loads(bytes(blob)[len(PLAN_MAGIC):])
        if doc["version"] != self._rec.version or doc["gpu"] != self._world.gpu:
            return None  # as TensorRT does for a plan of another version or GPU
        built, runs = doc.get("dla_core"), self.__dict__.get("DLA_core", -1)
        if built is not None and max(runs, 0) != built:  # a runtime left unset runs it on core 0 (onnxruntime PR
            self._rec.violations.append(  # 28364, tensorrt_demos issue 463): no error, the wrong core
                f"an engine built for DLA core {built} deserialized onto core {max(runs, 0)}: set Runtime.DLA_core")
        return self._world.make("ICudaEngine", doc)


class StandInCuda:
    """A STAND-IN for the CUDA runtime: records copies and launches; memory read back is NaN, never a result."""

    name = "stand-in"

    def __init__(self, gpu: str = "stand-in GPU (no GPU: nothing runs)") -> None:
        self.gpu, self.next = gpu, 0x1000
        self.sent: list[np.dtype] = []
        self.freed: list[int] = []

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
