"""Does the bench harness cost time itself, and do two runs agree? (issue 4's bars)

    .venv/bin/python benchmarks/latency_harness.py runs/demo/model.onnx [--threads 1,2] [--pairs 20] [--window 0.25]

On one ONNX Runtime session per thread count it interleaves short windows of a bare ``InferenceSession.run``
loop (perf_counter, nothing else) and of edgeres's ``measure_latency`` (A B, B A, …), so host drift falls on
both alike, and compares the pooled p50s. Then it times the model twice, back to back, the way ``edgeres bench``
does (default ``LatencyConfig``: 3 s in 5 alternating windows), and prints how far the two p50s differ and the
host noise each run measured itself (the spread of its windows' p50s).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edgeres.backends.latency import LatencyConfig, compare_latency, timed_runs
from edgeres.backends.onnxruntime import OrtSession
from edgeres.onnx_model import onnx_info


def bare_window(sess: OrtSession, x: np.ndarray, warmup_s: float, duration_s: float) -> np.ndarray:
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
    return np.asarray(times)


def overhead(sess: OrtSession, x: np.ndarray, pairs: int, window: float) -> dict:
    warm = window / 5
    cfg = LatencyConfig(warm, 1, window, 10)
    bare, harness = [], []
    for i in range(pairs):
        for side in (("bare", "harness") if i % 2 == 0 else ("harness", "bare")):
            if side == "bare":
                bare.append(bare_window(sess, x, warm, window))
            else:
                harness.append(timed_runs(sess, x, cfg))
    p50 = lambda ws: float(np.median(np.concatenate(ws)) * 1e3)  # noqa: E731
    per_bare = [float(np.median(w) * 1e3) for w in bare]
    per_pair = [np.median(h) / np.median(b) for h, b in zip(harness, bare)]
    return {"bare": p50(bare), "harness": p50(harness), "ratio": p50(harness) / p50(bare),
            "pair_median": float(np.median(per_pair)),
            "noise": 100 * (max(per_bare) / min(per_bare) - 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx", type=Path)
    ap.add_argument("--threads", default="1,0", help="comma list; 0 means every core (bench's default)")
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--window", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    info = onnx_info(args.onnx)
    x = np.random.default_rng(0).standard_normal((args.batch, *info.preprocessing.input_shape)).astype(np.float32)
    for t in (int(v) for v in args.threads.split(",")):
        sess = OrtSession(args.onnx, t or None)
        o = overhead(sess, x, args.pairs, args.window)
        print(f"\n{args.onnx}, batch {args.batch}, {sess.threads} threads: {args.pairs} interleaved pairs of "
              f"{args.window} s windows")
        print(f"  pooled p50: bare session.run {o['bare']:.4f} ms, harness {o['harness']:.4f} ms, "
              f"harness/bare {o['ratio']:.4f} (bar: within 3%); median of per-pair ratios {o['pair_median']:.4f}")
        print(f"  machine noise: the bare loop's window p50s spread {o['noise']:.1f}%")
        runs = [compare_latency({"m": sess}, x, args.batch, LatencyConfig())["m"] for _ in range(2)]
        a, b = runs
        spread = 100 * abs(a.p50_ms - b.p50_ms) / min(a.p50_ms, b.p50_ms)
        print(f"  two bench-method runs: p50 {a.p50_ms:.4f} and {b.p50_ms:.4f} ms, differ by {spread:.2f}% "
              f"(bar: 5%); each run's own noise {a.noise_pct:.1f}% / {b.noise_pct:.1f}%")
        sess.close()


if __name__ == "__main__":
    main()
