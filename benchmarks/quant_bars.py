"""Print the figures issue 3's bars are judged on, for an exported float model (default: the demo's).

    .venv/bin/python benchmarks/quant_bars.py [--onnx runs/demo/model.onnx] [--work runs/quant-bars]

1. Calibration with 1000 images (100 a class from the training split): wall time and the peak RSS of
   the `edgeres quantize` process that does it.
2. Both recipes on the whole Fashion-MNIST test set: Δtop-1 and agreement against fp32.
3. A hard case: the same model with an outlier-heavy layer (one channel ×1000 out of layer1.0.conv1 into .conv2,
   ÷1000 back: the same float function). The budget --max-drop 0.3 fails before the fallback and
   holds after, and the layers kept in float are named.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from edgeres.backends.latency import LatencyConfig
from edgeres.bench import BenchConfig, bench
from edgeres.data.calibration import make_calibration_set
from edgeres.quantize import QuantConfig, qdq_from_onnx


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", type=Path, default=Path("runs/demo/model.onnx"))
    ap.add_argument("--work", type=Path, default=Path("runs/quant-bars"))
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "EDGERES_QUIET": "1"}

    calib = work / "calib-1000"
    if not (calib / "manifest.json").is_file():
        make_calibration_set("fashion-mnist", calib, per_class=100, split="train", seed=1)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgeres", "quantize", str(args.onnx), "--int8", "--recipe", "tensorrt",
                    "--calibration", str(calib), "--out", str(work / "q1000.onnx")], check=True, env=env)
    wall = time.perf_counter() - t0
    rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
    print(f"calibration, 1000 images: {wall:.1f} s wall (process start to finish), peak RSS {rss_gb:.2f} GB")

    models = [args.onnx]
    for recipe in ("tensorrt", "cpu"):
        q = work / f"q-{recipe}.onnx"
        qdq_from_onnx(args.onnx, q, QuantConfig(recipe=recipe))
        models.append(q)
    rep = bench(models, work / "report", BenchConfig(latency=LatencyConfig(0.05, 2, 0.3, 10)))
    rows = {r["label"]: r["accuracy"] for r in rep["results"]}
    print(f"fp32 top-1 on {rep['dataset']['images']} test images: {rows['fp32']['top1']:.2f}%")
    for label in ("int8-tensorrt", "int8-cpu"):
        a = rows[label]
        print(f"{label}: Δtop-1 {a['delta_top1']:+.2f} pt (bar ≥ -0.3), agreement {a['agreement']:.2f}% (bar ≥ 99.0)")

    from edgeres.quantize.outliers import outlier_model
    hard = work / "outlier.onnx"
    outlier_model(args.onnx, hard, blocks=1)
    r = qdq_from_onnx(hard, work / "outlier.int8.onnx",
                      QuantConfig(recipe="tensorrt", sensitivity=True, max_drop=0.3))
    s = r.search.to_dict()
    print(f"hard case (outlier layer), validation slice of {s['validation_images']} images: all-int8 drop "
          f"{s['all_int8']['drop']:.2f} pt, after fallback {s['budget_steps'][-1]['drop']:.2f} pt "
          f"(budget 0.3); kept in float: {', '.join(s['float_layers'])}")
    print(json.dumps({"calib_1000_s": round(wall, 1), "calib_1000_rss_gb": round(rss_gb, 2),
                      "results": {k: v for k, v in rows.items()}, "hard_case": {
                          "before": s["all_int8"]["drop"], "after": s["budget_steps"][-1]["drop"],
                          "float_layers": s["float_layers"]}}, default=str))


if __name__ == "__main__":
    main()
