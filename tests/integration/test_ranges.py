"""Range search on a real model: each tensor's range by the output of the layers reading it, and the logits' layer
by what it does to the class probabilities.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeres.quantize.correction import local_errors
from edgeres.quantize.layers import class_divergence, fake_quant
from edgeres.quantize.qdq_writer import ActRange, WeightedPlan, dequantized
from edgeres.quantize.ranges import (
    COARSE,
    SEARCH_IMAGES,
    clipped,
    collect,
    decision_of,
    image_weights,
    logits_of,
    margins_of,
    search_ranges,
    weighting,
)

torch = pytest.importorskip("torch")


def test_searched_ranges_never_do_worse_than_minmax_on_the_layer_output(float_model, calib_x):
    _, pre = float_model
    x, name = calib_x
    acts = collect(pre, x, name, 25)
    mm = {t: type(r)(min(acts.lo[t], 0.0), max(acts.hi[t], 0.0)) for t, r in search_ranges(acts, "mse", False).items()}
    cos = search_ranges(acts, "layer-cosine", False, weights="uniform")  # local_errors counts every image alike
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
    chosen = search_ranges(acts, "layer-cosine", False, weights="uniform")[t]  # kl() counts every image alike
    grid = [clipped(full, float(f), False) for f in COARSE]
    assert kl(chosen) <= min(kl(r) for r in grid) + 1e-9
    acts.outputs = frozenset()  # the same layer judged as any other: by its output's cosine
    by_cosine = search_ranges(acts, "layer-cosine", False, weights="uniform")[t]
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
    assert decision_of(model(gemm, outputs=["logits"])) == "logits"
    assert decision_of(model(gemm, soft, outputs=["p"])) == "logits"  # the margins are the logits'
    assert decision_of(model(gemm, soft, inner, outputs=["r"])) == "r"


def test_the_search_images_are_weighted_by_the_float_models_margin(float_model, calib_x):
    """Each search image's weight falls with its top-1 minus top-2 logit, from the float model on those images."""
    import onnxruntime as ort

    src, pre = float_model
    x, name = calib_x
    acts = collect(pre, x, name, 25)
    logits = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {name: x[:SEARCH_IMAGES]})[0]
    top = np.sort(logits, 1)
    assert acts.margins is not None and np.allclose(acts.margins, top[:, -1] - top[:, -2], atol=1e-4)
    w = image_weights(acts.margins, "margin")
    assert w is not None and w.mean() == pytest.approx(1.0)
    order = np.argsort(acts.margins)
    assert (np.diff(w[order]) <= 1e-12).all() and w[order[0]] > 2 * w[order[-1]]
    assert image_weights(acts.margins, "uniform") is None and image_weights(None, "margin") is None
    assert image_weights(np.zeros(8), "margin") is None  # a median of zero, no scale: every image alike
    scores = np.array([[3.0, 1.0, 0.5], [0.2, 0.1, 0.0]], np.float32)
    assert np.allclose(margins_of(scores.reshape(2, 3, 1, 1)), [2.0, 0.1])  # one score per class, as [N, C, 1, 1]
    assert margins_of(np.zeros((2, 3, 4, 4), np.float32)) is None  # a map has no one decision: every image alike
    assert margins_of(np.zeros((2, 1), np.float32)) is None
    report = weighting(acts.margins, "margin")
    assert report["by"] == "margin" and report["images"] == len(acts.margins)
    assert 1 < report["effective_images"] < len(acts.margins)
    assert weighting(acts.margins, "uniform")["effective_images"] == len(acts.margins)


def _two_layers(w1: np.ndarray, w2: np.ndarray, path) -> None:
    """x → Relu → Gemm(w1) → Gemm(w2) → logits: the first layer's input is searched by its output's cosine."""
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Gemm", ["r", "w1"], ["h"], transB=1),
         helper.make_node("Gemm", ["h", "w2"], ["logits"], transB=1)], "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", w1.shape[1]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", w2.shape[0]])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_images_far_from_the_decision_no_longer_keep_the_range_wide(tmp_path):
    """A few images with one huge activation decide by a wide margin; the rest sit near the boundary. Counted alike,
    the huge ones rule the mean cosine and the search keeps the range wide; weighted by margin, it clips them (they
    keep their class) and the images near the boundary get the finer steps: fewer of their decisions flip.
    """
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (SEARCH_IMAGES, 16)).astype(np.float32)
    w1, w2 = rng.normal(0, 1, (8, 16)).astype(np.float32), rng.normal(0, 1, (4, 8)).astype(np.float32)
    x[:8, 0] = rng.uniform(40, 60, 8)  # 8 images with one huge feature,
    w1[:, 0], w1[0, 0] = 0.0, 10.0  # which only hidden unit 0 reads,
    w2[:, 0], w2[0, 0] = 0.0, 3.0  # and which only class 0 reads: class 0 by a wide margin, clipped or not
    _two_layers(w1, w2, tmp_path / "two.onnx")
    acts = collect(tmp_path / "two.onnx", x, "x", 32)
    wide, narrow = (search_ranges(acts, "layer-cosine", False, weights=how)["r"] for how in ("uniform", "margin"))
    assert narrow.hi < 0.5 * wide.hi
    ref = (x @ w1.T @ w2.T).argmax(1)

    def flips(r):
        q = fake_quant(torch.from_numpy(x), r, False).numpy()
        return int(((q @ w1.T @ w2.T).argmax(1) != ref).sum())

    assert flips(narrow) < flips(wide)
