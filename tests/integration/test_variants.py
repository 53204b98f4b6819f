"""ResNeXt and DenseNet go down the same path as ResNet-18: export with parity, Q/DQ that TensorRT accepts, ORT."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgeres.archs import config_for
from edgeres.backends.onnxruntime import OrtSession
from edgeres.data import fashion_mnist
from edgeres.data.survey import default_preprocessing
from edgeres.export import ExportConfig, onnx_from_checkpoint
from edgeres.models import Checkpoint, build_model, save_checkpoint
from edgeres.onnx_model import MODEL_KEY, load_onnx, metadata
from edgeres.quantize import QuantConfig, qdq_from_onnx
from edgeres.quantize.check import require_valid_qdq


@pytest.mark.parametrize("arch", ["resnext50_32x4d", "densenet121", "resnet20", "plain20"])
def test_variant_exports_and_quantizes(arch, calib_dir, tmp_path):
    pre = default_preprocessing("fashion-mnist", 32)
    cfg = config_for(arch, 1, 10, "small-s2")
    ck = Checkpoint(cfg, build_model(cfg).state_dict(), pre, list(fashion_mnist.CLASSES),
                    {"train_config": {"data": "fashion-mnist"}})
    pt = save_checkpoint(tmp_path / "model.pt", ck)
    r = onnx_from_checkpoint(pt, tmp_path / "model.onnx", ExportConfig(parity_images=32))
    parity = json.loads((tmp_path / "model.onnx.json").read_text())["results"]
    assert r.max_abs_diff <= 1e-3 * max(1.0, parity["max_abs_logit"]) and r.agreement == 100.0
    assert json.loads(metadata(load_onnx(r.onnx))[MODEL_KEY])["arch"] == arch
    q = qdq_from_onnx(r.onnx, tmp_path / "model.int8.onnx", QuantConfig(calibration=str(calib_dir), allow_small=True))
    model = onnx.load(str(q.onnx))
    report = require_valid_qdq(model, True, str(q.onnx))
    convs = sum(type(m).__name__ == "Conv2d" for m in build_model(cfg).modules())
    assert report.quantize_nodes > 0 and report.per_channel_weights >= convs  # every conv's weight, per channel
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    assert OrtSession(q.onnx, simulate=True).infer(x).shape == (2, 10)
