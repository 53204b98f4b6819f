"""Checks a Q/DQ model against what TensorRT's explicit quantization accepts."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from edgeres.errors import ArtifactError


@dataclass
class QdqReport:
    quantize_nodes: int = 0
    dequantize_nodes: int = 0
    per_channel_weights: int = 0
    requantizing_concats: int = 0  # Concats whose quantized inputs and output have more than one scale (not an error)
    # Conv/Gemm reading a quantized activation with weights stored as float values: the layers --max-drop keeps in
    # float, and the cpu recipe's layers ONNX Runtime cannot fuse, whose int8 weights it stores as their float values
    float_weight_layers: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_qdq(model: onnx.ModelProto, symmetric_int8: bool = True) -> QdqReport:
    """int8 only, zero points 0, scales finite and > 0, every Q feeding a DQ (when ``symmetric_int8``)."""
    inits = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    rep = QdqReport()
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if n.op_type == "QuantizeLinear":
            rep.quantize_nodes += 1
            if not any(c.op_type == "DequantizeLinear" for c in consumers.get(n.output[0], [])):
                rep.problems.append(f"{n.name}: QuantizeLinear without a DequantizeLinear after it")
        else:
            rep.dequantize_nodes += 1
        scale = inits.get(n.input[1])
        if scale is None:
            rep.problems.append(f"{n.name}: scale is not a constant")
            continue
        s = numpy_helper.to_array(scale)
        if not np.all(np.isfinite(s)) or not np.all(s > 0):
            rep.problems.append(f"{n.name}: scale not finite and positive (min {float(np.min(s)):.3g})")
        if s.size > 1 and n.op_type == "DequantizeLinear":
            rep.per_channel_weights += 1
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            if symmetric_int8 and axis != 0 and n.input[0] in inits:
                rep.problems.append(f"{n.name}: per-channel axis {axis}, TensorRT wants axis 0 for weights")
        if len(n.input) > 2 and n.input[2]:
            zp = inits.get(n.input[2])
            if zp is None:
                rep.problems.append(f"{n.name}: zero point is not a constant")
                continue
            if symmetric_int8:
                if zp.data_type != TensorProto.INT8:
                    rep.problems.append(f"{n.name}: zero point type {TensorProto.DataType.Name(zp.data_type)}, "
                                        f"TensorRT needs INT8")
                if np.any(numpy_helper.to_array(zp) != 0):
                    rep.problems.append(f"{n.name}: zero point not 0 (TensorRT needs symmetric int8)")
        elif symmetric_int8 and n.op_type == "QuantizeLinear":
            pass  # no zero point means uint8 in ONNX: caught by the type check below
    rep.requantizing_concats = requantizing_concats(model)
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    rep.float_weight_layers = sum(1 for n in model.graph.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 1
                                  and producer.get(n.input[0]) == "DequantizeLinear" and n.input[1] in inits)
    if symmetric_int8:
        rep.problems += placement_problems(model)
        for t in model.graph.initializer:
            if t.data_type == TensorProto.UINT8:
                rep.problems.append(f"{t.name}: uint8 tensor; TensorRT's explicit quantization is int8 only")
    if rep.quantize_nodes == 0:
        rep.problems.append("no QuantizeLinear nodes: the model is not quantized")
    return rep


def placement_problems(model: onnx.ModelProto) -> list[str]:
    """TensorRT's explicit-quantization placement: a quantized Conv/Gemm reads a quantized activation, and a
    residual Add has both inputs quantized, or neither, or its float input straight from a Conv/Gemm (TensorRT fuses
    the add into that convolution, reading the quantized identity); any other half-quantized Add cannot fuse.
    """
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    out = []
    for n in model.graph.node:
        from_dq = [producer.get(i) == "DequantizeLinear" for i in n.input[:2]]
        if n.op_type in ("Conv", "Gemm") and len(from_dq) == 2 and from_dq[1] and not from_dq[0]:
            out.append(f"{n.name}: int8 weights but a float activation input; quantize its input too")
        if n.op_type == "Add" and len(from_dq) == 2 and from_dq[0] != from_dq[1]:
            float_in = n.input[1] if from_dq[0] else n.input[0]
            if producer.get(float_in) not in ("Conv", "Gemm"):
                out.append(f"{n.name}: residual Add with one quantized and one float input that no convolution "
                           f"makes; TensorRT cannot fuse it")
    return out


def requantizing_concats(model: onnx.ModelProto) -> int:
    """Concats where TensorRT (or ONNX Runtime) must requantize: their DQ inputs and Q output differ in scale."""
    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def scale(node: onnx.NodeProto) -> float | None:
        t = inits.get(node.input[1])
        return float(numpy_helper.to_array(t).reshape(-1)[0]) if t is not None else None

    count = 0
    for n in model.graph.node:
        if n.op_type != "Concat":
            continue
        scales = {scale(producer[i]) for i in n.input if i in producer and producer[i].op_type == "DequantizeLinear"}
        scales |= {scale(c) for c in consumers.get(n.output[0], []) if c.op_type == "QuantizeLinear"}
        count += len(scales) > 1
    return count


def require_valid_qdq(model: onnx.ModelProto, symmetric_int8: bool, name: str) -> QdqReport:
    rep = check_qdq(model, symmetric_int8)
    if not rep.ok:
        more = f" (+{len(rep.problems) - 1} more)" if len(rep.problems) > 1 else ""
        raise ArtifactError(f"{name} breaks the Q/DQ rules: {rep.problems[0]}{more}; re-run `edgeres quantize`")
    return rep
