"""ONNX models (+ optional checkpoint) → report: accuracy against fp32 and latency, for every precision."""
from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgeres.artifacts import check_out, sha256_file, versions
from edgeres.backends import Session, get_backend, infer_all, require
from edgeres.backends.latency import LatencyStats, compare_latency
from edgeres.bench.accuracy import accuracy, confusion
from edgeres.bench.classes import MAX_CONFUSION, check_classes, evaluation_data, image_names, predictions_csv
from edgeres.bench.rows import BenchRow, Entry, engine_configs, fixed_batch, plan_rows
from edgeres.bench.sweep import how
from edgeres.bench.thermal import ThermalWatch
from edgeres.build import engine_from_onnx
from edgeres.config import BenchConfig
from edgeres.data.datasets import ImageSet
from edgeres.data.preprocess import Preprocessing
from edgeres.energy import Meter, PowerReading
from edgeres.errors import AccuracyBudgetExceeded, ConfigError
from edgeres.hw import cpu_features
from edgeres.progress import log
from edgeres.quantize.recipes import recipe_for
from edgeres.remote import LocalDevice
from edgeres.targets import TargetProfile, load_target

SCHEMA = "edgeres.bench/1"


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in _cpuinfo() if ln.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cpu_features": cpu_features(), "cores": os.cpu_count(), "os": platform.platform()}


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


Opener = Callable[..., Session]  # (simulate, purpose) → a session for one row
ACCURACY_BATCH = 250  # images per call when scoring accuracy, or the engine's largest batch if smaller


def _open(entry: Entry, target: TargetProfile, cfg: BenchConfig, simulate: bool, purpose: str = "latency",
          engines: dict[str, dict] | None = None) -> Session:
    """A session for ``entry``: the ONNX itself on ONNX Runtime, else an engine built (or reused) for it."""
    backend = require(get_backend(target.runtime))
    if target.runtime == "onnxruntime":  # ONNX Runtime runs the ONNX file itself
        return backend.load(entry.path, replace(target, threads=cfg.threads or target.threads), simulate)
    confs = engine_configs(entry, target, cfg)
    built = engine_from_onnx(entry.path, confs.get(purpose, confs["latency"]), reuse=True)
    if engines is not None:
        engines[f"{entry.label}:{purpose}"] = {"engine": str(built.artifact), **built.details}
    return backend.load(built.artifact, target)


def _accuracy(label: str, open_session: Opener, x: np.ndarray, labels: np.ndarray, ref: np.ndarray | None,
              simulate: bool) -> tuple[dict[str, Any], str, np.ndarray]:
    """Accuracy of one model on every image (and its mode); latency is measured later by ``_latency``."""
    log(f"{label}: accuracy on {len(x)} images{' (Q/DQ simulated in fp32)' if simulate else ''} …")
    sess = open_session(simulate, "latency")
    try:
        logits = infer_all(sess, x, min(ACCURACY_BATCH, sess.max_batch or ACCURACY_BATCH))
    finally:
        sess.close()
    mode = "simulated Q/DQ (fake-quant fp32)" if simulate else "native"
    return accuracy(logits, labels, ref).to_dict(), mode, logits


def _latency(rows: list[BenchRow], openers: list[Opener], x: np.ndarray, cfg: BenchConfig,
             per_batch_sessions: bool, watch: ThermalWatch) -> None:
    """Latency at ``cfg.batch`` and ``cfg.throughput_batch`` for every row, timed in alternating windows; then, with
    ``cfg.sweep``, at each batch of the sweep.

    With ``per_batch_sessions`` (TensorRT), each batch is timed on the engine built for it; other runtimes take any
    batch on one session, opened once.
    """
    from edgeres.bench.sweep import SweepPoint, purpose

    log(f"latency of {len(rows)} models at batch {cfg.batch} and {cfg.throughput_batch}, "
        f"{cfg.latency.rounds} alternating rounds …")
    got = _timed(rows, openers, x, cfg, [("latency", cfg.batch), ("throughput", cfg.throughput_batch)],
                 per_batch_sessions, watch)
    for key, by_label in got.items():
        for r in rows:
            setattr(r, key, by_label[r.label].to_dict())
    if not cfg.sweep:
        return
    log(f"batch sweep of {len(rows)} models at batch {', '.join(map(str, cfg.sweep))} …")
    plan = [(purpose(b), b) for b in cfg.sweep]
    swept = _timed(rows, openers, x, cfg, plan, per_batch_sessions, watch)
    for r in rows:
        r.sweep = [SweepPoint.of(swept[key][r.label].to_dict()).to_dict() for key, _ in plan]


