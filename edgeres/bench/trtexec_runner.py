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
import os
import shlex
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from packaging.version import Version

from edgeres.artifacts import atomic_path, sha256_file, versions
from edgeres.backends.latency import stats_from_times
from edgeres.backends.memory import MemoryUse, trtexec_memory
from edgeres.backends.profile import LayerProfile
from edgeres.backends.trtexec import (
    JETPACK_TRTEXEC,
    QueryTimes,
    TrtexecBuild,
    inference_argv,
    parse_output,
    parse_times,
    timing_argv,
    version_from_banner,
)
from edgeres.bench.accuracy import accuracy
from edgeres.bench.classes import evaluation_data
from edgeres.bench.device_state import Device, device_state, output
from edgeres.bench.rows import BenchRow, Entry, plan_rows
from edgeres.bench.run import SCHEMA, check_budget, machine
from edgeres.bench.thermal import ThermalWatch
from edgeres.config import DEFAULT_MAX_BATCH, BenchConfig
from edgeres.energy import PowerReading
from edgeres.errors import ConfigError, RemoteError
from edgeres.onnx_limits import require_parsable
from edgeres.onnx_model import load_onnx
from edgeres.progress import log
from edgeres.remote import LocalDevice
from edgeres.targets import TargetProfile, all_targets, load_target


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgeres" / "trtexec"


def find_trtexec(device: Device, given: str | None) -> tuple[str, Version, str]:
    """The trtexec to use on ``device`` (given, on PATH, or JetPack's), its TensorRT version and banner line."""
    for exe in ([given] if given else ["trtexec", JETPACK_TRTEXEC]):
        p = device.run([exe, "--help"], check=False)
        text = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        if p.returncode in (126, 127) or "TensorRT.trtexec" not in text:
            continue
        banner = next(ln for ln in text.splitlines() if "TensorRT.trtexec" in ln)
        return exe, version_from_banner(banner), banner.strip()
    where = (f": `{given}` does not run there as trtexec" if given
             else f" has no trtexec on its PATH nor at {JETPACK_TRTEXEC}")
    raise ConfigError(f"{device.destination}{where}; JetPack installs it at {JETPACK_TRTEXEC} (package "
                      f"tensorrt / libnvinfer-bin): pass --trtexec PATH")


def device_target(name: str, device: Device) -> TargetProfile:
    """The profile ``name``; for ``jetson``, the one whose ``model_match`` names the device's device-tree model."""
    if name != "jetson":
        return load_target(name)
    model = output(device, ["cat", "/proc/device-tree/model"])
    for t in all_targets():
        if t.kind == "jetson" and model and any(m.lower() in model.lower() for m in t.model_match):
            return t
    raise ConfigError(f"--target jetson: {device.destination} is {model or 'no Jetson'!r}; name its target")


