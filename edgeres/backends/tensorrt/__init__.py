"""TensorRT: the only package that imports ``tensorrt`` or CUDA bindings, and only when used.

Written against the documented Python API of TensorRT 8.5/8.6 (JetPack 5–6.0), 10.x (JetPack 6.1/6.2
ships 10.3) and 11.x. Differences handled here:

- < 10: ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` is needed; from 10 it is the default.
- 8.5–10.x: a Q/DQ model still needs ``BuilderFlag.INT8`` (and FP16 for the layers left in float).
- 11.x: networks are strongly typed; ``BuilderFlag.INT8/FP16`` and calibrators are gone. INT8 comes
  from the Q/DQ nodes alone, and FP16 needs an ONNX model already in FP16.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from edgeres.errors import ArtifactError, BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from edgeres.targets import TargetProfile

HOW_TO_GET = ("TensorRT needs an NVIDIA GPU and the tensorrt package: on a Jetson it ships with JetPack; "
              "on a desktop, pip install tensorrt (or edgeres[tensorrt]). Use --target cpu to measure on this machine.")
WORKSPACE_BYTES = 1 << 30


def tensorrt_version() -> Version | None:
    """The installed TensorRT version, without importing it."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    from importlib import metadata
    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt_libs"):
        try:
            return Version(metadata.version(dist))
        except metadata.PackageNotFoundError:
            continue
    import tensorrt as trt  # JetPack installs it as a system module without dist metadata
    return Version(trt.__version__)


def _trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable(f"{HOW_TO_GET} ({e})") from None
    return trt


def engine_name(onnx: Path, precision: str, max_batch: int, device: str) -> str:
    """Engines are tied to the TensorRT version and the GPU: both are in the file name."""
    ver = tensorrt_version() or "none"
    safe = "".join(c if c.isalnum() or c in "-." else "-" for c in device.lower())
    return f"{onnx.stem}.{precision}.b{max_batch}.trt{ver}.{safe}.engine"


def build_flags(version: Version, precision: str, onnx_is_qdq: bool) -> tuple[list[str], bool]:
    """Builder flags to set, and whether to make a strongly typed network, for this TensorRT version."""
    if version >= Version("11"):
        if precision == "fp16":
            raise ConfigError("TensorRT 11 has no FP16 builder flag: convert the ONNX to FP16 first "
                              "(python -m modelopt.onnx.autocast) and build it as fp32")
        if precision == "int8" and not onnx_is_qdq:
            raise ConfigError("TensorRT 11 builds INT8 only from Q/DQ ONNX: run `edgeres quantize --int8` first")
        return [], True
    flags = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[precision]
    if precision == "int8" and not onnx_is_qdq:
        raise ConfigError("edgeres builds INT8 engines from explicit Q/DQ ONNX only: run `edgeres quantize --int8` first")
    return flags, False


def build_engine(onnx: Path, out: Path, target: "TargetProfile", precision: str, onnx_is_qdq: bool,
                 input_shape: tuple[int, ...], max_batch: int = 32, dla_core: int | None = None,
                 timing_cache: Path | None = None) -> Path:
    """Parse ``onnx``, build a serialized engine for this GPU, write it atomically to ``out``."""
    from edgeres.artifacts import atomic_path

    trt = _trt()
    version = Version(trt.__version__)
    target.check_precision(precision)
    target.check_dla(dla_core)
    flags, strongly_typed = build_flags(version, precision, onnx_is_qdq)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    net_flags = 0
    if version < Version("10"):
        net_flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed and version < Version("11"):
        net_flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(net_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"TensorRT's ONNX parser rejected {onnx}: {errs[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    for f in flags:
        config.set_flag(getattr(trt.BuilderFlag, f))
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    c_h_w = tuple(input_shape)
    profile.set_shape(name, (1, *c_h_w), (max_batch, *c_h_w), (max_batch, *c_h_w))
    config.add_optimization_profile(profile)
    cache = None
    if timing_cache is not None:
        blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ArtifactError(f"TensorRT could not build {onnx} for {target.name} ({precision}); "
                            f"see the TensorRT log above")
    with atomic_path(out) as tmp:
        tmp.write_bytes(bytes(plan))
    if cache is not None and timing_cache is not None:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(bytes(cache.serialize()))
    return out


class TensorRTBackend:
    name = "tensorrt"

    def available(self) -> tuple[bool, str]:
        if tensorrt_version() is None:
            return False, HOW_TO_GET
        try:
            import torch
            if torch.cuda.is_available():
                return True, ""
        except ImportError:
            pass
        return False, ("TensorRT is installed but torch has no CUDA here (device buffers come from torch); "
                       "install a CUDA build of torch (on JetPack, NVIDIA's torch wheel)")

    def compile(self, onnx: Path, target: "TargetProfile", out: Path) -> Path:
        from edgeres.onnx_model import load_onnx, onnx_info
        info = onnx_info(onnx, load_onnx(onnx))
        qdq = info.precision == "int8"
        return build_engine(onnx, out, target, "int8" if qdq else "fp32", qdq, info.preprocessing.input_shape)

    def load(self, artifact: Path, target: "TargetProfile") -> "Any":
        from edgeres.backends.tensorrt.session import TrtSession
        return TrtSession(Path(artifact))


def device_name() -> str:
    """The CUDA device's name, for engine file names; 'gpu0' when it cannot be read."""
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return os.environ.get("EDGERES_GPU_NAME", "gpu0")
