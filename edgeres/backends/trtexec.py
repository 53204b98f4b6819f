"""trtexec, which every JetPack ships at /usr/src/tensorrt/bin/trtexec: command lines per release and its outputs read.

Nothing here runs Python on the device: edgeres builds argument lists and reads what trtexec writes, in the formats of
NVIDIA's ``samples/common/sampleReporting.cpp``:
- the banner ``&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # …`` (8.x: M·1000 + m·100 + p; 10.x on: M·10000 + …);
- ``--exportTimes``: ``[{"startEnqMs", "endEnqMs", "startH2dMs", "endH2dMs", "startComputeMs", "endComputeMs",
  "startD2hMs", "endD2hMs", "h2dMs", "computeMs", "d2hMs", "latencyMs", "endToEndMs"}, …]`` with the warm-up queries
  included (older releases: ``startInMs``/``inMs``/``outMs``);
- ``--exportOutput``: ``[{"name": …, "dimensions": "32x10", "values": [ … ]}]``.
- ``--exportProfile``: ``[{"count": runs}, {"name", "timeMs", "averageMs", "percentage"}, …]`` (read by
  ``edgeres.backends.profile``).
- ``--exportLayerInfo``: the engine inspector's JSON, as the Python runner gets it (read by
  ``edgeres.backends.layer_info``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from packaging.version import Version

from edgeres.config import WORKSPACE_MIB
from edgeres.errors import ArtifactError, ConfigError

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
BANNER = re.compile(r"TensorRT\.trtexec \[TensorRT v(\d+)\]")
PRECISION_FLAGS_GONE = Version("11")  # 11.x: no --fp16/--int8, every network strongly typed
MEMPOOL_SINCE = Version("8.4")  # --memPoolSize=workspace:N; before, --workspace=N
SKIP_INFERENCE_SINCE = Version("8.6")  # --skipInference; before, --buildOnly


def version_from_banner(text: str) -> Version:
    """The TensorRT release in trtexec's first line, e.g. ``[TensorRT v8502]`` → 8.5.2, ``[TensorRT v100300]`` → 10.3.0."""
    m = BANNER.search(text)
    if m is None:
        raise ConfigError("this trtexec printed no version banner ('&&&& RUNNING TensorRT.trtexec [TensorRT v…]'); "
                          f"is it NVIDIA's trtexec? On a Jetson it is {JETPACK_TRTEXEC}")
    n = int(m.group(1))
    if n >= 100000:
        return Version(f"{n // 10000}.{n // 100 % 100}.{n % 100}")
    return Version(f"{n // 1000}.{n // 100 % 10}.{n % 100}")


SELECTED_DEVICE = re.compile(r"\[I\] Selected Device: (.+?)\s*$", re.M)  # "=== Device Information ===", every run
COMPUTE_CAPABILITY = re.compile(r"\[I\] Compute Capability: (\d+\.\d+)", re.M)


def device_from_log(text: str) -> tuple[str | None, str | None]:
    """The GPU's name and compute capability from the "=== Device Information ===" lines trtexec prints in each run
    (``[I] Selected Device: Orin``, ``[I] Compute Capability: 8.7``: CUDA's own device name, as the Python runner
    reads it); None where they are absent.
    """
    gpu, cc = SELECTED_DEVICE.search(text), COMPUTE_CAPABILITY.search(text)
    return (gpu.group(1) if gpu else None), (cc.group(1) if cc else None)


def shape(name: str, batch: int, chw: tuple[int, ...]) -> str:
    return f"{name}:{'x'.join(str(d) for d in (batch, *chw))}"


def shapes(name: str, batch: int, chw: tuple[int, ...], fixed: bool) -> list[str]:
    """``--shapes`` of a run; none for an engine whose graph fixes its batch (its shape is the graph's)."""
    return [] if fixed else [f"--shapes={shape(name, batch, chw)}"]


