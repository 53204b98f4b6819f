"""Triton's config.pbtxt and the preferred batch a bench's sweep gives it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeres.bench import SCHEMA
from edgeres.data.preprocess import Preprocessing
from edgeres.errors import ConfigError
from edgeres.triton_config import preferred_batch, triton_config


def sweep(*ips: float) -> list[dict]:
    return [{"batch": 2 ** i, "p50_ms": 1.0, "p99_ms": 1.0, "throughput_ips": v, "noise_pct": None,
             "gpu_compute_p50_ms": None} for i, v in enumerate(ips)]


def report(tmp_path: Path) -> Path:
    rows = [("fp32", "fp32", sweep(100, 200, 400, 410)),  # 1, 2, 4, 8: 4 is within 5% of 410
            ("fp16", "fp16", sweep(100, 300, 500, 1000)),  # its best, 8, is the only one
            ("fp16-dla0", "fp16", sweep(50, 96, 100, 100))]  # 2 is within 5% of 100
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"schema": SCHEMA, "target": {"name": "jetson-agx-orin"}, "results": [
        {"label": label, "precision": prec, "sha256": "ab" * 32, "accuracy": {}, "latency": {}, "sweep": pts}
        for label, prec, pts in rows]}))
    return path


def test_the_row_of_this_model_precision_and_core_gives_the_batch(tmp_path):
    path = report(tmp_path)
    assert preferred_batch(path, "ab" * 32, "fp32", None, "jetson-agx-orin", 32)[0] == 4
    assert preferred_batch(path, "ab" * 32, "fp16", None, "jetson-agx-orin", 32)[0] == 8
    assert preferred_batch(path, "ab" * 32, "fp16", 0, "jetson-agx-orin", 32)[0] == 2
    batch, why = preferred_batch(path, "ab" * 32, "fp16", None, "jetson-agx-orin", 4)
    assert batch == 4 and why.endswith("cut to the model's largest batch 4")
    with pytest.raises(ConfigError, match="has no fp16 row of this model on DLA core 1"):
        preferred_batch(path, "ab" * 32, "fp16", 1, "jetson-agx-orin", 32)
    with pytest.raises(ConfigError, match="has no int8 row"):
        preferred_batch(path, "ab" * 32, "int8", None, "jetson-agx-orin", 32)


def test_the_config_carries_the_preferred_batch_and_the_dla_core():
    pre = Preprocessing(size=32, channels=1, mean=(0.5,), std=(0.5,))
    text = triton_config("c", "tensorrt_plan", "input", "logits", pre, 10, 8, True, None, None, 1, 4)
    assert "dynamic_batching { preferred_batch_size: [ 4 ] }" in text
    assert "instance_group [ { kind: KIND_GPU count: 1 secondary_devices [ { kind: KIND_NVDLA device_id: 1 } ] } ]" \
        in text
    assert "dynamic_batching { }" in triton_config("c", "onnxruntime_onnx", "input", "logits", pre, 10, 8, False,
                                                   None)
