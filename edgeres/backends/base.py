"""Runtimes behind one small interface, so accuracy and latency code is the same for all of them.

``build`` calls ``Backend.compile`` and ``bench`` calls ``Backend.load``, for every runtime. A ``Session`` declares
what bench reads of it (``max_batch``, ``threads``, ``device``, ``copies_timed``, ``activation_bytes``, ``profile``)
and closes as a context manager.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from edgeres.errors import ConfigError

if TYPE_CHECKING:
    from edgeres.backends.profile import LayerProfile
    from edgeres.targets import TargetProfile


@runtime_checkable
class Session(Protocol):
    """A loaded model: NCHW float32 in, logits out."""

    input_name: str
    device: str  # where inference runs: "cpu", "cuda:0", "dla:0" …
    copies_timed: bool  # whether infer() includes host↔device copies
    max_batch: int | None  # the largest batch it takes (an engine's profile); None: any
    threads: int | None  # CPU threads it uses; None where that is not the runtime's to say
    activation_bytes: int | None  # device memory for activations where the runtime reports it (TensorRT); else None

    def infer(self, batch: np.ndarray) -> np.ndarray: ...

    def profile(self, batch: np.ndarray, runs: int, workdir: Path) -> LayerProfile | None:
        """Each layer's mean time over ``runs`` calls on ``batch``, from the runtime's own profiler; None where it
        has none that edgeres reads (PyTorch eager).
        """
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Session: ...

    def __exit__(self, *exc: object) -> None: ...


class ClosingSession:
    """Mixin: a session is a context manager that closes itself."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class EngineSpec:
    """How to compile one model. ``precision`` is what the ONNX is built as: fp32, fp16 or int8 (Q/DQ)."""

    precision: str
    input_shape: tuple[int, ...]  # C, H, W
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    dla_core: int | None = None
    allow_tf32: bool = False
    onnx_is_fp16: bool = False  # TensorRT 11: FP16 comes from an FP16 graph (float32 I/O)

    def validate(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ConfigError(f"batch profile must be 1 ≤ min ≤ opt ≤ max, got {self.min_batch}/{self.opt_batch}/"
                              f"{self.max_batch}")
        if self.dla_core is not None:
            if self.precision == "fp32":
                raise ConfigError("the DLA runs fp16 or int8 only; build with --precision fp16 or an int8 Q/DQ model")
            if not self.min_batch == self.opt_batch == self.max_batch:
                raise ConfigError("a DLA engine needs a static batch (min = opt = max)")

    @property
    def label(self) -> str:
        """The precision as reported: fp32 engines that may use TF32 say so."""
        return "tf32" if self.precision == "fp32" and self.allow_tf32 else self.precision


@dataclass
class Compiled:
    """What ``Backend.compile`` made: the artifact and the facts its manifest records."""

    artifact: Path
    details: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def available(self) -> tuple[bool, str]:
        """(True, "") or (False, how to get it); never raises."""
        ...

    def compile(self, onnx: Path, target: TargetProfile, out: Path, spec: EngineSpec,
                timing_cache: Path | None = None) -> Compiled: ...

    def load(self, artifact: Path, target: TargetProfile, simulate: bool = False) -> Session: ...


def infer_all(session: Session, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits for every row of ``x``, in batches (no larger than the session takes)."""
    batch_size = min(batch_size, session.max_batch or batch_size)
    outs = [session.infer(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.empty((0, 0), np.float32)


def pad_batch(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` with zero images added up to ``size`` rows: what a model of one fixed batch (a graph that fixes it, a
    static engine) is given for a short batch; its outputs are cut back to ``len(x)`` rows by the caller.
    """
    if len(x) >= size:
        return x
    return np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), x.dtype)])
