"""bench with trtexec alone on the device: nothing installed there but JetPack (a shell, coreutils and trtexec).

This side preprocesses the test images, sends the models and each batch as a raw float32 file, and drives trtexec
with argument lists (over SSH, or on this machine). trtexec builds the engines, times them (``--exportTimes``) and
writes each batch's logits (``--exportOutput``); the logits come back and are scored here as for every runner.

Resumable: each batch is named by the sha256 of its bytes, its logits are kept here once read back, and a rerun
sends and runs only what is missing. A batch whose file on the device does not hash to what was sent is refused.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from packaging.version import Version

from edgeres.artifacts import sha256_file, versions
from edgeres.backends.latency import stats_from_times
from edgeres.backends.trtexec import QueryTimes, parse_times, timing_argv
from edgeres.bench.accuracy import accuracy
from edgeres.bench.classes import evaluation_data
from edgeres.bench.device_state import Device, device_state
from edgeres.bench.rows import BenchRow, Entry, fixed_batch, plan_rows
from edgeres.bench.run import SCHEMA, check_budget, fit_static_batch, machine
from edgeres.bench.sweep import how
from edgeres.bench.thermal import ThermalWatch
from edgeres.bench.trtexec_device import WITH_TEGRASTATS, TrtexecBench, cache_root, device_trtexec, idle_power
from edgeres.config import DEFAULT_MAX_BATCH, BenchConfig
from edgeres.energy import PowerReading
from edgeres.errors import RemoteError
from edgeres.onnx_limits import require_parsable
from edgeres.onnx_model import load_onnx
from edgeres.progress import log
from edgeres.remote import LocalDevice


def _energy(tb: TrtexecBench, entries: list[Entry], rows: list[BenchRow], engines: dict[str, dict[str, str]],
            cfg: BenchConfig, idle: PowerReading | None, why: str, watch: ThermalWatch) -> dict:
    """Board power from tegrastats on the device: each model in a trtexec window of its own, against idle."""
    from edgeres.energy import energy_per_image_mj, summarize

    if idle is None:
        return {"measured": False, "why": why}
    b = cfg.throughput_batch
    for e, r in zip(entries, rows):
        log_path = f"{tb.wdir}/out/{e.label}.tegrastats.log"
        times = f"{tb.wdir}/out/{e.label}.energy.times.json"
        argv = timing_argv(tb.exe, tb.loads(e, engines[e.label]["throughput"]), b, cfg.latency.warmup_s,
                           max(1.0, cfg.latency.duration_s), cfg.latency.min_iters, times)
        tb.commands.append(shlex.join(argv) + "  # energy window, under tegrastats --interval 100")
        tb.run(["sh", "-c", WITH_TEGRASTATS, "sh", "100", log_path, *argv])
        watch.sample(r.label)
        power = summarize(tb.device.read(log_path).decode(errors="replace").splitlines(), cfg.latency.duration_s)
        t = parse_times(tb.device.read(times).decode(errors="replace"), cfg.latency.warmup_s * 1000)
        r.energy = {"power": power.to_dict(), **energy_per_image_mj(power, idle, float(t.latency_ms.mean()) / 1e3, b)}
    return {"measured": True, "meter": "tegrastats", "source": idle.source, "idle": idle.to_dict(),
            "how": "tegrastats every 100 ms on the device during a trtexec run of its own at the throughput batch; "
                   "mean board power × mean time per query / batch"}


def bench_trtexec(models: list[Path], out_dir: Path, cfg: BenchConfig, device: Device,
                  trtexec: str | None = None, remote_base: str = ".cache/edgeres/trtexec") -> dict:
    """Measure every model on ``cfg.target`` with trtexec on ``device``; write report.json/.md/.png here."""
    from edgeres.bench.report import write_reports

    cfg.validate()
    target, exe, version, banner = device_trtexec(cfg.target, device, trtexec,
                                                  "drop --runner trtexec or name the device's target")
    state = device_state(device) if target.kind == "jetson" else None  # before any work: the GPU's load is others'
    idle, no_energy = idle_power(device, cfg)  # before any build: --energy on is refused here, not after the work
    watch = ThermalWatch(device, gpu=True)
    target.check_dla(cfg.dla_core, version)
    entries = plan_rows(models, target, cfg.dla_core)
    for e in entries:
        require_parsable(e.path, load_onnx(e.path), target, version)
    fixed = fixed_batch(entries)
    if fixed is not None:
        cfg = fit_static_batch(cfg, fixed)
    ds, x = evaluation_data(entries, target, cfg)
    digests = [sha256_file(e.path) for e in entries]
    key = hashlib.sha256(json.dumps([digests, str(version), target.name, ds.name, len(ds)]).encode()).hexdigest()[:16]
    base = str(cache_root() / "device") if isinstance(device, LocalDevice) else remote_base
    tb = TrtexecBench(device, exe, version, key, base)
    names = send_models(tb, entries, digests, version)
    rows, engines = [], {}
    ref: np.ndarray | None = None
    batch = min(DEFAULT_MAX_BATCH, max(cfg.batch, 1))
    for e in entries:
        lat_engine = tb.engine(e, names[e.label], "latency", cfg.batch, max(DEFAULT_MAX_BATCH, cfg.batch))
        thr_engine = lat_engine if fixed else tb.engine(e, names[e.label], "throughput", cfg.throughput_batch,
                                                         cfg.throughput_batch)
        engines[e.label] = {"latency": lat_engine, "throughput": thr_engine}
        static = e.dla_core is not None or fixed is not None  # accuracy on the throughput engine, last batch padded
        per = cfg.throughput_batch if static else max(batch, DEFAULT_MAX_BATCH)
        log(f"{e.label}: accuracy on {len(x)} images, {per} per trtexec run …")
        logits = tb.logits(e, thr_engine if static else lat_engine, x, per, static=static)
        ref = logits if ref is None else ref
        rows.append(BenchRow(e.label, str(e.path), sha256_file(e.path), e.precision, "tensorrt (trtexec)",
                             accuracy(logits, ds.labels, None if ref is logits else ref).to_dict(), "native", e.recipe,
                             note="timed by trtexec --exportTimes: H2D + GPU compute + D2H per query"))
    for key_, b in (("latency", cfg.batch), ("throughput", cfg.throughput_batch)):
        def built(e: Entry, k: str = key_) -> str:
            return engines[e.label][k]

        got = _windows(tb, entries, rows, built, b, cfg, watch)
        for r in rows:
            setattr(r, key_, got[r.label])
    if cfg.sweep:
        _sweep(tb, entries, rows, names, engines, cfg, watch)
    inspected = {}
    for e, r in zip(entries, rows):
        r.memory = tb.memory(engines[e.label]["throughput"]).to_dict()
        inspected[f"{e.label}:throughput"] = tb.inspect(e, engines[e.label]["throughput"], cfg.throughput_batch)
        if cfg.profile:
            r.profile = tb.profile(e, engines[e.label]["latency"], cfg.batch).to_dict()
    energy = _energy(tb, entries, rows, engines, cfg, idle, no_energy, watch)
    for r in rows:
        r.thermal = watch.row(r.label)
    report = {
        "schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "target": asdict(target), "machine": machine(), "versions": versions(), "config": asdict(cfg),
        "dataset": {"name": ds.name, "images": len(ds)}, "preprocessing": entries[0].info.preprocessing.to_dict(),
        "reference": entries[0].label, "model_cost": None, "measured_peaks": None, "engines": inspected,
        "energy": energy, "device_state": state, "thermal": watch.report((state or {}).get("clocks_locked")),
        "timing": {"clock": "trtexec --exportTimes", "what": "latencyMs of each query: H2D + GPU compute + D2H",
                   "copies_timed": "per result: latency.copies_timed"},
        "sweep": {"batches": list(cfg.sweep), "how": how("tensorrt")} if cfg.sweep else None,
        "runner": {"name": "trtexec", "tensorrt": str(version), "trtexec": exe, "banner": banner,
                   "device": device.destination, "dir": tb.wdir, "commands": tb.commands,
                   "dla_lines": tb.dla_lines or None},
        "results": [r.to_dict() for r in rows],
    }
    write_reports(report, Path(out_dir))
    check_budget(report, cfg.max_drop, Path(out_dir))
    return report


def _windows(tb: TrtexecBench, entries: list[Entry], rows: list[BenchRow], engine: Callable[[Entry], str], b: int,
             cfg: BenchConfig, watch: ThermalWatch) -> dict[str, dict]:
    """Each row's latency at batch ``b`` (and trtexec's GPU compute), from trtexec's timed runs in ``cfg.latency.rounds``
    windows that alternate the rows, as ``compare_latency`` does for a session.
    """
    seconds = max(1.0, cfg.latency.duration_s / cfg.latency.rounds)
    windows: dict[str, list[QueryTimes]] = {r.label: [] for r in rows}
    for w in range(cfg.latency.rounds):
        for e, r in list(zip(entries, rows))[:: 1 if w % 2 == 0 else -1]:
            windows[r.label].append(tb.times(e, engine(e), b, cfg, w, seconds))
            watch.sample(r.label)
    out = {}
    for e, r in zip(entries, rows):
        shape, where = [b, *e.info.preprocessing.input_shape], f"trtexec on {tb.device.destination}"
        stats = stats_from_times([t.latency_ms / 1e3 for t in windows[r.label]], b, shape, tb.copies_timed, where)
        compute = stats_from_times([t.compute_ms / 1e3 for t in windows[r.label]], b, shape, False, where)
        out[r.label] = {**stats.to_dict(), "measured_by": "trtexec", "gpu_compute": {
            k: getattr(compute, k) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_ips")}}
    return out


def _sweep(tb: TrtexecBench, entries: list[Entry], rows: list[BenchRow], names: dict[str, str],
           engines: dict[str, dict[str, str]], cfg: BenchConfig, watch: ThermalWatch) -> None:
    """Each row at every batch of ``cfg.sweep`` (``bench/sweep.py``): one engine per row with a profile from 1 to the
    largest batch, or a DLA row's static engine per batch (its latency or throughput engine where the batch is theirs).
    """
    from edgeres.bench.sweep import SweepPoint

    top = max(cfg.sweep)
    log(f"batch sweep of {len(rows)} models at batch {', '.join(map(str, cfg.sweep))} …")
    points: dict[str, list[dict]] = {r.label: [] for r in rows}
    for b in cfg.sweep:
        def engine(e: Entry, b: int = b) -> str:
            if e.dla_core is not None:
                same = {cfg.batch: "latency", cfg.throughput_batch: "throughput"}.get(b)
                return engines[e.label][same] if same else tb.engine(e, names[e.label], f"sweep{b}", b, b)
            return tb.engine(e, names[e.label], "sweep", top, top)

        got = _windows(tb, entries, rows, engine, b, cfg, watch)
        for r in rows:
            points[r.label].append(SweepPoint.of(got[r.label]).to_dict())
    for r in rows:
        r.sweep = points[r.label]


def send_models(tb: TrtexecBench, entries: list[Entry], digests: list[str], version: Version) -> dict[str, str]:
    """Send each model once (named by its sha256); TensorRT 11 builds fp16 from an FP16 ONNX made here."""
    from edgeres.onnx_fp16 import fp16_from_onnx

    files, names, digest = {}, {}, {}
    for e, d in zip(entries, digests):
        path = e.path
        if e.precision == "fp16" and version >= Version("11"):
            path = tb.cache / f"{d[:16]}.fp16.onnx"
            if not path.is_file():
                fp16_from_onnx(e.path, path)
        digest[path] = d if path == e.path else sha256_file(path)  # the model itself was hashed by the caller
        name = f"{digest[path][:16]}.onnx"
        files[name] = path
        names[e.label] = f"{tb.wdir}/{name}"
    there = set(tb.run(["ls", tb.wdir]).split())
    # a file of the right name may be cut short (a copy interrupted by Ctrl-C): what is there is checked, not trusted
    damaged = [n for n, got in _device_sha256(tb, [n for n in files if n in there]).items() if got != digest[files[n]]]
    missing = {n: p for n, p in files.items() if n not in there or n in damaged}
    if missing:
        log(f"{tb.device.destination}: sending {len(missing)} model(s) to {tb.wdir}"
            + (f" ({len(damaged)} there differed from the file here)" if damaged else ""))
        tb.device.put(missing, tb.wdir)
        for n, got in _device_sha256(tb, list(missing)).items():
            if got != digest[files[n]]:
                raise RemoteError(f"{n} on {tb.device.destination} hashes to {got[:12]}…, not the "
                                  f"{digest[files[n]][:12]}… sent; check the device's disk (df -h) and rerun")
    return names


def _device_sha256(tb: TrtexecBench, names: list[str]) -> dict[str, str]:
    """The sha256 of files in the bench's folder on the device, by name (one command for all)."""
    if not names:
        return {}
    lines = tb.run(["sha256sum", "--", *(f"{tb.wdir}/{n}" for n in names)]).splitlines()
    return {n: ln.split()[0] for n, ln in zip(names, lines)}
