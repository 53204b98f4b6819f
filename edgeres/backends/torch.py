"""PyTorch eager sessions: the float reference, on the CPU or on CUDA in fp32/fp16."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from edgeres.backends.base import ClosingSession, Compiled, EngineSpec
from edgeres.errors import BackendUnavailable, ConfigError
from edgeres.models import load_checkpoint

if TYPE_CHECKING:
    from edgeres.targets import TargetProfile


class TorchSession(ClosingSession):
    """Eager PyTorch; on CUDA ``infer`` includes the host↔device copies and synchronizes."""

    input_name = "input"
    max_batch: int | None = None
    threads: int | None = None
    activation_bytes: int | None = None

    def __init__(self, model: torch.nn.Module, device: str = "cpu", half: bool = False) -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("CUDA is not available to PyTorch; use --device cpu or install a CUDA build of torch")
        if half and not device.startswith("cuda"):
            raise ConfigError("fp16 PyTorch runs only on CUDA; drop --half or use a GPU")
        self.device = device
        self.copies_timed = device.startswith("cuda")
        self.half = half
        self.model = model.to(device).eval()
        if half:
            self.model = self.model.half()
        if device == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it

    @classmethod
    def from_checkpoint(cls, path: Path, device: str = "cpu", half: bool = False) -> TorchSession:
        return cls(load_checkpoint(path).model(), device, half)

    @torch.inference_mode()
    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device)
        if self.half:
            x = x.half()
        y = self.model(x).float()
        return y.cpu().numpy()

    def profile(self, batch: np.ndarray, runs: int, workdir: Path) -> None:
        return None  # PyTorch eager is the baseline; its layers are not the deployment's

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


class TorchBackend:
    name = "torch"

    def available(self) -> tuple[bool, str]:
        return True, ""

    def compile(self, onnx: Path, target: TargetProfile, out: Path, spec: EngineSpec,
                timing_cache: Path | None = None) -> Compiled:
        raise ConfigError("the torch backend runs checkpoints, not ONNX; pass the .pt checkpoint")

    def load(self, artifact: Path, target: TargetProfile, simulate: bool = False) -> TorchSession:
        return TorchSession.from_checkpoint(artifact)
