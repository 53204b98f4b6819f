"""Quantize one float ONNX with one peer tool, for benchmarks/int8_peers.py; runs in the peer's own Python.

    python benchmarks/int8_peer_runner.py PEER MODEL.onnx CALIB.npy OUT.onnx

PEER: ort-minmax | ort-entropy | ort-percentile (ONNX Runtime's stock quantize_static, QDQ, symmetric int8
activations and per-channel weights: what TensorRT consumes), nncf (NNCF's default post-training quantization,
performance preset: symmetric), modelopt (TensorRT Model Optimizer's ONNX PTQ, int8, max calibration). It imports
no edgeres: each peer sees exactly the file and the calibration array. Exit 3 means the peer is not installed.
"""
from __future__ import annotations

import sys

import numpy as np
import onnx


class _Reader:
    def __init__(self, name: str, x: np.ndarray, batch: int = 50) -> None:
        self.items = iter([{name: x[i:i + batch]} for i in range(0, len(x), batch)])

    def get_next(self) -> dict | None:
        return next(self.items, None)


def ort(method: str, model: str, x: np.ndarray, out: str) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    name = onnx.load(model, load_external_data=False).graph.input[0].name
    quantize_static(model, out, _Reader(name, x), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                      "percentile": CalibrationMethod.Percentile}[method],
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})


def nncf_peer(model: str, x: np.ndarray, out: str) -> None:
    import nncf

    m = onnx.load(model)
    name = m.graph.input[0].name
    data = nncf.Dataset([x[i:i + 1] for i in range(len(x))], lambda item: {name: item})
    q = nncf.quantize(m, data, subset_size=len(x), preset=nncf.QuantizationPreset.PERFORMANCE)
    onnx.save(q, out)


def modelopt_peer(model: str, x: np.ndarray, out: str) -> None:
    from modelopt.onnx.quantization import quantize

    quantize(model, quantize_mode="int8", calibration_data=x, calibration_method="max", output_path=out,
             calibration_eps=["cpu"])


def main() -> int:
    peer, model, calib, out = sys.argv[1:5]
    x = np.load(calib)
    try:
        if peer.startswith("ort-"):
            ort(peer[4:], model, x, out)
        elif peer == "nncf":
            nncf_peer(model, x, out)
        elif peer == "modelopt":
            modelopt_peer(model, x, out)
        else:
            print(f"unknown peer {peer}", file=sys.stderr)
            return 2
    except ImportError as e:
        print(f"not installed: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
