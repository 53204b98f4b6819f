"""Cross-layer equalization (Nagel et al., 2019, "Data-Free Quantization"), with measured activation ranges.

Where a Conv or BatchNormalization feeds only a Relu that feeds only a Conv, channel c of the middle
activation can be divided by s_c > 0 and the consumer's input channel c multiplied by s_c without changing
the function, because relu(a / s) = relu(a) / s. With s_c = sqrt(r_c / w_c), where r_c is the channel's
range on the calibration images and w_c the consumer's largest weight on that channel, activation and
weight ranges meet at sqrt(r_c · w_c). Per-tensor int8 activations then no longer lose the small channels
to one large one (DenseNet's BN-ReLU-Conv after each concatenation is the hard case).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROUNDS = 3  # the scales are refined analytically: a Conv can be one pair's consumer and the next one's producer
LIMIT = 1e3  # no channel is scaled by more than this, either way


@dataclass
class Pair:
    producer: onnx.NodeProto
    relu: onnx.NodeProto
    consumer: onnx.NodeProto


def _pairs(model: onnx.ModelProto) -> list[Pair]:
    init = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    uses: dict[str, int] = defaultdict(int)
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    producer = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] += 1
            consumers[i].append(n)
        for o in n.output:
            producer[o] = n
    graph_out = {o.name for o in model.graph.output}
    out = []
    for relu in (n for n in model.graph.node if n.op_type == "Relu"):
        p = producer.get(relu.input[0])
        cs = consumers[relu.output[0]]
        if p is None or p.op_type not in ("Conv", "BatchNormalization") or len(cs) != 1:
            continue
        c = cs[0]
        if c.op_type != "Conv" or c.input[0] != relu.output[0] or len(consumers[p.output[0]]) != 1:
            continue
        if {p.output[0], relu.output[0]} & graph_out:
            continue
        params = p.input[1:3]  # Conv: W and B; BatchNormalization: scale and B
        if not all(t in init and uses[t] == 1 for t in [*params, c.input[1]]):
            continue
        out.append(Pair(p, relu, c))
    return out


def _channel_ranges(model: onnx.ModelProto, names: list[str], x: np.ndarray, input_name: str,
                    batch: int) -> dict[str, np.ndarray]:
    """Per-channel max of each named (non-negative, NCHW) tensor over the images ``x``."""
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    for t in names:
        m.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    acc: dict[str, np.ndarray] = {}
    for i in range(0, len(x), batch):
        for t, v in zip(names, sess.run(names, {input_name: x[i:i + batch]})):
            r = np.abs(v).max(axis=(0, *range(2, v.ndim)))
            acc[t] = r if t not in acc else np.maximum(acc[t], r)
    return acc


def _conv_groups(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def _in_channel_max(w: np.ndarray, groups: int) -> np.ndarray:
    """The largest |weight| on each input channel of a (possibly grouped) Conv weight [out, in/groups, k, k]."""
    out_per, in_per = w.shape[0] // groups, w.shape[1]
    a = np.abs(w).reshape(groups, out_per, in_per, -1).max(axis=(1, 3))  # [groups, in_per]
    return a.reshape(-1)


def _scale_in_channels(w: np.ndarray, s: np.ndarray, groups: int) -> np.ndarray:
    out_per, in_per = w.shape[0] // groups, w.shape[1]
    g = w.reshape(groups, out_per, in_per, *w.shape[2:]) * s.reshape(groups, 1, in_per, *([1] * (w.ndim - 2)))
    return g.reshape(w.shape)


def equalize(src: Path, dst: Path, x: np.ndarray, input_name: str, batch: int = 50) -> dict:
    """Write ``dst``: ``src`` with every Conv/BN → Relu → Conv pair equalized. Returns what was done."""
    model = onnx.load(str(src))
    pairs = _pairs(model)
    if not pairs:
        onnx.save(model, str(dst))
        return {"pairs": 0}
    init = {i.name: i for i in model.graph.initializer}
    changed = {n for p in pairs for n in (*p.producer.input[1:3], p.consumer.input[1])}
    arr = {k: numpy_helper.to_array(init[k]) for k in changed}
    ranges = _channel_ranges(model, [p.relu.output[0] for p in pairs], x, input_name, batch)
    before = [float(ranges[p.relu.output[0]].max() / max(np.median(ranges[p.relu.output[0]]), 1e-12)) for p in pairs]
    r = {p.relu.output[0]: ranges[p.relu.output[0]].astype(np.float64) for p in pairs}
    for _ in range(ROUNDS):
        for p in pairs:
            t, groups = p.relu.output[0], _conv_groups(p.consumer)
            w = _in_channel_max(arr[p.consumer.input[1]], groups).astype(np.float64)
            live = (r[t] > 0) & (w > 0)
            s = np.ones_like(r[t])
            s[live] = np.clip(np.sqrt(r[t][live] / w[live]), 1 / LIMIT, LIMIT)
            s32 = s.astype(np.float32)
            for name in p.producer.input[1:3]:  # Conv W (rows = output channels) and B; BN scale and B
                v = arr[name]
                arr[name] = v / s32.reshape(-1, *([1] * (v.ndim - 1)))
            arr[p.consumer.input[1]] = _scale_in_channels(arr[p.consumer.input[1]], s32, groups)
            r[t] = r[t] / s
    for name in changed:
        init[name].CopyFrom(numpy_helper.from_array(arr[name], name))
    onnx.save(model, str(dst))
    after = [float(r[p.relu.output[0]].max() / max(np.median(r[p.relu.output[0]]), 1e-12)) for p in pairs]
    return {"pairs": len(pairs), "max_over_median_before": round(float(np.median(before)), 2),
            "max_over_median_after": round(float(np.median(after)), 2),
            "worst_before": round(max(before), 1), "worst_after": round(max(after), 1)}