class TrtexecBench:
    """One trtexec bench: the device, its trtexec, the working folder there and the cache here."""

    def __init__(self, device: Device, exe: str, version: Version, key: str, remote_base: str) -> None:
        self.device, self.exe, self.version = device, exe, version
        self.wdir = f"{remote_base}/{key}"
        self.cache = cache_root() / key
        self.commands: list[str] = []
        self.copies_timed = True
        self.logs: dict[str, str] = {}  # engine → the log of its first timed run (trtexec's memory lines)
        self.dla_lines: dict[str, list[str]] = {}  # "label:purpose" → what trtexec's build said of the DLA
        self.cache.mkdir(parents=True, exist_ok=True)
        self.run(["mkdir", "-p", f"{self.wdir}/in", f"{self.wdir}/out"])

    def run(self, argv: list[str], what: str = "") -> str:
        if argv[0] == self.exe:
            self.commands.append(shlex.join(argv))
        p = self.device.run(argv, check=False)
        if p.returncode != 0:
            err = p.stderr.decode(errors="replace") + p.stdout.decode(errors="replace")[-2000:]
            raise RemoteError(self.device.failure(argv, p.returncode, err) + (f"; {what}" if what else ""))
        return p.stdout.decode(errors="replace")

    def engine(self, entry: Entry, model: str, purpose: str, batch: int, max_batch: int) -> str:
        """Build (or keep) the engine of one row for one purpose; the same command is not run twice. A DLA engine is
        static at ``batch``, and trtexec's lines about the DLA (which layers fall back to the GPU) are kept with it.
        """
        shape = tuple(entry.info.preprocessing.input_shape)
        eng = f"{self.wdir}/{entry.label}.{purpose}.engine"
        static = entry.dla_core is not None
        b = TrtexecBuild(model, eng, entry.info.input_name, shape, entry.precision,
                         1 if purpose == "latency" and not static else batch, batch, batch if static else max_batch,
                         entry.dla_core, timing_cache=f"{self.wdir}/timing.cache")
        argv = b.argv(self.exe, self.version)
        marker = self.cache / f"{entry.label}.{purpose}.built"
        try:
            kept = json.loads(marker.read_text()) if marker.is_file() else {}
        except ValueError:
            kept = {}
        if not (isinstance(kept, dict) and kept.get("argv") == argv
                and self.device.run(["test", "-f", eng], check=False).returncode == 0):
            log(f"{entry.label}: trtexec builds the {purpose} engine on {self.device.destination} (minutes on a Jetson)")
            out = self.run(argv, "the build failed; see trtexec's log above")
            kept = {"argv": argv, "dla_lines": [ln.strip() for ln in out.splitlines() if static and "DLA" in ln
                                                and not ln.startswith("&&&&") and "DLACore:" not in ln][:200]}
            with atomic_path(marker) as tmp:
                tmp.write_text(json.dumps(kept))
        else:
            self.commands.append(shlex.join(argv) + "  # built before, kept")
        if static:
            self.dla_lines[f"{entry.label}:{purpose}"] = kept.get("dla_lines", [])
        return eng

    def logits(self, entry: Entry, engine: str, x: np.ndarray, batch: int, static: bool = False) -> np.ndarray:
        """Every image's logits, one trtexec run per batch; batches done before (here) are not run again. A static
        engine's short last batch is padded to ``batch`` with zeros, and their rows dropped.
        """
        shape = tuple(entry.info.preprocessing.input_shape)
        folder = self.cache / entry.label
        folder.mkdir(exist_ok=True)
        there = set(self.run(["ls", f"{self.wdir}/in"]).split())
        out, n = [], (len(x) + batch - 1) // batch
        for k, i in enumerate(range(0, len(x), batch)):
            xb = np.ascontiguousarray(x[i:i + batch], dtype=np.float32)
            real = len(xb)
            if static and real < batch:
                xb = np.concatenate([xb, np.zeros((batch - real, *xb.shape[1:]), np.float32)])
            digest = hashlib.sha256(xb.tobytes()).hexdigest()
            kept = folder / f"{digest}.npy"
            if kept.is_file():
                out.append(np.load(kept)[:real])
                continue
            name = f"{digest}.bin"
            self._send_batch(xb, name, digest, name in there, k)
            y_path = f"{self.wdir}/out/{entry.label}.{digest}.json"
            try:
                self.run(inference_argv(self.exe, engine, entry.info.input_name, len(xb), shape,
                                        f"{self.wdir}/in/{name}", y_path))
                y = parse_output(self.device.read(y_path).decode(errors="replace"))
            except RemoteError as e:
                raise RemoteError(f"{e}; {k} of {n} batches of {entry.label} are kept: run the same command again "
                                  f"to resume") from None
            if y.shape[0] != len(xb):
                raise RemoteError(f"trtexec's output for batch {k + 1} has {y.shape[0]} rows, not the {len(xb)} "
                                  f"images sent; rerun")
            with atomic_path(kept) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, y)
            out.append(y[:real])
        return np.concatenate(out)

    def _send_batch(self, xb: np.ndarray, name: str, digest: str, there: bool, k: int) -> None:
        """Put one batch in the device's folder unless it is there. What is there is hashed first: a file of the right
        name that is not the batch (a copy cut short) is sent again, once.
        """
        for attempt in range(2):
            if attempt or not there:
                local = self.cache / "in" / name
                local.parent.mkdir(exist_ok=True)
                xb.tofile(local)
                self.device.put({name: local}, f"{self.wdir}/in")
            got = self.run(["sha256sum", f"{self.wdir}/in/{name}"]).split()[0]
            if got == digest:
                return
        raise RemoteError(f"batch {k + 1} on {self.device.destination} hashes to {got[:12]}…, not the {digest[:12]}… "
                          f"sent; check the device's disk (df -h) and rerun")

    def memory(self, engine: str) -> MemoryUse:
        """The engine's size there and the GPU memory trtexec's log says it took (weights, activations)."""
        size = self.run(["wc", "-c", engine]).split()
        return trtexec_memory(self.logs.get(engine, ""), int(size[0]) if size and size[0].isdigit() else None)

    def profile(self, entry: Entry, engine: str, batch: int) -> LayerProfile:
        """Each layer's mean time from trtexec's profiler, in a run of its own at ``batch``."""
        from edgeres.backends.profile import parse_trtexec_profile
        from edgeres.backends.trtexec import profile_argv
        from edgeres.config import PROFILE_RUNS

        path = f"{self.wdir}/out/{entry.label}.b{batch}.profile.json"
        self.run(profile_argv(self.exe, engine, entry.info.input_name, batch, tuple(entry.info.preprocessing.input_shape),
                              PROFILE_RUNS, path))
        return parse_trtexec_profile(self.device.read(path).decode(errors="replace"), batch)

    def times(self, entry: Entry, engine: str, batch: int, cfg: BenchConfig, window: int,
              seconds: float) -> QueryTimes:
        """One timing window of trtexec's own timed run: per-query latency and GPU compute (ms), warm-up dropped."""
        path = f"{self.wdir}/out/{entry.label}.b{batch}.w{window}.times.json"
        lat = cfg.latency
        out = self.run(timing_argv(self.exe, engine, entry.info.input_name, batch,
                                   tuple(entry.info.preprocessing.input_shape), lat.warmup_s, seconds, lat.min_iters, path))
        self.logs.setdefault(engine, out)
        t = parse_times(self.device.read(path).decode(errors="replace"), lat.warmup_s * 1000)
        self.copies_timed = t.copies_timed
        return t


