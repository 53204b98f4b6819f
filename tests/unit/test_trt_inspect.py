"""The engine-inspector parser on real JSON samples of several TensorRT versions (tests/data/inspector/)."""
from __future__ import annotations

import json
from pathlib import Path

from edgeres.backends.tensorrt.inspect import LayerInfo, engine_layers, int8_fallbacks, precision_of, summary

DATA = Path(__file__).resolve().parents[1] / "data" / "inspector"


def load(name: str) -> str:
    return (DATA / name).read_text()


def test_precision_words_of_every_version():
    assert precision_of("Thirty-two wide channel vectorized row major Int8 format.") == "int8"
    assert precision_of("Row major linear FP16 format") == "fp16"
    assert precision_of("Channel major FP16 format where channel % 4 == 0") == "fp16"
    assert precision_of("Row major linear FP32") == "fp32"
    assert precision_of("Float") == "fp32"
    assert precision_of("Half") == "fp16"
    assert precision_of("N/A due to dynamic shapes") == "unknown"


def test_samples_parse_into_layers():
    conv = engine_layers(load("developer-guide-detailed.json"))
    assert conv == [LayerInfo(json.loads(load("developer-guide-detailed.json"))["Layers"][0]["Name"],
                              "CaskConvolution", "int8", "GPU")]
    dyn = engine_layers(load("dynamic-shapes-na.json"))
    assert [(la.kind, la.precision) for la in dyn] == [("NoOp", "unknown"), ("Reformat", "unknown")]
    assert [la.precision for la in engine_layers(load("torch-tensorrt-fp16.json"))] == ["fp16"]
    fl = engine_layers(load("trt109-float.json"))
    assert fl[0].precision == "fp32" and int8_fallbacks(fl) == fl  # a conv left in fp32 in an int8 engine


def test_dla_subgraphs_and_names_only_engines():
    doc = {"Layers": [{"Name": "{ForeignNode[conv1...relu3]}", "LayerType": "ForeignNode",
                       "Outputs": [{"Format/Datatype": "Row major linear FP16 format"}]},
                      {"Name": "fc", "LayerType": "CaskGemmConvolution", "Outputs": [{"Format/Datatype": "Float"}]}]}
    layers = engine_layers(doc)
    assert [la.device for la in layers] == ["DLA", "GPU"]
    assert summary(layers) == {"layers": 2, "by_precision": {"fp16": 1, "fp32": 1}, "dla_layers": 1}
    names_only = engine_layers({"Layers": ["{ForeignNode[a...b]}", "fc"]})
    assert [(la.device, la.precision) for la in names_only] == [("DLA", "unknown"), ("GPU", "unknown")]
