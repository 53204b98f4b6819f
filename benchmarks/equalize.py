"""Cross-layer equalization (`edgeres quantize --equalize`) on the hard case and on the demo model.

    .venv/bin/python benchmarks/equalize.py [--onnx runs/demo/model.onnx]

The hard case plants one channel ×1000 (and ÷1000 in the next conv) in 1 or 8 residual blocks: the same float
function, with ruined per-tensor activation ranges. Scores are on the whole test split, against the float model.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from edgeres.backends.onnxruntime import OrtSession  # noqa: E402
from edgeres.data.datasets import load_dataset  # noqa: E402
from edgeres.onnx_model import onnx_info  # noqa: E402
from edgeres.quantize import QuantConfig, qdq_from_onnx  # noqa: E402
from edgeres.quantize.outliers import outlier_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", type=Path, default=Path("runs/demo/model.onnx"))
    src = ap.parse_args().onnx
    info = onnx_info(src)
    ds = load_dataset(info.dataset or "fashion-mnist", "test")
    x = ds.tensors(info.preprocessing, "test images")
    ref = OrtSession(src).infer_all(x).argmax(1)
    base = 100 * (ref == ds.labels).mean()
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("demo model", src)]
        for blocks in (1, 8):
            hard = Path(tmp) / f"outlier{blocks}.onnx"
            outlier_model(src, hard, blocks=blocks)
            cases.append((f"outlier in {blocks} block{'s' if blocks > 1 else ''}", hard))
        for name, model in cases:
            for recipe in ("tensorrt", "cpu"):
                for eq in (False, True):
                    out = Path(tmp) / f"q-{recipe}-{eq}.onnx"
                    qdq_from_onnx(model, out, QuantConfig(recipe=recipe, equalize=eq))
                    got = OrtSession(out, simulate=recipe == "tensorrt").infer_all(x).argmax(1)
                    print(f"{name:20} {recipe:8} equalize {'on ' if eq else 'off'}: agreement "
                          f"{100 * (got == ref).mean():6.2f}%, Δtop-1 {100 * (got == ds.labels).mean() - base:+6.2f} pt "
                          f"({len(x)} test images)", flush=True)


if __name__ == "__main__":
    main()
