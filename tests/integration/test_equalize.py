"""Cross-layer equalization: the same float function, and per-tensor int8 that survives outlier channels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeres.backends.onnxruntime import OrtSession
from edgeres.data.datasets import load_dataset
from edgeres.onnx_model import onnx_info
from edgeres.quantize import QuantConfig, qdq_from_onnx
from edgeres.quantize.equalize import equalize
from edgeres.quantize.outliers import outlier_model


@pytest.fixture(scope="module")
def test_images(small_run):
    cfg, _ = small_run
    info = onnx_info(Path(cfg.out) / "model.onnx")
    return load_dataset("fashion-mnist", "test").subset(np.arange(300)).tensors(info.preprocessing, "test")


def agreement(a: Path, b: Path, x: np.ndarray, simulate: bool) -> float:
    ref = OrtSession(a).infer_all(x).argmax(1)
    return 100.0 * float((OrtSession(b, simulate=simulate).infer_all(x).argmax(1) == ref).mean())


def test_equalization_keeps_the_function(small_run, test_images, tmp_path):
    cfg, _ = small_run
    src = Path(cfg.out) / "model.onnx"
    hard = tmp_path / "outlier.onnx"
    outlier_model(src, hard, blocks=8)
    done = equalize(hard, tmp_path / "eq.onnx", test_images[:100], onnx_info(src).input_name)
    assert done["pairs"] == 8  # conv1 → relu → conv2 inside each basic block; nothing else qualifies
    assert done["worst_before"] > 100 and done["worst_after"] < done["worst_before"] / 10
    a = OrtSession(hard).infer(test_images[100:164])
    b = OrtSession(tmp_path / "eq.onnx").infer(test_images[100:164])
    assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(a).max())
    changed = {i.name for i in onnx.load(str(tmp_path / "eq.onnx")).graph.initializer} == \
        {i.name for i in onnx.load(str(hard)).graph.initializer}
    assert changed  # same graph, same initializers by name: only their values moved


@pytest.mark.parametrize("recipe", ["tensorrt", "cpu"])
def test_equalization_undoes_outlier_channels(small_run, test_images, calib_dir, tmp_path, recipe):
    cfg, _ = small_run
    src = Path(cfg.out) / "model.onnx"
    hard = tmp_path / "outlier.onnx"
    outlier_model(src, hard, blocks=8)
    sim = recipe == "tensorrt"
    got = {}
    for name, model, eq in (("plain", src, False), ("outlier", hard, False), ("outlier+eq", hard, True)):
        out = tmp_path / f"q-{name}.onnx"
        r = qdq_from_onnx(model, out, QuantConfig(recipe=recipe, calibration=str(calib_dir), equalize=eq))
        got[name] = agreement(src, out, test_images, sim)
        if eq:
            assert r.search.equalize["pairs"] == 8 and r.search.equalize["max_abs_diff"] < 1e-3
    assert got["outlier"] < got["plain"] - 20, got  # the planted channels ruin per-tensor int8 …
    assert got["outlier+eq"] >= got["plain"] - 5, got  # … and equalization gives it back, every layer int8
