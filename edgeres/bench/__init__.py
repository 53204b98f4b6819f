"""ONNX models (+ optional checkpoint) → report: accuracy against fp32 and latency, for every precision."""
from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgeres.artifacts import sha256_file, versions
from edgeres.backends import Session, get_backend, infer_all, require
from edgeres.bench.accuracy import accuracy
from edgeres.bench.latency import LatencyConfig, measure_latency
from edgeres.data.datasets import load_dataset
from edgeres.errors import AccuracyBudgetExceeded, ConfigError, DataError
from edgeres.onnx_model import OnnxInfo, load_onnx, metadata, onnx_info
from edgeres.progress import log
from edgeres.quantize import RECIPE_KEY
from edgeres.quantize.check import require_valid_qdq
from edgeres.hw import cpu_features
from edgeres.quantize.recipes import recipe_for
from edgeres.targets import TargetProfile, load_target

SCHEMA = "edgeres.bench/1"


@dataclass(frozen=True)
class BenchConfig:
    target: str = "cpu"
    data: str | None = None  # evaluation set; default: the one named in the model's metadata
    limit: int | None = None  # evaluate on the first N images only (tests)
    batch: int = 1
    throughput_batch: int = 32
    threads: int | None = None
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    max_drop: float | None = None  # top-1 points against fp32

    def validate(self) -> None:
        self.latency.validate()
        if self.batch < 1 or self.throughput_batch < 1:
            raise ConfigError("--batch and --throughput-batch must be at least 1")
        if self.max_drop is not None and self.max_drop < 0:
            raise ConfigError(f"--max-drop must not be negative, got {self.max_drop}")


@dataclass
class Entry:
    label: str
    path: Path
    info: OnnxInfo
    recipe: dict | None


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


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in _cpuinfo() if ln.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cpu_features": cpu_features(), "cores": os.cpu_count(), "os": platform.platform()}


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _open(entry: Entry, target: TargetProfile, threads: int | None, simulate: bool) -> Session:
    if target.runtime == "onnxruntime":
        from edgeres.backends.onnxruntime import OrtSession
        return OrtSession(entry.path, threads, simulate)
    backend = require(get_backend(target.runtime))
    return backend.load(entry.path, target)


def bench(models: list[Path], out_dir: Path, cfg: BenchConfig = BenchConfig()) -> dict:
    """Measure every model on ``cfg.target``; write report.json, report.md and report.png into ``out_dir``."""
    from edgeres.bench.report import write_reports

    cfg.validate()
    target = load_target(cfg.target)
    entries = _entries(models)
    ref = entries[0]
    for e in entries[1:]:
        target.check_precision(e.info.precision)
        if e.info.preprocessing != ref.info.preprocessing:
            raise ConfigError(f"{e.path} was made with other preprocessing than {ref.path}; quantize the same float model")
    pre = ref.info.preprocessing
    data = cfg.data or ref.info.dataset
    if data is None:
        raise ConfigError(f"{ref.path} does not name its data set; pass --data")
    ds = load_dataset(data, "test")
    if cfg.limit:
        ds = ds.subset(np.arange(min(cfg.limit, len(ds))))
    if (ds.labels < 0).any():
        raise DataError(f"evaluation set {ds.name} has images without labels; use an ImageFolder tree with class folders")
    want = list(pre.input_shape)
    got = [d if isinstance(d, int) else None for d in ref.info.input_shape[1:]]
    if any(g is not None and g != w for g, w in zip(got, want)):
        raise ConfigError(f"{ref.path} takes input {got} but its preprocessing makes {want}; re-export the model")
    x = ds.tensors(pre, f"preprocess {ds.name}")
    results, ref_logits = [], None
    for e in entries:
        rec = recipe_for(e.recipe["recipe"]) if e.recipe else None
        simulate = bool(rec and rec.accuracy_mode == "simulate" and target.runtime == "onnxruntime")
        log(f"{e.label}: accuracy on {len(x)} images{' (Q/DQ simulated in fp32)' if simulate else ''} …")
        sess = _open(e, target, cfg.threads, simulate)
        try:
            logits = infer_all(sess, x, 250)
        finally:
            sess.close()
        acc = accuracy(logits, ds.labels, ref_logits)
        if ref_logits is None:
            ref_logits = logits
        log(f"{e.label}: latency at batch {cfg.batch} and {cfg.throughput_batch} …")
        sess = _open(e, target, cfg.threads, False)
        try:
            lat = measure_latency(sess, x[:cfg.batch], cfg.batch, cfg.latency)
            thr = measure_latency(sess, x[:cfg.throughput_batch], cfg.throughput_batch, cfg.latency)
            threads = getattr(sess, "threads", None)
        finally:
            sess.close()
        representative = rec.latency_representative if (rec and target.runtime == "onnxruntime") else True
        results.append({
            "label": e.label, "model": str(e.path), "sha256": sha256_file(e.path), "precision": e.info.precision,
            "recipe": e.recipe, "runtime": target.runtime, "threads": threads,
            "accuracy_mode": "simulated Q/DQ (fake-quant fp32)" if simulate else "native",
            "accuracy": acc.to_dict(), "latency": lat.to_dict(), "throughput": thr.to_dict(),
            "latency_representative": representative,
            "note": "" if representative else "CPU int8 kernels differ from TensorRT's: this latency says nothing about the device",
        })
    report = {
        "schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "target": asdict(target), "machine": machine(), "versions": versions(),
        "config": asdict(cfg), "dataset": {"name": ds.name, "images": len(ds)},
        "preprocessing": pre.to_dict(), "reference": ref.label,
        "timing": {"clock": "time.perf_counter around Session.infer", "what": "host wall time of one call"},
        "results": results,
    }
    write_reports(report, Path(out_dir))
    if cfg.max_drop is not None:
        bad = [r for r in results[1:] if -r["accuracy"]["delta_top1"] > cfg.max_drop]
        if bad:
            r = bad[0]
            raise AccuracyBudgetExceeded(f"{r['label']} lost {-r['accuracy']['delta_top1']:.2f} top-1 points against "
                                         f"fp32, over --max-drop {cfg.max_drop}; see {Path(out_dir) / 'report.md'}")
    return report