def _timed(rows: list[BenchRow], openers: list[Opener], x: np.ndarray, cfg: BenchConfig, plan: list[tuple[str, int]],
           per_batch_sessions: bool, watch: ThermalWatch) -> dict[str, dict[str, LatencyStats]]:
    """Each row's latency at each (purpose, batch) of ``plan``, every row in turn in alternating windows."""
    sessions: dict[str, Session] = {}
    out: dict[str, dict[str, LatencyStats]] = {}
    try:
        for key, batch in plan:
            if per_batch_sessions or not sessions:
                for sess in sessions.values():
                    sess.close()
                sessions = {}
                for r, open_session in zip(rows, openers):
                    sessions[r.label] = open_session(False, key)
            out[key] = compare_latency(sessions, x[:batch], batch, cfg.latency, after=watch.sample)
            for r in rows:
                r.threads = sessions[r.label].threads if r.threads is None else r.threads
    finally:
        for sess in sessions.values():
            sess.close()
    return out


def _energy(rows: list[BenchRow], openers: list[Opener], x: np.ndarray, cfg: BenchConfig, meter: Meter | None,
            idle: PowerReading | None, why: str, watch: ThermalWatch) -> dict[str, Any]:
    """Board power of each model in a window of its own at the throughput batch, and energy per image; or why not."""
    from edgeres.backends.latency import fill_batch, timed_runs
    from edgeres.energy import energy_per_image_mj

    if meter is None or idle is None:
        return {"measured": False, "why": why}
    log(f"energy: each model for {cfg.latency.duration_s:g} s at batch {cfg.throughput_batch} …")
    xb = fill_batch(x[:cfg.throughput_batch], cfg.throughput_batch)
    for r, open_session in zip(rows, openers):
        sess = open_session(False, "throughput")
        try:
            times, power = meter.measure(lambda s=sess: timed_runs(s, xb, cfg.latency))
        finally:
            sess.close()
        watch.sample(r.label)
        r.energy = {"power": power.to_dict(),
                    **energy_per_image_mj(power, idle, float(np.mean(times)), cfg.throughput_batch)}
    return {"measured": True, "meter": meter.name, "source": idle.source, "idle": idle.to_dict(),
            "how": "mean board power while the model runs back to back at the throughput batch × mean time per "
                   "call / batch; above idle: the same less the idle power measured before any work"}


def _memory(rows: list[BenchRow], entries: list[Entry], openers: list[Opener], cfg: BenchConfig,
            target: TargetProfile, engines: dict[str, dict]) -> None:
    """Each model's memory at the throughput batch: ONNX Runtime's and PyTorch's on the CPU measured in a process of
    their own, TensorRT's as the engine reports it. PyTorch on CUDA has none.
    """
    from edgeres.backends.memory import MIB, MemoryUse, file_mb, onnxruntime_memory, torch_memory

    log(f"memory of {len(rows)} models at batch {cfg.throughput_batch} …")
    chw = tuple(entries[0].info.preprocessing.input_shape)
    for r, e, open_session in zip(rows, entries, openers):
        if target.runtime == "onnxruntime":
            use = onnxruntime_memory(e.path, cfg.threads or target.threads, cfg.throughput_batch, chw)
        else:
            with open_session(False, "throughput") as sess:
                acts = sess.activation_bytes
            use = MemoryUse(file_mb(engines[f"{e.label}:throughput"]["engine"]),
                            activations_mb=None if acts is None else acts / MIB,
                            how="the engine file, and its execution context's device memory as TensorRT reports it")
        r.memory = use.to_dict()
    for r in rows[len(entries):]:  # a checkpoint's rows
        if r.runtime == "torch-eager-cpu":
            r.memory = torch_memory(Path(r.model), cfg.throughput_batch, chw).to_dict()