@dataclass(frozen=True)
class TrtexecBuild:
    """One engine for trtexec to build: what ``EngineSpec`` is for the Python runner."""

    onnx: str
    engine: str
    input_name: str
    input_shape: tuple[int, ...]  # C, H, W
    precision: str  # fp32 | fp16 | int8
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    dla_core: int | None = None
    timing_cache: str | None = None
    fixed: bool = False  # the graph fixes its batch: trtexec refuses shapes for it ("Static model does not take …")

    def argv(self, trtexec: str, version: Version) -> list[str]:
        """The build command for this release (no inference: timing is a separate run)."""
        profile = [] if self.fixed else [
            f"--{k}Shapes={shape(self.input_name, b, self.input_shape)}"
            for k, b in (("min", self.min_batch), ("opt", self.opt_batch), ("max", self.max_batch))]
        a = [trtexec, f"--onnx={self.onnx}", f"--saveEngine={self.engine}", *profile,
             f"--memPoolSize=workspace:{WORKSPACE_MIB}" if version >= MEMPOOL_SINCE else f"--workspace={WORKSPACE_MIB}",
             "--skipInference" if version >= SKIP_INFERENCE_SINCE else "--buildOnly"]
        if self.precision == "fp32":
            a.append("--noTF32")
        if version < PRECISION_FLAGS_GONE:
            a += {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[self.precision]
        if self.dla_core is not None:
            a += [f"--useDLACore={self.dla_core}", "--allowGPUFallback"]
        if self.timing_cache:
            a.append(f"--timingCacheFile={self.timing_cache}")
        return a + ["--profilingVerbosity=detailed"]  # each layer's formats in the engine, for --exportLayerInfo


@dataclass(frozen=True)
class EngineRun:
    """How trtexec loads one engine for a run: its file and input, and what it was built for."""

    engine: str
    input_name: str
    chw: tuple[int, ...]
    fixed: bool = False  # the graph fixes its batch: trtexec takes no --shapes for it
    dla_core: int | None = None  # a DLA engine's core: trtexec's runtime is set to it, else the engine runs on core 0

    def args(self, trtexec: str, batch: int) -> list[str]:
        dla = [] if self.dla_core is None else [f"--useDLACore={self.dla_core}"]  # sampleEngines: runtime->setDLACore
        return [trtexec, f"--loadEngine={self.engine}", *shapes(self.input_name, batch, self.chw, self.fixed), *dla]


def timing_argv(trtexec: str, run: EngineRun, batch: int, warmup_s: float, duration_s: float, min_iters: int,
                times: str) -> list[str]:
    """trtexec's own timed run of an engine: warm-up, duration and iterations pinned, per-query times exported."""
    return [*run.args(trtexec, batch), f"--warmUp={max(0, round(warmup_s * 1000))}",
            f"--duration={max(1, round(duration_s))}", f"--iterations={min_iters}", "--avgRuns=1",
            f"--exportTimes={times}"]


def profile_argv(trtexec: str, run: EngineRun, batch: int, runs: int, profile: str) -> list[str]:
    """A run of its own with trtexec's per-layer profiler (``--dumpProfile``, printed; ``--exportProfile``, kept)."""
    return [*run.args(trtexec, batch), "--warmUp=0", "--duration=0", f"--iterations={runs}", "--avgRuns=1",
            "--dumpProfile", f"--exportProfile={profile}"]


def layer_info_argv(trtexec: str, run: EngineRun, batch: int, layers: str) -> list[str]:
    """One inference that writes the engine inspector's JSON (``--exportLayerInfo``). trtexec inspects the context it
    ran, its input shape set, so a dynamic engine shows its formats (``printLayerInfo`` in trtexec.cpp); at build time,
    ``--skipInference`` inspects no context, and every format of a dynamic engine reads "N/A due to dynamic shapes".
    """
    return [*run.args(trtexec, batch), "--warmUp=0", "--duration=0", "--iterations=1", "--avgRuns=1",
            f"--exportLayerInfo={layers}"]


def inference_argv(trtexec: str, run: EngineRun, batch: int, inputs: str, output: str) -> list[str]:
    """One inference of a batch read from a raw float32 file, its outputs written as JSON (accuracy)."""
    return [*run.args(trtexec, batch), f"--loadInputs={run.input_name}:{inputs}", f"--exportOutput={output}",
            "--warmUp=0", "--duration=0", "--iterations=1", "--avgRuns=1"]


@dataclass(frozen=True)
class QueryTimes:
    """Per-query times of trtexec's timed run (warm-up queries dropped), in ms."""

    latency_ms: np.ndarray  # H2D + compute + D2H: what the Python runner's host timing covers
    compute_ms: np.ndarray  # trtexec's "GPU Compute Time"
    copies_timed: bool


def _json(text: str, what: str) -> Any:
    fixed = re.sub(r"(?<![\w\"])-?(nan|inf)(?![\w\"])", "null", text, flags=re.I)  # C++ streams print nan/inf bare
    try:
        return json.loads(fixed)
    except json.JSONDecodeError as e:
        raise ArtifactError(f"trtexec's {what} is not JSON ({e}); is the file complete?") from None


def parse_times(text: str, warmup_ms: float) -> QueryTimes:
    """``--exportTimes`` of any release: queries that started computing after the warm-up."""
    rows = _json(text, "--exportTimes file")
    if not isinstance(rows, list) or not rows:
        raise ArtifactError("trtexec's --exportTimes file holds no queries; was --duration too short?")
    lat, comp, h2d = [], [], []
    for r in rows:
        start = r.get("startComputeMs", 0.0)
        if start is not None and start < warmup_ms:
            continue
        c = r.get("computeMs", (r.get("endComputeMs") or 0) - (r.get("startComputeMs") or 0))
        i = r.get("h2dMs", r.get("inMs", 0.0)) or 0.0
        o = r.get("d2hMs", r.get("outMs", 0.0)) or 0.0
        lat.append(r.get("latencyMs", i + c + o))
        comp.append(c)
        h2d.append(i + o)
    if not lat:
        raise ArtifactError("every query in trtexec's --exportTimes file fell inside the warm-up")
    return QueryTimes(np.asarray(lat, float), np.asarray(comp, float), bool(np.max(h2d) > 0))


def parse_output(text: str, name: str | None = None) -> np.ndarray:
    """``--exportOutput``: the (first, or named) output tensor as float32 of its dimensions."""
    doc = _json(text, "--exportOutput file")
    if not isinstance(doc, list) or not doc:
        raise ArtifactError("trtexec's --exportOutput file holds no tensor")
    t = next((t for t in doc if name is None or t.get("name") == name), None)
    if t is None:
        raise ArtifactError(f"trtexec's --exportOutput file has no tensor {name!r}")
    dims = [int(d) for d in str(t["dimensions"]).split("x") if d]
    values = np.asarray([np.nan if v is None else v for v in t["values"]], dtype=np.float32)
    if values.size != int(np.prod(dims)):
        raise ArtifactError(f"trtexec's output {t.get('name')} has {values.size} values for dimensions "
                            f"{t['dimensions']}; the file is truncated")
    return values.reshape(dims)
