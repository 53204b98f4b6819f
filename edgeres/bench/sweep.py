"""bench --sweep: each row's latency and images per second at a range of batch sizes, and the batch to deploy.

A deployment picks its batch from this curve: images per second rise with the batch until the device is full, while
the latency of a call keeps rising. Every batch of the sweep is timed as the latency batch is (the same warm-up,
duration and alternating rounds, every row in turn), by the runner of the bench:

- ONNX Runtime and PyTorch: each model's one session takes every batch.
- TensorRT (Python or trtexec): one engine per row whose optimization profile covers the sweep, from 1 to its largest
  batch and optimized for the largest: the engine a server with dynamic batching runs. The bench's latency and
  throughput rows keep their engines optimized for one batch each, so a sweep's batch-1 figure can be slower.
- A DLA engine is static: a DLA row gets an engine per batch of the sweep.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgeres.config import SWEEP_KNEE
from edgeres.errors import ConfigError


def parse_sweep(text: str) -> tuple[int, ...]:
    """``"1,2,4,8"`` → ``(1, 2, 4, 8)``: sorted, each once; ``BenchConfig.validate`` checks the range."""
    try:
        got = sorted({int(v) for v in text.replace(" ", "").split(",") if v})
    except ValueError:
        raise ConfigError(f"--sweep takes batch sizes separated by commas, for example 1,2,4,8,16,32; "
                          f"got {text!r}") from None
    if not got:
        raise ConfigError("--sweep takes batch sizes separated by commas, for example 1,2,4,8,16,32; got none")
    return tuple(got)


def purpose(batch: int) -> str:
    """What a bench opens a row's session for, to time ``batch`` of the sweep. A TensorRT row's engine for it
    (``engine_configs``) is the row's one sweep engine, the same for every batch, or a DLA row's static one.
    """
    return f"sweep:{batch}"


@dataclass(frozen=True)
class SweepPoint:
    """One batch of one row's sweep: ``results[i].sweep[j]`` of report.json."""

    batch: int
    p50_ms: float  # per call of ``batch`` images
    p99_ms: float
    throughput_ips: float  # images per second: batch / mean latency
    noise_pct: float | None  # how far the p50s of the batch's windows spread (None for one window)
    gpu_compute_p50_ms: float | None = None  # trtexec's computeMs alone (no copies); None for other runners

    @classmethod
    def of(cls, stats: dict[str, Any]) -> SweepPoint:
        """From a latency entry of a row (``LatencyStats.to_dict()``, with trtexec's ``gpu_compute`` where it has it)."""
        compute = stats.get("gpu_compute") or {}
        return cls(stats["batch"], stats["p50_ms"], stats["p99_ms"], stats["throughput_ips"], stats["noise_pct"],
                   compute.get("p50_ms"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def knee(points: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The point of most images per second, and the smallest batch within ``SWEEP_KNEE`` of it (the batch to
    deploy: as many images per second, at the lowest latency).
    """
    if not points:
        return None
    best = max(points, key=lambda p: p["throughput_ips"])
    first = min((p for p in points if p["throughput_ips"] >= SWEEP_KNEE * best["throughput_ips"]),
                key=lambda p: p["batch"])
    return best, first


def how(runtime: str) -> str:
    """What report.json's ``sweep.how`` says of the engines and the timing."""
    engines = {"onnxruntime": "each model's one session (ONNX Runtime; PyTorch for a checkpoint) takes every batch",
               "tensorrt": "one engine per row with a profile from 1 to the largest batch, optimized for it (as a "
                           "server with dynamic batching runs it); a DLA row: a static engine per batch"}
    return (f"every batch timed as the latency batch is (warm-up, duration, alternating rounds, every row in turn); "
            f"{engines.get(runtime, engines['tensorrt'])}")


def sweep_note(report: dict[str, Any]) -> list[str]:
    """The table's note: each row's best images per second and the smallest batch that comes within 5% of it."""
    swept = [(r["label"] + ("" if r["latency_representative"] else "*"), r["sweep"]) for r in report["results"]
             if r.get("sweep")]
    if not swept:
        return []
    batches = [p["batch"] for p in swept[0][1]]
    parts = []
    for label, points in swept:
        got = knee(points)
        if got is None:
            continue
        best, first = got
        parts.append(f"{label} {best['throughput_ips']:,.0f}/s at {best['batch']}"
                     + (f", {100 * first['throughput_ips'] / best['throughput_ips']:.0f}% of it at {first['batch']} "
                        f"({first['p50_ms']:.2f} ms)" if first is not best else f" ({best['p50_ms']:.2f} ms)"))
    noise = max((p["noise_pct"] or 0.0 for _, points in swept for p in points), default=0.0)
    return [f"batch sweep {batches[0]}…{batches[-1]} ({len(batches)} batches; report.md has each): most images/s, and the "
            f"smallest batch within {100 - 100 * SWEEP_KNEE:.0f}% of it: " + "; ".join(parts)
            + (f"; windows spread up to {noise:.1f}%" if noise else "")]


def sweep_lines(report: dict[str, Any]) -> list[str]:
    """report.md's sweep table: a row per model, a column per batch, images per second and p50 per call."""
    swept = [r for r in report["results"] if r.get("sweep")]
    if not swept:
        return []
    batches = [p["batch"] for p in swept[0]["sweep"]]
    cells = []
    for r in swept:
        got = knee(r["sweep"])
        best = got[0]["batch"] if got else None
        cells.append((r["label"], [(f"**{p['throughput_ips']:,.0f}/s**" if p["batch"] == best
                                    else f"{p['throughput_ips']:,.0f}/s") + f" · {p['p50_ms']:.3f}" for p in r["sweep"]]))
    out = ["", "## Batch sweep (bench --sweep)", "", (report.get("sweep") or {}).get("how", ""), "",
           "Each cell: images per second, and the p50 of one call in ms; **bold**: the row's most images per second."]
    out += _table(batches, cells)
    ref = swept[0]
    if len(swept) > 1 and ref["label"] == report["reference"]:
        out += ["", f"Images per second against {ref['label']}'s at the same batch:"]
        out += _table(batches, [(r["label"], [f"{p['throughput_ips'] / q['throughput_ips']:.2f}×"
                                              for p, q in zip(r["sweep"], ref["sweep"])]) for r in swept[1:]])
    compute = [r for r in swept if any(p.get("gpu_compute_p50_ms") is not None for p in r["sweep"])]
    if compute:
        out += ["", "GPU compute alone (trtexec's computeMs, no copies), p50 ms per call:"]
        out += _table(batches, [(r["label"], ["—" if p.get("gpu_compute_p50_ms") is None
                                              else f"{p['gpu_compute_p50_ms']:.3f}" for p in r["sweep"]])
                                for r in compute])
    return out


def _table(batches: list[int], rows: list[tuple[str, list[str]]]) -> list[str]:
    """A markdown table of a column per batch, and a row per model."""
    return (["", "| model | " + " | ".join(f"batch {b}" for b in batches) + " |", "|---|" + "---|" * len(batches)]
            + [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows])


def plot_sweep(ax: Any, swept: list[dict[str, Any]]) -> None:
    """report.png's sweep panel: images per second against the batch, one line per row, the knee marked."""
    for r in swept:
        xs, ys = [p["batch"] for p in r["sweep"]], [p["throughput_ips"] for p in r["sweep"]]
        line = ax.plot(xs, ys, marker="o", markersize=3, label=r["label"])[0]
        got = knee(r["sweep"])
        if got is not None:
            ax.plot([got[1]["batch"]], [got[1]["throughput_ips"]], "o", markersize=9, markerfacecolor="none",
                    color=line.get_color())
    ax.set_xscale("log", base=2)
    batches = [p["batch"] for p in swept[0]["sweep"]]
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel(f"batch; ○ the smallest within {100 - 100 * SWEEP_KNEE:.0f}% of the row's best")
    ax.set_ylabel("images per second")
    ax.legend(fontsize=7)