def _profile(rows: list[BenchRow], openers: list[Opener], x: np.ndarray, cfg: BenchConfig) -> None:
    """Each row's layers at the latency batch, from its runtime's profiler, in a run apart from the timed ones."""
    import tempfile

    from edgeres.backends.latency import fill_batch
    from edgeres.config import PROFILE_RUNS

    log(f"profile: each model's layers over {PROFILE_RUNS} runs at batch {cfg.batch} …")
    xb = fill_batch(x[:cfg.batch], cfg.batch)
    with tempfile.TemporaryDirectory(prefix="edgeres-profile-") as work:
        for r, open_session in zip(rows, openers):
            with open_session(False, "latency") as sess:
                got = sess.profile(xb, PROFILE_RUNS, Path(work))
            r.profile = None if got is None else got.to_dict()


def _torch_rows(checkpoint: Path, target: TargetProfile, x: np.ndarray, ds: ImageSet, ref: np.ndarray | None,
                pre: Preprocessing) -> tuple[list[BenchRow], list[Opener]]:
    """Plain PyTorch eager: on the CPU, and on CUDA in fp32 and fp16 where a GPU exists."""
    import torch

    from edgeres.backends.torch import TorchSession
    from edgeres.models import load_checkpoint

    ck = load_checkpoint(checkpoint)
    check_classes(list(ck.classes), ds.classes, str(checkpoint), ds.name)
    if ck.preprocessing is not None and ck.preprocessing != pre:
        raise ConfigError(f"--checkpoint {checkpoint} was trained with other preprocessing than the ONNX models "
                          f"({ck.preprocessing.size} px against {pre.size} px); pass the checkpoint they were "
                          f"exported from")
    model = ck.model()
    labels = ds.labels
    variants = [("torch-fp32", "cpu", False)]
    if target.runtime == "tensorrt" and torch.cuda.is_available():
        variants += [("torch-cuda-fp32", "cuda", False), ("torch-cuda-fp16", "cuda", True)]
    rows: list[BenchRow] = []
    openers: list[Opener] = []
    for label, device, half in variants:
        opener = lambda _sim, _purpose="latency", d=device, h=half: TorchSession(model, d, h)  # noqa: E731
        acc, mode, _ = _accuracy(label, opener, x, labels, ref, False)
        rows.append(BenchRow(label, str(checkpoint), sha256_file(checkpoint), "fp16" if half else "fp32",
                             f"torch-eager-{device}", acc, mode,
                             note="plain PyTorch eager, the baseline a deployment should beat"))
        openers.append(opener)
    return rows, openers


