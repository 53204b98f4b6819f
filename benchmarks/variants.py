"""ResNet-18 against the seed's variants on Fashion-MNIST: the whole path for each, one table.

    .venv/bin/python benchmarks/variants.py [--archs resnet18,resnext50_32x4d,densenet121] [--limit-train 20000]
                                            [--epochs 2] [--limit-test 2000] [--out runs/variants]

Each architecture trains from scratch with the demo's settings (ImageNet stem, 40 px, one-cycle), is exported,
quantized with both recipes and benched on the cpu target. Latency ratios are within each model's own run.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from edgeres.bench.roofline import model_cost
from edgeres.pipeline import PipelineConfig, run_pipeline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="resnet18,resnext50_32x4d,densenet121")
    ap.add_argument("--limit-train", type=int, default=20000)
    ap.add_argument("--limit-test", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default="runs/variants")
    args = ap.parse_args()
    base = PipelineConfig()
    rows = []
    for arch in args.archs.split(","):
        out = Path(args.out) / arch
        cfg = replace(base, out=str(out), bench_torch=False,
                      train=replace(base.train, arch=arch, epochs=args.epochs, limit_train=args.limit_train,
                                    limit_test=args.limit_test),
                      bench=replace(base.bench, limit=args.limit_test))
        t0 = time.perf_counter()
        report = run_pipeline(cfg)
        wall = time.perf_counter() - t0
        train_s = next(s["seconds"] for s in report["pipeline"] if s["stage"] == "train")
        res = {r["label"]: r for r in report["results"]}
        fp32 = res["fp32"]
        cost = model_cost(out / "model.onnx")
        row = {"arch": arch, "params_m": cost.weight_params / 1e6, "mmacs": cost.macs / 1e6, "train_s": train_s,
               "wall_s": wall, "top1": fp32["accuracy"]["top1"], "fp32_p50_ms": fp32["latency"]["p50_ms"],
               "noise_pct": max((r["latency"].get("noise_pct") or 0) for r in report["results"])}
        for label in ("int8-tensorrt", "int8-cpu"):
            a = res[label]["accuracy"]
            row[label] = {"delta_top1": a["delta_top1"], "agreement": a["agreement"],
                          "p50_ratio": res[label]["latency"]["p50_ms"] / fp32["latency"]["p50_ms"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{args.limit_train} training images × {args.epochs} epochs, {args.limit_test} test images, cpu target")
    print(f"{'arch':18} {'params M':>8} {'MMACs':>7} {'train s':>7} {'top-1':>6} {'trt Δ':>6} {'trt agr':>7} "
          f"{'cpu Δ':>6} {'cpu agr':>7} {'fp32 ms':>7} {'int8/fp32':>9} {'noise%':>6}")
    for r in rows:
        t, c = r["int8-tensorrt"], r["int8-cpu"]
        print(f"{r['arch']:18} {r['params_m']:8.2f} {r['mmacs']:7.1f} {r['train_s']:7.0f} {r['top1']:6.2f} "
              f"{t['delta_top1']:+6.2f} {t['agreement']:7.2f} {c['delta_top1']:+6.2f} {c['agreement']:7.2f} "
              f"{r['fp32_p50_ms']:7.3f} {c['p50_ratio']:9.2f} {r['noise_pct']:6.1f}")


if __name__ == "__main__":
    main()
