"""A built engine's layers from TensorRT's engine inspector: each layer's precision, and whether it runs on a DLA.

``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`` (TensorRT 8.2 and newer, with
``ProfilingVerbosity.DETAILED`` set at build time) gives ``{"Layers": [{"Name", "LayerType", "Inputs": [{"Name",
"Dimensions", "Format/Datatype"}], "Outputs": [...]}], "Bindings": [...]}``. Layers that a DLA runs appear as one
``ForeignNode`` per DLA subgraph. The format strings differ by version ("Row major linear FP32", "Float", "Thirty-two
wide channel vectorized row major Int8 format.", "Half"): the precision is read from their words. A layer's precision
is its first input's, as NVIDIA's engine explorer reads it (trex ``layer.py``): an int8 convolution that dequantizes
into a float output (the last Gemm, whose output is the float logits) computes in int8. The output's is used only for
a layer with no input format. Of an engine with a dynamic batch, the formats show only when the inspector was given a
context with its input shape set; otherwise they read "N/A due to dynamic shapes" and the precision is unknown.

trtexec writes the same document with ``--exportLayerInfo`` (built with ``--profilingVerbosity=detailed``), so both
runners' engines are read here.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

# Bookkeeping layers: no arithmetic of their own, so no precision to report.
_BOOKKEEPING = {"Reformat", "NoOp", "Constant", "Shuffle", "Identity", "Quantize", "Dequantize", "Cast"}


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a built engine."""

    name: str
    kind: str  # TensorRT's LayerType
    precision: str  # int8 | fp16 | fp32 | unknown
    device: str  # GPU | DLA

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def precision_of(fmt: str) -> str:
    """``int8``/``fp16``/``fp32`` from a ``Format/Datatype`` string, ``unknown`` where it says none (dynamic shapes)."""
    words = fmt.lower().replace(".", " ").replace(",", " ").split()
    if "int8" in words:
        return "int8"
    if "fp16" in words or "half" in words:
        return "fp16"
    if "fp32" in words or "float" in words:
        return "fp32"
    return "unknown"


def _device(layer: dict[str, Any]) -> str:
    name, kind = str(layer.get("Name", "")), str(layer.get("LayerType", ""))
    return "DLA" if name.startswith("{ForeignNode") or kind in ("ForeignNode", "DLA", "kDLA") else "GPU"


def _formats(layer: dict[str, Any], side: str) -> list[str]:
    return [str(t.get("Format/Datatype", "")) for t in layer.get(side) or [] if isinstance(t, dict)]


def engine_layers(info: str | dict[str, Any]) -> list[LayerInfo]:
    """The layers of an inspector JSON document (a string or parsed), in engine order."""
    doc = json.loads(info) if isinstance(info, str) else info
    out = []
    for layer in doc.get("Layers", []):
        if isinstance(layer, str):  # built without DETAILED verbosity: names only
            out.append(LayerInfo(layer, "unknown", "unknown", "DLA" if layer.startswith("{ForeignNode") else "GPU"))
            continue
        known = [p for p in map(precision_of, _formats(layer, "Inputs") + _formats(layer, "Outputs")) if p != "unknown"]
        out.append(LayerInfo(str(layer.get("Name", "")), str(layer.get("LayerType", "")),
                             known[0] if known else "unknown", _device(layer)))
    return out


def compute_layers(layers: list[LayerInfo]) -> list[LayerInfo]:
    """The layers that compute (not reformats, copies, constants or Q/DQ bookkeeping)."""
    return [la for la in layers if la.kind not in _BOOKKEEPING]


def int8_fallbacks(layers: list[LayerInfo]) -> list[LayerInfo]:
    """GPU compute layers of an int8 engine that do not run in int8 (TensorRT kept them in fp16/fp32). A DLA subgraph
    is not one: its formats are those at the DLA's edge.
    """
    return [la for la in compute_layers(layers) if la.device == "GPU" and la.precision in ("fp16", "fp32")]


def layers_dict(layers: list[LayerInfo], precision: str) -> dict[str, Any]:
    """An engine's layers as report.json and the manifest keep them, with an int8 engine's fallbacks named."""
    return {"layers": [la.to_dict() for la in layers],
            "int8_fallback_layers": [la.name for la in int8_fallbacks(layers)] if precision == "int8" else []}


# the precisions below each row's own: a compute layer in one of them is not what the row's label says
_BELOW = {"int8": ("fp16", "fp32"), "fp16": ("fp32",)}


def _names(layers: list[LayerInfo], most: int = 4) -> str:
    cut = [la.name if len(la.name) <= 48 else la.name[:45] + "…" for la in layers[:most]]
    return ", ".join(cut) + (f" and {len(layers) - most} more" if len(layers) > most else "")


def engine_note(label: str, precision: str, layers: list[LayerInfo], dla_core: int | None = None) -> str | None:
    """What one row's engine runs, in a phrase: how many of its GPU compute layers run in the row's precision (naming
    those below it), and for a DLA engine its subgraphs and the compute layers left on the GPU. A DLA subgraph's
    precision is not counted: its formats are those at the DLA's edge, not what the DLA computes inside. An engine
    built for a DLA core with no layer on it is said to measure the GPU: with GPU fallback TensorRT builds it without
    a word. None for a fp32 GPU engine, which has nothing to say, and for an engine without layers.
    """
    compute = compute_layers(layers)
    dla = [la for la in compute if la.device == "DLA"]
    gpu = [la for la in compute if la.device == "GPU"]
    if not compute or (precision not in _BELOW and dla_core is None):
        return None
    parts = []
    if dla:
        parts.append(f"{len(dla)} DLA subgraph{'s' * (len(dla) != 1)}, {len(gpu)} compute layers on the GPU"
                     + (f": {_names(gpu)}" if gpu else ""))
    elif dla_core is not None:  # layer names alone show a DLA's subgraphs ("{ForeignNode[…]}")
        parts.append(f"no layer on DLA core {dla_core}: every one fell back to the GPU, and the row measures the GPU")
    if gpu and all(la.precision == "unknown" for la in gpu):
        parts.append("no layer's precision shown (built without detailed profiling, or inspected without its input "
                     "shape: rebuild it)")
    elif gpu and precision in _BELOW:
        below = [la for la in gpu if la.precision in _BELOW[precision]]
        if not dla:
            parts.append(f"{len(gpu) - len(below)} of {len(gpu)} compute layers in {precision}"
                         + (f", {len(below)} not: {_names(below)}" if below else ""))
        elif below:
            parts.append(f"{len(below)} of them not in {precision}: {_names(below)}")
    return f"{label} " + "; ".join(parts)
