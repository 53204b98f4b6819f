"""The hard case's tools on a real model: the weighted placement, range search, bias correction, AdaRound and
Concat scale unification (accuracy on DenseNet is measured by benchmarks/int8_peers.py, not here).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeres.backends.onnxruntime import OrtSession
from edgeres.config import QuantConfig
from edgeres.data.calibration import load_calibration_set
from edgeres.onnx_model import onnx_info
from edgeres.quantize import qdq_from_onnx
from edgeres.quantize.check import check_qdq, requantizing_concats
from edgeres.quantize.correction import adaround, corrected_biases
from edgeres.quantize.layers import fake_quant
from edgeres.quantize.plans import Planner
from edgeres.quantize.qdq_writer import WeightedPlan, weighted_nodes
from edgeres.quantize.ranges import collect, search_ranges
from edgeres.quantize.recipes import recipe_for

torch = pytest.importorskip("torch")


def test_weighted_placement_quantizes_every_weighted_input_and_nothing_else(small_run, float_model):
    cfg, _ = small_run
    model = onnx.load(str(Path(cfg.out) / "model.int8-tensorrt.onnx"))
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert convs and all(producer[n.input[0]].op_type == "DequantizeLinear" and
                         producer[n.input[1]].op_type == "DequantizeLinear" for n in convs)
    q_inputs = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    # every Q reads a tensor some weighted layer reads, through its DQ: no Q/DQ on pools, adds or the logits
    assert q_inputs == {producer[producer[n.input[0]].input[0]].input[0] for n in convs}
    floats = {t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT and len(t.dims) == 4}
    assert not floats, f"float conv weights left behind: {sorted(floats)[:3]}"
    rep = check_qdq(model)
    assert rep.ok and rep.per_channel_weights == len(convs)
    assert Path(cfg.out, "model.int8-tensorrt.onnx").stat().st_size < 0.4 * Path(cfg.out, "model.onnx").stat().st_size


def test_cpu_recipe_writes_uint8_with_zero_points_zero_after_relu(float_model, calib_dir, tmp_path):
    src, _ = float_model
    out = tmp_path / "u8.onnx"
    qdq_from_onnx(src, out, QuantConfig(recipe="cpu", calibration=str(calib_dir), placement="weighted"))
    model = onnx.load(str(out))
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    relu_q = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and producer.get(n.input[0]) is not None
              and producer[n.input[0]].op_type == "Relu"]
    assert relu_q
    for q in relu_q:
        zp = inits[q.input[2]]
        assert zp.data_type == TensorProto.UINT8 and int(numpy_helper.to_array(zp)) == 0


def test_cpu_recipe_stores_the_weights_onnx_runtime_cannot_fuse_as_their_int8_values(float_model, calib_x, tmp_path):
    """QLinearConv needs the layer's output quantized too; a layer whose output stays float (into a residual Add, or
    the logits) runs as a float Conv on DequantizeLinear(weights) every run. The cpu recipe writes those weights as the
    values that DequantizeLinear computes: the same function, without the per-run dequantization.
    """
    import onnxruntime as ort

    from edgeres.quantize.qdq_writer import (
        WeightedPlan,
        dequantized,
        per_channel_int8,
        unfused_layers,
        weight_matrix,
        write_weighted,
    )

    _, pre = float_model
    x, name = calib_x
    ranges = search_ranges(collect(pre, x, name, 25), "mse", True)
    folded, plain = tmp_path / "folded.onnx", tmp_path / "plain.onnx"
    write_weighted(pre, folded, WeightedPlan(ranges, unsigned=True, fold_unfused=True))
    write_weighted(pre, plain, WeightedPlan(ranges, unsigned=True))
    a, b = OrtSession(folded).infer_all(x[:32]), OrtSession(plain).infer_all(x[:32])
    diff = np.abs(a - b)  # float order may flip a rounding at a quantization boundary, rarely
    assert np.median(diff) < 1e-5 and (a.argmax(1) == b.argmax(1)).mean() >= 0.95, float(diff.max())

    model, src = onnx.load(str(folded)), onnx.load(str(pre))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    layers = {n.name: n for n in model.graph.node if n.op_type in ("Conv", "Gemm")}
    chosen = weighted_nodes(src)
    index = {id(n): i for i, n in enumerate(src.graph.node)}
    unfused = set(unfused_layers(src, chosen, {(index[id(n)], 0) for n in chosen}))
    assert unfused and len(unfused) < len(layers)  # ResNet: the convolutions into an Add and the classifier
    src_w = {n.name: weight_matrix(n, numpy_helper.to_array(next(t for t in src.graph.initializer
                                                                  if t.name == n.input[1]))) for n in chosen}
    for lname, n in layers.items():
        if lname in unfused:
            assert np.array_equal(inits[n.input[1]], dequantized(*per_channel_int8(src_w[lname])))
        else:
            assert producer[n.input[1]].op_type == "DequantizeLinear"
    assert check_qdq(model, symmetric_int8=False).float_weight_layers == len(unfused)

    def runtime_dq(path: Path) -> int:  # DequantizeLinear left after ONNX Runtime's own optimizations
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return sum(n.op_type == "DequantizeLinear" for n in onnx.load(so.optimized_model_filepath).graph.node)

    assert runtime_dq(folded) <= runtime_dq(plain) - len(unfused)


def test_bias_correction_removes_the_mean_shift_of_int8_weights(float_model, calib_x):
    _, pre = float_model
    x, name = calib_x
    acts = collect(pre, x, name, 25)
    ranges = search_ranges(acts, "layer-cosine", False)
    biases = corrected_biases(acts, WeightedPlan(ranges))
    la = max(acts.layers, key=lambda la: la.weight.size if la.bias is not None else 0)
    xq = fake_quant(torch.from_numpy(acts.sample[la.node.input[0]]), ranges[la.node.input[0]], False)
    q, scale = la.int8_weight()
    wq = torch.from_numpy(q.astype(np.float32) * scale.reshape(-1, *[1] * (q.ndim - 1)))
    y = la.run(xq, torch.from_numpy(la.weight))  # float weights, original bias
    shift_before = float((y - la.run(xq, wq)).mean(dim=[0, 2, 3]).abs().mean())
    corrected = la.run(xq, wq, bias=False) + torch.from_numpy(biases[la.name]).reshape(1, -1, 1, 1)
    shift_after = float((y - corrected).mean(dim=[0, 2, 3]).abs().mean())
    assert shift_after < 1e-3 * shift_before or shift_after < 1e-6
    assert shift_before > 1e-5


def test_adaround_reconstructs_a_layer_better_than_rounding_to_nearest(float_model, calib_x):
    _, pre = float_model
    x, name = calib_x
    acts = collect(pre, x, name, 25)
    ranges = search_ranges(acts, "layer-mse", False)
    la = next(la for la in acts.layers if la.weight.ndim == 4 and la.weight.shape[2] == 3 and la.weight.shape[1] >= 16)
    t = la.node.input[0]
    learned = adaround(la, acts.sample[t], ranges[t], False, iters=300)
    nearest, scale = la.int8_weight()
    assert learned.dtype == np.int8 and np.abs(learned.astype(int) - nearest.astype(int)).max() <= 1
    assert (learned != nearest).any()
    xt = torch.from_numpy(acts.sample[t])
    xq = fake_quant(xt, ranges[t], False)
    y = la.run(xt, torch.from_numpy(la.weight), bias=False)
    s = scale.reshape(-1, 1, 1, 1)

    def err(q: np.ndarray) -> float:
        return float(((la.run(xq, torch.from_numpy(q.astype(np.float32) * s), bias=False) - y) ** 2).mean())

    assert err(learned) < err(nearest)


def test_adaround_and_bias_correction_through_the_cli(small_run, calib_dir, tmp_path):
    from tests.helpers.cli import edgeres

    cfg, _ = small_run
    out = tmp_path / "a.onnx"
    p = edgeres("quantize", str(Path(cfg.out) / "model.onnx"), "--method", "mse", "--bias-correction",
                "--adaround", "2", "--qat-images", "200", "--calibration", str(calib_dir), "--out", str(out), "--json")
    assert p.returncode == 0, p.stderr
    import json
    doc = json.loads(p.stdout)
    a = doc["search"]["adaround"]
    assert len(a["layers"]) == 2 and a["ranked_by"] == "layer output error"
    assert "bias correction" in doc["plan"]
    assert check_qdq(onnx.load(str(out))).ok
    bad = edgeres("quantize", str(Path(cfg.out) / "model.onnx"), "--placement", "ort", "--adaround", "2",
                  "--calibration", str(calib_dir), "--out", str(tmp_path / "b.onnx"))
    assert bad.returncode != 0 and "drop --placement ort" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "b.onnx").exists()


def _concat_model(path: Path) -> None:
    """Three conv → relu branches of very different ranges, joined as DenseNet joins them: cat1 = (a, b) and
    cat2 = (a, b, c) share inputs, and a is a MaxPool's output (which ONNX Runtime writes with its input's scale); a conv
    reads each concatenation and the two results are added."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(20 * rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(5 * rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w5"),
             numpy_helper.from_array(rng.standard_normal((3, 8, 1, 1)).astype(np.float32), "w3"),
             numpy_helper.from_array(rng.standard_normal((3, 12, 1, 1)).astype(np.float32), "w4")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["a1"], name="r1"),
             helper.make_node("MaxPool", ["a1"], ["ra"], name="pool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "w2"], ["b"], name="c2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["b"], ["rb"], name="r2"),
             helper.make_node("Conv", ["x", "w5"], ["c"], name="c5", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["rc"], name="r5"),
             helper.make_node("Concat", ["ra", "rb"], ["cat1"], name="cat1", axis=1),
             helper.make_node("Concat", ["ra", "rb", "rc"], ["cat2"], name="cat2", axis=1),
             helper.make_node("Conv", ["cat1", "w3"], ["y1"], name="c3"),
             helper.make_node("Conv", ["cat2", "w4"], ["y2"], name="c4"),
             helper.make_node("Add", ["y1", "y2"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_concat_inputs_share_one_scale_in_onnx_runtimes_placement(tmp_path):
    from edgeres.quantize.calibrate import calibrate, write_qdq

    src = tmp_path / "cat.onnx"
    _concat_model(src)
    x = np.random.default_rng(1).standard_normal((20, 1, 8, 8)).astype(np.float32)
    recipe = recipe_for("tensorrt")
    raw = calibrate(src, x, "x", "minmax", recipe, 99.99, 2048, 10, tmp_path)
    write_qdq(src, tmp_path / "raw.onnx", raw, "minmax", recipe, tmp_path)
    assert requantizing_concats(onnx.load(str(tmp_path / "raw.onnx"))) == 2  # ONNX Runtime alone: scales differ
    plan = Planner(src, x, "x", recipe, QuantConfig(batch_size=10), tmp_path).plan("ort", "minmax")
    plan.write(src, tmp_path / "one.onnx")
    model = onnx.load(str(tmp_path / "one.onnx"))
    assert requantizing_concats(model) == 0 and check_qdq(model).ok  # both Concats, though they share inputs
    y0 = OrtSession(src).infer_all(x)
    y1 = OrtSession(tmp_path / "one.onnx", simulate=True).infer_all(x)
    assert np.abs(y1 - y0).max() < 0.05 * np.abs(y0).max()


def test_weighted_nodes_are_the_convolutions_and_the_head(float_model):
    _, pre = float_model
    model = onnx.load(str(pre))
    nodes = weighted_nodes(model)
    assert {n.op_type for n in nodes} == {"Conv", "Gemm"}
    assert len(nodes) == sum(n.op_type in ("Conv", "Gemm") for n in model.graph.node)


def test_the_last_resorts_learn_and_are_judged_on_training_images_that_never_calibrate_or_validate(
        float_model, calib_x, calib_dir, tmp_path, monkeypatch):
    """QAT's images and the last resorts' judges: one class-balanced draw from the model's training split, less every
    calibration image (the validation slice among them), split 5 to 6 (6 judges for 5 QAT images) and never shared;
    the judge scores the slice and its share together. Without a data set (or with --qat-images 0), QAT learns from
    the calibration images and the slice alone judges."""
    from edgeres.data.calibration import sample_calibration
    from edgeres.quantize import last_resort
    from edgeres.quantize.last_resort import judge_of, training_draw
    from edgeres.quantize.search import Evaluator

    src, pre_onnx = float_model
    pre = onnx_info(src).preprocessing
    drawn = sample_calibration("fashion-mnist", 660, seed=1).images  # the draw training_draw makes for 300: 300 + 360
    held = drawn.subset(list(range(0, 660, 5)))  # a "calibration set" that shares 132 of its images
    calibrated_x = held.tensors(pre)
    d = training_draw(QuantConfig(qat=10, qat_images=300), "fashion-mnist", pre, calibrated_x, calib_x[0])
    assert d.source == "images of fashion-mnist's training split"
    assert (len(d.x), len(d.judge_x), len(d.judge_y)) == (240, 288, 288)  # the 528 left, split 300 : 360
    calibrated, learnt, judging = ({a.tobytes() for a in arr} for arr in (calibrated_x, d.x, d.judge_x))
    assert not calibrated & (learnt | judging) and not learnt & judging
    by_image = dict(zip((a.tobytes() for a in drawn.tensors(pre)), drawn.labels))
    assert [by_image[a.tobytes()] for a in d.judge_x] == list(d.judge_y)  # each judge keeps its own label
    labels = load_calibration_set(Path(calib_dir)).images.labels[:20]
    ev = Evaluator(pre_onnx, calib_x[0][:20], labels, recipe_for("tensorrt"), tmp_path)
    judge = judge_of(ev, d)
    assert judge is not None and len(judge.x) == 308 and list(judge.y) == list(labels) + list(d.judge_y)
    alone = training_draw(QuantConfig(adaround=2, qat_images=300), "fashion-mnist", pre, calibrated_x, calib_x[0])
    assert len(alone.x) == 0 and 228 <= len(alone.judge_x) <= 360  # AdaRound alone: 360 drawn, all to judge
    monkeypatch.setattr(last_resort, "JUDGE_BYTES", 100 * calibrated_x[0].nbytes)  # room for 100 judges
    capped = training_draw(QuantConfig(qat=10, qat_images=300), "fashion-mnist", pre, calibrated_x, calib_x[0])
    assert len(capped.judge_x) + len(capped.x) <= 400 and len(capped.judge_x) <= 100
    assert not calibrated & {a.tobytes() for a in alone.judge_x}
    for cfg, data in ((QuantConfig(qat=10, qat_images=0), "fashion-mnist"), (QuantConfig(qat=10), None)):
        d = training_draw(cfg, data, pre, calibrated_x, calib_x[0])
        assert d.x is calib_x[0] and d.source == "calibration images" and judge_of(ev, d) is ev


def test_a_graph_without_node_names_is_corrected_layer_by_layer(small_run, calib_dir, tmp_path):
    """An imported graph may leave its nodes unnamed, and bias correction keys layers by name: quantize names them
    first, so the same model with its names cleared is written with the same numbers."""
    from edgeres.backends.onnxruntime import OrtSession
    from edgeres.quantize import QuantConfig, qdq_from_onnx

    cfg, _ = small_run
    src = Path(cfg.out) / "model.onnx"
    unnamed = onnx.load(str(src))
    for n in unnamed.graph.node:
        n.name = ""
    onnx.save(unnamed, str(tmp_path / "unnamed.onnx"))
    qc = QuantConfig(calibration=str(calib_dir), method="mse", bias_correction=True)
    x = np.random.default_rng(0).standard_normal((8, 1, 32, 32)).astype(np.float32)
    got = []
    for p in (src, tmp_path / "unnamed.onnx"):
        out = tmp_path / f"{p.stem}.q.onnx"
        qdq_from_onnx(p, out, qc)
        got.append(OrtSession(out, simulate=True).infer(x))
    assert np.abs(got[0] - got[1]).max() <= 1e-5 * np.abs(got[0]).max()
