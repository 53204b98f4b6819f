"""Where a model's int8 agreement goes: each block quantized alone and left in float alone, and fp32's own margins.

    .venv/bin/python benchmarks/int8_blocks.py [--arch densenet121] [--dir runs/hard] [--method layer-cosine]
                                               [--recipe tensorrt] [--limit-test 2000]

The peer table's float model (`DIR/ARCH.onnx`, from `benchmarks/int8_peers.py`) is calibrated as `edgeres quantize
--method METHOD` calibrates it (the shipped 500 images less the validation slice), and one plan of ranges is written
with Q/DQ on: every weighted layer; only the layers of one block (the first two parts of the PyTorch module path:
`features.denseblock2`, `layer3`, `classifier`); and every layer but one block's. Each is scored on the first LIMIT
test images as the peer table scores (Δtop-1 and agreement with fp32; the tensorrt recipe as fake-quant, the cpu
recipe natively).

It also prints how close fp32's own decisions are: the quantiles of the gap between its two largest logits, in
units of the logits' standard deviation. An image whose gap is smaller than the noise int8 adds to its logits flips
whichever layers add it: if leaving any one block in float recovers little while each block alone costs much, the
agreement is bounded by those images, not by one layer.

Last, the classifier (the last weighted layer) alone, with its input's range scaled from the plan's: how many images
each range flips, against the range the plan's method chose; and, on the calibration images the range search scores,
the quantiles of each image's largest classifier input.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from int8_peers import predictions, scored  # type: ignore[import-not-found]  # run as a script, from benchmarks/
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgeres.backends.onnxruntime import OrtSession
from edgeres.data.calibration import load_calibration_set
from edgeres.data.datasets import load_dataset
from edgeres.onnx_model import onnx_info
from edgeres.paths import DEFAULT_CALIBRATION, calibration_path
from edgeres.quantize import QuantConfig
from edgeres.quantize.plans import Planner
from edgeres.quantize.qdq_writer import ActRange
from edgeres.quantize.recipes import recipe_for
from edgeres.quantize.search import quantizable_layers, split_validation

MARGIN_QUANTILES = (0.01, 0.02, 0.03, 0.05, 0.10, 0.50)
RANGE_SCALES = (0.2, 0.25, 0.33, 0.5, 0.75, 1.0, 1.5, 2.0)  # of the chosen range of the classifier's input


def block_of(module: str) -> str:
    """``features.denseblock2.denselayer3.conv1`` → ``features.denseblock2``; ``layer3.1.conv2`` → ``layer3``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "features" else parts[0]


def margins(logits: np.ndarray) -> np.ndarray:
    """The gap between each image's two largest logits."""
    top = np.sort(logits, axis=1)
    return top[:, -1] - top[:, -2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="densenet121")
    ap.add_argument("--dir", type=Path, default=Path("runs/hard"))
    ap.add_argument("--method", default="layer-cosine")
    ap.add_argument("--recipe", choices=("tensorrt", "cpu"), default="tensorrt")
    ap.add_argument("--limit-test", type=int, default=2000)
    args = ap.parse_args()
    src = args.dir / f"{args.arch}.onnx"
    info = onnx_info(src)
    test = load_dataset(info.dataset or "fashion-mnist", "test")
    x = test.tensors(info.preprocessing, "test images")[:args.limit_test]
    y = test.labels[:args.limit_test]
    sess = OrtSession(src)
    ref_logits = sess.infer_all(x)
    sess.close()
    ref = ref_logits.argmax(1)
    gap = margins(ref_logits) / float(ref_logits.std())
    print(json.dumps({"arch": args.arch, "test_images": len(y), "logit_std": round(float(ref_logits.std()), 3),
                      "logit_min": round(float(ref_logits.min()), 2), "logit_max": round(float(ref_logits.max()), 2),
                      "margin_over_std_quantiles": {str(q): round(float(v), 4)
                                                    for q, v in zip(MARGIN_QUANTILES, np.quantile(gap, MARGIN_QUANTILES))}}))
    calib = load_calibration_set(calibration_path(DEFAULT_CALIBRATION))
    x_all = calib.images.tensors(info.preprocessing, "calibration images")
    cfg = QuantConfig(recipe=args.recipe, method=args.method)
    cal_idx, _ = split_validation(len(x_all), cfg.val_fraction)
    with tempfile.TemporaryDirectory(prefix="edgeres-blocks-") as tmp:
        work = Path(tmp)
        pre = work / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        planner = Planner(pre, x_all[cal_idx], info.input_name, recipe_for(args.recipe), cfg, work)
        plan = planner.plan("weighted", args.method)
        layers = quantizable_layers(pre)
        blocks: dict[str, list[str]] = {}
        for layer in layers:
            blocks.setdefault(block_of(layer["module"]), []).append(layer["node"])

        def row(case: str, exclude: list[str] | None = None, only: list[str] | None = None, written: Any = plan) -> None:
            out = work / "variant.onnx"
            written.write(pre, out, exclude, only)
            delta, agree, _ = scored(predictions(out, x, simulate=args.recipe == "tensorrt"), y, ref)
            print(json.dumps({"recipe": args.recipe, "method": args.method, "case": case,
                              "layers": len(only) if only else sum(map(len, blocks.values())) - len(exclude or []),
                              "delta": round(delta, 2), "agreement": round(agree, 2)}), flush=True)

        row("every layer")
        for name, nodes in blocks.items():
            row(f"only {name}", only=nodes)
            row(f"all but {name}", exclude=nodes)
        last = layers[-1]["node"]
        t = next(la.node.input[0] for la in planner.acts().layers if la.name == last)
        chosen = plan.plan.ranges[t]
        per_image = planner.acts().sample[t].reshape(len(planner.acts().sample[t]), -1).max(1)
        print(json.dumps({"classifier_input": t, "chosen_range": [round(chosen.lo, 3), round(chosen.hi, 3)],
                          "per_image_max_quantiles": {str(q): round(float(v), 3) for q, v in
                                                      zip((0.5, 0.9, 0.99, 1.0), np.quantile(per_image, (0.5, 0.9, 0.99, 1.0)))},
                          "images": len(per_image)}), flush=True)
        for f in RANGE_SCALES:
            scaled = ActRange(chosen.lo * f, chosen.hi * f)
            row(f"only {layers[-1]['module']}, input range {scaled.lo:.2f}..{scaled.hi:.2f}", only=[last],
                written=replace(plan, plan=replace(plan.plan, ranges={**plan.plan.ranges, t: scaled})))


if __name__ == "__main__":
    main()
