"""ONNX Runtime sessions on the CPU: optimized (real latency) or as Q/DQ simulation."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeres.backends.base import ClosingSession, Compiled, EngineSpec, infer_all, pad_batch
from edgeres.errors import ArtifactError
from edgeres.hw import usable_cores

if TYPE_CHECKING:
    from edgeres.backends.profile import LayerProfile
    from edgeres.targets import TargetProfile


class OrtSession(ClosingSession):
    """An ``InferenceSession`` on the CPU execution provider.

    ``simulate=True`` turns graph optimizations off, so Q/DQ nodes run as fake-quant in fp32:
    the arithmetic TensorRT performs, without this CPU's int8 kernels.
    """

    copies_timed = False
    device = "cpu"
    max_batch: int | None = None
    activation_bytes: int | None = None  # CPU memory: measured from outside the process (edgeres.backends.memory)

    def __init__(self, path: Path, threads: int | None = None, simulate: bool = False, quiet: bool = False) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or usable_cores()
        so.inter_op_num_threads = 1
        so.log_severity_level = 4 if quiet else 3  # quiet: a failure the caller expects and handles
        if simulate:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            self._sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise ArtifactError(f"ONNX Runtime cannot load {path} ({first}); re-run `edgeres export`") from None
        inp = self._sess.get_inputs()[0]
        self.input_name: str = inp.name
        self.input_shape = inp.shape
        if isinstance(inp.shape[0], int):  # a graph with its batch fixed (an imported model that needs it)
            self.max_batch = inp.shape[0]
            self.infer = self._padded  # type: ignore[method-assign]  # the check stays out of a dynamic model's calls
        self.output_name: str = self._sess.get_outputs()[0].name
        self.threads = so.intra_op_num_threads
        self.simulate = simulate
        self.path = Path(path)
        self._run = self._sess.run
        self._outputs = [self.output_name]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._run(self._outputs, {self.input_name: batch})[0]

    def _padded(self, batch: np.ndarray) -> np.ndarray:
        """``infer`` of a graph of fixed batch, which takes its own batch only: a short one is padded, then cut."""
        return self._run(self._outputs, {self.input_name: pad_batch(batch, self.max_batch or 0)})[0][:len(batch)]

    def profile(self, batch: np.ndarray, runs: int, workdir: Path) -> LayerProfile | None:
        """ONNX Runtime's profiler on a session of its own; None for a Q/DQ simulation, whose time is no device's."""
        from edgeres.backends.profile import onnxruntime_profile

        return None if self.simulate else onnxruntime_profile(self.path, self.threads, batch, runs, workdir)

    def infer_all(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return infer_all(self, x, batch_size)

    def close(self) -> None:
        self._sess = None
        self._run = None


class OrtBackend:
    name = "onnxruntime"

    def available(self) -> tuple[bool, str]:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False, "onnxruntime is not installed; pip install onnxruntime"
        return True, ""

    def compile(self, onnx: Path, target: TargetProfile, out: Path, spec: EngineSpec | None = None,
                timing_cache: Path | None = None) -> Compiled:
        """ONNX Runtime's fully optimized graph for this CPU (Q/DQ fused into integer kernels), saved to ``out``."""
        import onnxruntime as ort

        from edgeres.artifacts import atomic_path

        with atomic_path(out) as tmp:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.optimized_model_filepath = str(tmp)
            so.log_severity_level = 3
            ort.InferenceSession(str(onnx), so, providers=["CPUExecutionProvider"])
        return Compiled(Path(out), {})

    def load(self, artifact: Path, target: TargetProfile, simulate: bool = False) -> OrtSession:
        return OrtSession(artifact, target.threads, simulate)
