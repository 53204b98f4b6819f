"""Q/DQ ONNX with TensorRT's placement: every weighted layer's input and weights quantized, nothing else.

TensorRT's guidance for explicit quantization is to quantize the inputs of weighted layers (Conv, Gemm with constant
weights) and not their outputs: the builder propagates DQ forward and Q backward and fuses BatchNorm, ReLU and
residual adds into the convolution. A residual Add whose identity input is already quantized (it feeds a convolution
too) reads that same DQ, so TensorRT fuses the add into the other branch's convolution. Concat inputs are left alone:
they never carry their own scales, so TensorRT has nothing to requantize there.

ONNX Runtime's ``quantize_static`` instead quantizes every op it knows, Concat included, which on DenseNet puts one
per-tensor scale on a concatenation whose channels a BatchNorm then rescales by up to 500× (`edgeres.quantize.ptq`
keeps that placement as ``ort`` for the cpu recipe's fused kernels, with the Concat scales unified).

ONNX Runtime fuses DQ → Conv → Q into its int8 QLinearConv only where the layer's output is quantized too; any
other quantized Conv it runs in float on weights it dequantizes on every run. For the cpu recipe the writer stores
those layers' int8 weights as the float values DequantizeLinear would compute (``fold_unfused``): the same arithmetic,
without the per-run dequantization (on DenseNet-121 at one thread, 1.80× fp32's p50 before, 0.95× after).

TensorRT's int8 is symmetric (zero point 0), so a tensor that is never negative (a ReLU's output) uses 128 of the 256
levels. Where such a tensor is read only by unpadded Conv or Gemm layers (DenseNet's 1×1 convolutions after each
concatenation, the classifier), the plan can ``offset`` it: the writer quantizes ``x - 128·scale`` over all 256 levels
and adds ``128·scale·ΣW_int8`` to each reader's bias, which is exact, since without padding a layer's output on a
constant input is that sum. The layer then computes what uint8 activations give, on TensorRT's int8 kernels; the
subtraction is one more pointwise op before the Q.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeres.errors import ArtifactError

WEIGHTED = ("Conv", "Gemm")  # MatMul with constant weights is left to ONNX Runtime's placement
OFFSET_STEPS = 128  # an offset tensor is read this many steps lower: [0, 255·scale] onto int8's [-128, 127]


@dataclass
class ActRange:
    """The float interval an activation tensor is quantized over (``lo`` 0 for a post-ReLU tensor)."""

    lo: float
    hi: float

    @property
    def amax(self) -> float:
        return max(abs(self.lo), abs(self.hi))


@dataclass
class WeightedPlan:
    """What to write: each weighted input's range, and optional replacement weights and biases per node."""

    ranges: dict[str, ActRange]
    unsigned: bool = False  # uint8 with a zero point (ONNX Runtime's fast CPU kernels) instead of symmetric int8
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # node → int8 weights, [out, ...] (AdaRound)
    biases: dict[str, np.ndarray] = field(default_factory=dict)  # node → corrected float bias
    residual_inputs: bool = True  # an Add's identity input reads the DQ its convolution reads
    weight_qmax: int = 127
    offset: frozenset[str] = frozenset()  # never-negative tensors quantized over 256 levels via an offset (above)
    # ONNX Runtime: store the int8 weights of layers it cannot fuse into QLinearConv (their output is not quantized)
    # as their float values, which it would otherwise dequantize on every run
    fold_unfused: bool = False

    def unsigned_of(self, t: str) -> bool:
        """Whether ``t`` is quantized over [0, hi] with 256 levels (uint8, or int8 with an offset)."""
        return self.unsigned or t in self.offset


def weighted_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Conv and Gemm nodes whose second input is a constant: the layers int8 applies to."""
    inits = {t.name for t in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type in WEIGHTED and len(n.input) > 1 and n.input[1] in inits]


def stores_in_out(node: onnx.NodeProto) -> bool:
    """Whether a Gemm keeps its weights [in, out] (no transB)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return node.op_type == "Gemm" and not attrs.get("transB", 0)


def weight_matrix(node: onnx.NodeProto, w: np.ndarray) -> np.ndarray:
    """Weights with output channels first."""
    return w.T if stores_in_out(node) else w


