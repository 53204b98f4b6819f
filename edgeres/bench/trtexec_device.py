"""The device side of a trtexec bench: which trtexec and which target the device has, ``TrtexecBench`` (builds,
batches sent and checked by sha256, trtexec's timed runs, its profile and memory lines), and the idle board power
from tegrastats. Nothing is installed on the device: a shell, coreutils, trtexec and tegrastats are all it needs.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
from pathlib import Path
from typing import Any

import numpy as np
from packaging.version import Version

from edgeres.artifacts import atomic_path
from edgeres.backends.base import pad_batch
from edgeres.backends.layer_info import engine_layers, layers_dict
from edgeres.backends.memory import MemoryUse, trtexec_memory
from edgeres.backends.profile import LayerProfile
from edgeres.backends.trtexec import (
    JETPACK_TRTEXEC,
    EngineRun,
    QueryTimes,
    TrtexecBuild,
    device_from_log,
    inference_argv,
    layer_info_argv,
    parse_output,
    parse_times,
    timing_argv,
    version_from_banner,
)
from edgeres.bench.device_state import Device, output
from edgeres.bench.rows import Entry
from edgeres.config import BenchConfig
from edgeres.energy import PowerReading
from edgeres.errors import ConfigError, RemoteError
from edgeres.progress import log
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


def device_trtexec(name: str, device: Device, given: str | None, what: str) -> tuple[TargetProfile, str, Version, str]:
    """The target ``name`` on ``device`` (TensorRT only: ``what`` is the one-line refusal's fix for another) and the
    trtexec there whose TensorRT that target runs: (target, trtexec, its version, its banner).
    """
    target = device_target(name, device)
    if target.runtime != "tensorrt":
        raise ConfigError(f"{target.name} runs ONNX Runtime, and trtexec builds TensorRT engines; {what}")
    exe, version, banner = find_trtexec(device, given)
    target.check_tensorrt(version, what=f"trtexec on {device.destination}: TensorRT")
    return target, exe, version, banner


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
        self.gpu: tuple[str | None, str | None] = (None, None)  # the GPU and compute capability trtexec named
        self.cache.mkdir(parents=True, exist_ok=True)
        self.run(["mkdir", "-p", f"{self.wdir}/in", f"{self.wdir}/out"])

    def run(self, argv: list[str], what: str = "") -> str:
        if argv[0] == self.exe:
            self.commands.append(shlex.join(argv))
        p = self.device.run(argv, check=False)
        if p.returncode != 0:
            err = p.stderr.decode(errors="replace") + p.stdout.decode(errors="replace")[-2000:]
            said = [ln for ln in err.splitlines() if "[E]" in ln]  # trtexec's first error says why, not "&&&& FAILED"
            err = said[0] if said and argv[0] == self.exe else err
            raise RemoteError(self.device.failure(argv, p.returncode, err) + (f"; {what}" if what else ""))
        out = p.stdout.decode(errors="replace")
        if argv[0] == self.exe and self.gpu[0] is None:
            self.gpu = device_from_log(out)
        return out

    def engine(self, entry: Entry, model: str, purpose: str, batch: int, max_batch: int) -> str:
        """Build (or keep) the engine of one row for one purpose; the same command is not run twice. A DLA engine is
        static at ``batch``, and trtexec's lines about the DLA (which layers fall back to the GPU) are kept with it.
        """
        shape = tuple(entry.info.preprocessing.input_shape)
        eng = f"{self.wdir}/{entry.label}.{purpose}.engine"
        static, fixed = entry.dla_core is not None, entry.fixed_batch
        batch = batch if fixed is None else fixed  # a graph of fixed batch: trtexec takes no shapes for it
        b = TrtexecBuild(model, eng, entry.info.input_name, shape, entry.precision,
                         1 if purpose in ("latency", "sweep") and not static and not fixed else batch, batch,
                         batch if static or fixed else max_batch, entry.dla_core,
                         timing_cache=f"{self.wdir}/timing.cache", fixed=fixed is not None)
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

    @staticmethod
    def loads(entry: Entry, engine: str) -> EngineRun:
        """How trtexec loads ``engine`` of ``entry``'s row: without shapes for a fixed batch, on the row's DLA core."""
        return EngineRun(engine, entry.info.input_name, tuple(entry.info.preprocessing.input_shape),
                         entry.fixed_batch is not None, entry.dla_core)

    def logits(self, entry: Entry, engine: str, x: np.ndarray, batch: int, static: bool = False) -> np.ndarray:
        """Every image's logits, one trtexec run per batch; batches done before (here) are not run again. A static
        engine's short last batch is padded to ``batch`` with zeros, and their rows dropped.
        """
        folder = self.cache / entry.label
        folder.mkdir(exist_ok=True)
        there = set(self.run(["ls", f"{self.wdir}/in"]).split())
        out, n = [], (len(x) + batch - 1) // batch
        for k, i in enumerate(range(0, len(x), batch)):
            xb = np.ascontiguousarray(x[i:i + batch], dtype=np.float32)
            real = len(xb)
            xb = pad_batch(xb, batch) if static else xb
            digest = hashlib.sha256(xb.tobytes()).hexdigest()
            kept = folder / f"{digest}.npy"
            if kept.is_file():
                out.append(np.load(kept)[:real])
                continue
            name = f"{digest}.bin"
            self._send_batch(xb, name, digest, name in there, k)
            y_path = f"{self.wdir}/out/{entry.label}.{digest}.json"
            try:
                self.run(inference_argv(self.exe, self.loads(entry, engine), len(xb), f"{self.wdir}/in/{name}",
                                        y_path))
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

    def inspect(self, entry: Entry, engine: str, batch: int) -> dict[str, Any]:
        """What ``engine`` runs, from trtexec's ``--exportLayerInfo`` in a run of its own at ``batch``: each layer's
        precision and GPU or DLA, as report.json's ``engines`` keeps the Python runner's. Where that run or its file
        fails, the reason instead: the row's figures stand without it.
        """
        path = f"{self.wdir}/out/{entry.label}.b{batch}.layers.json"
        try:
            self.run(layer_info_argv(self.exe, self.loads(entry, engine), batch, path))
            layers = engine_layers(self.device.read(path).decode(errors="replace"))
        except (RemoteError, ValueError, TypeError, AttributeError) as e:
            log(f"{entry.label}: no layer report from trtexec ({e})")
            return {"engine": engine, "dla_core": entry.dla_core, "why": str(e)}
        return {"engine": engine, "label": entry.precision, "dla_core": entry.dla_core, "batch": batch,
                **layers_dict(layers, entry.precision)}

    def profile(self, entry: Entry, engine: str, batch: int) -> LayerProfile:
        """Each layer's mean time from trtexec's profiler, in a run of its own at ``batch``."""
        from edgeres.backends.profile import parse_trtexec_profile
        from edgeres.backends.trtexec import profile_argv
        from edgeres.config import PROFILE_RUNS

        path = f"{self.wdir}/out/{entry.label}.b{batch}.profile.json"
        self.run(profile_argv(self.exe, self.loads(entry, engine), batch, PROFILE_RUNS, path))
        return parse_trtexec_profile(self.device.read(path).decode(errors="replace"), batch)

    def times(self, entry: Entry, engine: str, batch: int, cfg: BenchConfig, window: int,
              seconds: float) -> QueryTimes:
        """One timing window of trtexec's own timed run: per-query latency and GPU compute (ms), warm-up dropped."""
        path = f"{self.wdir}/out/{entry.label}.b{batch}.w{window}.times.json"
        lat = cfg.latency
        out = self.run(timing_argv(self.exe, self.loads(entry, engine), batch, lat.warmup_s, seconds, lat.min_iters,
                                   path))
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
