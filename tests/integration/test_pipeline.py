"""The whole path on a slice of Fashion-MNIST: artifacts, provenance, Q/DQ rules, report, resume."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from edgeres.artifacts import read_manifest, sha256_file
from edgeres.backends.onnxruntime import OrtSession
from edgeres.bench.report import load_report
from edgeres.data.preprocess import Preprocessing
from edgeres.models import load_checkpoint
from edgeres.onnx_model import onnx_info
from edgeres.pipeline import run_pipeline
from edgeres.quantize.check import check_qdq


def test_checkpoint_carries_preprocessing_and_provenance(small_run):
    cfg, _ = small_run
    ck = load_checkpoint(Path(cfg.out) / "model.pt")
    assert ck.preprocessing == Preprocessing(32, 1, (0.286,), (0.353,))
    assert len(ck.classes) == 10 and ck.extra["epoch"] == 1
    man = read_manifest(Path(cfg.out) / "model.pt")
    assert man["artifact"]["sha256"] == sha256_file(Path(cfg.out) / "model.pt")
    assert set(man["inputs"]) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                  "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
    assert man["versions"]["torch"] and man["preprocessing"]["size"] == 32


def test_onnx_export(small_run):
    cfg, _ = small_run
    path = Path(cfg.out) / "model.onnx"
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 32, 32]  # dynamic batch
    info = onnx_info(path)
    assert info.preprocessing.size == 32 and info.classes[0] == "T-shirt/top" and info.precision == "fp32"
    man = read_manifest(path)
    assert man["inputs"]["checkpoint"]["sha256"] == sha256_file(Path(cfg.out) / "model.pt")
    assert man["results"]["max_abs_diff"] < 1e-3 and man["results"]["agreement"] == 100.0
    sess = OrtSession(path)  # a batch other than the export's
    assert sess.infer(np.zeros((5, 1, 32, 32), np.float32)).shape == (5, 10)


def test_tensorrt_recipe_follows_tensorrt_rules(small_run):
    cfg, _ = small_run
    model = onnx.load(str(Path(cfg.out) / "model.int8-tensorrt.onnx"))
    rep = check_qdq(model, symmetric_int8=True)
    assert rep.ok, rep.problems
    inits = {t.name: t for t in model.graph.initializer}
    conv_weights = 0
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = inits[n.input[2]]
            assert zp.data_type == TensorProto.INT8 and not numpy_helper.to_array(zp).any()
            scale = numpy_helper.to_array(inits[n.input[1]])
            assert np.isfinite(scale).all() and (scale > 0).all()
            if scale.size > 1:
                conv_weights += 1
    assert conv_weights >= 20  # 20 convs (17 + 3 projections) per-channel, plus the FC
    assert onnx_info(Path(cfg.out) / "model.int8-tensorrt.onnx").precision == "int8"


def test_cpu_recipe_uses_uint8_activations(small_run):
    cfg, _ = small_run
    model = onnx.load(str(Path(cfg.out) / "model.int8-cpu.onnx"))
    zps = [t for t in model.graph.initializer if t.name.endswith("_zero_point") and t.dims == []]
    assert any(t.data_type == TensorProto.UINT8 for t in zps)
    assert not check_qdq(model, symmetric_int8=True).ok  # by design: not for TensorRT
    assert check_qdq(model, symmetric_int8=False).ok


def test_quantized_models_stay_close_to_fp32(small_run):
    """A sanity check on a half-trained model with small logit margins; the accuracy bars are measured on
    the demo model by benchmarks/demo_bars.py."""
    _, report = small_run
    ref = report["results"][0]["accuracy"]
    for r in report["results"][1:]:
        assert r["accuracy"]["cosine"] > 0.9, r
        assert r["accuracy"]["top5"] >= ref["top5"] - 5.0, r


def test_report_files_and_schema(small_run):
    cfg, report = small_run
    out = Path(cfg.out) / "report"
    doc = load_report(out / "report.json")
    assert doc["schema"] == "edgeres.bench/1"
    assert [r["label"] for r in doc["results"]] == ["fp32", "int8-tensorrt", "int8-cpu", "torch-fp32"]
    assert doc["results"][3]["runtime"] == "torch-eager-cpu" and doc["results"][3]["accuracy"]["agreement"] > 99
    assert doc["dataset"]["images"] == 200
    for r in doc["results"]:
        lat = r["latency"]
        assert lat["batch"] == 1 and lat["iterations"] >= 5
        assert lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
        assert r["throughput"]["batch"] == 32 and r["throughput"]["throughput_ips"] > 0
    assert doc["results"][1]["accuracy_mode"].startswith("simulated")
    assert doc["results"][1]["latency_representative"] is False
    assert "| int8-cpu |" in (out / "report.md").read_text()
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pipeline_resumes_and_skips_finished_stages(small_run):
    cfg, _ = small_run
    before = {p.name: p.stat().st_mtime_ns for p in Path(cfg.out).glob("model*")}
    report = run_pipeline(cfg)
    skipped = {s["stage"]: s["skipped"] for s in report["pipeline"]}
    assert skipped == {"train": True, "export": True, "quantize cpu": True, "quantize tensorrt": True, "bench": False}
    after = {p.name: p.stat().st_mtime_ns for p in Path(cfg.out).glob("model*")}
    assert before == after


def test_changed_setting_reruns_only_downstream(small_run, tmp_path):
    cfg, _ = small_run
    import shutil
    out = tmp_path / "copy"
    shutil.copytree(cfg.out, out)
    cfg2 = replace(cfg, out=str(out), quant=replace(cfg.quant, method="percentile"))
    report = run_pipeline(cfg2)
    skipped = {s["stage"]: s["skipped"] for s in report["pipeline"]}
    assert skipped["train"] and skipped["export"]
    assert not skipped["quantize cpu"] and not skipped["quantize tensorrt"]
    man = json.loads((out / "model.int8-cpu.onnx.json").read_text())
    assert man["config"]["method"] == "percentile"


def test_a_run_on_an_image_folder_is_skipped_until_the_folder_changes(tmp_path):
    """An ImageFolder has no sha256, and `edgeres run --data photos` never found its checkpoint up to date: each run
    "resumed" it. Its listing (paths, sizes, times) is now recorded; a changed folder trains afresh, never resumed.
    """
    import os

    from PIL import Image

    from edgeres.pipeline import _train_state
    from edgeres.train import TrainConfig, train

    for k, c in enumerate(("a", "b")):
        for s, split in enumerate(("train", "test")):
            d = tmp_path / "photos" / split / c
            d.mkdir(parents=True)
            for i in range(12):  # no image twice (train refuses copies)
                Image.fromarray(np.full((16, 16), 9 * i + 120 * k + 4 * s, np.uint8)).save(d / f"{i}.png")
    cfg = TrainConfig(data=str(tmp_path / "photos"), arch="resnet20", epochs=1, batch_size=8, size=16)
    ck = tmp_path / "run" / "model.pt"
    train(cfg, ck)
    assert read_manifest(ck)["inputs"]["data"]["listing_sha256"]
    assert _train_state(ck, cfg, force=False) == "done"
    img = tmp_path / "photos" / "train" / "a" / "0.png"
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))  # an image replaced in place
    assert _train_state(ck, cfg, force=False) == "fresh"
