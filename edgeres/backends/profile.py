"""Where a model's time goes, layer by layer, from each runtime's own profiler, as one ``LayerProfile``.

- ONNX Runtime: ``SessionOptions.enable_profiling`` on a session of its own; each node's ``…_kernel_time`` events of
  the trace it writes, with the node's operator (``args.op_name``).
- TensorRT: an ``IProfiler`` on the context (``report_layer_time(name, ms)`` for each layer of each run).
- trtexec: ``--exportProfile``, whose layout is ``[{"count": runs}, {"name", "timeMs", "averageMs", "percentage"}, …]``
  (``Profiler::exportJSONProfile`` in TensorRT's samples/common/sampleReporting.cpp).

A profile runs apart from the timed windows, as trtexec's ``--separateProfileRun`` does: a profiler slows what it
watches, so its total is not the row's latency, and its shares are what to read. On TensorRT, layers named
"Reformatting CopyNode …" (or "… reformatter") only convert between layouts or precisions; their share is reported on
its own, since an INT8 engine that spends its time there gains little from INT8.

On a DLA engine, TensorRT's profiler times the GPU's stream, and the DLA's part shows as the layers around its
subgraph: the copies into the DLA's memory ("images to nvm"), the submission ("{ForeignNode[…]}"), the wait for the
DLA and the copy back ("head_3 from nvm": 98% of the run in a TensorRT 8.5 profile of an Orin, NVIDIA/TensorRT issue
3143) and "… copy finish". Their sum is the row's ``dla_ms``: the DLA's compute with its copies, which the profile
cannot part.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeres.config import PROFILE_TOP
from edgeres.errors import ArtifactError


@dataclass
class LayerTime:
    name: str
    ms: float  # mean per run
    op: str | None = None  # the ONNX operator where the runtime says (ONNX Runtime); None for an engine's fused layers


@dataclass
class LayerProfile:
    runs: int
    batch: int
    layers: list[LayerTime]  # every layer, slowest first
    how: str

    def __post_init__(self) -> None:
        self.layers = sorted(self.layers, key=lambda t: -t.ms)

    @property
    def total_ms(self) -> float:
        return float(sum(t.ms for t in self.layers))

    def reformat_ms(self) -> float:
        return float(sum(t.ms for t in self.layers if is_reformat(t.name)))

    def dla_ms(self) -> float | None:
        """The DLA's subgraphs with their copies and waits; None where no layer is a DLA's (no DLA, or not an engine)."""
        if not any(DLA_COPY.search(t.name) for t in self.layers):
            return None
        return float(sum(t.ms for t in self.layers if DLA_COPY.search(t.name) or t.name.startswith("{ForeignNode[")))

    def by_op(self) -> dict[str, float]:
        """Mean ms per run of each operator, slowest first (layers without an operator are left out)."""
        out: dict[str, float] = {}
        for t in self.layers:
            if t.op:
                out[t.op] = out.get(t.op, 0.0) + t.ms
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def to_dict(self, top: int = PROFILE_TOP) -> dict[str, Any]:
        return {"runs": self.runs, "batch": self.batch, "how": self.how, "total_ms": self.total_ms,
                "layer_count": len(self.layers), "layers": [asdict(t) for t in self.layers[:top]],
                "other_ms": float(sum(t.ms for t in self.layers[top:])), "by_op": self.by_op() or None,
                "reformat_ms": self.reformat_ms(), "dla_ms": self.dla_ms()}


REFORMAT = re.compile(r"^Reformatting CopyNode|reformatter", re.IGNORECASE)
DLA_COPY = re.compile(r" (to|from) nvm$| copy finish$")  # a DLA subgraph's copies and the wait for it


def is_reformat(name: str) -> bool:
    return bool(REFORMAT.search(name))


def ort_layers(events: list[dict[str, Any]]) -> tuple[list[LayerTime], int]:
    """Each node's mean kernel time (ms) from an ONNX Runtime profile trace (``dur`` in µs), and the runs averaged:
    every ``model_run`` but the first (it allocates), whose nodes are left out.
    """
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    if len(runs) < 2:
        raise ArtifactError(f"ONNX Runtime's profile holds {len(runs)} runs; profile at least two")
    after = runs[0]["ts"] + runs[0]["dur"]
    total: dict[str, float] = {}
    ops: dict[str, str | None] = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") == "Node" and name.endswith("_kernel_time") and e.get("ts", 0) >= after:
            node = name[: -len("_kernel_time")]
            total[node] = total.get(node, 0.0) + float(e.get("dur", 0)) / 1000.0
            ops[node] = (e.get("args") or {}).get("op_name")
    n = len(runs) - 1
    return [LayerTime(k, ms / n, ops[k]) for k, ms in total.items()], n


def onnxruntime_profile(path: Path, threads: int, x: np.ndarray, runs: int, workdir: Path) -> LayerProfile:
    """``runs`` calls of a profiled session of its own on ``x``, after one that is left out (the first allocates)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_profiling = True
    so.profile_file_prefix = str(workdir / "ort-profile")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(runs + 1):
        sess.run(None, feed)
    trace = Path(sess.end_profiling())
    try:
        layers, n = ort_layers(json.loads(trace.read_text()))
    finally:
        trace.unlink()
    return LayerProfile(n, int(x.shape[0]), layers,
                        "ONNX Runtime's profiler (enable_profiling): each node's kernel time, mean per run, in a "
                        "session of its own after one run left out")


def parse_trtexec_profile(text: str, batch: int) -> LayerProfile:
    """trtexec's ``--exportProfile`` file: runs and each layer's mean (``averageMs``)."""
    try:
        doc = json.loads(text)
        runs = int(doc[0]["count"])
        layers = [LayerTime(str(r["name"]), float(r["averageMs"])) for r in doc[1:]]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise ArtifactError(f"trtexec's --exportProfile file is not its per-layer JSON ({type(e).__name__}: {e}); "
                            f"check trtexec's log on the device") from None
    return LayerProfile(runs, batch, layers, "trtexec --exportProfile --separateProfileRun: each layer's mean time "
                                             "per run, in a run of its own after the timed ones")
