"""ONNX → the artifact a target runs: a TensorRT engine, or for cpu an ONNX Runtime-optimized ONNX.

Before any TensorRT work the request is checked: the precision and DLA core against the target, the ONNX against the
parser of the target's (and the installed) TensorRT, the installed TensorRT against the target's JetPacks, and this
machine against the board (an engine is tuned to the GPU it was built on). Engines are named after model, precision,
batch profile, TensorRT version and GPU, and their manifest records where they were really built.
"""
from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

from edgeres import targets as targets_mod
from edgeres.artifacts import is_fresh, read_manifest, refuse_overwriting_inputs, write_manifest
from edgeres.backends import get_backend, require
from edgeres.backends.base import EngineSpec
from edgeres.config import BuildConfig
from edgeres.errors import ConfigError
from edgeres.onnx_limits import require_parsable
from edgeres.onnx_model import OnnxInfo, load_onnx, onnx_info
from edgeres.targets import TargetProfile, load_target


@dataclass
class BuildOutput:
    """The artifact ``build`` made, for the CLI and for bench."""

    artifact: Path
    runtime: str
    precision: str  # as reported: fp32, tf32, fp16, int8
    target: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": str(self.artifact), "runtime": self.runtime, "precision": self.precision,
                "target": self.target, **self.details}


def this_machine(model_file: Path | None = None) -> str:
    """What this machine is: the Jetson's device-tree model, else the host's architecture and name."""
    try:
        return (model_file or targets_mod.DEVICE_TREE_MODEL).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return f"{platform.machine()} host {platform.node()}"


def check_build_machine(target: TargetProfile, force: bool, model_file: Path | None = None) -> tuple[str, bool]:
    """Refuse to build a Jetson target's engine anywhere but on that board, unless forced.

    Returns what this machine is, and whether the build is forced onto a machine that is not the target's board.
    """
    here = this_machine(model_file)
    elsewhere = target.kind == "jetson" and not any(m.lower() in here.lower() for m in target.model_match)
    if elsewhere and not force:
        raise ConfigError(f"{target.name} engines are built on that board, and this machine is {here!r}: TensorRT "
                          f"tunes an engine to the GPU that builds it; add --host user@device to build there with its "
                          f"trtexec, or pass --force-device to build here anyway")
    return here, elsewhere


def build_precision(info: OnnxInfo, asked: str | None, onnx: Path) -> str:
    is_qdq = info.precision == "int8"
    precision = asked or info.precision
    if is_qdq and precision != "int8":
        raise ConfigError(f"{onnx} is a Q/DQ (int8) model; build it as int8 or build the float ONNX instead")
    if precision == "int8" and not is_qdq:
        raise ConfigError(f"edgeres builds int8 engines from explicit Q/DQ ONNX only: run `edgeres quantize {onnx} "
                          f"--int8` and build that")
    return precision


def engine_spec(onnx: Path, info: OnnxInfo, cfg: BuildConfig, precision: str, fp16_onnx: bool) -> EngineSpec:
    """The engine ``cfg`` asks for: a profile of 1 to ``max_batch`` optimized for ``batch``; static at ``batch`` on a
    DLA, and at the graph's own batch where the graph fixes it (TensorRT takes no other profile for a static input).
    """
    batch, static = cfg.batch, cfg.dla_core is not None
    fixed = info.input_shape[0] if isinstance(info.input_shape[0], int) else None
    if fixed is not None:
        if batch not in (1, fixed):
            raise ConfigError(f"{onnx} fixes its batch at {fixed} in its graph, so its engine takes batch {fixed} only; "
                              f"drop --batch, or export the model with a dynamic batch")
        batch, static = fixed, True
    spec = EngineSpec(precision, tuple(info.preprocessing.input_shape), batch if static else 1, batch,
                      batch if static else cfg.max_batch, cfg.dla_core, cfg.allow_tf32, fp16_onnx)
    spec.validate()
    return spec


