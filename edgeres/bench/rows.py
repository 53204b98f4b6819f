"""The rows of a bench: each model given (its label, precision and recipe, read from the file), fp16 of the float
model where TensorRT runs it, each fp16 and int8 row again on a DLA core when asked, the engines a TensorRT row
needs, and ``BenchRow``, what the report keeps of each.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeres.config import DEFAULT_MAX_BATCH, BenchConfig, BuildConfig
from edgeres.errors import ConfigError
from edgeres.onnx_model import RECIPE_KEY, OnnxInfo, load_onnx, metadata, onnx_info
from edgeres.quantize.check import require_valid_qdq
from edgeres.quantize.recipes import recipe_for
from edgeres.targets import TargetProfile


@dataclass
class Entry:
    label: str
    path: Path
    info: OnnxInfo
    recipe: dict | None
    precision: str = ""  # the row's precision: the model's own, or fp16 for a TensorRT engine of the float model
    dla_core: int | None = None  # the row's engines run on this DLA core (layers it cannot take fall back to the GPU)

    def __post_init__(self) -> None:
        self.precision = self.precision or self.info.precision

    @property
    def fixed_batch(self) -> int | None:
        """The batch the graph fixes (an imported model whose Reshape bakes it in); None for a dynamic batch."""
        first = self.info.input_shape[0]
        return first if isinstance(first, int) else None


@dataclass
class BenchRow:
    """One measured model: a row of the report (``results[i]`` of schema ``edgeres.bench/1``)."""

    label: str
    model: str
    sha256: str
    precision: str
    runtime: str
    accuracy: dict[str, Any]
    accuracy_mode: str
    recipe: dict[str, Any] | None = None
    latency_representative: bool = True
    note: str = ""
    threads: int | None = None
    latency: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    roofline: dict[str, Any] | None = None
    energy: dict[str, Any] | None = None  # board power in a window of its own, and mJ per image
    memory: dict[str, Any] | None = None  # MemoryUse at the throughput batch; None for PyTorch on CUDA
    thermal: dict[str, Any] | None = None  # hottest zone and GPU clock over the row's timing windows (ThermalWatch.row)
    profile: dict[str, Any] | None = None  # bench --profile: the slowest layers at the latency batch (LayerProfile)
    sweep: list[dict[str, Any]] | None = None  # bench --sweep: a SweepPoint per batch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_rows(models: list[Path], target: TargetProfile, dla_core: int | None = None) -> list[Entry]:
    """The rows a bench on ``target`` reports: every model, plus fp16 of the float model where TensorRT runs it.

    On a TensorRT target, every precision users deploy gets a row: fp32 (TF32 off), fp16 (the only reduced precision
    on Nano and TX2), and int8 for each Q/DQ model. With ``dla_core``, each fp16 and int8 row is repeated on that DLA
    core (``fp16-dla0``): the DLA runs those two precisions only.
    """
    target.check_dla(dla_core)
    entries = _entries(models)
    if target.runtime == "tensorrt" and "fp16" in target.precisions:
        ref = entries[0]
        entries.insert(1, Entry("fp16", ref.path, ref.info, None, "fp16"))
    if dla_core is not None:
        entries += [replace(e, label=f"{e.label}-dla{dla_core}", dla_core=dla_core) for e in entries
                    if e.precision in ("fp16", "int8")]
    return entries


def fixed_batch(entries: list[Entry]) -> int | None:
    """The batch the models' graphs fix (an imported model whose Reshape bakes it in), or None when none does."""
    fixed = sorted({e.fixed_batch for e in entries if e.fixed_batch is not None})
    if len(fixed) > 1:
        raise ConfigError(f"the models fix different batches ({', '.join(map(str, fixed))}), and a bench times every "
                          f"row at the same batch; bench them apart")
    return fixed[0] if fixed else None


def engine_configs(entry: Entry, target: TargetProfile, cfg: BenchConfig) -> dict[str, BuildConfig]:
    """The engines a TensorRT row needs: one optimized for the latency batch (also used for accuracy, up to
    ``DEFAULT_MAX_BATCH``), one for the throughput batch, and with ``cfg.sweep`` the engine of each batch of the
    sweep (``bench/sweep.py``: one for all of them, or a DLA row's static one per batch). Equal ones are one engine.
    """
    from edgeres.bench.sweep import purpose

    dla = entry.dla_core is not None
    fixed = entry.fixed_batch
    if fixed is not None:  # the graph fixes its batch: one static engine serves every purpose
        return {"latency": BuildConfig(target.name, entry.precision, entry.dla_core, fixed, fixed)}
    most = cfg.batch if dla else max(DEFAULT_MAX_BATCH, cfg.batch)  # a DLA engine is static
    lat = BuildConfig(target.name, entry.precision, entry.dla_core, cfg.batch, most)
    thr = BuildConfig(target.name, entry.precision, entry.dla_core, cfg.throughput_batch, cfg.throughput_batch)
    out = {"latency": lat, "throughput": thr} if thr != lat else {"latency": lat}
    for b in cfg.sweep:
        top = b if dla else max(cfg.sweep)
        out[purpose(b)] = BuildConfig(target.name, entry.precision, entry.dla_core, top, top)
    return out


def _entries(models: list[Path]) -> list[Entry]:
    out, seen = [], set()
    for p in models:
        model = load_onnx(Path(p))
        info = onnx_info(Path(p), model)
        rec = json.loads(metadata(model)[RECIPE_KEY]) if RECIPE_KEY in metadata(model) else None
        label = info.precision if rec is None else f"{info.precision}-{rec['recipe']}"
        if rec is not None:
            require_valid_qdq(model, recipe_for(rec["recipe"]).tensorrt_rules, str(p))
        if label in seen:
            label = f"{label}:{Path(p).stem}"
        seen.add(label)
        out.append(Entry(label, Path(p), info, rec))
    refs = [e for e in out if e.info.precision == "fp32"]
    if len(refs) != 1:
        raise ConfigError(f"bench needs exactly one fp32 model as the reference, got {len(refs)}; "
                          f"pass the float ONNX from `edgeres export` once")
    return sorted(out, key=lambda e: e.info.precision != "fp32")
