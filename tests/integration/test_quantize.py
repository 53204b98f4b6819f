"""Calibration methods, calibration-set checks and the Q/DQ checker on real models."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from edgeres.data.calibration import load_calibration_set
from edgeres.data.datasets import load_dataset
from edgeres.errors import ArtifactError, DataError
from edgeres.quantize import QuantConfig, qdq_from_onnx
from edgeres.quantize.calibrate import calibrate, tensor_ranges
from edgeres.quantize.check import check_qdq, require_valid_qdq
from edgeres.quantize.recipes import recipe_for


def test_each_method_really_changes_the_ranges(small_run, calib_dir):
    from onnxruntime.quantization.shape_inference import quant_pre_process

    cfg, _ = small_run
    src = Path(cfg.out) / "model.onnx"
    from edgeres.onnx_model import onnx_info
    info = onnx_info(src)
    x = load_calibration_set(calib_dir).images.tensors(info.preprocessing)
    with tempfile.TemporaryDirectory() as d:
        pre = Path(d) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        ranges = {}
        for m in ("minmax", "entropy", "percentile"):
            # 512 histogram bins, not the default 2048: entropy's search is quadratic in them, and the test is about
            # each method giving its own ranges
            data = calibrate(pre, x, info.input_name, m, recipe_for("tensorrt"), 99.999, 512, 32, Path(d))
            ranges[m] = tensor_ranges(data)
    names = sorted(ranges["minmax"])
    width = {m: np.array([ranges[m][n][1] - ranges[m][n][0] for n in names]) for m in ranges}
    assert not np.allclose(width["entropy"], width["minmax"])
    assert not np.allclose(width["percentile"], width["minmax"])
    # histogram methods clip: never wider than the observed min/max
    assert (width["percentile"] <= width["minmax"] * 1.001 + 1e-6).all()


def test_overlapping_calibration_set_is_refused(small_run, tmp_path):
    cfg, _ = small_run
    test = load_dataset("fashion-mnist", "test")
    d = tmp_path / "leaky"
    d.mkdir()
    for i in range(100):
        test.image(i * 7).save(d / f"{i:03d}.png")
    out = tmp_path / "q.onnx"
    with pytest.raises(DataError, match="also appear in the evaluation set"):
        qdq_from_onnx(Path(cfg.out) / "model.onnx", out, QuantConfig(calibration=str(d)))
    assert not out.exists() and not list(tmp_path.glob(".q.onnx*"))


def test_calibration_folder_checks(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_calibration_set(tmp_path / "empty")
    junk = tmp_path / "junk"
    junk.mkdir()
    Image.new("L", (28, 28)).save(junk / "a.png")
    (junk / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt is not a JPEG or PNG"):
        load_calibration_set(junk)
    small = tmp_path / "small"
    small.mkdir()
    for i in range(5):
        Image.new("L", (28, 28), i).save(small / f"{i}.png")
    with pytest.raises(DataError, match="fewer than 100.*--allow-small"):
        load_calibration_set(small)
    assert len(load_calibration_set(small, allow_small=True).images) == 5
    (small / "3.png").write_bytes(b"corrupt")
    with pytest.raises(DataError, match="3.png is not a readable image"):
        load_calibration_set(small, allow_small=True)


def test_calibration_manifest_is_class_balanced(calib_dir):
    import json
    man = json.loads((calib_dir / "manifest.json").read_text())
    labels = [e["label"] for e in man["images"]]
    assert man["source"]["split"] == "train" and sorted(set(labels)) == list(range(10))
    assert all(labels.count(k) == 10 for k in range(10))


def test_checker_catches_broken_qdq(small_run):
    cfg, _ = small_run
    model = onnx.load(str(Path(cfg.out) / "model.int8-tensorrt.onnx"))
    assert check_qdq(model).ok
    zp = next(t for t in model.graph.initializer if t.name.endswith("zero_point") and t.dims == [])
    zp.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zp.name))
    scale = next(t for t in model.graph.initializer if t.name.endswith("_scale") and t.dims == [])
    scale.CopyFrom(numpy_helper.from_array(np.array(0.0, np.float32), scale.name))
    rep = check_qdq(model)
    assert any("zero point not 0" in p for p in rep.problems)
    assert any("not finite and positive" in p for p in rep.problems)
    with pytest.raises(ArtifactError, match="breaks the Q/DQ rules"):
        require_valid_qdq(model, True, "m.onnx")


def test_quantizing_a_quantized_model_is_refused(small_run, tmp_path):
    cfg, _ = small_run
    from edgeres.errors import ConfigError
    with pytest.raises(ConfigError, match="already int8"):
        qdq_from_onnx(Path(cfg.out) / "model.int8-cpu.onnx", tmp_path / "x.onnx", QuantConfig(calibration=cfg.quant.calibration))


def test_placement_rules_catch_a_half_quantized_residual_add(small_run):
    from edgeres.quantize.check import placement_problems

    cfg, _ = small_run
    model = onnx.load(str(Path(cfg.out) / "model.int8-tensorrt.onnx"))
    assert placement_problems(model) == []
    producer = {o: n for n in model.graph.node for o in n.output}
    # TensorRT's fusable residual: the identity read through its DQ, the other input straight from a Conv
    adds = [n for n in model.graph.node if n.op_type == "Add"
            and sorted(producer[i].op_type for i in n.input) == ["Conv", "DequantizeLinear"]]
    assert adds, "the weighted placement quantizes residual inputs"
    add = adds[0]
    i = next(k for k, t in enumerate(add.input) if producer[t].op_type == "Conv")
    ident = onnx.helper.make_node("Identity", [add.input[i]], ["not_from_conv"], name="between")
    model.graph.node.insert(list(model.graph.node).index(add), ident)
    add.input[i] = "not_from_conv"  # the float input now comes from something TensorRT cannot fuse the add into
    problems = placement_problems(model)
    assert any("residual Add with one quantized and one float input" in p for p in problems)


def test_model_without_preprocessing_metadata_is_refused(small_run, tmp_path):
    from edgeres.errors import ArtifactError

    cfg, _ = small_run
    m = onnx.load(str(Path(cfg.out) / "model.onnx"))
    del m.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(m, str(bare))
    with pytest.raises(ArtifactError, match="no preprocessing metadata.*edgeres export"):
        qdq_from_onnx(bare, tmp_path / "q.onnx", QuantConfig(calibration=cfg.quant.calibration))
    assert not (tmp_path / "q.onnx").exists()
