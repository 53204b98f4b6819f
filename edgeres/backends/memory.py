"""How much memory a model takes to run: the file its runtime loads, and what running it adds, per runtime.

- ONNX Runtime: measured. A fresh Python process imports the runtime, resets the kernel's peak-RSS mark, opens the
  session and runs the batch twice; the figures are that peak (``VmHWM``) and the resident set after the runs, each
  less the resident set just before the session. A fresh process, because within bench's own process memory freed
  by an earlier model is reused by the next, and its peak would be hidden. It is CPU memory: the model as loaded,
  ONNX Runtime's own (often prepacked) copies of the weights, the arena for activations, the kernels' buffers.
- PyTorch eager on the CPU (bench's ``--checkpoint`` row): the same, loading the checkpoint in place of the session.
- TensorRT (the Python runner): the engine file, and the execution context's device memory for activations as the
  engine reports it (``device_memory_size`` before 11, ``device_memory_size_v2`` on 11, which has only that one).
- trtexec: the same two from trtexec's own log, its ``[MemUsageChange] TensorRT-managed allocation in engine
  deserialization`` (weights) and ``in IExecutionContext creation`` (activations) lines, in MiB.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MIB = float(1 << 20)
PROC_STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")  # writing "5" resets VmHWM to the current RSS (Linux 4.0 and later)
_TRT_LINE = re.compile(r"TensorRT-managed allocation in (engine deserialization|IExecutionContext creation): "
                       r"CPU \+?(-?\d+), GPU \+?(-?\d+)")


@dataclass(frozen=True)
class MemoryUse:
    """One row's memory at the throughput batch, in MiB; None where the runtime does not say (``how`` says why)."""

    file_mb: float | None  # the file the runtime loads: the ONNX, or the engine (None: its size was not read)
    peak_mb: float | None = None  # measured: the most CPU memory a fresh process gains while it opens and runs it
    held_mb: float | None = None  # measured: what that process still holds after the runs (while it serves)
    weights_mb: float | None = None  # TensorRT's own allocation for the deserialized engine (trtexec's log)
    activations_mb: float | None = None  # TensorRT's execution-context device memory at the engine's profile
    how: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def short(self) -> str:
        """``42.7 MiB file, +160 MiB resident at peak, +147 MiB held`` and the like, for a table's footnote."""
        parts = ["file size not read" if self.file_mb is None else f"{self.file_mb:.1f} MiB file"]
        if self.peak_mb is not None and self.held_mb is not None:
            parts.append(f"+{self.peak_mb:.0f} MiB resident at peak, +{self.held_mb:.0f} MiB held")
        if self.weights_mb is not None:
            parts.append(f"{self.weights_mb:.0f} MiB weights")
        if self.activations_mb is not None:
            parts.append(f"{self.activations_mb:.1f} MiB activations")
        return ", ".join(parts)


def file_mb(path: Path | str) -> float:
    return Path(path).stat().st_size / MIB


def _status_kb(key: str) -> int | None:
    m = re.search(rf"^{key}:\s+(\d+) kB", PROC_STATUS.read_text(), re.M) if PROC_STATUS.exists() else None
    return int(m.group(1)) if m else None


def onnxruntime_memory(path: Path, threads: int | None, batch: int, chw: tuple[int, ...]) -> MemoryUse:
    """The resident memory an ONNX Runtime session of ``path`` adds while it runs ``batch`` images (its peak, and
    what it holds after), measured in a process of its own (see the module's text); the file's size always.
    """
    return resident_memory("onnxruntime", path, threads, batch, chw)


def torch_memory(checkpoint: Path, batch: int, chw: tuple[int, ...]) -> MemoryUse:
    """The same for a checkpoint in PyTorch eager on the CPU (the model built and its weights loaded)."""
    return resident_memory("torch", checkpoint, None, batch, chw)


