"""TensorRT behind the ``Backend`` interface: ``compile`` builds an engine, ``load`` opens a ``TrtSession``."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgeres.artifacts import read_manifest
from edgeres.backends.base import Compiled, EngineSpec
from edgeres.backends.tensorrt import cuda as cuda_mod
from edgeres.backends.tensorrt.api import HOW_TO_GET, tensorrt_version
from edgeres.backends.tensorrt.build import build_engine
from edgeres.errors import ArtifactError, BackendUnavailable

if TYPE_CHECKING:
    from edgeres.backends.tensorrt.session import TrtSession
    from edgeres.targets import TargetProfile


class TensorRTBackend:
    """Engines built and run on this machine's GPU with its own TensorRT (JetPack's, or a desktop wheel)."""

    name = "tensorrt"

    def available(self) -> tuple[bool, str]:
        if tensorrt_version() is None:
            return False, HOW_TO_GET
        try:
            cuda_mod.cuda_runtime()
        except BackendUnavailable as e:
            return False, str(e)
        return True, ""

    def compile(self, onnx: Path, target: TargetProfile, out: Path, spec: EngineSpec,
                timing_cache: Path | None = None) -> Compiled:
        r = build_engine(onnx, out, spec, timing_cache)
        return Compiled(r.engine, r.to_dict())

    def load(self, artifact: Path, target: TargetProfile, simulate: bool = False) -> TrtSession:
        """Open an engine built here; one from another TensorRT or GPU is refused before deserializing."""
        from edgeres.backends.tensorrt.session import TrtSession
        gpu, _ = self.device()
        man = check_engine_fits(Path(artifact), str(tensorrt_version()), gpu)
        return TrtSession(Path(artifact), dla_core=(man.get("config") or {}).get("dla_core"))

    def device(self) -> tuple[str, str]:
        """(GPU name, compute capability) of device 0, for engine names and manifests."""
        cuda = cuda_mod.cuda_runtime()
        return cuda.device_name(), cuda.compute_capability()


def check_engine_fits(engine: Path, tensorrt: str, gpu: str) -> dict:
    """Refuse, before deserializing, an engine built by another TensorRT or on another GPU (its manifest says); the
    manifest otherwise.
    """
    man = read_manifest(engine)
    if man is None:
        raise ArtifactError(f"{engine} has no manifest ({engine}.json), so where it was built is unknown; rebuild it "
                            f"on this device with `edgeres build`")
    res = man.get("results", {})
    if str(res.get("tensorrt")) != tensorrt or str(res.get("gpu")) != gpu:
        raise ArtifactError(f"{engine} was built by TensorRT {res.get('tensorrt')} on {res.get('gpu')} (its manifest);"
                            f" this machine has TensorRT {tensorrt} on {gpu}, and engines do not move between them; "
                            f"rebuild it here with `edgeres build`")
    return man
