"""QAT on a real model (edgeres.quantize.qat): its torch graph computes what the written Q/DQ model computes; it
backs off a step too large, learns the activation ranges it writes, and trains through a BatchNorm it cannot fold.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeres.backends.onnxruntime import OrtSession
from edgeres.quantize.check import check_qdq
from edgeres.quantize.ranges import collect, search_ranges

torch = pytest.importorskip("torch")


def test_qat_graph_computes_what_the_written_model_computes(float_model, calib_x):
    from edgeres.quantize.qat import GraphModule
    from edgeres.quantize.qdq_writer import WeightedPlan, write_weighted

    _, pre = float_model
    x, name = calib_x
    ref = OrtSession(pre).infer_all(x)
    plan = WeightedPlan(search_ranges(collect(pre, x, name, 25), "layer-cosine", False))
    g = GraphModule(onnx.load(str(pre)), plan)
    with torch.no_grad():
        assert np.abs(g(torch.from_numpy(x)).numpy() - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())
        g.quantized = True
        fq = g(torch.from_numpy(x)).numpy()
    out = pre.with_name("qat-check.onnx")
    write_weighted(pre, out, plan)
    written = OrtSession(out, simulate=True).infer_all(x)
    # the same function up to float rounding: on most images the same numbers, far closer than int8 is to float;
    # on a few, a value that sits on a rounding boundary in one and not the other moves a step and carries it to
    # the logits (10% of the images here, up to a quarter of int8's own error). A Q/DQ missing or misplaced in the
    # torch graph would differ on every image, by int8's error.
    d, e = np.abs(fq - written).max(1), np.abs(written - ref).max(1)
    assert np.median(d) < 1e-3 * np.median(e)
    assert (d > 0.1 * e).mean() <= 0.25
    assert (fq.argmax(1) == written.argmax(1)).mean() >= 0.98


def test_qat_through_the_cli(small_run, calib_dir, tmp_path):
    import json

    from tests.helpers.cli import edgeres

    cfg, _ = small_run
    out = tmp_path / "q.onnx"
    p = edgeres("quantize", str(Path(cfg.out) / "model.onnx"), "--method", "mse", "--qat", "12", "--qat-images", "200",
                "--qat-restarts", "2", "--calibration", str(calib_dir), "--out", str(out), "--json")
    assert p.returncode == 0, p.stderr
    q = json.loads(p.stdout)["search"]["qat"]
    assert q["steps"] == 12 and "after" in q and q["loss_last"] < q["loss_first"]
    # two runs, seeds 0 and 1; the judges kept the one that agrees best (the first of equals), and it is the one scored
    runs = q["restarts"]
    assert [r["seed"] for r in runs] == [0, 1]
    best = max(runs, key=lambda r: (r["agreement"], r["cosine"]))
    assert q["seed"] == best["seed"] and q["after"]["agreement"] == best["agreement"]
    assert q["after"]["cosine"] == best["cosine"]
    # 440 drawn from the model's training split (44 a class), less any of the 100 calibration images among them,
    # 200 in 440 to learn from and the rest to judge with the 20 of the validation slice
    assert 150 <= q["images"] <= 200 and q["source"] == "images of fashion-mnist's training split"
    assert q["judged_on"] > q["images"] and q["images"] + q["judged_on"] - 20 <= 440
    assert check_qdq(onnx.load(str(out))).ok
    assert ("QAT (12 steps)" in json.loads(p.stdout)["plan"]) == q["kept"]


def test_qat_with_too_large_a_step_backs_off_and_returns_no_worse_weights(float_model, calib_x, tmp_path):
    """100x auto's step: Adam moves every weight by about that much, the objective jumps, and QAT goes back to its
    best weights with a smaller step (on an fp32-trained model of high gain, the default step did this to the test
    model: its loss rose from 0.03 to 0.22 in 30 steps). The weights written are those of the lowest check."""
    from edgeres.quantize.qat import GraphModule, distill_loss, qat
    from edgeres.quantize.qdq_writer import WeightedPlan

    _, pre = float_model
    x, name = calib_x
    plan = WeightedPlan(search_ranges(collect(pre, x, name, 25), "mse", False))
    out = tmp_path / "steep.onnx"
    info, ranges = qat(pre, out, plan, x[:64], steps=40, lr=1e-3, range_lr=0.0)  # the weights' step alone
    assert info["backoffs"] >= 1 and info["lr_last"] < 1e-3
    assert info["loss_last"] < info["loss_first"] and ranges == plan.ranges
    g = GraphModule(onnx.load(str(out)), plan)  # the file holds the weights of that lowest check
    g.quantized = True
    teacher = OrtSession(pre).infer_all(x[:64])
    with torch.no_grad():
        got = g(torch.from_numpy(x[:64])).numpy()
    assert float(distill_loss(torch.from_numpy(got), torch.from_numpy(teacher))) == pytest.approx(info["loss_last"], rel=1e-3)

def test_qat_learns_the_activation_ranges_and_writes_the_model_it_trained(float_model, calib_x, tmp_path):
    """``--qat-ranges learned``: each activation range moves with the weights (LSQ), the Q/DQ file carries the learned
    scales, and QAT's torch graph with those ranges computes what the written model computes; ``fixed`` keeps the
    plan's ranges exactly."""
    from edgeres.quantize.plans import Weighted
    from edgeres.quantize.qat import GraphModule, qat
    from edgeres.quantize.qdq_writer import WeightedPlan, act_qparams

    _, pre = float_model
    x, name = calib_x
    plan = WeightedPlan(search_ranges(collect(pre, x, name, 25), "mse", False))
    info, ranges = qat(pre, tmp_path / "lsq.onnx", plan, x[:64], steps=30, lr=3e-5, range_lr=1e-2)
    assert info["ranges"]["learned"] == len(plan.ranges) and info["loss_last"] < info["loss_first"]
    factors = np.array([ranges[t].amax / plan.ranges[t].amax for t in plan.ranges])
    assert np.abs(factors - 1).max() > 1e-4  # they moved (fixed ranges come back exactly: below)
    assert info["ranges"]["factor_min"] == pytest.approx(factors.min(), abs=1e-3)
    learned = replace(plan, ranges=ranges)
    written = tmp_path / "lsq-qdq.onnx"
    Weighted(learned, "mse", "qat", None, graph=tmp_path / "lsq.onnx").write(pre, written)
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(written)).graph.initializer}
    carried = [t for t in ranges if f"{t}_scale" in inits]
    assert carried
    for t in carried:
        assert float(inits[f"{t}_scale"]) == pytest.approx(float(act_qparams(ranges[t], False)[0]), rel=1e-6)
    g = GraphModule(onnx.load(str(tmp_path / "lsq.onnx")), learned)
    g.quantized = True
    with torch.no_grad():
        fq = g(torch.from_numpy(x)).numpy()
    got = OrtSession(written, simulate=True).infer_all(x)
    assert (fq.argmax(1) == got.argmax(1)).mean() >= 0.98
    assert np.median(np.abs(fq - got).max(1)) < 1e-3 * np.abs(got).max()
    _, same = qat(pre, tmp_path / "fixed.onnx", plan, x[:64], steps=5, lr=1e-4, range_lr=0.0)
    assert same == plan.ranges


