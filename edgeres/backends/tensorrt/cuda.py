"""Device memory and streams without torch: pycuda where installed, else the CUDA runtime through ctypes.

Every JetPack ships ``libcudart`` (``/usr/local/cuda/lib64``); the calls used here (``cudaMalloc``, ``cudaFree``,
``cudaMemcpyAsync``, ``cudaStreamCreate``, ``cudaStreamSynchronize``, ``cudaDeviceGetAttribute``,
``cudaGetDeviceProperties``'s leading ``name`` field) keep their C ABI from CUDA 10.2 to 13.
"""
from __future__ import annotations

import ctypes
import importlib.util
from typing import Protocol

import numpy as np

from edgeres.errors import BackendUnavailable

HOST_TO_DEVICE, DEVICE_TO_HOST = 1, 2  # cudaMemcpyKind
_CC_MAJOR, _CC_MINOR = 75, 76  # cudaDevAttrComputeCapabilityMajor/Minor


class Cuda(Protocol):
    """What a TensorRT session needs of CUDA: device buffers, one stream, copies and the device's identity."""

    name: str  # "pycuda" | "cudart"

    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def stream(self) -> int: ...
    def copy_to_device(self, ptr: int, host: np.ndarray, stream: int) -> None: ...
    def copy_to_host(self, host: np.ndarray, ptr: int, stream: int) -> None: ...
    def synchronize(self, stream: int) -> None: ...
    def device_name(self) -> str: ...
    def compute_capability(self) -> str: ...


class CudartCuda:
    """The CUDA runtime library through ctypes: nothing to install on a Jetson."""

    name = "cudart"

    def __init__(self, lib: ctypes.CDLL | None = None) -> None:
        self.lib = lib or _load_cudart()
        self._streams: list[ctypes.c_void_p] = []

    def _check(self, code: int, what: str) -> None:
        if code != 0:
            self.lib.cudaGetErrorString.restype = ctypes.c_char_p
            msg = self.lib.cudaGetErrorString(code).decode(errors="replace")
            raise BackendUnavailable(f"CUDA {what} failed: {msg} (error {code}); check the GPU with nvidia-smi "
                                     f"or tegrastats")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1))), "cudaMalloc")
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        self.lib.cudaFree(ctypes.c_void_p(ptr))

    def stream(self) -> int:
        s = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(s)), "cudaStreamCreate")
        self._streams.append(s)
        return int(s.value or 0)

    def copy_to_device(self, ptr: int, host: np.ndarray, stream: int) -> None:
        self._check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(ptr), ctypes.c_void_p(host.ctypes.data),
                                             ctypes.c_size_t(host.nbytes), HOST_TO_DEVICE, ctypes.c_void_p(stream)),
                    "cudaMemcpyAsync (host to device)")

    def copy_to_host(self, host: np.ndarray, ptr: int, stream: int) -> None:
        self._check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(host.ctypes.data), ctypes.c_void_p(ptr),
                                             ctypes.c_size_t(host.nbytes), DEVICE_TO_HOST, ctypes.c_void_p(stream)),
                    "cudaMemcpyAsync (device to host)")

    def synchronize(self, stream: int) -> None:
        self._check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")

    def device_name(self) -> str:
        buf = ctypes.create_string_buffer(4096)  # cudaDeviceProp begins with char name[256]; 4 KiB covers it all
        self._check(self.lib.cudaGetDeviceProperties(buf, 0), "cudaGetDeviceProperties")
        return buf.value.decode(errors="replace")

    def compute_capability(self) -> str:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, 0), "cudaDeviceGetAttribute")
        self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, 0), "cudaDeviceGetAttribute")
        return f"{major.value}.{minor.value}"


class PyCuda:
    """pycuda, where it is installed (the design card's package)."""

    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401  (creates the context)
        import pycuda.driver as drv

        self.drv = drv
        self._allocs: dict[int, object] = {}
        self._streams: dict[int, object] = {}

    def malloc(self, nbytes: int) -> int:
        a = self.drv.mem_alloc(max(nbytes, 1))
        self._allocs[int(a)] = a
        return int(a)

    def free(self, ptr: int) -> None:
        a = self._allocs.pop(ptr, None)
        if a is not None:
            a.free()  # type: ignore[attr-defined]

    def stream(self) -> int:
        s = self.drv.Stream()
        self._streams[s.handle] = s
        return int(s.handle)

    def copy_to_device(self, ptr: int, host: np.ndarray, stream: int) -> None:
        self.drv.memcpy_htod_async(ptr, host, self._streams[stream])

    def copy_to_host(self, host: np.ndarray, ptr: int, stream: int) -> None:
        self.drv.memcpy_dtoh_async(host, ptr, self._streams[stream])

    def synchronize(self, stream: int) -> None:
        self._streams[stream].synchronize()  # type: ignore[attr-defined]

    def device_name(self) -> str:
        return str(self.drv.Device(0).name())

    def compute_capability(self) -> str:
        major, minor = self.drv.Device(0).compute_capability()
        return f"{major}.{minor}"


def _load_cudart() -> ctypes.CDLL:
    """One search for libcudart, shared with the bundle's engine runner (``standalone.load_cudart``)."""
    from edgeres.backends.tensorrt.standalone import CUDART_MISSING, load_cudart

    lib = load_cudart()
    if lib is None:
        raise BackendUnavailable(CUDART_MISSING)
    return lib


def cuda_runtime() -> Cuda:
    """pycuda when importable, else libcudart through ctypes; ``BackendUnavailable`` when neither is there."""
    if importlib.util.find_spec("pycuda") is not None:
        try:
            return PyCuda()
        except Exception:  # pycuda present but unusable (no driver context): the runtime library may still work
            pass
    return CudartCuda()
