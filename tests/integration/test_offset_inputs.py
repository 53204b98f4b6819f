"""Offset inputs (`edgeres.quantize.qdq_writer`): TensorRT's symmetric int8 over all 256 levels for a never-negative
input of an unpadded Conv or Gemm, read 128 steps lower with the offset given back in the layer's bias.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeres.backends.onnxruntime import OrtSession
from edgeres.quantize.check import check_qdq
from edgeres.quantize.qdq_writer import WeightedPlan, offsettable, write_weighted
from edgeres.quantize.ranges import collect, search_ranges

torch = pytest.importorskip("torch")


def _model(path: Path) -> None:
    """x → conv 3×3 (padded) → relu r1 → conv 1×1 without a bias → relu r2 → conv 3×3 (padded) → relu → global
    pool → flatten f → gemm: r1 and f can be offset; x (negative values) and r2 (a padded reader) cannot."""
    rng = np.random.default_rng(0)

    def init(name, shape, scale=0.5):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [init("w1", (4, 1, 3, 3)), init("b1", (4,)), init("w2", (6, 4, 1, 1)), init("w3", (4, 6, 3, 3)),
             init("b3", (4,)), init("wg", (5, 4)), init("bg", (5,))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["b"], name="c2"),
             helper.make_node("Relu", ["b"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["c"], name="c3", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r3"], name="relu3"),
             helper.make_node("GlobalAveragePool", ["r3"], ["g"], name="pool"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "offset", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.fixture(scope="module")
def offset_case(tmp_path_factory):
    d = tmp_path_factory.mktemp("offset")
    src = d / "m.onnx"
    _model(src)
    x = np.random.default_rng(1).standard_normal((96, 1, 8, 8)).astype(np.float32)
    acts = collect(src, x, "x", 32)
    return src, x, acts, d


def test_only_never_negative_inputs_of_unpadded_layers_are_offset(offset_case):
    src, _, acts, _ = offset_case
    model = onnx.load(str(src))
    assert offsettable(model, acts.lo) == {"r1", "f"}
    model.graph.node.append(helper.make_node("Add", ["r1", "r1"], ["extra"], name="reads_r1"))  # a second reader
    assert offsettable(model, acts.lo) == {"f"}
    assert offsettable(onnx.load(str(src)), {**acts.lo, "f": -1e-3}) == {"r1"}  # once negative, never offset


def test_the_written_offset_computes_uint8_on_int8_and_is_closer_to_float(offset_case):
    """The file reads r1 and f minus 128 steps, and c2 (which had no bias) and fc take the offset back: ONNX Runtime
    on it computes what QAT's torch graph computes with those two inputs quantized as uint8 over the same ranges, and
    the same ranges on 128 levels are further from float."""
    from edgeres.quantize.qat import GraphModule

    src, x, acts, d = offset_case
    offset = offsettable(onnx.load(str(src)), acts.lo)
    plan = WeightedPlan(search_ranges(acts, "mse", False, offset), offset=offset)
    plain = replace(plan, offset=frozenset())
    write_weighted(src, d / "off.onnx", plan)
    write_weighted(src, d / "plain.onnx", plain)
    written = onnx.load(str(d / "off.onnx"))
    assert sorted(n.name for n in written.graph.node if n.op_type == "Sub") == ["f_Offset", "r1_Offset"]
    assert check_qdq(written).ok  # zero points 0, scales positive: what TensorRT parses
    assert [n.input[2] for n in written.graph.node if n.name == "c2"] == ["b_bias_offset"]  # named by its output
    ref = OrtSession(src).infer_all(x)
    got, before = (OrtSession(d / f"{k}.onnx", simulate=True).infer_all(x) for k in ("off", "plain"))
    g = GraphModule(onnx.load(str(src)), plan)
    g.quantized = True
    with torch.no_grad():
        fq = g(torch.from_numpy(x)).numpy()
    assert np.abs(fq - got).max() < 1e-3 * np.abs(got).max()
    assert np.abs(got - ref).mean() < np.abs(before - ref).mean()
    unnamed = onnx.load(str(src))  # an imported graph may leave its nodes unnamed: each layer keeps its own offset
    for n in unnamed.graph.node:
        n.name = ""
    onnx.save(unnamed, str(d / "unnamed.onnx"))
    write_weighted(d / "unnamed.onnx", d / "unnamed-off.onnx", plan)
    assert np.abs(OrtSession(d / "unnamed-off.onnx", simulate=True).infer_all(x) - got).max() < 1e-5 * np.abs(got).max()
    for k, p in (("off-only", plan), ("plain-only", plain)):  # the two layers alone: their inputs' rounding shows
        write_weighted(src, d / f"{k}.onnx", p, only=["c2", "fc"])
    got, before = (OrtSession(d / f"{k}-only.onnx", simulate=True).infer_all(x) for k in ("off", "plain"))
    assert np.abs(got - ref).mean() < 0.8 * np.abs(before - ref).mean()  # 0.70 to 0.74 over five draws of x


def test_the_cli_reports_the_offset_inputs_and_the_search_weights_and_turns_them_off(small_run, calib_dir, tmp_path):
    """Both quantize defaults of the searched methods, on and off in one pair of runs (each run is a quantize)."""
    from tests.helpers.cli import edgeres

    cfg, _ = small_run
    src = Path(cfg.out) / "model.onnx"
    runs = {}
    for flag, weights in (("--offset-inputs", "margin"), ("--no-offset-inputs", "uniform")):
        out = tmp_path / f"q{flag}.onnx"
        p = edgeres("quantize", str(src), "--method", "mse", flag, "--search-weights", weights, "--calibration",
                    str(calib_dir), "--out", str(out), "--json")
        assert p.returncode == 0, p.stderr
        meta = json.loads({m.key: m.value for m in onnx.load(str(out)).metadata_props}["edgeres.quant"])
        sidecar = json.loads(out.with_name(out.name + ".json").read_text())
        assert sidecar["config"]["search_weights"] == weights
        runs[flag] = (json.loads(p.stdout), meta, out)
    on, off = runs["--offset-inputs"], runs["--no-offset-inputs"]
    w_on, w_off = on[0]["search"]["search_weights"], off[0]["search"]["search_weights"]
    assert w_on["by"] == "margin" and 1 < w_on["effective_images"] < w_on["images"]
    assert w_off == {"by": "uniform", "images": w_on["images"], "effective_images": float(w_on["images"])}
    assert on[0]["search"]["offset_inputs"] == on[1]["offset_inputs"] == 1  # ResNet-18: the classifier's input
    assert off[0]["search"]["offset_inputs"] == off[1]["offset_inputs"] == 0
    subs = [sum(n.op_type == "Sub" for n in onnx.load(str(r[2])).graph.node) for r in (on, off)]
    assert subs == [1, 0]