def test_qat_trains_through_a_batchnorm_it_cannot_fold(tmp_path):
    """DenseNet's BatchNorm after each Concat stays in the graph: QAT learns its scale and shift, not its running
    statistics (auto's QAT on DenseNet-121 stopped with torch's 'not differentiable with respect to running_mean').
    """
    from edgeres.quantize.qat import qat
    from edgeres.quantize.qdq_writer import WeightedPlan

    rng = np.random.default_rng(0)

    def init(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    mean = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "bn_mean")
    var = numpy_helper.from_array(rng.uniform(0.5, 2, 4).astype(np.float32), "bn_var")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["b"], name="bn"),
         helper.make_node("Relu", ["b"], ["r"], name="relu"),
         helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2")],
        "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2, 8, 8])],
        [init("w1", (4, 1, 3, 3)), init("w2", (2, 4, 1, 1)), init("bn_scale", (4,)), init("bn_bias", (4,)), mean, var])
    pre = tmp_path / "bn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(pre))
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    plan = WeightedPlan(search_ranges(collect(pre, x, "x", 32), "mse", False))
    out = tmp_path / "bn-qat.onnx"
    info, _ = qat(pre, out, plan, x, steps=20, lr=1e-3, range_lr=0.0)  # the BatchNorm alone, ranges fixed
    trained = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    assert info["steps"] == 20 and info["loss_last"] < info["loss_first"]
    assert np.array_equal(trained["bn_mean"], numpy_helper.to_array(mean))
    assert np.array_equal(trained["bn_var"], numpy_helper.to_array(var))
    assert not np.array_equal(trained["bn_scale"], numpy_helper.to_array(graph.initializer[2]))
