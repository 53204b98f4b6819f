"""The engine-inspector parser on real JSON samples of several TensorRT versions (tests/data/inspector/)."""
from __future__ import annotations

import json
from pathlib import Path

from edgeres.backends.layer_info import LayerInfo, engine_layers, engine_note, int8_fallbacks, precision_of

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
    names_only = engine_layers({"Layers": ["{ForeignNode[a...b]}", "fc"]})
    assert [(la.device, la.precision) for la in names_only] == [("DLA", "unknown"), ("GPU", "unknown")]


def test_a_layers_precision_is_its_inputs():
    """An int8 Gemm that dequantizes into the float logits computes in int8 (trex reads the first input): it is no
    fallback. A layer with no input format falls back to its output's."""
    doc = {"Layers": [{"Name": "fc", "LayerType": "CaskGemmConvolution",
                       "Inputs": [{"Format/Datatype": "Row major linear Int8 format"}],
                       "Outputs": [{"Format/Datatype": "Row major linear FP32 format"}]},
                      {"Name": "head", "LayerType": "SoftMax", "Inputs": [{"Format/Datatype": "N/A due to dynamic shapes"}],
                       "Outputs": [{"Format/Datatype": "Half"}]}]}
    layers = engine_layers(doc)
    assert [la.precision for la in layers] == ["int8", "fp16"]
    assert int8_fallbacks(layers) == [layers[1]]


def test_engine_note_names_what_the_row_label_hides():
    conv = [LayerInfo(f"conv{i}", "CaskConvolution", "int8", "GPU") for i in range(5)]
    fc32 = LayerInfo("fc", "CaskGemmConvolution", "fp32", "GPU")
    fmt = LayerInfo("Reformatting CopyNode for Input Tensor 0 to fc", "Reformat", "fp32", "GPU")  # bookkeeping
    assert engine_note("int8", "int8", conv + [fmt]) == "int8 5 of 5 compute layers in int8"
    assert engine_note("int8", "int8", conv + [fc32, fmt]) == "int8 5 of 6 compute layers in int8, 1 not: fc"
    many = [LayerInfo("x" * 60 + str(i), "Pooling", "fp16", "GPU") for i in range(6)]
    note = engine_note("int8", "int8", conv + many)
    assert note is not None and note.startswith("int8 5 of 11 compute layers in int8, 6 not: ")
    assert note.endswith("and 2 more") and "x" * 45 + "…" in note
    assert engine_note("fp16", "fp16", [LayerInfo("a", "CaskConvolution", "fp16", "GPU"), fc32]) == \
        "fp16 1 of 2 compute layers in fp16, 1 not: fc"
    assert engine_note("fp32", "fp32", [fc32]) is None  # a GPU fp32 engine: nothing to say
    dla = [LayerInfo("{ForeignNode[conv1...relu5]}", "ForeignNode", "int8", "DLA"),
           LayerInfo("{ForeignNode[conv9...relu12]}", "ForeignNode", "int8", "DLA"),
           LayerInfo("softmax", "SoftMax", "fp16", "GPU"), fmt]
    # a DLA subgraph's precision is the DLA's inside, not its edge formats: only the GPU's layers are counted
    assert engine_note("int8-dla1", "int8", dla) == ("int8-dla1 2 DLA subgraphs, 1 compute layers on the GPU: softmax; "
                                                     "1 of them not in int8: softmax")
    half_edge = [LayerInfo("{ForeignNode[conv1...relu5]}", "ForeignNode", "fp16", "DLA"), fc32]
    assert int8_fallbacks(half_edge) == [fc32]  # the subgraph's fp16 edge is no fallback
    assert engine_note("int8-dla0", "int8", half_edge, dla_core=0) == (
        "int8-dla0 1 DLA subgraph, 1 compute layers on the GPU: fc; 1 of them not in int8: fc")
    # a DLA row whose every layer fell back: said, for a fp16 row too
    gpu_only = [LayerInfo("conv1 + relu1", "CaskConvolution", "fp16", "GPU"), fc32]
    assert engine_note("fp16-dla0", "fp16", gpu_only, dla_core=0) == (
        "fp16-dla0 no layer on DLA core 0: every one fell back to the GPU, and the row measures the GPU; 1 of 2 "
        "compute layers in fp16, 1 not: fc")
    assert engine_note("fp16-dla0", "fp16", dla, dla_core=0).endswith("1 compute layers on the GPU: softmax")
    names_only = engine_layers({"Layers": ["conv1", "fc"]})
    assert engine_note("int8", "int8", names_only) == \
        "int8 no layer's precision shown (built without detailed profiling, or inspected without its input shape: " \
        "rebuild it)"
    assert engine_note("int8", "int8", []) is None
