"""Runtimes behind one small interface, so accuracy and latency code is the same for all of them."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from edgeres.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from edgeres.targets import TargetProfile


@runtime_checkable
class Session(Protocol):
    """A loaded model: NCHW float32 in, logits out."""

    input_name: str
    device: str  # where inference runs: "cpu", "cuda:0", "dla:0" …
    copies_timed: bool  # whether infer() includes host↔device copies

    def infer(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class Backend(Protocol):
    name: str

    def available(self) -> tuple[bool, str]:
        """(True, "") or (False, how to get it); never raises."""
        ...

    def compile(self, onnx: Path, target: "TargetProfile", out: Path) -> Path: ...

    def load(self, artifact: Path, target: "TargetProfile") -> Session: ...


def infer_all(session: Session, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits for every row of ``x``, in batches."""
    outs = [session.infer(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.empty((0, 0), np.float32)


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