def timing_cache_path(tensorrt: str, gpu: str, cc: str) -> Path:
    """One timing cache per TensorRT version and GPU (a cache from another is rejected by TensorRT)."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgeres" / "timing"
    return base / f"trt{tensorrt}.{_safe(gpu)}.sm{cc}.cache"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text.lower())


def engine_name(onnx: Path, label: str, batch: int, max_batch: int, dla_core: int | None, tensorrt: str,
                gpu: str) -> str:
    """Engines are tied to model, precision, profile, TensorRT version and GPU: all are in the file name."""
    dla = "" if dla_core is None else f".dla{dla_core}"
    return f"{Path(onnx).stem}.{label}.b{batch}-{max_batch}{dla}.trt{tensorrt}.{_safe(gpu)}.engine"


def engine_from_onnx(onnx: Path, cfg: BuildConfig, out: Path | None = None, reuse: bool = False) -> BuildOutput:
    """Build ``onnx`` for ``cfg.target``; with ``reuse``, an engine whose manifest still matches is kept."""
    cfg.validate()
    target = load_target(cfg.target)
    if out is not None:
        refuse_overwriting_inputs(Path(out), {"input model": Path(onnx)})
    model = load_onnx(onnx)
    info = onnx_info(onnx, model)
    precision = build_precision(info, cfg.precision, Path(onnx))
    target.check_precision(precision)
    target.check_dla(cfg.dla_core)
    if target.runtime == "onnxruntime":
        if cfg.dla_core is not None or precision == "fp16":
            raise ConfigError("the cpu target runs fp32 and int8 only, without DLA")
        out = out or Path(onnx).with_name(f"{Path(onnx).stem}.ort-cpu.onnx")
        spec = EngineSpec(precision, tuple(info.preprocessing.input_shape))
        require(get_backend("onnxruntime")).compile(Path(onnx), target, out, spec)
        write_manifest(out, "engine-onnxruntime", {"onnx": onnx}, asdict(cfg), info.preprocessing.to_dict(),
                       {"classes": info.classes})
        return BuildOutput(out, "onnxruntime", precision, target.name, {})
    require_parsable(Path(onnx), model, target)
    built_on, forced = check_build_machine(target, cfg.force_device)
    backend = require(get_backend("tensorrt"))
    from edgeres.backends.tensorrt import tensorrt_version

    version = tensorrt_version() or Version("0")
    target.check_tensorrt(version)
    target.check_dla(cfg.dla_core, version)
    require_parsable(Path(onnx), model, target, version)
    gpu, cc = backend.device()  # type: ignore[attr-defined]  # TensorRTBackend: the GPU engines are tied to
    source, fp16_onnx = Path(onnx), False
    if precision == "fp16" and version >= Version("11"):
        source, fp16_onnx = _fp16_source(Path(onnx)), True
    spec = engine_spec(Path(onnx), info, cfg, precision, fp16_onnx)
    out = out or Path(onnx).with_name(engine_name(Path(onnx), spec.label, spec.opt_batch, spec.max_batch,
                                                  cfg.dla_core, str(version), gpu))
    config = {**asdict(cfg), "spec": asdict(spec)}
    if reuse and is_fresh(out, {"onnx": source}, config):  # what the build found then comes with it
        return BuildOutput(out, "tensorrt", spec.label, target.name,
                           {**(read_manifest(out) or {}).get("results", {}), "reused": True})
    result = backend.compile(source, target, out, spec, timing_cache_path(str(version), gpu, cc))
    details = {**result.details, "target": target.name, "gpu": gpu, "compute_capability": cc, "built_on": built_on,
               "forced_device": forced, "classes": info.classes}
    write_manifest(out, "engine-tensorrt", {"onnx": source}, config, info.preprocessing.to_dict(), details)
    return BuildOutput(out, "tensorrt", spec.label, target.name, details)


def _fp16_source(onnx: Path) -> Path:
    """TensorRT 11 builds FP16 from an FP16 graph: made beside the float ONNX (float32 I/O kept), reused when fresh."""
    from edgeres.onnx_fp16 import fp16_from_onnx

    out = onnx.with_name(f"{onnx.stem}.fp16.onnx")
    if not is_fresh(out, {"onnx": onnx}, {"io": "float32", "compute": "float16"}):
        fp16_from_onnx(onnx, out)
    return out
