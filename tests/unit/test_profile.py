"""Per-layer profiles: trtexec's --exportProfile in the layout its sources write, and ONNX Runtime's trace events."""
from __future__ import annotations

import json

import pytest

from edgeres.backends.profile import LayerProfile, LayerTime, is_reformat, ort_layers, parse_trtexec_profile
from edgeres.errors import ArtifactError

# as sampleReporting.cpp's Profiler::exportJSONProfile writes it: "[", the count, then one ", { … }" line per layer
TRTEXEC = """[
  { "count" : 50 }
, { "name" : "Reformatting CopyNode for Input Tensor 0 to conv1 + relu1", "timeMs" : 5, "averageMs" : 0.1, "percentage" : 10 }
, { "name" : "conv1 + relu1", "timeMs" : 30, "averageMs" : 0.6, "percentage" : 60 }
, { "name" : "fc", "timeMs" : 10, "averageMs" : 0.2, "percentage" : 20 }
, { "name" : "fc output reformatter 0", "timeMs" : 5, "averageMs" : 0.1, "percentage" : 10 }
]
"""


def test_trtexec_profile_in_the_layout_of_its_sources():
    p = parse_trtexec_profile(TRTEXEC, batch=4)
    assert (p.runs, p.batch) == (50, 4)
    assert [t.name for t in p.layers][:2] == ["conv1 + relu1", "fc"]  # slowest first
    assert p.total_ms == pytest.approx(1.0) and p.reformat_ms() == pytest.approx(0.2)
    d = p.to_dict(top=2)
    assert d["layer_count"] == 4 and len(d["layers"]) == 2 and d["other_ms"] == pytest.approx(0.2)
    assert d["by_op"] is None and d["reformat_ms"] == pytest.approx(0.2)


@pytest.mark.parametrize("text", ["", "[]", '[{"count": 3}, {"name": "a"}]', "{'count': 3}"])
def test_a_profile_file_that_is_not_trtexecs_is_one_error(text):
    with pytest.raises(ArtifactError, match="is not its per-layer JSON"):
        parse_trtexec_profile(text, 1)


def test_reformatting_layers_by_their_names():
    assert is_reformat("Reformatting CopyNode for Output Tensor 0 to Conv_41")
    assert is_reformat("Conv_757 || Conv_635 output reformatter 0")
    assert not is_reformat("Conv_41 + PWN(Clip_589)")


def _run(ts: int, dur: int) -> dict:
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def _node(name: str, op: str, ts: int, dur_us: int) -> dict:
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur_us, "args": {"op_name": op}}


def test_onnxruntime_trace_leaves_the_first_run_out_and_averages_the_rest():
    events = [_run(0, 100), _node("conv", "Conv", 10, 5000), _node("fc", "Gemm", 60, 5000),  # the first run: slow
              _run(200, 100), _node("conv", "Conv", 210, 300), _node("fc", "Gemm", 260, 100),
              {"cat": "Node", "name": "conv_fence_before", "ts": 209, "dur": 1},
              _run(400, 100), _node("conv", "Conv", 410, 500), _node("fc", "Gemm", 460, 100)]
    layers, runs = ort_layers(events)
    assert runs == 2
    p = LayerProfile(runs, 1, layers, "test")
    assert [(t.name, t.op, t.ms) for t in p.layers] == [("conv", "Conv", pytest.approx(0.4)),
                                                         ("fc", "Gemm", pytest.approx(0.1))]
    assert p.by_op() == {"Conv": pytest.approx(0.4), "Gemm": pytest.approx(0.1)}
    with pytest.raises(ArtifactError, match="1 runs"):
        ort_layers(events[:3])


def test_layers_sort_slowest_first():
    p = LayerProfile(1, 1, [LayerTime("a", 0.1), LayerTime("b", 0.3)], "test")
    assert [t.name for t in p.layers] == ["b", "a"]


def test_a_dla_engines_copies_and_wait_are_the_dlas_share():
    """The layers of a DLA engine's profile as trtexec printed them on an Orin (TensorRT 8.5, NVIDIA/TensorRT issue
    3143): the wait for the DLA shows in "head_3 from nvm"; the submission, the copies and the wait are its share."""
    rows = [("images to nvm", 0.0852), ("{ForeignNode[Conv_0...Concat_198]}", 0.0085), ("head_3 from nvm", 7.6931),
            ("images copy finish", 0.0017), ("head_3 copy finish", 0.0029), ("head_2 from nvm", 0.0072),
            ("Conv_200 + Sigmoid_201", 0.05)]  # the last: a layer that fell back to the GPU (made up)
    text = json.dumps([{"count": 399}] + [{"name": n, "timeMs": ms * 399, "averageMs": ms, "percentage": 0}
                                          for n, ms in rows])
    p = parse_trtexec_profile(text, 1)
    assert p.dla_ms() == pytest.approx(sum(ms for _, ms in rows[:-1])) and p.reformat_ms() == 0.0
    assert p.to_dict()["dla_ms"] == p.dla_ms()
    gpu = LayerProfile(1, 1, [LayerTime("{ForeignNode[/MatMul...Softmax]}", 1.0), LayerTime("Conv_0", 0.5)], "how")
    assert gpu.dla_ms() is None  # a GPU engine's ForeignNode is Myelin's, not a DLA's


def test_the_table_note_gives_the_dlas_share():
    from edgeres.bench.report import profile_short

    p = LayerProfile(1, 1, [LayerTime("images to nvm", 0.1), LayerTime("out from nvm", 3.8),
                            LayerTime("Conv_9", 0.1)], "how").to_dict()
    assert profile_short(p) == "3 layers, slowest out from nvm 95%, DLA with its copies 98%"
