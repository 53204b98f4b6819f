"""edgeres.backends.memory: ONNX Runtime's memory measured in a process of its own, trtexec's read from its log."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeres.backends.memory import MIB, MemoryUse, onnxruntime_memory, trtexec_memory

# trtexec --loadEngine on TensorRT 8.4 (NVIDIA/TensorRT issue 2217), as it prints at its default verbosity
TRTEXEC_LOG = """\
[08/08/2022-01:36:09] [I] [TRT] [MemUsageChange] Init CUDA: CPU +229, GPU +0, now: CPU 269, GPU 1793 (MiB)
[08/08/2022-01:36:09] [I] [TRT] Loaded engine size: 21 MiB
[08/08/2022-01:36:11] [I] [TRT] [MemUsageChange] Init cuBLAS/cuBLASLt: CPU +159, GPU +182, now: CPU 434, GPU 1981 (MiB)
[08/08/2022-01:36:13] [I] [TRT] [MemUsageChange] TensorRT-managed allocation in engine deserialization: CPU +0, GPU +20, now: CPU 0, GPU 20 (MiB)
[08/08/2022-01:36:13] [I] Engine loaded in 5.11544 sec.
[08/08/2022-01:36:13] [I] [TRT] [MemUsageChange] TensorRT-managed allocation in IExecutionContext creation: CPU +0, GPU +67, now: CPU 0, GPU 87 (MiB)
[08/08/2022-01:36:13] [I] [TRT] [MemUsageChange] TensorRT-managed allocation in IExecutionContext creation: CPU +0, GPU +5, now: CPU 0, GPU 92 (MiB)
"""  # noqa: E501  (trtexec's lines, whole)


def test_trtexecs_memory_lines_give_weights_and_activations():
    got = trtexec_memory(TRTEXEC_LOG, 22 * (1 << 20))
    assert (got.file_mb, got.weights_mb, got.activations_mb) == (22.0, 20.0, 67.0)  # the first context: the one timed
    assert got.peak_mb is None and "trtexec's log" in got.how
    assert got.short() == "22.0 MiB file, 20 MiB weights, 67.0 MiB activations"


def test_a_log_without_memory_lines_says_so():
    got = trtexec_memory("[I] Engine loaded in 0.1 sec.\n", None)
    assert (got.file_mb, got.weights_mb, got.activations_mb) == (None, None, None)  # no size made up either
    assert got.short() == "file size not read"
    assert got.how == "trtexec printed no [MemUsageChange] lines"


def _dense(path: Path, n: int) -> Path:
    """A model of one n×n float32 weight: n² × 4 bytes of weights, and almost nothing else."""
    w = numpy_helper.from_array(np.ones((n, n), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["logits"])], "dense",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnxruntime_memory_is_measured_in_a_process_of_its_own(tmp_path):
    """The weights a session holds show up: 64 MiB of them in the big model, 1 MiB in the small one."""
    big, small = _dense(tmp_path / "big.onnx", 4096), _dense(tmp_path / "small.onnx", 512)
    b, s = onnxruntime_memory(big, 1, 2, (4096,)), onnxruntime_memory(small, 1, 2, (512,))
    assert b.file_mb == big.stat().st_size / MIB and b.file_mb > 64
    assert b.peak_mb is not None and b.held_mb is not None and s.held_mb is not None, (b.how, s.how)
    assert b.peak_mb >= b.held_mb >= 60  # the session's own copy of the weights, at least
    assert s.held_mb < 30 < 60 < b.held_mb  # and not a figure that is the same for any model
    assert "fresh process" in b.how


def test_a_model_the_probe_cannot_open_is_not_measured_and_says_why(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    got = onnxruntime_memory(bad, 1, 1, (4,))
    assert isinstance(got, MemoryUse) and got.peak_mb is None
    assert got.how.startswith("not measured: ") and "ONNX Runtime cannot load" in got.how
