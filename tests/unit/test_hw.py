"""The cores a process may use, and the ONNX Runtime threads that follow from them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeres.hw import usable_cores


def test_usable_cores_is_at_most_the_machine() -> None:
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_a_pinned_process_starts_one_onnxruntime_thread_per_pinned_core(tmp_path: Path) -> None:
    # a process pinned to one core (taskset -c 0, a container's cpuset) must not start one thread per machine core;
    # run in a child, so this process keeps its own affinity
    code = ("import os, sys, onnx; from onnx import helper, TensorProto as T; "
            "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from edgeres.hw import usable_cores; from edgeres.backends.onnxruntime import OrtSession; "
            "v = lambda n: helper.make_tensor_value_info(n, T.FLOAT, [1, 4]); "
            "g = helper.make_graph([helper.make_node('Relu', ['x'], ['y'])], 'g', [v('x')], [v('y')]); "
            "m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]); m.ir_version = 8; "
            "onnx.save(m, sys.argv[1]); print(usable_cores(), OrtSession(sys.argv[1]).threads)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "relu.onnx")], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["1", "1"]
