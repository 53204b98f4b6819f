"""Quantization recipes: what TensorRT consumes, and what this CPU runs fastest."""
from __future__ import annotations

from dataclasses import dataclass

from edgeres.config import METHODS, RECIPES  # noqa: F401  (defined once, in config)
from edgeres.errors import ConfigError
from edgeres.hw import has_vnni


@dataclass(frozen=True)
class Recipe:
    name: str
    activation: str  # "int8" | "uint8"
    activation_symmetric: bool
    per_channel: bool
    reduce_range: bool
    tensorrt_rules: bool  # checked against TensorRT's Q/DQ rules
    latency_representative: bool  # whether ORT-on-CPU latency means anything for this recipe
    accuracy_mode: str  # "simulate" (fake-quant in fp32, as TensorRT computes) or "native"
    note: str

    def activation_qtype(self):
        from onnxruntime.quantization import QuantType
        return QuantType.QInt8 if self.activation == "int8" else QuantType.QUInt8

    def weight_qtype(self):
        from onnxruntime.quantization import QuantType
        return QuantType.QInt8

    def extra_options(self) -> dict:
        # TensorRT takes float biases; ORT's CPU kernels want int32 biases to fuse Q/DQ into QLinearConv.
        return {"ActivationSymmetric": self.activation_symmetric, "WeightSymmetric": True,
                "QuantizeBias": not self.tensorrt_rules}


def recipe_for(name: str) -> Recipe:
    """The named recipe, resolved for this machine where it depends on the CPU."""
    if name == "tensorrt":
        return Recipe("tensorrt", "int8", True, True, False, True, False, "simulate",
                      "symmetric int8 activations and per-channel weights, zero points 0 (TensorRT explicit "
                      "quantization); accuracy measured as fake-quant, CPU latency not representative")
    if name == "cpu":
        vnni = has_vnni()
        return Recipe("cpu", "uint8", False, True, not vnni, False, True, "native",
                      "uint8 activations, symmetric per-channel int8 weights: ONNX Runtime's fast u8s8 kernels"
                      + ("" if vnni else "; reduce_range on, since without VNNI u8s8 can saturate"))
    raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
