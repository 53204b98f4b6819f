"""float ONNX → Q/DQ ONNX: static post-training quantization with a calibration set on disk."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from edgeres.artifacts import atomic_path, write_manifest
from edgeres.data.calibration import check_disjoint, load_calibration_set
from edgeres.data.datasets import load_dataset
from edgeres.errors import ConfigError
from edgeres.onnx_model import PRECISION_KEY, load_onnx, metadata, onnx_info, set_metadata
from edgeres.paths import DEFAULT_CALIBRATION, calibration_path
from edgeres.progress import log
from edgeres.quantize.check import require_valid_qdq
from edgeres.hw import cpu_features
from edgeres.quantize.recipes import METHODS, RECIPES, Recipe, recipe_for

RECIPE_KEY = "edgeres.quant"


@dataclass(frozen=True)
class QuantConfig:
    recipe: str = "tensorrt"
    method: str = "minmax"
    calibration: str = DEFAULT_CALIBRATION
    percentile: float = 99.999
    num_bins: int = 2048
    batch_size: int = 32
    allow_small: bool = False
    eval_data: str | None = None  # the set bench measures on; calibration must not overlap it

    def validate(self) -> None:
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not 90.0 < self.percentile < 100.0:
            raise ConfigError(f"--percentile must lie between 90 and 100, got {self.percentile}")


@dataclass
class QuantResult:
    onnx: Path
    recipe: Recipe
    method: str
    calibration_images: int
    quantize_nodes: int
    ranges: dict[str, tuple[float, float]]


class _Reader:
    """ORT's CalibrationDataReader protocol over a preprocessed array."""

    def __init__(self, name: str, x: np.ndarray, batch: int) -> None:
        self._batches = [{name: x[i:i + batch]} for i in range(0, len(x), batch)]
        self._it = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def __len__(self) -> int:
        return len(self._batches)

    def rewind(self) -> None:
        self._it = iter(self._batches)


@contextlib.contextmanager
def _quiet():
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
              cfg: QuantConfig, workdir: Path):
    """Activation ranges (ORT ``TensorsData``) by ``method``; entropy and percentile use real histograms."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    opts: dict = {"symmetric": recipe.activation_symmetric}
    if method == "entropy":
        opts.update(num_bins=cfg.num_bins, num_quantized_bins=128)
    elif method == "percentile":
        opts.update(num_bins=cfg.num_bins, percentile=cfg.percentile)
    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    with _quiet():
        cal = create_calibrator(model_path, None, str(workdir / "augmented.onnx"), cm, extra_options=opts)
        cal.collect_data(_Reader(input_name, x, even_batch(len(x), cfg.batch_size)))
        data = cal.compute_data()
    return data, cm


def tensor_ranges(data) -> dict[str, tuple[float, float]]:
    out = {}
    for name, td in data.data.items():
        lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in td.range_value)
        out[name] = (lo, hi)
    return out


def qdq_from_onnx(onnx_path: Path, out: Path, cfg: QuantConfig = QuantConfig()) -> QuantResult:
    """Quantize ``onnx_path`` to explicit Q/DQ with ``cfg.recipe``; writes ``out`` and its manifest."""
    from onnxruntime.quantization import QuantFormat, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    cfg.validate()
    info = onnx_info(Path(onnx_path))
    if info.precision != "fp32":
        raise ConfigError(f"{onnx_path} is already {info.precision}; quantize the float model from `edgeres export`")
    calib = load_calibration_set(calibration_path(cfg.calibration), cfg.allow_small)
    eval_data = cfg.eval_data or info.dataset
    if eval_data:
        check_disjoint(calib, load_dataset(eval_data, "test"))
    recipe = recipe_for(cfg.recipe)
    x = calib.images.tensors(info.preprocessing, "calibration images")
    with tempfile.TemporaryDirectory(prefix="edgeres-quant-") as tmpdir:
        work = Path(tmpdir)
        pre = work / "pre.onnx"
        with _quiet():
            quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=False)
        log(f"calibrating {len(x)} images ({cfg.method}, recipe {recipe.name}) …")
        data, cm = calibrate(pre, x, info.input_name, cfg.method, recipe, cfg, work)
        cache = work / "ranges.json"
        save_tensors_data(data, cache)
        with atomic_path(Path(out)) as tmp, _quiet():
            quantize_static(str(pre), str(tmp), None, quant_format=QuantFormat.QDQ,
                            per_channel=recipe.per_channel, reduce_range=recipe.reduce_range,
                            activation_type=recipe.activation_qtype(), weight_type=recipe.weight_qtype(),
                            calibrate_method=cm, calibration_cache_path=str(cache),
                            extra_options=recipe.extra_options())
            model = load_onnx(tmp)
            rep = require_valid_qdq(model, recipe.tensorrt_rules, str(out))
            src_meta = metadata(load_onnx(Path(onnx_path)))
            src_meta.update({PRECISION_KEY: "int8", RECIPE_KEY: json.dumps(
                {"recipe": recipe.name, "method": cfg.method, "calibration": calib.root.name})})
            set_metadata(model, src_meta)
            onnx.save(model, str(tmp))
    ranges = tensor_ranges(data)
    write_manifest(Path(out), "onnx-int8-qdq",
                   {"onnx": onnx_path, "calibration_manifest": calib.manifest_file()},
                   asdict(cfg), info.preprocessing.to_dict(),
                   {"recipe": asdict(recipe), "calibration_images": len(x), "calibration_source": calib.source,
                    "quantize_nodes": rep.quantize_nodes, "per_channel_weights": rep.per_channel_weights,
                    "cpu_features": cpu_features(), "checked_disjoint_from": eval_data})
    return QuantResult(Path(out), recipe, cfg.method, len(x), rep.quantize_nodes, ranges)
