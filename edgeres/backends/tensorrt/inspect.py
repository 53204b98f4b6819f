"""A built engine's layers from TensorRT's engine inspector: each layer's precision, and whether it runs on a DLA.

``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`` (TensorRT 8.2 and newer, with
``ProfilingVerbosity.DETAILED`` set at build time) gives ``{"Layers": [{"Name", "LayerType", "Inputs": [{"Name",
"Dimensions", "Format/Datatype"}], "Outputs": [...]}], "Bindings": [...]}``. Layers that a DLA runs appear as one
``ForeignNode`` per DLA subgraph. The format strings differ by version ("Row major linear FP32", "Float", "Thirty-two
wide channel vectorized row major Int8 format.", "Half"): the precision is read from their words.
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


def engine_layers(info: str | dict[str, Any]) -> list[LayerInfo]:
    """The layers of an inspector JSON document (a string or parsed), in engine order."""
    doc = json.loads(info) if isinstance(info, str) else info
    out = []
    for layer in doc.get("Layers", []):
        if isinstance(layer, str):  # built without DETAILED verbosity: names only
            out.append(LayerInfo(layer, "unknown", "unknown", "DLA" if layer.startswith("{ForeignNode") else "GPU"))
            continue
        fmts = [t.get("Format/Datatype", "") for t in layer.get("Outputs", []) or layer.get("Inputs", [])
                if isinstance(t, dict)]
        precs = [precision_of(f) for f in fmts]
        known = [p for p in precs if p != "unknown"]
        out.append(LayerInfo(str(layer.get("Name", "")), str(layer.get("LayerType", "")),
                             known[0] if known else "unknown", _device(layer)))
    return out


def int8_fallbacks(layers: list[LayerInfo]) -> list[LayerInfo]:
    """Compute layers of an int8 engine that do not run in int8 (TensorRT kept them in fp16/fp32)."""
    return [la for la in layers if la.kind not in _BOOKKEEPING and la.precision in ("fp16", "fp32")]


def summary(layers: list[LayerInfo]) -> dict[str, Any]:
    """Counts by precision and device, for reports."""
    by_prec: dict[str, int] = {}
    for la in layers:
        if la.kind not in _BOOKKEEPING:
            by_prec[la.precision] = by_prec.get(la.precision, 0) + 1
    return {"layers": len(layers), "by_precision": by_prec, "dla_layers": sum(la.device == "DLA" for la in layers)}
