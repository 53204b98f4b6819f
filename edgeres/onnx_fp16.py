"""float ONNX → FP16 ONNX with float32 inputs and outputs: what TensorRT 11's strongly typed builds take as "fp16".

TensorRT 11 has no ``BuilderFlag.FP16``: the precision is the graph's. Converters that turn the inputs to half too
make a session that binds float32 read garbage without an error, so here the graph's input is cast to half by the
first node and the logits back to float32 by the last; everything between computes in half.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeres.artifacts import atomic_path, write_manifest
from edgeres.errors import ConfigError
from edgeres.onnx_model import PRECISION_KEY, load_onnx, metadata, onnx_info, set_metadata

FP16_MAX = float(np.finfo(np.float16).max)


def _half(t: TensorProto) -> TensorProto:
    arr = numpy_helper.to_array(t)
    return numpy_helper.from_array(np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16), t.name)


def _rename(nodes: Any, side: str, name: str) -> str:
    """Point every node's ``side`` ("input"/"output") named ``name`` at ``<name>__fp16``; returns the new name."""
    half = f"{name}__fp16"
    for n in nodes:
        names = getattr(n, side)
        for k, x in enumerate(names):
            if x == name:
                names[k] = half
    return half


def fp16_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the float ``model`` computing in FP16, with float32 I/O kept."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node):
        raise ConfigError("an int8 Q/DQ model is not converted to FP16; build the float model as fp16")
    for i, init in enumerate(g.initializer):
        if init.data_type == TensorProto.FLOAT:
            g.initializer[i].CopyFrom(_half(init))
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                    a.t.CopyFrom(_half(a.t))
        if n.op_type == "Cast":
            for a in n.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.FLOAT16
    casts_in, casts_out = [], []
    for inp in (i for i in g.input if i.type.tensor_type.elem_type == TensorProto.FLOAT):
        half = _rename(g.node, "input", inp.name)
        casts_in.append(helper.make_node("Cast", [inp.name], [half], to=TensorProto.FLOAT16,
                                         name=f"edgeres_cast_{inp.name}_to_fp16"))
    for o in (o for o in g.output if o.type.tensor_type.elem_type == TensorProto.FLOAT):
        half = _rename(g.node, "output", o.name)
        casts_out.append(helper.make_node("Cast", [half], [o.name], to=TensorProto.FLOAT,
                                          name=f"edgeres_cast_{o.name}_to_fp32"))
    nodes = casts_in + list(g.node) + casts_out
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]  # the inner types changed; shape inference fills them again
    out = onnx.shape_inference.infer_shapes(out)
    set_metadata(out, {PRECISION_KEY: "fp16"})
    onnx.checker.check_model(out, full_check=True)
    return out


def fp16_from_onnx(onnx_path: Path, out: Path) -> Path:
    """Write the FP16 version of the float model ``onnx_path`` to ``out``, with its manifest."""
    model = load_onnx(Path(onnx_path))
    info = onnx_info(Path(onnx_path), model)
    if metadata(model).get(PRECISION_KEY, "fp32") != "fp32":
        raise ConfigError(f"{onnx_path} is {info.precision}; FP16 is made from the float model of `edgeres export`")
    half = fp16_model(model)
    with atomic_path(Path(out)) as tmp:
        onnx.save(half, str(tmp))
    write_manifest(Path(out), "onnx-fp16", {"onnx": onnx_path}, {"io": "float32", "compute": "float16"},
                   info.preprocessing.to_dict())
    return Path(out)
