"""Does the bench harness cost time itself, and do two runs agree? (issue 4's bars)

    .venv/bin/python benchmarks/latency_harness.py runs/demo/model.onnx [--rounds 3] [--duration 3]

On one ONNX Runtime session it interleaves, round by round, a bare loop of ``InferenceSession.run``
(timed with perf_counter, nothing else) and edgeres's ``measure_latency``. It prints each p50, the ratio
harness/bare per round, and how two full harness runs (trtexec defaults) agree.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edgeres.backends.onnxruntime import OrtSession
from edgeres.bench.latency import LatencyConfig, measure_latency
from edgeres.onnx_model import onnx_info


def bare_p50(sess: OrtSession, x: np.ndarray, warmup_s: float, duration_s: float) -> float:
    run, names, feed = sess._sess.run, [sess.output_name], {sess.input_name: x}
    end = time.perf_counter() + warmup_s
    while time.perf_counter() < end:
        run(names, feed)
    times = []
    stop = time.perf_counter() + duration_s
    while True:
        t0 = time.perf_counter()
        run(names, feed)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if t1 >= stop and len(times) >= 10:
            break
    return float(np.percentile(times, 50) * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx", type=Path)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--duration", type=float, default=1.5)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    info = onnx_info(args.onnx)
    x = np.random.default_rng(0).standard_normal((args.batch, *info.preprocessing.input_shape)).astype(np.float32)
    sess = OrtSession(args.onnx)
    cfg = LatencyConfig(0.2, 10, args.duration, 10)
    ratios, bares = [], []
    print(f"{args.onnx} batch {args.batch}, {sess.threads} threads, {args.duration} s per measurement")
    for r in range(args.rounds):
        first_bare = r % 2 == 0  # alternate the order so drift does not favour one side
        bare = bare_p50(sess, x, 0.2, args.duration) if first_bare else None
        harness = measure_latency(sess, x, args.batch, cfg).p50_ms
        bare = bare if first_bare else bare_p50(sess, x, 0.2, args.duration)
        ratios.append(harness / bare)
        bares.append(bare)
        print(f"round {r + 1}: bare session.run p50 {bare:.4f} ms, harness p50 {harness:.4f} ms, "
              f"harness/bare {harness / bare:.4f}")
    print(f"machine noise: the bare loop's own p50 ranged {min(bares):.4f}–{max(bares):.4f} ms across rounds "
          f"({100 * (max(bares) / min(bares) - 1):.1f}%)")
    full = LatencyConfig()  # two complete runs with trtexec's defaults
    a = measure_latency(sess, x, args.batch, full)
    b = measure_latency(sess, x, args.batch, full)
    spread = abs(a.p50_ms - b.p50_ms) / min(a.p50_ms, b.p50_ms)
    print(f"harness/bare median over rounds: {np.median(ratios):.4f} (bar: within 3%)")
    print(f"two harness runs: p50 {a.p50_ms:.4f} and {b.p50_ms:.4f} ms, differ by {100 * spread:.2f}% (bar: 5%); "
          f"std within a run {a.std_ms:.4f} / {b.std_ms:.4f} ms, p99 {a.p99_ms:.4f} / {b.p99_ms:.4f} ms")


if __name__ == "__main__":
    main()
