"""An opset-18 ONNX written down to an older opset (13–17) for older TensorRT parsers, node by node, function kept.

torch's dynamo exporter writes opset 18 whatever ``opset_version`` asks below it, and ``onnx.version_converter``
has no adapter from BatchNormalization 15. The graphs edgeres exports use a handful of ops; for each one whose
schema changed between the two opsets, the change is known and handled here, and anything else is refused. Export
then checks parity with PyTorch on the converted model, so a conversion that changed the function cannot pass.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import defs, helper, numpy_helper

from edgeres.errors import ArtifactError
from edgeres.onnx_limits import REDUCE_AXES_INPUT_OPS, model_opset

# Ops whose newer schema differs from the older one only by element types we do not use (bf16, int4 …) or by
# attributes checked below. Every other op must have the same schema version at both opsets.
_TYPES_ONLY = {"Relu", "Add", "Sub", "Mul", "Div", "Identity", "Sigmoid", "Clip", "Cast", "Shape", "Flatten",
               "Concat", "Gemm", "MatMul", "Constant", "Transpose", "Squeeze", "Unsqueeze", "Softmax"}
_UNSET_ATTRS = {"BatchNormalization": {"training_mode": 0}, "Reshape": {"allowzero": 0}}


def _axes(model: onnx.ModelProto, name: str) -> list[int] | None:
    """The constant value of tensor ``name`` (an initializer or a Constant node's output), else None."""
    for init in model.graph.initializer:
        if init.name == name:
            return [int(a) for a in numpy_helper.to_array(init).ravel()]
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            attr = next((a for a in n.attribute if a.name == "value"), None)
            if attr is not None:
                return [int(a) for a in np.asarray(numpy_helper.to_array(attr.t)).ravel()]
    return None


def downgrade_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """A copy of ``model`` at opset ``target`` (≤ its own); raises ``ArtifactError`` for a node it cannot carry."""
    have = model_opset(model)
    if target >= have:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in out.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        new = defs.get_schema(node.op_type, have, "").since_version
        old_schema = defs.get_schema(node.op_type, target, "")
        if new == old_schema.since_version:
            continue
        if node.op_type in REDUCE_AXES_INPUT_OPS and target < 18:
            _axes_to_attribute(out, node)
        elif node.op_type in _UNSET_ATTRS:
            for a in [a for a in node.attribute if a.name not in old_schema.attributes]:
                default = _UNSET_ATTRS[node.op_type].get(a.name)
                same = default is not None and helper.get_attribute_value(a) == default
                if node.op_type == "Reshape" and a.name == "allowzero":  # same meaning where the shape has no 0
                    shape = _axes(out, node.input[1])
                    same = same or (shape is not None and 0 not in shape)
                if not same:
                    raise ArtifactError(f"{node.op_type} node {node.name!r} uses {a.name}, which opset {target} "
                                        f"lacks; export at a newer --opset")
                node.attribute.remove(a)
        elif node.op_type not in _TYPES_ONLY:
            raise ArtifactError(f"cannot write {node.op_type} (node {node.name!r}) at opset {target}: its schema "
                                f"changed in opset {new}; export at a newer --opset or another --target")
    for o in out.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = target
    used = {i for n in out.graph.node for i in n.input}
    for init in [i for i in out.graph.initializer if i.name not in used]:  # the axes that became attributes
        out.graph.initializer.remove(init)
    onnx.checker.check_model(out, full_check=True)
    return out


def _axes_to_attribute(model: onnx.ModelProto, node: onnx.NodeProto) -> None:
    """Reduce*(data, axes) → Reduce*(data) with ``axes`` as the attribute (opset < 18)."""
    noop = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "noop_with_empty_axes"), 0)
    axes = _axes(model, node.input[1]) if len(node.input) > 1 and node.input[1] else None
    if len(node.input) > 1 and node.input[1] and axes is None:
        raise ArtifactError(f"{node.op_type} node {node.name!r} takes its axes from a computed tensor, which no "
                            f"opset below 18 can express; export at opset 18 for TensorRT ≥ 10")
    if noop and not axes:
        raise ArtifactError(f"{node.op_type} node {node.name!r} is a no-op on empty axes, which opset < 18 lacks")
    for a in [a for a in node.attribute if a.name == "noop_with_empty_axes"]:
        node.attribute.remove(a)
    del node.input[1:]
    if axes:
        node.attribute.append(helper.make_attribute("axes", axes))