def per_channel_int8(w: np.ndarray, qmax: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8 (axis 0), zero points 0: the rounding every method starts from.

    ``qmax`` 63 keeps 7 bits, for CPUs whose u8s8 kernels can saturate without VNNI (ONNX Runtime's reduce_range).
    """
    amax = np.abs(w.reshape(w.shape[0], -1)).max(1)
    scale = (np.maximum(amax, 1e-12) / qmax).astype(np.float32)
    q = np.clip(np.round(w / scale.reshape(-1, *[1] * (w.ndim - 1))), -qmax, qmax).astype(np.int8)
    return q, scale


def dequantized(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * scale.reshape(-1, *[1] * (q.ndim - 1))


def act_qparams(r: ActRange, unsigned: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point for one activation range."""
    if unsigned:
        lo, hi = min(r.lo, 0.0), max(r.hi, 0.0)
        scale = max(hi - lo, 1e-8) / 255.0
        return np.array(scale, np.float32), np.array(round(-lo / scale), np.uint8)
    return np.array(max(r.amax, 1e-8) / 127.0, np.float32), np.array(0, np.int8)


def write_weighted(pre: Path, out: Path, plan: WeightedPlan, exclude: list[str] | None = None,
                   only: list[str] | None = None) -> int:
    """Write ``pre`` with Q/DQ on its weighted layers (``only`` those, less ``exclude``); returns how many."""
    model = onnx.load(str(pre))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    added_nodes: list[onnx.NodeProto] = []
    added_inits: list[onnx.TensorProto] = []
    dq_of: dict[str, str] = {}
    offsets: dict[str, float] = {}  # tensor → the offset its Q reads it with

    def act_dq(t: str) -> str:
        if t not in dq_of:
            if t not in plan.ranges:
                raise ArtifactError(f"no calibrated range for {t}; re-run `edgeres quantize`")
            scale, zp = act_qparams(plan.ranges[t], plan.unsigned_of(t))
            read = t
            if t in plan.offset and not plan.unsigned:  # int8 over 256 levels: read t - 128·scale
                offsets[t] = OFFSET_STEPS * float(scale)
                zp, read = np.array(0, np.int8), f"{t}_offset"
                added_inits.append(numpy_helper.from_array(np.array(offsets[t], np.float32), f"{t}_offset_value"))
                added_nodes.append(helper.make_node("Sub", [t, f"{t}_offset_value"], [read], name=f"{t}_Offset"))
            added_inits.extend([numpy_helper.from_array(scale, f"{t}_scale"), numpy_helper.from_array(zp, f"{t}_zero_point")])
            added_nodes.append(helper.make_node("QuantizeLinear", [read, f"{t}_scale", f"{t}_zero_point"], [f"{t}_q"],
                                                name=f"{t}_QuantizeLinear"))
            added_nodes.append(helper.make_node("DequantizeLinear", [f"{t}_q", f"{t}_scale", f"{t}_zero_point"],
                                                [f"{t}_dq"], name=f"{t}_DequantizeLinear"))
            dq_of[t] = f"{t}_dq"
        return dq_of[t]

    chosen, reads = quantized_reads(model, plan, exclude, only)
    unfused = set(unfused_layers(model, chosen, reads)) if plan.fold_unfused else set()
    read_offset: dict[str, float] = {}  # layer (by its output: a name may be empty) → the offset of its input
    for idx, k in sorted(reads):
        node = g.node[idx]
        t = node.input[k]
        node.input[k] = act_dq(t)
        if t in offsets:
            read_offset[node.output[0]] = offsets[t]
    for n in chosen:
        w = weight_matrix(n, numpy_helper.to_array(inits[n.input[1]]).astype(np.float32))
        q, scale = per_channel_int8(w, plan.weight_qmax)
        if n.name in plan.weights:
            q = plan.weights[n.name]
        if stores_in_out(n):
            _weights_first(n)
        name = f"{n.input[1]}_int8"
        if n.name in unfused:  # the same values ONNX Runtime's DequantizeLinear would compute on every run
            added_inits.append(numpy_helper.from_array(dequantized(q, scale), f"{name}_values"))
            n.input[1] = f"{name}_values"
        else:
            added_inits += [numpy_helper.from_array(q, name), numpy_helper.from_array(scale, f"{name}_scale"),
                            numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}_zero_point")]
            added_nodes.append(helper.make_node("DequantizeLinear", [name, f"{name}_scale", f"{name}_zero_point"],
                                                [f"{name}_dq"], name=f"{name}_DequantizeLinear", axis=0))
            n.input[1] = f"{name}_dq"
        _corrected_bias(n, plan, inits, added_inits)
        if n.output[0] in read_offset:
            _offset_back(n, read_offset[n.output[0]] * dequantized(q, scale), inits, added_inits)
    _finish(g, added_nodes, added_inits)
    onnx.save(model, str(out))
    return len(chosen)


def _corrected_bias(n: onnx.NodeProto, plan: WeightedPlan, inits: dict[str, onnx.TensorProto],
                    added: list[onnx.TensorProto]) -> None:
    if n.name in plan.biases and len(n.input) > 2 and n.input[2] in inits:
        bias = f"{n.input[2]}_corrected"
        added.append(numpy_helper.from_array(plan.biases[n.name].astype(np.float32), bias))
        n.input[2] = bias


def _offset_back(n: onnx.NodeProto, w: np.ndarray, inits: dict[str, onnx.TensorProto],
                 added: list[onnx.TensorProto]) -> None:
    """Add to ``n``'s bias what its int8 weights ``w`` (output channels first, times the offset) make of the offset
    its input was read with.
    """
    back = w.reshape(w.shape[0], -1).astype(np.float64).sum(1)
    known = {t.name: t for t in added} | inits
    if len(n.input) > 2 and n.input[2]:
        bias = numpy_helper.to_array(known[n.input[2]])
        back = back.reshape(bias.shape) if bias.size == back.size else back
        values = bias.astype(np.float64) + back
    else:
        values = back
        while len(n.input) < 3:
            n.input.append("")
    name = f"{n.output[0]}_bias_offset"
    added.append(numpy_helper.from_array(values.astype(np.float32), name))
    n.input[2] = name


def offsettable(model: onnx.ModelProto, lo: dict[str, float]) -> frozenset[str]:
    """The tensors a plan can ``offset``: never negative on the calibration images (``lo``), and read only as the
    input of Conv layers without padding or of Gemm layers with constant weights (what makes the bias exact).
    """
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in model.graph.node:
        for k, t in enumerate(n.input):
            readers.setdefault(t, []).append((n, k))
    weighted = {id(n) for n in weighted_nodes(model)}

    def unpadded(n: onnx.NodeProto) -> bool:
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        return n.op_type == "Gemm" or (not any(a.get("pads", [])) and a.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID"))

    graph_out = {o.name for o in model.graph.output}
    return frozenset(t for t, rs in readers.items() if t in lo and lo[t] >= 0.0 and t not in graph_out
                     and all(k == 0 and id(n) in weighted and unpadded(n) for n, k in rs))


def unfused_layers(model: onnx.ModelProto, chosen: list[onnx.NodeProto], reads: set[tuple[int, int]]) -> list[str]:
    """The chosen layers ONNX Runtime runs as float kernels: QLinearConv (and QGemm) need the tensor a layer hands on
    (its output, or its ReLU's when the ReLU is the only reader) to be read through Q/DQ by every reader.
    """
    readers: dict[str, list[tuple[int, int, str]]] = {}
    for i, n in enumerate(model.graph.node):
        for k, t in enumerate(n.input):
            readers.setdefault(t, []).append((i, k, n.op_type))
    graph_out = {o.name for o in model.graph.output}
    found = []
    for n in chosen:
        t = n.output[0]
        nxt = readers.get(t, [])
        if len(nxt) == 1 and nxt[0][2] == "Relu":
            t = model.graph.node[nxt[0][0]].output[0]
            nxt = readers.get(t, [])
        if t in graph_out or not nxt or any((i, k) not in reads for i, k, _ in nxt):
            found.append(n.name)
    return found


def quantized_reads(model: onnx.ModelProto, plan: WeightedPlan, exclude: list[str] | None = None,
                    only: list[str] | None = None) -> tuple[list[onnx.NodeProto], set[tuple[int, int]]]:
    """The weighted layers to quantize, and every (node index, input index) that reads a tensor through its Q/DQ.

    The writer and QAT's fake-quantization both follow this, so the two compute the same thing. A residual Add of a
    convolution's output and an already-quantized tensor reads that tensor's DQ (TensorRT fuses the add then).
    """
    skip, keep_only = set(exclude or ()), set(only) if only is not None else None
    chosen = [n for n in weighted_nodes(model)
              if n.name not in skip and (keep_only is None or n.name in keep_only)]
    index = {id(n): i for i, n in enumerate(model.graph.node)}
    reads = {(index[id(n)], 0) for n in chosen}
    quantized = {n.input[0] for n in chosen}
    if plan.residual_inputs and not plan.unsigned:
        producer = {o: n.op_type for n in model.graph.node for o in n.output}
        for i, n in enumerate(model.graph.node):
            if n.op_type != "Add" or len(n.input) != 2:
                continue
            for k, other in ((0, 1), (1, 0)):
                if n.input[k] in quantized and producer.get(n.input[other]) in ("Conv", "Gemm"):
                    reads.add((i, k))
                    break
    return chosen, reads


def _weights_first(n: onnx.NodeProto) -> None:
    """Make a Gemm read weights as [out, in] (transB=1), as the int8 weights are stored."""
    kept = [a for a in n.attribute if a.name != "transB"]
    del n.attribute[:]
    n.attribute.extend([*kept, helper.make_attribute("transB", 1)])


def _finish(g: onnx.GraphProto, added_nodes: list[onnx.NodeProto], added_inits: list[onnx.TensorProto]) -> None:
    """Order the nodes topologically and drop the float weights nothing reads any more."""
    nodes = added_nodes + list(g.node)
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {t.name for t in added_inits} | {""}
    ordered: list[onnx.NodeProto] = []
    while nodes:
        rest = [n for n in nodes if not all(i in ready for i in n.input)]
        step = [n for n in nodes if all(i in ready for i in n.input)]
        if not step:
            raise ArtifactError("the Q/DQ graph has a cycle; report this model to edgeres")
        for n in step:
            ordered.append(n)
            ready.update(n.output)
        nodes = rest
    used = {i for n in ordered for i in n.input} | {o.name for o in g.output}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept + added_inits)
    del g.node[:]
    g.node.extend(ordered)
