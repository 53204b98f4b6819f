"""foreign ONNX → edgeres ONNX: an image classifier made elsewhere (jetson-inference's ``resnet18.onnx``, a
torchvision or timm export) gains the metadata every stage reads, once its input and output are checked with ONNX
Runtime. A static batch is made dynamic when the graph allows it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from PIL import Image

from edgeres.artifacts import atomic_path, refuse_overwriting_inputs, write_manifest
from edgeres.data.preprocess import Preprocessing
from edgeres.errors import ArtifactError, ConfigError
from edgeres.onnx_model import (
    CLASSES_KEY,
    DATASET_KEY,
    METADATA_KEY,
    PRECISION_KEY,
    load_onnx,
    metadata,
    set_metadata,
)

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


@dataclass(frozen=True)
class ImportConfig:
    preprocessing: Preprocessing
    classes: tuple[str, ...]
    data: str | None = None  # the data set it classifies (bench's and quantize's default), if edgeres can read it


@dataclass
class ImportResult:
    onnx: Path
    input_name: str
    output_name: str
    dynamic_batch: bool
    precision: str


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _dims(v: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in v.type.tensor_type.shape.dim]


def check_classifier(model: onnx.ModelProto, pre: Preprocessing, n_classes: int, path: Path) -> None:
    """One float image input NCHW that fits ``pre``, one output of ``n_classes`` scores; else what is wrong."""
    ins = _graph_inputs(model)
    if len(ins) != 1:
        raise ArtifactError(f"{path} has {len(ins)} inputs ({', '.join(i.name for i in ins)}); edgeres takes image "
                            f"classifiers with one image input")
    t = ins[0].type.tensor_type
    dims = _dims(ins[0])
    if t.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16) or len(dims) != 4:
        kind = onnx.TensorProto.DataType.Name(t.elem_type).lower()
        raise ArtifactError(f"{path}'s input {ins[0].name} is {kind} {dims}, not an image batch (float N×C×H×W); "
                            f"edgeres imports image classifiers only")
    want = [pre.channels, pre.size, pre.size]
    for got, w, what in zip(dims[1:], want, ("channels", "height", "width"), strict=True):
        if isinstance(got, int) and got != w:
            raise ConfigError(f"{path} takes {what} {got} but the preprocessing gives {w}; pass --size/--mean/--std "
                              f"that match its input {dims}")
    if len(model.graph.output) != 1:
        raise ArtifactError(f"{path} has {len(model.graph.output)} outputs; edgeres takes one output of class scores")
    out = _dims(model.graph.output[0])
    if len(out) != 2 or (isinstance(out[1], int) and out[1] != n_classes):
        raise ConfigError(f"{path}'s output is {out}, but --labels names {n_classes} classes; give one label per "
                          f"output")


def _make_batch_dynamic(model: onnx.ModelProto) -> bool:
    """Turn a static batch of the input and output into ``batch``; False if it was already dynamic."""
    changed = False
    for v in (_graph_inputs(model)[0], model.graph.output[0]):
        d = v.type.tensor_type.shape.dim[0]
        if d.HasField("dim_value"):
            d.Clear()
            d.dim_param = "batch"
            changed = True
    return changed


def onnx_from_foreign(src: Path, out: Path, cfg: ImportConfig) -> ImportResult:
    """Check ``src`` with ONNX Runtime and write it with edgeres metadata to ``out`` (the input is never changed)."""
    src, out = Path(src), Path(out)
    refuse_overwriting_inputs(out, {"ONNX": src})
    model = load_onnx(src)
    if any(k.startswith("edgeres.") for k in metadata(model)):
        raise ConfigError(f"{src} is already an edgeres model; use it as it is")
    pre = cfg.preprocessing
    check_classifier(model, pre, len(cfg.classes), src)
    precision = "int8" if any(n.op_type in QDQ_OPS for n in model.graph.node) else "fp32"
    rng = np.random.default_rng(0)
    x = np.stack([pre(Image.fromarray(rng.integers(0, 256, (pre.size, pre.size, 3), np.uint8))) for _ in range(4)])
    static = _graph_inputs(model)[0].type.tensor_type.shape.dim[0].HasField("dim_value")
    meta = {METADATA_KEY: pre.to_json(), CLASSES_KEY: json.dumps(list(cfg.classes)), PRECISION_KEY: precision,
            **({DATASET_KEY: cfg.data} if cfg.data else {})}
    with atomic_path(out) as tmp:
        dynamic = _make_batch_dynamic(model) if static else True
        set_metadata(model, meta)
        onnx.save(model, str(tmp))
        one_by_one, batched = _try(tmp, x)
        if batched is None and static:  # a Reshape with the batch baked in: keep the static batch
            dynamic = False
            model = load_onnx(src)
            set_metadata(model, meta)
            onnx.save(model, str(tmp))
            one_by_one, _ = _try(tmp, x[:1])
        if one_by_one.shape[1] != len(cfg.classes) or not np.isfinite(one_by_one).all():
            raise ArtifactError(f"{src} gives {one_by_one.shape[1]} scores per image (or non-finite ones) for "
                                f"{len(cfg.classes)} labels; check --labels and the preprocessing")
        if batched is not None and not np.allclose(batched, one_by_one, rtol=1e-3, atol=1e-4):
            raise ArtifactError(f"{src} gives other scores for a batch than image by image; it cannot take batches")
    inp = _graph_inputs(model)[0].name
    write_manifest(out, "onnx-imported", {"onnx": src}, {"classes": list(cfg.classes), "data": cfg.data},
                   pre.to_dict(), {"precision": precision, "dynamic_batch": dynamic, "input": inp,
                                   "output": model.graph.output[0].name})
    return ImportResult(out, inp, model.graph.output[0].name, dynamic, precision)


def _try(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores image by image, and for the whole batch (None when the graph takes batch 1 only)."""
    from edgeres.backends.onnxruntime import OrtSession

    with OrtSession(path, quiet=True) as sess:
        one = np.concatenate([sess.infer(x[i:i + 1]) for i in range(len(x))])
        if len(x) < 2:
            return one, None
        try:
            return one, sess.infer(x)
        except Exception:  # noqa: BLE001  # ONNX Runtime's own error types: the graph fixes the batch
            return one, None

