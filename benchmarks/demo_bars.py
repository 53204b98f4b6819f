"""Run the demo from scratch, timed, and print the figures issue 2's bars are judged on.

    .venv/bin/python benchmarks/demo_bars.py [--out runs/bars] [--reuse]

--reuse measures an existing run folder instead of redoing every stage (the wall time then
covers only what was redone). All ratios come from this one run.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from edgeres.bench.report import table
from edgeres.hw import cpu_features
from edgeres.pipeline import PipelineConfig, run_pipeline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bars")
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args()
    cfg = replace(PipelineConfig(), out=args.out)
    t0 = time.perf_counter()
    report = run_pipeline(cfg, force=not args.reuse)
    wall = time.perf_counter() - t0
    res = {r["label"]: r for r in report["results"]}
    fp32 = res["fp32"]
    print(table(report))
    print()
    print(f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, features {', '.join(cpu_features())}")
    print("stages: " + ", ".join(f"{s['stage']} {s['seconds']:.0f}s{' (skipped)' if s['skipped'] else ''}"
                                 for s in report["pipeline"]))
    bars = [("demo wall time (s, ≤ 600)", wall, wall <= 600),
            ("fp32 top-1 % (≥ 90)", fp32["accuracy"]["top1"], fp32["accuracy"]["top1"] >= 90.0)]
    for label in ("int8-tensorrt", "int8-cpu"):
        a = res[label]["accuracy"]
        bars.append((f"{label} Δtop-1 pt (≥ -0.5)", a["delta_top1"], a["delta_top1"] >= -0.5))
        bars.append((f"{label} agreement % (≥ 98.5)", a["agreement"], a["agreement"] >= 98.5))
    ratio = res["int8-cpu"]["latency"]["p50_ms"] / fp32["latency"]["p50_ms"]
    bars.append(("int8-cpu p50 / fp32 p50 at batch 1 (≤ 0.65)", ratio, ratio <= 0.65))
    for name, value, ok in bars:
        print(f"{'PASS' if ok else 'FAIL'}  {name:45} {value:10.3f}")
    print(json.dumps({"wall_s": round(wall, 1), "bars": [{"bar": n, "value": v, "pass": ok} for n, v, ok in bars]}))


if __name__ == "__main__":
    main()
