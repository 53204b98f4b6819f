"""Reading ONNX models safely, and the metadata edgeres stores in them."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from edgeres.data.preprocess import Preprocessing
from edgeres.errors import ArtifactError

METADATA_KEY = "edgeres.preprocessing"  # every key edgeres stores in an ONNX model is here
CLASSES_KEY = "edgeres.classes"
DATASET_KEY = "edgeres.dataset"
MODEL_KEY = "edgeres.model"
PRECISION_KEY = "edgeres.precision"
RECIPE_KEY = "edgeres.quant"
OUTPUT_KEY = "edgeres.output"  # "probabilities" when the graph ends in a softmax (a bundle option), else logits


@dataclass(frozen=True)
class OnnxInfo:
    path: Path
    preprocessing: Preprocessing
    classes: list[str]
    dataset: str | None
    precision: str
    input_name: str
    input_shape: list[int | str]


def load_onnx(path: Path) -> onnx.ModelProto:
    """Load and check an ONNX file; a truncated or foreign file is an ArtifactError."""
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path} is a folder; pass an ONNX file (make one with `edgeres export`)")
    if not path.is_file():
        raise ArtifactError(f"ONNX model not found: {path}; {_how_to_make(path)}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, OSError, ValueError, RuntimeError) as e:
        if _torch_file(path):
            raise ArtifactError(f"{path} is a PyTorch checkpoint, not an ONNX model; make the ONNX with "
                                f"`edgeres export {path}`") from None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise ArtifactError(f"{path} is not a valid ONNX model ({first}); it may be truncated: "
                            f"re-run `edgeres export`") from None
    if not model.graph.node:
        raise ArtifactError(f"{path} has an empty graph; re-run `edgeres export`")
    return model


def _how_to_make(path: Path) -> str:
    """The command that makes a missing ONNX where edgeres's own names say which: the Q/DQ model of a float ONNX that
    is there (``model.int8-cpu.onnx`` from ``model.onnx``), or the export of a checkpoint that is there.
    """
    import shlex

    name = path.name
    for recipe in ("tensorrt", "cpu"):
        source = path.with_name(name[: -len(f".int8-{recipe}.onnx")] + ".onnx")
        if name.endswith(f".int8-{recipe}.onnx") and source.is_file():
            return f"make it with `edgeres quantize {shlex.quote(str(source))} --recipe {recipe}`"
    for ck in (path.with_suffix(".pt"), path.with_suffix(".pth")):
        if ck.is_file():
            return f"make it with `edgeres export {shlex.quote(str(ck))} --out {shlex.quote(str(path))}`"
    return "make one with `edgeres export`"


def _torch_file(path: Path) -> bool:
    """Whether ``path`` is what torch.save writes: a zip archive, or a pickle (protocol 2 and up) for old files."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"PK\x03\x04" or head[:1] == b"\x80"


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def set_metadata(model: onnx.ModelProto, values: dict[str, str]) -> None:
    props = metadata(model)
    props.update(values)
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)


def onnx_info(path: Path, model: onnx.ModelProto | None = None) -> OnnxInfo:
    """Preprocessing, labels and input of an edgeres ONNX model."""
    model = model if model is not None else load_onnx(path)
    meta = metadata(model)
    if METADATA_KEY not in meta:
        raise ArtifactError(f"{path} has no preprocessing metadata ({METADATA_KEY}), so edgeres cannot feed it "
                            f"correctly; export the model with `edgeres export CHECKPOINT`")
    inp = model.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    return OnnxInfo(
        Path(path), Preprocessing.from_json(meta[METADATA_KEY]),
        json.loads(meta.get(CLASSES_KEY, "[]")), meta.get(DATASET_KEY),
        meta.get(PRECISION_KEY, "fp32"), inp.name, dims,
    )
