"""ONNX → the artifact a target runs: a TensorRT engine, or for cpu an ONNX Runtime-optimized ONNX."""
from __future__ import annotations

from pathlib import Path

from edgeres.artifacts import refuse_overwriting_inputs, write_manifest
from edgeres.backends import get_backend, require
from edgeres.errors import ConfigError
from edgeres.onnx_model import load_onnx, onnx_info
from edgeres.targets import load_target


def ort_optimized_from_onnx(onnx: Path, out: Path, threads: int | None = None) -> Path:
    """Save ONNX Runtime's fully optimized graph for this CPU (Q/DQ fused into integer kernels)."""
    import onnxruntime as ort

    from edgeres.artifacts import atomic_path

    with atomic_path(out) as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(tmp)
        so.log_severity_level = 3
        ort.InferenceSession(str(onnx), so, providers=["CPUExecutionProvider"])
    return out


DEFAULT_MAX_BATCH = 32  # the engines' optimization profile: batch 1 to this


def engine_config(target: str, precision: str, dla_core: int | None, max_batch: int) -> dict:
    """What an engine's manifest records as its configuration: a rebuild is due when any of it changes."""
    return {"target": target, "precision": precision, "dla_core": dla_core, "max_batch": max_batch}


def engine_for_bench(onnx: Path, target_name: str, max_batch: int) -> Path:
    """The engine ``bench`` runs for ``onnx``: reused when its manifest says it is up to date, else built."""
    from edgeres.artifacts import is_fresh
    from edgeres.backends.tensorrt import device_name, engine_name

    precision = onnx_info(onnx).precision
    out = Path(onnx).with_name(engine_name(Path(onnx), precision, max_batch, device_name()))
    if not is_fresh(out, {"onnx": onnx}, engine_config(target_name, precision, None, max_batch)):
        engine_from_onnx(onnx, target_name, out, precision, None, max_batch)
    return out


def engine_from_onnx(onnx: Path, target_name: str, out: Path | None = None, precision: str | None = None,
                     dla_core: int | None = None, max_batch: int = DEFAULT_MAX_BATCH) -> dict:
    """Build ``onnx`` for ``target_name``; returns what was made and where."""
    target = load_target(target_name)
    if out is not None:
        refuse_overwriting_inputs(Path(out), {"input model": Path(onnx)})
    model = load_onnx(onnx)
    info = onnx_info(onnx, model)
    is_qdq = info.precision == "int8"
    precision = precision or info.precision
    if is_qdq and precision != "int8":
        raise ConfigError(f"{onnx} is a Q/DQ (int8) model; build it as int8 or build the float ONNX instead")
    target.check_precision(precision)
    target.check_dla(dla_core)
    if target.runtime == "onnxruntime":
        if dla_core is not None or precision == "fp16":
            raise ConfigError("the cpu target runs fp32 and int8 only, without DLA")
        out = out or Path(onnx).with_name(f"{Path(onnx).stem}.ort-cpu.onnx")
        ort_optimized_from_onnx(Path(onnx), out)
    else:
        from edgeres.backends.tensorrt import build_engine, device_name, engine_name

        require(get_backend("tensorrt"))
        out = out or Path(onnx).with_name(engine_name(Path(onnx), precision, max_batch, device_name()))
        build_engine(Path(onnx), out, target, precision, is_qdq, info.preprocessing.input_shape, max_batch,
                     dla_core, timing_cache=Path(onnx).with_name("timing.cache"))
    write_manifest(out, f"engine-{target.runtime}", {"onnx": onnx},
                   engine_config(target.name, precision, dla_core, max_batch), info.preprocessing.to_dict())
    return {"artifact": str(out), "runtime": target.runtime, "precision": precision, "target": target.name}
