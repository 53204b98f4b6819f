"""Would AdaRound or QAT have helped where auto rejected them? Forced in, scored on the test set.

    .venv/bin/python benchmarks/int8_escalation.py [--arch resnet18] [--dir runs/hard] [--limit-test 10000]
                                                   [--configs lmse+bc,lmse+bc+ada-all,lmse+bc+qat200]
                                                   [--recipe tensorrt] [--keep-test forced|real]

`--method auto` keeps AdaRound and QAT only when the validation slice (100 held-out calibration images) scores them no
worse on the logits' cosine, agreement and SNR, each. This benchmark
makes that keep test always pass (it replaces `last_resort._fell`, so no measure ever falls), quantizes the peer table's
float model (`DIR/ARCH.onnx`, from `benchmarks/int8_peers.py`) with the tensorrt recipe, and scores each result on
the first 2,000 and all LIMIT test images as the peer table does (fake-quant; Δtop-1 and agreement with fp32).
`--keep-test real` leaves auto's own keep test in place, to score what auto writes (`auto`, `auto+eq`); each line
then says which last resorts were dropped and on which measures of the slice (`fell`). The cpu recipe is scored
natively in ONNX Runtime, as the peer table scores it.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from int8_peers import predictions, scored  # type: ignore[import-not-found]  # run as a script, from benchmarks/

import edgeres.quantize.last_resort as last_resort
from edgeres.data.datasets import load_dataset
from edgeres.onnx_model import onnx_info
from edgeres.quantize import QuantConfig, qdq_from_onnx

CONFIGS = {
    "lmse+bc": {"method": "layer-mse", "bias_correction": True},
    "lmse+bc+ada-all": {"method": "layer-mse", "bias_correction": True, "adaround": 1000},
    "lmse+bc+qat200": {"method": "layer-mse", "bias_correction": True, "qat": 200},
    "lcos": {"method": "layer-cosine"},
    "lcos-nooffset": {"method": "layer-cosine", "offset_inputs": False},  # TensorRT's int8 on 128 levels after ReLU
    "lcos-uniform": {"method": "layer-cosine", "search_weights": "uniform"},  # every search image counts alike
    "lcos+bc": {"method": "layer-cosine", "bias_correction": True},
    "lcos+qat400": {"method": "layer-cosine", "qat": 400},
    "lcos+qat400-calib": {"method": "layer-cosine", "qat": 400, "qat_images": 0},  # QAT on the calibration images
    "auto": {"method": "auto"},
    "auto-nooffset": {"method": "auto", "offset_inputs": False},
    "auto-uniform": {"method": "auto", "search_weights": "uniform"},
    "auto+eq": {"method": "auto", "equalize": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--dir", type=Path, default=Path("runs/hard"))
    ap.add_argument("--limit-test", type=int, default=10000)
    ap.add_argument("--configs", default="lmse+bc,lmse+bc+ada-all,lmse+bc+qat200")
    ap.add_argument("--recipe", choices=("tensorrt", "cpu"), default="tensorrt")
    ap.add_argument("--keep-test", choices=("forced", "real"), default="forced")
    args = ap.parse_args()
    if args.keep_test == "forced":
        last_resort._fell = lambda _before, _after: []  # no measure ever falls, so AdaRound and QAT are always kept
    src = args.dir / f"{args.arch}.onnx"
    info = onnx_info(src)
    test = load_dataset(info.dataset or "fashion-mnist", "test")
    x = test.tensors(info.preprocessing, "test images")[:args.limit_test]
    y = test.labels[:args.limit_test]
    ref = predictions(src, x, simulate=False)
    for name in args.configs.split(","):
        out = args.dir / f"{args.arch}.escalation-{name}-{args.recipe}.onnx"
        t0 = time.perf_counter()
        r = qdq_from_onnx(src, out, QuantConfig(recipe=args.recipe, eval_data=info.dataset, **CONFIGS[name]))  # type: ignore[arg-type]
        secs = time.perf_counter() - t0
        pred = predictions(out, x, simulate=args.recipe == "tensorrt")
        dropped = {k: c["fell"] for k in ("adaround", "qat") if (c := getattr(r.search, k)) and not c["kept"]}
        for n in sorted({min(2000, len(y)), len(y)}):
            delta, agree, _ = scored(pred[:n], y[:n], ref[:n])
            print(json.dumps({"arch": args.arch, "recipe": args.recipe, "config": name, "plan": r.search.plan,
                              "dropped": dropped, "test_images": n, "delta": round(delta, 2),
                              "agreement": round(agree, 2), "quantize_s": round(secs)}), flush=True)


if __name__ == "__main__":
    main()
