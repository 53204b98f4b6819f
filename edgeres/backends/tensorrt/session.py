"""A TensorRT engine behind the Session interface, on every release from 8.2 on, without torch.

8.5 and newer bind tensors by name (``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``); 8.2 has
only bindings (``set_binding_shape``, ``execute_async_v2``). Buffers and the stream come from :mod:`.cuda`. The input
is converted to the engine's own input type (an FP16 engine from an ONNX whose inputs are half reads float32 bytes
as garbage, with no error), and the output is returned as float32.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeres.backends.base import ClosingSession, pad_batch
from edgeres.backends.tensorrt import cuda as cuda_mod
from edgeres.backends.tensorrt.api import (
    DEVICE_MEMORY_V2_ONLY,
    NAME_IO_SINCE,
    numpy_dtype,
    runtime_for,
    set_input_shape,
    tensorrt_module,
    version_of,
)
from edgeres.backends.tensorrt.cuda import Cuda
from edgeres.errors import ArtifactError

if TYPE_CHECKING:
    from edgeres.backends.profile import LayerProfile


class TrtSession(ClosingSession):
    """One engine, one context, one stream. ``infer`` times host→device, execute and device→host."""

    copies_timed = True
    threads: int | None = None
    max_batch: int | None
    input_name: str
    device: str
    activation_bytes: int | None
    static: bool  # the engine's batch is fixed (a DLA engine): smaller batches are padded to it

    def __init__(self, engine_path: Path, trt: ModuleType | None = None, cuda: Cuda | None = None,
                 dla_core: int | None = None) -> None:
        self.trt = trt or tensorrt_module()
        self.version = version_of(self.trt)
        self.cuda = cuda or cuda_mod.cuda_runtime()
        self.names_io = self.version >= NAME_IO_SINCE
        self._logger = self.trt.Logger()
        self.runtime = runtime_for(self.trt, self._logger, dla_core)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ArtifactError(f"{engine_path} is not an engine for this GPU and TensorRT {self.version}; rebuild "
                                f"it on this device with `edgeres build`")
        self.context = self.engine.create_execution_context()
        self.activation_bytes = int(self.engine.device_memory_size_v2 if self.version >= DEVICE_MEMORY_V2_ONLY
                                    else self.engine.device_memory_size)  # the context's scratch, at the profile's max
        self.stream = self.cuda.stream()
        self._io()
        self.device = "cuda:0"
        self._buffers: dict[str, tuple[int, int]] = {}  # name → (pointer, bytes)

    def _io(self) -> None:
        e, trt = self.engine, self.trt
        if self.names_io:
            names = [e.get_tensor_name(i) for i in range(e.num_io_tensors)]
            ins = [n for n in names if e.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            outs = [n for n in names if e.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
            first = int(e.get_tensor_shape(ins[0])[0])
            lo, hi = (first, first) if first > 0 else _batches(e.get_tensor_profile_shape(ins[0], 0))
            self.in_dtype = numpy_dtype(trt, e.get_tensor_dtype(ins[0]))
            self.out_dtype = numpy_dtype(trt, e.get_tensor_dtype(outs[0]))
        else:  # 8.2: bindings, indexed
            names = [e.get_binding_name(i) for i in range(e.num_bindings)]
            ins = [n for i, n in enumerate(names) if e.binding_is_input(i)]
            outs = [n for i, n in enumerate(names) if not e.binding_is_input(i)]
            self._index = {n: i for i, n in enumerate(names)}
            first = int(e.get_binding_shape(self._index[ins[0]])[0])
            lo, hi = (first, first) if first > 0 else _batches(e.get_profile_shape(0, self._index[ins[0]]))
            self.in_dtype = numpy_dtype(trt, e.get_binding_dtype(self._index[ins[0]]))
            self.out_dtype = numpy_dtype(trt, e.get_binding_dtype(self._index[outs[0]]))
        # static: the graph fixes the batch, or the profile allows one (a DLA engine): the engine's own tensor shape
        # keeps -1 for a dynamic input whatever its profile, so the profile says it
        self.static, self.max_batch = lo == hi, hi
        if len(ins) != 1 or len(outs) != 1:
            raise ArtifactError(f"the engine has {len(ins)} inputs and {len(outs)} outputs; edgeres runs "
                                f"classifiers with one of each")
        self.input_name, self.output_name = ins[0], outs[0]

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self.cuda.free(ptr)
            ptr, size = self.cuda.malloc(nbytes), nbytes
            self._buffers[name] = (ptr, size)
        return ptr

    def _out_shape(self, batch: int) -> tuple[int, ...]:
        c = self.context
        shape = c.get_tensor_shape(self.output_name) if self.names_io else \
            c.get_binding_shape(self._index[self.output_name])
        dims = tuple(int(d) for d in shape)
        return (batch, *dims[1:]) if dims and dims[0] < 0 else dims

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=self.in_dtype)
        n = x.shape[0]
        if n > self.max_batch:
            raise ArtifactError(f"batch {n} is over the engine's largest ({self.max_batch}); rebuild with "
                                f"a larger --max-batch")
        if self.static and n < self.max_batch:  # a static engine (DLA) takes its own batch only: pad, then cut
            return self.infer(pad_batch(x, self.max_batch or n))[:n]
        c = self.context
        if not set_input_shape(c, self.engine, self.input_name, tuple(x.shape), self.version):
            raise ArtifactError(f"input {tuple(x.shape)} is outside the engine's profile; rebuild it for this batch")
        out = np.empty(self._out_shape(x.shape[0]), dtype=self.out_dtype)
        x_ptr = self._buffer(self.input_name, x.nbytes)
        y_ptr = self._buffer(self.output_name, out.nbytes)
        self.cuda.copy_to_device(x_ptr, x, self.stream)
        if self.names_io:
            c.set_tensor_address(self.input_name, x_ptr)
            c.set_tensor_address(self.output_name, y_ptr)
            ok = c.execute_async_v3(self.stream)
        else:
            bindings = [0] * len(self._index)
            bindings[self._index[self.input_name]] = x_ptr
            bindings[self._index[self.output_name]] = y_ptr
            ok = c.execute_async_v2(bindings, self.stream)
        if not ok:
            raise ArtifactError("TensorRT execution failed; see the TensorRT log")
        self.cuda.copy_to_host(out, y_ptr, self.stream)
        self.cuda.synchronize(self.stream)
        return out.astype(np.float32, copy=False)

    def profile(self, batch: np.ndarray, runs: int, workdir: Path) -> LayerProfile:
        """Each layer's mean time from an ``IProfiler`` on the context (TensorRT reports every layer of every run while
        a profiler is attached, ``enqueue_emits_profile`` being on by default), after one run left out.
        """
        from edgeres.backends.profile import LayerProfile, LayerTime

        trt, times = self.trt, {}  # type: ignore[var-annotated]

        class Profiler(trt.IProfiler):  # type: ignore[name-defined]
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                times[layer_name] = times.get(layer_name, 0.0) + ms

        self.infer(batch)
        self._profiler = Profiler()  # held here as long as the context that calls it
        self.context.profiler = self._profiler
        for _ in range(runs):
            self.infer(batch)
        return LayerProfile(runs, int(batch.shape[0]), [LayerTime(n, ms / runs) for n, ms in times.items()],
                            "TensorRT's IProfiler on the context: each layer's time, mean per run, after one run left "
                            "out, in a session of its own")

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self.cuda.free(ptr)
        self._buffers.clear()
        self.context = None
        self.engine = None


def _batches(profile: Any) -> tuple[int, int]:
    """The smallest and largest batch of an optimization profile's (min, opt, max) shapes."""
    return int(profile[0][0]), int(profile[2][0])
