"""One weighted ONNX layer as a torch function, and int8 fake-quantization: what range search, bias correction and
AdaRound evaluate candidates with. torch is imported inside the functions (the workstation extra has it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeres.errors import ConfigError
from edgeres.quantize.qdq_writer import ActRange, per_channel_int8, weight_matrix, weighted_nodes


def torch_module() -> Any:
    try:
        import torch
    except ImportError:
        raise ConfigError("this quantization method needs torch; install edgeres[workstation] "
                          "(or use --method minmax, entropy or percentile)") from None
    return torch


@dataclass
class Layer:
    """A Conv or Gemm node with its float weights ([out, ...]) and bias, runnable on torch tensors."""

    node: onnx.NodeProto
    weight: np.ndarray
    bias: np.ndarray | None
    qmax: int = 127  # 63 where the cpu recipe reduces the weight range

    @property
    def name(self) -> str:
        return self.node.name

    def int8_weight(self) -> tuple[np.ndarray, np.ndarray]:
        return per_channel_int8(self.weight, self.qmax)

    def run(self, x: Any, w: Any, bias: bool = True) -> Any:
        """The layer on ``x`` with weights ``w`` (torch tensors, w as [out, ...])."""
        torch = torch_module()
        b = torch.from_numpy(self.bias) if bias and self.bias is not None else None
        if self.node.op_type == "Gemm":
            return torch.nn.functional.linear(x.flatten(1), w, b)
        a = {k.name: helper.get_attribute_value(k) for k in self.node.attribute}
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            x = torch.nn.functional.pad(x, (pads[1], pads[3], pads[0], pads[2]))
            pads = [0, 0, 0, 0]
        return torch.nn.functional.conv2d(x, w, b, stride=tuple(a.get("strides", [1, 1])), padding=tuple(pads[:2]),
                                          dilation=tuple(a.get("dilations", [1, 1])), groups=int(a.get("group", 1)))


def layers_of(model: onnx.ModelProto, reduce_range: bool = False) -> list[Layer]:
    """Every weighted layer of ``model`` (2-D convolutions and Gemms only)."""
    inits = {t.name: t for t in model.graph.initializer}
    out = []
    for n in weighted_nodes(model):
        w = weight_matrix(n, numpy_helper.to_array(inits[n.input[1]]).astype(np.float32))
        if n.op_type == "Conv" and w.ndim != 4:
            continue
        b = numpy_helper.to_array(inits[n.input[2]]).astype(np.float32) if len(n.input) > 2 and n.input[2] in inits \
            else None
        out.append(Layer(n, w, b, 63 if reduce_range else 127))
    return out


def fake_quant(x: Any, r: ActRange, unsigned: bool) -> Any:
    """x through QuantizeLinear and DequantizeLinear with ``r``'s parameters, as ONNX computes them."""
    from edgeres.quantize.qdq_writer import act_qparams

    torch = torch_module()
    scale, zp = act_qparams(r, unsigned)
    s, z = float(scale), float(zp)
    lo, hi = (0.0, 255.0) if unsigned else (-128.0, 127.0)
    return (torch.clamp(torch.round(x / s) + z, lo, hi) - z) * s


def class_divergence(teacher: Any, student: Any, temperature: float = 1.0, per_image: bool = False) -> Any:
    """KL(softmax(teacher / T) ‖ softmax(student / T)), the mean over images, as a torch scalar (or each image's, with
    ``per_image``): how far ``student``'s class probabilities are from ``teacher``'s (QAT's distillation loss, and
    range search's measure of the logits).
    """
    f = torch_module().nn.functional
    kl = f.kl_div(f.log_softmax(student / temperature, 1), f.log_softmax(teacher / temperature, 1), log_target=True,
                  reduction="none").flatten(1).sum(1)  # each image's, summed over classes (and positions)
    return kl if per_image else kl.mean()
