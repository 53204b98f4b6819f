"""For every target: export the checkpoint for it and check the ONNX against the parser of each TensorRT it runs.

    .venv/bin/python benchmarks/target_exports.py runs/demo/model.pt [--out runs/targets]

Prints one row per target: its TensorRT releases, the opset written, what each release's parser would misread
(nothing, when the export is right), and parity with the checkpoint on 500 test images. The same as running
`edgeres export CKPT --target T` for each T.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import onnx

from edgeres.export import ExportConfig, onnx_from_checkpoint
from edgeres.onnx_limits import model_opset, parser_limits, parser_problems
from edgeres.targets import all_targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out", type=Path, default=Path("runs/targets"))
    args = ap.parse_args()
    print(f"{'target':18} {'TensorRT':20} {'opset':>5}  {'parser problems':24} {'max |Δlogit|':>12} "
          f"{'agree %':>8} {'s':>5}")
    for t in all_targets():
        t0 = time.perf_counter()
        out = args.out / f"model.{t.name}.onnx"
        r = onnx_from_checkpoint(args.checkpoint, out, ExportConfig(target=t.name))
        model = onnx.load(str(out))
        problems = [p for v in t.tensorrt for p in parser_problems(model, parser_limits(v))]
        print(f"{t.name:18} {', '.join(t.tensorrt) or '(onnxruntime)':20} {model_opset(model):>5}  "
              f"{'; '.join(problems) or 'none':24} {r.max_abs_diff:12.2e} {r.agreement:8.2f} "
              f"{time.perf_counter() - t0:5.1f}")


if __name__ == "__main__":
    main()
