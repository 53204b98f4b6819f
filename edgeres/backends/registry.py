"""The backend for a runtime's name, imported only when asked for (TensorRT only on a TensorRT target)."""
from __future__ import annotations

from edgeres.backends.base import Backend
from edgeres.errors import BackendUnavailable, ConfigError


def get_backend(name: str) -> Backend:
    """The backend called ``name``; TensorRT is imported only here, lazily."""
    if name == "onnxruntime":
        from edgeres.backends.onnxruntime import OrtBackend
        return OrtBackend()
    if name == "torch":
        from edgeres.backends.torch import TorchBackend
        return TorchBackend()
    if name == "tensorrt":
        from edgeres.backends.tensorrt import TensorRTBackend
        return TensorRTBackend()
    raise ConfigError(f"unknown runtime {name!r}; choose onnxruntime, torch or tensorrt")


def require(backend: Backend) -> Backend:
    ok, why = backend.available()
    if not ok:
        raise BackendUnavailable(why)
    return backend
