"""A TensorRT engine behind the Session interface (``execute_async_v3``, TensorRT ≥ 8.5)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeres.backends.tensorrt import _trt
from edgeres.errors import ArtifactError, BackendUnavailable


class TrtSession:
    """One engine, one context, one stream. ``infer`` times host→device, execute and device→host."""

    copies_timed = True

    def __init__(self, engine_path: Path) -> None:
        trt = _trt()
        try:
            import torch
        except ImportError:
            raise BackendUnavailable("TrtSession needs torch with CUDA for device buffers") from None
        if not torch.cuda.is_available():
            raise BackendUnavailable("CUDA is not available: TensorRT engines run on an NVIDIA GPU; use --target cpu")
        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ArtifactError(f"{engine_path} is not an engine for this GPU and TensorRT version; "
                                f"rebuild it on this device with `edgeres build`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.input_name, self.output_name = ins[0], outs[0]
        first = int(self.engine.get_tensor_shape(self.input_name)[0])  # -1 where the batch is dynamic
        self.max_batch = first if first > 0 else int(self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        self.device = f"cuda:{torch.cuda.current_device()}"
        self.stream = torch.cuda.Stream()
        self._out_dtype = torch.from_numpy(np.zeros(0, trt.nptype(self.engine.get_tensor_dtype(self.output_name)))).dtype

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.cuda.stream(self.stream):
            x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device, non_blocking=True)
            self.context.set_input_shape(self.input_name, tuple(x.shape))
            y = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=self._out_dtype,
                            device=self.device)
            self.context.set_tensor_address(self.input_name, x.data_ptr())
            self.context.set_tensor_address(self.output_name, y.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise ArtifactError("TensorRT execution failed; see the TensorRT log")
            out = y.float().cpu()
        self.stream.synchronize()
        return out.numpy()

    def close(self) -> None:
        self.context = None
        self.engine = None