# tegrastats sampling around one command, as an argument list: the script is fixed text, the values are arguments.
WITH_TEGRASTATS = ('i=$1; f=$2; shift 2; tegrastats --interval "$i" --logfile "$f" & t=$!; "$@"; rc=$?; '
                   'kill "$t" 2>/dev/null; wait "$t" 2>/dev/null; exit $rc')

def idle_power(device: Device, cfg: BenchConfig) -> tuple[PowerReading | None, str]:
    """The device's idle board power from 2 s of tegrastats, or why it cannot be had (``--energy on``: refused)."""
    from edgeres.energy import NO_RAILS, summarize

    if cfg.energy == "off":
        return None, "--energy off"
    run = device.run(["timeout", "2", "tegrastats", "--interval", "100"], check=False)
    why = ""
    if run.returncode in (126, 127):
        why = f"no tegrastats on {device.destination} (it ships with JetPack in /usr/bin): not a Jetson?"
    idle = summarize(run.stdout.decode(errors="replace").splitlines(), 2.0)
    if not why and idle.mean_w is None:
        why = NO_RAILS
    if why and cfg.energy == "on":
        raise ConfigError(f"--energy on, but energy cannot be measured: {why}")
    return (None, why) if why else (idle, "")


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
        argv = timing_argv(tb.exe, engines[e.label]["throughput"], e.info.input_name, b,
                           tuple(e.info.preprocessing.input_shape), cfg.latency.warmup_s,
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
    target = device_target(cfg.target, device)
    if target.runtime != "tensorrt":
        raise ConfigError(f"--runner trtexec measures TensorRT targets, and {target.name} runs ONNX Runtime; "
                          f"drop --runner or name the device's target")
    exe, version, banner = find_trtexec(device, trtexec)
    target.check_tensorrt(version, what=f"trtexec on {device.destination}: TensorRT")
    state = device_state(device) if target.kind == "jetson" else None  # before any work: the GPU's load is others'
    idle, no_energy = idle_power(device, cfg)  # before any build: --energy on is refused here, not after the work
    watch = ThermalWatch(device, gpu=True)
    target.check_dla(cfg.dla_core, version)
    entries = plan_rows(models, target, cfg.dla_core)
    for e in entries:
        require_parsable(e.path, load_onnx(e.path), target, version)
    ds, x = evaluation_data(entries, target, cfg)
    digests = [sha256_file(e.path) for e in entries]
    key = hashlib.sha256(json.dumps([digests, str(version), target.name, ds.name, len(ds)]).encode()).hexdigest()[:16]
    base = str(cache_root() / "device") if isinstance(device, LocalDevice) else remote_base
    tb = TrtexecBench(device, exe, version, key, base)
    names = _send_models(tb, entries, digests, version)
    rows, engines = [], {}
    ref: np.ndarray | None = None
    batch = min(DEFAULT_MAX_BATCH, max(cfg.batch, 1))
    for e in entries:
        lat_engine = tb.engine(e, names[e.label], "latency", cfg.batch, max(DEFAULT_MAX_BATCH, cfg.batch))
        thr_engine = tb.engine(e, names[e.label], "throughput", cfg.throughput_batch, cfg.throughput_batch)
        engines[e.label] = {"latency": lat_engine, "throughput": thr_engine}
        dla = e.dla_core is not None  # static engines: accuracy on the throughput one, its last batch padded
        per = cfg.throughput_batch if dla else max(batch, DEFAULT_MAX_BATCH)
        log(f"{e.label}: accuracy on {len(x)} images, {per} per trtexec run …")
        logits = tb.logits(e, thr_engine if dla else lat_engine, x, per, static=dla)
        ref = logits if ref is None else ref
        rows.append(BenchRow(e.label, str(e.path), sha256_file(e.path), e.precision, "tensorrt (trtexec)",
                             accuracy(logits, ds.labels, None if ref is logits else ref).to_dict(), "native", e.recipe,
                             note="timed by trtexec --exportTimes: H2D + GPU compute + D2H per query"))
    seconds = max(1.0, cfg.latency.duration_s / cfg.latency.rounds)
    for key_, b in (("latency", cfg.batch), ("throughput", cfg.throughput_batch)):
        windows: dict[str, list[QueryTimes]] = {r.label: [] for r in rows}
        for w in range(cfg.latency.rounds):
            order = list(zip(entries, rows))[:: 1 if w % 2 == 0 else -1]
            for e, r in order:
                windows[r.label].append(tb.times(e, engines[e.label][key_], b, cfg, w, seconds))
                watch.sample(r.label)
        for e, r in zip(entries, rows):
            shape, where = [b, *e.info.preprocessing.input_shape], f"trtexec on {device.destination}"
            stats = stats_from_times([t.latency_ms / 1e3 for t in windows[r.label]], b, shape, tb.copies_timed, where)
            compute = stats_from_times([t.compute_ms / 1e3 for t in windows[r.label]], b, shape, False, where)
            setattr(r, key_, {**stats.to_dict(), "measured_by": "trtexec", "gpu_compute": {
                k: getattr(compute, k) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_ips")}})
    for e, r in zip(entries, rows):
        r.memory = tb.memory(engines[e.label]["throughput"]).to_dict()
        if cfg.profile:
            r.profile = tb.profile(e, engines[e.label]["latency"], cfg.batch).to_dict()
    energy = _energy(tb, entries, rows, engines, cfg, idle, no_energy, watch)
    for r in rows:
        r.thermal = watch.row(r.label)
    report = {
        "schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "target": asdict(target), "machine": machine(), "versions": versions(), "config": asdict(cfg),
        "dataset": {"name": ds.name, "images": len(ds)}, "preprocessing": entries[0].info.preprocessing.to_dict(),
        "reference": entries[0].label, "model_cost": None, "measured_peaks": None, "engines": None,
        "energy": energy, "device_state": state, "thermal": watch.report((state or {}).get("clocks_locked")),
        "timing": {"clock": "trtexec --exportTimes", "what": "latencyMs of each query: H2D + GPU compute + D2H",
                   "copies_timed": "per result: latency.copies_timed"},
        "runner": {"name": "trtexec", "tensorrt": str(version), "trtexec": exe, "banner": banner,
                   "device": device.destination, "dir": tb.wdir, "commands": tb.commands,
                   "dla_lines": tb.dla_lines or None},
        "results": [r.to_dict() for r in rows],
    }
    write_reports(report, Path(out_dir))
    check_budget(report, cfg.max_drop, Path(out_dir))
    return report


def _send_models(tb: TrtexecBench, entries: list[Entry], digests: list[str], version: Version) -> dict[str, str]:
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
