"""TensorRT's legacy INT8 calibration cache (implicit quantization, TensorRT ≤ 10, JetPack 4.6/5).

The format is TensorRT's own, as ``IInt8Calibrator.write_calibration_cache`` writes it. It is not
ONNX Runtime's text table:

    TRT-8502-EntropyCalibration2
    input: 3c010a14
    /layer1/layer1.0/relu/Relu_output_0: 3d1d3e2f

The first line names the TensorRT version (getInferLibVersion: major·1000+minor·100+patch before 10,
major·10000+minor·100+patch from 10) and the calibrator. Each further line is a tensor name and its
scale (amax / 127) as the 8 hex digits of a big-endian IEEE-754 float32.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.version import Version

from edgeres.artifacts import write_text_atomic
from edgeres.errors import ArtifactError, ConfigError

if TYPE_CHECKING:
    import onnx

ALGORITHMS = {"entropy": "EntropyCalibration2", "minmax": "MinMaxCalibration", "percentile": "EntropyCalibration2"}


def lib_version(version: str) -> int:
    """TensorRT's getInferLibVersion() number for ``version`` (e.g. 8.5.2 → 8502, 10.3.0 → 100300)."""
    try:
        v = Version(version)
    except Exception:
        raise ConfigError(f"{version!r} is not a TensorRT version; pass e.g. 8.5.2 or 10.3.0") from None
    major, minor, patch = (list(v.release) + [0, 0])[:3]
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def write_calibration_cache(path: Path, amax: dict[str, float], trt_version: str, method: str) -> Path:
    """Write per-tensor ``amax`` (symmetric ranges) as a TensorRT calibration cache."""
    if Version(trt_version) >= Version("11"):
        raise ConfigError("TensorRT 11 removed implicit INT8 calibration; use the Q/DQ ONNX from `edgeres quantize`")
    lines = [f"TRT-{lib_version(trt_version)}-{ALGORITHMS.get(method, 'EntropyCalibration2')}"]
    for name, a in amax.items():
        scale = max(float(a), 1e-12) / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return write_text_atomic(Path(path), "\n".join(lines) + "\n")


def activation_amax(model: onnx.ModelProto) -> dict[str, float]:
    """The symmetric range (scale × 127) of every tensor a Q/DQ model quantizes with one scale: its activations (the
    per-channel weights have a scale per channel and are left out, as a calibration cache holds activations only).
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    amax: dict[str, float] = {}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and len(n.input) > 1 and n.input[1] in inits and n.input[0] not in inits:
            scale = numpy_helper.to_array(inits[n.input[1]])
            if scale.size == 1:
                amax[n.input[0]] = float(scale.reshape(-1)[0]) * 127.0
    return amax


def read_calibration_cache(path: Path) -> tuple[str, dict[str, float]]:
    """The header and per-tensor scales of a TensorRT calibration cache."""
    text = Path(path).read_text().splitlines()
    if not text or not text[0].startswith("TRT-"):
        raise ArtifactError(f"{path} is not a TensorRT calibration cache (no TRT- header)")
    scales = {}
    for ln in text[1:]:
        if not ln.strip():
            continue
        name, _, hexval = ln.rpartition(": ")
        if not name or len(hexval) != 8:
            raise ArtifactError(f"{path}: malformed line {ln!r}")
        scales[name] = struct.unpack(">f", bytes.fromhex(hexval))[0]
    return text[0], scales
