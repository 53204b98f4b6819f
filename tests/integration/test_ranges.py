"""Range search on a real model: each tensor's range by the output of the layers reading it, and the logits' layer
by what it does to the class probabilities.
"""
from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from edgeres.quantize.correction import local_errors
from edgeres.quantize.layers import class_divergence, fake_quant
from edgeres.quantize.qdq_writer import ActRange, WeightedPlan, dequantized
from edgeres.quantize.ranges import COARSE, clipped, collect, logits_of, search_ranges

torch = pytest.importorskip("torch")


def test_searched_ranges_never_do_worse_than_minmax_on_the_layer_output(float_model, calib_x):
    _, pre = float_model
    x, name = calib_x
    acts = collect(pre, x, name, 25)
    mm = {t: type(r)(min(acts.lo[t], 0.0), max(acts.hi[t], 0.0)) for t, r in search_ranges(acts, "mse", False).items()}
    cos = search_ranges(acts, "layer-cosine", False)
    e_mm, e_cos = local_errors(acts, WeightedPlan(mm)), local_errors(acts, WeightedPlan(cos))
    heads = {la.name for la in acts.layers if la.node.output[0] in acts.outputs}  # judged by KL, below
    assert heads and all(e_cos[k] <= e_mm[k] + 1e-6 for k in e_mm if k not in heads)
    assert sum(e_cos.values()) < sum(e_mm.values())  # some tensor has an outlier worth clipping
    assert all(cos[t].hi <= acts.hi[t] + 1e-6 for t in cos)


def test_the_heads_range_is_searched_by_what_it_does_to_the_class_probabilities(float_model, calib_x):
    """The layer that writes the logits is judged by the KL divergence of its class probabilities, not by the
    cosine of its output: a mean cosine is ruled by the images a clipped range ruins, which are those the model
    decides most surely (on the fp32-trained DenseNet-121 it chose a range five times too wide)."""
    _, pre = float_model
    x, name = calib_x
    acts = collect(pre, x, name, 25)
    head = next(la for la in acts.layers if la.node.output[0] in acts.outputs)
    t = head.node.input[0]
    xs = torch.from_numpy(acts.sample[t])
    w = torch.from_numpy(dequantized(*head.int8_weight()))
    y = head.run(xs, torch.from_numpy(head.weight))

    def kl(r):
        return float(class_divergence(y, head.run(fake_quant(xs, r, False), w)))

    full = ActRange(min(acts.lo[t], 0.0), max(acts.hi[t], 0.0))
    chosen = search_ranges(acts, "layer-cosine", False)[t]
    grid = [clipped(full, float(f), False) for f in COARSE]
    assert kl(chosen) <= min(kl(r) for r in grid) + 1e-9
    acts.outputs = frozenset()  # the same layer judged as any other: by its output's cosine
    by_cosine = search_ranges(acts, "layer-cosine", False)[t]
    assert kl(chosen) < kl(by_cosine)


def test_the_logits_are_the_graph_outputs_or_what_their_softmax_reads():
    """A model exported with its Softmax still has its head judged by the class probabilities."""
    def model(*nodes, outputs):
        return helper.make_model(helper.make_graph(
            list(nodes), "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, 3]) for o in outputs]))

    gemm = helper.make_node("Gemm", ["x", "w"], ["logits"])
    assert logits_of(model(gemm, outputs=["logits"])) == {"logits"}
    soft = helper.make_node("Softmax", ["logits"], ["p"], axis=1)
    assert logits_of(model(gemm, soft, outputs=["p"])) == {"logits", "p"}
    inner = helper.make_node("Relu", ["p"], ["r"])  # a Softmax that is not the output decides nothing
    assert logits_of(model(gemm, soft, inner, outputs=["r"])) == {"r"}
