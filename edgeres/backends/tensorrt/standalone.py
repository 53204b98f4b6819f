"""A serialized engine run with TensorRT's Python API and libcudart alone: what a bundle for a TensorRT target ships
beside ``infer.py`` as ``tensorrt_runner.py``, which ``bundle.json`` names as its runner (``Runner``). It imports
nothing of edgeres (numpy only, and ``tensorrt`` when an engine is opened), so a device needs no edgeres to
classify with the bundle.

Names from TensorRT 8.5 on (``num_io_tensors``, ``execute_async_v3``), bindings on 8.2 (JetPack 4.6).
"""
import ctypes
import ctypes.util
import glob
import os
import sys
from pathlib import Path

import numpy as np

# where libcudart lives when the linker does not know it: JetPack's and the toolkit's folders, Debian's multiarch ones,
# and pip's nvidia-cuda-runtime-cu12/-cu13 (site-packages/nvidia/cuda_runtime/lib)
CUDART_DIRS = ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib",
               "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/aarch64-linux-gnu", "/usr/lib/x86_64-linux-gnu")
CUDART_MISSING = ("the CUDA runtime (libcudart.so) was not found; on a Jetson it ships with JetPack in "
                  "/usr/local/cuda/lib64 (add it to LD_LIBRARY_PATH), on a desktop install the CUDA toolkit or "
                  "`pip install nvidia-cuda-runtime-cu12`")


def load_cudart():
    """libcudart through ctypes, the linker's choice first, then the newest file in ``CUDART_DIRS`` and in pip's
    package; None when there is none. (edgeres's own TensorRT session loads it here too.)
    """
    dirs = list(CUDART_DIRS) + [os.path.join(p, "nvidia", "cuda_runtime", "lib") for p in sys.path if p]
    names = [ctypes.util.find_library("cudart")] + sorted(
        (p for d in dirs for p in glob.glob(d + "/libcudart.so*")), reverse=True)
    for name in [n for n in names if n]:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


class Runner:
    """A serialized engine through TensorRT's Python API (names from 8.5, bindings on 8.2) and libcudart."""

    def __init__(self, path, settings):
        import tensorrt as trt

        self.trt = trt
        self.cuda = load_cudart()
        if self.cuda is None:
            sys.exit("error: " + CUDART_MISSING)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if settings.get("dla_core") is not None:  # else TensorRT runs a DLA engine on core 0, whatever it was built for
            self.runtime.DLA_core = settings["dla_core"]
        self.engine = self.runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            sys.exit(f"error: {path} is not an engine for this TensorRT and GPU; rebuild it with `edgeres build`")
        self.context = self.engine.create_execution_context()
        self.max_batch = settings.get("max_batch", 1)
        self.names = hasattr(self.engine, "num_io_tensors")
        self.static = self._static_batch()

    def _static_batch(self):
        """The one batch the engine takes (a graph of fixed batch, or a DLA engine's profile), else None."""
        e = self.engine
        if self.names:
            name = next(e.get_tensor_name(i) for i in range(e.num_io_tensors)
                        if e.get_tensor_mode(e.get_tensor_name(i)) == self.trt.TensorIOMode.INPUT)
            first, profile = e.get_tensor_shape(name)[0], e.get_tensor_profile_shape(name, 0)
        else:  # TensorRT 8.2: bindings
            i = next(i for i in range(e.num_bindings) if e.binding_is_input(i))
            first, profile = e.get_binding_shape(i)[0], e.get_profile_shape(0, i)
        if first > 0:
            return int(first)
        return int(profile[0][0]) if profile[0][0] == profile[2][0] else None

    def _malloc(self, nbytes):
        ptr = ctypes.c_void_p()
        if self.cuda.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(nbytes)):
            sys.exit("error: cudaMalloc failed; is the GPU busy or out of memory?")
        return ptr

    def _copy(self, dst, src, nbytes, kind):
        if self.cuda.cudaMemcpy(dst, src, ctypes.c_size_t(nbytes), kind):
            sys.exit("error: cudaMemcpy failed")

    def __call__(self, x):
        trt = self.trt
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = len(x)
        if self.static and n < self.static:  # a static engine takes its own batch only: pad, then cut
            return self(np.concatenate([x, np.zeros((self.static - n,) + x.shape[1:], np.float32)]))[:n]
        if self.names:
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            inp = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
            out = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
            self.context.set_input_shape(inp, x.shape)
            shape = tuple(self.context.get_tensor_shape(out))
        else:  # TensorRT 8.2: bindings
            inp_i = next(i for i in range(self.engine.num_bindings) if self.engine.binding_is_input(i))
            out_i = next(i for i in range(self.engine.num_bindings) if not self.engine.binding_is_input(i))
            self.context.set_binding_shape(inp_i, x.shape)
            shape = tuple(self.context.get_binding_shape(out_i))
        y = np.empty(shape, np.float32)
        d_in, d_out = self._malloc(x.nbytes), self._malloc(y.nbytes)
        try:
            self._copy(d_in, x.ctypes.data_as(ctypes.c_void_p), x.nbytes, 1)  # host to device
            if self.names:
                self.context.set_tensor_address(inp, d_in.value)
                self.context.set_tensor_address(out, d_out.value)
                ok = self.context.execute_async_v3(0)
                self.cuda.cudaStreamSynchronize(None)
            else:
                bindings = [0] * self.engine.num_bindings
                bindings[inp_i], bindings[out_i] = d_in.value, d_out.value
                ok = self.context.execute_v2(bindings)
            if not ok:
                sys.exit("error: TensorRT could not run the engine")
            self._copy(y.ctypes.data_as(ctypes.c_void_p), d_out, y.nbytes, 2)  # device to host
        finally:
            self.cuda.cudaFree(d_in)
            self.cuda.cudaFree(d_out)
        return y
