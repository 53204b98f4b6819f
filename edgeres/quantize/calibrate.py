"""Activation ranges from a calibration array through ONNX Runtime's calibrators, and Q/DQ writing."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeres.quantize.recipes import Recipe


class _Reader:
    """ORT's CalibrationDataReader protocol over a preprocessed array."""

    def __init__(self, name: str, x: np.ndarray, batch: int) -> None:
        self._batches = [{name: x[i:i + batch]} for i in range(0, len(x), batch)]
        self._it = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def __len__(self) -> int:
        return len(self._batches)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """ONNX Runtime's quantization tools print and log freely; keep the terminal to ours."""
    sink = io.StringIO()
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        logging.getLogger().setLevel(level)


def even_batch(n: int, most: int) -> int:
    """The largest batch ≤ ``most`` that divides ``n``: ORT's histogram collectors need equal batches."""
    return next(b for b in range(min(most, n), 0, -1) if n % b == 0)


def calibrate(model_path: Path, x: np.ndarray, input_name: str, method: str, recipe: Recipe,
              percentile: float, num_bins: int, batch_size: int, workdir: Path) -> Any:
    """Activation ranges (ORT ``TensorsData``) by ``method``; entropy and percentile use real histograms.

    ``quantize_static`` cannot set the histogram size, and its default for entropy (128 bins for 128
    quantized bins) makes entropy equal to minmax, so the calibrator is built here with ``num_bins``.
    """
    from onnxruntime.quantization.calibrate import create_calibrator

    opts: dict = {"symmetric": recipe.activation_symmetric}
    if method == "entropy":
        opts.update(num_bins=num_bins, num_quantized_bins=128)
    elif method == "percentile":
        opts.update(num_bins=num_bins, percentile=percentile)
    with quiet():
        cal = create_calibrator(model_path, None, str(workdir / f"augmented-{method}.onnx"),
                                ort_method(method), extra_options=opts)
        cal.collect_data(_Reader(input_name, x, even_batch(len(x), batch_size)))
        data = cal.compute_data()
    return data


def ort_method(method: str) -> Any:
    from onnxruntime.quantization.calibrate import CalibrationMethod
    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


def range_of(td: Any) -> tuple[float, float]:
    """One ONNX Runtime TensorData's (lowest, highest)."""
    lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in td.range_value)
    return lo, hi


def tensor_ranges(data: Any) -> dict[str, tuple[float, float]]:
    return {name: range_of(td) for name, td in data.data.items()}


def write_qdq(pre: Path, out: Path, data: Any, method: str, recipe: Recipe, workdir: Path,
              exclude: list[str] | None = None, only: list[str] | None = None) -> None:
    """Write explicit Q/DQ ONNX from precomputed ranges; ``exclude``/``only`` pick the layers."""
    from onnxruntime.quantization import QuantFormat, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    fd, name = tempfile.mkstemp(prefix="ranges-", suffix=".json", dir=workdir)
    os.close(fd)
    cache = Path(name)
    try:
        save_tensors_data(data, cache)  # quantize_static takes precomputed ranges only through this file
        with quiet():
            quantize_static(str(pre), str(out), None, quant_format=QuantFormat.QDQ,
                            per_channel=recipe.per_channel, reduce_range=recipe.reduce_range,
                            activation_type=recipe.activation_qtype(), weight_type=recipe.weight_qtype(),
                            nodes_to_quantize=only, nodes_to_exclude=exclude or None,
                            calibrate_method=ort_method(method), calibration_cache_path=str(cache),
                            extra_options=recipe.extra_options())
    finally:
        cache.unlink(missing_ok=True)
