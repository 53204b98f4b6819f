"""The ``tensorrt`` module and what differs between its releases (8.2 to 11.x), decided by version, never by probing.

The facts come from NVIDIA's pybind sources (../shared/tensorrt-api/, ../shared/jetpack.md):
- 8.2 has only the bindings API (``get_binding_*``, ``set_binding_shape``, ``execute_async_v2``) and
  ``max_workspace_size``; the name-based I/O and ``set_memory_pool_limit`` come with 8.5; 10.0 drops the bindings.
- ``tensorrt.nptype`` maps bool to ``np.bool``, which numpy 1.24 removed (8.2, 8.5.0–8.5.2): it is never called here.
- ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` is needed before 10 and gone in 11; 11 is always strongly typed,
  without ``BuilderFlag.FP16``/``INT8``.
- ``IProgressMonitor`` exists from 10.0.
- an engine's activation memory is ``device_memory_size`` up to 10.x and ``device_memory_size_v2`` on 11.
"""
from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import numpy as np
from packaging.version import Version

from edgeres.errors import BackendUnavailable

HOW_TO_GET = ("TensorRT needs an NVIDIA GPU and the tensorrt package: on a Jetson it ships with JetPack (make the "
              "venv with --system-site-packages to see it); on a desktop, pip install tensorrt-cu12. Use --target "
              "cpu to measure on this machine.")
NAME_IO_SINCE = Version("8.5")  # num_io_tensors, get_tensor_*, set_input_shape, execute_async_v3
MEMORY_POOLS_SINCE = Version("8.5")  # set_memory_pool_limit; 8.2 has max_workspace_size
IMPLICIT_BATCH_GONE = Version("10")  # EXPLICIT_BATCH is the default (and the flag deprecated, then removed in 11)
PROGRESS_MONITOR_SINCE = Version("10")
STRONGLY_TYPED_ONLY = Version("11")  # no FP16/INT8 builder flags, no calibrators
DEVICE_MEMORY_V2_ONLY = Version("11")  # ICudaEngine.device_memory_size is gone; device_memory_size_v2 (from 10.x)
# numpy dtype of each TensorRT DataType name (trt.nptype is broken on 8.2 and 8.5.0–8.5.2 with numpy ≥ 1.24)
NUMPY_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
                "BOOL": np.bool_, "UINT8": np.uint8}


def tensorrt_module() -> ModuleType:
    """``import tensorrt``, or ``BackendUnavailable`` that says how to get it."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable(f"{HOW_TO_GET} ({e})") from None
    return trt


def version_of(trt: ModuleType) -> Version:
    """The release of an imported ``tensorrt`` module (JetPack's has no dist metadata, only ``__version__``)."""
    return Version(str(trt.__version__))


def tensorrt_status() -> tuple[Version | None, str]:
    """The TensorRT this Python imports, or None and why not; imports the module only when it is there."""
    import sys

    if importlib.util.find_spec("tensorrt") is None:
        return None, f"{sys.executable} has no tensorrt module"
    try:
        return version_of(tensorrt_module()), ""
    except BackendUnavailable as e:
        return None, str(e).removeprefix(HOW_TO_GET).strip(" ()")
    except (AttributeError, ValueError) as e:
        return None, f"tensorrt imports but names no release ({e})"


def tensorrt_version() -> Version | None:
    """The installed TensorRT version, or None."""
    return tensorrt_status()[0]


def numpy_dtype(trt: ModuleType, dtype: Any) -> np.dtype:
    """The numpy dtype of a ``trt.DataType`` value, by identity against the module's own enum."""
    for name, np_type in NUMPY_DTYPES.items():
        if hasattr(trt.DataType, name) and dtype == getattr(trt.DataType, name):
            return np.dtype(np_type)
    raise BackendUnavailable(f"tensor type {dtype} is not one edgeres can feed; export the model in float32")


def network_flags(trt: ModuleType, version: Version) -> int:
    """``create_network`` flags: explicit batch before 10; strongly typed is the only mode on 11 (no flag needed)."""
    if version < IMPLICIT_BATCH_GONE:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def runtime_for(trt: ModuleType, logger: Any, dla_core: int | None) -> Any:
    """A ``Runtime`` that deserializes onto ``dla_core``: one left unset puts a DLA engine on core 0, whatever the
    core it was built for, without an error (onnxruntime PR 28364, tensorrt_demos issue 463).
    """
    runtime = trt.Runtime(logger)
    if dla_core is not None:
        runtime.DLA_core = dla_core
    return runtime


def set_input_shape(context: Any, engine: Any, name: str, shape: tuple[int, ...], version: Version) -> bool:
    """Set one input's shape on ``context``: by name from 8.5, by binding index on 8.2. False where the shape is outside
    the engine's profile (TensorRT refuses it without raising).
    """
    if version >= NAME_IO_SINCE:
        return context.set_input_shape(name, tuple(shape)) is not False
    return context.set_binding_shape(engine.get_binding_index(name), tuple(shape)) is not False