def bench(models: list[Path], out_dir: Path, cfg: BenchConfig = BenchConfig(),
          checkpoint: Path | None = None) -> dict:
    """Measure every model on ``cfg.target``; write report.json, report.md and report.png into ``out_dir``."""
    from edgeres.bench.report import write_reports
    from edgeres.bench.roofline import floor_ms, measure_cpu_peaks, model_cost

    cfg.validate()
    check_out(Path(out_dir), folder=True)
    target = load_target(cfg.target)
    meter, idle, no_energy = None, None, "--energy off"
    if cfg.energy != "off":  # idle power before any work, and --energy on refused then, not after the work
        from edgeres.energy import idle_reading
        meter, idle, no_energy = idle_reading(target.kind)
        if meter is None and cfg.energy == "on":
            raise ConfigError(f"--energy on, but energy cannot be measured here: {no_energy}")
    state = None
    if target.kind == "jetson":  # before any work: the GPU's load now is another process's
        from edgeres.bench.device_state import device_state
        state = device_state(LocalDevice())
    watch = ThermalWatch(LocalDevice(), gpu=target.kind != "cpu")  # the first reading before any work
    entries = plan_rows(models, target, cfg.dla_core)
    static = fixed_batch(entries)
    if static is not None:
        cfg = fit_static_batch(cfg, static)
    ref = entries[0]
    ds, x = evaluation_data(entries, target, cfg)
    pre = ref.info.preprocessing
    cost = model_cost(ref.path)
    results: list[BenchRow] = []
    openers: list[Opener] = []
    ref_logits: np.ndarray | None = None
    engines: dict[str, dict] = {}
    predicted: dict[str, np.ndarray] = {}
    for e in entries:
        rec = recipe_for(e.recipe["recipe"]) if e.recipe else None
        simulate = bool(rec and rec.accuracy_mode == "simulate" and target.runtime == "onnxruntime")
        opener = lambda sim, purpose="latency", e=e: _open(e, target, cfg, sim, purpose, engines)  # noqa: E731
        acc, mode, logits = _accuracy(e.label, opener, x, ds.labels, ref_logits, simulate)
        openers.append(opener)
        predicted[e.label] = logits.argmax(1)
        ref_logits = logits if ref_logits is None else ref_logits
        representative = rec.latency_representative if (rec and target.runtime == "onnxruntime") else True
        results.append(BenchRow(e.label, str(e.path), sha256_file(e.path), e.precision, target.runtime, acc, mode,
                                e.recipe, representative, "" if representative else
                                "CPU int8 kernels differ from TensorRT's: this latency says nothing about the device"))
    if checkpoint is not None:
        rows, more = _torch_rows(Path(checkpoint), target, x, ds, ref_logits, pre)
        results += rows
        openers += more
    _latency(results, openers, x, cfg, per_batch_sessions=target.runtime == "tensorrt", watch=watch)
    _memory(results, entries, openers, cfg, target, engines)
    if cfg.profile:
        _profile(results, openers, x, cfg)
    energy = _energy(results, openers, x, cfg, meter, idle, no_energy, watch)
    for r in results:
        r.thermal = watch.row(r.label)
    peaks, floor_target = None, target
    if target.kind == "cpu" and target.peak_fp32_tflops is None:
        peaks = measure_cpu_peaks(cfg.threads)  # recorded under measured_peaks; the target file has no datasheet
        floor_target = replace(target, peak_fp32_tflops=peaks["peak_fp32_tflops"])
    for r in results:
        fl = floor_ms(cost, floor_target, r.precision, r.latency["batch"])
        r.roofline = None if fl is None else {**fl, "measured_over_floor": r.latency["p50_ms"] / fl["floor_ms"]}
    report = {
        "schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "target": asdict(target), "machine": machine(), "versions": versions(),
        "config": asdict(cfg), "dataset": {"name": ds.name, "images": len(ds), "classes": ds.classes},
        "confusion": (confusion(predicted[ref.label], ds.labels, len(ds.classes))
                      if len(ds.classes) <= MAX_CONFUSION else None),
        "preprocessing": pre.to_dict(), "reference": ref.label, "model_cost": cost.to_dict(),
        "measured_peaks": peaks, "engines": engines or None, "energy": energy, "device_state": state,
        "thermal": watch.report((state or {}).get("clocks_locked")),
        "sweep": {"batches": list(cfg.sweep), "how": how(target.runtime)} if cfg.sweep else None,
        "timing": {"clock": "time.perf_counter around Session.infer", "what": "host wall time of one call",
                   "copies_timed": "per result: latency.copies_timed"},
        "results": [r.to_dict() for r in results],
    }
    write_reports(report, Path(out_dir), {"predictions.csv": predictions_csv(image_names(ds), ds.labels, ds.classes,
                                                                            predicted)})
    check_budget(report, cfg.max_drop, Path(out_dir))
    return report


def fit_static_batch(cfg: BenchConfig, static: int) -> BenchConfig:
    """``cfg`` for a model whose graph fixes its batch at ``static``: every batch is that one (a smaller one would
    be padded to it, and timed as it), and no sweep; said once.
    """
    if cfg.batch == cfg.throughput_batch == static and not cfg.sweep:
        return cfg
    log(f"a model fixes its batch at {static}: latency and throughput are measured at batch {static}"
        + (", and there is no batch to sweep" if cfg.sweep else ""))
    return replace(cfg, batch=static, throughput_batch=static, sweep=())


def check_budget(report: dict, max_drop: float | None, out_dir: Path) -> None:
    """Raise ``AccuracyBudgetExceeded`` when a precision lost more than ``max_drop`` top-1 points against fp32."""
    if max_drop is None:
        return
    bad = [r for r in report["results"][1:] if -r["accuracy"]["delta_top1"] > max_drop]
    if bad:
        r = bad[0]
        raise AccuracyBudgetExceeded(f"{r['label']} lost {-r['accuracy']['delta_top1']:.2f} top-1 points against "
                                     f"fp32, over --max-drop {max_drop}; see {out_dir / 'report.md'}")