def resident_memory(runtime: str, path: Path, threads: int | None, batch: int, chw: tuple[int, ...],
                    timeout_s: float = 600.0) -> MemoryUse:
    """Run the probe (this module as a script) for ``runtime`` and read what it printed."""
    opened = "opening the ONNX Runtime session" if runtime == "onnxruntime" else "loading the checkpoint in PyTorch"
    how = (f"resident memory a fresh process gains {opened} and running batch {batch} twice: its peak (VmHWM) and "
           f"what it holds after")
    argv = [sys.executable, "-m", "edgeres.backends.memory", runtime, str(path), str(threads or 0), str(batch),
            *(str(d) for d in chw)]
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False)
    except (subprocess.TimeoutExpired, OSError) as e:
        return MemoryUse(file_mb(path), how=f"not measured: the probe failed ({type(e).__name__})")
    lines = p.stdout.decode(errors="replace").strip().splitlines()
    try:
        got = json.loads(lines[-1]) if p.returncode == 0 and lines else {}
    except ValueError:
        got = {}
    if "peak_kb" not in got:
        err = (p.stderr.decode(errors="replace").strip().splitlines() or ["the probe printed nothing"])[-1][:160]
        return MemoryUse(file_mb(path), how=f"not measured: {got.get('why') or err}")
    return MemoryUse(file_mb(path), peak_mb=(got["peak_kb"] - got["before_kb"]) / 1024,
                     held_mb=(got["after_kb"] - got["before_kb"]) / 1024, how=how)


def trtexec_memory(log: str, engine_bytes: int | None) -> MemoryUse:
    """The engine's size and trtexec's ``[MemUsageChange]`` lines (the first of each kind) from a ``--loadEngine`` run."""
    seen: dict[str, int] = {}
    for kind, _cpu, gpu in _TRT_LINE.findall(log):
        seen.setdefault(kind, int(gpu))
    weights, acts = seen.get("engine deserialization"), seen.get("IExecutionContext creation")
    how = ("trtexec's log: TensorRT-managed GPU allocations for the engine and its execution context (whole MiB)"
           if seen else "trtexec printed no [MemUsageChange] lines")
    return MemoryUse(None if engine_bytes is None else engine_bytes / MIB,
                     weights_mb=None if weights is None else float(weights),
                     activations_mb=None if acts is None else float(acts), how=how)


def _opener(runtime: str, path: Path, threads: int | None) -> Callable[[], Any]:
    """What opens a model for ``runtime``, with the runtime imported now (its code is not the model's memory)."""
    if runtime == "torch":
        from edgeres.backends.torch import TorchSession
        from edgeres.models import load_checkpoint  # noqa: F401  (torch and the model code, before the baseline)

        return lambda: TorchSession.from_checkpoint(path)
    import onnxruntime  # noqa: F401

    from edgeres.backends.onnxruntime import OrtSession

    return lambda: OrtSession(path, threads)


def _probe(argv: list[str]) -> dict[str, Any]:
    """In the probe's own process: open the model, run the batch twice; the resident set before, at peak, after."""
    import numpy as np

    runtime, path, threads, batch = argv[0], Path(argv[1]), int(argv[2]) or None, int(argv[3])
    x = np.zeros((batch, *(int(d) for d in argv[4:])), np.float32)
    open_model = _opener(runtime, path, threads)
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return {"why": "the kernel's peak-RSS mark cannot be reset here (/proc/self/clear_refs)"}
    before, mark = _status_kb("VmRSS"), _status_kb("VmHWM")
    if before is None or mark is None or mark > before + 1024:
        return {"why": "no VmRSS/VmHWM in /proc/self/status, or the peak mark did not reset"}
    sess = open_model()
    sess.infer(x)
    sess.infer(x)
    return {"before_kb": before, "peak_kb": _status_kb("VmHWM"), "after_kb": _status_kb("VmRSS")}


if __name__ == "__main__":
    print(json.dumps(_probe(sys.argv[1:])))
